//! The PostgreSQL driver against the conformance suite every driver runs (dev/conformance),
//! on a private server. PostgreSQL-specific behaviour is tested in the other files here.

use std::sync::{Mutex, PoisonError};

use pool_conformance::{StateProbe, Statement, Subject};
use pool_driver::{Connection, Value};
use pool_postgres::{PgClient, PgConn, PgDriver};
use pool_testservers::PgServer;

struct Postgres {
    server: Mutex<PgServer>,
    port: u16,
    scram: String,
}

impl Postgres {
    fn start() -> Postgres {
        let server = PgServer::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
        Postgres {
            port: server.port(),
            scram: server.scram_args(),
            server: Mutex::new(server),
        }
    }

    fn psql(&self, sql: &str) -> String {
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server.psql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Subject for Postgres {
    type Driver = PgDriver;
    type Native = PgClient;

    fn driver(&self) -> &PgDriver {
        &PgDriver
    }

    fn args(&self, port: Option<u16>) -> String {
        format!("{} port={}", self.scram, port.unwrap_or(self.port))
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn wrong_password_args(&self, password: &str) -> String {
        format!("{} password={password}", self.scram)
    }

    fn session_id(&self, conn: &mut PgConn) -> Value {
        let rows = conn.query("SELECT pg_backend_pid()", &[]).expect("pid");
        rows.scalar().cloned().expect("one value")
    }

    fn kill_session(&self, id: &Value) {
        let pid = id.as_i64().expect("a pid");
        self.psql(&format!("SELECT pg_terminate_backend({pid})"));
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        vec![
            StateProbe {
                name: "a setting",
                prepare: vec![],
                set: vec![Statement::new("SET statement_timeout = '4321s'")],
                observe: Statement::new("SHOW statement_timeout"),
            },
            StateProbe {
                name: "a temporary table",
                prepare: vec![],
                set: vec![Statement::new("CREATE TEMP TABLE conformance_tmp (x int)")],
                observe: Statement::new("SELECT to_regclass('pg_temp.conformance_tmp')::text"),
            },
            StateProbe {
                name: "an advisory lock",
                prepare: vec![],
                set: vec![Statement::new("SELECT pg_advisory_lock(4242)")],
                observe: Statement::new(
                    "SELECT count(*) FROM pg_locks \
                     WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
                ),
            },
            StateProbe {
                name: "a prepared statement",
                prepare: vec![],
                set: vec![Statement::new("PREPARE conformance_q AS SELECT 1")],
                observe: Statement::new(
                    "SELECT count(*) FROM pg_prepared_statements WHERE name = 'conformance_q'",
                ),
            },
            StateProbe {
                name: "a LISTEN",
                prepare: vec![],
                set: vec![Statement::new("LISTEN conformance_channel")],
                observe: Statement::new("SELECT count(*) FROM pg_listening_channels()"),
            },
            StateProbe {
                name: "an open transaction",
                prepare: vec![],
                set: vec![Statement::new("BEGIN ISOLATION LEVEL SERIALIZABLE")],
                observe: Statement::new("SHOW transaction_isolation"),
            },
            // State changed inside functions and `DO` blocks: the statement the session sent
            // never says `SET ROLE`. (`pg_temp` functions: nothing outlives the session.)
            StateProbe {
                name: "a role set inside a function",
                prepare: vec![Statement::new(
                    "CREATE FUNCTION pg_temp.conformance_set_role() RETURNS void \
                     LANGUAGE plpgsql AS $$ BEGIN SET ROLE pool_other; END $$",
                )],
                set: vec![Statement::new("SELECT pg_temp.conformance_set_role()")],
                observe: Statement::new("SELECT current_user::text"),
            },
            StateProbe {
                name: "a setting set inside an SQL function",
                prepare: vec![Statement::new(
                    "CREATE FUNCTION pg_temp.conformance_set_app() RETURNS text LANGUAGE sql \
                     AS $$ SELECT set_config('app.conformance', 'leaked', false) $$",
                )],
                set: vec![Statement::new("SELECT pg_temp.conformance_set_app()")],
                // A placeholder setting resets to '' rather than to unset (see reset.rs).
                observe: Statement::new(
                    "SELECT coalesce(current_setting('app.conformance', true), '')",
                ),
            },
            StateProbe {
                name: "a role set through EXECUTE in a DO block",
                prepare: vec![],
                set: vec![Statement::new(
                    "DO $$ BEGIN EXECUTE 'SET RO' || 'LE pool_other'; END $$",
                )],
                observe: Statement::new("SELECT current_user::text"),
            },
            StateProbe {
                name: "a setting set through EXECUTE in a DO block",
                prepare: vec![],
                set: vec![Statement::new(
                    "DO $$ BEGIN EXECUTE format('SET %I = %L', 'work_mem', '1234kB'); END $$",
                )],
                observe: Statement::new("SHOW work_mem"),
            },
        ]
    }

    fn transaction_probe(&self) -> StateProbe {
        StateProbe {
            name: "a write in an open transaction",
            prepare: vec![Statement::new(
                "CREATE TABLE IF NOT EXISTS conformance_tx (x int)",
            )],
            set: vec![
                Statement::new("BEGIN"),
                Statement::new("INSERT INTO conformance_tx VALUES (1)"),
            ],
            observe: Statement::new("SELECT count(*) FROM conformance_tx"),
        }
    }

    fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .restart()
            .unwrap_or_else(|e| panic!("restarting PostgreSQL: {e}"));
    }
}

pool_conformance::conformance_tests!(Postgres, Postgres::start());
