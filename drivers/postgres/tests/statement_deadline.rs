//! Statement deadlines on a real PostgreSQL (issue 19): a statement past its deadline is
//! cancelled on the server and the caller is back in time; a session whose statement the
//! server cancelled is reused; a silent backend or network costs the connection, never the
//! caller's thread; and no cancel ever reaches a later statement.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{connect, int, recycle, signal, trust, unique};
use pool_driver::{Connection, DriverErrorKind, ResetMode, Value};
use pool_postgres::PgConn;
use pool_testservers::{shared_pg, Proxy, ProxyMode};

const DEADLINE: Duration = Duration::from_millis(500);
/// The cancel's grace for a connection opened with `common::TIMEOUT` (10 s): 1 s.
const GRACE: Duration = Duration::from_secs(1);

/// What another session sees of `pid`: its state and query.
fn activity(observer: &mut PgConn, pid: i64) -> (String, String) {
    let rows = observer
        .query(
            "SELECT coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity WHERE pid = $1",
            &[Value::Int(pid)],
        )
        .expect("pg_stat_activity");
    let row = rows.rows().first().expect("the session is listed");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&row[0]), text(&row[1]))
}

/// `pg_sleep(10)` under a 500 ms deadline: `StatementTimeout` within 600 ms, on the same
/// session, which stays usable (and goes through a reset and back), with the statement gone.
#[test]
fn a_long_statement_is_cancelled_and_the_session_reused() {
    let mut observer = trust();
    let mut conn = trust();
    let pid = int(&mut conn, "SELECT pg_backend_pid()");
    assert!(conn.set_statement_timeout(Some(DEADLINE)));
    for round in 0..3 {
        let started = Instant::now();
        let err = conn
            .query("SELECT pg_sleep(10)", &[])
            .expect_err("cancelled");
        let took = started.elapsed();
        eprintln!("round {round}: {err} after {took:?}");
        assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
        assert!(took >= DEADLINE, "{took:?}");
        assert!(took <= DEADLINE + Duration::from_millis(100), "{took:?}");
        assert!(!conn.is_broken(), "the server acknowledged the cancel");
        assert_eq!(int(&mut conn, "SELECT pg_backend_pid()"), pid);
        let (state, query) = activity(&mut observer, pid);
        assert_eq!(state, "idle", "{query}");
        assert!(!query.contains("pg_sleep"), "{query}");
        conn = recycle(conn, ResetMode::Full);
        assert!(conn.set_statement_timeout(Some(DEADLINE)));
    }
    assert_eq!(int(&mut conn, "SELECT pg_backend_pid()"), pid);
}

/// A lock wait under a deadline, inside a transaction: cancelled in time, and after the
/// release's reset nothing is left: no transaction, no lock, the row free for others.
#[test]
fn a_lock_wait_is_cancelled_and_leaves_no_lock() {
    let table = unique("deadline_lock");
    let mut locker = trust();
    locker
        .execute(
            &format!("CREATE TABLE {table} (id int PRIMARY KEY, n int)"),
            &[],
        )
        .expect("create");
    locker
        .execute(&format!("INSERT INTO {table} VALUES (1, 0)"), &[])
        .expect("insert");
    locker.execute("BEGIN", &[]).expect("begin");
    locker
        .execute(
            &format!("SELECT * FROM {table} WHERE id = 1 FOR UPDATE"),
            &[],
        )
        .expect("lock the row");

    let mut victim = trust();
    let pid = int(&mut victim, "SELECT pg_backend_pid()");
    assert!(victim.set_statement_timeout(Some(DEADLINE)));
    victim.execute("BEGIN", &[]).expect("begin");
    let started = Instant::now();
    let err = victim
        .execute(&format!("UPDATE {table} SET n = n + 1 WHERE id = 1"), &[])
        .expect_err("waits for the lock");
    let took = started.elapsed();
    eprintln!("{err} after {took:?}");
    assert_eq!(err.kind(), DriverErrorKind::StatementTimeout);
    assert!(took <= DEADLINE + Duration::from_millis(100), "{took:?}");
    let mut victim = recycle(victim, ResetMode::Full);

    locker.execute("COMMIT", &[]).expect("commit");
    let locks = int(
        &mut locker,
        &format!("SELECT count(*) FROM pg_locks WHERE pid = {pid}"),
    );
    assert_eq!(locks, 0, "the victim holds no lock");
    let (state, _) = activity(&mut locker, pid);
    assert_eq!(state, "idle", "no transaction left open");
    // The row is free: the victim's session updates it at once.
    assert!(victim.set_statement_timeout(Some(DEADLINE)));
    let n = victim
        .execute(&format!("UPDATE {table} SET n = n + 1 WHERE id = 1"), &[])
        .expect("the row is free");
    assert_eq!(n, 1);
    assert_eq!(
        int(&mut victim, &format!("SELECT n FROM {table} WHERE id = 1")),
        1,
        "the cancelled update did nothing"
    );
    locker
        .execute(&format!("DROP TABLE {table}"), &[])
        .expect("drop");
}

