//! Thread-leak measurements for a PostgreSQL driver, generic over the driver so the old
//! driver on the `postgres` crate (dev/pg-sync-baseline, which includes this file) and the new
//! one run the very same checks.
//!
//! * [`silent_connects`]: N connects with a short timeout against a peer that accepts and never
//!   answers; within 0.5 s of the last timeout the process must have no more threads than
//!   before, while the peer stays silent, and every socket to it must be closed.
//! * [`silent_closes`]: N parked connections whose network went silent (a proxy in `Blackhole`
//!   mode) fail their liveness check (which leaves its request unanswered) and are closed,
//!   each on a helper thread, as the pool's reaper and closer do; within 0.5 s of the last
//!   close the helpers must be gone (a close that waits for the silent server's answer keeps
//!   its helper, and the pool's room, for as long as the network stays silent).
//!
//! The proxy's and the silent peer's own threads (`test-proxy*`, `test-silent-peer`) and the
//! test servers' keeper (`pool-testservers-keeper`) are not counted: they belong to the test,
//! live as long as their connections or servers, and are the same for every driver. Every
//! thread of the process is counted otherwise, so no other test may run meanwhile: a binary
//! runs its measurements in one test, or each under [`alone`] with `--test-threads 1` (the
//! harness starts a thread per test, and one that waits for [`alone`] still counts).

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode};
use pool_testservers::{Preamble, Proxy, ProxyMode, SilentListener};

/// How soon after the last timeout or close the thread count must be back.
pub const WITHIN: Duration = Duration::from_millis(500);

/// What one measurement saw.
#[derive(Debug)]
pub struct Leak {
    /// Threads (not counting the test's proxy and peer) before the first attempt.
    pub before: usize,
    /// The most seen after the last attempt returned.
    pub peak: usize,
    /// Threads [`WITHIN`] after the last attempt returned (or when the count came back).
    pub after: usize,
    /// Names of the threads that stayed, with their count.
    pub left: Vec<(String, usize)>,
    /// The longest single attempt (connect, or close).
    pub slowest: Duration,
}

impl Leak {
    /// Whether every thread the attempts started was gone in time.
    pub fn none(&self) -> bool {
        self.after <= self.before
    }
}

/// Serialises the measurements of one test binary.
pub fn alone() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The names of this process's threads, except the test's proxy and silent peer.
fn thread_names() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        panic!("cannot read /proc/self/task");
    };
    tasks
        .flatten()
        .map(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .map(|name| name.trim().to_owned())
                .unwrap_or_default()
        })
        // `comm` holds 15 bytes of the name: "test-silent-pee".
        .filter(|name| {
            !name.starts_with("test-proxy")
                && !name.starts_with("test-silent-pe")
                && !name.starts_with("pool-testserver")
        })
        .collect()
}

fn threads() -> usize {
    thread_names().len()
}

/// Threads by name, most first.
fn tally() -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in thread_names() {
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    counts
}

/// Polls until the count is at most `before` or [`WITHIN`] passed.
fn settle(before: usize, slowest: Duration) -> Leak {
    let deadline = Instant::now() + WITHIN;
    let mut peak = threads();
    loop {
        let now = threads();
        peak = peak.max(now);
        if now <= before || Instant::now() >= deadline {
            return Leak {
                before,
                peak,
                after: now,
                left: tally(),
                slowest,
            };
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// `count` connects with `timeout` to a peer that says `preamble` and then nothing, with
/// arguments `args(port)`. Each must fail (Timeout) within `timeout` plus 200 ms; every socket
/// must be closed within [`WITHIN`] after the last one, the peer still listening.
pub fn silent_connects<D: Driver>(
    driver: &D,
    preamble: Preamble,
    args: impl Fn(u16) -> String,
    count: usize,
    timeout: Duration,
) -> Leak {
    let peer = SilentListener::start_with(preamble).expect("a silent peer");
    let parsed = driver.parse_args(&args(peer.port())).expect("arguments");
    let before = threads();
    let mut slowest = Duration::ZERO;
    for _ in 0..count {
        let started = Instant::now();
        let error = match driver.connect(&parsed, timeout) {
            Ok(_) => panic!("connected to a peer that never answers"),
            Err(error) => error,
        };
        slowest = slowest.max(started.elapsed());
        assert_eq!(error.kind(), DriverErrorKind::Timeout, "{error}");
    }
    let leak = settle(before, slowest);
    assert!(
        slowest < timeout + Duration::from_millis(200),
        "a connect took {slowest:?} with a timeout of {timeout:?}"
    );
    assert!(peer.accepted() >= count, "the connects reached the peer");
    assert!(
        peer.wait_all_closed(WITHIN),
        "{} sockets to the silent peer still open: {leak:?}",
        peer.open_connections()
    );
    leak
}

/// `count` connections to `port` through a proxy, each used once and parked (detached); then
/// the proxy goes silent, each fails its liveness check and is closed on a helper thread of
/// its own (as the pool's reaper and closer do). Returns the measurement; the helpers that did
/// not finish are released when the proxy is dropped at the end.
pub fn silent_closes<D: Driver>(
    driver: &D,
    port: u16,
    args: impl Fn(u16) -> String,
    count: usize,
) -> Leak {
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))).expect("proxy");
    let parsed = driver.parse_args(&args(proxy.port())).expect("arguments");
    let mut parked = Vec::new();
    for _ in 0..count {
        let mut conn = driver
            .connect(&parsed, Duration::from_secs(10))
            .expect("connect through the proxy");
        conn.query("SELECT 1", &[]).expect("a statement");
        parked.push(driver.detach(conn, ResetMode::Full).expect("detach"));
    }
    proxy.set_mode(ProxyMode::Blackhole);
    for handle in &mut parked {
        assert!(
            !driver.connected(handle, Duration::from_millis(100)),
            "a silent connection is not alive"
        );
    }
    let before = threads();
    let started = Instant::now();
    let closers: Vec<_> = parked
        .into_iter()
        .map(|conn| {
            thread::Builder::new()
                .name("leak-test-close".into())
                .spawn(move || {
                    let started = Instant::now();
                    drop(conn);
                    started.elapsed()
                })
                .expect("a closing thread")
        })
        .collect();
    let leak = settle(before, Duration::ZERO);
    let mut slowest = Duration::ZERO;
    for closer in closers {
        if closer.is_finished() {
            slowest = slowest.max(closer.join().unwrap_or(Duration::MAX));
        } else {
            slowest = started.elapsed();
        }
    }
    // Only now: ending the proxy ends the silence (and releases a close that waited for it).
    drop(proxy);
    Leak { slowest, ..leak }
}
