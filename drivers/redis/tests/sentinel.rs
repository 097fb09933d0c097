//! Redis Sentinel, on a private master + replica + Sentinel (`pool_testservers::RedisSentinel`):
//! connecting through the Sentinels, the role checks, and failovers under load through
//! `pool::open`.
//!
//! The tests run one at a time (a lock): each starts its own deployment, the load tests share
//! the process-wide pool registry, and one counts the watcher threads.
//!
//! The figures (error window, time to the first write on the new master, acknowledged writes
//! lost and to what) are printed with `eprintln!`:
//! `cargo test -p pool-redis --test sentinel -- --nocapture`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pool::Settings;
use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode, Value};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::{RedisSentinel, SilentListener};

mod common;
use common::load::{
    assert_no_secret, failures_summary, missing_on, ms, register, rel, settings, spawn_writers,
    writer, Announced, Report, Write, CALL_BOUND,
};
use common::{connect_with, q, text, TIMEOUT};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn deployment() -> RedisSentinel {
    RedisSentinel::start().unwrap_or_else(|e| panic!("starting the Sentinel deployment: {e}"))
}

/// The error of a command expected to fail.
fn refused(conn: &mut RedisConn, command: &str, args: &[&str]) -> pool_driver::DriverError {
    let params: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
    conn.query(command, &params)
        .err()
        .unwrap_or_else(|| panic!("{command} {args:?} succeeded"))
}

/// Promotes `replica` and demotes `master` with plain `REPLICAOF`, as an operator or a tool
/// other than the Sentinels would: nothing announces it, and the old master's clients stay
/// connected (the Sentinels' own reconfiguration would `CLIENT KILL` them).
fn demote_behind_the_sentinels_back(d: &RedisSentinel, master: u16, replica: u16) {
    d.node_command(replica, &["REPLICAOF", "NO", "ONE"])
        .expect("promote the replica");
    d.node_command(master, &["REPLICAOF", "127.0.0.1", &replica.to_string()])
        .expect("demote the master");
    assert_eq!(d.role(master).expect("role"), "slave");
}

#[test]
fn connects_through_the_sentinels_in_every_spelling() {
    let _serial = serial();
    let d = deployment();
    let driver = RedisDriver::new();
    let master = d.master_port().expect("master");

    // The URL and the key=value text are one key (one pool). (`/0` is `db=0`: a db given
    // is a different key from none, as with redis:// URLs.)
    assert_eq!(
        driver.parse_args(&d.url()).expect("url"),
        driver
            .parse_args(&format!("{} db=0", d.args()))
            .expect("args")
    );
    // `pool_user` may not run ROLE (it is @dangerous): its role is read from HELLO; the
    // `default` user asks ROLE.
    for (n, args) in [d.url(), d.args(), d.default_user_args()]
        .iter()
        .enumerate()
    {
        let mut conn = connect_with(&driver, args);
        let key = format!("sentinel-connect:{n}");
        q(&mut conn, "SET", &[&key, "v"]);
        assert_eq!(
            d.node_command(master, &["GET", &key])
                .expect("GET on the master"),
            "v",
            "{args}: the write is on the master"
        );
        assert_no_secret("Debug of a connection", &format!("{conn:?}"));
        let mut parked = driver.detach(conn, ResetMode::Full).expect("detach");
        assert!(driver.connected(&mut parked, TIMEOUT), "{args}");
    }
    let mut conn = connect_with(&driver, &d.args());
    assert_eq!(text(&mut conn, "ACL WHOAMI", &[]), "pool_user");
}

