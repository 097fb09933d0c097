//! Profiling aid: spins `pool::open` + `release` on a no-op driver, as a `perf record` or
//! `valgrind --tool=callgrind` target.
//!
//! `cargo run --release --example hotloop -- [ops per thread] [threads] [max_open] [r2d2]`
//! (with `r2d2` as the fourth argument, the same loop runs on r2d2 for comparison).
#[path = "../benches/noop.rs"]
mod noop;

use std::time::{Duration, Instant};

fn main() {
    let arg = |n: usize, default: u64| -> u64 {
        std::env::args()
            .nth(n)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (ops, threads, max_open) = (arg(1, 20_000_000), arg(2, 1) as usize, arg(3, 32) as usize);
    pool::register(noop::NoopDriver).expect("register");
    let settings = pool::Settings {
        max_open,
        acquire_timeout: Duration::from_secs(60),
        ..pool::Settings::default()
    };
    pool::configure("noop", "bench=hot", settings).expect("configure");
    let r2d2 = (std::env::args().nth(4).as_deref() == Some("r2d2")).then(|| {
        r2d2::Pool::builder()
            .max_size(max_open as u32)
            .build(noop::NoopManager)
            .expect("r2d2 pool")
    });
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..ops {
                    match &r2d2 {
                        Some(r2d2) => drop(r2d2.get().expect("get")),
                        None => {
                            let conn = pool::open("noop", "bench=hot").expect("open");
                            conn.release().expect("release");
                        }
                    }
                }
            });
        }
    });
    let total = ops * threads as u64;
    let elapsed = started.elapsed();
    eprintln!(
        "{}: {threads} threads, max_open {max_open}: {:.1} ns per open+release, {:.2} M ops/s",
        if r2d2.is_some() { "r2d2" } else { "pool" },
        elapsed.as_nanos() as f64 / total as f64 * threads as f64,
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
}
