//! A TLS connect against a peer that accepts and never answers (its `ClientHello` goes
//! unanswered) gives up within `connect_timeout` and leaves nothing behind: no thread, no open
//! socket. Alone in its test binary, so the process's thread count is this test's own.

use std::time::{Duration, Instant};

use pool_driver::{Driver, DriverErrorKind};
use pool_redis::RedisDriver;
use pool_testservers::SilentListener;

/// The threads of this process (`/proc/self/task`).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

#[test]
fn a_tls_handshake_against_a_silent_peer_returns_within_connect_timeout_and_leaves_no_thread() {
    let peer = SilentListener::start().expect("silent listener");
    let driver = RedisDriver::new();
    let connect_timeout = Duration::from_millis(300);
    let args = driver
        .parse_args(&format!(
            "rediss://app:hunter2-secret@localhost:{}/0?connect_timeout=0.3",
            peer.port()
        ))
        .expect("args");
    let baseline = threads();
    for round in 0..5 {
        let started = Instant::now();
        let error = driver
            .connect(&args, Duration::from_secs(10))
            .err()
            .unwrap_or_else(|| panic!("round {round}: connected to a silent peer"));
        let took = started.elapsed();
        assert!(
            took < connect_timeout + Duration::from_millis(200),
            "round {round}: {took:?} for a {connect_timeout:?} bound"
        );
        assert_eq!(error.kind(), DriverErrorKind::Timeout, "{error}");
        assert!(error.message().contains("no TLS answer"), "{error}");
        assert!(
            !format!("{error} {error:?}").contains("hunter2"),
            "{error:?}"
        );
        assert_eq!(
            threads(),
            baseline,
            "round {round}: a thread was left behind"
        );
    }
    assert!(peer.received() > 0, "the client sent its hello");
    // Each connect (and the plain probe the driver sends before giving up) closed its socket.
    assert!(
        peer.wait_all_closed(Duration::from_millis(500)),
        "{} connections still open",
        peer.open_connections()
    );
}
