//! Process-wide operations (`shutdown`, `configure_defaults`), in their own test binary
//! because they affect every pool of the process.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::fake::new_db;
use common::{wait_until, SOON};
use pool::{Error, Settings};

/// One test function, so no other test's pools are shut down underneath it.
#[test]
fn defaults_then_shutdown() {
    defaults_apply_to_pools_without_their_own_settings();
    configure_wins_over_a_racing_configure_defaults();
    shutdown_closes_parked_fails_waiters_and_joins_threads();
    open_after_shutdown_starts_a_fresh_pool();
}

fn defaults_apply_to_pools_without_their_own_settings() {
    let (plain, own) = (new_db("defaults"), new_db("own"));
    let (plain_args, own_args) = (format!("db={}", plain.name), format!("db={}", own.name));
    pool::configure(
        "fake",
        &own_args,
        Settings {
            max_open: 3,
            ..Settings::default()
        },
    )
    .unwrap();
    let _ = pool::open("fake", &plain_args).unwrap();
    pool::configure_defaults(Settings {
        max_open: 7,
        ..Settings::default()
    })
    .unwrap();
    assert_eq!(pool::stats("fake", &plain_args).unwrap().max_open, 7);
    assert_eq!(
        pool::stats("fake", &own_args).unwrap().max_open,
        3,
        "per-key settings win"
    );
    let bad = pool::configure_defaults(Settings {
        max_open: 0,
        ..Settings::default()
    });
    assert!(matches!(bad, Err(Error::InvalidSettings { .. })));
    pool::configure_defaults(Settings::default()).unwrap();
}

/// `configure` for one key racing `configure_defaults`: once `configure` has returned, its
/// settings hold, whichever ran first. (The key's "configured on its own" mark used to be read,
/// then the defaults applied, with nothing held in between: a `configure` that returned in
/// that window was silently overwritten.)
fn configure_wins_over_a_racing_configure_defaults() {
    let defaults = Settings {
        max_open: 32,
        ..Settings::default()
    };
    let mut overwritten = 0;
    for trial in 0..300 {
        let db = new_db("configure-race");
        let args = format!("db={}", db.name);
        // The pool exists on the defaults, so `configure_defaults` reaches it.
        pool::open("fake", &args).unwrap().release().unwrap();
        let own_args = args.clone();
        let start = Arc::new(Barrier::new(2));
        let own_start = Arc::clone(&start);
        let own = thread::spawn(move || {
            let own = Settings {
                max_open: 5,
                ..Settings::default()
            };
            own_start.wait();
            pool::configure("fake", &own_args, own).unwrap();
        });
        start.wait();
        if trial % 2 == 0 {
            thread::yield_now();
        }
        pool::configure_defaults(defaults.clone()).unwrap();
        own.join().unwrap();
        if pool::stats("fake", &args).unwrap().max_open != 5 {
            overwritten += 1;
        }
    }
    pool::configure_defaults(Settings::default()).unwrap();
    assert_eq!(
        overwritten, 0,
        "explicit settings overwritten by the defaults"
    );
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

fn shutdown_closes_parked_fails_waiters_and_joins_threads() {
    let (busy, parked) = (new_db("busy"), new_db("parked"));
    let (busy_args, parked_args) = (format!("db={}", busy.name), format!("db={}", parked.name));
    let settings = Settings {
        max_open: 1,
        acquire_timeout: Duration::from_secs(60),
        ..Settings::default()
    };
    pool::configure("fake", &busy_args, settings).unwrap();
    let held = pool::open("fake", &busy_args).unwrap();
    let a = busy_args.clone();
    let waiter = thread::spawn(move || pool::open("fake", &a).map(drop));
    wait_until("the waiter is queued", SOON, || {
        pool::stats("fake", &busy_args).unwrap().waiting == 1
    });

    pool::open("fake", &parked_args).unwrap().release().unwrap();
    pool::open("fake", &parked_args).unwrap().release().unwrap(); // wakes the primer
    wait_until("the primer parked a second one", SOON, || {
        parked.live() == 2
    });
    assert!(threads_named("pool-primer") >= 1 && threads_named("pool-reaper") == 1);

    pool::shutdown();
    assert!(matches!(waiter.join().unwrap(), Err(Error::ShutDown)));
    assert_eq!(parked.live(), 0, "parked connections closed");
    assert_eq!(
        (threads_named("pool-primer"), threads_named("pool-reaper")),
        (0, 0),
        "threads joined"
    );
    assert_eq!(
        busy.live(),
        1,
        "a held connection stays usable until released"
    );
    held.release().unwrap();
    assert_eq!(
        busy.live(),
        0,
        "released after shutdown: closed, not parked"
    );
}

fn open_after_shutdown_starts_a_fresh_pool() {
    let db = new_db("after");
    let args = format!("db={}", db.name);
    pool::open("fake", &args).unwrap().release().unwrap();
    pool::shutdown();
    assert_eq!(db.live(), 0, "shutdown closed the parked connection");
    let conn = pool::open("fake", &args).unwrap();
    assert_eq!(db.connects.load(SeqCst), 2, "a fresh pool connects again");
    drop(conn);
    pool::shutdown();
    wait_until("everything closed", SOON, || db.live() == 0);
}
