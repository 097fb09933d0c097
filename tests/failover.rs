//! PostgreSQL failover on real streaming replication (issue 21): a primary and a standby on
//! this machine ([`PgReplication`]), the pool in front of both hosts with libpq's
//! `target_session_attrs`, and the faults a high-availability setup goes through:
//!
//! * a crash failover under write load (the primary SIGKILLed, the standby promoted a second
//!   later), with synchronous and with asynchronous replication;
//! * `release()` after an `INSERT` that committed, while the server behind it dies;
//! * a switchover (the primary fenced read-only, stopped, the standby promoted, the old primary
//!   back as a standby of the new one) under write load;
//! * a read key (`prefer-standby`) losing its standby;
//! * every role-checking key with parked connections at the moment the roles change;
//! * busy read keys across a promotion (ignored for now: the driver does not hold it for a
//!   `read-only` key yet, see the test).
//!
//! What a service needs from the pool in all of them: no call hangs past its bound, every error
//! is one a handler answers with 503 ([`Error::is_transient`]), writes resume within seconds of
//! the promotion, and no key is handed a session on a server of the wrong role. The tests print
//! what they measured (`cargo test --test failover -- --nocapture`).
//!
//! Each test starts its own pair (they kill, stop and promote nodes) and uses keys of its own
//! (a unique `application_name`), so no two tests share a pool.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, wait_until, SOON};
use pool::{Conn, Error, Settings, Value};
use pool_testservers::{PgReplication, Replication};

const DRIVER: &str = "postgres";

/// SQLSTATE `read_only_sql_transaction`: a write on a session that cannot write.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// A failed request's pause before the next one, as a client's retry would wait. It also
/// keeps the writers from forking thousands of standby backends a second (each refused for
/// its role) while no node takes writes, which would slow the promotion being measured.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// The tests of this file run one at a time: each runs two servers and measures windows of
/// a second or less, which another pair failing over on the same (small, shared) machine
/// would distort.
fn one_pair_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_pair(replication: Replication) -> PgReplication {
    PgReplication::start(replication)
        .unwrap_or_else(|e| panic!("starting a primary and a streaming standby: {e}"))
}

/// A unique `application_name`: a pool (key) of the test's own, and a name to find its
/// sessions by in `pg_stat_activity`.
fn app_name(tag: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("failover_{tag}_{}", NEXT.fetch_add(1, SeqCst))
}

/// `key=value` arguments over both hosts, for `target_session_attrs=attrs`, each host bounded
/// by 1 s (`connect_timeout`, as in libpq), with `application_name=app`.
fn key(pair: &PgReplication, attrs: &str, app: &str) -> String {
    format!(
        "{} target_session_attrs={attrs} connect_timeout=1 application_name={app}",
        pair.hosts_args()
    )
}

/// The same as a URL: `postgres://pool_trust@127.0.0.1:P1,127.0.0.1:P2/pool_test?...`.
fn url_key(pair: &PgReplication, attrs: &str, app: &str) -> String {
    format!(
        "{}?target_session_attrs={attrs}&connect_timeout=1&application_name={app}",
        pair.hosts_url()
    )
}

/// Short bounds, so that a failover is seen and got over within a second or two:
/// a parked connection older than 100 ms is checked (and with it its role) before it is
/// handed out; a connect over both hosts gets 2 s (1 s per host); nobody waits more than 2 s
/// for a connection. No warm floor (`min_idle: 0`): no primer keeps connecting in the
/// background to a pair that a test has dropped.
fn settings() -> Settings {
    Settings {
        max_open: 8,
        min_idle: 0,
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        check_timeout: Duration::from_secs(1),
        validate_after: Duration::from_millis(100),
        statement_timeout: Some(Duration::from_secs(2)),
        primer_backoff_max: Duration::from_millis(200),
        ..Settings::default()
    }
}

/// The longest any one call (`open`, a statement, `release`) may take: waiting at the limit
/// (`acquire_timeout`), then one connect over both hosts (`connect_timeout`), plus room for a
/// loaded machine. A statement's own bound (2 s and a short grace) is inside it.
fn call_bound() -> Duration {
    let s = settings();
    s.acquire_timeout + s.connect_timeout + Duration::from_secs(1)
}

/// What a caller saw fail.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    transient: bool,
    sqlstate: Option<String>,
}

impl From<&Error> for Failure {
    fn from(error: &Error) -> Failure {
        let sqlstate = match error {
            Error::Query(e) => e.code(),
            Error::Connect { source, .. } => source.code(),
            Error::StatementTimeout { source, .. } => source.code(),
            _ => None,
        };
        Failure {
            message: error.to_string(),
            transient: error.is_transient(),
            sqlstate: sqlstate.map(str::to_owned),
        }
    }
}

