//! LIFO by release order once everything has settled, when a clean release races a flush of
//! the fast slot (`KeyCore::flush_fast`, as called after a stack push, by `park`'s re-check of
//! the stack's top, by the reaper's sweep, or by a cancelled wait). Found by review: a flush
//! that took the slot's connection once and did not look again left an older one there.
//!
//! d (dirty, released first), a (clean) and x (clean) are released in that order of release
//! number: a's release takes its number before x's starts (x's releaser waits for a's
//! `is_broken`, which runs after `release_order`), and a's `detach` waits until x's number is
//! taken, so a parks after x. Once every reset is done the next opens must be x, a, d.
//!
//! Failing interleaving: the resetter's `reset_done(d)` → second `yield_fast_slot` takes x
//! out of the slot → a's `park` puts a into the now empty slot and reads `top_released` (still
//! d's number, lower than a's) → keeps a in the slot → the resetter parks x on the stack
//! (top = x) and never looks at the slot again. Quiescent state: slot = a, stack top = x; the
//! next `open` takes a.

mod common;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use pool_model::{ConnArgs, Connection, Driver, DriverError, ResetMode, Rows, Settings, Value};
use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use shuttle::thread;

#[derive(Default)]
struct Server {
    next: AtomicUsize,
    /// a's `is_broken` ran: its release number is taken.
    a_numbered: AtomicBool,
    /// x's `is_broken` ran: its release number is taken.
    x_numbered: AtomicBool,
    /// The connection ids of a and x (set by the test before releasing).
    a_id: AtomicUsize,
    x_id: AtomicUsize,
}

struct ReproDriver(Arc<Server>);

struct ReproConn {
    server: Arc<Server>,
    id: usize,
    dirty: bool,
}

impl Driver for ReproDriver {
    type Conn = ReproConn;
    type Handle = ReproConn;
    fn name(&self) -> &str {
        "repro"
    }
    fn connect(&self, _: &ConnArgs, _: Duration) -> Result<ReproConn, DriverError> {
        let id = self.0.next.fetch_add(1, SeqCst) + 1;
        Ok(ReproConn {
            server: Arc::clone(&self.0),
            id,
            dirty: false,
        })
    }
    fn detach(&self, mut conn: ReproConn, _: ResetMode) -> Result<ReproConn, DriverError> {
        if conn.id == conn.server.a_id.load(SeqCst) {
            while !conn.server.x_numbered.load(SeqCst) {
                thread::yield_now();
            }
        }
        conn.dirty = false;
        Ok(conn)
    }
    fn attach(&self, handle: ReproConn) -> Result<ReproConn, DriverError> {
        Ok(handle)
    }
    fn connected(&self, _: &mut ReproConn, _: Duration) -> bool {
        true
    }
}

impl Connection for ReproConn {
    fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64, DriverError> {
        Ok(0)
    }
    fn query(&mut self, _: &str, _: &[Value]) -> Result<Rows, DriverError> {
        self.dirty = true;
        Ok(Rows::default())
    }
    fn is_broken(&self) -> bool {
        // Called by `release` right after it took the release number.
        if self.id == self.server.a_id.load(SeqCst) {
            self.server.a_numbered.store(true, SeqCst);
        }
        if self.id == self.server.x_id.load(SeqCst) {
            self.server.x_numbered.store(true, SeqCst);
        }
        false
    }
    fn native(&self) -> &dyn Any {
        self
    }
    fn native_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn native_type_name(&self) -> &'static str {
        "ReproConn"
    }
    fn needs_reset(&self) -> bool {
        self.dirty
    }
}

const ARGS: &str = "db=repro";

fn id(conn: &pool_model::Conn) -> usize {
    conn.native::<ReproConn>().expect("repro conn").id
}

fn wait_for(flag: &AtomicBool) {
    while !flag.load(SeqCst) {
        thread::yield_now();
    }
}

fn body() {
    let server = Arc::new(Server::default());
    pool_model::register(ReproDriver(Arc::clone(&server))).expect("register");
    pool_model::configure(
        "repro",
        ARGS,
        Settings {
            max_open: 3,
            acquire_timeout: Duration::from_secs(30),
            validate_after: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            reap_interval: Duration::from_secs(3600),
            ..Settings::default()
        },
    )
    .expect("configure");
    let opened = Arc::new(AtomicUsize::new(0));
    let d_released = Arc::new(AtomicBool::new(false));
    // `Conn` is !Send: a and x are opened on the threads that release them.
    let t1 = {
        let (server, opened, d_released) = (
            Arc::clone(&server),
            Arc::clone(&opened),
            Arc::clone(&d_released),
        );
        thread::spawn(move || {
            let a = pool_model::open("repro", ARGS).expect("open a");
            server.a_id.store(id(&a), SeqCst);
            opened.fetch_add(1, SeqCst);
            wait_for(&d_released);
            a.release().expect("release a");
            server.a_id.load(SeqCst)
        })
    };
    let t2 = {
        let (server, opened) = (Arc::clone(&server), Arc::clone(&opened));
        thread::spawn(move || {
            let x = pool_model::open("repro", ARGS).expect("open x");
            server.x_id.store(id(&x), SeqCst);
            opened.fetch_add(1, SeqCst);
            // x's release number is taken after a's.
            wait_for(&server.a_numbered);
            x.release().expect("release x");
            server.x_id.load(SeqCst)
        })
    };
    let mut d = pool_model::open("repro", ARGS).expect("open d");
    let d_id = id(&d);
    while opened.load(SeqCst) < 2 {
        thread::yield_now();
    }
    d.query("SET x", &[]).expect("query");
    // d: released first (smallest number), reset on the resetter thread.
    d.release().expect("release d");
    d_released.store(true, SeqCst);
    let a_id = t1.join().expect("t1");
    let x_id = t2.join().expect("t2");
    // Quiescent: no reset in flight, and all three parked (the fast slot counts as idle), so
    // no flush is carrying a connection between the slot and the stack either.
    loop {
        let s = pool_model::stats("repro", ARGS).expect("stats");
        if s.resetting == 0 && s.in_use == 0 && s.idle == 3 {
            break;
        }
        thread::yield_now();
    }
    let again: Vec<_> = (0..3)
        .map(|_| pool_model::open("repro", ARGS).expect("open again"))
        .collect();
    let got: Vec<usize> = again.iter().map(id).collect();
    assert_eq!(
        got,
        [x_id, a_id, d_id],
        "released d, a, x (in that order of release number): not handed out newest first"
    );
    drop(again);
    pool_model::shutdown();
}

/// Under shuttle's random and PCT (depth 3) schedulers, `POOL_MODEL_ITERATIONS` (default
/// 1000) schedules each.
#[test]
fn released_newest_first_once_settled_when_a_release_races_a_flush() {
    common::check(body, common::iterations(1));
}
