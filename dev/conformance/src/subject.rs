//! What a driver supplies to the suite: its driver, a server, and probes.

use std::fmt;
use std::net::TcpListener;

use pool_driver::{ConnArgs, Connection, Driver, DriverError, Value};

use crate::tls::TlsSubject;

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

/// A piece of session state set by code instead of by statements: typically through the
/// driver's native client (`Connection::native`/`native_mut` downcast to [`Subject::Native`]),
/// which the uniform API cannot express and which a driver must notice all the same.
///
/// `C` is the driver's attached connection (`<S::Driver as Driver>::Conn`). Build one with
/// [`NativeProbe::new`] and refine it with [`NativeProbe::prepared_by`] and
/// [`NativeProbe::observed_by`]:
///
/// ```ignore
/// NativeProbe::new(
///     "the db, selected through the native client",
///     |conn: &mut RedisConn| {
///         let native = pool_conformance::native_mut::<redis::Connection, _>(conn);
///         redis::cmd("SELECT").arg(3).query::<()>(native).expect("SELECT");
///     },
///     Statement::with("EXISTS", vec!["probe_key".into()]),
/// )
/// .prepared_by(vec![Statement::with("SET", vec!["probe_key".into(), "1".into()])])
/// ```
///
/// The checks run `set` alone on a session nothing else touched since its last reset, so a
/// driver that misses the native access itself (it skips the reset of a session it thinks
/// unused) fails them.
pub struct NativeProbe<C> {
    /// What it is, for failure messages (`"a read timeout set through the native client"`).
    pub name: &'static str,
    /// Run once, through the uniform API, on a fresh session before the baseline is read.
    pub prepare: Vec<Statement>,
    /// Sets the state. Panics if it cannot (a probe that does nothing proves nothing).
    pub set: Box<dyn Fn(&mut C)>,
    /// Reads one value that differs while the state is set.
    pub observe: Box<dyn Fn(&mut C) -> Value>,
}

impl<C: Connection> NativeProbe<C> {
    /// A probe that sets its state with `set` and is observed through the uniform API with
    /// `observe` (its first value; a failing statement panics).
    pub fn new(name: &'static str, set: impl Fn(&mut C) + 'static, observe: Statement) -> Self {
        NativeProbe {
            name,
            prepare: Vec::new(),
            set: Box::new(set),
            observe: Box::new(move |conn: &mut C| crate::reuse::value(conn, &observe)),
        }
    }

    /// Statements run once before the baseline is read (for example: create a key).
    pub fn prepared_by(mut self, prepare: Vec<Statement>) -> Self {
        self.prepare = prepare;
        self
    }

    /// Observes the state with code instead of a statement (for state only the native client,
    /// or the way a command behaves, shows). It may use the native client.
    pub fn observed_by(mut self, observe: impl Fn(&mut C) -> Value + 'static) -> Self {
        self.observe = Box::new(observe);
        self
    }
}

impl<C> fmt::Debug for NativeProbe<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeProbe")
            .field("name", &self.name)
            .field("prepare", &self.prepare)
            .finish_non_exhaustive()
    }
}

/// The native client behind `conn`, as `N` (panics, naming both types, if it is another).
pub fn native<N: 'static, C: Connection>(conn: &C) -> &N {
    let actual = conn.native_type_name();
    match conn.native().downcast_ref::<N>() {
        Some(native) => native,
        None => panic!(
            "the native client is {actual}, not {}",
            std::any::type_name::<N>()
        ),
    }
}

/// The native client behind `conn`, mutably, as `N` (panics if it is another type).
pub fn native_mut<N: 'static, C: Connection>(conn: &mut C) -> &mut N {
    let actual = conn.native_type_name();
    match conn.native_mut().downcast_mut::<N>() {
        Some(native) => native,
        None => panic!(
            "the native client is {actual}, not {}",
            std::any::type_name::<N>()
        ),
    }
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

    /// Session state set through the driver's native client (or by any code, see
    /// [`NativeProbe`]) that the full reset must clear, checked by
    /// [`crate::no_native_session_state_reaches_the_next_user`]. Default: none.
    fn native_probes(&self) -> Vec<NativeProbe<<Self::Driver as Driver>::Conn>> {
        Vec::new()
    }

    /// State the rollback-only cleanup cannot undo and must therefore never hand on: the
    /// release either clears it anyway or refuses the session (`detach` fails, the pool closes
    /// it), checked by [`crate::rollback_only_never_hands_on_what_it_cannot_undo`]. Default:
    /// none (for most drivers rollback-only keeps session state by design).
    fn rollback_only_probes(&self) -> Vec<NativeProbe<<Self::Driver as Driver>::Conn>> {
        Vec::new()
    }

    /// Stops the server abruptly and starts it again on the same port.
    fn restart(&self);

    /// The driver's TLS section: arguments for every TLS case against private TLS servers
    /// (see [`crate::tls`] for the cases, the error contract and an example per driver).
    /// Default: `None`, the driver does not claim TLS, and every TLS check is skipped with a
    /// note on stderr. Called by each TLS check: start the servers once (a `OnceLock` in the
    /// subject) and build the arguments here.
    fn tls(&self) -> Option<TlsSubject> {
        None
    }

    /// A statement that runs for about `seconds` and changes nothing (PostgreSQL
    /// `SELECT pg_sleep(s)::text`, MariaDB `SELECT SLEEP(s)`, Redis `BLPOP` on an empty key),
    /// for the deadline check. Required of a driver whose `set_statement_timeout` says it
    /// bounds statements. Default: none.
    fn slow_statement(&self, seconds: f64) -> Option<Statement> {
        let _ = seconds;
        None
    }

    /// Statements the driver promises leave a session unchanged, so that a session that ran
    /// only these needs no reset (Redis: the server's data-only commands, `GET`, `SET`…),
    /// checked by [`crate::unchanged_session_detaches_without_io`]; every state probe must
    /// still make the session need its reset. Default: none (every used session is reset).
    fn unchanging_statements(&self) -> Vec<Statement> {
        Vec::new()
    }

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
