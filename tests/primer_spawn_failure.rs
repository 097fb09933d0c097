//! No primer thread can be started, and the logging layer panics on the caller's thread: an
//! `open` that queued to wait for a reset must not leave a ghost waiter behind.
//!
//! `KeyCore::wait` queues the waiter, unlocks, and only then wakes the primer (the
//! `WaitForReset { prime: true }` case). `Primer::wake` used to log a failed spawn with a bare
//! `tracing::error!`: a panicking layer unwound `open` with its waiter still queued, nobody
//! ever acted on its grants, and the connection whose reset finished next was stranded behind
//! it (found by review; this test failed 6 of 6 runs before the fix). Now the wake never
//! unwinds, and a waiter whose `open` unwinds before it waits leaves the queue anyway.
//!
//! Spawn failure is provoked by capping the process's address space (`setrlimit(RLIMIT_AS)`) just
//! above what it uses, so a new thread's 2 MiB stack cannot be mapped; small allocations still
//! fit. The subscriber is process-global, so this test has a binary of its own.

mod common;

use std::thread;
use std::time::Duration;

use common::engine::{configure, open};
use common::fake::{args, new_db, quiet, stats};
use common::{wait_until, SOON};
use pool::Settings;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const PANICS_ON_LOG: &str = "panics-on-log";

/// Panics on every event logged on a thread named `panics-on-log…`.
struct PanicsOnLog;

impl<S: Subscriber> Layer<S> for PanicsOnLog {
    fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
        if thread::current()
            .name()
            .is_some_and(|n| n.starts_with(PANICS_ON_LOG))
        {
            panic!("a logging layer panicked");
        }
    }
}

fn vm_size_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmSize:"))
        .expect("VmSize");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmSize kB");
    kb * 1024
}

/// Sets the soft cap on this process's address space (`None`: no cap), keeping the hard one.
/// A system call, not the `prlimit` command: raising the cap again must not need memory of
/// its own (spawning `prlimit` under the cap failed for good once the process had grown: the
/// test hung).
fn set_address_space_limit(soft: Option<u64>) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit; getrlimit only writes to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } != 0 {
        return false;
    }
    limit.rlim_cur = soft.map_or(limit.rlim_max, |soft| soft.min(limit.rlim_max));
    // SAFETY: `limit` is a valid rlimit; setrlimit only reads it.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 }
}

#[test]
fn a_failed_primer_spawn_with_a_panicking_log_leaves_no_ghost_waiter() {
    let subscriber = tracing_subscriber::registry().with(PanicsOnLog);
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let db = new_db("review-ghost");
    configure(
        &db,
        Settings {
            max_open: 2,
            acquire_timeout: Duration::from_millis(500),
            ..quiet()
        },
    );
    // One connection released dirty; its reset is held on the resetter thread.
    db.detach_gate.close();
    let mut c1 = open(&db);
    c1.execute("SET x", &[]).unwrap();
    c1.release().unwrap();
    wait_until("the reset is in flight", SOON, || {
        db.detach_gate.arrived() == 1
    });
    let s = stats(&db);
    assert_eq!((s.resetting, s.idle, s.in_use, s.waiting), (1, 0, 0, 0));

    // An open now waits for that reset (`WaitForReset { prime: true }`) and wakes the primer
    // after queueing; no primer thread can start, and the log of that panics.
    let a = args(&db);
    let caller = thread::Builder::new()
        .name(format!("{PANICS_ON_LOG}-caller"))
        .spawn(move || {
            // Warm this thread's allocator first, then cap the address space.
            let _warm = vec![0u8; 4096];
            let limit = vm_size_bytes() + (3 << 19);
            assert!(set_address_space_limit(Some(limit)), "setrlimit");
            // The open queues to wait for the held reset and wakes the primer: its thread
            // cannot be started under the cap. With `acquire_timeout` 500 ms it then times
            // out (the gate opens only after this thread is done).
            let got = std::panic::catch_unwind(|| pool::open("fake", &a).map(drop));
            assert!(set_address_space_limit(None), "setrlimit");
            got.is_err()
        })
        .expect("spawn")
        .join()
        .expect("caller thread");
    // The spawn really failed: no primer thread ran for this key.
    assert_eq!(
        threads_named("pool-primer"),
        0,
        "the primer thread started after all"
    );

    // Whatever the caller saw (before the fix: a panic), nothing waits any more.
    let ghost = stats(&db).waiting;
    db.detach_gate.open();
    wait_until("the reset is done", SOON, || stats(&db).resetting == 0);
    let _ = caller;
    // Every room comes back: both connections can be held at once (the parked one is
    // stranded behind the starving ghost at the front of the queue: newcomers may not
    // overtake it, and it never comes to take it).
    let first = pool::open("fake", &args(&db));
    let second = pool::open("fake", &args(&db));
    let held = [first.is_ok(), second.is_ok()];
    drop((first, second));
    assert!(
        ghost == 0 && held == [true, true],
        "a waiter stayed queued after its open unwound ({ghost} waiting), and max_open \
         connections cannot be held at once ({held:?})"
    );
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}
