//! `pool::shutdown()` while 16 threads work on a PostgreSQL pool, a PostgreSQL-over-TLS pool
//! (`sslmode=verify-full` against a server of the test's own that accepts only TLS) and a
//! MariaDB pool: it returns within a bound, no thread hangs, the background threads are
//! joined, and once the held connections are released the servers see no session of this
//! process's users. Its own binary: `shutdown` is process-wide, so the plain and the TLS pools
//! are shut down in one run rather than as separate cases.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::real::{fresh_user, start_pg_tls, Backend, Server};
use common::{wait_until, SOON};
use pool::Settings;

/// Names of this process's threads (Linux: /proc/self/task/*/comm).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

#[test]
fn shutdown_under_load_returns_promptly_and_leaves_no_session() {
    let pg_tls = start_pg_tls();
    let servers = [
        Backend::Postgres.shared(),
        Server::Pg(&pg_tls),
        Backend::Maria.shared(),
    ];
    let users: Vec<_> = servers
        .iter()
        .map(|&server| fresh_user(server, "shutload"))
        .collect();
    for user in &users {
        user.configure(Settings {
            max_open: 4,
            acquire_timeout: Duration::from_secs(2),
            ..Settings::default()
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let user = &users[i % users.len()];
            let (driver, args, stop) = (user.driver(), user.args.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut served = 0_u64;
                while !stop.load(SeqCst) {
                    let took = Instant::now();
                    match pool::open(driver, &args) {
                        Ok(mut conn) => {
                            conn.query("SELECT 1", &[]).expect("query");
                            conn.release().expect("release");
                            served += 1;
                        }
                        Err(e) => assert!(e.is_transient(), "unexpected error: {e:?}"),
                    }
                    assert!(took.elapsed() < Duration::from_secs(5), "a call hung");
                }
                served
            })
        })
        .collect();
    wait_until("every pool is busy", SOON, || {
        users.iter().all(|u| u.stats().opened >= 2)
    });

    let started = Instant::now();
    pool::shutdown();
    let took = started.elapsed();
    eprintln!("shutdown under load took {took:?}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    stop.store(true, SeqCst);
    let served: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert!(served > 0);
    // The workers' last calls may have started fresh pools after the first shutdown.
    pool::shutdown();
    let background = |names: &[String]| {
        names
            .iter()
            .filter(|n| {
                ["pool-primer", "pool-reaper", "pool-closer"]
                    .iter()
                    .any(|p| n.starts_with(p))
            })
            .count()
    };
    assert_eq!(background(&thread_names()), 0, "background threads joined");
    for user in &users {
        let mut admin = user.server.admin();
        wait_until(
            "the server sees no session of the pool's user",
            SOON,
            || admin.sessions(&user.name) == 0,
        );
    }
}
