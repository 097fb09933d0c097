//! `detach` must leave nothing of one user's session for the next: transaction, roles,
//! settings, temp tables, locks, prepared statements, LISTEN, cursors.

mod common;

use common::{connect, int, recycle, scram, text, trust, unique};
use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode, Value};
use pool_postgres::{PgClient, PgConn, PgDriver};

/// Everything a session can leave behind, as one row of text.
const STATE: &str = "SELECT concat_ws(' ', \
    'user=' || current_user, 'session=' || session_user, \
    'search_path=' || current_setting('search_path'), \
    'work_mem=' || current_setting('work_mem'), \
    'app=' || coalesce(current_setting('app.tenant', true), ''), \
    'advisory=' || (SELECT count(*) FROM pg_locks \
        WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
    'prepared=' || (SELECT count(*) FROM pg_prepared_statements WHERE from_sql), \
    'cursors=' || (SELECT count(*) FROM pg_cursors WHERE name <> ''), \
    'listening=' || (SELECT count(*) FROM pg_listening_channels()), \
    'temp=' || (SELECT count(*) FROM pg_class WHERE relpersistence = 't'), \
    'xact=' || coalesce(pg_current_xact_id_if_assigned()::text, 'none'))";

/// Leaves every kind of session state behind, ending inside an open transaction.
fn dirty(conn: &mut PgConn, table: &str) {
    for sql in [
        "SET search_path = pg_temp, public".to_owned(),
        "SET work_mem = '1MB'".to_owned(),
        "SELECT set_config('app.tenant', 'acme', false)".to_owned(),
        "SELECT pg_advisory_lock(42)".to_owned(),
        "PREPARE mine AS SELECT 1".to_owned(),
        "PREPARE \"Odd \"\"name\" AS SELECT 2".to_owned(),
        "BEGIN".to_owned(),
        "DECLARE held CURSOR WITH HOLD FOR SELECT 1".to_owned(),
        "COMMIT".to_owned(),
        "LISTEN pool_channel".to_owned(),
        "CREATE TEMP TABLE scratch (x int)".to_owned(),
        "SET ROLE pool_other".to_owned(),
        "BEGIN".to_owned(),
        format!("INSERT INTO {table} VALUES (1)"),
    ] {
        conn.execute(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn clean_state(user: &str) -> String {
    format!(
        "user={user} session={user} search_path=\"$user\", public work_mem=4MB app= advisory=0 \
         prepared=0 cursors=0 listening=0 temp=0 xact=none"
    )
}

fn shared_table() -> String {
    let table = unique("reset_t");
    pool_testservers::shared_pg()
        .psql(&format!(
            "CREATE TABLE {table} (x int); GRANT ALL ON {table} TO PUBLIC"
        ))
        .expect("create table");
    table
}

#[test]
fn full_reset_clears_an_ordinary_users_session() {
    let table = shared_table();
    let mut conn = scram();
    assert_eq!(text(&mut conn, STATE), clean_state("pool_scram"));
    dirty(&mut conn, &table);
    let dirty_state = text(&mut conn, STATE);
    assert!(
        dirty_state.starts_with("user=pool_other session=pool_scram"),
        "{dirty_state}"
    );
    assert!(!dirty_state.contains("xact=none"), "{dirty_state}");

    let mut conn = recycle(conn, ResetMode::Full);
    assert_eq!(text(&mut conn, STATE), clean_state("pool_scram"));
    // The uncommitted insert is gone, for this session and for everyone else.
    assert_eq!(int(&mut conn, &format!("SELECT count(*) FROM {table}")), 0);
    let mut other = trust();
    assert_eq!(int(&mut other, &format!("SELECT count(*) FROM {table}")), 0);
    // Names are free again: the next user can prepare and create what the last one did.
    conn.execute("PREPARE mine AS SELECT 1", &[]).unwrap();
    conn.execute("CREATE TEMP TABLE scratch (x int)", &[])
        .unwrap();
}

#[test]
fn full_reset_undoes_session_authorization_of_a_superuser() {
    let mut conn = trust();
    conn.execute("SET SESSION AUTHORIZATION pool_scram", &[])
        .unwrap();
    conn.execute("SET ROLE pool_other", &[]).unwrap();
    assert_eq!(
        text(&mut conn, "SELECT current_user || ' ' || session_user"),
        "pool_other pool_scram"
    );
    let mut conn = recycle(conn, ResetMode::Full);
    assert_eq!(
        text(&mut conn, "SELECT current_user || ' ' || session_user"),
        "pool_trust pool_trust"
    );
}

#[test]
fn full_reset_recovers_an_aborted_transaction_with_savepoints() {
    let mut conn = trust();
    conn.execute("BEGIN", &[]).unwrap();
    conn.execute("SAVEPOINT a", &[]).unwrap();
    assert!(conn.execute("SELECT 1/0", &[]).is_err());
    let err = conn.query("SELECT 1", &[]).unwrap_err();
    assert_eq!(err.code(), Some("25P02"), "{err}"); // in failed transaction
    let mut conn = recycle(conn, ResetMode::Full);
    assert_eq!(text(&mut conn, STATE), clean_state("pool_trust"));
}

#[test]
fn connect_time_settings_survive_the_reset() {
    let pg = pool_testservers::shared_pg();
    let mut conn = connect(&format!(
        "{} options='-c search_path=custom,public'",
        pg.trust_args()
    ));
    conn.execute("SET search_path = other", &[]).unwrap();
    let mut conn = recycle(conn, ResetMode::Full);
    assert_eq!(
        text(&mut conn, "SELECT current_setting('search_path')"),
        "custom,public"
    );
}

#[test]
fn buffered_notifications_do_not_reach_the_next_user() {
    let mut conn = trust();
    conn.execute("LISTEN pool_note; NOTIFY pool_note, 'secret payload'", &[])
        .unwrap();
    let client = conn.native_mut().downcast_mut::<PgClient>().unwrap();
    assert_eq!(
        client.notifications().len(),
        1,
        "the notification is buffered"
    );
    let mut conn = recycle(conn, ResetMode::Full);
    let client = conn.native_mut().downcast_mut::<PgClient>().unwrap();
    assert_eq!(client.notifications().len(), 0);
}

#[test]
fn rollback_only_ends_the_transaction_and_keeps_the_session() {
    let table = shared_table();
    let mut conn = trust();
    conn.execute("SET search_path = pg_temp, public", &[])
        .unwrap();
    conn.execute("CREATE TEMP TABLE kept (x int)", &[]).unwrap();
    conn.execute("BEGIN", &[]).unwrap();
    conn.execute(
        &format!("INSERT INTO public.{table} VALUES ($1)"),
        &[Value::Int(1)],
    )
    .unwrap();
    let mut conn = recycle(conn, ResetMode::RollbackOnly);
    assert_eq!(
        int(&mut conn, &format!("SELECT count(*) FROM public.{table}")),
        0
    );
    assert_eq!(
        text(&mut conn, "SELECT current_setting('search_path')"),
        "pg_temp, public"
    );
    assert_eq!(int(&mut conn, "SELECT count(*) FROM kept"), 0);
    assert_eq!(
        text(
            &mut conn,
            "SELECT coalesce(pg_current_xact_id_if_assigned()::text, 'none')"
        ),
        "none"
    );
}

#[test]
fn a_broken_connection_is_not_detached() {
    let mut conn = trust();
    let err = conn
        .execute("SELECT pg_terminate_backend(pg_backend_pid())", &[])
        .unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
    assert!(conn.is_broken());
    let err = PgDriver.detach(conn, ResetMode::Full).unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
}

#[test]
fn changes_made_through_the_native_client_are_reset_too() {
    let mut conn = trust();
    let client = conn.native_mut().downcast_mut::<PgClient>().unwrap();
    client
        .batch_execute("SET search_path = elsewhere; BEGIN")
        .unwrap();
    let mut conn = recycle(conn, ResetMode::Full);
    assert_eq!(text(&mut conn, STATE), clean_state("pool_trust"));
    // Detaching again without using the connection in between is free and harmless.
    let mut conn = recycle(recycle(conn, ResetMode::Full), ResetMode::Full);
    assert_eq!(text(&mut conn, STATE), clean_state("pool_trust"));
}

/// `native(&self)` counts as use: the release then runs the reset, although `&Client` could
/// not have changed the session (the rule: any native access is use). Seen from another
/// session: the backend's last query starts again, at the reset.
#[test]
fn shared_native_access_counts_as_use() {
    let mut conn = trust();
    let pid = int(&mut conn, "SELECT pg_backend_pid()");
    let conn = recycle(conn, ResetMode::Full);
    let mut observer = trust();
    let started = format!("SELECT query_start::text FROM pg_stat_activity WHERE pid = {pid}");
    let before = text(&mut observer, &started);
    assert!(!conn.needs_reset(), "just reset");
    assert!(conn.native().downcast_ref::<PgClient>().is_some());
    assert!(conn.needs_reset(), "native() counts as use");
    let conn = recycle(conn, ResetMode::Full);
    assert!(!conn.needs_reset(), "reset again");
    assert_ne!(
        text(&mut observer, &started),
        before,
        "the release ran the reset"
    );
}

/// Releasing a connection must not write a WARNING to the server log: a bare leading
/// `ROLLBACK` would ("there is no transaction in progress") on nearly every release, which
/// floods the log of a busy service. A private server, so its log holds only this test's work.
#[test]
fn releases_write_no_warning_to_the_server_log() {
    let mut server = pool_testservers::PgServer::start().expect("start a private server");
    let mut conn = connect(&server.trust_args());
    for round in 0..10 {
        // Outside a transaction (the usual release), after a committed one, and rollback-only.
        conn.execute("SELECT 1", &[]).unwrap();
        conn = recycle(conn, ResetMode::Full);
        conn.execute("BEGIN", &[]).unwrap();
        conn.execute("COMMIT", &[]).unwrap();
        conn = recycle(conn, ResetMode::Full);
        conn.execute("SELECT 1", &[]).unwrap();
        conn = recycle(conn, ResetMode::RollbackOnly);
        assert_eq!(int(&mut conn, "SELECT 1"), 1, "round {round}");
    }
    // An aborted transaction is recovered by the reset's second try, also without a warning.
    conn.execute("BEGIN", &[]).unwrap();
    assert!(conn.execute("SELECT 1/0", &[]).is_err());
    let mut conn = recycle(conn, ResetMode::Full);
    assert_eq!(text(&mut conn, STATE), clean_state("pool_trust"));
    drop(conn);
    server.stop().expect("stop");
    let log = std::fs::read_to_string(server.log_path()).expect("read the server log");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARNING")).collect();
    assert!(
        warnings.is_empty(),
        "warnings in the server log: {warnings:#?}"
    );
}
