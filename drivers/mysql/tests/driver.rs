//! The driver against a private MariaDB (shared by this file's tests; none stops it).

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pool_driver::{ConnArgs, Connection, Driver, DriverErrorKind, ResetMode, Rows, Value};
use pool_mysql::{MyConn, MysqlDriver};
use pool_testservers::{shared_maria, MariaServer};

mod common;
use common::{connect as connect_to, TIMEOUT};

fn server() -> &'static MariaServer {
    shared_maria()
}

fn connect() -> MyConn {
    connect_to(&server().args())
}

fn scalar(conn: &mut MyConn, sql: &str) -> Value {
    let rows = conn
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.scalar().cloned().unwrap_or(Value::Null)
}

fn text(conn: &mut MyConn, sql: &str) -> String {
    scalar(conn, sql).to_string()
}

/// The client address the server sees: `127.0.0.1:port` over TCP, `localhost` over the socket.
fn client_host(conn: &mut MyConn) -> String {
    text(
        conn,
        "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
    )
}

#[test]
fn connects_over_tcp_socket_and_url_exactly_where_asked() {
    let mut tcp = connect();
    assert!(
        client_host(&mut tcp).starts_with("127.0.0.1:"),
        "a TCP connect must stay on TCP (prefer_socket=false)"
    );
    let mut sock = connect_to(&server().socket_args());
    assert_eq!(client_host(&mut sock), "localhost");
    let mut url = connect_to(&server().url());
    assert_eq!(text(&mut url, "SELECT DATABASE()"), "pool_test");
    assert_eq!(
        text(&mut url, "SELECT CURRENT_USER()"),
        "pool_user@%".replace('%', &current_host(&mut url))
    );
}

fn current_host(conn: &mut MyConn) -> String {
    let who = text(conn, "SELECT CURRENT_USER()");
    who.split_once('@')
        .map(|(_, h)| h.to_owned())
        .unwrap_or_default()
}

#[test]
fn aliases_reach_the_same_server() {
    let s = server();
    let args = format!(
        "host=127.0.0.1 port={} username={} pass={} database=pool_test",
        s.port(),
        s.user(),
        s.password()
    );
    let mut conn = connect_to(&args);
    assert_eq!(text(&mut conn, "SELECT DATABASE()"), "pool_test");
}

/// The same rows without parameters and with them (sent as literals).
#[test]
fn values_round_trip_in_both_protocols() {
    let mut conn = connect();
    conn.execute(
        "CREATE TEMPORARY TABLE v (id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, f DOUBLE,
           fl FLOAT, d DECIMAL(10,2), s VARCHAR(20), b VARBINARY(8), bl BLOB, t TEXT,
           dt DATETIME(3), day DATE, tm TIME, flag BOOL, n INT)",
        &[],
    )
    .expect("create");
    let inserted = conn
        .execute(
            "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &[
                1.into(),
                (-5_000_000_000i64).into(),
                Value::Text("18446744073709551615".into()),
                2.5f64.into(),
                0.1f32.into(),
                Value::Text("12.30".into()),
                "héllo".into(),
                Value::Bytes(vec![0, 0xff, 7]),
                Value::Bytes(b"blob".to_vec()),
                "long text".into(),
                "2024-05-01 12:03:04.250".into(),
                "2024-05-01".into(),
                "-26:03:04".into(),
                true.into(),
                Value::Null,
            ],
        )
        .expect("insert");
    assert_eq!(inserted, 1);

    let expected = vec![
        Value::Int(1),
        Value::Int(-5_000_000_000),
        Value::Text("18446744073709551615".into()),
        Value::Float(2.5),
        Value::Float(0.1),
        Value::Text("12.30".into()),
        Value::Text("héllo".into()),
        Value::Bytes(vec![0, 0xff, 7]),
        Value::Bytes(b"blob".to_vec()),
        Value::Text("long text".into()),
        Value::Text("2024-05-01 12:03:04.250".into()),
        Value::Text("2024-05-01".into()),
        Value::Text("-26:03:04".into()),
        Value::Int(1),
        Value::Null,
    ];
    let text_rows = conn.query("SELECT * FROM v", &[]).expect("text query");
    let binary_rows = conn
        .query("SELECT * FROM v WHERE id = ?", &[1.into()])
        .expect("binary query");
    assert_eq!(text_rows.rows(), std::slice::from_ref(&expected));
    assert_eq!(binary_rows.rows(), [expected]);
    assert_eq!(text_rows.columns()[6], "s");
    assert_eq!(text_rows, binary_rows);
    assert_eq!(
        text_rows.get_named(0, "flag").and_then(Value::as_bool),
        Some(true)
    );

    let updated = conn
        .execute("UPDATE v SET n = ? WHERE id >= ?", &[7.into(), 0.into()])
        .expect("update");
    assert_eq!(updated, 1);
    assert_eq!(conn.execute("DELETE FROM v", &[]).expect("delete"), 1);
    let empty: Rows = conn.query("SELECT * FROM v", &[]).expect("empty");
    assert!(empty.is_empty() && empty.columns().len() == 15);
}

