//! What watching a PostgreSQL server's role costs (issue 21), side by side with a key that does
//! not watch, interleaved round by round on one private server so both see the same machine:
//!
//! * the liveness check of a parked connection (`Driver::connected`, run after
//!   `validate_after` or when the key's parked connections are suspect): an empty query for an
//!   `any` key, the role query (`pg_is_in_recovery()`, `transaction_read_only`) for a
//!   `read-write` key;
//! * the whole request through each key (`open`, `SELECT 1`, `release`), where the
//!   `read-write` key also reads the reported `in_hot_standby` after each statement and reset.
//!
//! ```text
//! cargo run --release --example role_check_cost [-- ROUNDS]
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use pool::driver::Driver;

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5000);
    let server = pool_testservers::PgServer::start().expect("a private PostgreSQL");
    let any = format!("{}?sslmode=disable", server.url());
    let read_write = format!("{any}&target_session_attrs=read-write");
    let keys = [("any", any), ("read-write", read_write)];
    let driver = pool_postgres::PgDriver;
    let timeout = Duration::from_secs(10);
    let mut conns: Vec<_> = keys
        .iter()
        .map(|(_, args)| {
            let parsed = driver.parse_args(args).expect("args");
            driver.connect(&parsed, timeout).expect("connect")
        })
        .collect();
    let mut checks = [Vec::new(), Vec::new()];
    let mut requests = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Who goes first alternates: the first call after other work pays for it.
        for turn in 0..2 {
            let i = (round + turn) % 2;
            let started = Instant::now();
            assert!(driver.connected(&mut conns[i], timeout), "check");
            checks[i].push(started.elapsed());
            let started = Instant::now();
            let mut conn = pool::open("postgres", &keys[i].1).expect("open");
            black_box(conn.query("SELECT 1", &[]).expect("SELECT 1"));
            conn.release().expect("release");
            requests[i].push(started.elapsed());
        }
    }
    println!("{rounds} rounds, interleaved; p50 (p99) in µs");
    println!("| key | liveness check | open + SELECT 1 + release |");
    println!("| --- | --- | --- |");
    for i in 0..2 {
        let (c50, c99) = percentiles(&mut checks[i]);
        let (r50, r99) = percentiles(&mut requests[i]);
        println!(
            "| `{}` | {c50:.1} ({c99:.1}) | {r50:.1} ({r99:.1}) |",
            keys[i].0
        );
    }
    pool::shutdown();
}
