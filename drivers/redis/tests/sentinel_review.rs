//! Reproductions from a fresh-eyes review of the Redis Sentinel support (issue 21): each test
//! here fails on the code as reviewed, for the reason its doc comment gives.
//!
//! Some run on a real deployment (`pool_testservers::RedisSentinel`), some on a scripted fake
//! Sentinel (a small RESP server below) that answers `SENTINEL GET-MASTER-ADDR-BY-NAME` as told
//! and publishes the events a test asks for, in front of a real `redis-server`.
//!
//! The tests run one at a time (a lock): they count the watcher threads and subscriptions.
//! `cargo test -p pool-redis --test sentinel_review -- --nocapture`

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pool_driver::{Connection, Driver, DriverErrorKind, Value};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::{RedisSentinel, RedisServer};

mod common;
use common::wait_until;
use common::{connect_with, q, TIMEOUT};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn deployment() -> RedisSentinel {
    RedisSentinel::start().unwrap_or_else(|e| panic!("starting the Sentinel deployment: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A scripted Sentinel.
// ---------------------------------------------------------------------------------------------

/// One client of the fake Sentinel: its writer (shared with `publish`) and subscriptions.
struct Client {
    out: Mutex<TcpStream>,
    channels: Mutex<Vec<String>>,
    patterns: Mutex<Vec<String>>,
}

impl Client {
    fn send(&self, bytes: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = out.write_all(bytes);
    }

    fn subscribed(&self) -> bool {
        !self.channels.lock().expect("lock").is_empty()
            || !self.patterns.lock().expect("lock").is_empty()
    }
}

#[derive(Default)]
struct Shared {
    /// What `GET-MASTER-ADDR-BY-NAME mymaster` answers (`None`: nil).
    master: Mutex<Option<(String, u16)>>,
    clients: Mutex<Vec<Arc<Client>>>,
    stop: AtomicBool,
}

impl Shared {
    /// Sends `payload` on `channel` to every client subscribed to it (or to a pattern of the
    /// form `prefix*` that matches it).
    fn publish(&self, channel: &str, payload: &str) {
        let clients = self.clients.lock().expect("lock").clone();
        for client in clients {
            if client
                .channels
                .lock()
                .expect("lock")
                .iter()
                .any(|c| c == channel)
            {
                client.send(
                    format!(
                        "*3\r\n{}{}{}",
                        bulk("message"),
                        bulk(channel),
                        bulk(payload)
                    )
                    .as_bytes(),
                );
            }
            let patterns = client.patterns.lock().expect("lock").clone();
            for pattern in patterns {
                if channel.starts_with(pattern.trim_end_matches('*')) {
                    client.send(
                        format!(
                            "*4\r\n{}{}{}{}",
                            bulk("pmessage"),
                            bulk(&pattern),
                            bulk(channel),
                            bulk(payload)
                        )
                        .as_bytes(),
                    );
                }
            }
        }
    }
}

/// A fake Sentinel on 127.0.0.1: enough of RESP2 for the driver's connect, question and
/// subscription. Every command it does not know gets `-ERR`.
struct FakeSentinel {
    port: u16,
    shared: Arc<Shared>,
}

fn bulk(text: &str) -> String {
    format!("${}\r\n{text}\r\n", text.len())
}

fn read_command(reader: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut words = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut data = vec![0; len + 2];
        reader.read_exact(&mut data).ok()?;
        data.truncate(len);
        words.push(String::from_utf8_lossy(&data).into_owned());
    }
    Some(words)
}

impl FakeSentinel {
    fn start(master: Option<(String, u16)>) -> FakeSentinel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::default());
        *shared.master.lock().expect("lock") = master;
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&accepting);
                thread::spawn(move || serve(stream, &shared));
            }
        });
        FakeSentinel { port, shared }
    }

    /// Clients currently subscribed to anything.
    fn subscribers(&self) -> usize {
        self.shared
            .clients
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.subscribed())
            .count()
    }

    /// Sends `payload` on `channel` to its subscribers (see [`Shared::publish`]).
    fn publish(&self, channel: &str, payload: &str) {
        self.shared.publish(channel, payload);
    }

    /// Closes every client connection (a Sentinel restart, as its clients see it).
    fn drop_clients(&self) {
        let clients: Vec<Arc<Client>> = self
            .shared
            .clients
            .lock()
            .expect("lock")
            .drain(..)
            .collect();
        for client in clients {
            let out = client.out.lock().unwrap_or_else(|p| p.into_inner());
            let _ = out.shutdown(Shutdown::Both);
        }
    }

    fn args(&self, node: &RedisServer) -> String {
        format!(
            "sentinel=127.0.0.1:{} service_name=mymaster user={} password={}",
            self.port,
            node.user(),
            node.password()
        )
    }
}

