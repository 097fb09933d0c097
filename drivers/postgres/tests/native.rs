//! The native client, `PgClient`: the blocking methods a handler written against
//! `postgres::Client` uses, async code on the connection's runtime, and closing without
//! waiting.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{trust, unique};
use pool_driver::Connection;
use pool_postgres::tokio_postgres::types::Type;
use pool_postgres::tokio_postgres::{IsolationLevel, SimpleQueryMessage};
use pool_postgres::PgClient;

fn native(conn: &mut pool_postgres::PgConn) -> &mut PgClient {
    conn.native_mut()
        .downcast_mut::<PgClient>()
        .expect("the native client is a PgClient")
}

#[test]
fn the_familiar_blocking_methods() {
    let mut conn = trust();
    let pg = native(&mut conn);
    let row = pg.query_one("SELECT $1::int4 + 1", &[&41i32]).unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let table = unique("native_t");
    pg.batch_execute(&format!("CREATE TEMP TABLE {table} (k int8, v text)"))
        .unwrap();
    let inserted = pg
        .execute(
            &format!("INSERT INTO {table} VALUES ($1, $2), ($3, $4)"),
            &[&1i64, &"one", &2i64, &"two"],
        )
        .unwrap();
    assert_eq!(inserted, 2);
    let statement = pg
        .prepare(&format!("SELECT v FROM {table} WHERE k = $1"))
        .unwrap();
    let rows = pg.query(&statement, &[&2i64]).unwrap();
    assert_eq!(rows[0].get::<_, &str>(0), "two");
    assert!(pg
        .query_opt(&format!("SELECT v FROM {table} WHERE k = 3"), &[])
        .unwrap()
        .is_none());
    // The unnamed statement, one round trip, types given.
    let row = pg
        .query_typed_one(
            &format!("SELECT count(*) FROM {table} WHERE k > $1"),
            &[(&0i64, Type::INT8)],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    let messages = pg.simple_query("SELECT 'a' AS x; SELECT 'b'").unwrap();
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 2);
    let version = pg.parameter("server_version").expect("server_version");
    assert!(version.chars().next().is_some_and(|c| c.is_ascii_digit()));
    assert!(pg.is_valid(Duration::from_secs(5)));
    // A failed statement is an error value, and the connection goes on.
    let err = pg.execute("SELECT 1/0", &[]).unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("22012"));
    assert_eq!(pg.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
}

#[test]
fn transactions_commit_roll_back_and_nest() {
    let mut conn = trust();
    let pg = native(&mut conn);
    let table = unique("native_tx");
    pg.batch_execute(&format!("CREATE TEMP TABLE {table} (k int4)"))
        .unwrap();
    let insert = format!("INSERT INTO {table} VALUES ($1)");
    let count = format!("SELECT count(*) FROM {table}");

    let tx = pg.transaction().unwrap();
    tx.execute(&insert, &[&1i32]).unwrap();
    tx.commit().unwrap();

    let tx = pg.transaction().unwrap();
    tx.execute(&insert, &[&2i32]).unwrap();
    tx.rollback().unwrap();

    {
        let tx = pg.transaction().unwrap();
        tx.execute(&insert, &[&3i32]).unwrap();
        // Dropped: rolled back.
    }

    let mut tx = pg.transaction().unwrap();
    tx.execute(&insert, &[&4i32]).unwrap();
    {
        let inner = tx.savepoint("sp_inner").unwrap();
        inner.execute(&insert, &[&5i32]).unwrap();
        // Dropped: rolled back to the savepoint.
    }
    let inner = tx.savepoint("sp_kept").unwrap();
    inner.execute(&insert, &[&6i32]).unwrap();
    inner.commit().unwrap();
    tx.commit().unwrap();

    let n: i64 = pg.query_one(&count, &[]).unwrap().get(0);
    assert_eq!(n, 3, "1, 4 and 6");
}

