//! The MySQL/MariaDB driver against the conformance suite every driver runs
//! (dev/conformance), on a private MariaDB server. MariaDB-specific behaviour (roles, the
//! current database, both protocols) is tested in the other files here.

use std::sync::{Mutex, PoisonError};

use pool_conformance::{StateProbe, Statement, Subject};
use pool_driver::Value;
use pool_mysql::{MyConn, MysqlDriver};
use pool_testservers::MariaServer;

struct Maria {
    server: Mutex<MariaServer>,
    port: u16,
    args: String,
    password: String,
}

/// What the indirect probes need, made by `root` before any session (as a migration would):
/// a role granted to the test user, and procedures that change the role and the current
/// database. `SQL SECURITY INVOKER`, so they act on the caller's session: a definer-rights
/// procedure of `root` would switch roles in `root`'s borrowed security context, not the
/// caller's. Made here, not in a probe's `prepare`, so that nothing the probed session sends
/// names a role or says `USE`: the driver must find the state by asking the server.
const SETUP: &str = "CREATE ROLE IF NOT EXISTS conformance_role; \
     GRANT conformance_role TO pool_user; \
     CREATE OR REPLACE PROCEDURE pool_test.conformance_set_role() SQL SECURITY INVOKER \
         SET ROLE conformance_role; \
     CREATE OR REPLACE PROCEDURE pool_test.conformance_switch_db() SQL SECURITY INVOKER \
         EXECUTE IMMEDIATE 'USE information_schema'";

impl Maria {
    fn start() -> Maria {
        let server = MariaServer::start().unwrap_or_else(|e| panic!("starting MariaDB: {e}"));
        server
            .sql(SETUP)
            .unwrap_or_else(|e| panic!("setting up roles and procedures: {e}"));
        Maria {
            port: server.port(),
            args: server.args(),
            password: server.password().to_owned(),
            server: Mutex::new(server),
        }
    }
}

impl Subject for Maria {
    type Driver = MysqlDriver;
    type Native = mysql::Conn;

    fn driver(&self) -> &MysqlDriver {
        &MysqlDriver
    }

    fn args(&self, port: Option<u16>) -> String {
        format!("{} port={}", self.args, port.unwrap_or(self.port))
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn wrong_password_args(&self, password: &str) -> String {
        self.args.replace(&self.password, password)
    }

    fn session_id(&self, conn: &mut MyConn) -> Value {
        Value::Int(i64::from(conn.connection_id()))
    }

    fn kill_session(&self, id: &Value) {
        let id = id.as_i64().expect("a connection id");
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .sql(&format!("KILL CONNECTION {id}"))
            .unwrap_or_else(|e| panic!("kill: {e}"));
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        vec![
            StateProbe {
                name: "a user variable",
                prepare: vec![],
                set: vec![Statement::new("SET @conformance = 42")],
                observe: Statement::new("SELECT @conformance"),
            },
            StateProbe {
                name: "a session variable",
                prepare: vec![],
                set: vec![Statement::new("SET SESSION sql_mode = 'ANSI'")],
                observe: Statement::new("SELECT @@SESSION.sql_mode"),
            },
            StateProbe {
                name: "a named lock",
                prepare: vec![],
                set: vec![Statement::new("SELECT GET_LOCK('conformance', 0)")],
                observe: Statement::new("SELECT IS_USED_LOCK('conformance') IS NOT NULL"),
            },
            StateProbe {
                name: "an open transaction",
                prepare: vec![],
                set: vec![Statement::new("START TRANSACTION WITH CONSISTENT SNAPSHOT")],
                observe: Statement::new("SELECT @@in_transaction"),
            },
            // MariaDB's COM_RESET_CONNECTION keeps the current role and database, however
            // they were changed; none of these statements says so in its text.
            StateProbe {
                name: "a role set by a procedure",
                prepare: vec![],
                set: vec![Statement::new("CALL conformance_set_role()")],
                observe: Statement::new("SELECT CURRENT_ROLE()"),
            },
            StateProbe {
                name: "a role set by EXECUTE IMMEDIATE",
                prepare: vec![],
                set: vec![Statement::new(
                    "EXECUTE IMMEDIATE CONCAT('SET RO', 'LE conformance_role')",
                )],
                observe: Statement::new("SELECT CURRENT_ROLE()"),
            },
            StateProbe {
                name: "a role set by a prepared statement",
                prepare: vec![],
                set: vec![
                    Statement::new(
                        "SET @conformance_sql = CONCAT('SET RO', 'LE conformance_role')",
                    ),
                    Statement::new("PREPARE conformance_stmt FROM @conformance_sql"),
                    Statement::new("EXECUTE conformance_stmt"),
                ],
                observe: Statement::new("SELECT CURRENT_ROLE()"),
            },
            StateProbe {
                name: "a database switched by a procedure",
                prepare: vec![],
                set: vec![Statement::new("CALL conformance_switch_db()")],
                observe: Statement::new("SELECT DATABASE()"),
            },
            StateProbe {
                name: "a database switched by EXECUTE IMMEDIATE",
                prepare: vec![],
                set: vec![Statement::new(
                    "EXECUTE IMMEDIATE CONCAT('US', 'E information_schema')",
                )],
                observe: Statement::new("SELECT DATABASE()"),
            },
            // MariaDB 10.11 keeps the profiling history (statement texts) through
            // COM_RESET_CONNECTION, and goes on profiling although @@profiling then says 0.
            StateProbe {
                name: "statement profiles",
                prepare: vec![],
                set: vec![
                    Statement::new("SET profiling = 1"),
                    Statement::new("SELECT 'the previous user''s statement'"),
                ],
                observe: Statement::new("SELECT COUNT(*) FROM information_schema.PROFILING"),
            },
        ]
    }

    fn transaction_probe(&self) -> StateProbe {
        StateProbe {
            name: "a write in an open transaction",
            prepare: vec![Statement::new(
                "CREATE TABLE IF NOT EXISTS conformance_tx (x INT) ENGINE = InnoDB",
            )],
            set: vec![
                Statement::new("START TRANSACTION"),
                Statement::new("INSERT INTO conformance_tx VALUES (1)"),
            ],
            observe: Statement::new("SELECT COUNT(*) FROM conformance_tx"),
        }
    }

    fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .restart()
            .unwrap_or_else(|e| panic!("restarting MariaDB: {e}"));
    }
}

pool_conformance::conformance_tests!(Maria, Maria::start());
