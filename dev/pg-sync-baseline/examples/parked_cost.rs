//! What one parked connection costs the process, old driver (`postgres` crate) against new
//! (`tokio-postgres`), side by side in one run: threads, file descriptors, heap bytes (a
//! counting allocator) and resident memory (RSS), per connection, for N connections opened,
//! used once, reset and parked (detached) against a private server, over TCP and over TLS
//! (the new driver only).
//!
//! Each driver is measured in a child process of its own, so one's freed memory cannot make
//! the other look cheaper.
//!
//! ```text
//! cargo run -p pool-postgres-sync-baseline --release --example parked_cost [N]
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use pool_driver::{Connection, Driver, ResetMode};

/// Counts the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    if let Some(child) = argv.next().filter(|a| a.starts_with("--child=")) {
        let count: usize = argv.next().unwrap_or_default().parse()?;
        let args = std::env::var("PARKED_COST_ARGS")?;
        return child_run(&child["--child=".len()..], &args, count);
    }
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100);
    let pki = pool_testservers::TestPki::generate()?;
    let plain = pool_testservers::PgServer::start()?;
    let tls = pool_testservers::PgServer::start_tls(&pki, pool_testservers::ServerCert::Valid)?;
    println!("{count} connections, each opened, used once, reset and parked\n");
    println!(
        "{:<46} {:>8} {:>8} {:>12} {:>12}",
        "driver", "threads", "fds", "heap bytes", "RSS bytes"
    );
    for (driver, args) in [
        ("postgres-sync", plain.scram_args()),
        ("postgres", plain.scram_args()),
        (
            "postgres",
            format!("{} sslmode=disable", plain.scram_args()),
        ),
        ("postgres", tls.tls_args("verify-full")),
    ] {
        let out = Command::new(std::env::current_exe()?)
            .arg(format!("--child={driver}"))
            .arg(count.to_string())
            .env("PARKED_COST_ARGS", &args)
            .output()?;
        let label = format!(
            "{driver} ({})",
            if args.contains("verify-full") {
                "TLS verify-full"
            } else if args.contains("sslmode=disable") {
                "plain, sslmode=disable"
            } else {
                "plain server, default sslmode"
            }
        );
        let report = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            println!("{label}: failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        println!("{label:<46} {}", report.trim());
    }
    Ok(())
}

/// Opens `count` connections with `driver`, parks them, prints the cost of one.
fn child_run(driver: &str, args: &str, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    match driver {
        "postgres-sync" => measure(&pool_postgres_sync_baseline::PgDriver, args, count),
        _ => measure(&pool_postgres::PgDriver, args, count),
    }
}

fn measure<D: Driver>(
    driver: &D,
    args: &str,
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let parsed = driver.parse_args(args)?;
    let timeout = Duration::from_secs(10);
    // One connection first: whatever a driver sets up once per process is not per connection.
    let warm = driver.detach(driver.connect(&parsed, timeout)?, ResetMode::Full)?;
    let before = Snapshot::now();
    let mut parked = Vec::with_capacity(count);
    for _ in 0..count {
        let mut conn = driver.connect(&parsed, timeout)?;
        conn.query("SELECT 1", &[])?;
        parked.push(driver.detach(conn, ResetMode::Full)?);
    }
    std::thread::sleep(Duration::from_millis(200)); // let short-lived helpers end
    let after = Snapshot::now();
    let per = |a: isize, b: isize| (b - a) as f64 / count as f64;
    println!(
        "{:>8.2} {:>8.2} {:>12.0} {:>12.0}",
        per(before.threads, after.threads),
        per(before.fds, after.fds),
        per(before.heap, after.heap),
        per(before.rss, after.rss)
    );
    drop(parked);
    drop(warm);
    Ok(())
}

struct Snapshot {
    threads: isize,
    fds: isize,
    heap: isize,
    rss: isize,
}

impl Snapshot {
    fn now() -> Snapshot {
        let count = |dir: &str| {
            std::fs::read_dir(dir)
                .map(|d| d.count() as isize)
                .unwrap_or(-1)
        };
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: isize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Snapshot {
            threads: count("/proc/self/task"),
            fds: count("/proc/self/fd"),
            heap: LIVE.load(Ordering::Relaxed),
            rss: pages * 4096,
        }
    }
}
