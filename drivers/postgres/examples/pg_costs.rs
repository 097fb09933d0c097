//! Measures what the driver's operations cost against a private server: cold connects, the
//! full and rollback-only detach, a bare round trip, and the reset candidates that were
//! rejected. Prints medians and 90th percentiles of 200 runs each.
//!
//! ```text
//! cargo run -p pool-postgres --release --example pg_costs
//! ```

use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, ResetMode};
use pool_postgres::{PgClient, PgConn, PgDriver};

const RUNS: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = pool_testservers::PgServer::start()?;
    let timeout = Duration::from_secs(10);
    let trust_tcp = PgDriver.parse_args(&server.trust_args())?;
    let trust_unix = PgDriver.parse_args(&server.trust_socket_args())?;
    let scram_tcp = PgDriver.parse_args(&server.scram_args())?;

    for (label, args) in [
        ("connect trust tcp", &trust_tcp),
        ("connect trust unix", &trust_unix),
        ("connect scram tcp", &scram_tcp),
    ] {
        report(label, || {
            let started = Instant::now();
            let conn = PgDriver.connect(args, timeout).expect("connect");
            let took = started.elapsed();
            drop(conn);
            took
        });
    }

    for (label, args) in [("tcp", &trust_tcp), ("unix", &trust_unix)] {
        let mut conn = Some(PgDriver.connect(args, timeout)?);
        let mut cycle = |mode: ResetMode, dirty: &str| {
            let mut c: PgConn = conn.take().expect("connection");
            if !dirty.is_empty() {
                c.execute(dirty, &[]).expect("dirty"); // not timed
            }
            let started = Instant::now();
            let handle = PgDriver.detach(c, mode).expect("detach");
            let took = started.elapsed();
            conn = Some(PgDriver.attach(handle).expect("attach"));
            took
        };
        report(&format!("detach full, untouched: no I/O ({label})"), || {
            cycle(ResetMode::Full, "")
        });
        report(&format!("detach full, after a SELECT ({label})"), || {
            cycle(ResetMode::Full, "SELECT 1")
        });
        report(&format!("detach full, in a transaction ({label})"), || {
            cycle(
                ResetMode::Full,
                "BEGIN; SET LOCAL work_mem = '1MB'; SET search_path = x",
            )
        });
        report(&format!("detach full, with a PREPARE ({label})"), || {
            cycle(ResetMode::Full, "PREPARE p AS SELECT 1")
        });
        report(
            &format!("detach rollback-only, after a SELECT ({label})"),
            || cycle(ResetMode::RollbackOnly, "SELECT 1"),
        );
        let mut conn = conn.take().expect("connection");
        report(&format!("connected (empty query) ({label})"), || {
            let started = Instant::now();
            // A parked handle is a `PgConn`, so the attached one can be checked directly.
            assert!(PgDriver.connected(&mut conn, timeout));
            started.elapsed()
        });
        let client = conn
            .native_mut()
            .downcast_mut::<PgClient>()
            .expect("native client");
        for (name, batches) in [
            ("candidate: SELECT 1", vec!["SELECT 1"]),
            (
                "candidate: ROLLBACK then DISCARD ALL",
                vec!["ROLLBACK", "DISCARD ALL"],
            ),
            (
                "candidate: ROLLBACK; DISCARD ALL's equivalent with DEALLOCATE ALL",
                vec![
                    "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
                      DEALLOCATE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); \
                      DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES",
                ],
            ),
            ("chosen: FULL_RESET", vec![pool_postgres::reset::FULL_RESET]),
        ] {
            report(&format!("{name} ({label})"), || {
                let started = Instant::now();
                for batch in &batches {
                    client.batch_execute(batch).expect("batch");
                }
                started.elapsed()
            });
        }
    }
    Ok(())
}

/// Runs `once` RUNS times and prints the median and 90th percentile.
fn report(label: &str, mut once: impl FnMut() -> Duration) {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| once()).collect();
    times.sort();
    println!(
        "{label:<75} median {:>8.1} µs   p90 {:>8.1} µs",
        micros(times[RUNS / 2]),
        micros(times[RUNS * 9 / 10])
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
