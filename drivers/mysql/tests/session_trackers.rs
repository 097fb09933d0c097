//! What MariaDB's session trackers report, case by case (issue 20): whether a release could
//! trust the server's word that a session is unchanged. Each case runs on a fresh session with
//! `session_track_state_change=ON` and `session_track_transaction_info=STATE`, through the
//! `mysql` crate with `CLIENT_SESSION_TRACK`, and records what the last OK packet of its last
//! statement said (`Conn::session_state_changes`): all a driver on this crate can read.
//!
//! **The verdict: too weak to decide a release on** (the table is in ARCHITECTURE.md, "What
//! MariaDB reports"). MariaDB 10.11 does not report `GET_LOCK` at all, reports `LOCK TABLES`
//! and an open transaction only through the transaction tracker, and a statement that returns
//! rows ends in an EOF packet, not an OK packet, so nothing a `SELECT` changed (`SELECT @v :=
//! 1`, `SELECT GET_LOCK(…)`) is readable. `CLIENT_DEPRECATE_EOF`, which would end result sets
//! with an OK packet, breaks the `mysql` crate's handshake (it skips an EOF packet
//! unconditionally after column definitions: "Could not setup connection"). So a session that
//! ran a `SELECT` — nearly every session — could never be proven unchanged, and the driver keeps
//! the full reset for every used session.
//!
//! Run with `--nocapture` to print the table; the test asserts it, so a server (or crate) that
//! starts or stops reporting a kind of change fails here first.

use mysql::consts::{CapabilityFlags, SessionStateType};
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use pool_testservers::shared_maria;

/// Roles and procedures the cases use, made by root (as conformance.rs does).
const SETUP: &str = "CREATE ROLE IF NOT EXISTS trackers_role; \
     GRANT trackers_role TO pool_user; \
     CREATE OR REPLACE PROCEDURE pool_test.trackers_set_role() SQL SECURITY INVOKER \
         SET ROLE trackers_role; \
     CREATE OR REPLACE PROCEDURE pool_test.trackers_switch_db() SQL SECURITY INVOKER \
         EXECUTE IMMEDIATE 'USE information_schema'; \
     CREATE OR REPLACE PROCEDURE pool_test.trackers_set_var() SQL SECURITY INVOKER \
         SET @trackers_in_proc = 1; \
     CREATE TABLE IF NOT EXISTS pool_test.trackers_t (id INT PRIMARY KEY) ENGINE=InnoDB; \
     INSERT IGNORE INTO pool_test.trackers_t VALUES (1)";

/// A login as the test user on the shared server, asking for `capabilities` on top.
fn opts(capabilities: CapabilityFlags) -> OptsBuilder {
    let server = shared_maria();
    OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(server.port())
        .user(Some(server.user()))
        .pass(Some(server.password()))
        .db_name(Some(server.database()))
        .additional_capabilities(capabilities)
}

fn session() -> Conn {
    let opts = opts(CapabilityFlags::CLIENT_SESSION_TRACK);
    let mut conn = Conn::new(opts).expect("connect");
    conn.query_drop(
        "SET SESSION session_track_state_change = ON, \
         session_track_transaction_info = 'STATE'",
    )
    .expect("trackers on");
    conn
}

/// What the last OK packet of `statement` reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Report {
    state_changed: bool,
    kinds: Vec<String>,
    transaction: Option<String>,
}

