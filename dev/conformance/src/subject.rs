//! What a driver supplies to the suite: its driver, a server, and probes.

use std::net::TcpListener;

use pool_driver::{ConnArgs, Driver, DriverError, Value};

/// One statement through the uniform API (`Connection::execute`/`query`): SQL for the SQL
/// drivers, a command and its arguments for Redis.
#[derive(Clone, Debug)]
pub struct Statement {
    /// The statement text (or command).
    pub text: String,
    /// Its parameters.
    pub params: Vec<Value>,
}

impl Statement {
    /// A statement without parameters.
    pub fn new(text: impl Into<String>) -> Self {
        Statement {
            text: text.into(),
            params: Vec::new(),
        }
    }

    /// A statement with parameters.
    pub fn with(text: impl Into<String>, params: Vec<Value>) -> Self {
        Statement {
            text: text.into(),
            params,
        }
    }
}

/// A piece of session state: how one user sets it and how the next would see it.
#[derive(Clone, Debug)]
pub struct StateProbe {
    /// What it is, for failure messages (`"a session variable"`).
    pub name: &'static str,
    /// Run once, on a fresh session, before the baseline is read (e.g. create a table).
    pub prepare: Vec<Statement>,
    /// Sets the state.
    pub set: Vec<Statement>,
    /// Reads one value that differs while the state is set.
    pub observe: Statement,
}

/// A driver under test, with a private server of its own.
pub trait Subject: Sync {
    /// The driver.
    type Driver: Driver;
    /// The driver's native client type (`Connection::native` downcasts to it).
    type Native: 'static;

    /// The driver instance.
    fn driver(&self) -> &Self::Driver;

    /// Arguments of a working login on the private server over TCP on 127.0.0.1, at `port`
    /// instead of the server's own when given (the suite puts a proxy there).
    fn args(&self, port: Option<u16>) -> String;

    /// The private server's TCP port on 127.0.0.1.
    fn port(&self) -> u16;

    /// The same login with `password` in place of the right one.
    fn wrong_password_args(&self, password: &str) -> String;

    /// A value naming the server session behind `conn` (a backend pid, a connection id).
    fn session_id(&self, conn: &mut <Self::Driver as Driver>::Conn) -> Value;

    /// Ends session `id` from the server's side (as an operator's kill would).
    fn kill_session(&self, id: &Value);

    /// Every piece of session state the full reset must clear.
    fn state_probes(&self) -> Vec<StateProbe>;

    /// An open transaction with a write in it, for the rollback-only check: `set` opens it
    /// and writes, `observe` reads what another session would see after a rollback.
    fn transaction_probe(&self) -> StateProbe;

    /// Stops the server abruptly and starts it again on the same port.
    fn restart(&self);

    /// A statement that changes nothing and needs a live session.
    fn trivial(&self) -> Statement {
        Statement::new("SELECT 1")
    }

    /// Parses and connects with the suite's timeout.
    fn connect(&self, args: &str) -> Result<<Self::Driver as Driver>::Conn, DriverError> {
        let parsed: ConnArgs = self.driver().parse_args(args)?;
        self.driver().connect(&parsed, crate::reuse::TIMEOUT)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
pub(crate) fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("binding a free port: {e}"))
}