#[test]
fn multi_statement_text_queries_are_read_to_the_end() {
    let mut conn = connect();
    let rows = conn
        .query(
            "SET @a := 41; SELECT @a + 1 AS answer; SELECT 'ignored'",
            &[],
        )
        .expect("multi");
    assert_eq!(rows.get_named(0, "answer"), Some(&Value::Int(42)));
    // The connection is in step for the next command.
    assert_eq!(scalar(&mut conn, "SELECT 7"), Value::Int(7));
    // An error in a later statement is reported, not swallowed.
    let err = conn
        .query("SELECT 1; SELECT * FROM no_such_table", &[])
        .expect_err("fails");
    assert_eq!(err.code(), Some("1146"));
    assert!(!conn.is_broken());
    assert_eq!(scalar(&mut conn, "SELECT 8"), Value::Int(8));
}

#[test]
fn statement_errors_keep_the_connection() {
    let mut conn = connect();
    let err = conn.query("SELEC 1", &[]).expect_err("syntax error");
    assert_eq!(
        (err.kind(), err.code()),
        (DriverErrorKind::Query, Some("1064"))
    );
    assert!(err.message().contains("SQL syntax"), "{err}");
    let err = conn
        .query("SELECT ? + ?", &[1.into()])
        .expect_err("wrong parameter count");
    assert_eq!(err.kind(), DriverErrorKind::Query);
    assert!(!conn.is_broken());
    assert_eq!(scalar(&mut conn, "SELECT 1"), Value::Int(1));
}

/// Everything one request can leave in its session, and whether a full reset clears it, with
/// the current database left as it was and switched away (which the driver restores after
/// `COM_RESET_CONNECTION` with `USE`).
#[test]
fn full_detach_clears_session_state() {
    clears_session_state(false);
}

#[test]
fn full_detach_after_use_clears_session_state() {
    clears_session_state(true);
}

