//! Redis Sentinel with three Sentinels (`pool_testservers::RedisSentinel::start_with_sentinels`):
//! a switchover led by a Sentinel other than the one the driver's connects ask.
//!
//! Only the leader of a failover announces the promotion's start
//! (`+failover-state-send-slaveof-noone`) and `+promoted-slave`; the other Sentinels repeat
//! `+switch-master` once the leader's hello messages reach them, up to about two seconds
//! later, and name the old master until then. A client that follows one Sentinel hears
//! neither the start nor the promotion when another leads, and keeps writing to the old master
//! (still a master, acknowledging every write) in between: writes it then loses.
//!
//! `cargo test -p pool-redis --test sentinel_leader -- --nocapture` prints the figures.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use pool_testservers::RedisSentinel;

mod common;
use common::load::{
    failures_summary, missing_on, ms, register, rel, settings, spawn_writers, Announced, Report,
    Write, CALL_BOUND,
};
use common::wait_until;

/// Whether Sentinel `index` has the driver's watcher subscription among its clients (the
/// watcher subscribes to three channels and one pattern; the test's own subscriptions to one
/// channel each).
fn watched(d: &RedisSentinel, index: usize) -> bool {
    d.sentinel_command(index, &["CLIENT", "LIST"])
        .is_ok_and(|list| list.lines().any(|l| l.contains(" sub=3 psub=1 ")))
}

