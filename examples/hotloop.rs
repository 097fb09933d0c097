//! Profiling aid: spins `pool::open` + `release` on a no-op driver (`perf record` target).
#[path = "../benches/noop.rs"]
#[allow(dead_code)] // the r2d2 twin is only used by the benchmark
mod noop;

fn main() {
    pool::register(noop::NoopDriver).expect("register");
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let t = std::time::Instant::now();
    for _ in 0..n {
        pool::open("noop", "bench=hot")
            .expect("open")
            .release()
            .expect("release");
    }
    eprintln!(
        "{:.1} ns per open+release",
        t.elapsed().as_nanos() as f64 / n as f64
    );
}
