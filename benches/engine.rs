//! Engine overhead on a no-op driver, side by side with r2d2 in the same run.
//!
//! * `uncontended`: one thread, `pool::open(name, args)` + `release` (registry lookup included)
//!   vs r2d2 `get` + drop; and open + a statement + release, whose reset goes to the resetter
//!   thread.
//! * `contended/T threads on C connections`: T threads hammer one key limited to C connections;
//!   criterion reports time per operation (throughput = threads / time). After the groups, a
//!   fixed run per configuration prints ops/s and the p99 wait of each pool.
//!
//! Run: `cargo bench --bench engine`.

mod noop;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use noop::{NoopDriver, NoopManager};
use pool::Settings;

const CONTENDED: &[(usize, usize)] = &[(8, 4), (32, 4), (64, 16)];

fn key(connections: usize) -> String {
    format!("bench=contended{connections}")
}

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        pool::register(NoopDriver).expect("register the no-op driver");
        for &(_, connections) in CONTENDED {
            let settings = Settings {
                max_open: connections,
                acquire_timeout: Duration::from_secs(60),
                ..Settings::default()
            };
            pool::configure("noop", &key(connections), settings).expect("configure");
        }
    });
}

fn r2d2_pool(max_size: u32) -> r2d2::Pool<NoopManager> {
    r2d2::Pool::builder()
        .max_size(max_size)
        .build(NoopManager)
        .expect("r2d2 pool")
}

fn uncontended(c: &mut Criterion) {
    setup();
    let mut group = c.benchmark_group("uncontended");
    group.bench_function("pool open+release", |b| {
        b.iter(|| {
            let conn = pool::open("noop", "bench=uncontended").expect("open");
            conn.release().expect("release");
        })
    });
    // A statement ran: the release hands the reset to the pool's resetter thread (a no-op
    // reset here, so this is the cost of the hand-off and of waiting for it on the next open).
    group.bench_function("pool open+execute+release (reset on the resetter)", |b| {
        b.iter(|| {
            let mut conn = pool::open("noop", "bench=uncontended-used").expect("open");
            conn.execute("noop", &[]).expect("execute");
            conn.release().expect("release");
        })
    });
    // Leak detection on: every open captures a backtrace (what the setting costs).
    pool::configure(
        "noop",
        "bench=uncontended-leak-detection",
        Settings {
            leak_threshold: Some(Duration::from_secs(60)),
            ..Settings::default()
        },
    )
    .expect("configure");
    group.bench_function("pool open+release, leak detection on", |b| {
        b.iter(|| {
            let conn = pool::open("noop", "bench=uncontended-leak-detection").expect("open");
            conn.release().expect("release");
        })
    });
    let r2d2 = r2d2_pool(10);
    group.bench_function("r2d2 get+drop", |b| {
        b.iter(|| drop(r2d2.get().expect("get")))
    });
    group.finish();
}

/// Runs `op` `iters` times in total, split over `threads` threads started together; returns the
/// wall time.
fn hammer(threads: usize, iters: u64, op: impl Fn() + Sync) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                for _ in 0..per_thread {
                    op();
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // Leaving the scope joins every thread, so `began.elapsed()` covers all of them.
        began
    })
    .elapsed()
}

fn contended(c: &mut Criterion) {
    setup();
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    for &(threads, connections) in CONTENDED {
        let label = format!("{threads} threads on {connections}");
        let k = key(connections);
        group.bench_with_input(BenchmarkId::new("pool", &label), &threads, |b, &t| {
            b.iter_custom(|iters| {
                hammer(t, iters, || {
                    pool::open("noop", &k)
                        .expect("open")
                        .release()
                        .expect("release")
                })
            })
        });
        let r2d2 = Arc::new(r2d2_pool(connections as u32));
        group.bench_with_input(BenchmarkId::new("r2d2", &label), &threads, |b, &t| {
            b.iter_custom(|iters| hammer(t, iters, || drop(r2d2.get().expect("get"))))
        });
    }
    group.finish();
    wait_percentiles();
}

/// Per-operation latency (the wait for a connection, plus release) at each contention level:
/// ops/s and p50/p99 for both pools, measured interleaved in one run.
fn wait_percentiles() {
    const OPS_PER_THREAD: usize = 20_000;
    eprintln!("\ncontended latency, {OPS_PER_THREAD} ops per thread (pool vs r2d2, same run):");
    for &(threads, connections) in CONTENDED {
        let k = key(connections);
        let r2d2 = r2d2_pool(connections as u32);
        for round in 0..2 {
            let pool_side = measure(threads, OPS_PER_THREAD, || {
                pool::open("noop", &k)
                    .expect("open")
                    .release()
                    .expect("release")
            });
            let r2d2_side = measure(threads, OPS_PER_THREAD, || drop(r2d2.get().expect("get")));
            if round == 1 {
                eprintln!(
                    "  {threads:>2} threads / {connections:>2} conns: pool {} | r2d2 {} | throughput ratio {:.2}x",
                    pool_side,
                    r2d2_side,
                    pool_side.ops_per_sec / r2d2_side.ops_per_sec
                );
            }
        }
    }
}

struct Measured {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6.2} M ops/s p50 {:>7.2?} p99 {:>8.2?}",
            self.ops_per_sec / 1e6,
            self.p50,
            self.p99
        )
    }
}

fn measure(threads: usize, ops: usize, op: impl Fn() + Sync) -> Measured {
    let start = Barrier::new(threads + 1);
    let (wall, per_thread) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut latencies = Vec::with_capacity(ops);
                    start.wait();
                    for _ in 0..ops {
                        let t = Instant::now();
                        op();
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let per_thread: Vec<Vec<Duration>> = handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect();
        (began.elapsed(), per_thread)
    });
    let mut all: Vec<Duration> = per_thread.into_iter().flatten().collect();
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() - 1) as f64 * q) as usize];
    Measured {
        ops_per_sec: all.len() as f64 / wall.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
