//! Helpers shared by the driver's integration tests.

#![allow(dead_code)]

pub mod load;

use std::time::Duration;

use pool_driver::{Connection, Driver, ResetMode, Rows, Value};
use pool_redis::{RedisConn, RedisDriver};

/// The bound on connects and checks in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Connects straight through `driver` (no pool) with `args`.
pub fn connect_with(driver: &RedisDriver, args: &str) -> RedisConn {
    let args = driver.parse_args(args).expect("args parse");
    driver
        .connect(&args, TIMEOUT)
        .unwrap_or_else(|e| panic!("connects: {e}"))
}

/// Runs `command` with text arguments through `query`.
pub fn q(conn: &mut RedisConn, command: &str, args: &[&str]) -> Rows {
    let params: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
    conn.query(command, &params)
        .unwrap_or_else(|e| panic!("{command} {args:?}: {e}"))
}

/// The first cell of `command`'s reply, as text (`NULL` for nil).
pub fn text(conn: &mut RedisConn, command: &str, args: &[&str]) -> String {
    q(conn, command, args)
        .scalar()
        .map_or_else(|| "<no rows>".to_owned(), ToString::to_string)
}

/// The next user's view: detach with a full reset, then attach again.
pub fn cycle(driver: &RedisDriver, conn: RedisConn) -> RedisConn {
    let handle = driver
        .detach(conn, ResetMode::Full)
        .unwrap_or_else(|e| panic!("detach: {e}"));
    driver.attach(handle).expect("attach")
}

/// The `CLIENT INFO` field `key` of this session.
pub fn client_field(conn: &mut RedisConn, key: &str) -> String {
    let info = text(conn, "CLIENT INFO", &[]);
    info.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no `{key}` in CLIENT INFO: {info}"))
        .to_owned()
}

/// A unique key name for one test.
pub fn key(test: &str) -> String {
    format!("pool-redis-test:{test}:{}", std::process::id())
}

/// Threads named like the Sentinel watcher (`/proc/self/task/*/comm`, at most 15 characters).
pub fn watcher_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .is_ok_and(|c| c.trim() == "pool-redis-sent")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Polls `done` every 10 ms until it holds (`true`) or `timeout` passed (`false`).
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
