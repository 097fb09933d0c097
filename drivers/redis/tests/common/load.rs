//! The Sentinel load tests' shared parts (`tests/sentinel.rs`, `tests/sentinel_leader.rs`):
//! writers through `pool::open` that record every acknowledged write and every failure, the
//! count of acknowledged writes missing on a node, and a test-side subscription that records
//! when a Sentinel announced an event.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use pool::Settings;
use pool_driver::Value;
use pool_redis::RedisDriver;

/// The passwords of the deployment (data nodes' users, the Sentinels'): no error, `Debug`
/// output or message may show them.
pub const SECRETS: [&str; 3] = ["redis-secret-pw", "redis-default-pw", "sentinel-secret-pw"];

/// Registers this crate's driver with the pool once (a build that unifies the pool's default
/// features has it built in already: the same driver).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| match pool::register(RedisDriver::new()) {
        Ok(()) | Err(pool::Error::DriverAlreadyRegistered { .. }) => {}
        Err(e) => panic!("registering the redis driver: {e}"),
    });
}

/// The pool settings of the load tests: bounded everywhere, so a hung call fails the test.
pub fn settings() -> Settings {
    Settings {
        max_open: 16,
        acquire_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        check_timeout: Duration::from_secs(1),
        ..Settings::default()
    }
}

/// The longest one open + command + release may take: the acquire timeout plus a connect.
pub const CALL_BOUND: Duration = Duration::from_secs(8);

pub fn assert_no_secret(what: &str, shown: &str) {
    for secret in SECRETS {
        assert!(!shown.contains(secret), "{what} shows a password: {shown}");
    }
}

/// What a writer saw: each acknowledged write, each failure, the slowest call.
#[derive(Default)]
pub struct Report {
    pub writes: Vec<Write>,
    pub failures: Vec<Failure>,
    pub slowest: Duration,
}

pub struct Write {
    pub key: String,
    /// When the command was sent (after `open` returned).
    pub sent: Instant,
    /// When `SET` answered OK.
    pub acked: Instant,
    /// `WAIT 1 200` answered that a replica has it.
    pub replicated: bool,
}

pub struct Failure {
    pub at: Instant,
    pub transient: bool,
    pub code: Option<String>,
    pub message: String,
}

/// Starts 8 [`writer`]s in scope `s`, tagged `tag:0`…`tag:7`; the last four add `WAIT 1`.
pub fn spawn_writers<'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    args: &'scope str,
    tag: &str,
    stop: &'scope AtomicBool,
) -> Vec<std::thread::ScopedJoinHandle<'scope, Report>> {
    (0..8)
        .map(|i| {
            let tag = format!("{tag}:{i}");
            s.spawn(move || writer(args, &tag, i >= 4, stop))
        })
        .collect()
}

/// Writes unique keys through `pool::open` (`SET`, and `WAIT 1 200` when `wait`), release,
/// again, until `stop`. A failed call is retried after 20 ms, as a service would.
pub fn writer(args: &str, tag: &str, wait: bool, stop: &AtomicBool) -> Report {
    let mut report = Report::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{tag}:{n}");
        n += 1;
        let started = Instant::now();
        let mut acked = None;
        let outcome = (|| -> Result<bool, pool::Error> {
            let mut conn = pool::open("redis", args)?;
            let sent = Instant::now();
            conn.execute("SET", &[Value::from(key.as_str()), Value::from("1")])?;
            acked = Some((sent, Instant::now()));
            let replicated =
                wait && conn.execute("WAIT", &[Value::from("1"), Value::from("200")])? >= 1;
            conn.release()?;
            Ok(replicated)
        })();
        report.slowest = report.slowest.max(started.elapsed());
        if let Some((sent, at)) = acked {
            report.writes.push(Write {
                key: key.clone(),
                sent,
                acked: at,
                replicated: matches!(outcome, Ok(true)),
            });
        }
        if let Err(e) = outcome {
            let code = match &e {
                pool::Error::Query(d) => d.code().map(str::to_owned),
                pool::Error::Connect { source, .. } => source.code().map(str::to_owned),
                _ => None,
            };
            report.failures.push(Failure {
                at: Instant::now(),
                transient: e.is_transient(),
                code,
                message: e.to_string(),
            });
            thread::sleep(Duration::from_millis(20));
        }
    }
    report
}