fn clears_session_state(with_use: bool) {
    let driver = MysqlDriver;
    let s = server();
    s.sql("CREATE TABLE IF NOT EXISTS pool_test.reset_probe (id INT)")
        .expect("create probe table");
    let mut conn = connect();
    let id_before = conn.connection_id();
    let defaults = session_snapshot(&mut conn);
    // Named locks are server-wide: each variant of this test (run in parallel) takes its own.
    let lock_name = format!("pool_mysql_probe_{with_use}");

    conn.execute("LOCK TABLES reset_probe READ", &[])
        .expect("lock tables");
    conn.execute("UNLOCK TABLES", &[]).expect("unlock");
    if with_use {
        conn.execute("USE information_schema", &[]).expect("use");
        conn.execute("USE pool_test", &[]).expect("use");
    }
    conn.execute("SET SESSION autocommit = 0", &[])
        .expect("autocommit");
    conn.execute("BEGIN", &[]).expect("begin");
    conn.execute(
        "INSERT INTO reset_probe VALUES (?)",
        &[Value::Int(id_before.into())],
    )
    .expect("insert");
    conn.execute("SET @x := 42", &[]).expect("user variable");
    conn.execute("CREATE TEMPORARY TABLE scratch (a INT)", &[])
        .expect("temp table");
    conn.execute("SET SESSION sql_mode = 'ANSI_QUOTES'", &[])
        .expect("sql_mode");
    conn.execute("SET SESSION wait_timeout = 77", &[])
        .expect("wait_timeout");
    conn.execute("SET NAMES latin1", &[]).expect("charset");
    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE", &[])
        .expect("isolation");
    assert_eq!(
        scalar(&mut conn, &format!("SELECT GET_LOCK('{lock_name}', 0)")),
        Value::Int(1)
    );
    conn.execute("PREPARE probe_stmt FROM 'SELECT 1'", &[])
        .expect("prepare");
    conn.execute("SELECT LAST_INSERT_ID(99)", &[])
        .expect("last insert id");
    // A binary-protocol statement, cached by the `mysql` crate.
    conn.query("SELECT ? + 1", &[1.into()]).expect("exec");
    assert_ne!(session_snapshot(&mut conn), defaults);

    let mut handle = driver.detach(conn, ResetMode::Full).expect("reset");
    assert!(driver.connected(&mut handle, TIMEOUT));
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(conn.connection_id(), id_before, "reset, not a reconnect");

    assert_eq!(session_snapshot(&mut conn), defaults);
    assert_eq!(scalar(&mut conn, "SELECT @x"), Value::Null);
    let err = conn
        .query("SELECT * FROM scratch", &[])
        .expect_err("temp table gone");
    assert_eq!(err.code(), Some("1146"));
    assert_eq!(
        scalar(&mut conn, &format!("SELECT IS_USED_LOCK('{lock_name}')")),
        Value::Null
    );
    assert_eq!(scalar(&mut conn, "SELECT LAST_INSERT_ID()"), Value::Int(0));
    let err = conn
        .execute("EXECUTE probe_stmt", &[])
        .expect_err("statement gone");
    assert_eq!(err.code(), Some("1243"));
    // A statement with parameters still runs (nothing of the driver's was prepared).
    assert_eq!(
        conn.query("SELECT ? + 1", &[1.into()])
            .expect("re-exec")
            .scalar(),
        Some(&Value::Int(2))
    );
    let mut other = connect();
    assert_eq!(
        scalar(
            &mut other,
            &format!("SELECT COUNT(*) FROM reset_probe WHERE id = {id_before}")
        ),
        Value::Int(0),
        "the open transaction was rolled back"
    );
}

fn grant_probe_role() {
    server()
        .sql("CREATE ROLE IF NOT EXISTS pool_probe_role; GRANT pool_probe_role TO pool_user")
        .expect("role");
}

/// Session state a reset must restore, read in one round trip.
fn session_snapshot(conn: &mut MyConn) -> Vec<Value> {
    let rows = conn
        .query(
            "SELECT @@session.sql_mode = @@global.sql_mode, @@session.wait_timeout,
                    @@character_set_client, @@collation_connection, @@character_set_results,
                    @@session.tx_isolation, @@autocommit, DATABASE()",
            &[],
        )
        .expect("snapshot");
    rows.rows()[0].clone()
}

