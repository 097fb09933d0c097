//! A TLS handshake against a peer that goes silent is bounded by the connect timeout and leaves
//! no thread behind. Alone in its own test binary, so that no other test's threads move the
//! process's thread count while it is measured.
//!
//! The peer is a listener that sends a MySQL greeting offering TLS, then reads everything the
//! client sends (the `SSLRequest`, the TLS ClientHello) and never answers: the handshake waits
//! for a ServerHello that never comes. No real server is needed for that.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use pool_driver::{Driver, DriverErrorKind};
use pool_mysql::MysqlDriver;

/// A protocol-10 greeting from a MySQL 8.0 server offering TLS (`CLIENT_SSL`), with the usual
/// capabilities and `mysql_native_password`.
fn greeting() -> Vec<u8> {
    const CLIENT_LONG_PASSWORD: u32 = 0x1;
    const CLIENT_LONG_FLAG: u32 = 0x4;
    const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
    const CLIENT_PROTOCOL_41: u32 = 0x200;
    const CLIENT_SSL: u32 = 0x800;
    const CLIENT_TRANSACTIONS: u32 = 0x2000;
    const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
    const CLIENT_MULTI_STATEMENTS: u32 = 0x1_0000;
    const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
    const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
    let caps = CLIENT_LONG_PASSWORD
        | CLIENT_LONG_FLAG
        | CLIENT_CONNECT_WITH_DB
        | CLIENT_PROTOCOL_41
        | CLIENT_SSL
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_MULTI_STATEMENTS
        | CLIENT_MULTI_RESULTS
        | CLIENT_PLUGIN_AUTH;
    let mut payload = vec![10u8];
    payload.extend_from_slice(b"8.0.36\0");
    payload.extend_from_slice(&7u32.to_le_bytes());
    payload.extend_from_slice(b"abcdefgh\0");
    payload.extend_from_slice(&(caps as u16).to_le_bytes());
    payload.push(0x21); // utf8_general_ci
    payload.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
    payload.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    payload.push(21); // length of the scramble, with its terminating zero
    payload.extend_from_slice(&[0; 10]);
    payload.extend_from_slice(b"ijklmnopqrst\0");
    payload.extend_from_slice(b"mysql_native_password\0");
    let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0); // sequence id
    packet.extend_from_slice(&payload);
    packet
}

/// Starts the silent peer on a free port: one thread for the listener, one per connection that
/// holds its socket open and swallows what arrives (a network that goes quiet, not a peer that
/// hangs up). All of them exist before the baseline is taken.
fn silent_tls_peer() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if stream.write_all(&greeting()).is_err() {
                continue;
            }
            // Read without answering, on this thread: nothing the client sends gets a reply.
            let _ = stream.set_nonblocking(true);
            let mut sink = [0u8; 4096];
            let _ = stream.read(&mut sink);
            held.push(stream);
        }
    });
    port
}

/// The threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}

#[test]
fn tls_handshakes_against_a_silent_peer_are_bounded_and_leave_no_thread() {
    const HANDSHAKES: usize = 10;
    let bound = Duration::from_millis(300);
    let port = silent_tls_peer();
    let driver = MysqlDriver;
    let baseline = threads();
    let mut slowest = Duration::ZERO;
    for mode in ["REQUIRED", "VERIFY_IDENTITY", "PREFERRED"] {
        let args = driver
            .parse_args(&format!(
                "host=127.0.0.1 port={port} user=u password=s3cret-pw ssl-mode={mode}"
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
                took < bound + Duration::from_millis(300),
                "{mode}: the handshake took {took:?}, bound {bound:?}"
            );
            assert!(
                !format!("{error} {error:?}").contains("s3cret"),
                "{error:?}"
            );
        }
    }
    // The `mysql` crate is synchronous: a timed-out connect has no thread to leave behind.
    let after = threads();
    println!(
        "{} TLS handshakes against a silent peer (bound {bound:?}): slowest {slowest:?}; \
         threads {baseline} before, {after} after",
        3 * HANDSHAKES
    );
    assert_eq!(after, baseline, "threads before and after");
}
