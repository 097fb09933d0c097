//! Real servers: the pool's steady-state `open`, `open` + `release`, `open` + `SELECT 1` +
//! `release` (the whole request: statement and reset), a cold connect with the native crate,
//! and r2d2 (default settings) `get` + drop and `get` + `SELECT 1` + drop, in one group per
//! driver; and the same pool steps on the previous PostgreSQL driver (`"postgres-sync"`, the
//! sync `postgres` crate, dev/pg-sync-baseline), to compare the tokio-postgres driver with it.
//!
//! ```text
//! cargo bench --bench real
//! ```
//!
//! Private PostgreSQL and MariaDB servers are started here (pool-testservers) and stopped at the
//! end; the machine's own servers are never touched. The interleaved percentiles (p50/p99) come
//! from the latency tool (`cargo run --release --example latency`); this is the criterion view.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use r2d2_mysql::mysql;
use r2d2_postgres::postgres::{self, config::SslMode, NoTls};

/// `pool::open` alone: each `release` runs outside the timed part.
fn open_only(group: &mut BenchmarkGroup<WallTime>, driver: &'static str, args: &str) {
    group.bench_function("pool_open", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let conn = pool::open(driver, args).expect("pool::open");
                total += started.elapsed();
                conn.release().expect("release");
            }
            total
        })
    });
}

fn open_release(group: &mut BenchmarkGroup<WallTime>, driver: &'static str, args: &str) {
    group.bench_function("pool_open_release", |b| {
        b.iter(|| {
            pool::open(driver, args)
                .expect("pool::open")
                .release()
                .expect("release")
        })
    });
}

/// The whole request: `open`, `SELECT 1`, `release` (whose reset runs on the resetter thread).
fn open_select_release(group: &mut BenchmarkGroup<WallTime>, driver: &'static str, args: &str) {
    group.bench_function("pool_open_select1_release", |b| {
        b.iter(|| {
            let mut conn = pool::open(driver, args).expect("pool::open");
            black_box(conn.query("SELECT 1", &[]).expect("SELECT 1"));
            conn.release().expect("release")
        })
    });
}

fn configure(group: &mut BenchmarkGroup<WallTime>) {
    // A cold PostgreSQL connect takes milliseconds: keep the sample count modest.
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
}

fn bench_postgres(c: &mut Criterion) {
    let server = pool_testservers::PgServer::start().expect("starting a private PostgreSQL");
    let url = server.url();
    let mut config: postgres::Config = url.parse().expect("postgres URL");
    config.ssl_mode(SslMode::Disable); // as the pool's driver
    let r2d2 = r2d2::Pool::new(r2d2_postgres::PostgresConnectionManager::new(
        config.clone(),
        NoTls,
    ))
    .expect("r2d2_postgres pool");

    let mut group = c.benchmark_group("postgres");
    configure(&mut group);
    open_only(&mut group, "postgres", &url);
    open_release(&mut group, "postgres", &url);
    open_select_release(&mut group, "postgres", &url);
    group.bench_function("r2d2_get_drop", |b| {
        b.iter(|| drop(black_box(r2d2.get().expect("r2d2 get"))))
    });
    group.bench_function("r2d2_get_select1_drop", |b| {
        b.iter(|| {
            let mut client = r2d2.get().expect("r2d2 get");
            black_box(client.query("SELECT 1", &[]).expect("SELECT 1"));
        })
    });
    group.bench_function("cold_connect_close", |b| {
        b.iter(|| drop(black_box(config.connect(NoTls).expect("connect"))))
    });
    group.finish();

    // The previous driver, on the sync `postgres` crate, through the same pool on the same
    // server: the tokio-postgres driver's cost against it (issue 17).
    pool::register(pool_postgres_sync_baseline::PgDriver).expect("register postgres-sync");
    let plain = format!("{url}?sslmode=disable");
    let mut group = c.benchmark_group("postgres-sync (the previous driver)");
    configure(&mut group);
    open_only(&mut group, "postgres-sync", &plain);
    open_release(&mut group, "postgres-sync", &plain);
    open_select_release(&mut group, "postgres-sync", &plain);
    group.finish();
    bench_postgres_roles(c, &server);
    drop(r2d2);
    pool::shutdown();
}

/// What watching the server's role costs (issue 21), side by side with a key that does not:
/// the liveness check of a parked connection (`Driver::connected`, run after `validate_after`
/// or when the key's parked connections are suspect): an empty query for `any`, the role
/// query for `read-write`; and the whole request through each key, where `read-write` reads
/// the reported `in_hot_standby` after each statement and reset.
fn bench_postgres_roles(c: &mut Criterion, server: &pool_testservers::PgServer) {
    use pool_driver::Driver;
    let any = format!("{}?sslmode=disable", server.url());
    let read_write = format!("{any}&target_session_attrs=read-write");
    let mut group = c.benchmark_group("postgres roles");
    configure(&mut group);
    for (name, args) in [("any", &any), ("read_write", &read_write)] {
        let driver = pool_postgres::PgDriver;
        let parsed = driver.parse_args(args).expect("args");
        let mut conn = driver
            .connect(&parsed, Duration::from_secs(10))
            .expect("connect");
        group.bench_function(format!("validation_check_{name}"), |b| {
            b.iter(|| assert!(driver.connected(&mut conn, Duration::from_secs(10))))
        });
        group.bench_function(format!("pool_open_select1_release_{name}"), |b| {
            b.iter(|| {
                let mut conn = pool::open("postgres", args).expect("pool::open");
                black_box(conn.query("SELECT 1", &[]).expect("SELECT 1"));
                conn.release().expect("release")
            })
        });
    }
    group.finish();
}

fn bench_mysql(c: &mut Criterion) {
    let server = pool_testservers::MariaServer::start().expect("starting a private MariaDB");
    let url = server.url();
    let opts = mysql::Opts::from_url(&url).expect("mysql URL");
    // As the pool's driver: connect over TCP exactly where asked, not again over the socket.
    let builder = mysql::OptsBuilder::from_opts(opts).prefer_socket(false);
    let r2d2 = r2d2::Pool::new(r2d2_mysql::MySqlConnectionManager::new(builder.clone()))
        .expect("r2d2_mysql pool");
    let opts = mysql::Opts::from(builder);

    let mut group = c.benchmark_group("mysql");
    configure(&mut group);
    open_only(&mut group, "mysql", &url);
    open_release(&mut group, "mysql", &url);
    open_select_release(&mut group, "mysql", &url);
    group.bench_function("r2d2_get_drop", |b| {
        b.iter(|| drop(black_box(r2d2.get().expect("r2d2 get"))))
    });
    group.bench_function("r2d2_get_select1_drop", |b| {
        b.iter(|| {
            use mysql::prelude::Queryable;
            let mut conn = r2d2.get().expect("r2d2 get");
            let rows: Vec<i64> = conn.query("SELECT 1").expect("SELECT 1");
            black_box(rows);
        })
    });
    group.bench_function("cold_connect_close", |b| {
        b.iter(|| drop(black_box(mysql::Conn::new(opts.clone()).expect("connect"))))
    });
    group.finish();
    drop(r2d2);
    pool::shutdown();
}

criterion_group!(real, bench_postgres, bench_mysql);
criterion_main!(real);
