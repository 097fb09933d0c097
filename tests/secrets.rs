//! No error, `Debug` output, stats or log line ever contains a password from the args.
//! Its own test binary: it installs a global tracing subscriber that records every event.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::fake::new_db;
use common::logs::Captured;
use pool::Settings;

const PASSWORD: &str = "Sup3r-Secret-Pw";

#[test]
fn passwords_never_appear_in_errors_debug_stats_or_logs() {
    let logs = Captured::install(tracing::Level::TRACE);

    let db = new_db("secret");
    let args = format!("db={} user=app password={PASSWORD}", db.name);
    pool::configure(
        "fake",
        &args,
        Settings {
            max_open: 1,
            acquire_timeout: Duration::from_millis(20),
            ..Settings::default()
        },
    )
    .unwrap();
    let mut seen = Vec::new();

    // A connect error whose driver message echoes the password.
    db.fail_connect.store(true, SeqCst);
    let err = pool::open("fake", &args).unwrap_err();
    seen.push(format!("{err} {err:?}"));
    db.fail_connect.store(false, SeqCst);

    // A timeout (with the last connect error in it), a connection's Debug, stats.
    let conn = pool::open("fake", &args).unwrap();
    seen.push(format!("{conn:?}"));
    let a = args.clone();
    let timeout = std::thread::spawn(move || pool::open("fake", &a).unwrap_err())
        .join()
        .unwrap();
    seen.push(format!("{timeout} {timeout:?}"));
    seen.push(format!(
        "{:?} {:?}",
        pool::stats("fake", &args).unwrap(),
        pool::all_stats()
    ));
    // A failed reset: not the caller's error (release is Ok), but logged with the driver's
    // message.
    db.fail_detach.store(true, SeqCst);
    conn.release()
        .expect("a failed reset does not fail the release");
    // Invalid args around a password.
    let invalid = pool::open("fake", &format!("password={PASSWORD} user")).unwrap_err();
    seen.push(format!("{invalid} {invalid:?}"));

    let logged = logs.text();
    assert!(
        logged.contains("connect failed") && logged.contains("reset failed"),
        "the log captured events: {logged}"
    );
    assert!(
        seen[0].contains("connection refused"),
        "the server's message is kept: {}",
        seen[0]
    );
    for text in seen.iter().chain(std::iter::once(&logged)) {
        assert!(!text.contains(PASSWORD), "password leaked: {text}");
    }
}
