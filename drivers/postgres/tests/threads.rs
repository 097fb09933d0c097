//! No thread outlives a connect or a close, however long the server stays silent (issue 17).
//!
//! The driver on the `postgres` crate left a thread blocked per timed-out connect (10 connects
//! with a 300 ms timeout left 10 `pool-postgres-c` threads) and per close on a silent network;
//! the same measurements against it are in dev/pg-sync-baseline/tests/threads.rs. Here each
//! connection owns its socket: a timed-out connect drops it, a close never waits.

mod common;

use std::time::Duration;

use common::leaks;
use pool_postgres::PgDriver;
use pool_testservers::Preamble;

const CONNECTS: usize = 10;
const TIMEOUT: Duration = Duration::from_millis(300);

/// The three measurements, one after the other in one test: each counts every thread of the
/// process, so no other test of this binary may run (and start its harness thread) meanwhile.
/// As separate tests they raced: a test thread the harness started during a measurement, to
/// wait for its turn, was counted as a leak (CI, stop 23).
#[test]
fn no_thread_outlives_a_connect_or_a_close() {
    timed_out_connects_leave_no_thread();
    connects_timed_out_in_the_tls_handshake_leave_no_thread();
    closes_on_a_silent_network_leave_no_thread();
}

/// A silent server: the startup message goes unanswered.
fn timed_out_connects_leave_no_thread() {
    let leak = leaks::silent_connects(
        &PgDriver,
        Preamble::Nothing,
        |port| format!("host=127.0.0.1 port={port} user=x dbname=y sslmode=disable"),
        CONNECTS,
        TIMEOUT,
    );
    eprintln!("{leak:?}");
    assert!(leak.none(), "{leak:?}");
}

/// A server that says yes to TLS and then nothing: the silence falls inside the handshake.
fn connects_timed_out_in_the_tls_handshake_leave_no_thread() {
    let leak = leaks::silent_connects(
        &PgDriver,
        Preamble::Answer(b"S".to_vec()),
        |port| format!("host=127.0.0.1 port={port} user=x dbname=y sslmode=require"),
        CONNECTS,
        TIMEOUT,
    );
    eprintln!("{leak:?}");
    assert!(leak.none(), "{leak:?}");
}

/// Closing connections whose network went silent returns at once and leaves no thread.
fn closes_on_a_silent_network_leave_no_thread() {
    let pg = pool_testservers::shared_pg();
    let leak = leaks::silent_closes(
        &PgDriver,
        pg.port(),
        |port| format!("{} port={port}", pg.trust_args()),
        CONNECTS,
    );
    eprintln!("{leak:?}");
    assert!(leak.none(), "{leak:?}");
    assert!(leak.slowest < Duration::from_millis(100), "{leak:?}");
}
