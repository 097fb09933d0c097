//! Outage under load, on real servers (PostgreSQL in plain text and over verified TLS, MariaDB,
//! Redis): 16 threads loop open → query → release while the server is killed (SIGKILL) for
//! about 3 s and started again on the same port (the TLS server again with TLS). No call hangs
//! past its bound, nothing panics, every failure is an error a handler maps to 503
//! (`Error::is_transient`), the server never sees more than `max_open` sessions of the pool's
//! user, and from 1 s after the server accepts connections again every request succeeds. The
//! test prints the error window and the recovery time it measured.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::real::{fresh_user, Backend, OwnServer};
use pool::{Error, Settings, Value};
use pool_testservers::RedisServer;
use rstest::rstest;

const THREADS: usize = 16;
const MAX_OPEN: usize = 8;
const DOWN_FOR: Duration = Duration::from_secs(3);

fn settings() -> Settings {
    Settings {
        max_open: MAX_OPEN,
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        check_timeout: Duration::from_secs(1),
        validate_after: Duration::from_millis(50),
        primer_backoff_max: Duration::from_millis(500),
        ..Settings::default()
    }
}

/// The longest one request may take: waiting for a connection, then connecting, plus room
/// for a statement and a slow, shared machine.
fn bound() -> Duration {
    let s = settings();
    s.acquire_timeout + s.connect_timeout + Duration::from_secs(2)
}

/// One request's outcome.
struct Outcome {
    finished: Instant,
    took: Duration,
    error: Option<String>,
}

fn request(driver: &str, args: &str, statement: &str, expect: &Value) -> Result<(), Error> {
    let mut conn = pool::open(driver, args)?;
    let rows = conn.query(statement, &[])?;
    assert_eq!(rows.scalar(), Some(expect));
    conn.release()
}

/// A server the test can take down under load: how to reach it, what to ask it, how to kill
/// and start it, and how many sessions the pool's user has on it.
trait Target {
    fn driver(&self) -> &'static str;
    /// What the test prints for the server.
    fn label(&self) -> &'static str {
        self.driver()
    }
    fn args(&self) -> String;
    /// A statement answering one known value.
    fn statement(&self) -> (&'static str, Value);
    fn kill(&mut self);
    fn start_again(&mut self);
    fn sessions(&self) -> i64;
    /// Stats of the pool under test.
    fn stats(&self) -> pool::Stats {
        pool::stats(self.driver(), &self.args()).expect("stats")
    }
}

/// PostgreSQL (plain or TLS) or MariaDB, with a user of the test's own.
struct Sql {
    server: OwnServer,
    name: String,
    args: String,
}

impl Target for Sql {
    fn driver(&self) -> &'static str {
        self.server.server().backend().driver()
    }
    fn label(&self) -> &'static str {
        self.server.server().label()
    }
    fn args(&self) -> String {
        self.args.clone()
    }
    fn statement(&self) -> (&'static str, Value) {
        ("SELECT 1", Value::Int(1))
    }
    fn kill(&mut self) {
        self.server.kill();
    }
    fn start_again(&mut self) {
        self.server.start_again();
    }
    fn sessions(&self) -> i64 {
        self.server.server().admin().sessions(&self.name)
    }
}

/// Redis, with its ACL user; sessions counted by the default user (`CLIENT LIST`).
struct Redis {
    server: RedisServer,
}

impl Target for Redis {
    fn driver(&self) -> &'static str {
        "redis"
    }
    fn args(&self) -> String {
        self.server.args()
    }
    fn statement(&self) -> (&'static str, Value) {
        ("PING", Value::from("PONG"))
    }
    fn kill(&mut self) {
        self.server.kill().expect("kill redis-server");
    }
    fn start_again(&mut self) {
        self.server.restart().expect("start redis-server again");
    }
    fn sessions(&self) -> i64 {
        let user = format!("user={} ", self.server.user());
        let Ok(mut admin) = pool::open("redis", &self.server.default_user_args()) else {
            return 0;
        };
        let list = admin.query("CLIENT LIST", &[]).ok();
        let _ = admin.release();
        let text = list
            .as_ref()
            .and_then(|rows| rows.scalar())
            .and_then(Value::as_str);
        text.map_or(0, |text| {
            text.lines().filter(|l| l.contains(&user)).count() as i64
        })
    }
}

