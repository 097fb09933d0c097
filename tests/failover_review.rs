//! Fresh-eyes review of the failover handling (issue 21), on real replication
//! ([`PgReplication`]). Each test reproduces one problem found in review; each was seen failing
//! three runs in a row before its fix, and passes since:
//!
//! * A request that holds a `standby`/`read-only` key's session across a promotion. The README
//!   promises such a session "may answer one more read from the new primary (which has all the
//!   data); then it is closed". The driver does notice the promotion with that one answer (the
//!   server reports `in_hot_standby = off`) and marks the session broken, but acts on it only
//!   at release: every later statement of the same request still runs on the new primary,
//!   writes included, which a replica would have refused.
//! * A PgBouncer on each node, the key naming both (`host=pgb1,pgb2`): PgBouncer hands every
//!   client the `ParameterStatus` of its first server login, cached (pgbouncer/pgbouncer#859),
//!   and the driver takes the reported `in_hot_standby` for the truth at connect, in the
//!   liveness check and after each statement. After a failover the `read-write` key is pinned
//!   to the dead node's PgBouncer or refused by the promoted one, and served by a standby
//!   after a switchover back; the `standby` key is handed sessions on the primary.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pool::{Conn, Error, Settings, Value};
use pool_testservers::{PgReplication, Replication};

const DRIVER: &str = "postgres";

/// One pair at a time, as in tests/failover.rs: each test runs two servers and promotes one.
fn one_pair_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn settings() -> Settings {
    Settings {
        max_open: 4,
        min_idle: 0,
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        check_timeout: Duration::from_secs(1),
        statement_timeout: Some(Duration::from_secs(2)),
        primer_backoff_max: Duration::from_millis(200),
        ..Settings::default()
    }
}

/// Whether the session's server is in recovery, and its port.
fn whereabouts(conn: &mut Conn) -> Result<(bool, i64), Error> {
    let rows = conn.query("SELECT pg_is_in_recovery(), inet_server_port()::int8", &[])?;
    let cell = |i| rows.get(0, i).cloned().unwrap_or(Value::Null);
    Ok((
        cell(0).as_bool().expect("a bool"),
        cell(1).as_i64().expect("a port"),
    ))
}

/// A request of a `standby` key and one of a `read-only` key each hold their session (on the
/// standby) while the primary is stopped and the standby promoted, then go on: two reads and
/// a write. The first statement after the promotion is answered by the new primary (nothing
/// could know earlier, as documented). The ones after it must not be: the driver knows by
/// then, yet both reads and the write run there, and the write is committed on the primary
/// through a key that asked for a replica.
#[test]
fn a_read_keys_session_answers_at_most_one_statement_from_a_promoted_node() {
    let _serial = one_pair_at_a_time();
    let mut pair = PgReplication::start(Replication::Asynchronous)
        .unwrap_or_else(|e| panic!("starting a primary and a streaming standby: {e}"));
    let standby_port = i64::from(pair.standby().port());
    let mut held = Vec::new();
    for (n, attrs) in ["standby", "read-only"].into_iter().enumerate() {
        let args = format!(
            "{} target_session_attrs={attrs} connect_timeout=1 application_name=review_held_{n}",
            pair.hosts_args()
        );
        pool::configure(DRIVER, &args, settings()).expect("configure");
        let mut conn = pool::open(DRIVER, &args).unwrap_or_else(|e| panic!("{attrs}: {e}"));
        assert_eq!(
            whereabouts(&mut conn).expect("where"),
            (true, standby_port),
            "{attrs}: on the standby"
        );
        held.push((attrs, n, conn));
    }

    pair.stop_primary().expect("stop the primary");
    pair.promote_standby().expect("promote the standby");

    let mut wrong = Vec::new();
    for (attrs, n, mut conn) in held {
        let table = format!("written_through_a_{}_key", attrs.replace('-', "_"));
        let first = whereabouts(&mut conn);
        let second = whereabouts(&mut conn);
        let write = conn.execute(&format!("CREATE TABLE {table} (id int)"), &[]);
        let third = whereabouts(&mut conn);
        eprintln!(
            "{attrs} key, session held across the promotion: 1st {first:?}, 2nd {second:?}, \
             write {write:?}, 3rd {third:?}"
        );
        let on_primary = [&first, &second, &third]
            .into_iter()
            .filter(|seen| matches!(seen, Ok((false, _))))
            .count();
        if on_primary > 1 {
            wrong.push(format!(
                "{attrs}: {on_primary} reads of one request answered by the new primary"
            ));
        }
        if write.is_ok() {
            wrong.push(format!(
                "{attrs}: a write through the key committed on the new primary"
            ));
        }
        let _ = conn.release();
        let exists = pair
            .primary()
            .psql(&format!("SELECT to_regclass('{table}') IS NOT NULL"))
            .expect("ask the new primary");
        eprintln!("{attrs} (key {n}): table {table} on the new primary: {exists}");
    }
    assert!(
        wrong.is_empty(),
        "after the one answer that showed the promotion, the session went on on the new \
         primary: {wrong:#?}"
    );
}