#[test]
fn connect_errors_say_what_each_sentinel_answered_and_stay_bounded() {
    let _serial = serial();
    let d = deployment();
    let driver = RedisDriver::new();
    let sentinel = d.sentinel_list();
    let connect = |args: &str, timeout: Duration| {
        let args = driver.parse_args(args).expect("args parse");
        let started = Instant::now();
        let result = driver.connect(&args, timeout);
        (result, started.elapsed())
    };

    // A service the Sentinels do not monitor.
    let wrong_service = d
        .args()
        .replace("service_name=mymaster", "service_name=nosuch");
    let (result, _) = connect(&wrong_service, TIMEOUT);
    let err = result.expect_err("unknown service");
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
    assert_eq!(err.code(), Some("SENTINEL_UNKNOWN_SERVICE"), "{err}");
    assert!(err.message().contains(&sentinel), "{err}");
    assert_no_secret("an unknown-service error", &format!("{err} {err:?}"));

    // The Sentinels' own password is wrong, then missing: refused, and no password shown.
    let wrong_password = d.args().replace(
        "sentinel_password=sentinel-secret-pw",
        "sentinel_password=nope-secret",
    );
    let (result, _) = connect(&wrong_password, TIMEOUT);
    let err = result.expect_err("wrong Sentinel password");
    assert_eq!(err.kind(), DriverErrorKind::Connect, "{err}");
    assert_no_secret("a wrong-password error", &format!("{err} {err:?}"));
    assert!(!err.message().contains("nope-secret"), "{err}");
    let no_password = d
        .args()
        .replace(" sentinel_password=sentinel-secret-pw", "");
    let (result, _) = connect(&no_password, TIMEOUT);
    let err = result.expect_err("no Sentinel password");
    assert!(err.message().contains("NOAUTH"), "{err}");

    // A refused address and a silent one before the real Sentinel: the connect goes on to
    // the next within its share of the bound, and succeeds.
    let silent = SilentListener::start().expect("silent listener");
    let refused_port = pool_testservers_free_port();
    let list = format!(
        "127.0.0.1:{refused_port},127.0.0.1:{},{sentinel}",
        silent.port()
    );
    let args = d
        .args()
        .replace(&format!("sentinel={sentinel}"), &format!("sentinel={list}"));
    let (result, took) = connect(&args, Duration::from_secs(3));
    let mut conn = result.unwrap_or_else(|e| panic!("past a dead and a silent Sentinel: {e}"));
    q(&mut conn, "SET", &["sentinel-connect:past-silent", "v"]);
    eprintln!("connect past a refused and a silent Sentinel: {took:?} (bound 3 s)");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The Sentinel that answered is asked first next time: no wait for the silent one.
    let (result, took) = connect(&args, Duration::from_secs(3));
    result.expect("second connect");
    assert!(took < Duration::from_millis(500), "{took:?}");

    // Only silent Sentinels: a Timeout, on time.
    let only_silent = d.args().replace(
        &format!("sentinel={sentinel}"),
        &format!("sentinel=127.0.0.1:{}", silent.port()),
    );
    let (result, took) = connect(&only_silent, Duration::from_secs(1));
    let err = result.expect_err("silent Sentinel");
    assert_eq!(err.kind(), DriverErrorKind::Timeout, "{err}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_no_secret("a timeout error", &format!("{err} {err:?}"));
}

/// A port nothing listens on (picked free, then closed).
fn pool_testservers_free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The READONLY path and the role check, on the driver: the master is demoted without the
/// Sentinels announcing anything (so the watcher cannot know), with connections open to it.
#[test]
fn a_demoted_master_breaks_its_connections_and_fails_the_role_check() {
    let _serial = serial();
    let d = deployment();
    let driver = RedisDriver::new();
    let master = d.master_port().expect("master");
    let replica = d
        .node_ports()
        .into_iter()
        .find(|p| *p != master)
        .expect("replica");

    let mut in_use = connect_with(&driver, &d.args());
    q(&mut in_use, "SET", &["sentinel-readonly:before", "v"]);
    // One parked as `pool_user` (role from HELLO), one as `default` (ROLE).
    let mut parked_hello = driver
        .detach(connect_with(&driver, &d.args()), ResetMode::Full)
        .expect("detach");
    let mut parked_role = driver
        .detach(
            connect_with(&driver, &d.default_user_args()),
            ResetMode::Full,
        )
        .expect("detach");
    let mut plain = connect_with(&driver, &d.node_args(master));

    demote_behind_the_sentinels_back(&d, master, replica);

    // A write on the Sentinel key: READONLY, and the connection is broken (closed by the pool).
    let err = refused(&mut in_use, "SET", &["sentinel-readonly:after", "v"]);
    assert_eq!(err.kind(), DriverErrorKind::Broken, "{err}");
    assert_eq!(err.code(), Some("READONLY"), "{err}");
    assert!(in_use.is_broken());
    assert!(driver.detach(in_use, ResetMode::Full).is_err());
    // The same reply on a plain key is the server refusing one command: a key may point at a
    // replica on purpose.
    let err = refused(&mut plain, "SET", &["sentinel-readonly:plain", "v"]);
    assert_eq!(err.kind(), DriverErrorKind::Query, "{err}");
    assert!(!plain.is_broken());
    // The liveness check of a parked Sentinel connection asks the role: a replica fails it.
    assert!(
        !driver.connected(&mut parked_hello, TIMEOUT),
        "HELLO's role"
    );
    assert!(!driver.connected(&mut parked_role, TIMEOUT), "ROLE");
    // A plain key's parked connection is alive, and that is all its check asks.
    let mut plain = driver.detach(plain, ResetMode::Full).expect("detach");
    assert!(driver.connected(&mut plain, TIMEOUT));
    // A new connect finds that the node the Sentinels name is not the master.
    let args = driver.parse_args(&d.args()).expect("args");
    let err = driver
        .connect(&args, Duration::from_secs(2))
        .expect_err("the named node is a replica");
    assert_eq!(err.code(), Some("SENTINEL_NOT_MASTER"), "{err}");
    assert!(err.message().contains("answers as a replica"), "{err}");
    assert_no_secret("a not-master error", &format!("{err} {err:?}"));
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} after {timeout:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// One watcher thread per Sentinel service while connections exist, none after.
#[test]
fn the_watcher_thread_lives_as_long_as_the_connections() {
    let _serial = serial();
    let d = deployment();
    let driver = RedisDriver::new();
    wait_for(
        "no watcher thread left by other tests",
        Duration::from_secs(3),
        || common::watcher_threads() == 0,
    );
    let a = connect_with(&driver, &d.args());
    let b = connect_with(&driver, &d.url());
    // (A new thread takes its name once it runs.)
    wait_for("a watcher thread", Duration::from_secs(2), || {
        common::watcher_threads() == 1
    });
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        common::watcher_threads(),
        1,
        "one per service, however many connections"
    );
    drop(a);
    thread::sleep(Duration::from_millis(600));
    assert_eq!(common::watcher_threads(), 1, "b still needs it");
    drop(b);
    let started = Instant::now();
    wait_for("the watcher ends", Duration::from_secs(2), || {
        common::watcher_threads() == 0
    });
    eprintln!(
        "the watcher ended {:?} after the last connection",
        started.elapsed()
    );
    let _c = connect_with(&driver, &d.args());
    wait_for(
        "the next connect starts another",
        Duration::from_secs(2),
        || common::watcher_threads() == 1,
    );
}

/// A SIGKILL of the master under load: 4 threads write with `SET`, 4 with `SET` + `WAIT 1`;
/// the Sentinel fails over; the old master comes back as a replica; the writes go on. No
/// write acknowledged after the kill may be missing from the new master; what the crash
/// took is Redis' asynchronous replication, shown apart (and none of the `WAIT`ed writes).
#[test]
fn failover_after_a_sigkill_under_load() {
    let _serial = serial();
    register();
    let mut d = deployment();
    let args = d.args();
    pool::configure("redis", &args, settings()).expect("configure");
    let switch = Announced::subscribe(
        d.sentinel_ports()[0],
        d.sentinel_password(),
        "+switch-master",
    );
    let stop = AtomicBool::new(false);
    let tag = format!("sentinel-kill:{}", std::process::id());
    let (mut killed_at, mut failover_seen, mut old, mut new) =
        (Instant::now(), Instant::now(), 0, 0);
    let reports: Vec<Report> = thread::scope(|s| {
        let writers = spawn_writers(s, &args, &tag, &stop);
        thread::sleep(Duration::from_secs(1));
        old = d.kill_master().expect("kill the master");
        // After the kill returned: the old master is dead and reaped, so a write sent from
        // now on cannot reach it. (One acknowledged a moment later may still be the old
        // master's, read from the socket after it died: classed by when it was sent.)
        killed_at = Instant::now();
        new = d
            .wait_failover(old, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("failover: {e}"));
        failover_seen = Instant::now();
        thread::sleep(Duration::from_millis(1500));
        d.restart_as_replica(old, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("the old master back as a replica: {e}"));
        thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let switched_at = switch.at().expect("the Sentinel announced +switch-master");
    let writes: Vec<&Write> = reports.iter().flat_map(|r| &r.writes).collect();
    let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    let missing = missing_on(new, &keys);
    let lost = |pick: &dyn Fn(&Write) -> bool| {
        writes
            .iter()
            .filter(|w| pick(w) && missing.contains(&w.key))
            .count()
    };
    let before_kill = |w: &Write| w.sent < killed_at;
    let acked_before = writes.iter().filter(|w| before_kill(w)).count();
    let lost_async = lost(&|w| before_kill(w) && !w.replicated);
    let lost_waited = lost(&|w| w.replicated);
    let lost_after_kill = lost(&|w| w.sent >= killed_at);
    // Every write acknowledged after the first failed call is the new master's (the old one
    // is dead by then).
    let outage = reports
        .iter()
        .flat_map(|r| &r.failures)
        .map(|f| f.at)
        .filter(|at| *at >= killed_at)
        .min()
        .expect("the kill failed some calls");
    let first_after = writes
        .iter()
        .filter(|w| w.acked > outage)
        .map(|w| w.acked)
        .min()
        .expect("writes resumed after the kill");
    let slowest = reports.iter().map(|r| r.slowest).max().unwrap_or_default();
    eprintln!("--- Sentinel failover after SIGKILL of the master (8 writers, 4 with WAIT 1) ---");
    eprintln!(
        "master {old} killed at 0 ms; +switch-master to {new} at {}; the failover seen by polling at {}",
        rel(switched_at, killed_at),
        rel(failover_seen, killed_at)
    );
    eprintln!("{}", failures_summary(&reports, killed_at));
    eprintln!(
        "first write acknowledged by the new master: {} ({} from +switch-master, {} from the \
         failover seen by polling the Sentinel)",
        rel(first_after, killed_at),
        rel(first_after, switched_at),
        rel(first_after, failover_seen)
    );
    eprintln!(
        "slowest call (open + SET [+ WAIT] + release): {}",
        ms(slowest)
    );
    eprintln!(
        "acknowledged writes: {} ({} sent before the kill); missing on the new master: {}",
        writes.len(),
        acked_before,
        missing.len()
    );
    eprintln!(
        "  lost to Redis' asynchronous replication (sent before the kill, acknowledged by the \
         old master, not yet on the replica): {lost_async}"
    );
    eprintln!("  lost among writes a replica had confirmed (WAIT 1 >= 1): {lost_waited}");
    eprintln!("  lost among writes sent after the kill: {lost_after_kill}");
    assert_eq!(lost_after_kill, 0, "a write sent after the kill is missing");
    assert_eq!(
        lost_waited, 0,
        "a write the replica had confirmed is missing"
    );
    assert!(slowest < CALL_BOUND, "a call took {slowest:?}");
    assert!(
        first_after.saturating_duration_since(switched_at) < Duration::from_secs(2),
        "writes resumed {:?} after the switch",
        first_after.saturating_duration_since(switched_at)
    );
    assert!(
        first_after.saturating_duration_since(killed_at) < Duration::from_secs(6),
        "writes resumed {:?} after the kill",
        first_after.saturating_duration_since(killed_at)
    );
    pool::shutdown();
}

/// A switchover (`SENTINEL FAILOVER`) under load. The old master runs on as a master until
/// the Sentinel demotes it (about 10 s later), so every write sent there after the switch
/// would be acknowledged and lost: the watcher must stop the pool from sending any. Beside
/// the pool's writers, one thread writes to the old master by a plain `host`/`port` key (a
/// client without Sentinel support) to show that window.
#[test]
fn switchover_under_load() {
    let _serial = serial();
    register();
    let d = deployment();
    let args = d.args();
    pool::configure("redis", &args, settings()).expect("configure");
    let old = d.master_port().expect("master");
    let plain_args = d.node_args(old);
    pool::configure("redis", &plain_args, settings()).expect("configure");
    let switch = Announced::subscribe(
        d.sentinel_ports()[0],
        d.sentinel_password(),
        "+switch-master",
    );
    let stop = AtomicBool::new(false);
    let tag = format!("sentinel-switch:{}", std::process::id());
    let mut started_at = Instant::now();
    let mut new = 0;
    let (reports, plain): (Vec<Report>, Report) = thread::scope(|s| {
        let writers = spawn_writers(s, &args, &tag, &stop);
        let plain = {
            let (args, tag, stop) = (&plain_args, format!("{tag}:plain"), &stop);
            s.spawn(move || writer(args, &tag, false, stop))
        };
        thread::sleep(Duration::from_secs(1));
        started_at = Instant::now();
        let (_, promoted) = d
            .switchover(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("switchover: {e}"));
        new = promoted;
        thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        let reports = writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect();
        (reports, plain.join().expect("plain writer"))
    });
    let switched_at = switch.at().expect("the Sentinel announced +switch-master");
    // The watcher hears the same message as this test's subscription; a command already on
    // its way to the old master then may still be acknowledged there. 100 ms covers that.
    let settled = switched_at + Duration::from_millis(100);
    let writes: Vec<&Write> = reports.iter().flat_map(|r| &r.writes).collect();
    let mut keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    keys.extend(plain.writes.iter().map(|w| w.key.as_str()));
    let missing = missing_on(new, &keys);
    let lost = |pick: &dyn Fn(&Write) -> bool| {
        writes
            .iter()
            .filter(|w| pick(w) && missing.contains(&w.key))
            .count()
    };
    let lost_before = lost(&|w| w.acked < switched_at && !w.replicated);
    let lost_waited = lost(&|w| w.replicated);
    let lost_in_flight = lost(&|w| w.acked >= switched_at && w.sent < settled);
    let lost_after = lost(&|w| w.sent >= settled);
    let sent_after = writes.iter().filter(|w| w.sent >= settled).count();
    let plain_after: Vec<&Write> = plain
        .writes
        .iter()
        .filter(|w| w.acked >= switched_at)
        .collect();
    let plain_lost = plain_after
        .iter()
        .filter(|w| missing.contains(&w.key))
        .count();
    // Writes are refused from the moment the watcher hears the promotion begin (the first
    // failed call) until the new master is known: the first write acknowledged after the
    // first failure is the new master's.
    let fence = reports.iter().flat_map(|r| &r.failures).map(|f| f.at).min();
    let first_new = writes
        .iter()
        .filter(|w| w.sent > fence.unwrap_or(switched_at))
        .map(|w| w.acked)
        .min()
        .expect("writes after the switchover began");
    let slowest = reports.iter().map(|r| r.slowest).max().unwrap_or_default();
    eprintln!(
        "--- Sentinel switchover (SENTINEL FAILOVER) under load (8 writers, 4 with WAIT 1) ---"
    );
    eprintln!(
        "SENTINEL FAILOVER at 0 ms; +switch-master {old} -> {new} at {}",
        rel(switched_at, started_at)
    );
    eprintln!("{}", failures_summary(&reports, started_at));
    eprintln!(
        "first write acknowledged by the new master: {} ({} from +switch-master)",
        rel(first_new, started_at),
        rel(first_new, switched_at)
    );
    eprintln!("slowest call: {}", ms(slowest));
    eprintln!(
        "acknowledged writes: {}; missing on the new master: {}",
        writes.len(),
        lost(&|_| true)
    );
    eprintln!(
        "  lost, acknowledged by the old master before +switch-master (after the promotion: \
         Redis/Sentinel's own window, no client is told): {lost_before}"
    );
    eprintln!("  lost among writes a replica had confirmed (WAIT 1 >= 1): {lost_waited}");
    eprintln!(
        "  lost, sent before and acknowledged after +switch-master (in flight): {lost_in_flight}"
    );
    eprintln!(
        "  lost among {sent_after} writes sent 100 ms or more after +switch-master: {lost_after}"
    );
    eprintln!(
        "a client without Sentinel (plain key to the old master): {} writes acknowledged after \
         +switch-master, {plain_lost} of them lost",
        plain_after.len()
    );
    assert_eq!(
        lost_after, 0,
        "the pool wrote to the old master after the switch"
    );
    assert_eq!(
        lost_waited, 0,
        "a write the replica had confirmed is missing"
    );
    assert!(sent_after > 0, "no write after the switch");
    assert!(slowest < CALL_BOUND, "a call took {slowest:?}");
    assert!(
        first_new.saturating_duration_since(switched_at) < Duration::from_secs(2),
        "writes resumed {:?} after the switch",
        first_new.saturating_duration_since(switched_at)
    );
    pool::shutdown();
}

/// Parked connections to the master at a switchover: not one is handed out afterwards, no
/// write reaches the old master, and when the old master comes back as a replica, nothing
/// reaches it either.
#[test]
fn switchover_with_parked_connections_and_the_old_master_back_as_a_replica() {
    let _serial = serial();
    register();
    let mut d = deployment();
    let args = d.args();
    pool::configure("redis", &args, settings()).expect("configure");
    let held: Vec<pool::Conn> = (0..4)
        .map(|_| pool::open("redis", &args).expect("open"))
        .collect();
    for conn in held {
        conn.release().expect("release");
    }
    let before = pool::stats("redis", &args).expect("stats");
    assert!(before.idle >= 4, "parked: {}", before.idle);

    let switch = Announced::subscribe(
        d.sentinel_ports()[0],
        d.sentinel_password(),
        "+switch-master",
    );
    let (old, new) = d
        .switchover(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("switchover: {e}"));
    wait_for("+switch-master", Duration::from_secs(5), || {
        switch.at().is_some()
    });
    thread::sleep(Duration::from_millis(100));
    // The old master still runs as a master (the Sentinel demotes it ~10 s later): a write on
    // a parked connection would be acknowledged there, and lost.
    assert_eq!(d.role(old).expect("role"), "master");
    let write_all = |d: &RedisSentinel, tag: &str| {
        for i in 0..8 {
            let key = format!("sentinel-parked:{tag}:{i}");
            let mut conn = pool::open("redis", &args).expect("open after the switch");
            conn.execute("SET", &[Value::from(key.as_str()), Value::from("1")])
                .unwrap_or_else(|e| panic!("SET after the switch: {e}"));
            conn.release().expect("release");
            assert_eq!(
                d.node_command(new, &["EXISTS", &key]).expect("EXISTS"),
                "1",
                "{key} is not on the new master"
            );
        }
    };
    write_all(&d, "after-switch");
    let after = pool::stats("redis", &args).expect("stats");
    eprintln!(
        "parked at the switch: {}; closed since: {} (opened {})",
        before.idle,
        after.closed - before.closed,
        after.opened - before.opened
    );
    assert!(
        after.closed - before.closed >= 4,
        "the parked connections to the old master were not all closed"
    );

    // The old master comes back as a replica of the new one: still nothing reaches it.
    d.restart_as_replica(old, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("the old master back as a replica: {e}"));
    write_all(&d, "after-restart");
    pool::shutdown();
}

/// The READONLY path through the pool: the master is demoted without the Sentinels (so
/// without any announcement) while connections to it are parked. The first write on one
/// gets `READONLY`, a transient error, and breaks it; the others are then checked (`ROLE`)
/// before anyone gets them, and dropped; no write is acknowledged by the demoted node.
#[test]
fn readonly_through_the_pool_drops_the_parked_connections() {
    let _serial = serial();
    register();
    let d = deployment();
    let args = d.args();
    // Parked connections are not checked by age within this test: the first one handed out
    // is used unchecked, as within `validate_after` under load.
    let settings = Settings {
        validate_after: Duration::from_secs(60),
        min_idle: 0,
        ..settings()
    };
    pool::configure("redis", &args, settings).expect("configure");
    let master = d.master_port().expect("master");
    let replica = d
        .node_ports()
        .into_iter()
        .find(|p| *p != master)
        .expect("replica");
    let held: Vec<pool::Conn> = (0..3)
        .map(|_| pool::open("redis", &args).expect("open"))
        .collect();
    for conn in held {
        conn.release().expect("release");
    }
    let before = pool::stats("redis", &args).expect("stats");
    demote_behind_the_sentinels_back(&d, master, replica);

    let mut conn = pool::open("redis", &args).expect("a parked connection");
    let err = conn
        .execute("SET", &[Value::from("sentinel-ro:1"), Value::from("1")])
        .expect_err("READONLY");
    assert!(err.is_transient(), "{err}");
    let pool::Error::Query(source) = &err else {
        panic!("not a query error: {err}");
    };
    assert_eq!(source.kind(), DriverErrorKind::Broken, "{err}");
    assert_eq!(source.code(), Some("READONLY"), "{err}");
    conn.release().expect("release");

    // The other parked ones are suspect now: checked, found to be on a replica, dropped. The
    // Sentinels still name the demoted node, so the connect after them is refused too.
    let started = Instant::now();
    let err = pool::open("redis", &args)
        .map(drop)
        .expect_err("no master to be had");
    assert!(err.is_transient(), "{err}");
    let pool::Error::Connect { source, .. } = &err else {
        panic!("not a connect error: {err}");
    };
    assert_eq!(source.code(), Some("SENTINEL_NOT_MASTER"), "{err}");
    assert_no_secret("the open's error", &format!("{err} {err:?}"));
    let after = pool::stats("redis", &args).expect("stats");
    eprintln!(
        "after READONLY: {} parked dropped as dead, {} closed, the next open failed in {} ({err})",
        after.dropped_dead - before.dropped_dead,
        after.closed - before.closed,
        ms(started.elapsed())
    );
    assert_eq!(
        after.idle, 0,
        "a connection to the demoted node is still parked"
    );
    assert!(after.dropped_dead - before.dropped_dead >= 2, "{after:?}");
    // Nothing was written anywhere.
    assert_eq!(
        d.node_command(replica, &["EXISTS", "sentinel-ro:1"])
            .expect("EXISTS"),
        "0"
    );
    pool::shutdown();
}
