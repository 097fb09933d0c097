//! What the full reset costs the database server, not the caller: the server CPU time of one
//! reset, and the requests per second a saturated server does with and without it.
//!
//! ```text
//! cargo run --release --example server_cost [-- --seconds 5 --threads 4]
//! ```
//!
//! Starts a private PostgreSQL server (never the machine's own). Two measurements:
//!
//! 1. **CPU per reset.** One connection runs `SELECT 1` N times, then `SELECT 1` + the full
//!    reset (`pool_postgres::reset::FULL_RESET`) N times; the backend's CPU time (user +
//!    system, from `/proc/<pid>/stat`, in clock ticks) is read before and after each, and the
//!    difference per iteration is the reset's server CPU.
//! 2. **Saturated throughput.** `--threads` client threads each run `pool::open` +
//!    `SELECT 1` + `release` for `--seconds`, once per reset mode (`Full`, `RollbackOnly`),
//!    and r2d2 (`get` + the same `SELECT 1` through the same one-round-trip statement path
//!    the pool's driver uses, `query_typed`; no reset, checkout test off) as the no-reset baseline. Requests per
//!    second are what the server (and this 2-core machine) sustained.
//!
//! The client runs on the same machine as the server, so both compete for its cores: the
//! numbers are for comparing the rows with each other, side by side in one run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pool::{ResetMode, Settings};
use r2d2_postgres::postgres::{self, config::SslMode, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let mut seconds = 5u64;
    let mut threads = 4usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse()?,
            "--threads" => threads = value.parse()?,
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    let server = pool_testservers::PgServer::start()?;
    let url = server.url();
    cpu_per_reset(&url)?;
    throughput(&url, Duration::from_secs(seconds), threads)?;
    pool::shutdown();
    Ok(())
}

/// The backend's CPU time so far, in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`).
fn backend_ticks(pid: i32) -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let after = stat
        .rsplit_once(')')
        .ok_or("unexpected /proc stat format")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3, so fields 14 and 15 are at indexes 11 and 12.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

fn cpu_per_reset(url: &str) -> Result<(), BoxError> {
    const N: u64 = 20_000;
    let mut config: postgres::Config = url.parse()?;
    config.ssl_mode(SslMode::Disable);
    let mut client = config.connect(NoTls)?;
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
    let tick_us = 1e6 / clock_ticks_per_second() as f64;
    let mut measure = |label: &str, batch: &[&str]| -> Result<f64, BoxError> {
        let before = backend_ticks(pid)?;
        let started = Instant::now();
        for _ in 0..N {
            for sql in batch {
                client.simple_query(sql)?;
            }
        }
        let wall = started.elapsed();
        let cpu_us = (backend_ticks(pid)? - before) as f64 * tick_us / N as f64;
        println!(
            "  {label:<42} server CPU {cpu_us:>6.1} µs/iteration, wall {:>6.1} µs/iteration",
            wall.as_secs_f64() * 1e6 / N as f64
        );
        Ok(cpu_us)
    };
    println!("server CPU time, one backend, {N} iterations each:");
    let select = measure("SELECT 1", &["SELECT 1"])?;
    let full = measure(
        "SELECT 1, then the full reset",
        &["SELECT 1", pool_postgres::reset::FULL_RESET],
    )?;
    let rollback = measure(
        "SELECT 1, then the rollback-only reset",
        &["SELECT 1", pool_postgres::reset::ROLLBACK_ONLY],
    )?;
    println!(
        "  => the full reset costs the server {:.1} µs of CPU ({:.1}× a SELECT 1); \
         rollback-only {:.1} µs",
        full - select,
        (full - select) / select,
        rollback - select
    );
    // Each statement of the full reset on its own, inside one multi-statement query with the
    // SELECT 1 (as the reset sends them: one query, no extra round trip), over SELECT 1 alone.
    println!("each statement of the full reset, in one query with a SELECT 1, over SELECT 1:");
    let statements = pool_postgres::reset::FULL_RESET
        .strip_prefix("BEGIN; ROLLBACK; ")
        .ok_or("FULL_RESET starts with BEGIN; ROLLBACK")?
        .split("; ");
    for statement in std::iter::once("BEGIN; ROLLBACK").chain(statements) {
        let batch = format!("SELECT 1; {statement}");
        let cost = measure(statement, &[batch.as_str()])? - select;
        println!("    => {cost:>6.1} µs");
    }
    Ok(())
}

/// Runs `request` on `threads` threads for `duration`; returns requests per second.
fn saturate(
    threads: usize,
    duration: Duration,
    request: impl Fn() -> Result<(), BoxError> + Send + Sync + 'static,
) -> Result<f64, BoxError> {
    let request = Arc::new(request);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (request, stop, done) = (request.clone(), stop.clone(), done.clone());
            thread::spawn(move || -> Result<(), BoxError> {
                while !stop.load(Ordering::Relaxed) {
                    request()?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    // Warm up for a second, then count.
    thread::sleep(Duration::from_secs(1));
    let start_count = done.load(Ordering::Relaxed);
    let started = Instant::now();
    thread::sleep(duration);
    let counted = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")??;
    }
    Ok(counted as f64 / elapsed.as_secs_f64())
}

fn throughput(url: &str, duration: Duration, threads: usize) -> Result<(), BoxError> {
    println!("\nsaturated throughput, {threads} client threads, {duration:?} each:");
    let mut rows = Vec::new();
    for (label, mode, background) in [
        ("pool, full reset (background)", ResetMode::Full, true),
        ("pool, full reset (inline)", ResetMode::Full, false),
        (
            "pool, rollback-only (background)",
            ResetMode::RollbackOnly,
            true,
        ),
    ] {
        // A distinct key per row: the application name differs.
        let args = format!("{url}?application_name=cost_{}_{background}", rows.len());
        pool::configure(
            "postgres",
            &args,
            Settings {
                reset_mode: mode,
                background_reset: background,
                max_open: threads * 2,
                ..Settings::default()
            },
        )?;
        let rate = saturate(threads, duration, move || {
            let mut conn = pool::open("postgres", &args)?;
            conn.query("SELECT 1", &[])?;
            conn.release()?;
            Ok(())
        })?;
        rows.push((label, rate));
    }
    let mut config: postgres::Config = url.parse()?;
    config.ssl_mode(SslMode::Disable);
    let r2d2 = r2d2::Pool::builder()
        .max_size(threads as u32 * 2)
        .test_on_check_out(false)
        .build(r2d2_postgres::PostgresConnectionManager::new(config, NoTls))?;
    let rate = saturate(threads, duration, move || {
        let mut client = r2d2.get()?;
        client.query_typed("SELECT 1", &[])?;
        Ok(())
    })?;
    rows.push(("r2d2, no reset, no checkout test", rate));
    let baseline = rate;
    for (label, rate) in rows {
        println!(
            "  {label:<42} {rate:>8.0} requests/s  ({:.2}× the no-reset baseline)",
            rate / baseline
        );
    }
    Ok(())
}
