//! The Redis driver against the conformance suite every driver runs (dev/conformance), on a
//! private redis-server with an ACL user. Redis-specific leaks (MULTI, SUBSCRIBE, HELLO 3,
//! CLIENT TRACKING, the ACL user after RESET, servers without RESET) are in the other files.

use std::sync::{Mutex, PoisonError};

use pool_conformance::{StateProbe, Statement, Subject};
use pool_driver::{Connection, Driver, Value};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::RedisServer;

struct Redis {
    driver: RedisDriver,
    server: Mutex<RedisServer>,
    port: u16,
    args: String,
    password: String,
    admin_args: String,
}

impl Redis {
    fn start() -> Redis {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("starting Redis: {e}"));
        Redis {
            driver: RedisDriver::new(),
            port: server.port(),
            args: server.args(),
            password: server.password().to_owned(),
            admin_args: server.default_user_args(),
            server: Mutex::new(server),
        }
    }
}

impl Subject for Redis {
    type Driver = RedisDriver;
    type Native = redis::Connection;

    fn driver(&self) -> &RedisDriver {
        &self.driver
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

    fn session_id(&self, conn: &mut RedisConn) -> Value {
        let rows = conn.query("CLIENT ID", &[]).expect("CLIENT ID");
        rows.scalar().cloned().expect("one value")
    }

    fn kill_session(&self, id: &Value) {
        // The ACL user may not kill clients (@dangerous): the default user does, as an
        // operator would.
        let mut admin = self.connect(&self.admin_args).expect("admin connect");
        admin
            .execute("CLIENT KILL ID", std::slice::from_ref(id))
            .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"));
        let _ = self.driver.detach(admin, pool_driver::ResetMode::Full);
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        vec![
            StateProbe {
                name: "the selected database",
                prepare: vec![Statement::with(
                    "SET",
                    vec!["conformance_db_probe".into(), "1".into()],
                )],
                set: vec![Statement::with("SELECT", vec![Value::Int(3)])],
                observe: Statement::with("EXISTS", vec!["conformance_db_probe".into()]),
            },
            StateProbe {
                name: "the client name",
                prepare: vec![],
                set: vec![Statement::with(
                    "CLIENT SETNAME",
                    vec!["conformance".into()],
                )],
                observe: Statement::new("CLIENT GETNAME"),
            },
            StateProbe {
                name: "an open MULTI",
                prepare: vec![],
                set: vec![Statement::new("MULTI")],
                observe: Statement::new("PING"),
            },
        ]
    }

    fn transaction_probe(&self) -> StateProbe {
        StateProbe {
            name: "a write queued in MULTI",
            prepare: vec![Statement::with("DEL", vec!["conformance_tx".into()])],
            set: vec![
                Statement::new("MULTI"),
                Statement::with("SET", vec!["conformance_tx".into(), "1".into()]),
            ],
            observe: Statement::with("EXISTS", vec!["conformance_tx".into()]),
        }
    }

    fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .restart()
            .unwrap_or_else(|e| panic!("restarting Redis: {e}"));
    }

    fn trivial(&self) -> Statement {
        Statement::new("PING")
    }
}

pool_conformance::conformance_tests!(Redis, Redis::start());
