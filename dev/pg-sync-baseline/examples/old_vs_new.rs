//! The tokio-postgres driver (`"postgres"`) against the old one on the sync `postgres` crate
//! (`"postgres-sync"`), side by side in one run through the pool, interleaved call by call on
//! one private server (who goes first alternating round by round): what a handler pays per request, per `open`, per release after a
//! statement, and per cold connect. Prints p50 / p90 / p99 in µs and new ÷ old at p50.
//!
//! ```text
//! cargo run -p pool-postgres-sync-baseline --release --example old_vs_new [ROUNDS]
//! ```

use std::time::{Duration, Instant};

use pool_driver::Driver;

type Step = Box<dyn FnMut() -> Duration>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let server = pool_testservers::PgServer::start()?;
    pool::register(pool_postgres_sync_baseline::PgDriver)?;
    // Plain on both sides: the new driver's default (`prefer`) would ask for TLS first on a
    // cold connect, which the old one never does.
    let args = format!("{} sslmode=disable", server.trust_args());
    server.psql(
        "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text NOT NULL); \
         INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 100) i \
         ON CONFLICT DO NOTHING",
    )?;
    let mut rows: Vec<(String, [Vec<Duration>; 2])> = Vec::new();
    let drivers = ["postgres", "postgres-sync"];
    let mut steps: Vec<(&str, [Step; 2])> = vec![
        (
            "pool::open (steady state)",
            drivers.map(|d| open_only(d, &args)),
        ),
        (
            "open + SELECT 1 + release",
            drivers.map(|d| request(d, &args, "SELECT 1")),
        ),
        (
            "open + row by id + release",
            drivers.map(|d| request(d, &args, "SELECT name FROM items WHERE id = $1")),
        ),
        (
            "release after a statement",
            drivers.map(|d| release_after(d, &args)),
        ),
    ];
    let parsed = [
        pool_postgres::PgDriver.parse_args(&args)?,
        pool_postgres_sync_baseline::PgDriver.parse_args(&args)?,
    ];
    for (name, _) in &steps {
        rows.push((name.to_string(), [Vec::new(), Vec::new()]));
    }
    rows.push(("cold connect + close".into(), [Vec::new(), Vec::new()]));
    for round in 0..rounds {
        for (index, (_, pair)) in steps.iter_mut().enumerate() {
            // Who goes first alternates: the first call after other work pays for it.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                rows[index].1[side].push((pair[side])());
            }
        }
        if round % 10 == 0 {
            let cold = rows.len() - 1;
            let started = Instant::now();
            drop(pool_postgres::PgDriver.connect(&parsed[0], Duration::from_secs(5))?);
            rows[cold].1[0].push(started.elapsed());
            let started = Instant::now();
            drop(
                pool_postgres_sync_baseline::PgDriver
                    .connect(&parsed[1], Duration::from_secs(5))?,
            );
            rows[cold].1[1].push(started.elapsed());
        }
    }
    println!("{rounds} rounds, interleaved (cold connects: every 10th round)");
    println!(
        "{:<30} {:>27} {:>27} {:>9}",
        "µs: p50 / p90 / p99", "new (tokio-postgres)", "old (postgres crate)", "new÷old"
    );
    for (name, [new, old]) in &mut rows {
        let (n, o) = (percentiles(new), percentiles(old));
        println!(
            "{name:<30} {:>27} {:>27} {:>8.2}×",
            format!("{:.1} / {:.1} / {:.1}", n[0], n[1], n[2]),
            format!("{:.1} / {:.1} / {:.1}", o[0], o[1], o[2]),
            n[0] / o[0]
        );
    }
    pool::shutdown();
    Ok(())
}

fn open(driver: &str, args: &str) -> pool::Conn {
    pool::open(driver, args).expect("open")
}

/// `pool::open` alone; the release runs untimed.
fn open_only(driver: &'static str, args: &str) -> Step {
    let args = args.to_owned();
    Box::new(move || {
        let started = Instant::now();
        let conn = open(driver, &args);
        let took = started.elapsed();
        conn.release().expect("release");
        took
    })
}

/// open + one statement (with an id parameter when `sql` has `$1`) + release, timed whole.
fn request(driver: &'static str, args: &str, sql: &'static str) -> Step {
    let args = args.to_owned();
    let mut id = 0i64;
    Box::new(move || {
        id = id % 100 + 1;
        let params: Vec<pool::Value> = if sql.contains("$1") {
            vec![id.into()]
        } else {
            Vec::new()
        };
        let started = Instant::now();
        let mut conn = open(driver, &args);
        conn.query(sql, &params).expect("query");
        conn.release().expect("release");
        started.elapsed()
    })
}

/// The caller's cost of `release` after a statement (the reset goes to the resetter).
fn release_after(driver: &'static str, args: &str) -> Step {
    let args = args.to_owned();
    Box::new(move || {
        let mut conn = open(driver, &args);
        conn.query("SELECT 1", &[]).expect("query");
        let started = Instant::now();
        conn.release().expect("release");
        started.elapsed()
    })
}

fn percentiles(samples: &mut [Duration]) -> [f64; 3] {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(index).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    [at(0.5), at(0.9), at(0.99)]
}