/// One request of a writer: open, `INSERT` a unique id (answering the port of the server
/// that ran it), release.
#[derive(Debug)]
struct Write {
    started: Instant,
    finished: Instant,
    /// The id, if the `INSERT` returned `Ok`: autocommit, so the write is acknowledged.
    acked: Option<i64>,
    /// The port of the server that ran the acknowledged `INSERT`.
    port: Option<i64>,
    failure: Option<Failure>,
    /// `release()` failed after the `INSERT` had committed (the bug this file keeps fixed).
    release_error: Option<String>,
    /// The slowest of the three calls.
    slowest_call: Duration,
}

fn write_once(args: &str, table: &str, id: i64) -> Write {
    let started = Instant::now();
    let mut write = Write {
        started,
        finished: started,
        acked: None,
        port: None,
        failure: None,
        release_error: None,
        slowest_call: Duration::ZERO,
    };
    let opened = pool::open(DRIVER, args);
    write.slowest_call = started.elapsed();
    match opened {
        Err(e) => write.failure = Some(Failure::from(&e)),
        Ok(mut conn) => {
            let t = Instant::now();
            let sql = format!("INSERT INTO {table} (id) VALUES ($1) RETURNING inet_server_port()");
            match conn.query(&sql, &[Value::Int(id)]) {
                Ok(rows) => {
                    write.acked = Some(id);
                    write.port = rows.scalar().and_then(Value::as_i64);
                }
                Err(e) => write.failure = Some(Failure::from(&e)),
            }
            write.slowest_call = write.slowest_call.max(t.elapsed());
            let t = Instant::now();
            let released = conn.release();
            write.slowest_call = write.slowest_call.max(t.elapsed());
            if let Err(e) = released {
                match write.acked {
                    Some(_) => write.release_error = Some(e.to_string()),
                    None => write.failure = write.failure.take().or(Some(Failure::from(&e))),
                }
            }
        }
    }
    write.finished = Instant::now();
    write
}