fn run(conn: &mut Conn, statement: &str) -> Report {
    let mut result = conn
        .query_iter(statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    while let Some(set) = result.iter() {
        for row in set {
            row.unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    }
    drop(result);
    let mut report = Report::default();
    for info in conn.session_state_changes().expect("session state") {
        match info.data_type() {
            SessionStateType::SESSION_TRACK_TRANSACTION_STATE => {
                report.transaction = Some(format!("{:?}", info.decode()));
            }
            other => {
                report.state_changed = true;
                report.kinds.push(format!("{other:?}"));
            }
        }
    }
    report
}

/// What a case's last statement reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The state-change tracker (`SERVER_SESSION_STATE_CHANGED` with a report).
    Reported,
    /// Only the transaction tracker (`T…`, `…W…`, `…L`).
    TransactionOnly,
    /// Nothing.
    Nothing,
}

/// Each case: what it is, its statements, and what the server reports after the last one.
const CASES: &[(&str, &[&str], Seen)] = &[
    ("SET ROLE", &["SET ROLE trackers_role"], Seen::Reported),
    (
        "a role set by CALL",
        &["CALL trackers_set_role()"],
        Seen::Reported,
    ),
    (
        "a role set by EXECUTE IMMEDIATE",
        &["EXECUTE IMMEDIATE CONCAT('SET RO', 'LE trackers_role')"],
        Seen::Reported,
    ),
    (
        "a role set by PREPARE/EXECUTE",
        &[
            "PREPARE trackers_s FROM 'SET ROLE trackers_role'",
            "EXECUTE trackers_s",
        ],
        Seen::Reported,
    ),
    (
        "a user variable (SET)",
        &["SET @trackers = 1"],
        Seen::Reported,
    ),
    (
        "a user variable in a SELECT",
        &["SELECT @trackers := 1"],
        Seen::Nothing,
    ),
    (
        "a user variable set by CALL",
        &["CALL trackers_set_var()"],
        Seen::Reported,
    ),
    (
        "a temporary table",
        &["CREATE TEMPORARY TABLE trackers_tmp (x INT)"],
        Seen::Reported,
    ),
    (
        "GET_LOCK",
        &["SELECT GET_LOCK('trackers_lock', 0)"],
        Seen::Nothing,
    ),
    (
        "GET_LOCK in DO",
        &["DO GET_LOCK('trackers_lock2', 0)"],
        Seen::Nothing,
    ),
    (
        "LOCK TABLES",
        &["LOCK TABLES trackers_t READ"],
        Seen::TransactionOnly,
    ),
    ("USE", &["USE information_schema"], Seen::Reported),
    (
        "USE in CALL",
        &["CALL trackers_switch_db()"],
        Seen::Reported,
    ),
    (
        "SET SESSION sql_mode",
        &["SET SESSION sql_mode = 'ANSI'"],
        Seen::Reported,
    ),
    (
        "SET SESSION wait_timeout",
        &["SET SESSION wait_timeout = 1000"],
        Seen::Reported,
    ),
    (
        "a prepared statement",
        &["PREPARE trackers_p FROM 'SELECT 1'"],
        Seen::Reported,
    ),
    ("autocommit", &["SET autocommit = 0"], Seen::Reported),
    (
        "transaction characteristics",
        &["SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
        Seen::Reported,
    ),
    ("character set", &["SET NAMES latin1"], Seen::Reported),
    ("profiling", &["SET profiling = 1"], Seen::Reported),
    (
        "START TRANSACTION",
        &["START TRANSACTION"],
        Seen::TransactionOnly,
    ),
    (
        "a transaction with a write",
        &[
            "START TRANSACTION",
            "UPDATE trackers_t SET id = 1 WHERE id = 1",
        ],
        Seen::TransactionOnly,
    ),
    ("SELECT 1 (no change)", &["SELECT 1"], Seen::Nothing),
    (
        "an autocommitted write (no change)",
        &["UPDATE trackers_t SET id = 1 WHERE id = 1"],
        Seen::Nothing,
    ),
];

#[test]
fn what_the_session_trackers_report() {
    shared_maria().sql(SETUP).expect("setup");
    let mut wrong = Vec::new();
    for (name, statements, expected) in CASES {
        let mut conn = session();
        let mut report = Report::default();
        for statement in *statements {
            report = run(&mut conn, statement);
        }
        let seen = match (report.state_changed, &report.transaction) {
            (true, _) => Seen::Reported,
            (false, Some(_)) => Seen::TransactionOnly,
            (false, None) => Seen::Nothing,
        };
        println!(
            "| {name} | `{}` | {seen:?} | {:?} {:?} |",
            statements.join("; "),
            report.kinds,
            report.transaction
        );
        if seen != *expected {
            wrong.push(format!("{name}: expected {expected:?}, saw {seen:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// `CLIENT_DEPRECATE_EOF` (result sets ending in an OK packet that could carry the report) is
/// not usable with the `mysql` crate: the connect fails.
#[test]
fn the_mysql_crate_cannot_end_result_sets_with_ok_packets() {
    let opts = opts(CapabilityFlags::CLIENT_SESSION_TRACK | CapabilityFlags::CLIENT_DEPRECATE_EOF);
    assert!(Conn::new(opts).is_err());
}