#[rstest]
#[case::postgres(OwnServer::start(Backend::Postgres))]
#[case::postgres_tls(OwnServer::start_pg_tls())]
#[case::mariadb(OwnServer::start(Backend::Maria))]
fn an_outage_under_load_ends_in_bounded_errors_and_full_recovery(#[case] server: OwnServer) {
    let (name, args) = {
        let user = fresh_user(server.server(), "outage");
        (user.name.clone(), user.args.clone())
    };
    outage_under_load(Sql { server, name, args });
}

#[test]
fn a_redis_outage_under_load_ends_in_bounded_errors_and_full_recovery() {
    let server = RedisServer::start().expect("a private redis-server");
    outage_under_load(Redis { server });
}

fn outage_under_load(mut server: impl Target) {
    let (driver, label, args) = (server.driver(), server.label(), server.args());
    pool::configure(driver, &args, settings()).expect("configure");
    let (statement, expect) = server.statement();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (stop, outcomes, args) = (Arc::clone(&stop), Arc::clone(&outcomes), args.clone());
            let expect = expect.clone();
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let started = Instant::now();
                    let result = request(driver, &args, statement, &expect);
                    let error = match result {
                        Ok(()) => None,
                        Err(error) => {
                            assert!(error.is_transient(), "not a 503-able error: {error:?}");
                            Some(error.to_string())
                        }
                    };
                    outcomes.lock().unwrap().push(Outcome {
                        finished: Instant::now(),
                        took: started.elapsed(),
                        error,
                    });
                }
            })
        })
        .collect();

    let mut peak_sessions = 0;
    let mut sample = |server: &dyn Target| {
        for _ in 0..5 {
            peak_sessions = peak_sessions.max(server.sessions());
            thread::sleep(Duration::from_millis(50));
        }
    };
    sample(&server);
    let killed = Instant::now();
    server.kill();
    thread::sleep(DOWN_FOR);
    server.start_again();
    let back = Instant::now();
    // Load goes on for 3 s after the server is back; the last 2 s must be clean.
    for _ in 0..6 {
        sample(&server);
    }
    let settle_until = back + Duration::from_secs(3);
    while Instant::now() < settle_until {
        thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, SeqCst);
    for worker in workers {
        worker.join().expect("a worker panicked");
    }

    let outcomes = outcomes.lock().unwrap();
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
    assert!(
        slowest <= bound(),
        "a request took {slowest:?} (bound {:?})",
        bound()
    );
    let errors: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let first_error = errors.first().map(|o| o.finished.duration_since(killed));
    let last_error = errors.iter().map(|o| o.finished).max();
    let first_success_after_back = outcomes
        .iter()
        .filter(|o| o.error.is_none() && o.finished > back)
        .map(|o| o.finished.duration_since(back))
        .min();
    eprintln!(
        "{label}: {} requests, {} failed; killed for {DOWN_FOR:?}; first error {:?} after the \
         kill; error window {:?}; server back → first success {:?}, → last error {:?}; slowest \
         request {slowest:?}; peak server sessions {peak_sessions} (max_open {MAX_OPEN})",
        outcomes.len(),
        errors.len(),
        first_error,
        last_error
            .zip(errors.first())
            .map(|(last, first)| last.duration_since(first.finished)),
        first_success_after_back,
        last_error.map(|l| l.saturating_duration_since(back)),
    );
    assert!(!errors.is_empty(), "the outage was noticed");
    assert!(first_success_after_back.is_some(), "requests succeed again");
    let late: Vec<&str> = errors
        .iter()
        .filter(|o| o.finished > back + Duration::from_secs(1))
        .filter_map(|o| o.error.as_deref())
        .collect();
    assert!(
        late.is_empty(),
        "failures more than 1 s after recovery: {late:#?}"
    );
    assert!(
        peak_sessions <= MAX_OPEN as i64,
        "the server saw {peak_sessions} sessions of the pool's user (max_open {MAX_OPEN})"
    );
    let stats = server.stats();
    assert!(stats.in_use == 0 && stats.waiting == 0, "{stats:?}");
}