/// Which of `keys` the node on `port` lacks (asked as `default`, in pipelines).
pub fn missing_on(port: u16, keys: &[&str]) -> HashSet<String> {
    let client = redis::Client::open(format!("redis://:redis-default-pw@127.0.0.1:{port}/0"))
        .expect("client");
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect to the master");
    let mut missing = HashSet::new();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("EXISTS").arg(*key);
        }
        let found: Vec<i64> = pipe.query(&mut conn).expect("EXISTS");
        for (key, n) in chunk.iter().zip(found) {
            if n == 0 {
                missing.insert((*key).to_owned());
            }
        }
    }
    missing
}

/// When Sentinel `port` first announces an event on `channel` (`+switch-master`,
/// `+failover-state-send-slaveof-noone`…), seen by a subscription of the test's own
/// (subscribed before this returns, so no announcement is missed).
pub struct Announced {
    at: Arc<Mutex<Option<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Announced {
    pub fn subscribe(port: u16, password: &str, channel: &str) -> Announced {
        let client =
            redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}/")).expect("client");
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("connect to the Sentinel");
        conn.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let subscribe = redis::cmd("SUBSCRIBE").arg(channel).get_packed_command();
        conn.send_packed_command(&subscribe).expect("subscribe");
        conn.recv_response().expect("subscribed");
        conn.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let at = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (Arc::clone(&at), Arc::clone(&stop));
        let channel = channel.to_owned();
        // `PubSub::get_message` may time out and be called again (a timed-out
        // `recv_response` would make the crate skip the next message).
        let thread = thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            while !stopped.load(Ordering::Relaxed) {
                match pubsub.get_message() {
                    Ok(message) if message.get_channel_name() == channel => {
                        let now = Instant::now();
                        seen.lock().expect("lock").get_or_insert(now);
                    }
                    Ok(_) => {}
                    Err(e) if e.is_timeout() => {}
                    Err(_) => return,
                }
            }
        });
        Announced {
            at,
            stop,
            thread: Some(thread),
        }
    }

    /// When the first announcement was read, if one was.
    pub fn at(&self) -> Option<Instant> {
        *self.at.lock().expect("lock")
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `d` in whole milliseconds, for the figures printed.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Signed milliseconds from `origin` to `at`.
pub fn rel(at: Instant, origin: Instant) -> String {
    if at >= origin {
        format!("+{:.0} ms", (at - origin).as_secs_f64() * 1000.0)
    } else {
        format!("-{:.0} ms", (origin - at).as_secs_f64() * 1000.0)
    }
}

/// The failures' window, their codes, and the assertion that each was transient.
pub fn failures_summary(reports: &[Report], origin: Instant) -> String {
    let failures: Vec<&Failure> = reports.iter().flat_map(|r| &r.failures).collect();
    for f in &failures {
        assert!(
            f.transient,
            "a failure that is not transient: {}",
            f.message
        );
        assert_no_secret("a failure", &f.message);
    }
    let Some(first) = failures.iter().map(|f| f.at).min() else {
        return "no failed call".to_owned();
    };
    let last = failures.iter().map(|f| f.at).max().unwrap_or(first);
    let mut codes: Vec<String> = failures
        .iter()
        .map(|f| f.code.clone().unwrap_or_else(|| "no code".into()))
        .collect();
    codes.sort();
    codes.dedup();
    format!(
        "{} failed calls, all transient, from {} to {} ({} window); codes: {}",
        failures.len(),
        rel(first, origin),
        rel(last, origin),
        ms(last - first),
        codes.join(", ")
    )
}
