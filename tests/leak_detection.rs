//! Leak detection: a connection held longer than `leak_threshold` is reported once, at WARN,
//! with the backtrace of the `open` that took it; nothing is reported for connections released
//! in time, and the setting is refused at zero. Its own test binary: it installs a global
//! tracing subscriber that records every event.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::fake::{args, new_db, quiet};
use common::{wait_until, SOON};
use pool::Settings;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn leak_reports(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains("held longer than leak_threshold"))
            .map(str::to_owned)
            .collect()
    }
}

/// The handler that forgets to release: its name must appear in the report's backtrace.
#[inline(never)]
fn forgetful_handler(args: &str) -> pool::Conn {
    pool::open("fake", args).unwrap()
}

#[test]
fn a_connection_held_past_leak_threshold_is_reported_once_with_its_origin() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .init();

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
        !logs.leak_reports().is_empty()
    });
    // Several more sweeps (at least every 30 ms) do not report it again.
    std::thread::sleep(Duration::from_millis(150));
    let reports = logs.leak_reports();
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