#[test]
fn copy_in_and_out() {
    let mut conn = trust();
    let pg = native(&mut conn);
    let table = unique("native_copy");
    pg.batch_execute(&format!("CREATE TEMP TABLE {table} (k int4, v text)"))
        .unwrap();
    let mut writer = pg.copy_in(&format!("COPY {table} FROM STDIN")).unwrap();
    for k in 0..1000 {
        writeln!(writer, "{k}\tvalue {k}").unwrap();
    }
    assert_eq!(writer.finish().unwrap(), 1000);
    let mut out = String::new();
    pg.copy_out(&format!(
        "COPY (SELECT * FROM {table} WHERE k < 3 ORDER BY k) TO STDOUT"
    ))
    .unwrap()
    .read_to_string(&mut out)
    .unwrap();
    assert_eq!(out, "0\tvalue 0\n1\tvalue 1\n2\tvalue 2\n");
    // An unfinished copy is aborted: nothing of it is stored.
    {
        let mut writer = pg.copy_in(&format!("COPY {table} FROM STDIN")).unwrap();
        writeln!(writer, "5000\tlost").unwrap();
        writer.flush().unwrap();
    }
    let n: i64 = pg
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

#[test]
fn notifications_arrive() {
    let mut conn = trust();
    let channel = unique("native_chan");
    let mut other = trust();
    let pg = native(&mut conn);
    pg.batch_execute(&format!("LISTEN {channel}")).unwrap();
    assert_eq!(pg.notifications().iter().count(), 0);
    native(&mut other)
        .batch_execute(&format!("NOTIFY {channel}, 'hello'"))
        .unwrap();
    let first = pg
        .notifications()
        .timeout_iter(Duration::from_secs(5))
        .next()
        .expect("a notification within 5 s");
    assert_eq!((first.channel(), first.payload()), (&channel[..], "hello"));
    let started = Instant::now();
    assert!(pg
        .notifications()
        .timeout_iter(Duration::from_millis(100))
        .next()
        .is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Async code runs on the connection's runtime: with `client()` and `block_on` (here two
/// queries pipelined), and with `run` where `&mut Client` is needed (a transaction builder).
#[test]
fn async_code_on_the_connections_runtime() {
    let mut conn = trust();
    let pg = native(&mut conn);
    let client = pg.client();
    // Polled together, so both requests go out in one write.
    let (a, b) = pg.block_on(async {
        tokio::join!(
            client.query_one("SELECT 1", &[]),
            client.query_one("SELECT 2", &[])
        )
    });
    assert_eq!(
        (a.unwrap().get::<_, i32>(0), b.unwrap().get::<_, i32>(0)),
        (1, 2)
    );
    let level: String = pg
        .run(|client| {
            Box::pin(async move {
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()
                    .await?;
                let row = tx.query_one("SHOW transaction_isolation", &[]).await?;
                tx.commit().await?;
                Ok::<_, pool_postgres::tokio_postgres::Error>(row.get(0))
            })
        })
        .unwrap();
    assert_eq!(level, "serializable");
    // tokio's timers work inside.
    let started = Instant::now();
    pg.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    assert!(started.elapsed() >= Duration::from_millis(20));
}

/// A query is cancelled from another thread through the token, as with
/// `postgres::CancelToken`, within a bound.
#[test]
fn a_cancel_token_cancels_the_running_query() {
    let mut conn = trust();
    let pg = native(&mut conn);
    let token = pg.cancel_token();
    let started = Instant::now();
    let outcome = std::thread::scope(|scope| {
        let canceller = scope.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            token.cancel_query(Duration::from_secs(5))
        });
        let outcome = pg.execute("SELECT pg_sleep(20)", &[]);
        (outcome, canceller.join().expect("the cancelling thread"))
    });
    let err = outcome.0.expect_err("cancelled");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    outcome.1.expect("the cancel request was delivered");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(pg.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);
}