/// `COM_RESET_CONNECTION` keeps the current database after `USE`; the driver restores it.
#[test]
fn full_detach_restores_the_current_database() {
    let driver = MysqlDriver;
    let mut conn = connect();
    conn.execute("USE information_schema", &[]).expect("use");
    let conn = driver.detach(conn, ResetMode::Full).expect("reset");
    let mut conn = driver.attach(conn).expect("attach");
    assert_eq!(text(&mut conn, "SELECT DATABASE()"), "pool_test");

    // Through the native client too.
    {
        use mysql::prelude::Queryable;
        let native = conn
            .native_mut()
            .downcast_mut::<mysql::Conn>()
            .expect("native");
        native.select_db("information_schema").expect("select_db");
        native.query_drop("SELECT 1").expect("query");
    }
    let mut conn = driver.detach(conn, ResetMode::Full).expect("reset");
    assert_eq!(text(&mut conn, "SELECT DATABASE()"), "pool_test");

    // A session opened without a database goes back to none.
    let s = server();
    let args = format!(
        "host=127.0.0.1 port={} user={} password={}",
        s.port(),
        s.user(),
        s.password()
    );
    let mut conn = connect_to(&args);
    assert_eq!(scalar(&mut conn, "SELECT DATABASE()"), Value::Null);
    conn.execute("use pool_test", &[]).expect("use");
    let mut conn = driver.detach(conn, ResetMode::Full).expect("reset");
    assert_eq!(scalar(&mut conn, "SELECT DATABASE()"), Value::Null);
    assert_eq!(scalar(&mut conn, "SELECT 1"), Value::Int(1));
}

/// MariaDB keeps `SET ROLE` through `COM_RESET_CONNECTION` (and `COM_CHANGE_USER`), however
/// it was set. The driver finds the role by asking the server after the reset, puts the
/// session's own back, and keeps the session.
#[test]
fn full_detach_restores_the_role_however_it_was_set() {
    let driver = MysqlDriver;
    grant_probe_role();
    for set in [
        "SET ROLE pool_probe_role",
        "EXECUTE IMMEDIATE CONCAT('SET RO', 'LE pool_probe_role')",
    ] {
        let mut conn = connect();
        let id = conn.connection_id();
        conn.execute(set, &[]).expect("set role");
        assert_eq!(text(&mut conn, "SELECT CURRENT_ROLE()"), "pool_probe_role");
        let mut conn = driver.detach(conn, ResetMode::Full).expect("restored");
        assert_eq!(conn.connection_id(), id, "{set}: the session is kept");
        assert_eq!(
            scalar(&mut conn, "SELECT CURRENT_ROLE()"),
            Value::Null,
            "{set}"
        );
    }
}

/// An account with a default role gets that role back, not none: what the server said right
/// after connect is what the reset restores.
#[test]
fn full_detach_restores_the_accounts_default_role() {
    let driver = MysqlDriver;
    let s = server();
    s.sql(
        "CREATE ROLE IF NOT EXISTS pool_default_role; \
         CREATE ROLE IF NOT EXISTS pool_probe_role; \
         CREATE USER IF NOT EXISTS pool_role_user@'%' IDENTIFIED BY 'role-user-pw'; \
         GRANT ALL ON pool_test.* TO pool_role_user@'%'; \
         GRANT pool_default_role TO pool_role_user@'%'; \
         GRANT pool_probe_role TO pool_role_user@'%'; \
         SET DEFAULT ROLE pool_default_role FOR pool_role_user@'%'",
    )
    .expect("account with a default role");
    let args = format!(
        "host=127.0.0.1 port={} user=pool_role_user password=role-user-pw dbname=pool_test",
        s.port()
    );
    let mut conn = connect_to(&args);
    let id = conn.connection_id();
    assert_eq!(
        text(&mut conn, "SELECT CURRENT_ROLE()"),
        "pool_default_role"
    );
    for set in ["SET ROLE NONE", "SET ROLE pool_probe_role"] {
        conn.execute(set, &[]).expect("set role");
        conn = driver.detach(conn, ResetMode::Full).expect("restored");
        assert_eq!(conn.connection_id(), id, "{set}: the session is kept");
        assert_eq!(
            text(&mut conn, "SELECT CURRENT_ROLE()"),
            "pool_default_role",
            "{set}"
        );
    }
}