impl Drop for FakeSentinel {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.drop_clients();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(out) = stream.try_clone() else { return };
    let client = Arc::new(Client {
        out: Mutex::new(out),
        channels: Mutex::new(Vec::new()),
        patterns: Mutex::new(Vec::new()),
    });
    shared
        .clients
        .lock()
        .expect("lock")
        .push(Arc::clone(&client));
    let mut reader = BufReader::new(stream);
    while let Some(words) = read_command(&mut reader) {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let name = words
            .first()
            .map(|w| w.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_str() {
            "AUTH" | "CLIENT" => "+OK\r\n".to_owned(),
            "PING" if client.subscribed() => format!("*2\r\n{}{}", bulk("pong"), bulk("")),
            "PING" => "+PONG\r\n".to_owned(),
            "SENTINEL"
                if words.len() == 3 && words[1].eq_ignore_ascii_case("get-master-addr-by-name") =>
            {
                match &*shared.master.lock().expect("lock") {
                    Some((ip, port)) if words[2] == "mymaster" => {
                        format!("*2\r\n{}{}", bulk(ip), bulk(&port.to_string()))
                    }
                    _ => "*-1\r\n".to_owned(),
                }
            }
            "SUBSCRIBE" | "PSUBSCRIBE" => {
                let pattern = name == "PSUBSCRIBE";
                let mut reply = String::new();
                for channel in &words[1..] {
                    if pattern {
                        client.patterns.lock().expect("lock").push(channel.clone());
                    } else {
                        client.channels.lock().expect("lock").push(channel.clone());
                    }
                    let count = client.channels.lock().expect("lock").len()
                        + client.patterns.lock().expect("lock").len();
                    reply += &format!(
                        "*3\r\n{}{}:{count}\r\n",
                        bulk(&name.to_ascii_lowercase()),
                        bulk(channel)
                    );
                }
                reply
            }
            "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
                let list = if name == "UNSUBSCRIBE" {
                    &client.channels
                } else {
                    &client.patterns
                };
                let gone: Vec<String> = list.lock().expect("lock").drain(..).collect();
                let left = client.channels.lock().expect("lock").len()
                    + client.patterns.lock().expect("lock").len();
                let kind = bulk(&name.to_ascii_lowercase());
                if gone.is_empty() {
                    format!("*3\r\n{kind}$-1\r\n:{left}\r\n")
                } else {
                    let total = gone.len();
                    gone.iter()
                        .enumerate()
                        .map(|(i, c)| {
                            format!("*3\r\n{kind}{}:{}\r\n", bulk(c), left + total - i - 1)
                        })
                        .collect()
                }
            }
            _ => "-ERR unknown command\r\n".to_owned(),
        };
        client.send(reply.as_bytes());
    }
    client.channels.lock().expect("lock").clear();
    client.patterns.lock().expect("lock").clear();
    shared
        .clients
        .lock()
        .expect("lock")
        .retain(|c| !Arc::ptr_eq(c, &client));
}

// ---------------------------------------------------------------------------------------------
// Findings.
// ---------------------------------------------------------------------------------------------

