//! The load generator: `GET /items/{id}` from N client threads over keep-alive HTTP, against
//! the same handler served three ways in one process and one run: through `pool::open`,
//! through r2d2, and with a cold connect per request; and through `pool::open` once more with
//! `ResetMode::RollbackOnly`, since r2d2 resets no session state at all.
//!
//! ```text
//! cargo run --release --features metrics --example web -- load [--threads 8] [--seconds 5] [--rounds 3]
//! ```
//!
//! The three services run side by side on one tokio runtime against one PostgreSQL (private,
//! unless `DATABASE_URL` names one; `DATABASE_URL=mariadb` for a private MariaDB, against
//! `r2d2_mysql`); the rounds alternate between them, so background noise on
//! a shared machine lands on all three alike. Each client thread has its own `ureq` agent (one
//! kept-alive connection) and walks the ids in its own order. Output: requests/s and p50/p99
//! latency per way, and the ratios.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool::{ResetMode, Settings};

use crate::app::{self, App, Db, PoolDb};
use crate::baselines::{ColdDb, R2d2Db};
use crate::baselines_mysql::{ColdMyDb, R2d2MyDb};

/// Per-request client timeout: a request that takes longer counts as an error.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_millis(500);

struct Options {
    threads: usize,
    seconds: f64,
    rounds: usize,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        threads: 8,
        seconds: 5.0,
        rounds: 3,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: not a number: {value}");
        match flag.as_str() {
            "--threads" => o.threads = value.parse().map_err(|_| bad())?,
            "--seconds" => o.seconds = value.parse().map_err(|_| bad())?,
            "--rounds" => o.rounds = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.threads == 0 || o.rounds == 0 || o.seconds <= 0.0 {
        return Err("--threads, --seconds and --rounds must be positive".into());
    }
    Ok(o)
}

/// What one way of serving measured, over all rounds.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Tally {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let last = self.latencies.len().saturating_sub(1);
        self.latencies
            .get((last as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    let o = options(args)?;
    let (url, _server) = crate::database()?;
    let postgres = app::Dialect::of_url(&url)?.driver == "postgres";
    let pool_db = PoolDb::connect(&url, crate::SEED)?;
    // The same pool with only a rollback on release (another key: the same server and user,
    // another application_name, or on MariaDB another connect_timeout): r2d2 resets nothing,
    // so this shows what the full reset costs.
    let separator = if url.contains('?') { '&' } else { '?' };
    let other_key = if postgres {
        "application_name=web_rollback_only"
    } else {
        "connect_timeout=9"
    };
    let rollback_url = format!("{url}{separator}{other_key}");
    let rollback_only = Settings {
        reset_mode: ResetMode::RollbackOnly,
        ..app::service_settings()
    };
    let rollback_db = PoolDb::connect_with(&rollback_url, rollback_only, crate::SEED)?;
    let max_open = app::service_settings().max_open;
    let ways: Vec<(&str, Arc<dyn Db>)> = vec![
        ("pool::open", Arc::new(pool_db)),
        ("pool::open, RollbackOnly", Arc::new(rollback_db)),
        (
            "r2d2",
            if postgres {
                Arc::new(R2d2Db::new(&url, max_open as u32)?)
            } else {
                Arc::new(R2d2MyDb::new(&url, max_open as u32)?)
            },
        ),
        (
            "cold connect",
            if postgres {
                Arc::new(ColdDb::new(&url)?)
            } else {
                Arc::new(ColdMyDb::new(&url)?)
            },
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let mut bases = Vec::new();
    for (_, db) in &ways {
        let app = App {
            db: Arc::clone(db),
            metrics: None,
        };
        bases.push(app::serve_in_background(&runtime, app)?);
    }
    println!(
        "GET /items/{{id}}: {} client threads, {} rounds of {:.1} s per way, on {} cores shared by \
         clients, service and database",
        o.threads,
        o.rounds,
        o.seconds,
        thread::available_parallelism().map_or(1, |n| n.get())
    );
    for base in &bases {
        drive(base, o.threads, WARM_UP);
    }
    let mut tallies: Vec<Tally> = ways.iter().map(|_| Tally::default()).collect();
    for round in 0..o.rounds {
        for (i, base) in bases.iter().enumerate() {
            let mut t = drive(base, o.threads, Duration::from_secs_f64(o.seconds));
            eprintln!(
                "round {}: {:>24}: {:>8.0} req/s",
                round + 1,
                ways[i].0,
                t.per_second()
            );
            tallies[i].latencies.append(&mut t.latencies);
            tallies[i].errors += t.errors;
            tallies[i].elapsed += t.elapsed;
        }
    }
    println!("| way | requests/s | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for ((name, _), t) in ways.iter().zip(tallies.iter_mut()) {
        let (p50, p99) = (t.percentile(0.50), t.percentile(0.99));
        println!(
            "| {name} | {:.0} | {:.0} µs | {:.0} µs | {} |",
            t.per_second(),
            micros(p50),
            micros(p99),
            t.errors
        );
        summary.push((t.per_second(), p50, p99));
    }
    let ratio = |name: &str, a: (f64, Duration, Duration), b: (f64, Duration, Duration)| {
        println!(
            "{name}: {:.2}x requests/s, p50 {:.2}x, p99 {:.2}x lower",
            a.0 / b.0,
            micros(b.1) / micros(a.1),
            micros(b.2) / micros(a.2)
        );
    };
    let (pool, rollback, r2d2, cold) = (summary[0], summary[1], summary[2], summary[3]);
    ratio("pool vs r2d2", pool, r2d2);
    ratio("pool (RollbackOnly) vs r2d2", rollback, r2d2);
    ratio("pool vs cold connect", pool, cold);
    drop(runtime);
    pool::shutdown();
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `threads` clients, each on one kept-alive connection, for `length`.
fn drive(base: &str, threads: usize, length: Duration) -> Tally {
    let started = Instant::now();
    let until = started + length;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let base = base.to_owned();
            thread::spawn(move || client(&base, t, until))
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        if let Ok((mut latencies, errors)) = worker.join() {
            tally.latencies.append(&mut latencies);
            tally.errors += errors;
        } else {
            tally.errors += 1;
        }
    }
    tally.elapsed = started.elapsed();
    tally
}

/// One client thread: requests until `until`; the latency of each answered 200, and the
/// number of other outcomes.
fn client(base: &str, seed: usize, until: Instant) -> (Vec<Duration>, usize) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CLIENT_TIMEOUT))
        .build()
        .into();
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    let mut id = (seed as i64 * 7919) % crate::SEED;
    while Instant::now() < until {
        id = id % crate::SEED + 1;
        let started = Instant::now();
        let ok = match agent.get(format!("{base}/items/{id}")).call() {
            Ok(mut response) => {
                let body = response.body_mut().read_to_string();
                response.status() == 200 && body.is_ok()
            }
            Err(_) => false,
        };
        if ok {
            latencies.push(started.elapsed());
        } else {
            errors += 1;
        }
    }
    (latencies, errors)
}