/// Writer threads looping [`write_once`] with ids of their own until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    writes: Arc<Mutex<Vec<Write>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Writers {
    fn start(count: usize, args: &str, table: &str) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let writes = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..count)
            .map(|t| {
                let (stop, acked, writes) = (stop.clone(), acked.clone(), writes.clone());
                let (args, table) = (args.to_owned(), table.to_owned());
                thread::spawn(move || {
                    for n in 0.. {
                        if stop.load(SeqCst) {
                            break;
                        }
                        let write = write_once(&args, &table, t as i64 * 1_000_000_000 + n);
                        let failed = write.failure.is_some();
                        if write.acked.is_some() {
                            acked.fetch_add(1, SeqCst);
                        }
                        writes.lock().unwrap().push(write);
                        if failed {
                            thread::sleep(RETRY_PAUSE);
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acked,
            writes,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.load(SeqCst)
    }

    /// Waits until `more` writes beyond those acknowledged so far are acknowledged; whether
    /// that happened within `limit`.
    fn more_acked(&self, more: usize, limit: Duration) -> bool {
        let from = self.acked();
        eventually(limit, || self.acked() >= from + more)
    }

    fn stop(self) -> Vec<Write> {
        self.stop.store(true, SeqCst);
        for thread in self.threads {
            thread.join().expect("a writer panicked");
        }
        Arc::try_unwrap(self.writes)
            .expect("the writers are done")
            .into_inner()
            .unwrap()
    }
}

/// The ids in `table` on `node`.
fn ids_on(node: &pool_testservers::PgServer, table: &str) -> HashSet<i64> {
    node.psql(&format!("SELECT id FROM {table}"))
        .unwrap_or_else(|e| panic!("reading {table}: {e}"))
        .lines()
        .map(|l| l.parse::<i64>().expect("an id"))
        .collect()
}

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    port: i64,
    in_recovery: bool,
    read_only: bool,
}

fn whereabouts(conn: &mut Conn) -> Result<Seen, Error> {
    let rows = conn.query(
        "SELECT inet_server_port(), pg_is_in_recovery(), \
         current_setting('transaction_read_only') = 'on'",
        &[],
    )?;
    let cell = |i| rows.get(0, i).cloned().unwrap_or(Value::Null);
    Ok(Seen {
        port: cell(0).as_i64().expect("a port"),
        in_recovery: cell(1).as_bool().expect("a bool"),
        read_only: cell(2).as_bool().expect("a bool"),
    })
}

/// One request of a reader: open, ask where the session runs, release.
fn look(args: &str) -> Result<Seen, Failure> {
    let mut conn = pool::open(DRIVER, args).map_err(|e| Failure::from(&e))?;
    let seen = whereabouts(&mut conn).map_err(|e| Failure::from(&e));
    conn.release().expect("release is Ok");
    seen
}

/// Holds `n` connections of `args` at once and releases them all, so that `n` sessions are
/// parked; returns where they ran.
fn park(args: &str, n: usize) -> Vec<Seen> {
    let mut held: Vec<Conn> = (0..n)
        .map(|_| pool::open(DRIVER, args).unwrap_or_else(|e| panic!("open {args}: {e}")))
        .collect();
    let seen = held
        .iter_mut()
        .map(|c| whereabouts(c).expect("where the session runs"))
        .collect();
    for conn in held {
        conn.release().expect("release");
    }
    wait_until("the released sessions are parked", SOON, || {
        let s = pool::stats(DRIVER, args).expect("stats");
        s.resetting == 0 && s.opening == 0 && s.idle == n
    });
    seen
}

/// How many sessions named `app` `node` has.
fn sessions_on(node: &pool_testservers::PgServer, app: &str) -> i64 {
    node.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
    ))
    .expect("counting sessions")
    .parse()
    .expect("a count")
}

/// `t - from` in seconds, negative when `t` came first.
fn signed(t: Instant, from: Instant) -> f64 {
    match t.checked_duration_since(from) {
        Some(d) => d.as_secs_f64(),
        None => -from.duration_since(t).as_secs_f64(),
    }
}

fn since(t: Instant, from: Instant) -> String {
    format!("{:.3} s", signed(t, from))
}

/// Asserts what every request of a fault test must hold: bounded calls, transient errors
/// only, and `release()` never failing a committed write.
fn assert_well_behaved(writes: &[Write]) {
    let slowest = writes
        .iter()
        .map(|w| w.slowest_call)
        .max()
        .unwrap_or_default();
    assert!(
        slowest <= call_bound(),
        "a call took {slowest:?} (bound {:?})",
        call_bound()
    );
    let lasting: Vec<&Failure> = writes
        .iter()
        .filter_map(|w| w.failure.as_ref())
        .filter(|f| !f.transient)
        .collect();
    assert!(
        lasting.is_empty(),
        "errors a handler could not answer with 503: {lasting:#?}"
    );
    let release_errors: Vec<&String> = writes
        .iter()
        .filter_map(|w| w.release_error.as_ref())
        .collect();
    assert!(
        release_errors.is_empty(),
        "release() failed after a committed INSERT: {release_errors:#?}"
    );
}

#[test]
fn failover_under_load_loses_no_acknowledged_write_with_synchronous_replication() {
    failover_under_load(Replication::Synchronous);
}

#[test]
fn failover_under_load_with_asynchronous_replication() {
    failover_under_load(Replication::Asynchronous);
}

/// 8 writers through a `read-write` key over both hosts; the primary is SIGKILLed, the
/// standby promoted 1 s later. The key needs nothing but its host list: a new connection
/// skips the dead host (refused at once) and the standby (refused for its role), until the
/// promotion makes the standby fit.
fn failover_under_load(replication: Replication) {
    const WRITERS: usize = 8;
    let _serial = one_pair_at_a_time();
    let mut pair = start_pair(replication);
    let table = "acked_writes";
    pair.primary()
        .psql(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"))
        .expect("create the table");
    let app = app_name("load");
    let args = key(&pair, "read-write", &app);
    pool::configure(DRIVER, &args, settings()).expect("configure");

    let writers = Writers::start(WRITERS, &args, table);
    assert!(
        writers.more_acked(500, SOON),
        "writes flow before the crash"
    );
    let killed = Instant::now();
    pair.kill_primary().expect("kill the primary");
    thread::sleep(Duration::from_secs(1).saturating_sub(killed.elapsed()));
    let promoting = Instant::now();
    pair.promote_standby().expect("promote the standby");
    let promoted = Instant::now();
    let resumed = writers.more_acked(1, Duration::from_secs(10));
    // Load goes on for a second after writes resumed: it must be clean by then.
    thread::sleep(Duration::from_secs(1));
    let writes = writers.stop();

    assert!(resumed, "writes resumed after the promotion");
    assert_well_behaved(&writes);
    let failures: Vec<&Write> = writes.iter().filter(|w| w.failure.is_some()).collect();
    let first_failure = failures.iter().map(|w| w.finished).min();
    let last_failure = failures.iter().map(|w| w.finished).max();
    // Which server acknowledged a write tells before from after (RETURNING its port).
    let new_port = i64::from(pair.primary().port());
    let last_ack_before = writes
        .iter()
        .filter(|w| w.acked.is_some() && w.port != Some(new_port))
        .map(|w| w.finished)
        .max();
    let first_ack_after = writes
        .iter()
        .filter(|w| w.port == Some(new_port))
        .map(|w| w.finished)
        .min()
        .expect("a write after the promotion");
    let slowest_request = writes
        .iter()
        .map(|w| w.finished - w.started)
        .max()
        .unwrap_or_default();
    let acked: HashSet<i64> = writes.iter().filter_map(|w| w.acked).collect();
    let on_new_primary = ids_on(pair.primary(), table);
    let lost = acked.difference(&on_new_primary).count();
    let unacknowledged_but_kept = on_new_primary.difference(&acked).count();
    let mut samples: Vec<&str> = failures
        .iter()
        .filter_map(|w| w.failure.as_ref())
        .map(|f| f.message.as_str())
        .collect();
    samples.sort_unstable();
    samples.dedup_by_key(|m| m.get(..40).unwrap_or(m).to_owned());
    let stats = pool::stats(DRIVER, &args).expect("stats");
    eprintln!(
        "failover under load ({replication:?}): {} requests, {} acknowledged, {} failed; \
         error window {} (first failure {} after the kill, last {} after the promote); \
         last write acknowledged by the old primary at kill {}, first by the new one at \
         kill + {}; promote took {}, promote → first successful write {}; slowest request \
         {:?}, slowest call {:?}; \
         acknowledged writes lost: {lost} of {}; committed without acknowledgement: \
         {unacknowledged_but_kept}; pool: opened {}, dropped dead {}\n  errors seen: {samples:#?}",
        writes.len(),
        acked.len(),
        failures.len(),
        last_failure
            .zip(first_failure)
            .map_or("none".into(), |(l, f)| since(l, f)),
        first_failure.map_or("none".into(), |f| since(f, killed)),
        last_failure.map_or("none".into(), |l| since(l, promoting)),
        last_ack_before.map_or("?".into(), |t| format!("{:+.3} s", signed(t, killed))),
        since(first_ack_after, killed),
        since(promoted, promoting),
        since(first_ack_after, promoting),
        slowest_request,
        writes
            .iter()
            .map(|w| w.slowest_call)
            .max()
            .unwrap_or_default(),
        acked.len(),
        stats.opened,
        stats.dropped_dead,
    );
    assert!(!failures.is_empty(), "the crash was noticed");
    let resume = first_ack_after.saturating_duration_since(promoting);
    assert!(
        resume <= Duration::from_secs(5),
        "writes resumed {resume:?} after the promote (target 2 s)"
    );
    let late: Vec<&Failure> = writes
        .iter()
        .filter(|w| w.started > first_ack_after + Duration::from_millis(500))
        .filter_map(|w| w.failure.as_ref())
        .collect();
    assert!(
        late.is_empty(),
        "requests still failed more than 0.5 s after writes resumed: {late:#?}"
    );
    if replication == Replication::Synchronous {
        assert_eq!(
            lost, 0,
            "with synchronous replication every acknowledged write is on the promoted standby"
        );
    }
    assert!(stats.in_use == 0 && stats.waiting == 0, "{stats:?}");
}

/// A request that committed its `INSERT` and then finds its server gone still gets `Ok` from
/// `release()`: the write happened, and what becomes of the connection (it is closed) is the
/// pool's business. Released before the promotion (no node takes connections) and after it,
/// with the reset in the background and on the releasing thread.
#[test]
fn release_stays_ok_after_a_committed_insert_during_the_failover() {
    let _serial = one_pair_at_a_time();
    let mut pair = start_pair(Replication::Synchronous);
    let table = "released_writes";
    pair.primary()
        .psql(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"))
        .expect("create the table");
    let keys: Vec<(bool, String)> = [true, false]
        .into_iter()
        .map(|background_reset| {
            let args = key(&pair, "read-write", &app_name("release"));
            let settings = Settings {
                background_reset,
                ..settings()
            };
            pool::configure(DRIVER, &args, settings).expect("configure");
            (background_reset, args)
        })
        .collect();
    let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
    let mut id = 0;
    let mut committed = |args: &str| {
        let mut conn = pool::open(DRIVER, args).expect("open");
        id += 1;
        assert_eq!(conn.execute(&insert, &[Value::Int(id)]).expect("insert"), 1);
        (conn, id)
    };
    // Per key: one released after the crash, one after the promotion.
    let mut held: Vec<(bool, Conn, i64, Conn, i64)> = keys
        .iter()
        .map(|(bg, args)| {
            let (before, a) = committed(args);
            let (after, b) = committed(args);
            (*bg, before, a, after, b)
        })
        .collect();
    pair.kill_primary().expect("kill the primary");
    let mut later = Vec::new();
    for (background_reset, before, a, after, b) in held.drain(..) {
        let t = Instant::now();
        let released = before.release();
        eprintln!(
            "release after the crash (background_reset {background_reset}): {released:?} in \
             {:?}",
            t.elapsed()
        );
        assert!(
            released.is_ok(),
            "release() after a committed INSERT, server gone: {released:?}"
        );
        later.push((background_reset, after, a, b));
    }
    pair.promote_standby().expect("promote the standby");
    let mut ids = Vec::new();
    for (background_reset, after, a, b) in later {
        let released = after.release();
        assert!(
            released.is_ok(),
            "release() after a committed INSERT, after the promotion (background_reset \
             {background_reset}): {released:?}"
        );
        ids.extend([a, b]);
    }
    let on_new_primary = ids_on(pair.primary(), table);
    for id in ids {
        assert!(
            on_new_primary.contains(&id),
            "write {id} is on the new primary"
        );
    }
    for (_, args) in &keys {
        let mut conn = pool::open(DRIVER, args).expect("the key works after the failover");
        let seen = whereabouts(&mut conn).expect("where");
        assert_eq!(seen.port, i64::from(pair.primary().port()));
        conn.release().expect("release");
    }
}

/// A switchover under write load: the primary is fenced (sessions read-only, so writes on it
/// are refused with SQLSTATE 25006, as an HA manager may do before it stops a primary), stopped
/// cleanly, the standby promoted, and the old primary started again as a standby of the new
/// one. The `read-write` key had sessions parked on the old primary at the switch, and one
/// held by a caller across the fence: its next write is refused with a transient 25006 and
/// its connection closed. The writers' sessions meet the fence either the same way or, more
/// often, through the pool's own role check (a parked session's liveness check, or the reset
/// after a statement, sees the server report `default_transaction_read_only`), so a 25006
/// reaches the writers at most once per session, maybe never. No write is acknowledged by
/// the old primary once it was stopped, every write after the promotion lands on the new
/// primary, and the key has no session at all on the old primary once it is a standby.
#[test]
fn a_switchover_moves_every_write_to_the_new_primary() {
    const WRITERS: usize = 2;
    const PARKED: usize = 6;
    let _serial = one_pair_at_a_time();
    let mut pair = start_pair(Replication::Synchronous);
    let table = "switched_writes";
    pair.primary()
        .psql(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"))
        .expect("create the table");
    let (old, new) = (pair.primary_index(), pair.standby_index());
    let (old_port, new_port) = (
        i64::from(pair.node(old).port()),
        i64::from(pair.node(new).port()),
    );
    let app = app_name("switchover");
    let args = key(&pair, "read-write", &app);
    pool::configure(DRIVER, &args, settings()).expect("configure");
    for seen in park(&args, PARKED) {
        assert_eq!(seen.port, old_port, "{seen:?}");
    }
    let mut held = pool::open(DRIVER, &args).expect("a session held across the fence");
    assert_eq!(whereabouts(&mut held).expect("where").port, old_port);
    let writers = Writers::start(WRITERS, &args, table);
    assert!(
        writers.more_acked(100, SOON),
        "writes flow before the switch"
    );

    let fenced = Instant::now();
    let old_primary = pair.primary();
    old_primary
        .psql("ALTER SYSTEM SET default_transaction_read_only = on")
        .expect("fence");
    old_primary.psql("SELECT pg_reload_conf()").expect("reload");
    thread::sleep(Duration::from_millis(300));
    // The backend applies the reload when it reads its next statement (the sleep above makes
    // that the first one almost always): the held session writes until it is refused.
    let insert = format!("INSERT INTO {table} (id) VALUES ($1)");
    let mut held_id = 0;
    let refused_held = loop {
        held_id -= 1;
        match held.execute(&insert, &[Value::Int(held_id)]) {
            Ok(_) => assert!(
                fenced.elapsed() < SOON,
                "the fence never reached the held session"
            ),
            Err(e) => break e,
        }
    };
    assert_eq!(
        Failure::from(&refused_held).sqlstate.as_deref(),
        Some(READ_ONLY_SQL_TRANSACTION),
        "{refused_held}"
    );
    assert!(refused_held.is_transient(), "{refused_held}");
    held.release()
        .expect("a refused write's connection is closed, not an error");
    let stopping = Instant::now();
    pair.stop_primary().expect("stop the primary");
    let promoting = Instant::now();
    pair.promote_standby().expect("promote the standby");
    let promoted = Instant::now();
    pair.rejoin_old_primary_as_standby()
        .expect("the old primary follows the new one");
    let rejoined = Instant::now();
    assert!(
        writers.more_acked(100, SOON),
        "writes flow after the switch"
    );
    thread::sleep(Duration::from_millis(700));
    let writes = writers.stop();

    assert_well_behaved(&writes);
    let refused: Vec<&Write> = writes
        .iter()
        .filter(|w| {
            w.failure
                .as_ref()
                .is_some_and(|f| f.sqlstate.as_deref() == Some(READ_ONLY_SQL_TRANSACTION))
        })
        .collect();
    let on_old_after_stop: Vec<&Write> = writes
        .iter()
        .filter(|w| w.port == Some(old_port) && w.finished > stopping)
        .collect();
    let elsewhere_after_promote: Vec<&Write> = writes
        .iter()
        .filter(|w| w.acked.is_some() && w.started > promoted && w.port != Some(new_port))
        .collect();
    let first_write_on_new = writes
        .iter()
        .filter(|w| w.port == Some(new_port))
        .map(|w| w.finished)
        .min()
        .expect("writes on the new primary");
    let failures = writes.iter().filter(|w| w.failure.is_some()).count();
    let acked: HashSet<i64> = writes.iter().filter_map(|w| w.acked).collect();
    let lost = acked.difference(&ids_on(pair.primary(), table)).count();
    let stats = pool::stats(DRIVER, &args).expect("stats");
    eprintln!(
        "switchover under load: {} requests, {} acknowledged, {failures} failed, {} refused \
         with 25006 (all transient); fence → stop {}, stop + promote {}, rejoin {}; promote → \
         first write on the new primary {}; last refusal {} after the fence; acknowledged \
         writes lost {lost}; pool: opened {}, dropped dead {}",
        writes.len(),
        acked.len(),
        refused.len(),
        since(stopping, fenced),
        since(promoted, stopping),
        since(rejoined, promoted),
        since(first_write_on_new, promoting),
        refused
            .iter()
            .map(|w| w.finished)
            .max()
            .map_or("-".into(), |t| since(t, fenced)),
        stats.opened,
        stats.dropped_dead,
    );
    let max_open = settings().max_open;
    assert!(
        refused.len() <= max_open,
        "25006 reached callers {} times: more than once per session the key can have had on \
         the old primary ({max_open} at most)",
        refused.len()
    );
    assert!(
        refused.iter().all(|w| w.finished < promoted),
        "a 25006 after the promotion"
    );
    assert!(
        on_old_after_stop.is_empty(),
        "writes acknowledged by the old primary after it stopped: {on_old_after_stop:#?}"
    );
    assert!(
        elsewhere_after_promote.is_empty(),
        "writes after the promotion not on the new primary: {elsewhere_after_promote:#?}"
    );
    let late: Vec<&Failure> = writes
        .iter()
        .filter(|w| w.started > rejoined + Duration::from_millis(500))
        .filter_map(|w| w.failure.as_ref())
        .collect();
    assert!(late.is_empty(), "failures after the switch: {late:#?}");
    assert_eq!(lost, 0, "synchronous: every acknowledged write survives");
    assert_eq!(
        sessions_on(pair.node(old), &app),
        0,
        "the read-write key keeps no session on the old primary, now a standby"
    );
}

/// A read key written the libpq way (`prefer-standby`, here in URL form) reads from the
/// standby; with the standby stopped it falls back to the primary, its parked standby
/// sessions found dead and dropped. Asynchronous replication: with a synchronous standby
/// down, the primary's commits would wait for it.
#[test]
fn a_prefer_standby_key_reads_from_the_standby_and_falls_back_to_the_primary() {
    let _serial = one_pair_at_a_time();
    let mut pair = start_pair(Replication::Asynchronous);
    let (primary_port, standby_port) = (
        i64::from(pair.primary().port()),
        i64::from(pair.standby().port()),
    );
    let args = url_key(&pair, "prefer-standby", &app_name("read"));
    pool::configure(DRIVER, &args, settings()).expect("configure");
    for seen in park(&args, 3) {
        assert!(seen.in_recovery, "a read on the primary: {seen:?}");
        assert_eq!(seen.port, standby_port);
    }

    pair.stop_standby().expect("stop the standby");
    let down = Instant::now();
    let mut failures = Vec::new();
    let mut fallback = None;
    while fallback.is_none() && down.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let looked = look(&args);
        assert!(t.elapsed() <= call_bound(), "a read took {:?}", t.elapsed());
        match looked {
            Ok(seen) => fallback = Some((seen, down.elapsed())),
            Err(failure) => failures.push(failure),
        }
    }
    let (seen, took) = fallback.expect("reads fall back to the primary");
    let stats = pool::stats(DRIVER, &args).expect("stats");
    eprintln!(
        "prefer-standby, standby stopped: first read on the primary {:.3} s after the stop, \
         {} failed reads before it {:?}; pool: dropped dead {}",
        took.as_secs_f64(),
        failures.len(),
        failures.iter().map(|f| &f.message).collect::<Vec<_>>(),
        stats.dropped_dead,
    );
    assert!(!seen.in_recovery && seen.port == primary_port, "{seen:?}");
    assert!(
        failures.iter().all(|f| f.transient),
        "only transient errors: {failures:#?}"
    );
    assert!(took <= Duration::from_secs(3), "the fallback took {took:?}");
    for _ in 0..5 {
        let seen = look(&args).expect("reads go on on the primary");
        assert_eq!(seen.port, primary_port);
    }

    // Back up, the standby is preferred again by a new connection (a key of its own here:
    // like libpq, the pool does not move a session it already has).
    pair.start_standby().expect("start the standby again");
    let again = url_key(&pair, "prefer-standby", &app_name("read_again"));
    pool::configure(DRIVER, &again, settings()).expect("configure");
    let seen = look(&again).expect("a read");
    assert!(seen.in_recovery && seen.port == standby_port, "{seen:?}");
}

/// Every role-checking key with sessions parked at the moment the roles change (a switchover:
/// the primary stopped, the standby promoted, the old primary back as a standby). The
/// `read-only` and `standby` keys' parked sessions run on (they sat on the standby, which is
/// now the primary, and nothing told them), yet no open hands one out: their validation asks
/// the role and drops them. The `read-write` and `primary` keys' sessions died with the old
/// primary. So at no moment does a key get a session of the wrong role: while there is no
/// standby the read-only keys fail (transiently), and they are served again once the old
/// primary follows as a standby.
#[test]
fn roles_change_under_parked_connections() {
    const PARKED: usize = 3;
    const PROBES: usize = 6;
    let _serial = one_pair_at_a_time();
    let mut pair = start_pair(Replication::Synchronous);
    let (a, b) = (
        i64::from(pair.primary().port()),
        i64::from(pair.standby().port()),
    );
    // (what it asks for, arguments, wants a standby)
    let keys: Vec<(&str, String, bool)> = [
        ("read-write", false, false),
        ("primary", true, false),
        ("read-only", false, true),
        ("standby", true, true),
    ]
    .into_iter()
    .map(|(attrs, url, standby)| {
        let app = app_name(&attrs.replace('-', "_"));
        let args = match url {
            true => url_key(&pair, attrs, &app),
            false => key(&pair, attrs, &app),
        };
        pool::configure(DRIVER, &args, settings()).expect("configure");
        for seen in park(&args, PARKED) {
            assert_eq!(seen.in_recovery, standby, "{attrs}: {seen:?}");
            assert_eq!(seen.port, if standby { b } else { a }, "{attrs}");
        }
        (attrs, args, standby)
    })
    .collect();
    let parked = Instant::now();
    let fits = |standby: bool, seen: &Seen| match standby {
        true => seen.in_recovery && seen.read_only,
        false => !seen.in_recovery && !seen.read_only,
    };

    pair.stop_primary().expect("stop the primary");
    let promoting = Instant::now();
    pair.promote_standby().expect("promote the standby");
    eprintln!("roles: promoted in {:?}", promoting.elapsed());
    // The sessions parked before the switch are now older than `validate_after`, so the
    // next open checks them (the switch itself normally takes longer than that already). A
    // session parked more recently is handed out unchecked: the documented window of
    // `validate_after` (ARCHITECTURE.md, "Failover"), which this test does not probe.
    thread::sleep(settings().validate_after.saturating_sub(parked.elapsed()));
    // No standby now: b is the primary, a is down.
    for (attrs, args, standby) in &keys {
        let t = Instant::now();
        let looked: Vec<Result<Seen, Failure>> = (0..PROBES).map(|_| look(args)).collect();
        let served = looked.iter().filter(|l| l.is_ok()).count();
        let dropped = pool::stats(DRIVER, args).expect("stats").dropped_dead;
        eprintln!(
            "roles: {attrs} with the old primary down: {served} of {PROBES} opens served in \
             {:?}, {dropped} parked sessions dropped{}",
            t.elapsed(),
            looked
                .iter()
                .find_map(|l| l.as_ref().err())
                .map_or(String::new(), |f| format!("; refused with: {}", f.message)),
        );
        for l in &looked {
            match l {
                Ok(seen) => assert!(
                    fits(*standby, seen) && seen.port == b,
                    "{attrs} handed out a session on the wrong server: {seen:?}"
                ),
                Err(failure) => {
                    assert!(*standby, "{attrs} fails with a primary up: {failure:?}");
                    assert!(failure.transient, "{attrs}: {failure:?}");
                }
            }
        }
        if !standby {
            assert_eq!(served, PROBES, "{attrs} is served by the new primary");
        }
    }

    pair.rejoin_old_primary_as_standby()
        .expect("the old primary follows the new one");
    let rejoined = Instant::now();
    for (attrs, args, standby) in &keys {
        let back = eventually(Duration::from_secs(5), || look(args).is_ok());
        assert!(back, "{attrs} is served again after the rejoin");
        for _ in 0..PROBES {
            let seen = look(args).unwrap_or_else(|f| panic!("{attrs}: {f:?}"));
            assert!(
                fits(*standby, &seen) && seen.port == if *standby { a } else { b },
                "{attrs} handed out a session on the wrong server after the rejoin: {seen:?}"
            );
        }
    }
    eprintln!(
        "roles: every key served by the right node {:?} after the rejoin",
        rejoined.elapsed()
    );
}

/// The read keys' other half: busy ones. A `read-only` and a `standby` key each read in a loop
/// from two threads (two connections, reused within milliseconds, so no parked one is ever
/// older than `validate_after` and checked) while the standby is promoted. Each session may
/// answer its first statement after the promotion from the new primary (the statement had
/// started; what the server then reports marks the session broken), so at most `max_open`
/// reads per key; after that the key must not read from the new primary at all.
///
/// Seen failing before the fix: the `read-only` key ignored the reported change
/// (`SessionAttrs::reported_mismatch` returned `None` for it), so its busy sessions stayed on
/// the promoted node for as long as they were busy: every read of the 2 s after the
/// promotion (about 3,000) was answered by the new primary.
#[test]
fn busy_read_keys_stop_reading_from_a_promoted_node() {
    const READERS: usize = 2;
    let _serial = one_pair_at_a_time();
    let mut pair = start_pair(Replication::Asynchronous);
    let promoted_port = i64::from(pair.standby().port());
    let settings = Settings {
        max_open: READERS,
        ..settings()
    };
    let keys: Vec<(&str, String)> = ["read-only", "standby"]
        .into_iter()
        .map(|attrs| {
            let args = key(&pair, attrs, &app_name("busy"));
            pool::configure(DRIVER, &args, settings.clone()).expect("configure");
            (attrs, args)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = keys
        .iter()
        .flat_map(|(attrs, args)| (0..READERS).map(move |_| (*attrs, args.clone())))
        .map(|(attrs, args)| {
            let (stop, reads) = (stop.clone(), reads.clone());
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let started = Instant::now();
                    let looked = look(&args);
                    let failed = looked.is_err();
                    reads.lock().unwrap().push((attrs, started, looked));
                    if failed {
                        thread::sleep(RETRY_PAUSE);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    pair.stop_primary().expect("stop the primary");
    let promoting = Instant::now();
    pair.promote_standby().expect("promote the standby");
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, SeqCst);
    for reader in readers {
        reader.join().expect("a reader panicked");
    }

    let reads = reads.lock().unwrap();
    for (attrs, _) in &keys {
        let after: Vec<&Result<Seen, Failure>> = reads
            .iter()
            .filter(|(a, started, _)| a == attrs && *started > promoting)
            .map(|(_, _, looked)| looked)
            .collect();
        let on_new_primary = after
            .iter()
            .filter(|l| matches!(l, Ok(seen) if !seen.in_recovery))
            .count();
        let failed: Vec<&Failure> = after.iter().filter_map(|l| l.as_ref().err()).collect();
        eprintln!(
            "busy {attrs} key across a promotion: {} reads after the promote, {on_new_primary} \
             answered by the new primary (port {promoted_port}), {} failed",
            after.len(),
            failed.len()
        );
        assert!(
            failed.iter().all(|f| f.transient),
            "{attrs}: only transient errors: {failed:#?}"
        );
        assert!(
            on_new_primary <= READERS,
            "{attrs}: {on_new_primary} reads answered by the new primary (at most one per \
             session, {READERS})"
        );
    }
}

/// `load_balance_hosts=random` spreads a key's connects over its hosts, and still takes only
/// hosts that fit its `target_session_attrs`: 16 connections held at once (16 connects) of an
/// `any` key land on both nodes; of `prefer-standby`, `standby` and `read-write` keys, only on
/// the node that fits.
#[test]
fn random_load_balancing_spreads_over_the_nodes_that_fit() {
    const HELD: usize = 16;
    let _serial = one_pair_at_a_time();
    let pair = start_pair(Replication::Asynchronous);
    let (primary, standby) = (
        i64::from(pair.primary().port()),
        i64::from(pair.standby().port()),
    );
    for (attrs, expected) in [
        ("any", vec![primary, standby]),
        ("prefer-standby", vec![standby]),
        ("standby", vec![standby]),
        ("read-write", vec![primary]),
    ] {
        let args = format!(
            "{} load_balance_hosts=random",
            key(&pair, attrs, &app_name("random"))
        );
        pool::configure(
            DRIVER,
            &args,
            Settings {
                max_open: HELD,
                ..settings()
            },
        )
        .expect("configure");
        let mut ports: Vec<i64> = park(&args, HELD).iter().map(|s| s.port).collect();
        let per_node: Vec<usize> = expected
            .iter()
            .map(|p| ports.iter().filter(|q| *q == p).count())
            .collect();
        eprintln!("load_balance_hosts=random, {attrs}: {per_node:?} of {HELD} per node");
        ports.sort();
        ports.dedup();
        assert_eq!(
            ports,
            {
                let mut e = expected.clone();
                e.sort();
                e
            },
            "{attrs}: the nodes its {HELD} connections landed on"
        );
    }
}
