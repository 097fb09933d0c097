//! An in-memory driver for engine tests: it counts live connections, and each fake database
//! can be slowed (gates), failed, restarted (killing every open connection) or made to panic.
//!
//! Args select the database: `db=<name>` plus anything else (user, password). Each test makes
//! its own database with a unique name, so tests sharing the global registry never meet.

#![allow(dead_code)]

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use pool::{ConnArgs, Connection, Driver, DriverError, DriverErrorKind, ResetMode, Rows, Value};

/// A door threads block at until it is opened; counts who arrived.
#[derive(Default)]
pub struct Gate {
    closed: Mutex<bool>,
    cv: Condvar,
    arrived: AtomicUsize,
}

impl Gate {
    pub fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }
    pub fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.cv.notify_all();
    }
    pub fn pass(&self) {
        self.arrived.fetch_add(1, SeqCst);
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.cv.wait(closed).unwrap();
        }
    }
    pub fn arrived(&self) -> usize {
        self.arrived.load(SeqCst)
    }
}

/// One fake database server.
#[derive(Default)]
pub struct FakeDb {
    pub name: String,
    /// Connections that exist now, including connects in flight.
    pub live: AtomicUsize,
    /// The most `live` ever reached.
    pub peak: AtomicUsize,
    pub connect_attempts: AtomicUsize,
    pub connects: AtomicUsize,
    pub checks: AtomicUsize,
    pub detaches: AtomicUsize,
    next_id: AtomicU64,
    /// Bumped by `restart`: connections of an older epoch are dead.
    epoch: AtomicU64,
    pub fail_connect: AtomicBool,
    pub fail_detach: AtomicBool,
    pub panic_connect: AtomicBool,
    /// `connected` takes this long (milliseconds, bounded by its timeout) before answering:
    /// a check on a silent network.
    pub check_delay_ms: AtomicU64,
    /// `is_broken` panics.
    pub panic_is_broken: AtomicBool,
    /// Dropping (closing) a connection panics.
    pub panic_on_close: AtomicBool,
    /// Closing a connection blocks here (it still counts as live until it passes).
    pub close_gate: Gate,
    pub connect_gate: Gate,
    /// Connects on the pool's primer thread block here too (before `connect_gate`).
    pub primer_gate: Gate,
    /// Connect attempts made on a caller's thread (not the primer's).
    pub caller_connects: AtomicUsize,
    pub check_gate: Gate,
    pub detach_gate: Gate,
    /// `set_statement_timeout` says the driver cannot bound statements (and ignores it).
    pub unbounded_statements: AtomicBool,
}

impl FakeDb {
    pub fn restart(&self) {
        self.epoch.fetch_add(1, SeqCst);
    }
    pub fn live(&self) -> usize {
        self.live.load(SeqCst)
    }
    pub fn epoch(&self) -> u64 {
        self.epoch.load(SeqCst)
    }
    fn enter(&self) {
        let now = self.live.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
    }
}

static DATABASES: LazyLock<Mutex<HashMap<String, Arc<FakeDb>>>> = LazyLock::new(Default::default);
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The `fake` driver's arguments for `db`.
pub fn args(db: &FakeDb) -> String {
    format!("db={}", db.name)
}

/// The pool's stats for `db` on the `fake` driver.
pub fn stats(db: &FakeDb) -> pool::Stats {
    pool::stats("fake", &args(db)).unwrap()
}

/// Settings for tests: quiet background threads unless a test shortens them.
pub fn quiet() -> pool::Settings {
    pool::Settings {
        reap_interval: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(3600),
        validate_after: Duration::from_secs(3600),
        acquire_timeout: Duration::from_secs(5),
        ..pool::Settings::default()
    }
}

/// `quiet()` with a reaper that sweeps every 20 ms and closes connections idle for 100 ms.
pub fn reaping_quickly() -> pool::Settings {
    pool::Settings {
        idle_timeout: Duration::from_millis(100),
        reap_interval: Duration::from_millis(20),
        ..quiet()
    }
}

/// A fresh fake database (and the fake drivers registered, once per test binary).
pub fn new_db(tag: &str) -> Arc<FakeDb> {
    register_fakes();
    let name = format!("{tag}{}", NEXT_DB.fetch_add(1, SeqCst));
    let db = Arc::new(FakeDb {
        name: name.clone(),
        ..FakeDb::default()
    });
    DATABASES.lock().unwrap().insert(name, Arc::clone(&db));
    db
}

pub fn register_fakes() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        pool::register(FakeDriver {
            name: "fake",
            detach: true,
        })
        .unwrap();
        pool::register(FakeDriver {
            name: "fake-nodetach",
            detach: false,
        })
        .unwrap();
    });
}

pub struct FakeDriver {
    pub name: &'static str,
    pub detach: bool,
}

/// A fake connection: an id, the epoch it belongs to, and some session state.
pub struct FakeConn {
    db: Arc<FakeDb>,
    pub id: u64,
    epoch: u64,
    pub in_tx: bool,
    pub var: Option<String>,
    broken: bool,
    /// A statement ran or the native connection was borrowed mutably since the last reset.
    touched: bool,
    /// The statement deadline the pool gave it (`SLEEP <ms>` longer than it fails).
    pub deadline: Option<Duration>,
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.db.close_gate.pass();
        self.db.live.fetch_sub(1, SeqCst);
        if self.db.panic_on_close.load(SeqCst) && !std::thread::panicking() {
            panic!("fake driver panics while closing a connection");
        }
    }
}

