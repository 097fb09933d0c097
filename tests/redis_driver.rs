//! The `"redis"` driver through the pool itself, against a private Redis server.

mod common;

use std::time::Duration;

use common::after_resets;
use pool::{Settings, Value};
use pool_testservers::{shared_redis, RedisServer};

fn cell(conn: &mut pool::Conn, command: &str, args: &[&str]) -> Value {
    let params: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
    let rows = conn
        .query(command, &params)
        .unwrap_or_else(|e| panic!("{command}: {e}"));
    rows.scalar().cloned().unwrap_or(Value::Null)
}

fn client_db(conn: &mut pool::Conn) -> String {
    let info = cell(conn, "CLIENT INFO", &[]).to_string();
    info.split_whitespace()
        .find_map(|pair| pair.strip_prefix("db="))
        .unwrap_or("?")
        .to_owned()
}

#[test]
fn open_release_and_the_next_user_gets_a_clean_session() {
    let server = shared_redis();
    let args = format!("{} name=pooltest", server.args());
    let key = format!("pool-redis-root:{}", std::process::id());

    let mut conn = pool::open("redis", &args).expect("open");
    assert_eq!(
        conn.execute("SET", &[key.as_str().into(), "v".into()])
            .expect("SET"),
        1
    );
    assert_eq!(cell(&mut conn, "GET", &[&key]), Value::from("v"));
    let id = cell(&mut conn, "CLIENT ID", &[]);
    // Leave state behind: another user, another db, an open transaction, another name.
    cell(&mut conn, "AUTH", &["default", server.default_password()]);
    cell(&mut conn, "SELECT", &["4"]);
    cell(&mut conn, "CLIENT SETNAME", &["leaky"]);
    cell(&mut conn, "MULTI", &[]);
    conn.release().expect("release");
    after_resets(|| pool::stats("redis", &args).expect("stats"));

    let mut conn = pool::open("redis", &args).expect("open again");
    assert_eq!(
        cell(&mut conn, "CLIENT ID", &[]),
        id,
        "the parked session is reused"
    );
    assert_eq!(cell(&mut conn, "ACL WHOAMI", &[]), Value::from("pool_user"));
    assert_eq!(client_db(&mut conn), "0");
    assert_eq!(
        cell(&mut conn, "CLIENT GETNAME", &[]),
        Value::from("pooltest")
    );
    assert_eq!(
        cell(&mut conn, "GET", &[&key]),
        Value::from("v"),
        "not queued"
    );
    let native = conn
        .native_mut::<redis::Connection>()
        .expect("native redis::Connection");
    let deleted: i64 = redis::cmd("DEL").arg(&key).query(native).expect("DEL");
    assert_eq!(deleted, 1);
    conn.release().expect("release");
}

/// After the server died and came back, the dead parked session is found by the check on open
/// and the caller gets a fresh one.
#[test]
fn a_restarted_server_is_reached_again_through_the_pool() {
    let mut server = RedisServer::start().expect("private redis");
    let args = server.args();
    pool::configure(
        "redis",
        &args,
        Settings {
            validate_after: Duration::ZERO,
            check_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ..Settings::default()
        },
    )
    .expect("configure");
    let mut conn = pool::open("redis", &args).expect("open");
    cell(&mut conn, "SET", &["k", "before"]);
    conn.release().expect("release");
    after_resets(|| pool::stats("redis", &args).expect("stats"));

    server.kill().expect("kill");
    server.restart().expect("restart");
    let mut conn = pool::open("redis", &args).expect("open after restart");
    assert_eq!(cell(&mut conn, "PING", &[]), Value::from("PONG"));
    assert_eq!(cell(&mut conn, "ACL WHOAMI", &[]), Value::from("pool_user"));
    assert_eq!(
        cell(&mut conn, "GET", &["k"]),
        Value::Null,
        "a new server, nothing kept"
    );
    conn.release().expect("release");
}