/// **The Sentinels' password in `RedisDriver`'s `Debug`.** The driver keeps its watches in a
/// map keyed by `SentinelArgs::identity()`, a string that holds `sentinel_password` in clear
/// ("a map key only, never shown"), and `RedisDriver`/`Watches` derive `Debug`: the map's keys
/// are printed. One connect attempt (even a failed one: the watch is made before the
/// Sentinels are asked) is enough.
#[test]
fn driver_debug_shows_no_sentinel_password() {
    let _serial = serial();
    let driver = RedisDriver::new();
    // Nothing listens there: the connect fails, the watch stays in the map.
    let closed = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let args = driver
        .parse_args(&format!(
            "sentinel=127.0.0.1:{closed} service_name=mymaster sentinel_user=watcher \
             sentinel_password=sentinel-review-secret password=data-review-secret"
        ))
        .expect("args");
    let err = driver
        .connect(&args, Duration::from_millis(300))
        .expect_err("no Sentinel listens");
    assert!(
        !format!("{err} {err:?}").contains("review-secret"),
        "{err:?}"
    );
    let shown = format!("{driver:?}");
    assert!(
        !shown.contains("sentinel-review-secret"),
        "the driver's Debug shows the Sentinels' password: {shown}"
    );
}

/// **A Sentinel ACL user without channel permissions: the watcher believes it subscribed,
/// and hears nothing.** `sentinel_user` is there for ACL users on the Sentinels; since
/// Redis 7.0 such a user gets no Pub/Sub channel unless given `&*`/`allchannels`
/// (`acl-pubsub-default resetchannels`). `SUBSCRIBE` is then answered `-NOPERM`, but the
/// `redis` crate's `PubSub::subscribe`/`psubscribe` return `Ok(())` whatever the reply is
/// (the server error is a `Value`, not an `Err`), so `Watch::listen` goes on to
/// `follow_messages`, pings every 5 s (allowed), and never hears `+switch-master` nor the
/// promotion's start. No fence, no switch: after a switchover the held connection to the old
/// master keeps writing there (it answers as a master for ~10 s) and the writes it
/// acknowledges are lost when the Sentinel demotes it. Nothing is logged.
#[test]
fn a_sentinel_user_refused_subscribe_leaves_the_service_unwatched() {
    let _serial = serial();
    let d = deployment();
    // An ordinary ACL user on the Sentinel: may run every command, has no channel.
    d.sentinel_command(
        0,
        &["ACL", "SETUSER", "watcher", "on", ">watcher-pw", "+@all"],
    )
    .expect("ACL SETUSER on the Sentinel");
    let args = d.args().replace(
        "sentinel_password=sentinel-secret-pw",
        "sentinel_user=watcher sentinel_password=watcher-pw",
    );
    let driver = RedisDriver::new();
    // A fix may refuse such a key outright, saying why: that passes too.
    let parsed = driver.parse_args(&args).expect("args");
    let mut conn = match driver.connect(&parsed, TIMEOUT) {
        Ok(conn) => conn,
        Err(e) => {
            let said = e.message().to_ascii_lowercase();
            assert!(
                said.contains("noperm") || said.contains("subscribe"),
                "refused, but not for the subscription: {e}"
            );
            return;
        }
    };
    q(&mut conn, "SET", &["review-acl:before", "v"]);
    // Give the watcher time to (believe it) subscribed.
    thread::sleep(Duration::from_millis(700));
    let clients = d
        .sentinel_command(0, &["CLIENT", "LIST"])
        .expect("CLIENT LIST");
    let watcher: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains("user=watcher"))
        .collect();
    eprintln!("the Sentinel's clients of user `watcher`: {watcher:?}");

    let (old, new) = d
        .switchover(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("switchover: {e}"));
    let noticed = wait_until(Duration::from_secs(3), || conn.is_broken());
    let key = "review-acl:after-switch";
    let write = conn.query("SET", &[Value::from(key), Value::from("v")]);
    let old_role = d.role(old).unwrap_or_default();
    eprintln!(
        "switchover {old} -> {new}: watcher noticed: {noticed}; SET on the held connection: \
         {:?} (the old master says `{old_role}`)",
        write
            .as_ref()
            .map(|_| "acknowledged")
            .map_err(|e| e.to_string())
    );
    if write.is_ok() {
        // Acknowledged by the old master: is it on the new one once the old one rejoins?
        let _ = d.wait_replica_of(old, new, Duration::from_secs(30));
        let on_new = d.node_command(new, &["EXISTS", key]).unwrap_or_default();
        panic!(
            "after the switchover to {new}, a write on the connection to the old master {old} \
             was acknowledged (EXISTS on the new master once the old one rejoined: {on_new}); \
             the watcher never heard the switch: its SUBSCRIBE was refused (NOPERM) and taken \
             for a success. Sentinel clients of `watcher`: {watcher:?}"
        );
    }
    assert!(noticed, "the held connection was never marked");
}