/// `host=pgb1,pgb2` over a PgBouncer on each node (a common Patroni layout), with
/// `target_session_attrs`. PgBouncer gives every client the `ParameterStatus` messages of its
/// first server login, cached (pgbouncer/pgbouncer#859), and the driver takes the reported
/// `in_hot_standby` for the truth at connect (so does libpq, hence #859), in the liveness
/// check and after each statement (the issue asked for a liveness query that answers
/// `pg_is_in_recovery()`), so nothing ever asks a server. Once the primary is stopped and the
/// standby promoted:
///
/// * the `read-write` key takes the dead node's PgBouncer, which still accepts logins and says
///   "primary" from its cache, and every request fails there (08P01 "server login has been
///   failing"); the promoted node's PgBouncer, which first logged in while its node was a
///   standby (a `standby` key was served through it), says "hot standby" and is refused. No
///   write reaches the new primary for as long as the PgBouncers run;
/// * the `standby` key is handed sessions on the new primary.
///
/// The pool connects rarely (off the hot path), so asking the role there costs next to nothing.
#[test]
fn behind_a_pgbouncer_per_node_writes_move_to_the_promoted_node() {
    use pool_testservers::{PgBouncer, PoolMode};
    let _serial = one_pair_at_a_time();
    let mut pair = PgReplication::start(Replication::Asynchronous)
        .unwrap_or_else(|e| panic!("starting a primary and a streaming standby: {e}"));
    let new_primary_port = i64::from(pair.standby().port());
    let bouncers = [pair.primary(), pair.standby()]
        .map(|node| PgBouncer::start(node, PoolMode::Session).expect("starting PgBouncer"));
    // pool_scram's login through either PgBouncer, over both.
    let one = bouncers[0].args();
    let both = one
        .replace("host=127.0.0.1", "host=127.0.0.1,127.0.0.1")
        .replace(
            &format!("port={}", bouncers[0].port()),
            &format!("port={},{}", bouncers[0].port(), bouncers[1].port()),
        );
    assert_ne!(both, one, "{one}");
    let key = |attrs: &str| {
        let args = format!(
            "{both} sslmode=disable connect_timeout=1 target_session_attrs={attrs} \
             application_name=review_pgb_{}",
            attrs.replace('-', "_")
        );
        let settings = Settings {
            max_open: 1,
            ..settings()
        };
        pool::configure(DRIVER, &args, settings).expect("configure");
        args
    };
    let (writes, reads) = (key("read-write"), key("standby"));
    let look = |args: &str| -> Result<(bool, i64), String> {
        let mut conn = pool::open(DRIVER, args).map_err(|e| e.to_string())?;
        let seen = whereabouts(&mut conn).map_err(|e| e.to_string());
        let _ = conn.release();
        seen
    };
    let before = (look(&writes), look(&reads));
    eprintln!(
        "before the promotion: read-write {:?}, standby {:?}",
        before.0, before.1
    );
    assert!(matches!(before.0, Ok((false, _))), "{before:?}");
    assert!(matches!(before.1, Ok((true, _))), "{before:?}");

    pair.stop_primary().expect("stop the primary");
    pair.promote_standby().expect("promote the standby");
    let promoted = std::time::Instant::now();

    let mut write_seen = None;
    let mut last_refusal = String::new();
    while promoted.elapsed() < Duration::from_secs(5) {
        match look(&writes) {
            Ok(seen) => {
                write_seen = Some(seen);
                break;
            }
            Err(e) => last_refusal = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let read_seen = look(&reads);
    // The promoted node's own PgBouncer alone, for the refusal it draws.
    let via_new_node = format!(
        "{} sslmode=disable target_session_attrs=read-write application_name=review_pgb_b",
        bouncers[1].args()
    );
    pool::configure(DRIVER, &via_new_node, settings()).expect("configure");
    let via_new_node = look(&via_new_node);
    eprintln!("read-write through the promoted node's PgBouncer alone: {via_new_node:?}");
    eprintln!(
        "after the promotion: read-write {write_seen:?} (last refusal: {last_refusal}); \
         standby {read_seen:?}"
    );
    let mut wrong = Vec::new();
    if write_seen != Some((false, new_primary_port)) {
        wrong.push(format!(
            "read-write key not served by the new primary 5 s after the promotion: \
             {last_refusal}"
        ));
    }
    if via_new_node != Ok((false, new_primary_port)) {
        wrong.push(format!(
            "read-write key through the promoted node's PgBouncer alone: {via_new_node:?}"
        ));
    }
    if let Ok((false, port)) = read_seen {
        wrong.push(format!(
            "standby key handed a session on the new primary (port {port})"
        ));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The same layout through two switchovers (A → B, then back to A), the direction that puts a
/// write key on a standby. Each PgBouncer caches what its node reported at its first login:
/// A's PgBouncer first logs in while A is a standby (`in_hot_standby = on`), B's while B is
/// the primary (`off`). After the switch back, A is the primary and B a standby, and both
/// caches are wrong: the `read-write` key skips A ("server is in hot standby mode") and takes
/// B, and its requests run on a standby (reads served from a replica, writes refused with
/// 25006, then the same standby again on the next connect).
#[test]
fn behind_a_pgbouncer_per_node_a_read_write_key_is_never_served_by_a_standby() {
    use pool_testservers::{PgBouncer, PoolMode};
    let _serial = one_pair_at_a_time();
    let mut pair = PgReplication::start(Replication::Asynchronous)
        .unwrap_or_else(|e| panic!("starting a primary and a streaming standby: {e}"));
    let mut bouncers = [pair.node(0), pair.node(1)]
        .map(|node| PgBouncer::start(node, PoolMode::Session).expect("starting PgBouncer"));
    for bouncer in &mut bouncers {
        // Not the subject here: PgBouncer's refusals for 15 s after a failed server login.
        bouncer.set("server_login_retry", "1").expect("set");
    }
    pair.switchover().expect("switch over to B");
    let one = bouncers[0].args();
    let both = one
        .replace("host=127.0.0.1", "host=127.0.0.1,127.0.0.1")
        .replace(
            &format!("port={}", bouncers[0].port()),
            &format!("port={},{}", bouncers[0].port(), bouncers[1].port()),
        );
    let writes = format!(
        "{both} sslmode=disable connect_timeout=1 target_session_attrs=read-write \
         application_name=review_pgb_rw"
    );
    pool::configure(DRIVER, &writes, settings()).expect("configure");
    let look = |args: &str| -> Result<(bool, i64), String> {
        let mut conn = pool::open(DRIVER, args).map_err(|e| e.to_string())?;
        let seen = whereabouts(&mut conn).map_err(|e| e.to_string());
        let _ = conn.release();
        seen
    };
    let b = i64::from(pair.node(1).port());
    let a = i64::from(pair.node(0).port());
    let first = look(&writes);
    eprintln!("after the switchover to B: read-write {first:?}");
    assert_eq!(first, Ok((false, b)), "served by B, the primary");

    pair.switchover().expect("switch back to A");
    let back = std::time::Instant::now();
    let mut seen = Vec::new();
    while back.elapsed() < Duration::from_secs(4) {
        seen.push(look(&writes));
        std::thread::sleep(Duration::from_millis(100));
    }
    let on_standby = seen.iter().filter(|s| matches!(s, Ok((true, _)))).count();
    let on_primary = seen.iter().filter(|s| **s == Ok((false, a))).count();
    eprintln!(
        "after the switch back to A: {} requests, {on_standby} served by a standby, \
         {on_primary} by the primary A; first: {:?}; last: {:?}",
        seen.len(),
        seen.first(),
        seen.last()
    );
    assert_eq!(
        on_standby,
        0,
        "a read-write key's requests ran on a standby: {:?}",
        seen.iter().find(|s| matches!(s, Ok((true, _))))
    );
    assert!(
        on_primary > 0,
        "the read-write key never reached the primary A"
    );
}