/// A role that cannot be put back (dropped while the session had switched away from it) is a
/// `NotReusable` refusal: the pool closes the connection rather than hand on another role.
#[test]
fn full_detach_refuses_a_session_it_cannot_restore() {
    let driver = MysqlDriver;
    let s = server();
    s.sql(
        "CREATE ROLE IF NOT EXISTS pool_doomed_role; \
         CREATE USER IF NOT EXISTS pool_doomed_user@'%' IDENTIFIED BY 'doomed-user-pw'; \
         GRANT pool_doomed_role TO pool_doomed_user@'%'; \
         SET DEFAULT ROLE pool_doomed_role FOR pool_doomed_user@'%'",
    )
    .expect("account with a default role");
    let args = format!(
        "host=127.0.0.1 port={} user=pool_doomed_user password=doomed-user-pw",
        s.port()
    );
    let mut conn = connect_to(&args);
    conn.execute("SET ROLE NONE", &[]).expect("set role");
    s.sql("DROP ROLE pool_doomed_role").expect("drop role");
    let err = driver
        .detach(conn, ResetMode::Full)
        .expect_err("the role cannot come back");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");
    assert!(!err.message().contains("doomed-user-pw"), "{err}");
}

/// Another account logged in through the native client (`change_user`) cannot be told from a
/// wanted one by the reset: the session is refused, never handed on as someone else.
#[test]
fn full_detach_refuses_a_session_of_another_account() {
    use mysql::ChangeUserOpts;
    let driver = MysqlDriver;
    let s = server();
    s.sql(
        "CREATE USER IF NOT EXISTS pool_second_user@'%' IDENTIFIED BY 'second-user-pw'; \
         GRANT ALL ON pool_test.* TO pool_second_user@'%'",
    )
    .expect("second account");
    let mut conn = connect();
    conn.native_mut()
        .downcast_mut::<mysql::Conn>()
        .expect("native")
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some("pool_second_user".into()))
                .with_pass(Some("second-user-pw".into()))
                .with_db_name(Some("pool_test".into())),
        )
        .expect("change user");
    let err = driver
        .detach(conn, ResetMode::Full)
        .expect_err("another account");
    assert_eq!(err.kind(), DriverErrorKind::NotReusable, "{err}");
}

/// MariaDB keeps the statement profiles (with their text) through `COM_RESET_CONNECTION`
/// and goes on profiling although `@@profiling` then says 0. The reset clears them and stops
/// profiling for real; a later user can still switch it on.
#[test]
fn full_detach_clears_statement_profiles() {
    let driver = MysqlDriver;
    let mut conn = connect();
    let id = conn.connection_id();
    conn.execute("SET profiling = 1", &[]).expect("profiling");
    conn.execute("SELECT 'a secret of the previous user'", &[])
        .expect("profiled");
    let mut conn = driver.detach(conn, ResetMode::Full).expect("reset");
    assert_eq!(conn.connection_id(), id, "the session is kept");
    conn.execute("SELECT 1", &[]).expect("select");
    let profiles = conn.query("SHOW PROFILES", &[]).expect("show profiles");
    assert!(profiles.is_empty(), "{profiles:?}");
    conn.execute("SET profiling = 1", &[]).expect("profiling");
    conn.execute("SELECT 2", &[]).expect("profiled");
    let profiles = conn.query("SHOW PROFILES", &[]).expect("show profiles");
    assert_eq!(profiles.len(), 1, "{profiles:?}");
}

