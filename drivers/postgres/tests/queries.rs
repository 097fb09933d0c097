//! `execute`/`query` through the uniform API: parameter conversion, result decoding, errors
//! that leave the connection usable.

mod common;

use common::{connect, int, text, trust};
use pool_driver::{Connection, DriverErrorKind, Value};

#[test]
fn key_value_args_urls_and_unix_sockets_all_connect() {
    let pg = pool_testservers::shared_pg();
    for args in [
        pg.trust_args(),
        pg.url(),
        pg.trust_socket_args(),
        pg.scram_url(),
    ] {
        let mut conn = connect(&args);
        assert_eq!(int(&mut conn, "SELECT 1"), 1, "{args}");
    }
    let mut conn = connect(&pg.scram_args());
    assert_eq!(text(&mut conn, "SELECT current_user::text"), "pool_scram");
}

#[test]
fn parameters_convert_to_the_inferred_types() {
    let mut conn = trust();
    conn.execute(
        "CREATE TEMP TABLE t (s int2, i int4, b int8, r float4, d float8, ok bool, \
         name text, v varchar(10), c char(3), raw bytea, amount numeric(10,2), day date, \
         id uuid, doc jsonb, o oid)",
        &[],
    )
    .unwrap();
    let params = [
        Value::Int(7),
        Value::Int(70_000),
        Value::Int(1 << 40),
        Value::Float(1.5),
        Value::Int(2), // an integer into float8
        Value::Bool(true),
        Value::Text("héllo".into()),
        Value::Text("vc".into()),
        Value::Text("ab".into()),
        Value::Bytes(vec![0, 1, 255]),
        Value::Text("12.50".into()), // numeric from text
        Value::Text("2024-05-01".into()),
        Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
        Value::Text(r#"{"k": [1, 2]}"#.into()),
        Value::Int(42),
    ];
    let inserted = conn
        .execute(
            "INSERT INTO t VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
            &params,
        )
        .unwrap();
    assert_eq!(inserted, 1);
    conn.execute(
        "INSERT INTO t (i, amount) VALUES ($1, $2)",
        &[Value::Null, Value::Int(3)],
    )
    .unwrap();

    let rows = conn
        .query(
            "SELECT s, i, b, r, d, ok, name, v, c, raw, amount, day::text AS day, id, doc, o \
             FROM t WHERE s = $1",
            &[Value::Int(7)],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows.columns(),
        [
            "s", "i", "b", "r", "d", "ok", "name", "v", "c", "raw", "amount", "day", "id", "doc",
            "o"
        ]
    );
    let expected = [
        Value::Int(7),
        Value::Int(70_000),
        Value::Int(1 << 40),
        Value::Float(1.5),
        Value::Float(2.0),
        Value::Bool(true),
        Value::Text("héllo".into()),
        Value::Text("vc".into()),
        Value::Text("ab ".into()),
        Value::Bytes(vec![0, 1, 255]),
        Value::Text("12.50".into()),
        Value::Text("2024-05-01".into()),
        Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
        Value::Text(r#"{"k": [1, 2]}"#.into()),
        Value::Int(42),
    ];
    assert_eq!(rows.rows()[0], expected);

    let nulls = conn
        .query("SELECT i, amount FROM t WHERE s IS NULL", &[])
        .unwrap();
    assert_eq!(nulls.rows()[0], [Value::Null, Value::Text("3.00".into())]);
}

#[test]
fn untyped_parameters_and_text_forms() {
    let mut conn = trust();
    // `$1` alone is inferred as text: numbers and booleans go as their text form.
    let rows = conn
        .query(
            "SELECT $1 AS a, $2 AS b, $3::int8 AS c, $4::numeric AS d, $5::float8 AS e",
            &[
                Value::Int(5),
                Value::Bool(false),
                Value::Text("9".into()),
                Value::Float(0.1),
                Value::Float(f64::INFINITY),
            ],
        )
        .unwrap();
    assert_eq!(
        rows.rows()[0],
        [
            Value::Text("5".into()),
            Value::Text("false".into()),
            Value::Int(9),
            Value::Text("0.1".into()),
            Value::Float(f64::INFINITY),
        ]
    );
}

#[test]
fn results_decode_numeric_enums_domains_and_json() {
    let mut conn = trust();
    let rows = conn
        .query(
            "SELECT sum(x) AS total, avg(x) AS mean, (-0.000123)::numeric AS tiny, \
             'NaN'::numeric AS nan, 'x'::name AS n, '{\"a\":1}'::json AS j, '<a/>'::xml AS x, \
             'r'::\"char\" AS ch, NULL::int4 AS missing \
             FROM (VALUES (9223372036854775807::int8), (1::int8)) v(x)",
            &[],
        )
        .unwrap();
    assert_eq!(
        rows.rows()[0],
        [
            Value::Text("9223372036854775808".into()),
            Value::Text("4611686018427387904".into()),
            Value::Text("-0.000123".into()),
            Value::Text("NaN".into()),
            Value::Text("x".into()),
            Value::Text("{\"a\":1}".into()),
            Value::Text("<a/>".into()),
            Value::Text("r".into()),
            Value::Null,
        ]
    );
    let empty = conn.query("SELECT 1 AS one WHERE false", &[]).unwrap();
    assert_eq!((empty.columns(), empty.len()), (&["one".to_owned()][..], 0));
}

#[test]
fn custom_types_work_before_and_after_a_full_reset() {
    // tokio-postgres looks custom types up with a statement it prepares once and caches;
    // the reset's DEALLOCATE ALL drops it, so the driver must clear that cache.
    let mut conn = trust();
    let (mood, level) = (common::unique("mood"), common::unique("level"));
    conn.execute(&format!("CREATE TYPE {mood} AS ENUM ('sad', 'happy')"), &[])
        .unwrap();
    conn.execute(
        &format!("CREATE DOMAIN {level} AS int4 CHECK (VALUE > 0)"),
        &[],
    )
    .unwrap();
    let sql = format!("SELECT $1::{mood} AS m");
    let rows = conn.query(&sql, &[Value::Text("happy".into())]).unwrap();
    assert_eq!(rows.scalar(), Some(&Value::Text("happy".into())));

    let mut conn = common::recycle(conn, pool_driver::ResetMode::Full);
    let rows = conn
        .query(&format!("SELECT $1::{level} AS l"), &[Value::Int(3)])
        .unwrap();
    assert_eq!(rows.scalar(), Some(&Value::Int(3)));
    let rows = conn.query(&sql, &[Value::Text("sad".into())]).unwrap();
    assert_eq!(rows.scalar(), Some(&Value::Text("sad".into())));
    conn.execute(&format!("DROP TYPE {mood}; DROP DOMAIN {level}"), &[])
        .unwrap();
}

#[test]
fn statement_errors_keep_the_connection_usable() {
    let mut conn = trust();
    let cases: [(&str, Vec<Value>, &str); 6] = [
        ("SELECT 1/0", vec![], "division by zero"),
        ("SELECT $1::int2", vec![Value::Int(70_000)], "out of range"),
        (
            "SELECT $1::date",
            vec![Value::Text("not a day".into())],
            "invalid input syntax",
        ),
        (
            "SELECT $1::int4",
            vec![Value::Bytes(vec![1])],
            "bytes cannot be bound",
        ),
        ("SELECT now() AS at", vec![], "`at::text`"),
        ("SELEC 1", vec![], "syntax error"),
    ];
    for (sql, params, needle) in cases {
        let err = conn.query(sql, &params).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::Query, "{sql}: {err}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
        assert!(!conn.is_broken());
        assert_eq!(int(&mut conn, "SELECT 2"), 2);
    }
    let err = conn.execute("SELECT 1/0", &[]).unwrap_err();
    assert_eq!(err.code(), Some("22012"));
    let err = conn
        .execute("INSERT INTO nowhere VALUES (1)", &[])
        .unwrap_err();
    assert_eq!(err.code(), Some("42P01"), "{err}");
}

#[test]
fn execute_counts_rows_with_and_without_parameters() {
    let mut conn = trust();
    conn.execute("CREATE TEMP TABLE n (x int)", &[]).unwrap();
    assert_eq!(
        conn.execute("INSERT INTO n SELECT generate_series(1, 5)", &[])
            .unwrap(),
        5
    );
    assert_eq!(
        conn.execute("UPDATE n SET x = x + $1 WHERE x > 2", &[Value::Int(1)])
            .unwrap(),
        3
    );
    // Without parameters, several statements may run at once; the last one's count is returned.
    assert_eq!(
        conn.execute("DELETE FROM n WHERE x = 1; DELETE FROM n", &[])
            .unwrap(),
        4
    );
    assert_eq!(conn.execute("BEGIN", &[]).unwrap(), 0);
    assert_eq!(conn.execute("COMMIT", &[]).unwrap(), 0);
}