/// **A Sentinel that publishes often keeps the watcher alive after the last connection.**
/// `follow_messages` checks `retire()` only when a read times out (every 250 ms of silence);
/// a message of any service on the subscribed channels (`+switch-master` etc. of the other
/// masters the Sentinel monitors, `-failover-abort-*`) resets that. While messages come more
/// often than every 250 ms the thread, its subscription and its Sentinel connection stay,
/// with no connection left to serve. (Here: an unrelated service's `+switch-master` every
/// 50 ms.)
#[test]
fn a_chatty_sentinel_keeps_the_watcher_after_the_last_connection() {
    let _serial = serial();
    let node = RedisServer::start().expect("redis");
    let fake = FakeSentinel::start(Some(("127.0.0.1".into(), node.port())));
    let driver = RedisDriver::new();
    let conn = connect_with(&driver, &fake.args(&node));
    assert!(
        wait_until(Duration::from_secs(3), || fake.subscribers() == 1),
        "the watcher subscribed"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        let shared = Arc::clone(&fake.shared);
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                shared.publish("+switch-master", "other 10.0.0.1 1 10.0.0.2 2");
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    drop(conn);
    let ended = wait_until(Duration::from_secs(3), || fake.subscribers() == 0);
    let threads = common::watcher_threads();
    stop.store(true, Ordering::SeqCst);
    publisher.join().expect("publisher");
    let then = wait_until(Duration::from_secs(3), || fake.subscribers() == 0);
    assert!(
        ended,
        "the watcher still listens 3 s after the last connection went ({threads} watcher \
         thread(s) alive; it ended {} once the messages stopped)",
        if then { "within 3 s" } else { "not even" }
    );
}

/// **Native-client writes reach the old master after the driver knows of the switch.** The
/// fence and the moved check are in `RedisConn::run` (the uniform surface) and `is_broken`;
/// `native_mut()` hands out the `redis::Connection` unchecked. A handler holding a lease of a
/// connection the watcher has already marked (`is_broken()` is true) can still write to the
/// old master through the native client: the write is acknowledged there and lost when the
/// Sentinel demotes it. The crate docs say "After a failover no command of a Sentinel key is
/// sent to a node that is no longer the master".
#[test]
fn native_client_writes_to_the_old_master_after_the_switch_are_lost() {
    let _serial = serial();
    let d = deployment();
    let driver = RedisDriver::new();
    let mut conn: RedisConn = connect_with(&driver, &d.args());
    q(&mut conn, "SET", &["review-native:before", "v"]);
    let (old, new) = d
        .switchover(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("switchover: {e}"));
    assert!(
        wait_until(Duration::from_secs(5), || conn.is_broken()),
        "the watcher marked the connection"
    );
    let refused = conn
        .query(
            "SET",
            &[Value::from("review-native:surface"), Value::from("v")],
        )
        .expect_err("the uniform surface refuses");
    assert_eq!(refused.kind(), DriverErrorKind::Broken, "{refused}");
    let key = "review-native:after-switch";
    let raw = conn
        .native_mut()
        .downcast_mut::<redis::Connection>()
        .expect("a redis::Connection");
    let write: redis::RedisResult<String> = redis::cmd("SET").arg(key).arg("v").query(raw);
    if let Ok(ack) = &write {
        let _ = d.wait_replica_of(old, new, Duration::from_secs(30));
        let on_new = d.node_command(new, &["EXISTS", key]).unwrap_or_default();
        let on_old = d.node_command(old, &["EXISTS", key]).unwrap_or_default();
        panic!(
            "the connection was marked moved ({}), yet a native SET was sent to the old master \
             {old} and answered {ack:?}; once it rejoined as a replica of {new}: EXISTS on the \
             new master {on_new}, on the old {on_old}",
            refused.code().unwrap_or("no code")
        );
    }
}

/// **A `dbname` query parameter becomes the service name.** The contract's URL parser puts
/// the path in `dbname` and lets a query parameter of the same name replace it;
/// `sentinel_url` then reads `dbname` as the path `/service[/db]`. So
/// `redis+sentinel://s1/mymaster/2?dbname=3` asks the Sentinels for a service named `3`
/// (and no db), where the same query on a `redis://` URL only picks the db (`db=3`): the
/// service the user named is silently dropped. (`dbname`/`database` are this driver's own
/// aliases of `db`.) Refusing it, or reading it as the db, would both do.
#[test]
fn a_dbname_query_parameter_does_not_replace_the_service_name() {
    let driver = RedisDriver::new();
    let parsed = driver.parse_args("redis+sentinel://s1/mymaster/2?dbname=3");
    if let Ok(args) = &parsed {
        assert_eq!(
            args.get("service_name"),
            Some("mymaster"),
            "redis+sentinel://s1/mymaster/2?dbname=3 read as: {}",
            args.redacted()
        );
    }
}

/// **An aborted failover is not heard once the fence has closed the old master's
/// connections.** The fence refuses every command on the old master's connections, so the
/// pool closes them (and checks and drops the parked ones); the watch's users fall to 0 and
/// the watcher retires within a tick. Connects to the fenced master are refused by `bind`
/// (so they never count a user nor start a watcher). If the failover is then aborted
/// (`-failover-abort-*`), nobody listens: the master stays fenced and every connect fails
/// (`SENTINEL_NOT_MASTER`, "being replaced by a failover") until `FENCE_MAX` (10 s), where a
/// live watcher would have lifted the fence at once (the first half of this test: the same
/// abort with a connection still open). Only an abort after the promotion's start matters
/// (`-failover-abort-slave-timeout`, after `failover-timeout`), so this bites deployments
/// whose `failover-timeout` is below 10 s (the test deployment's is 4 s).
#[test]
fn an_abort_after_the_fence_closed_every_connection_is_not_heard() {
    let _serial = serial();
    let node = RedisServer::start().expect("redis");
    let port = node.port();
    let fake = FakeSentinel::start(Some(("127.0.0.1".into(), port)));
    let driver = RedisDriver::new();
    let args = driver.parse_args(&fake.args(&node)).expect("args");
    let promoting = format!("slave 127.0.0.1:1 127.0.0.1 1 @ mymaster 127.0.0.1 {port}");
    let aborted = format!("master mymaster 127.0.0.1 {port}");
    let connect_within = |bound: Duration| {
        let deadline = Instant::now() + bound;
        loop {
            match driver.connect(&args, Duration::from_millis(500)) {
                Ok(conn) => return Ok(conn),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    };

    // With a connection left open, the watcher hears the abort and lifts the fence.
    let mut used = driver.connect(&args, TIMEOUT).expect("connect");
    let idle = driver.connect(&args, TIMEOUT).expect("connect");
    assert!(
        wait_until(Duration::from_secs(3), || fake.subscribers() == 1),
        "the watcher subscribed"
    );
    fake.publish("+failover-state-send-slaveof-noone", &promoting);
    assert!(wait_until(Duration::from_secs(2), || used.is_broken()));
    let refused = used
        .query("SET", &[Value::from("review-abort:1"), Value::from("v")])
        .expect_err("fenced");
    assert_eq!(refused.code(), Some("SENTINEL_FAILOVER"), "{refused}");
    drop(used);
    fake.publish("-failover-abort-slave-timeout", &aborted);
    let conn = connect_within(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("with a watcher alive the abort lifts the fence: {e}"));
    drop(conn);
    drop(idle);

    // The same with every connection closed by the fence, as a pool does.
    let used = driver.connect(&args, TIMEOUT).expect("connect");
    assert!(wait_until(Duration::from_secs(3), || fake.subscribers() == 1));
    fake.publish("+failover-state-send-slaveof-noone", &promoting);
    assert!(wait_until(Duration::from_secs(2), || used.is_broken()));
    drop(used);
    let retired = wait_until(Duration::from_secs(2), || fake.subscribers() == 0);
    fake.publish("-failover-abort-slave-timeout", &aborted);
    let started = Instant::now();
    let after = connect_within(Duration::from_secs(3));
    if let Err(e) = after {
        let recovered = connect_within(Duration::from_secs(12)).is_ok();
        panic!(
            "the failover was aborted, yet connects to the master it left in place are refused \
             3 s later (the watcher had retired: {retired}): {e}; a connect succeeded again \
             {:?} after the abort: {recovered}",
            started.elapsed()
        );
    }
}

/// A TCP relay to `127.0.0.1:upstream` that holds every chunk the server sends for `delay`
/// before passing it on: a link whose round trip is `delay` (the TCP connect itself stays
/// instant, so a real link of that latency is worse still).
fn slow_link(upstream: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let (mut c_in, mut s_out) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            // Each chunk leaves `delay` after it arrived (chunks in flight overlap, as on a
            // real link).
            let (mut s_in, mut c_out) = (server, client);
            let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                loop {
                    match std::io::Read::read(&mut s_in, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx
                                .send((Instant::now() + delay, buf[..n].to_vec()))
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            });
            thread::spawn(move || {
                for (due, chunk) in rx {
                    thread::sleep(due.saturating_duration_since(Instant::now()));
                    if c_out.write_all(&chunk).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

/// **`crate_bound` (new in this commit) refuses connects that fit their bound, on any link
/// slower than `connect_timeout / (replies + 1)`.** To keep a *silent* server within the
/// bound, the `redis` crate's connect is now given `total / (replies + 1)` (a quarter with a
/// password, a fifth with a db too), and the crate waits for its first setup reply under that
/// share alone. The doc says "a server that answers pays nothing for it (its replies come in
/// one round trip)", but a round trip longer than the share fails the connect, though the
/// whole connect needs two or three round trips and would finish well inside the bound
/// (before this commit the crate was given the whole bound). Here: a 150 ms link, a key with a
/// password, `connect_timeout` 0.5 s (share 125 ms); the same connect takes ~0.3 s. This is
/// every plain `host`/`port` key, not only Sentinel ones (and the Sentinels' own connects).
#[test]
fn a_connect_over_a_slow_link_is_refused_within_its_bound() {
    let _serial = serial();
    let node = RedisServer::start().expect("redis");
    let link = slow_link(node.port(), Duration::from_millis(150));
    let text = format!(
        "host=127.0.0.1 port={link} user={} password={}",
        node.user(),
        node.password()
    );
    // What the connect costs on this link, with room to spare.
    let roomy = RedisDriver::new();
    let args = roomy.parse_args(&text).expect("args");
    let started = Instant::now();
    let mut conn = roomy
        .connect(&args, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("a connect with 3 s: {e}"));
    let cost = started.elapsed();
    q(&mut conn, "PING", &[]);
    drop(conn);

    let tight = RedisDriver::new();
    let bound = Duration::from_millis(500);
    let started = Instant::now();
    let result = tight.connect(&args, bound);
    let took = started.elapsed();
    eprintln!(
        "a connect over a 150 ms link costs {cost:?}; with a {bound:?} bound: {:?} after {took:?}",
        result.as_ref().map(|_| ()).map_err(ToString::to_string)
    );
    assert!(cost < bound, "the link is too slow for this test: {cost:?}");
    if let Err(e) = result {
        panic!(
            "a connect that costs {cost:?} on this link was refused after {took:?} with a \
             {bound:?} bound: {e}"
        );
    }
}

/// **With several Sentinels the watcher heard one, and any abort lifted the fence.** Only a
/// failover's leader announces the promotion's start (`+failover-state-send-slaveof-noone`);
/// the watcher subscribed to the first Sentinel that answered, so when another led, no fence
/// went up and the old master went on acknowledging writes it then lost. Here three
/// Sentinels: the first answers the connect, the second is silent (accepts, never answers),
/// the third leads. The fence must go up as soon as the leader speaks, the silent one
/// delaying nothing. And while it is up, an abort from a Sentinel that is not the leader
/// (`-failover-abort-not-elected`: it lost the election the leader won, and may say so after
/// the leader began promoting) must not lift it; the leader's own abort must.
#[test]
fn the_leader_is_heard_past_a_silent_sentinel_and_only_its_abort_lifts_the_fence() {
    let _serial = serial();
    let node = RedisServer::start().expect("redis");
    let port = node.port();
    let first = FakeSentinel::start(Some(("127.0.0.1".into(), port)));
    let silent = pool_testservers::SilentListener::start().expect("silent listener");
    let leader = FakeSentinel::start(Some(("127.0.0.1".into(), port)));
    let driver = RedisDriver::new();
    let args = driver
        .parse_args(&format!(
            "sentinel=127.0.0.1:{},127.0.0.1:{},127.0.0.1:{} service_name=mymaster user={} \
             password={}",
            first.port,
            silent.port(),
            leader.port,
            node.user(),
            node.password()
        ))
        .expect("args");
    let mut conn = driver.connect(&args, TIMEOUT).expect("connect");
    assert!(
        wait_until(Duration::from_secs(3), || first.subscribers() == 1),
        "the watcher subscribed to the first Sentinel"
    );
    let hears_leader = wait_until(Duration::from_secs(3), || leader.subscribers() == 1);
    let promoting = format!("slave 127.0.0.1:1 127.0.0.1 1 @ mymaster 127.0.0.1 {port}");
    let aborted = format!("master mymaster 127.0.0.1 {port}");

    let started = Instant::now();
    leader.publish("+failover-state-send-slaveof-noone", &promoting);
    let fenced = wait_until(Duration::from_secs(2), || conn.is_broken());
    let took = started.elapsed();
    eprintln!(
        "the watcher subscribed to the leader: {hears_leader}; fence up: {fenced}, {took:?} \
         after the leader's announcement"
    );
    assert!(
        fenced,
        "the leader (third Sentinel) announced the promotion's start and no fence went up 2 s \
         later (the watcher subscribed to it: {hears_leader})"
    );
    assert!(
        took < Duration::from_millis(500),
        "the fence went up {took:?} after the announcement"
    );
    let refused = conn
        .query("SET", &[Value::from("review-leader:1"), Value::from("v")])
        .expect_err("fenced");
    assert_eq!(refused.code(), Some("SENTINEL_FAILOVER"), "{refused}");
    drop(conn);

    // The first Sentinel lost the election: its abort says nothing of the leader's failover.
    first.publish("-failover-abort-not-elected", &aborted);
    thread::sleep(Duration::from_millis(300));
    let err = driver
        .connect(&args, Duration::from_millis(600))
        .map(drop)
        .expect_err("a non-leader's abort must leave the old master fenced");
    assert_eq!(err.code(), Some("SENTINEL_NOT_MASTER"), "{err}");

    // The leader's abort lifts the fence: the master stays.
    leader.publish("-failover-abort-slave-timeout", &aborted);
    let lifted = wait_until(Duration::from_secs(2), || {
        driver.connect(&args, Duration::from_millis(600)).is_ok()
    });
    assert!(lifted, "the leader aborted, yet connects are still refused");
}
