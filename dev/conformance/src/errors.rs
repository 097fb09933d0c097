//! Errors: clear, of a kind a caller can match, bounded, and never holding a password.

use std::time::{Duration, Instant};

use pool_driver::{Driver, DriverErrorKind};

use crate::reuse::TIMEOUT;
use crate::subject::{unused_port, Subject};

/// A password that must never be shown (distinctive, so any echo of it is found).
const SECRET: &str = "Wr0ng-Pa55-q7Zk";

/// Wrong credentials: a `Connect` error with the server's reason and without the password, in
/// `Display` and in `Debug`.
pub fn wrong_password_is_a_clear_error_without_the_password<S: Subject>(subject: &S) {
    let error = match subject.connect(&subject.wrong_password_args(SECRET)) {
        Ok(_) => panic!("a wrong password was accepted"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    let shown = format!("{error} {error:?}");
    assert!(!error.message().trim().is_empty());
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("q7Zk"), "{shown}");
}

/// Nothing listens on the port: a `Connect` error naming where it tried, within the timeout.
pub fn unreachable_server_is_a_clear_error_within_the_timeout<S: Subject>(subject: &S) {
    let port = unused_port();
    let args = subject
        .driver()
        .parse_args(&subject.args(Some(port)))
        .expect("parses");
    let started = Instant::now();
    let error = match subject.driver().connect(&args, Duration::from_secs(2)) {
        Ok(_) => panic!("connected to a port nothing listens on"),
        Err(error) => error,
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    assert!(
        error.message().contains(&port.to_string()),
        "names the port: {error}"
    );
}

/// Arguments holding a password show it nowhere: not in `Debug` of the parsed arguments, not
/// in a connect error.
pub fn passwords_never_appear_in_debug_output<S: Subject>(subject: &S) {
    let args = subject.wrong_password_args(SECRET);
    let parsed = subject.driver().parse_args(&args).expect("parses");
    let shown = format!("{parsed:?} {parsed}");
    assert!(!shown.contains(SECRET), "{shown}");
    if let Err(error) = subject.driver().connect(&parsed, TIMEOUT) {
        assert!(!format!("{error:?}").contains(SECRET));
    }
}
