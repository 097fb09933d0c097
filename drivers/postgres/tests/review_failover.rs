//! Fresh-eyes review of the failover handling (issue 21), driver level, one server: each test
//! reproduces one problem found in review; each was seen failing before its fix, and passes
//! since.
//!
//! * `prefer-standby` throws its kept fallback away when the connect's overall bound runs out
//!   while later hosts are still tried (a silent standby), and the connect fails although a
//!   server that fits answered.
//! * A `read-write`/`primary` key breaks its session on a 25006 that is no failover: the
//!   caller's own `BEGIN READ ONLY`, or a read-only primary that a `primary` key still fits.
//! * After a successful full reset, `detach` keeps a `read-write` session whose server now
//!   says every session is read-only (what the liveness check refuses).
//! * A URL host list turns pieces of an unencoded password into host names.
//! * `postgres://user@/db?host=/socket/dir` (libpq's empty host, the host in the query) is
//!   refused as malformed.

mod common;

use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode};
use pool_postgres::{PgConn, PgDriver};
use pool_testservers::SilentListener;

fn connect_within(args: &str, timeout: Duration) -> Result<PgConn, pool_driver::DriverError> {
    let args = PgDriver.parse_args(args).expect("valid arguments");
    PgDriver.connect(&args, timeout)
}

