//! Fault tests on a MariaDB of their own (restarted here), and a loopback proxy that can
//! blackhole traffic to prove `connected` is bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode, Value};
use pool_mysql::MysqlDriver;
use pool_testservers::{shared_maria, MariaServer};

mod common;
use common::{connect, TIMEOUT};

#[test]
fn restart_breaks_old_connections_and_handles() {
    let driver = MysqlDriver;
    let mut server = MariaServer::start().expect("own server");
    let mut parked = driver
        .detach(connect(&server.args()), ResetMode::Full)
        .expect("detach");
    let mut parked_socket = driver
        .detach(connect(&server.socket_args()), ResetMode::Full)
        .expect("detach");
    let mut attached = connect(&server.args());

    server.restart().expect("restart");

    let started = Instant::now();
    assert!(!driver.connected(&mut parked, TIMEOUT));
    assert!(!driver.connected(&mut parked_socket, TIMEOUT));
    println!(
        "connected() on dead handles answered in {:?}",
        started.elapsed()
    );
    assert!(parked.is_broken());

    let err = attached
        .query("SELECT 1", &[])
        .expect_err("old session is gone");
    println!("query after restart: {err:?}");
    assert_eq!(err.kind(), DriverErrorKind::Broken);
    assert!(attached.is_broken());
    assert!(driver.detach(attached, ResetMode::Full).is_err());

    let mut fresh = connect(&server.args());
    assert_eq!(
        fresh.query("SELECT 1", &[]).expect("new session").scalar(),
        Some(&Value::Int(1))
    );
}

/// Forwards one TCP connection to `target`; once `blackhole` is set, drops everything in both
/// directions without closing (a silent network path).
fn blackhole_proxy(target: u16, blackhole: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
            return;
        };
        let pipe = |mut from: TcpStream, mut to: TcpStream, blackhole: Arc<AtomicBool>| {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) if !blackhole.load(Ordering::SeqCst) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        };
        let (c2, u2) = (
            client.try_clone().expect("clone"),
            upstream.try_clone().expect("clone"),
        );
        let b2 = Arc::clone(&blackhole);
        thread::spawn(move || pipe(c2, u2, b2));
        pipe(upstream, client, blackhole);
    });
    port
}

#[test]
fn connected_is_bounded_on_a_silent_path_and_queries_are_not() {
    let driver = MysqlDriver;
    let server = shared_maria();
    let blackhole = Arc::new(AtomicBool::new(false));
    let port = blackhole_proxy(server.port(), Arc::clone(&blackhole));
    let args = server
        .args()
        .replace(&format!("port={}", server.port()), &format!("port={port}"));
    let mut conn = connect(&args);
    // User statements run without a read timeout: longer than any bound used below.
    let slept = Instant::now();
    conn.query("SELECT SLEEP(0.5)", &[]).expect("sleep");
    assert!(slept.elapsed() >= Duration::from_millis(500));

    let mut handle = driver.detach(conn, ResetMode::Full).expect("detach");
    assert!(driver.connected(&mut handle, Duration::from_millis(200)));
    blackhole.store(true, Ordering::SeqCst);
    let started = Instant::now();
    assert!(!driver.connected(&mut handle, Duration::from_millis(200)));
    let took = started.elapsed();
    println!("connected() on a blackholed path answered false in {took:?}");
    assert!(took < Duration::from_secs(2), "bounded, took {took:?}");
    assert!(handle.is_broken());
}
