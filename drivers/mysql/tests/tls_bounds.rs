//! What bounds TLS connects, checks and closes, and that none leaves a thread behind. Alone in
//! its own test binary, and its tests one at a time, so that nothing else moves the process's
//! thread count while it is measured.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode};
use pool_mysql::MysqlDriver;
use pool_testservers::{
    MariaServer, Preamble, Proxy, ProxyMode, ServerCert, SilentListener, TestPki,
};

/// This process's threads but the test proxy's pumps (which end as the sockets they copy
/// close), by name from `/proc/self/task/*/comm`.
fn threads_but_the_proxys() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("proc tasks")
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .map(|name| name.trim() != "test-proxy-pump")
                .unwrap_or(false)
        })
        .count()
}

/// The tests of this file run one at a time: each compares thread counts.
static SERIAL: Mutex<()> = Mutex::new(());

/// The threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}

fn tls_server() -> (TestPki, MariaServer) {
    let pki = TestPki::generate().unwrap_or_else(|e| panic!("making the PKI: {e}"));
    let server = MariaServer::start_tls(&pki, ServerCert::Valid)
        .unwrap_or_else(|e| panic!("starting MariaDB: {e}"));
    (pki, server)
}

/// The peer sends a real TLS MariaDB's greeting (which offers TLS) and then nothing: the client
/// sends its `SSLRequest` and ClientHello and waits for a ServerHello that never comes.
#[test]
fn tls_handshakes_against_a_silent_peer_are_bounded_and_leave_no_thread() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    const HANDSHAKES: usize = 10;
    let bound = Duration::from_millis(300);
    let (pki, maria) = tls_server();
    let peer = SilentListener::start_with(Preamble::Greet(maria.greeting().expect("greeting")))
        .expect("silent listener");
    let driver = MysqlDriver;
    let baseline = threads();
    let mut slowest = Duration::ZERO;
    for mode in ["REQUIRED", "VERIFY_IDENTITY", "PREFERRED"] {
        let args = driver
            .parse_args(&format!(
                "host=localhost port={} user=u password=s3cret-pw ssl-mode={mode} ssl-ca='{}'",
                peer.port(),
                pki.ca_cert().display()
            ))
            .expect("args");
        for _ in 0..HANDSHAKES {
            let started = Instant::now();
            let error = driver.connect(&args, bound).expect_err("a silent peer");
            let took = started.elapsed();
            slowest = slowest.max(took);
            assert_eq!(error.kind(), DriverErrorKind::Timeout, "{mode}: {error}");
            // Before the fix, 980 ms: the crate waited three times (see `opts.rs`).
            assert!(
                took < bound + Duration::from_millis(400),
                "{mode}: the handshake took {took:?}, bound {bound:?}"
            );
            assert!(
                !format!("{error} {error:?}").contains("s3cret"),
                "{error:?}"
            );
        }
    }
    assert!(
        peer.received() > 3 * HANDSHAKES * 100,
        "the client got as far as its ClientHello ({} bytes received)",
        peer.received()
    );
    // The client closed every socket it gave up on, and no thread waits on one.
    assert!(peer.wait_all_closed(Duration::from_millis(500)));
    let after = threads();
    println!(
        "{} TLS handshakes against a silent peer (bound {bound:?}): slowest {slowest:?}; \
         threads {baseline} before, {after} after",
        3 * HANDSHAKES
    );
    assert_eq!(after, baseline, "threads before and after");
}

/// Established TLS sessions whose network goes silent: the liveness check, the reset and the
/// close are each bounded, and leave no thread.
#[test]
fn checks_resets_and_closes_on_a_silent_network_are_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    const SESSIONS: usize = 4;
    let bound = Duration::from_millis(500);
    let (_pki, maria) = tls_server();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], maria.port()))).expect("proxy");
    let driver = MysqlDriver;
    let args = driver
        .parse_args(&maria.tls_args("VERIFY_IDENTITY").replace(
            &format!("port={}", maria.port()),
            &format!("port={}", proxy.port()),
        ))
        .expect("args");
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        let mut conn = driver
            .connect(&args, bound)
            .expect("connect through the proxy");
        assert!(conn.is_encrypted());
        conn.query("SELECT 1", &[]).expect("select");
        sessions.push(conn);
    }
    let mut parked = driver
        .detach(
            driver.connect(&args, bound).expect("connect"),
            ResetMode::Full,
        )
        .expect("untouched: no I/O");
    let baseline = threads_but_the_proxys();
    proxy.set_mode(ProxyMode::Blackhole);

    let started = Instant::now();
    assert!(!driver.connected(&mut parked, Duration::from_millis(200)));
    let check = started.elapsed();
    assert!(check < Duration::from_secs(1), "the check took {check:?}");

    // A used session's reset waits at most the connect bound it was opened with.
    let used = sessions.pop().expect("a session");
    let started = Instant::now();
    let error = driver
        .detach(used, ResetMode::Full)
        .expect_err("silent network");
    let reset = started.elapsed();
    assert_eq!(error.kind(), DriverErrorKind::Broken, "{error}");
    assert!(
        reset < bound + Duration::from_millis(500),
        "the reset took {reset:?}"
    );

    // Closing writes COM_QUIT into the socket's buffer: no read, so no wait on the peer.
    let started = Instant::now();
    drop(sessions);
    drop(parked);
    let close = started.elapsed();
    assert!(close < Duration::from_secs(1), "the closes took {close:?}");
    let after = threads_but_the_proxys();
    println!(
        "silent network: check {check:?}, reset {reset:?}, {SESSIONS} closes {close:?}; \
         threads (but the proxy's pumps) {baseline} before, {after} after"
    );
    assert_eq!(after, baseline, "threads before and after");
}