impl FakeConn {
    fn alive(&self) -> bool {
        self.epoch == self.db.epoch()
    }
    fn dead_error(&mut self) -> DriverError {
        self.broken = true;
        DriverError::new(DriverErrorKind::Broken, "server closed the connection")
    }
}

impl Driver for FakeDriver {
    type Conn = FakeConn;
    type Handle = FakeConn;

    fn name(&self) -> &str {
        self.name
    }

    fn connect(&self, args: &ConnArgs, _timeout: Duration) -> Result<FakeConn, DriverError> {
        let name = args.get("db").unwrap_or_default();
        let db = DATABASES
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                DriverError::new(DriverErrorKind::Connect, format!("no database {name}"))
            })?;
        db.connect_attempts.fetch_add(1, SeqCst);
        db.enter();
        if std::thread::current().name() == Some("pool-primer") {
            db.primer_gate.pass();
        } else {
            db.caller_connects.fetch_add(1, SeqCst);
        }
        db.connect_gate.pass();
        if db.panic_connect.load(SeqCst) {
            db.live.fetch_sub(1, SeqCst);
            panic!("fake driver panics in connect");
        }
        if db.fail_connect.load(SeqCst) {
            db.live.fetch_sub(1, SeqCst);
            // A careless driver that echoes the password: the pool must scrub it.
            let password = args.get("password").unwrap_or("");
            return Err(DriverError::new(
                DriverErrorKind::Connect,
                format!("connection refused (tried with password {password})"),
            ));
        }
        db.connects.fetch_add(1, SeqCst);
        let id = db.next_id.fetch_add(1, SeqCst) + 1;
        let epoch = db.epoch();
        Ok(FakeConn {
            db,
            id,
            epoch,
            in_tx: false,
            var: None,
            broken: false,
            touched: false,
            deadline: None,
        })
    }

    fn detach(&self, mut conn: FakeConn, reset: ResetMode) -> Result<FakeConn, DriverError> {
        conn.db.detaches.fetch_add(1, SeqCst);
        conn.db.detach_gate.pass();
        if conn.db.fail_detach.load(SeqCst) {
            return Err(DriverError::new(DriverErrorKind::Broken, "reset failed"));
        }
        if !conn.alive() {
            return Err(conn.dead_error());
        }
        conn.in_tx = false;
        conn.touched = false;
        if reset == ResetMode::Full {
            conn.var = None;
        }
        Ok(conn)
    }

    fn attach(&self, handle: FakeConn) -> Result<FakeConn, DriverError> {
        Ok(handle)
    }

    fn connected(&self, handle: &mut FakeConn, timeout: Duration) -> bool {
        handle.db.checks.fetch_add(1, SeqCst);
        handle.db.check_gate.pass();
        let delay = Duration::from_millis(handle.db.check_delay_ms.load(SeqCst));
        if !delay.is_zero() {
            std::thread::sleep(delay.min(timeout));
            return false;
        }
        handle.alive()
    }

    fn can_detach(&self) -> bool {
        self.detach
    }
}

impl Connection for FakeConn {
    /// `BEGIN`, `SET <value>`, `BREAK`, `SLEEP <ms>` (no real sleep: past the deadline it
    /// fails with `StatementTimeout` at once, the session usable, as after a server's cancel;
    /// otherwise it counts `<ms>`); anything else is a no-op.
    fn execute(&mut self, sql: &str, _params: &[Value]) -> Result<u64, DriverError> {
        self.touched = true;
        if !self.alive() {
            return Err(self.dead_error());
        }
        match sql.split_once(' ').map_or((sql, ""), |(a, b)| (a, b)) {
            ("BEGIN", _) => self.in_tx = true,
            ("SET", value) => self.var = Some(value.to_owned()),
            ("BREAK", _) => self.broken = true,
            ("SLEEP", ms) => {
                let ms: u64 = ms.parse().expect("SLEEP <ms>");
                if self.deadline.is_some_and(|d| d < Duration::from_millis(ms)) {
                    return Err(DriverError::new(
                        DriverErrorKind::StatementTimeout,
                        "past its deadline, the statement was cancelled",
                    ));
                }
                return Ok(ms);
            }
            _ => {}
        }
        Ok(0)
    }

    fn set_statement_timeout(&mut self, timeout: Option<Duration>) -> bool {
        if self.db.unbounded_statements.load(SeqCst) {
            return false;
        }
        self.deadline = timeout;
        true
    }

    /// One row: id, epoch, in_tx, var.
    fn query(&mut self, _sql: &str, _params: &[Value]) -> Result<Rows, DriverError> {
        self.touched = true;
        if !self.alive() {
            return Err(self.dead_error());
        }
        Ok(Rows::new(
            vec!["id".into(), "epoch".into(), "in_tx".into(), "var".into()],
            vec![vec![
                Value::Int(self.id as i64),
                Value::Int(self.epoch as i64),
                Value::Bool(self.in_tx),
                self.var.clone().into(),
            ]],
        ))
    }

    fn is_broken(&self) -> bool {
        if self.db.panic_is_broken.load(SeqCst) {
            panic!("fake driver panics in is_broken");
        }
        self.broken
    }

    fn native(&self) -> &dyn Any {
        self
    }

    fn native_mut(&mut self) -> &mut dyn Any {
        self.touched = true;
        self
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<FakeConn>()
    }

    fn needs_reset(&self) -> bool {
        self.touched
    }
}
