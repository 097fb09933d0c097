//! Helpers shared by the integration tests: connect through the `Driver` trait and read values;
//! `leaks`: thread-leak measurements (also run against the old driver).

#![allow(dead_code)] // each test binary uses a different subset

pub mod leaks;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pool_driver::{Connection, Driver, ResetMode, Value};
use pool_postgres::{PgConn, PgDriver};

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection with `args` (key=value or URL) through the driver.
pub fn connect(args: &str) -> PgConn {
    let args = PgDriver.parse_args(args).expect("parse args");
    PgDriver.connect(&args, TIMEOUT).expect("connect")
}

/// The shared server's login over TCP (as `pool_trust`), without host or port; with
/// `read_only_sessions`, sessions default to read-only (a primary that is `read-only` to
/// libpq's `target_session_attrs`).
pub fn tcp_login(read_only_sessions: bool) -> String {
    let pg = pool_testservers::shared_pg();
    let options = match read_only_sessions {
        true => " options='-c default_transaction_read_only=on'",
        false => "",
    };
    format!(
        "user={} dbname={} sslmode=disable{options}",
        pg.trust_user(),
        pg.database()
    )
}

/// A connection to the shared server as the superuser `pool_trust`.
pub fn trust() -> PgConn {
    connect(&pool_testservers::shared_pg().trust_args())
}

/// A connection to the shared server as the ordinary password user `pool_scram`.
pub fn scram() -> PgConn {
    connect(&pool_testservers::shared_pg().scram_args())
}

/// Detaches with `mode` and attaches again, as the pool does between two users.
pub fn recycle(conn: PgConn, mode: ResetMode) -> PgConn {
    let handle = PgDriver.detach(conn, mode).expect("detach");
    PgDriver.attach(handle).expect("attach")
}

/// The first cell of `sql`'s result.
pub fn scalar(conn: &mut PgConn, sql: &str) -> Value {
    let rows = conn
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.scalar().cloned().unwrap_or(Value::Null)
}

/// The first cell of `sql`'s result as text.
pub fn text(conn: &mut PgConn, sql: &str) -> String {
    match scalar(conn, sql) {
        Value::Text(s) => s,
        other => panic!("{sql}: expected text, got {other:?}"),
    }
}

/// The first cell of `sql`'s result as an integer.
pub fn int(conn: &mut PgConn, sql: &str) -> i64 {
    scalar(conn, sql)
        .as_i64()
        .unwrap_or_else(|| panic!("{sql}: not an integer"))
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends `which` (`-STOP`, `-CONT`) to process `pid`: a backend or the postmaster of a private
/// server, stopped to play a silent server.
pub fn signal(pid: i64, which: &str) {
    let status = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {which} {pid}");
}
