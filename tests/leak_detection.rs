//! Leak detection: a connection held longer than `leak_threshold` is reported once, at WARN,
//! with the backtrace of the `open` that took it; nothing is reported for connections released
//! in time, and the setting is refused at zero. Its own test binary: it installs a global
//! tracing subscriber that records every event.

mod common;

use std::time::Duration;

use common::fake::{args, new_db, quiet};
use common::logs::Captured;
use common::{wait_until, SOON};
use pool::Settings;

fn leak_reports(logs: &Captured) -> Vec<String> {
    logs.text()
        .lines()
        .filter(|l| l.contains("held longer than leak_threshold"))
        .map(str::to_owned)
        .collect()
}

/// The handler that forgets to release: its name must appear in the report's backtrace.
#[inline(never)]
fn forgetful_handler(args: &str) -> pool::Conn {
    pool::open("fake", args).unwrap()
}

#[test]
fn a_connection_held_past_leak_threshold_is_reported_once_with_its_origin() {
    let logs = Captured::install(tracing::Level::WARN);

    let db = new_db("leak");
    let args = args(&db);
    pool::configure(
        "fake",
        &args,
        Settings {
            leak_threshold: Some(Duration::from_millis(30)),
            ..quiet()
        },
    )
    .unwrap();

    // Released well inside the threshold: never reported.
    pool::open("fake", &args).unwrap().release().unwrap();

    let leaked = forgetful_handler(&args);
    wait_until("the leak is reported", SOON, || {
        !leak_reports(&logs).is_empty()
    });
    // Several more sweeps (at least every 30 ms) do not report it again.
    std::thread::sleep(Duration::from_millis(150));
    let reports = leak_reports(&logs);
    assert_eq!(reports.len(), 1, "reported once: {reports:#?}");
    let report = &reports[0];
    assert!(
        report.contains("forgetful_handler"),
        "backtrace names the opener: {report}"
    );
    assert!(
        report.contains("leak_detection.rs"),
        "location of the open: {report}"
    );
    leaked.release().unwrap();

    let zero = Settings {
        leak_threshold: Some(Duration::ZERO),
        ..quiet()
    };
    assert!(matches!(
        pool::configure("fake", &args, zero),
        Err(pool::Error::InvalidSettings { .. })
    ));
}