/// `prefer-standby` keeps the first host that answered but is not a standby as its fallback
/// while it looks for a standby. When a later host never answers (a standby that hangs, a
/// blackholed address) and the connect's overall bound runs out, the whole walk is dropped,
/// the fallback with it, and the connect fails with a timeout although a server that fits
/// the key answered in milliseconds. Both spellings: no `connect_timeout` (the README's
/// `READS` key), and a per-host `connect_timeout` whose sum over the hosts passes the pool's
/// bound.
#[test]
fn prefer_standby_returns_its_fallback_when_the_connect_bound_runs_out() {
    let port = pool_testservers::shared_pg().port();
    let silent = SilentListener::start().expect("silent listener");
    let other_silent = SilentListener::start().expect("silent listener");
    let cases = [
        (
            "no connect_timeout, a silent second host",
            format!(
                "host=127.0.0.1,127.0.0.1 port={port},{} {} target_session_attrs=prefer-standby",
                silent.port(),
                common::tcp_login(false)
            ),
            Duration::from_secs(2),
        ),
        (
            "connect_timeout=1, two silent hosts after the primary, 1.5 s in all",
            format!(
                "host=127.0.0.1,127.0.0.1,127.0.0.1 port={port},{},{} {} connect_timeout=1 \
                 target_session_attrs=prefer-standby",
                silent.port(),
                other_silent.port(),
                common::tcp_login(false)
            ),
            Duration::from_millis(1500),
        ),
    ];
    let mut wrong = Vec::new();
    for (case, args, bound) in cases {
        let started = Instant::now();
        match connect_within(&args, bound) {
            Ok(mut conn) => {
                assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
                eprintln!("{case}: fell back in {:?}", started.elapsed());
            }
            Err(err) => {
                eprintln!(
                    "{case}: failed after {:?} ({:?}): {err}",
                    started.elapsed(),
                    err.kind()
                );
                wrong.push(format!("{case}: {:?}: {err}", err.kind()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "prefer-standby had a primary that answered, yet the connect failed: {wrong:#?}"
    );
}

/// A 25006 on a `read-write` key is taken for a failover: the session is marked broken, the
/// error says the server "changed role" and to retry. But the caller's own read-only
/// transaction (`BEGIN READ ONLY`, which changes nothing the server reports about itself)
/// refuses writes with the same SQLSTATE on a perfectly writable primary: a retry fails the
/// same way every time, each time on a new connection (and in the pool each one marks the
/// key's parked connections suspect, so they are all checked again).
#[test]
fn a_callers_own_read_only_transaction_is_no_failover() {
    let port = pool_testservers::shared_pg().port();
    let args = format!(
        "host=127.0.0.1 port={port} {} target_session_attrs=read-write",
        common::tcp_login(false)
    );
    let mut conn = connect_within(&args, common::TIMEOUT).expect("connects");
    conn.execute("BEGIN READ ONLY", &[]).expect("begin");
    let err = conn
        .execute("CREATE TEMP TABLE review_refused (id int)", &[])
        .expect_err("a read-only transaction refuses writes");
    assert_eq!(err.code(), Some("25006"), "{err}");
    eprintln!(
        "read-write key, BEGIN READ ONLY, write: {:?}: {err}",
        err.kind()
    );
    assert_eq!(
        err.kind(),
        DriverErrorKind::Query,
        "the caller's own read-only transaction on a writable primary was reported as a \
         failover: {err}"
    );
    assert!(!conn.is_broken(), "the session is fine");
    conn.execute("ROLLBACK", &[]).expect("rollback");
    assert_eq!(
        common::text(&mut conn, "SHOW transaction_read_only"),
        "off",
        "the server takes writes"
    );
}

/// `primary` takes a primary whose sessions are read-only (libpq's meaning, the README's
/// "when a read-only primary still counts as the primary"). A write there is refused with
/// 25006, and the driver breaks the session and calls it a role change, although the server
/// still is what the key asked for: the next connect lands on the same server and the next
/// write is refused again, on a new connection each time.
#[test]
fn a_primary_key_keeps_a_read_only_primary_that_still_fits() {
    let port = pool_testservers::shared_pg().port();
    let args = format!(
        "host=127.0.0.1 port={port} {} target_session_attrs=primary",
        common::tcp_login(true)
    );
    for attempt in 1..=2 {
        let mut conn = connect_within(&args, common::TIMEOUT).expect("a primary: fits");
        let err = conn
            .execute("CREATE TEMP TABLE review_refused (id int)", &[])
            .expect_err("read-only sessions");
        assert_eq!(err.code(), Some("25006"), "{err}");
        eprintln!(
            "primary key on a read-only primary, attempt {attempt}: {:?}: {err}",
            err.kind()
        );
        assert!(
            !conn.is_broken(),
            "attempt {attempt}: the server still fits `primary` (not in recovery), yet the \
             session was broken as if it had changed role: {err}"
        );
    }
}

/// `detach` re-checks the role after a successful reset with `reported_mismatch`, which for
/// `read-write` looks only at `in_hot_standby` (so that a caller's own
/// `SET default_transaction_read_only` is no failover). But after a *full* reset the session
/// has no setting of its own any more: a reported `default_transaction_read_only = on` is then
/// the server's (here `ALTER SYSTEM` and a reload, a fence), and the same session fails the
/// liveness check (`connected`). So a busy `read-write` key, whose sessions are reused before
/// `validate_after` and never checked, keeps all of them on the read-only server: its reads
/// are served there for good, and a write through the native client (whose 25006 the driver
/// never sees) is refused on every reuse.
#[test]
fn a_read_write_session_is_not_parked_on_a_server_turned_read_only() {
    let pg = pool_testservers::PgServer::start().expect("a private server");
    let args = format!(
        "{} sslmode=disable target_session_attrs=read-write",
        pg.trust_args()
    );
    let mut conn = connect_within(&args, common::TIMEOUT).expect("a writable server");
    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);

    pg.psql("ALTER SYSTEM SET default_transaction_read_only = on")
        .expect("read-only for everyone");
    pg.psql("SELECT pg_reload_conf()").expect("reload");
    let started = Instant::now();
    // The backend applies the reload when it reads its next statement; that statement's
    // answer reports the new value.
    while common::text(&mut conn, "SHOW default_transaction_read_only") != "on" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the reload never reached the session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let parked = PgDriver.detach(conn, ResetMode::Full);
    let Ok(handle) = parked else {
        return; // refused after its reset: fixed
    };
    let mut conn = PgDriver.attach(handle).expect("attach");
    let err = conn
        .execute("CREATE TEMP TABLE review_fenced (id int)", &[])
        .expect_err("the server refuses writes");
    let would_pass_check = PgDriver.connected(&mut conn, common::TIMEOUT);
    panic!(
        "a read-write session was parked after its full reset on a server whose sessions are \
         all read-only (the reset's answer said default_transaction_read_only=on); the next \
         user's write: {err}; the liveness check on the same session says connected = \
         {would_pass_check}"
    );
}

/// A server fenced read-only (`ALTER SYSTEM SET default_transaction_read_only = on` and a
/// reload, as an HA manager does before it stops a primary) refuses the held session's next
/// write with 25006. The server reports the new `default_transaction_read_only` after the
/// error, but flushes the error on its own: the driver read the reports without waiting for
/// them, so about every other time it found nothing yet and took the refusal for the
/// caller's own read-only transaction (a plain, lasting `Query` error, the session kept on
/// the fenced server). Seen in CI as `tests/failover.rs`'s switchover test; every fence here
/// must break the session.
#[test]
fn every_write_refused_by_a_fenced_server_breaks_the_session() {
    const FENCES: usize = 8;
    let pg = pool_testservers::PgServer::start().expect("a private server");
    let args = format!(
        "{} sslmode=disable target_session_attrs=read-write",
        pg.trust_args()
    );
    // A table of its own: a read-only transaction still writes temporary tables.
    pg.psql("CREATE TABLE fenced_writes (id int)")
        .expect("create the table");
    for fence in 1..=FENCES {
        pg.psql("ALTER SYSTEM RESET default_transaction_read_only")
            .expect("unfence");
        pg.psql("SELECT pg_reload_conf()").expect("reload");
        let mut conn = connect_within(&args, common::TIMEOUT).expect("a writable server");
        conn.execute("INSERT INTO fenced_writes VALUES (0)", &[])
            .expect("writable before the fence");
        pg.psql("ALTER SYSTEM SET default_transaction_read_only = on")
            .expect("fence");
        pg.psql("SELECT pg_reload_conf()").expect("reload");
        // The backend applies the reload when it reads its next statement: the first write
        // after that is refused.
        let started = Instant::now();
        let err = loop {
            match conn.execute("INSERT INTO fenced_writes VALUES (1)", &[]) {
                Ok(_) => assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the reload never reached the session"
                ),
                Err(err) => break err,
            }
        };
        assert_eq!(err.code(), Some("25006"), "fence {fence}: {err}");
        assert_eq!(
            err.kind(),
            DriverErrorKind::Broken,
            "fence {fence}: a fenced server's refusal taken for the caller's own read-only \
             transaction: {err}"
        );
        assert!(conn.is_broken(), "fence {fence}");
    }
}

/// A URL host list is split at commas after the *last* `@` of the authority, and the authority
/// ends at the first `/`, `?` or `#`. A password with an unencoded `,` and `/` (or `?`, `#`)
/// therefore ends the authority inside the password, and its pieces become hosts: the text
/// after the comma is looked up in DNS as a host name and printed in the connect error and in
/// the arguments' display. Before the host list, the same URL was refused as malformed (an
/// invalid port), naming no part of it.
#[test]
fn a_password_piece_never_becomes_a_host_name() {
    const PIECE: &str = "Hunter2piece";
    let port = pool_testservers::shared_pg().port();
    let url = format!("postgres://app:1,{PIECE}/x@127.0.0.1:{port}/pool_test?sslmode=disable");
    let parsed = PgDriver.parse_args(&url);
    let shown = match parsed {
        Err(err) => {
            eprintln!("refused at parse: {err}");
            err.to_string()
        }
        Ok(args) => {
            let host = args.get("host").unwrap_or_default().to_owned();
            let display = args.to_string();
            let connect = PgDriver
                .connect(&args, Duration::from_secs(5))
                .map(|_| "connected".to_owned())
                .unwrap_or_else(|e| e.to_string());
            eprintln!("parsed: host={host:?}; args shown as {display:?}; connect: {connect}");
            format!("host={host}; args: {display}; connect: {connect}")
        }
    };
    assert!(
        !shown.to_lowercase().contains(&PIECE.to_lowercase()),
        "a piece of the password became a host name and is shown: {shown}"
    );
}

/// `postgres://user:password@/dbname?host=/socket/dir`: an empty host in the authority and the
/// socket directory (or a host list) in the query, which libpq reads (an empty host is the
/// default, and the query's `host` names it) and which is how Cloud SQL's and many platforms'
/// docs spell a unix-socket URL. The user info makes the `url` crate refuse it ("empty host"),
/// so such a key cannot be written as a URL; without user info (`postgres:///db?host=...`) it
/// is accepted.
#[test]
fn a_url_with_user_info_and_its_hosts_in_the_query_is_accepted() {
    let pg = pool_testservers::shared_pg();
    let url = format!(
        "postgres://{}@/{}?host={}&port={}",
        pg.trust_user(),
        pg.database(),
        pg.socket_dir().display(),
        pg.port()
    );
    let args = PgDriver
        .parse_args(&url)
        .unwrap_or_else(|e| panic!("libpq reads {url}; refused: {e}"));
    let mut conn = PgDriver.connect(&args, common::TIMEOUT).expect("connects");
    assert_eq!(common::int(&mut conn, "SELECT 1"), 1);
}