/// A backend that stops answering mid-query (SIGSTOP): the cancel is delivered by the
/// postmaster but never acted on, so the caller gives up after the grace and the connection
/// is closed; the thread is back, and the server serves again once the backend runs.
#[test]
fn a_stopped_backend_costs_the_connection_not_the_caller() {
    let mut conn = trust();
    let pid = int(&mut conn, "SELECT pg_backend_pid()");
    assert!(conn.set_statement_timeout(Some(DEADLINE)));
    let stopper = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        signal(pid, "-STOP");
    });
    let started = Instant::now();
    let err = conn.query("SELECT pg_sleep(3)", &[]).expect_err("stopped");
    let took = started.elapsed();
    stopper.join().expect("stopper");
    signal(pid, "-CONT");
    eprintln!("{err} after {took:?}");
    assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
    assert!(took >= DEADLINE + GRACE, "{took:?}");
    assert!(
        took <= DEADLINE + GRACE + Duration::from_millis(200),
        "{took:?}"
    );
    assert!(conn.is_broken(), "closed, never parked");
    drop(conn);
    let mut fresh = trust();
    assert_eq!(int(&mut fresh, "SELECT 1"), 1);
}

/// A network that goes silent mid-query (a blackholing proxy): the cancel cannot even
/// connect; the caller is back after the grace, the connection is closed.
#[test]
fn a_silent_network_costs_the_connection_not_the_caller() {
    let server = shared_pg();
    let proxy = Proxy::start(([127, 0, 0, 1], server.port()).into()).expect("proxy");
    let args = format!(
        "host=127.0.0.1 port={} user={} dbname={} sslmode=disable",
        proxy.port(),
        server.trust_user(),
        server.database()
    );
    let mut conn = connect(&args);
    assert!(conn.set_statement_timeout(Some(DEADLINE)));
    let started = Instant::now();
    let err = thread::scope(|scope| {
        scope.spawn(|| {
            thread::sleep(Duration::from_millis(100));
            proxy.set_mode(ProxyMode::Blackhole);
        });
        conn.query("SELECT pg_sleep(2)", &[]).expect_err("silent")
    });
    let took = started.elapsed();
    eprintln!("{err} after {took:?}");
    assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
    assert!(
        took <= DEADLINE + GRACE + Duration::from_millis(200),
        "{took:?}"
    );
    assert!(conn.is_broken());
    proxy.set_mode(ProxyMode::Pass);
    let mut fresh = connect(&args);
    assert_eq!(int(&mut fresh, "SELECT 1"), 1);
}

/// Deadlines racing statements that finish just in time: every answer is the statement's own
/// (never a wrong result), and no cancel reaches the next statement, of this user or (after a
/// reset) the next one. Each round's deadline sits inside the statement's run time's spread.
#[test]
fn a_late_cancel_never_reaches_the_next_statement() {
    let mut conn = trust();
    let (mut cancelled, mut finished) = (0, 0);
    for round in 0..120u64 {
        // 20–40 ms statements against a 30 ms deadline.
        let sleep = 0.020 + (round % 21) as f64 / 1000.0;
        assert!(conn.set_statement_timeout(Some(Duration::from_millis(30))));
        match conn.query(
            "SELECT $1::int8 AS round, pg_sleep($2::float8)::text AS slept",
            &[Value::Int(round as i64), Value::Float(sleep)],
        ) {
            Ok(rows) => {
                finished += 1;
                assert_eq!(rows.scalar(), Some(&Value::Int(round as i64)));
            }
            Err(err) => {
                cancelled += 1;
                assert_eq!(err.kind(), DriverErrorKind::StatementTimeout, "{err}");
            }
        }
        if conn.is_broken() {
            conn = trust();
            continue;
        }
        // The next statement of this user, then of the next one: never cancelled.
        assert!(conn.set_statement_timeout(Some(Duration::from_secs(5))));
        assert_eq!(int(&mut conn, "SELECT 7"), 7, "round {round}");
        conn = recycle(conn, ResetMode::Full);
        assert_eq!(int(&mut conn, "SELECT 8"), 8, "round {round}");
    }
    eprintln!("{finished} finished, {cancelled} cancelled");
    assert!(
        cancelled > 0 && finished > 0,
        "the deadline raced both ways"
    );
}

/// The deadline binds the native client's statements too, and a `None` removes it.
#[test]
fn the_native_client_is_bounded_too() {
    let mut conn = trust();
    assert!(conn.set_statement_timeout(Some(Duration::from_millis(200))));
    let client = conn
        .native_mut()
        .downcast_mut::<pool_postgres::PgClient>()
        .expect("PgClient");
    let started = Instant::now();
    let err = client
        .query("SELECT pg_sleep(5)", &[])
        .expect_err("bounded");
    assert_eq!(
        err.code(),
        Some(&pool_postgres::tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert_eq!(
        client.take_expired(),
        Some(pool_postgres::Expired::Cancelled)
    );
    assert!(started.elapsed() < Duration::from_millis(400));
    client.set_statement_timeout(None);
    client.query("SELECT pg_sleep(0.3)", &[]).expect("no bound");
    assert_eq!(client.take_expired(), None);
}