/// A switchover under load, led by the third Sentinel while the connects ask the first (the
/// one that answered last is asked first, and the first answers the first connect). From the
/// leader's `+failover-state-send-slaveof-noone` on, no write may be acknowledged by the old
/// master: it is lost when the old master is demoted. So the driver must hear the leader,
/// whichever Sentinel it is.
///
/// Before the watcher listened to every Sentinel it subscribed to the first only: it heard
/// neither the start nor the promotion, and the writers went on writing to the old master
/// until the first Sentinel repeated `+switch-master`.
#[test]
fn a_switchover_led_by_another_sentinel_loses_no_acknowledged_write() {
    register();
    let d = RedisSentinel::start_with_sentinels(3)
        .unwrap_or_else(|e| panic!("starting three Sentinels: {e}"));
    let args = d.args();
    pool::configure("redis", &args, settings()).expect("configure");
    let old = d.master_port().expect("master");
    let leader = 2;
    let ports = d.sentinel_ports();

    // The first connect starts the watcher; it subscribes to the first Sentinel (it answered
    // the connect) at least.
    pool::open("redis", &args)
        .expect("open")
        .release()
        .expect("release");
    assert!(
        wait_until(Duration::from_secs(5), || watched(&d, 0)),
        "the watcher never subscribed to the first Sentinel"
    );
    // Whether it listens to the leader too (the change under test): not asserted here, the
    // writes below are the proof.
    let hears_leader = wait_until(Duration::from_secs(3), || watched(&d, leader));
    let listened: Vec<bool> = (0..ports.len()).map(|i| watched(&d, i)).collect();
    eprintln!("the watcher's subscriptions, by Sentinel: {listened:?}");

    let promoting = Announced::subscribe(
        ports[leader],
        d.sentinel_password(),
        "+failover-state-send-slaveof-noone",
    );
    let switched = Announced::subscribe(ports[leader], d.sentinel_password(), "+switch-master");
    let first_switched = Announced::subscribe(ports[0], d.sentinel_password(), "+switch-master");
    let stop = AtomicBool::new(false);
    let tag = format!("sentinel-leader:{}", std::process::id());
    let mut started_at = Instant::now();
    let mut new = 0;
    let reports: Vec<Report> = thread::scope(|s| {
        let writers = spawn_writers(s, &args, &tag, &stop);
        thread::sleep(Duration::from_secs(1));
        started_at = Instant::now();
        let (_, promoted) = d
            .switchover_via(leader, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("switchover led by Sentinel {leader}: {e}"));
        new = promoted;
        // Past the moment the other Sentinels repeat +switch-master (hello messages every
        // 2 s), so the window a one-Sentinel watcher leaves open is inside the run.
        let _ = wait_until(Duration::from_secs(5), || first_switched.at().is_some());
        thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let promoting_at = promoting
        .at()
        .expect("the leader announced +failover-state-send-slaveof-noone");
    let switched_at = switched.at().expect("the leader announced +switch-master");
    // The watcher hears the same message as the test's subscription; a command already on its
    // way to the old master by then may still be acknowledged there. 100 ms covers that.
    let settled = promoting_at + Duration::from_millis(100);
    let writes: Vec<&Write> = reports.iter().flat_map(|r| &r.writes).collect();
    let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
    let missing = missing_on(new, &keys);
    let lost = |pick: &dyn Fn(&Write) -> bool| {
        writes
            .iter()
            .filter(|w| pick(w) && missing.contains(&w.key))
            .count()
    };
    let lost_before = lost(&|w| w.sent < promoting_at && !w.replicated);
    let lost_in_flight = lost(&|w| w.sent >= promoting_at && w.sent < settled);
    let lost_after = lost(&|w| w.sent >= settled);
    let lost_waited = lost(&|w| w.replicated);
    let sent_after = writes.iter().filter(|w| w.sent >= settled).count();
    // The fence refuses the old master's connections (the pool closes them unseen when it
    // checks them, a writer sees SENTINEL_FAILOVER only on one it holds) and the connects to
    // it (SENTINEL_NOT_MASTER): the first failed call after the promotion's start is when it
    // went up, as a writer saw it.
    let fenced_at = reports
        .iter()
        .flat_map(|r| &r.failures)
        .map(|f| f.at)
        .filter(|at| *at >= promoting_at)
        .min();
    let first_new = writes
        .iter()
        .filter(|w| w.sent > switched_at)
        .map(|w| w.acked)
        .min();
    let slowest = reports.iter().map(|r| r.slowest).max().unwrap_or_default();
    eprintln!("--- switchover led by Sentinel {leader} of 3 (8 writers, 4 with WAIT 1) ---");
    eprintln!(
        "SENTINEL FAILOVER at 0 ms; the leader's +failover-state-send-slaveof-noone at {}, its \
         +switch-master {old} -> {new} at {}; the first Sentinel's +switch-master at {}",
        rel(promoting_at, started_at),
        rel(switched_at, started_at),
        first_switched
            .at()
            .map_or_else(|| "never".to_owned(), |at| rel(at, started_at))
    );
    eprintln!(
        "first call refused after the promotion's start (the fence): {}",
        fenced_at.map_or_else(
            || "none".to_owned(),
            |at| format!("{} from the promotion's start", rel(at, promoting_at))
        )
    );
    eprintln!("{}", failures_summary(&reports, started_at));
    eprintln!(
        "first write acknowledged after the leader's +switch-master: {}",
        first_new.map_or_else(|| "none".to_owned(), |at| rel(at, switched_at))
    );
    eprintln!("slowest call: {}", ms(slowest));
    eprintln!(
        "acknowledged writes: {}; missing on the new master: {}",
        writes.len(),
        missing.len()
    );
    eprintln!(
        "  lost, sent before the promotion's start (asynchronous replication): {lost_before}"
    );
    eprintln!("  lost, sent in the 100 ms after it (in flight): {lost_in_flight}");
    eprintln!("  lost among {sent_after} writes sent 100 ms or more after it: {lost_after}");
    eprintln!("  lost among writes a replica had confirmed (WAIT 1 >= 1): {lost_waited}");
    assert_eq!(
        lost_after, 0,
        "{lost_after} writes sent after the leader (Sentinel {leader}) announced the promotion's \
         start were acknowledged by the old master {old} and lost (the watcher listened to the \
         leader: {hears_leader})"
    );
    assert_eq!(
        lost_waited, 0,
        "a write the replica had confirmed is missing"
    );
    assert!(sent_after > 0, "no write after the promotion's start");
    assert!(slowest < CALL_BOUND, "a call took {slowest:?}");
    pool::shutdown();
}
