//! Which sessions the release resets (issue 20): one that ran only the server's data-only
//! commands is parked with no I/O; every command of the state-leak catalog — and any command
//! the server does not class as data-only — makes it need the full reset, even when the
//! command failed. The negative control shows the leak check sees a skipped reset.

mod common;

use common::{connect_with, cycle, q, text};
use pool_driver::{Connection, Driver, ResetMode, Value};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::shared_redis;

fn connect() -> RedisConn {
    connect_with(&RedisDriver::new(), &shared_redis().args())
}

/// Runs `command` (its words, then text arguments), whatever it answers.
fn attempt(conn: &mut RedisConn, command: &str, args: &[&str]) {
    let params: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
    let _ = conn.query(command, &params);
}

#[test]
fn data_only_commands_need_no_reset() {
    let mut conn = connect();
    let key = format!("classes:{}", std::process::id());
    for (command, args) in [
        ("SET", vec![key.as_str(), "1"]),
        ("GET", vec![key.as_str()]),
        ("INCR", vec![key.as_str()]),
        ("EXPIRE", vec![key.as_str(), "60"]),
        ("TTL", vec![key.as_str()]),
        ("EXISTS", vec![key.as_str()]),
        ("MGET", vec![key.as_str(), "classes:none"]),
        ("HSET", vec!["classes:h", "f", "v"]),
        ("HGET", vec!["classes:h", "f"]),
        ("LPUSH", vec!["classes:l", "a"]),
        ("LRANGE", vec!["classes:l", "0", "-1"]),
        ("BLPOP", vec!["classes:l", "0.01"]),
        ("DEL", vec![key.as_str(), "classes:h", "classes:l"]),
    ] {
        q(&mut conn, command, &args);
        assert!(!conn.needs_reset(), "{command} is data-only");
    }
}

/// Every state-changing command the issue names, and a few more of each class: the session
/// needs the reset after it, whether the server ran it, refused it (ACL) or did not know it.
#[test]
fn every_state_changing_command_forces_the_reset() {
    let catalog: &[(&str, &[&str])] = &[
        ("SELECT", &["0"]),
        ("CLIENT SETNAME", &["classes"]),
        ("CLIENT TRACKING", &["OFF"]),
        ("CLIENT REPLY", &["ON"]),
        ("CLIENT NO-EVICT", &["ON"]),
        ("MULTI", &[]),
        ("WATCH", &["classes:w"]),
        ("UNWATCH", &[]),
        ("SUBSCRIBE", &["classes:channel"]),
        ("PSUBSCRIBE", &["classes:*"]),
        ("SSUBSCRIBE", &["classes:shard"]),
        ("PUBLISH", &["classes:channel", "x"]),
        ("HELLO", &["2"]),
        ("AUTH", &["nobody", "wrong"]),
        ("READONLY", &[]),
        ("READWRITE", &[]),
        ("RESET", &[]),
        ("MONITOR", &[]),
        ("EVAL", &["return 1", "0"]),
        (
            "EVALSHA",
            &["0000000000000000000000000000000000000000", "0"],
        ),
        ("FCALL", &["no_such_function", "0"]),
        ("FUNCTION LIST", &[]),
        ("SCRIPT EXISTS", &["0"]),
        ("WAIT", &["0", "0"]),
        ("SWAPDB", &["0", "1"]),
        ("OBJECT ENCODING", &["classes:none"]),
        ("PING", &[]),
        ("NO_SUCH_COMMAND", &[]),
        ("get\u{0}", &[]),
    ];
    for (command, args) in catalog {
        let mut conn = connect();
        attempt(&mut conn, command, args);
        assert!(conn.needs_reset(), "{command} must force the reset");
    }
}

/// The negative control: a session that changed (`SELECT 3`) but is told it did not is
/// parked without its reset, and the next user of the session is in database 3. So the leak
/// checks (the conformance suite's, and this file's) can see a skipped reset.
#[test]
fn a_skipped_reset_is_seen_by_the_leak_check() {
    let driver = RedisDriver::new();
    let key = format!("classes:db3:{}", std::process::id());
    let mut conn = connect();
    q(&mut conn, "SELECT", &["3"]);
    q(&mut conn, "SET", &[key.as_str(), "in db 3"]);
    conn.negative_control_forget_changes();
    let mut leaked = cycle(&driver, conn);
    assert_eq!(
        text(&mut leaked, "GET", &[key.as_str()]),
        "in db 3",
        "without the reset the next user is still in database 3"
    );

    let mut conn = connect();
    q(&mut conn, "SELECT", &["3"]);
    let handle = driver.detach(conn, ResetMode::Full).expect("detach");
    let mut next = driver.attach(handle).expect("attach");
    assert_eq!(
        q(&mut next, "GET", &[key.as_str()]).scalar(),
        Some(&Value::Null),
        "with it, database 0 again"
    );
    q(&mut leaked, "DEL", &[key.as_str()]);
}