/// `native(&self)` counts as use: through `&mysql::Conn` the socket is reachable (`AsRawFd`),
/// so a caller can change its options. The release then runs the full reset, which also
/// puts the session's socket timeouts back.
#[test]
fn shared_native_access_counts_as_use() {
    use std::os::fd::{AsRawFd, BorrowedFd};
    fn read_timeout(conn: &MyConn) -> Option<Duration> {
        let native = conn.native().downcast_ref::<mysql::Conn>().expect("native");
        // SAFETY: the descriptor is owned by `native`, which outlives this borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(native.as_raw_fd()) };
        socket2::SockRef::from(&fd)
            .read_timeout()
            .expect("read timeout")
    }
    let driver = MysqlDriver;
    let conn = connect();
    assert!(!conn.needs_reset(), "a fresh session");
    {
        let native = conn.native().downcast_ref::<mysql::Conn>().expect("native");
        // SAFETY: as above.
        let fd = unsafe { BorrowedFd::borrow_raw(native.as_raw_fd()) };
        socket2::SockRef::from(&fd)
            .set_read_timeout(Some(Duration::from_millis(7)))
            .expect("set read timeout");
    }
    assert!(conn.needs_reset(), "native() counts as use");
    let conn = driver.detach(conn, ResetMode::Full).expect("reset");
    assert_eq!(
        read_timeout(&conn),
        None,
        "the session's own timeout is back"
    );
}

#[test]
fn rollback_only_detach_rolls_back_and_keeps_the_session() {
    let driver = MysqlDriver;
    server()
        .sql("CREATE TABLE IF NOT EXISTS pool_test.rollback_probe (id INT)")
        .expect("create");
    let mut conn = connect();
    let id = conn.connection_id();
    conn.execute("SET @kept := 'yes'", &[]).expect("var");
    conn.execute("START TRANSACTION", &[]).expect("begin");
    conn.execute(
        "INSERT INTO rollback_probe VALUES (?)",
        &[Value::Int(id.into())],
    )
    .expect("insert");
    let handle = driver
        .detach(conn, ResetMode::RollbackOnly)
        .expect("rollback");
    let mut conn = driver.attach(handle).expect("attach");
    assert_eq!(text(&mut conn, "SELECT @kept"), "yes");
    assert_eq!(
        scalar(
            &mut conn,
            &format!("SELECT COUNT(*) FROM rollback_probe WHERE id = {id}")
        ),
        Value::Int(0)
    );
}

#[test]
fn wrong_password_is_a_connect_error_without_the_password() {
    let s = server();
    let secret = "wrong-Pw-7f3a9";
    let args = format!(
        "host=127.0.0.1 port={} user={} password={secret} dbname=pool_test",
        s.port(),
        s.user()
    );
    for args in [args, s.url().replace(s.password(), secret)] {
        let driver = MysqlDriver;
        let parsed = driver.parse_args(&args).expect("parses");
        let err = driver.connect(&parsed, TIMEOUT).expect_err("must fail");
        assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
        assert_eq!(err.code(), Some("1045"));
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains("Access denied for user 'pool_user'"),
            "{shown}"
        );
        assert!(!shown.contains(secret), "{shown}");
        assert!(!shown.contains("7f3a9"), "{shown}");
    }
}

/// A listener that accepts TCP (the kernel does) but never sends a handshake: the bound on the
/// handshake read must end the connect.
#[test]
fn silent_server_times_out_within_the_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let driver = MysqlDriver;
    let args =
        ConnArgs::parse(&format!("host=127.0.0.1 port={port} user=x password=pw")).expect("parses");
    let started = Instant::now();
    let err = driver
        .connect(&args, Duration::from_millis(300))
        .expect_err("times out");
    let took = started.elapsed();
    assert_eq!(err.kind(), DriverErrorKind::Timeout, "{err}");
    assert!(took < Duration::from_secs(3), "bounded, took {took:?}");
    drop(listener);
}

#[test]
fn native_client_is_mysql_conn() {
    use mysql::prelude::Queryable;
    let mut conn = connect();
    assert_eq!(
        conn.native_type_name(),
        std::any::type_name::<mysql::Conn>()
    );
    assert!(conn.native().downcast_ref::<mysql::Conn>().is_some());
    let native = conn
        .native_mut()
        .downcast_mut::<mysql::Conn>()
        .expect("a mysql::Conn");
    let answer: Option<i64> = native.query_first("SELECT 6 * 7").expect("native query");
    assert_eq!(answer, Some(42));
    assert!(!format!("{conn:?}").contains(server().password()));
}
