//! Parameters sent as literals (`literals.rs`) on the real server: every value comes back as
//! itself, whatever it holds and whatever the session's `sql_mode` and character set; a string
//! compares under the column's collation as a bound parameter would; a value never changes the
//! statement; and nothing is prepared on the server.

mod common;

use common::connect;
use pool_driver::{Connection, Value};
use pool_mysql::MyConn;
use pool_testservers::shared_maria;

fn session() -> MyConn {
    connect(&shared_maria().args())
}

fn one(conn: &mut MyConn, sql: &str, params: &[Value]) -> Value {
    conn.query(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .scalar()
        .cloned()
        .unwrap_or(Value::Null)
}

/// Strings and bytes that break naive quoting: quotes of every kind, backslashes, NUL,
/// control characters, a multi-byte character, and an attempt to end the statement.
fn awkward() -> Vec<String> {
    vec![
        String::new(),
        "plain".into(),
        "it's".into(),
        "\"double\"".into(),
        "`tick`".into(),
        "back\\slash\\".into(),
        "\\'".into(),
        "nul\0byte".into(),
        "ctrl\n\r\t\x1a".into(),
        "é ü 中文 🦀".into(),
        "'; DROP TABLE literals_victim; -- ".into(),
        "?".into(),
        "/* ? */".into(),
    ]
}

#[test]
fn every_value_comes_back_as_itself_in_every_sql_mode() {
    for mode in ["", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "ANSI"] {
        let mut conn = session();
        conn.execute(&format!("SET SESSION sql_mode = '{mode}'"), &[])
            .expect("sql_mode");
        for s in awkward() {
            let back = one(&mut conn, "SELECT ?", &[Value::Text(s.clone())]);
            assert_eq!(back, Value::Text(s.clone()), "{mode}: {s:?}");
        }
        let all_bytes: Vec<u8> = (0..=255).collect();
        let back = one(&mut conn, "SELECT ?", &[Value::Bytes(all_bytes.clone())]);
        assert_eq!(back, Value::Bytes(all_bytes), "{mode}: bytes");
        assert_eq!(
            one(&mut conn, "SELECT ?", &[Value::Int(i64::MIN)]),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            one(&mut conn, "SELECT ? + 0", &[Value::Bool(true)]),
            Value::Int(1)
        );
        assert_eq!(one(&mut conn, "SELECT ?", &[Value::Null]), Value::Null);
        let f = one(&mut conn, "SELECT ?", &[Value::Float(-1.25e-7)]);
        assert_eq!(f.as_f64(), Some(-1.25e-7), "{mode}: {f:?}");
    }
}

#[test]
fn a_value_never_changes_the_statement() {
    let mut conn = session();
    conn.execute(
        "CREATE TABLE IF NOT EXISTS literals_victim (id INT PRIMARY KEY, name VARCHAR(64)) \
         CHARACTER SET utf8mb4",
        &[],
    )
    .expect("create");
    conn.execute("REPLACE INTO literals_victim VALUES (1, 'one')", &[])
        .expect("fill");
    for s in awkward() {
        let n = conn
            .query(
                "SELECT COUNT(*) FROM literals_victim WHERE name = ? OR id = ?",
                &[Value::Text(s.clone()), Value::Int(-1)],
            )
            .expect("query");
        assert_eq!(n.scalar(), Some(&Value::Int(0)), "{s:?}");
    }
    assert_eq!(
        one(&mut conn, "SELECT COUNT(*) FROM literals_victim", &[]),
        Value::Int(1),
        "the table is still there"
    );
    // A question mark inside quotes or comments is not a placeholder.
    let text = one(
        &mut conn,
        "SELECT CONCAT('?', /* ? */ ?) -- ?",
        &[Value::Text("x".into())],
    );
    assert_eq!(text, Value::Text("?x".into()));
    let err = conn
        .query("SELECT ?, ?", &[Value::Int(1)])
        .expect_err("two placeholders, one value");
    assert!(err.message().contains("2 `?` placeholders but 1"), "{err}");
}

#[test]
fn a_string_compares_under_the_columns_collation() {
    let mut conn = session();
    conn.execute(
        "CREATE TABLE IF NOT EXISTS literals_ci (name VARCHAR(32) COLLATE utf8mb4_general_ci)",
        &[],
    )
    .expect("create");
    conn.execute("DELETE FROM literals_ci", &[]).expect("empty");
    conn.execute(
        "INSERT INTO literals_ci VALUES (?)",
        &[Value::Text("Ärger".into())],
    )
    .expect("insert");
    let n = one(
        &mut conn,
        "SELECT COUNT(*) FROM literals_ci WHERE name = ?",
        &[Value::Text("ärger".into())],
    );
    assert_eq!(n, Value::Int(1), "case-insensitive, as the column says");
    // A latin1 column, as the server's default makes them: a string it can hold compares as
    // a bound parameter would (one it cannot hold is refused, as a bound one is).
    conn.execute(
        "CREATE TABLE IF NOT EXISTS literals_latin1 (name VARCHAR(32)) CHARACTER SET latin1",
        &[],
    )
    .expect("create");
    conn.execute("DELETE FROM literals_latin1", &[])
        .expect("empty");
    conn.execute(
        "INSERT INTO literals_latin1 VALUES (?)",
        &[Value::Text("Ärger".into())],
    )
    .expect("insert");
    let n = one(
        &mut conn,
        "SELECT COUNT(*) FROM literals_latin1 WHERE name = ?",
        &[Value::Text("ärger".into())],
    );
    assert_eq!(n, Value::Int(1));
    let rows = conn
        .query("SELECT name FROM literals_ci LIMIT ?", &[Value::Int(1)])
        .expect("LIMIT ?");
    assert_eq!(rows.scalar(), Some(&Value::Text("Ärger".into())));
}

#[test]
fn nothing_is_prepared_on_the_server() {
    let mut conn = session();
    let before = one(
        &mut conn,
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'",
        &[],
    );
    for id in 0..5 {
        one(&mut conn, "SELECT ? + 1", &[Value::Int(id)]);
    }
    let after = one(
        &mut conn,
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'COM_STMT_PREPARE'",
        &[],
    );
    assert_eq!(before, after, "no COM_STMT_PREPARE");
}
