//! Redis Sentinel: the arguments (`sentinel`, `service_name`, `sentinel_user`,
//! `sentinel_password`, or a `redis+sentinel://` URL), asking the Sentinels for the current
//! master, and following the master when it moves.
//!
//! # What the connect does
//!
//! It follows Redis' "Sentinel client spec": ask the Sentinels in turn, the one that answered
//! last first (`SENTINEL GET-MASTER-ADDR-BY-NAME <service>`), connect to the address named
//! through the normal path (TLS, `AUTH`, `SELECT`, name: everything a `host`/`port` key does),
//! then ask that node what it is (`ROLE`, or `HELLO`'s `role` where `ROLE` is denied, as it is
//! to a user without `@dangerous`). A node that says it is a replica is refused: the Sentinel
//! answered from an old view (a failover in progress), and writing there would fail with
//! `READONLY` at best. The whole stays within the connect timeout: each Sentinel gets a slice
//! (the timeout over the number of Sentinels plus one, so a silent Sentinel cannot use up
//! the master's share), the master's connect gets what is left.
//!
//! Why not the `redis` crate's own `sentinel` module (0.32): it connects to the Sentinels and
//! to the master-to-be-checked with no timeout at all (a silent Sentinel would hang the
//! connect, and so the pool's primer, for the operating system's TCP timeout), opens a second
//! connection to the master just to ask its role, and builds the master's connection itself,
//! without this driver's TLS handling and errors. The protocol is three commands; this module
//! speaks it under the driver's own bounds.
//!
//! # Following the master: why a watcher thread
//!
//! A crash is easy: the old master's connections fail with I/O errors and are closed; new
//! connects ask the Sentinels again. A *switchover* (`SENTINEL FAILOVER`, an upgrade, a
//! failover while the old master still runs) is not: the old master keeps running as a
//! master, with every pooled connection to it still working, until the Sentinel gets round to
//! turning it into a replica — about ten seconds later with Redis 7.0 (it waits
//! `4 × 2 s` after the old master reports its role, and asks replicas every 10 s). Every
//! write sent there in between is acknowledged and then thrown away when the old master
//! resyncs from the new one. No reply says so: the connection has nothing to notice.
//!
//! So the first connect of a Sentinel service starts the service's watcher: one reader thread
//! (`pool-redis-sentinel`) per Sentinel in the list, each subscribed to its Sentinel's events
//! (the spec's "subscribe to Sentinel events") and asking that Sentinel for the master again
//! after every (re)subscription, so a message missed while disconnected is made up for. Why
//! every Sentinel: only a failover's leader announces the promotion's start and
//! `+promoted-slave`; the others repeat `+switch-master` once the leader's hello messages
//! reach them (up to 2 s later), and name the old master until then. A watcher that heard one
//! Sentinel raised no fence when another led, and a switchover under load then lost ~40,000
//! acknowledged writes (`tests/sentinel_leader.rs`, three Sentinels; none since). ioredis and
//! go-redis's failover client listen to every Sentinel for the same reason. Why a thread per
//! Sentinel rather than one multiplexing them: a connect to a Sentinel that is down, or the
//! ping of a silent one, waits out its bound (up to 2 s), and the `redis` crate's blocking
//! connection offers no readiness polling across sockets; in its own thread such a wait
//! delays no other Sentinel's announcement. The readers share nothing but the service's
//! state (the master, the fence, the generation: [`Watch`]), each behind a short lock held
//! for no I/O. Every connection of the service remembers the address it was opened to
//! and the generation of the service's state it last saw; the connection checks the
//! generation (one atomic load) before each command, on `attach`, on release (`is_broken`)
//! and in the liveness check, and compares its address only when the generation moved.
//!
//! Two moments matter, and the failover's leader announces both (whichever Sentinel says it
//! first is followed; the same news from the others then changes nothing, and the generation
//! moves once per change):
//!
//! 1. `+failover-state-send-slaveof-noone`: the failover's leader is about to promote a
//!    replica. From then on the old master's acknowledgements are worthless (the replica
//!    stops following it), yet the Sentinels keep naming it until the promotion shows in the
//!    new master's `INFO`, about a second later. Measured before this was followed: a
//!    switchover under load lost ~24,000 acknowledged writes in that second. So the old
//!    master is *fenced*: its connections' commands are refused before they are sent (code
//!    `SENTINEL_FAILOVER`) and a connect that lands on it is not bound (and retried), until
//!    the promotion or the leader's abort (`-failover-abort-*` from the Sentinel that raised
//!    the fence: another's `-failover-abort-not-elected` only says it lost the election the
//!    leader won) is heard, or [`FENCE_MAX`] passed. A second of transient errors instead of
//!    a second of silent loss. Connects ask the leader first from then on.
//! 2. `+promoted-slave` / `+switch-master`: the new master is known; the old master's
//!    connections are refused (`SENTINEL_MASTER_MOVED`) and closed as they are next used,
//!    released, attached or checked. A connect that finds a new master before the watcher
//!    hears of it (`GET-MASTER-ADDR-BY-NAME` names the promoted replica as soon as it is seen
//!    promoted) moves the service on by itself. For [`STALE_VIEW`] after a move, an answer
//!    naming the address the master left (a Sentinel that has not heard yet; in a switchover
//!    that node still says it is a master) neither binds a connect nor moves the service back.
//!    The readers' own questions (after a subscription, or polling) move the service only
//!    when more than half the Sentinels name the same new address: a Sentinel that missed a
//!    failover and rejoins still naming the old master, past that window, moves nothing.
//!
//! Each reader lives while connections of the service exist, or a fence is up (the fence
//! closes the old master's connections and refuses connects to it, so no user may be left
//! when the abort that lifts it comes): it checks before every message and every 250 ms, and
//! ends once neither holds (after `pool::shutdown`, within that tick or one bounded reconnect
//! attempt); the next connect starts the readers that ended. A Sentinel that goes silent is
//! noticed by a `PING` after 5 s without traffic, and its reader connects to it anew (with a
//! growing pause, at most 2 s, while it fails), the others listening meanwhile.
//!
//! The subscription is made on the raw connection and each reply checked: a Sentinel ACL user
//! without the event channels (since Redis 7.0 a new user has none) gets `-NOPERM`, which the
//! `redis` crate's `PubSub::subscribe` would take for a success. Then the watcher logs a
//! warning (once per service) naming the channels the user needs, and that Sentinel's reader
//! polls it with `SENTINEL GET-MASTER-ADDR-BY-NAME` every 250 ms (retrying the subscription
//! every 30 s): the service stays usable and a switch is followed once a Sentinel names the
//! new master, but no fence goes up during the promotion unless another Sentinel took the
//! subscription.
//!
//! What stays out of reach: the fence goes up when the leader's announcement is read, so a
//! command sent in the moment before (the leader publishes, then sends `REPLICAOF NO ONE` on
//! its next 100 ms timer) may still be acknowledged by the old master and lost. If the leader
//! cannot be heard (its connection down, or it refused the subscription), nobody announces the
//! promotion's start: the others' `+switch-master` (up to 2 s later) or the connects' role
//! checks end the window, and writes acknowledged by the old master in it are lost, as with
//! any client. Only the Sentinels in the key's list are heard. Writes the old master
//! acknowledged before the promotion began and had not yet sent to the replica are lost too:
//! that is Redis' asynchronous replication (`WAIT`, or `min-replicas-to-write` on the server,
//! narrow it).
//!
//! # Errors that mean "not the master any more"
//!
//! On a Sentinel key, a `READONLY` reply (a write to a node that became a replica) and a
//! `MASTERDOWN` reply (a replica that lost its master and does not serve stale data) mark the
//! connection broken (kind `Broken`, the server's code kept): the pool closes it, marks the
//! parked ones suspect so each is checked (`ROLE`) before it is handed out, and the next
//! connect asks the Sentinels. On a plain `host`/`port` key the same replies stay `Query`
//! errors: such a key may point at a replica on purpose.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use redis::Value as Reply;
use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, ProtocolVersion, RedisConnectionInfo};

use crate::error::{self, Phase};
use crate::setup;
use crate::tls::{self, TlsArgs};

/// The port a Sentinel listens on unless the list says otherwise.
pub(crate) const DEFAULT_PORT: u16 = 26379;

/// Keys that only mean something with `sentinel`.
const SENTINEL_ONLY_KEYS: &[&str] = &["service_name", "sentinel_user", "sentinel_password"];

/// How often the watcher wakes to see whether it is still needed.
const TICK: Duration = Duration::from_millis(250);

/// Silence on the subscription after which the watcher pings the Sentinel.
const QUIET: Duration = Duration::from_secs(5);

/// The longest a watcher's own connect or ping may take (less when the key's connect timeout
/// is shorter).
const WATCH_BOUND: Duration = Duration::from_secs(2);

/// A Sentinel's address.
type Addr = (String, u16);

/// Checks the Sentinel keys, in place: the list is read and written back in one spelling
/// (`host:port` entries, the default port filled in, so `sentinel=h` and `sentinel=h:26379`
/// share a pool); `service_name` is required; `host`, `port` and `socket` are refused (the
/// Sentinels name the master); the Sentinel-only keys are refused without `sentinel`. No
/// message shows a value: only key names and positions.
pub(crate) fn normalise(args: &mut ConnArgs) -> Result<(), DriverError> {
    let Some(list) = args.get("sentinel") else {
        if let Some(key) = SENTINEL_ONLY_KEYS.iter().find(|k| args.get(k).is_some()) {
            return Err(invalid(format!(
                "redis `{key}` only goes with `sentinel` (the Sentinels to ask for the master): \
                 give `sentinel=host1:port1,host2:port2`, or drop `{key}`"
            )));
        }
        return Ok(());
    };
    let sentinels = parse_list(list)?;
    for key in ["host", "port", "socket"] {
        if args.get(key).is_some() {
            return Err(invalid(format!(
                "redis `{key}` cannot go with `sentinel`: the Sentinels name the master's \
                 address (in a redis+sentinel:// URL the hosts are the Sentinels)"
            )));
        }
    }
    if args.get("service_name").is_none_or(|s| s.trim().is_empty()) {
        return Err(invalid(
            "redis `sentinel` needs `service_name`: the name the Sentinels monitor the master \
             under (`sentinel monitor <name> …`), e.g. service_name=mymaster, or \
             redis+sentinel://host:26379/mymaster"
                .into(),
        ));
    }
    args.set("sentinel", render(&sentinels));
    Ok(())
}

/// `h1:p1,h2,[::1]:p3` → the addresses, the default port filled in.
fn parse_list(text: &str) -> Result<Vec<Addr>, DriverError> {
    let mut out = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        let at = index + 1;
        let bad = |what: &str| invalid(format!("entry {at} of redis `sentinel` {what}"));
        if entry.is_empty() {
            return Err(bad("is empty; expected host1:port1,host2:port2"));
        }
        let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("opens `[` without `]`"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("has text after `]` that is not `:port`")),
            }
        } else if entry.matches(':').count() > 1 {
            // A bare IPv6 address: no port can be told apart.
            (entry, None)
        } else {
            match entry.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            }
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("has no valid port"))?,
        };
        out.push((host.to_owned(), port));
    }
    Ok(out)
}

fn render(list: &[Addr]) -> String {
    list.iter()
        .map(|(host, port)| show(host, *port))
        .collect::<Vec<_>>()
        .join(",")
}

/// `host:port`, an IPv6 address in brackets.
pub(crate) fn show(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn invalid(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

/// What reaching the Sentinels takes: read from normalised arguments.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SentinelArgs {
    pub(crate) sentinels: Vec<Addr>,
    pub(crate) service: String,
    /// The Sentinels' own credentials (`sentinel_user`, `sentinel_password`): a Sentinel's
    /// `requirepass` is its own, not the data nodes'.
    user: Option<String>,
    password: Option<String>,
    /// The key's TLS settings, used for the Sentinels too (a deployment with TLS on its data
    /// nodes runs its Sentinels on `tls-port` as well).
    tls: Option<TlsArgs>,
}

impl SentinelArgs {
    /// `None` for a key without `sentinel`.
    pub(crate) fn from_args(args: &ConnArgs) -> Result<Option<SentinelArgs>, DriverError> {
        let Some(list) = args.get("sentinel") else {
            return Ok(None);
        };
        Ok(Some(SentinelArgs {
            sentinels: parse_list(list)?,
            service: args
                .get("service_name")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            user: args
                .get("sentinel_user")
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            password: args.get("sentinel_password").map(str::to_owned),
            tls: tls::from_args(args)?,
        }))
    }

    /// What tells one watched service from another: the Sentinels, the service and how they
    /// are reached. Holds the Sentinels' password: a map key only, never shown.
    pub(crate) fn identity(&self) -> String {
        format!(
            "{}\n{}\n{:?}\n{:?}\n{:?}",
            render(&self.sentinels),
            self.service,
            self.user,
            self.password,
            self.tls
        )
    }

    /// The secrets to scrub from messages about the Sentinels.
    fn secrets(&self) -> ConnArgs {
        ConnArgs::from_pairs(
            self.password
                .iter()
                .map(|p| ("sentinel_password", p.clone())),
        )
    }
}

/// The master's address, as one Sentinel named it.
pub(crate) struct Answer {
    pub(crate) addr: Addr,
    /// `host:port` of the Sentinel that answered, for messages.
    pub(crate) sentinel: String,
}

/// Asks the Sentinels for the master of the service, in `watch`'s order (the one that
/// answered last, or announced the last failover, first), each within
/// `total / (sentinels + 1)` and all before `deadline`. The error says what each Sentinel
/// answered (`Timeout` when every one timed out, else `Connect`; code
/// `SENTINEL_UNKNOWN_SERVICE` when every one answered that it does not monitor the service,
/// else `SENTINEL_UNREACHABLE`).
pub(crate) fn ask(
    s: &SentinelArgs,
    watch: &Watch,
    total: Duration,
    deadline: Instant,
    args: &ConnArgs,
) -> Result<Answer, DriverError> {
    let slice = total / (s.sentinels.len() as u32 + 1);
    let mut said = Vec::new();
    let (mut timeouts, mut unknown) = (0, 0);
    for index in watch.order() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let (host, port) = &s.sentinels[index];
        let name = show(host, *port);
        match ask_one(s, index, slice.min(left), args) {
            Ok(Some(addr)) => {
                watch.prefer(index);
                return Ok(Answer {
                    addr,
                    sentinel: name,
                });
            }
            Ok(None) => {
                unknown += 1;
                said.push(format!(
                    "{name} does not monitor `{}` (check service_name)",
                    s.service
                ));
            }
            Err(e) => {
                if e.kind() == DriverErrorKind::Timeout {
                    timeouts += 1;
                }
                said.push(format!("{name}: {}", e.message()));
            }
        }
    }
    if said.len() < s.sentinels.len() {
        said.push(format!(
            "{} not asked (the connect timeout ran out)",
            s.sentinels.len() - said.len()
        ));
    }
    let kind = if timeouts == said.len() || said.is_empty() {
        DriverErrorKind::Timeout
    } else {
        DriverErrorKind::Connect
    };
    let code = if unknown == s.sentinels.len() {
        "SENTINEL_UNKNOWN_SERVICE"
    } else {
        "SENTINEL_UNREACHABLE"
    };
    let message = format!(
        "asking the redis Sentinels for the master of `{}`: {}",
        s.service,
        said.join("; ")
    );
    Err(DriverError::new(kind, scrub(args, s, &message)).with_code(code))
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on Sentinel `index`, connect and question within
/// `bound`. `Ok(None)`: the Sentinel does not know the service.
fn ask_one(
    s: &SentinelArgs,
    index: usize,
    bound: Duration,
    args: &ConnArgs,
) -> Result<Option<Addr>, DriverError> {
    let started = Instant::now();
    let mut conn = connect_sentinel(s, index, bound, args)?;
    let left = Some(
        bound
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(1)),
    );
    let mut question = redis::cmd("SENTINEL");
    question.arg("GET-MASTER-ADDR-BY-NAME").arg(&s.service);
    let reply = conn
        .set_read_timeout(left)
        .and_then(|()| conn.set_write_timeout(left))
        .and_then(|()| conn.req_command(&question))
        .map_err(|e| error::map(&e, Phase::Connect, args, ""))?;
    master_addr(reply)
}

/// `GET-MASTER-ADDR-BY-NAME`'s answer: the address, or `None` (nil: the Sentinel does not
/// monitor the service).
fn master_addr(reply: Reply) -> Result<Option<Addr>, DriverError> {
    match reply {
        Reply::Nil => Ok(None),
        Reply::Array(items) => match items.as_slice() {
            [Reply::BulkString(ip), Reply::BulkString(port)] => {
                let ip = String::from_utf8_lossy(ip).into_owned();
                let port = std::str::from_utf8(port)
                    .ok()
                    .and_then(|p| p.parse::<u16>().ok());
                match port {
                    Some(port) => Ok(Some((ip, port))),
                    None => Err(connect_error("answered a port that is not a number")),
                }
            }
            _ => Err(connect_error("answered something that is not ip, port")),
        },
        Reply::ServerError(e) => Err(connect_error(&error::server_text(&e.into()))),
        _ => Err(connect_error("answered something that is not ip, port")),
    }
}

fn connect_error(text: &str) -> DriverError {
    DriverError::new(DriverErrorKind::Connect, text)
}

/// A connection to Sentinel `index` (its own credentials, the key's TLS), within `bound`:
/// the `redis` crate opens the socket, the driver authenticates under the same deadline (see
/// `crate::setup`). Its socket's timeouts are left at what remained of `bound`.
fn connect_sentinel(
    s: &SentinelArgs,
    index: usize,
    bound: Duration,
    args: &ConnArgs,
) -> Result<redis::Connection, DriverError> {
    let deadline = Instant::now() + bound;
    let (host, port) = s.sentinels[index].clone();
    let addr = match &s.tls {
        Some(settings) => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: settings.insecure,
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(host, port),
    };
    let info = ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            protocol: ProtocolVersion::RESP2,
            ..RedisConnectionInfo::default()
        },
    };
    let fail = |e: &redis::RedisError| error::map(e, Phase::Connect, args, "");
    let client = match &s.tls {
        Some(settings) => {
            let certificates = tls::certificates(settings)?;
            tls::ensure_provider();
            redis::Client::build_with_tls(info, certificates)
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| fail(&e))?;
    let mut conn = client
        .get_connection_with_timeout(bound)
        .map_err(|e| fail(&e))?;
    let wanted = setup::Setup {
        user: s.user.as_deref(),
        password: s.password.as_deref(),
        db: 0,
        name: None,
    };
    match setup::run(&mut conn, &wanted, deadline) {
        Ok(()) => Ok(conn),
        Err(setup::Failure::Io(e)) => Err(fail(&e)),
        Err(setup::Failure::Refused { step, text, code }) => {
            let error = connect_error(&s.secrets().scrub(&format!("{step} failed: {text}")));
            Err(match code {
                Some(code) => error.with_code(code),
                None => error,
            })
        }
    }
}

/// Scrubs the key's secrets and the Sentinels' password from `message`.
fn scrub(args: &ConnArgs, s: &SentinelArgs, message: &str) -> String {
    s.secrets().scrub(&args.scrub(message))
}

/// One Sentinel service as the driver follows it: the master's address as last seen, a
/// generation bumped whenever it moves, the connections that depend on it, and the watcher
/// thread (see the module docs). Shared by every key with the same Sentinels and service.
pub(crate) struct Watch {
    sentinels: SentinelArgs,
    /// The bound on the watcher's own connects and pings.
    bound: Duration,
    /// The master as last seen (by a connect or the watcher), and the fence of a failover in
    /// progress.
    master: Mutex<Master>,
    /// Bumped when the master moves from one address to another, and when a fence goes up
    /// or comes down.
    generation: AtomicU64,
    /// Open connections bound to this service ([`Bound`]s alive).
    users: AtomicUsize,
    /// The watcher's reader threads, one slot per Sentinel (by index in the list): `true`
    /// while that Sentinel's reader runs. Set by [`ensure_running`](Watch::ensure_running)
    /// when it spawns the reader; cleared by the reader itself, under this lock, when it
    /// retires (or by its guard if it panics). Each reader owns its Sentinel's connections
    /// (subscription, re-ask, polling) and nothing else: what it hears goes into `master` and
    /// `generation`, shared by all readers and every connection of the service.
    readers: Mutex<Vec<bool>>,
    /// The Sentinel that answered last, or that announced the last failover: asked first
    /// next time.
    preferred: AtomicUsize,
    /// Whether a refused subscription was logged at `warn` (once per watch).
    warned: AtomicBool,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("service", &self.sentinels.service)
            .field("sentinels", &render(&self.sentinels.sentinels))
            .field("master", &*lock(&self.master))
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("users", &self.users.load(Ordering::Relaxed))
            .field("readers", &*lock(&self.readers))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a fence holds at most when neither the promotion nor an abort is heard (a missed
/// message must not keep the master fenced for good).
const FENCE_MAX: Duration = Duration::from_secs(10);

/// How long after the master moved an answer naming the address it left is taken for a
/// Sentinel that has not heard of the move yet (and ignored, or not bound), rather than for a
/// move back. The Sentinels that did not lead a failover learn of it from the leader's hello
/// messages (every 2 s); until then they name the old master, which in a switchover still
/// answers `ROLE` as a master (for about ten seconds), so a connect's role check cannot tell.
/// A real move back within this time would need a second failover of the new master right
/// after the first; it is then followed from its `+switch-master`, or once this passed.
const STALE_VIEW: Duration = Duration::from_secs(5);

/// The master as the driver knows it.
#[derive(Debug, Default)]
struct Master {
    addr: Option<Addr>,
    /// The master a Sentinel has begun to replace (`+failover-state-send-slaveof-noone`): from
    /// that moment a replica is being promoted, and every write the old master acknowledges is
    /// lost when it is demoted. Commands to it are refused, and connects to it are not bound,
    /// until the promotion (`+promoted-slave`, `+switch-master`, from any Sentinel, or a
    /// connect finding the new master) or the leader's abort (`-failover-abort-*`) is heard,
    /// or [`FENCE_MAX`] passed.
    fence: Option<Fence>,
    /// The address the master last moved away from, and when (see [`STALE_VIEW`]).
    left: Option<(Addr, Instant)>,
    /// What each Sentinel (by index) named as the master when its reader last asked
    /// (`GET-MASTER-ADDR-BY-NAME` after a subscription, or polling), since the master last
    /// moved. An answer that disagrees with the master moves it only once more than half the
    /// Sentinels name the same address: one Sentinel that missed a failover (it was down, or
    /// cut off with the old master) and rejoins still naming the old master must not move
    /// the service back — and arm [`STALE_VIEW`] against the real master, refusing every
    /// connect — nor make two Sentinels' readers flip it back and forth.
    views: Vec<Option<Addr>>,
}

/// A failover in progress, as its leader announced it.
#[derive(Debug)]
struct Fence {
    /// The master being replaced.
    old: Addr,
    /// The Sentinel (index in the list) that announced the promotion's start: the failover's
    /// leader, the only one that announces it. Only its abort lifts the fence: another
    /// Sentinel's `-failover-abort-not-elected` (it lost the election the leader won, and can
    /// say so after the leader began promoting) says nothing of the leader's failover.
    by: usize,
    /// [`FENCE_MAX`] after it went up.
    until: Instant,
}

impl Master {
    /// Whether `addr` is the master and may be written to now.
    fn serves(&self, addr: &Addr) -> bool {
        self.addr.as_ref() == Some(addr) && !self.fenced(addr)
    }

    fn fenced(&self, addr: &Addr) -> bool {
        self.fence
            .as_ref()
            .is_some_and(|f| f.old == *addr && Instant::now() < f.until)
    }

    /// Whether the master moved away from `addr` less than [`STALE_VIEW`] ago: an answer
    /// naming it comes from a Sentinel that has not heard of the move yet.
    fn just_left(&self, addr: &Addr) -> bool {
        self.left
            .as_ref()
            .is_some_and(|(left, at)| left == addr && at.elapsed() < STALE_VIEW)
    }
}

impl Watch {
    /// A watch for `sentinels`, with `connect_timeout` bounding the watcher's own work (at
    /// most [`WATCH_BOUND`]).
    pub(crate) fn new(sentinels: SentinelArgs, connect_timeout: Duration) -> Watch {
        let readers = Mutex::new(vec![false; sentinels.sentinels.len()]);
        Watch {
            sentinels,
            bound: connect_timeout.min(WATCH_BOUND),
            master: Mutex::new(Master::default()),
            generation: AtomicU64::new(0),
            users: AtomicUsize::new(0),
            readers,
            preferred: AtomicUsize::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// The current generation: read before asking the Sentinels, given back to [`bind`].
    ///
    /// [`bind`]: Watch::bind
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The Sentinels' indexes, the preferred one first.
    fn order(&self) -> impl Iterator<Item = usize> {
        let n = self.sentinels.sentinels.len();
        let first = self.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| (first + i) % n)
    }

    fn prefer(&self, index: usize) {
        self.preferred.store(index, Ordering::Relaxed);
    }

    /// Binds a connection just opened to `addr` (named by the Sentinels while the generation
    /// was `asked_at`) to this service. `None` when the master moved to another address in
    /// between (the watcher saw a switch): the answer is stale, ask again; `None` while
    /// `addr` is fenced (a failover is replacing it); and `None` for the address the master
    /// left less than [`STALE_VIEW`] ago (a Sentinel that has not heard of the switch named
    /// it; in a switchover it still answers as a master). Otherwise the address becomes the
    /// known master — if it replaces another one (the watcher was not running, or missed the
    /// switch), the generation moves on and the old master's connections are closed as they
    /// are next used or checked.
    pub(crate) fn bind(self: &Arc<Self>, addr: Addr, asked_at: u64) -> Option<Bound> {
        let mut master = lock(&self.master);
        if master.fenced(&addr) || master.just_left(&addr) {
            return None;
        }
        let mut moved = None;
        if master.addr.as_ref() != Some(&addr) {
            if self.generation() != asked_at {
                return None;
            }
            moved = self.record(&mut master, addr.clone());
        }
        self.users.fetch_add(1, Ordering::SeqCst);
        let bound = Bound {
            watch: Arc::clone(self),
            addr,
            seen: Cell::new(self.generation()),
        };
        drop(master);
        self.log_move(moved, &bound.addr, "a connect");
        Some(bound)
    }

    /// Records `addr` as the master (the lock held); bumps the generation when it replaces
    /// another address, remembers the address left (see [`STALE_VIEW`]) and forgets the
    /// Sentinels' earlier answers (`views`). A fence on another address comes down: the
    /// promotion it waited for is done. Returns the address left, for the caller to log once
    /// it let go of the lock ([`log_move`](Watch::log_move)): a logging layer is user code.
    fn record(&self, master: &mut Master, addr: Addr) -> Option<Addr> {
        if master.addr.as_ref() == Some(&addr) {
            return None;
        }
        if master.fence.as_ref().is_some_and(|f| f.old != addr) {
            master.fence = None;
        }
        master.views.iter_mut().for_each(|view| *view = None);
        let old = master.addr.replace(addr)?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        master.left = Some((old.clone(), Instant::now()));
        Some(old)
    }

    /// Logs a move [`record`](Watch::record) made (`old` → `to`), with no lock held.
    fn log_move(&self, old: Option<Addr>, to: &Addr, by: &str) {
        if let Some(old) = old {
            tracing::info!(
                service = %self.sentinels.service,
                from = %show(&old.0, old.1),
                to = %show(&to.0, to.1),
                seen_by = by,
                "redis: the Sentinels moved the master; connections to the old master are \
                 closed when next used, released or checked"
            );
        }
    }

    /// Sentinel `index` announced the master at `addr` (`+promoted-slave`, `+switch-master`):
    /// whichever Sentinel says it first moves the service; the same announcement from the
    /// others finds it there already and changes nothing. The announcer knows the new master:
    /// connects ask it first.
    fn announced(&self, addr: Addr, index: usize) {
        // Before the generation moves (`record`, `Release`): a connect that reads the new
        // generation (`Acquire`) asks this Sentinel first.
        self.prefer(index);
        let mut master = lock(&self.master);
        let moved = self.record(&mut master, addr.clone());
        drop(master);
        self.log_move(moved, &addr, "a Sentinel's announcement");
    }

    /// Sentinel `index` answered `GET-MASTER-ADDR-BY-NAME` with `addr` (the re-ask after a
    /// subscription, or polling). The address the master just left is ignored: a Sentinel
    /// that has not yet heard of the switch still names it (see [`STALE_VIEW`]). Another
    /// address than the master's moves the service only once more than half the Sentinels'
    /// answers since the last move name it (see `Master::views`): a move the readers missed
    /// is made up for as the Sentinels agree on it, while one lagging Sentinel moves nothing.
    /// (An announcement moves the service at once: only a Sentinel that saw the failover
    /// announces it.)
    fn answered(&self, addr: Addr, index: usize) {
        let mut master = lock(&self.master);
        if master.just_left(&addr) {
            drop(master);
            tracing::debug!(
                service = %self.sentinels.service,
                sentinel = %self.name(index),
                named = %show(&addr.0, addr.1),
                "redis: a Sentinel still names the master the service just left; ignored"
            );
            return;
        }
        let sentinels = self.sentinels.sentinels.len();
        if master.views.len() != sentinels {
            master.views = vec![None; sentinels];
        }
        if let Some(view) = master.views.get_mut(index) {
            *view = Some(addr.clone());
        }
        let agreeing = master
            .views
            .iter()
            .flatten()
            .filter(|v| **v == addr)
            .count();
        if master.addr.is_some() && agreeing * 2 <= sentinels {
            return;
        }
        let moved = self.record(&mut master, addr.clone());
        drop(master);
        self.log_move(moved, &addr, "the Sentinels' answers");
    }

    /// Sentinel `index` began replacing the master at `old`: fence it (see [`Master::fence`]).
    /// Once: the fence already up, the same announcement (or another Sentinel's) changes
    /// nothing, and the generation moves once.
    fn fence(&self, old: Addr, index: usize) {
        let mut master = lock(&self.master);
        if master.addr.as_ref() != Some(&old) || master.fenced(&old) {
            return;
        }
        // The leader names the promoted replica first: connects ask it first.
        self.prefer(index);
        master.fence = Some(Fence {
            old: old.clone(),
            by: index,
            until: Instant::now() + FENCE_MAX,
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(master);
        tracing::info!(
            service = %self.sentinels.service,
            master = %show(&old.0, old.1),
            leader = %self.name(index),
            "redis: a Sentinel is promoting a replica; writes to the old master are refused \
             until the new one is known"
        );
    }

    /// Sentinel `index` aborted a failover of the master at `old`: if it is the failover the
    /// fence waits for (same master, same leader), the master stays and the fence comes down.
    /// Another Sentinel's abort is not the leader's: the promotion goes on.
    fn unfence(&self, old: &Addr, index: usize) {
        let mut master = lock(&self.master);
        let Some(fence) = &master.fence else {
            return;
        };
        if fence.old != *old || fence.by != index {
            let leader = fence.by;
            drop(master);
            tracing::debug!(
                service = %self.sentinels.service,
                sentinel = %self.name(index),
                leader = %self.name(leader),
                "redis: a failover abort from a Sentinel that does not lead the promotion in \
                 progress; the old master stays fenced"
            );
            return;
        }
        master.fence = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(master);
        tracing::info!(
            service = %self.sentinels.service,
            leader = %self.name(index),
            "redis: the Sentinel failover was aborted; the master stays"
        );
    }

    /// An event heard from Sentinel `index`.
    fn hear(&self, event: Event, index: usize) {
        match event {
            Event::Promoting { old } => self.fence(old, index),
            Event::Promoted(addr) => self.announced(addr, index),
            Event::Aborted { master } => self.unfence(&master, index),
        }
    }

    /// `host:port` of Sentinel `index`, for logs.
    fn name(&self, index: usize) -> String {
        self.sentinels
            .sentinels
            .get(index)
            .map_or_else(|| format!("#{index}"), |(host, port)| show(host, *port))
    }

    /// Starts the reader of every Sentinel whose reader does not run. Called after [`bind`]
    /// counted a user, so a reader deciding to end (it checks the count under the same lock)
    /// either sees that user or has already cleared its slot when this looks.
    ///
    /// [`bind`]: Watch::bind
    pub(crate) fn ensure_running(self: &Arc<Self>) {
        let mut readers = lock(&self.readers);
        for (index, running) in readers.iter_mut().enumerate() {
            if *running {
                continue;
            }
            let watch = Arc::clone(self);
            let spawned = thread::Builder::new()
                .name("pool-redis-sentinel".into())
                .spawn(move || follow(&watch, index));
            match spawned {
                Ok(_) => *running = true,
                // Connections still work; they only learn of a switchover from the other
                // Sentinels' readers, or later (from READONLY once the old master is
                // demoted). The next connect tries again.
                Err(e) => tracing::warn!(
                    service = %self.sentinels.service,
                    sentinel = %self.name(index),
                    error = %e,
                    "redis: could not start a Sentinel watcher thread"
                ),
            }
        }
    }

    /// Whether reader `index` should end (no connection depends on the watch); if so, clears
    /// its slot under the lock that [`ensure_running`](Watch::ensure_running) takes.
    ///
    /// Not while a fence is up: the connections to the fenced master were closed by it (as a
    /// pool does), and connects to it are refused, so no user is left; an abort must still be
    /// heard to lift the fence before [`FENCE_MAX`].
    fn retire(&self, index: usize) -> bool {
        if !self.idle() {
            return false;
        }
        let mut readers = lock(&self.readers);
        if self.users.load(Ordering::SeqCst) > 0 {
            return false;
        }
        if let Some(running) = readers.get_mut(index) {
            *running = false;
        }
        true
    }

    /// No connection depends on the watch, and no fence waits for the end of a failover.
    fn idle(&self) -> bool {
        if self.users.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let master = lock(&self.master);
        master
            .fence
            .as_ref()
            .is_none_or(|f| Instant::now() >= f.until)
    }

    /// One subscription to Sentinel `index`, followed until its connection fails or the
    /// reader retires. If the Sentinel refuses the subscription (`-NOPERM`), it is polled
    /// instead ([`poll`](Watch::poll)).
    ///
    /// The subscription is made on the raw connection ([`subscribe`](Watch::subscribe)), the
    /// messages are read through the `redis` crate's `PubSub`: its `get_message` may time out
    /// and be called again. (A timed-out `recv_response` makes the crate skip the next reply,
    /// as it would be the late answer to a request: on a subscription that would drop a
    /// message.)
    fn listen(&self, index: usize) -> Listen {
        let args = ConnArgs::default();
        let s = &self.sentinels;
        let mut conn = match connect_sentinel(s, index, self.bound, &args) {
            Ok(conn) => conn,
            Err(e) => {
                self.log_failure(index, e.message());
                return Listen::Failed;
            }
        };
        match self.subscribe(&mut conn, index) {
            Ok(()) => {}
            Err(Subscribe::Failed(text)) => {
                self.log_failure(index, &text);
                return Listen::Failed;
            }
            Err(Subscribe::Refused(text)) => {
                self.warn_refused(index, &text);
                drop(conn);
                return self.poll(index);
            }
        }
        tracing::debug!(
            service = %s.service,
            sentinel = %self.name(index),
            "redis: the Sentinel watcher subscribed"
        );
        // Whatever happened while nobody listened here (the other readers may have heard it).
        if let Ok(Some(addr)) = ask_one(s, index, self.bound, &args) {
            self.answered(addr, index);
        }
        let mut pubsub = conn.as_pubsub();
        self.follow_messages(&mut pubsub, index)
            .unwrap_or(Listen::Lost)
    }

    /// `SUBSCRIBE` to [`CHANNELS`] and `PSUBSCRIBE` to [`ABORTS`] on the raw connection, each
    /// reply checked: one confirmation per channel or pattern, or an error (`-NOPERM`: a
    /// Sentinel ACL user without these channels) that fails the subscription. (The `redis`
    /// crate's `PubSub::subscribe` returns `Ok` whatever the server answered.) Messages that
    /// arrive between confirmations are heard. All within the watcher's bound.
    fn subscribe(&self, conn: &mut redis::Connection, index: usize) -> Result<(), Subscribe> {
        let deadline = Instant::now() + self.bound;
        let failed = |e: redis::RedisError| Subscribe::Failed(e.to_string());
        for (kind, names) in [("subscribe", &CHANNELS[..]), ("psubscribe", &[ABORTS][..])] {
            let command = redis::cmd(&kind.to_ascii_uppercase())
                .arg(names)
                .get_packed_command();
            let left = Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            );
            conn.set_write_timeout(left)
                .and_then(|()| conn.send_packed_command(&command))
                .map_err(failed)?;
            let mut confirmed = 0;
            while confirmed < names.len() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Subscribe::Failed(format!("no answer to {kind} in time")));
                }
                conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                    .map_err(failed)?;
                let reply = conn.recv_response().map_err(failed)?;
                if let Reply::ServerError(e) = &reply {
                    let text = error::server_text(&e.clone().into());
                    return Err(Subscribe::Refused(format!(
                        "{} {}: {text}",
                        kind.to_ascii_uppercase(),
                        names.join(" ")
                    )));
                }
                if confirms(&reply, kind, names) {
                    confirmed += 1;
                } else if let Some(message) = redis::Msg::from_value(&reply) {
                    let payload: String = message.get_payload().unwrap_or_default();
                    if let Some(event) = event(
                        message.get_channel_name(),
                        &payload,
                        &self.sentinels.service,
                    ) {
                        self.hear(event, index);
                    }
                } else {
                    return Err(Subscribe::Failed(format!("an unexpected answer to {kind}")));
                }
            }
        }
        Ok(())
    }

    /// The Sentinel refused the subscription: logged at `warn` once per watch (it is a
    /// configuration to fix), at `debug` after that.
    fn warn_refused(&self, index: usize, error: &str) {
        let s = &self.sentinels;
        let sentinel = show(&s.sentinels[index].0, s.sentinels[index].1);
        let error = s.secrets().scrub(error);
        if self.warned.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                service = %s.service,
                sentinel = %sentinel,
                error = %error,
                "redis: the Sentinel refused the watcher's subscription again; polling"
            );
            return;
        }
        tracing::warn!(
            service = %s.service,
            sentinel = %sentinel,
            error = %error,
            "redis: the Sentinel refused the watcher's subscription to its events (the \
             `sentinel_user` needs the channels `&+switch-master \
             &+failover-state-send-slaveof-noone &+promoted-slave &-failover-abort-*`, or \
             `allchannels`); following the master by asking SENTINEL GET-MASTER-ADDR-BY-NAME \
             every 250 ms instead, which hears a switch only once the Sentinels name the new \
             master and cannot fence the old one while a replica is promoted"
        );
    }

    /// Follows the master without a subscription (Sentinel `index` refused it): `SENTINEL
    /// GET-MASTER-ADDR-BY-NAME` on that Sentinel every [`TICK`], on one connection, until the
    /// reader retires, the connection fails, or [`RESUBSCRIBE`] passed (the subscription is
    /// tried again: the ACL may have been fixed).
    fn poll(&self, index: usize) -> Listen {
        let args = ConnArgs::default();
        let s = &self.sentinels;
        let mut conn = match connect_sentinel(s, index, self.bound, &args) {
            Ok(conn) => conn,
            Err(e) => {
                self.log_failure(index, e.message());
                return Listen::Failed;
            }
        };
        let mut question = redis::cmd("SENTINEL");
        question.arg("GET-MASTER-ADDR-BY-NAME").arg(&s.service);
        let bound = Some(self.bound.max(Duration::from_millis(1)));
        let started = Instant::now();
        loop {
            if self.retire(index) {
                return Listen::Retired;
            }
            if started.elapsed() >= RESUBSCRIBE {
                return Listen::Lost;
            }
            let reply = conn
                .set_read_timeout(bound)
                .and_then(|()| conn.set_write_timeout(bound))
                .and_then(|()| conn.req_command(&question));
            match reply
                .map_err(|e| e.to_string())
                .and_then(|r| master_addr(r).map_err(|e| e.message().to_owned()))
            {
                Ok(Some(addr)) => self.answered(addr, index),
                Ok(None) => {}
                Err(e) => {
                    self.log_failure(index, &e);
                    return Listen::Lost;
                }
            }
            thread::sleep(TICK);
        }
    }

    fn log_failure(&self, index: usize, error: &str) {
        let s = &self.sentinels;
        tracing::debug!(
            service = %s.service,
            sentinel = %show(&s.sentinels[index].0, s.sentinels[index].1),
            error = %s.secrets().scrub(error),
            "redis: the Sentinel watcher could not subscribe"
        );
    }

    /// Reads Sentinel `index`'s event messages until the connection fails (`None`) or the
    /// reader retires. After [`QUIET`] without a message it pings (within the watcher's
    /// bound): a Sentinel that went silent is connected to anew (the other readers hear the
    /// other Sentinels meanwhile).
    fn follow_messages(&self, pubsub: &mut redis::PubSub<'_>, index: usize) -> Option<Listen> {
        pubsub.set_read_timeout(Some(TICK)).ok()?;
        let mut heard = Instant::now();
        loop {
            // Every iteration, not only on a quiet tick: a Sentinel that publishes more often
            // than every tick (other services' events) would keep the watcher alive.
            if self.retire(index) {
                return Some(Listen::Retired);
            }
            match pubsub.get_message() {
                Ok(message) => {
                    heard = Instant::now();
                    let payload: String = message.get_payload().unwrap_or_default();
                    let channel = message.get_channel_name();
                    if let Some(event) = event(channel, &payload, &self.sentinels.service) {
                        self.hear(event, index);
                    }
                }
                Err(e) if e.is_timeout() => {
                    if heard.elapsed() > QUIET {
                        pubsub.set_read_timeout(Some(self.bound)).ok()?;
                        pubsub.ping::<Reply>().ok()?;
                        pubsub.set_read_timeout(Some(TICK)).ok()?;
                        heard = Instant::now();
                    }
                }
                Err(e) => {
                    tracing::debug!(
                        service = %self.sentinels.service,
                        sentinel = %self.name(index),
                        error = %self.sentinels.secrets().scrub(&e.to_string()),
                        "redis: the Sentinel watcher lost its subscription"
                    );
                    return None;
                }
            }
        }
    }
}

/// How a subscription ended.
enum Listen {
    /// No connection depends on the watch any more: the thread ends.
    Retired,
    /// It was subscribed (or polling) and the connection failed: try again soon.
    Lost,
    /// The Sentinel could not be reached, or did not take the subscription: try again after a
    /// growing pause.
    Failed,
}

/// Why a subscription failed.
enum Subscribe {
    /// The connection failed, or timed out: try the next Sentinel.
    Failed(String),
    /// The Sentinel answered the subscription with an error (`-NOPERM`): poll instead.
    Refused(String),
}

/// Whether `reply` confirms a `kind` (`subscribe`, `psubscribe`) of one of `names`.
fn confirms(reply: &Reply, kind: &str, names: &[&str]) -> bool {
    match reply {
        Reply::Array(items) => matches!(
            items.as_slice(),
            [Reply::BulkString(k), Reply::BulkString(name), Reply::Int(_)]
                if k.as_slice() == kind.as_bytes()
                    && names.iter().any(|n| n.as_bytes() == name.as_slice())
        ),
        _ => false,
    }
}

/// How long the watcher polls before it tries to subscribe again.
const RESUBSCRIBE: Duration = Duration::from_secs(30);

/// The first pause before a new subscription after a lost one.
const FIRST_PAUSE: Duration = Duration::from_millis(100);

/// Clears a reader's slot if its thread panics, so the next connect starts a new one.
struct RunningGuard<'a>(&'a Watch, usize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            if let Some(running) = lock(&self.0.readers).get_mut(self.1) {
                *running = false;
            }
        }
    }
}

/// The reader thread of Sentinel `index`: subscribe, follow, resubscribe, until no
/// connection needs the watch. A subscription lost soon after it was made (a Sentinel that
/// takes it and then drops the connection) is retried after a growing pause, as a failed one
/// is. One per Sentinel, so a Sentinel that is down or silent (a connect or ping waiting out
/// its bound) never delays what the others announce.
fn follow(watch: &Watch, index: usize) {
    let _guard = RunningGuard(watch, index);
    let mut pause = FIRST_PAUSE / 2;
    loop {
        if watch.retire(index) {
            return;
        }
        let started = Instant::now();
        match watch.listen(index) {
            Listen::Retired => return,
            Listen::Lost if started.elapsed() >= QUIET => pause = FIRST_PAUSE,
            Listen::Lost | Listen::Failed => pause = (pause * 2).min(WATCH_BOUND),
        }
        let until = Instant::now() + pause;
        while Instant::now() < until {
            if watch.idle() {
                break;
            }
            thread::sleep(Duration::from_millis(50).min(pause));
        }
    }
}

/// The Sentinel events the watcher follows (see [`event`]).
const CHANNELS: [&str; 3] = [
    "+switch-master",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
];

/// The failover aborts (`-failover-abort-not-elected`, `-no-good-slave`, `-slave-timeout`…).
const ABORTS: &str = "-failover-abort-*";

/// What a Sentinel event means for the watched service.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// The leader is about to send `REPLICAOF NO ONE` to a replica of the master at `old`.
    Promoting { old: Addr },
    /// The master is now at this address (`+promoted-slave`, `+switch-master`).
    Promoted(Addr),
    /// The failover of the service's master at this address was aborted.
    Aborted { master: Addr },
}

/// Reads one event about `service` from its channel and payload:
///
/// * `+switch-master`: `<name> <old ip> <old port> <new ip> <new port>`;
/// * `+failover-state-send-slaveof-noone` and `+promoted-slave`: the replica, then its
///   master: `slave <ip:port> <ip> <port> @ <name> <master ip> <master port>`;
/// * `-failover-abort-*`: the master, `master <name> <ip> <port>`.
fn event(channel: &str, payload: &str, service: &str) -> Option<Event> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    let addr = |ip: &str, port: &str| Some((ip.to_owned(), port.parse().ok()?));
    match (channel, words.as_slice()) {
        ("+switch-master", [name, _, _, ip, port]) if *name == service => {
            addr(ip, port).map(Event::Promoted)
        }
        (
            "+failover-state-send-slaveof-noone",
            ["slave", _, _, _, "@", name, master_ip, master_port],
        ) if *name == service => addr(master_ip, master_port).map(|old| Event::Promoting { old }),
        ("+promoted-slave", ["slave", _, ip, port, "@", name, _, _]) if *name == service => {
            addr(ip, port).map(Event::Promoted)
        }
        (abort, ["master", name, ip, port, ..])
            if abort.starts_with("-failover-abort-") && *name == service =>
        {
            addr(ip, port).map(|master| Event::Aborted { master })
        }
        _ => None,
    }
}

/// A connection's tie to its Sentinel service: the address it was opened to and the
/// generation it last saw. Dropping it (the connection closed) uncounts a user of the watch.
pub(crate) struct Bound {
    watch: Arc<Watch>,
    addr: Addr,
    /// The generation at which `addr` was last known to be the master. A `Cell`: the check
    /// runs through `&self` (`is_broken`); a connection is used by one thread at a time.
    seen: Cell<u64>,
}

impl Bound {
    /// Whether the master moved away from this connection's node. One atomic load while the
    /// generation is unchanged; the address is compared only after a switch.
    pub(crate) fn stale(&self) -> bool {
        let now = self.watch.generation();
        if now == self.seen.get() {
            return false;
        }
        if lock(&self.watch.master).serves(&self.addr) {
            self.seen.set(now);
            false
        } else {
            true
        }
    }

    /// The error for a command refused because the master moved or is being replaced (see
    /// [`stale`](Bound::stale)).
    pub(crate) fn moved(&self) -> DriverError {
        let master = lock(&self.watch.master);
        if master.fenced(&self.addr) {
            return DriverError::new(
                DriverErrorKind::Broken,
                format!(
                    "a Sentinel is promoting a replica to replace the master of `{}` ({}): the \
                     command was not sent (the old master would acknowledge it and lose it) \
                     and the connection is closed; retry: connections go to the new master \
                     once it is promoted",
                    self.watch.sentinels.service,
                    show(&self.addr.0, self.addr.1)
                ),
            )
            .with_code("SENTINEL_FAILOVER");
        }
        let now = master
            .addr
            .as_ref()
            .map_or_else(|| "another node".to_owned(), |(h, p)| show(h, *p));
        drop(master);
        DriverError::new(
            DriverErrorKind::Broken,
            format!(
                "the Sentinels moved the master of `{}` to {now}; this connection is to the \
                 old master {}, so the command was not sent and the connection is closed (retry: \
                 the next connection goes to the new master)",
                self.watch.sentinels.service,
                show(&self.addr.0, self.addr.1)
            ),
        )
        .with_code("SENTINEL_MASTER_MOVED")
    }

    /// The service name, for messages.
    pub(crate) fn service(&self) -> &str {
        &self.watch.sentinels.service
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.watch.users.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bound")
            .field("service", &self.watch.sentinels.service)
            .field("node", &show(&self.addr.0, self.addr.1))
            .finish()
    }
}

/// The watches of one driver, by [`SentinelArgs::identity`] (which holds the Sentinels'
/// password: the map's keys are never shown, see the `Debug` below).
#[derive(Default)]
pub(crate) struct Watches(Mutex<HashMap<String, Arc<Watch>>>);

/// The watches only (each shows its service, Sentinels and master): never the map's keys.
impl fmt::Debug for Watches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let watches: Vec<Arc<Watch>> = lock(&self.0).values().cloned().collect();
        f.debug_list().entries(watches.iter()).finish()
    }
}

impl Watches {
    /// The watch of `sentinels`, made on first use.
    pub(crate) fn get(&self, sentinels: &SentinelArgs, connect_timeout: Duration) -> Arc<Watch> {
        let mut map = lock(&self.0);
        Arc::clone(
            map.entry(sentinels.identity())
                .or_insert_with(|| Arc::new(Watch::new(sentinels.clone(), connect_timeout))),
        )
    }
}

/// Whether a server error code means "this node is not the master any more": `READONLY` (a
/// write to a replica) or `MASTERDOWN` (a replica that lost its master).
pub(crate) fn demoted(code: Option<&str>) -> bool {
    matches!(code, Some("READONLY" | "MASTERDOWN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_read_in_every_spelling() {
        assert_eq!(
            parse_list("h1:1,h2, [::1]:3,::1,[fe80::1]").expect("list"),
            vec![
                ("h1".to_owned(), 1),
                ("h2".to_owned(), DEFAULT_PORT),
                ("::1".to_owned(), 3),
                ("::1".to_owned(), DEFAULT_PORT),
                ("fe80::1".to_owned(), DEFAULT_PORT),
            ]
        );
        assert_eq!(
            render(&parse_list("h1,[::1]:3").expect("list")),
            "h1:26379,[::1]:3"
        );
        for bad in ["", "h1,", ":1", "h:0", "h:x", "[::1", "[::1]x"] {
            let e = parse_list(bad).expect_err(bad);
            assert_eq!(e.kind(), DriverErrorKind::InvalidArgs);
            assert!(e.message().contains("entry"), "{}", e.message());
        }
    }

    #[test]
    fn events_are_read_for_the_service_only() {
        let promoted = |ip: &str, port| Some(Event::Promoted((ip.to_owned(), port)));
        assert_eq!(
            event(
                "+switch-master",
                "mymaster 10.0.0.1 6379 10.0.0.2 6380",
                "mymaster"
            ),
            promoted("10.0.0.2", 6380)
        );
        assert_eq!(
            event(
                "+switch-master",
                "other 10.0.0.1 6379 10.0.0.2 6380",
                "mymaster"
            ),
            None
        );
        assert_eq!(event("+switch-master", "mymaster x", "mymaster"), None);
        assert_eq!(
            event("+switch-master", "mymaster a 1 b port", "mymaster"),
            None
        );
        let replica = "slave 10.0.0.2:6380 10.0.0.2 6380 @ mymaster 10.0.0.1 6379";
        assert_eq!(
            event("+failover-state-send-slaveof-noone", replica, "mymaster"),
            Some(Event::Promoting {
                old: ("10.0.0.1".to_owned(), 6379)
            })
        );
        assert_eq!(
            event("+promoted-slave", replica, "mymaster"),
            promoted("10.0.0.2", 6380)
        );
        assert_eq!(event("+promoted-slave", replica, "other"), None);
        assert_eq!(
            event(
                "-failover-abort-no-good-slave",
                "master mymaster 10.0.0.1 6379",
                "mymaster"
            ),
            Some(Event::Aborted {
                master: ("10.0.0.1".to_owned(), 6379)
            })
        );
        assert_eq!(
            event(
                "-failover-abort-no-good-slave",
                "master other 10.0.0.1 6379",
                "mymaster"
            ),
            None
        );
    }

    /// A fence refuses the old master's connections and binds, until the promotion or an
    /// abort is heard.
    #[test]
    fn fences() {
        let watch = watch();
        let a = ("a".to_owned(), 1);
        let b = ("b".to_owned(), 2);
        let on_a = watch.bind(a.clone(), watch.generation()).expect("bind");
        watch.hear(Event::Promoting { old: a.clone() }, 0);
        assert!(on_a.stale());
        assert_eq!(on_a.moved().code(), Some("SENTINEL_FAILOVER"));
        assert!(
            watch.bind(a.clone(), watch.generation()).is_none(),
            "fenced"
        );
        watch.hear(Event::Aborted { master: a.clone() }, 0);
        assert!(!on_a.stale(), "the failover was aborted: the master stays");
        watch.hear(Event::Promoting { old: a.clone() }, 0);
        watch.hear(Event::Promoted(b.clone()), 0);
        assert!(on_a.stale());
        assert_eq!(on_a.moved().code(), Some("SENTINEL_MASTER_MOVED"));
        assert!(watch.bind(b, watch.generation()).is_some());
        assert!(
            lock(&watch.master).fence.is_none(),
            "the promotion lifts the fence"
        );
    }

    /// The watcher stays while a fence is up, even with no connection left (the fence closed
    /// them): the abort that lifts it must be heard.
    #[test]
    fn a_fence_keeps_the_watcher() {
        let watch = watch();
        let a = ("a".to_owned(), 1);
        let on_a = watch.bind(a.clone(), watch.generation()).expect("bind");
        watch.hear(Event::Promoting { old: a.clone() }, 0);
        drop(on_a);
        assert!(!watch.retire(0), "fenced: the watcher stays");
        watch.hear(Event::Aborted { master: a }, 0);
        assert!(watch.retire(0), "no fence, no user: it retires");
    }

    /// Every Sentinel's readers feed one state: the same event from several Sentinels raises
    /// one fence and moves the generation once per real change; only the leader's abort
    /// lifts the fence.
    #[test]
    fn events_from_several_sentinels_are_heard_once() {
        let watch = watch_of(3);
        let a = ("a".to_owned(), 1);
        let b = ("b".to_owned(), 2);
        let on_a = watch.bind(a.clone(), watch.generation()).expect("bind");
        let start = watch.generation();
        // The leader (Sentinel 2) announces the promotion's start; a repeat changes nothing.
        watch.hear(Event::Promoting { old: a.clone() }, 2);
        watch.hear(Event::Promoting { old: a.clone() }, 2);
        watch.hear(Event::Promoting { old: a.clone() }, 1);
        assert_eq!(watch.generation(), start + 1, "one fence");
        assert_eq!(on_a.moved().code(), Some("SENTINEL_FAILOVER"));
        assert_eq!(watch.preferred.load(Ordering::Relaxed), 2, "ask the leader");
        // Another Sentinel lost the election and says so: the leader's failover goes on.
        watch.hear(Event::Aborted { master: a.clone() }, 0);
        assert!(on_a.stale(), "a non-leader's abort leaves the fence");
        assert!(watch.bind(a.clone(), watch.generation()).is_none());
        assert_eq!(watch.generation(), start + 1);
        // The promotion, from the leader and then from every Sentinel: one move.
        watch.hear(Event::Promoted(b.clone()), 2);
        assert_eq!(watch.generation(), start + 2);
        for index in 0..3 {
            watch.hear(Event::Promoted(b.clone()), index);
        }
        watch.hear(Event::Promoting { old: a.clone() }, 0);
        assert_eq!(watch.generation(), start + 2, "repeats move nothing");
        assert!(lock(&watch.master).fence.is_none());
        assert_eq!(on_a.moved().code(), Some("SENTINEL_MASTER_MOVED"));
        // A late abort of the finished failover changes nothing either.
        watch.hear(Event::Aborted { master: a.clone() }, 2);
        assert_eq!(watch.generation(), start + 2);

        // The leader's abort does lift its fence.
        let on_b = watch.bind(b.clone(), watch.generation()).expect("bind b");
        watch.hear(Event::Promoting { old: b.clone() }, 1);
        assert!(on_b.stale());
        watch.hear(Event::Aborted { master: b.clone() }, 2);
        assert!(on_b.stale(), "not the leader");
        watch.hear(Event::Aborted { master: b.clone() }, 1);
        assert!(!on_b.stale(), "the leader aborted: the master stays");
    }

    /// After a switch, a Sentinel that has not heard of it still names the old master: its
    /// answer neither moves the service back nor binds a connection there.
    #[test]
    fn a_lagging_sentinel_does_not_move_the_master_back() {
        let watch = watch_of(3);
        let a = ("a".to_owned(), 1);
        let b = ("b".to_owned(), 2);
        let c = ("c".to_owned(), 3);
        let _on_a = watch.bind(a.clone(), watch.generation()).expect("bind");
        watch.hear(Event::Promoted(b.clone()), 2);
        let after = watch.generation();
        watch.answered(a.clone(), 0);
        assert_eq!(lock(&watch.master).addr, Some(b.clone()), "not moved back");
        assert_eq!(watch.generation(), after);
        assert!(
            watch.bind(a.clone(), watch.generation()).is_none(),
            "a connect told the old master by a lagging Sentinel is not bound"
        );
        // Another address is a move the watcher missed: followed once most Sentinels name
        // it, not on one Sentinel's word.
        watch.answered(c.clone(), 1);
        assert_eq!(lock(&watch.master).addr, Some(b.clone()), "one of three");
        watch.answered(c.clone(), 0);
        assert_eq!(lock(&watch.master).addr, Some(c));
        // An announcement is followed whatever it names.
        watch.hear(Event::Promoted(b.clone()), 1);
        assert_eq!(lock(&watch.master).addr, Some(b));
    }

    /// Past [`STALE_VIEW`], one Sentinel that missed a failover (it was down) and rejoins
    /// naming the old master neither moves the service back nor, with another Sentinel
    /// answering the real master, makes it flip (the polling readers of a `-NOPERM` user
    /// ask every 250 ms).
    #[test]
    fn one_lagging_sentinel_never_moves_the_master() {
        let watch = watch_of(3);
        let a = ("a".to_owned(), 1);
        let b = ("b".to_owned(), 2);
        let _on_b = watch.bind(b.clone(), watch.generation()).expect("bind b");
        lock(&watch.master).left = None; // the move to b is older than STALE_VIEW
        let at = watch.generation();
        for _ in 0..3 {
            watch.answered(a.clone(), 0);
            watch.answered(b.clone(), 1);
            assert_eq!(lock(&watch.master).addr, Some(b.clone()));
            assert_eq!(watch.generation(), at);
        }
        assert!(watch.bind(b.clone(), watch.generation()).is_some());
    }

    #[test]
    fn confirmations_are_told_from_refusals() {
        let bulk = |s: &str| Reply::BulkString(s.as_bytes().to_vec());
        let ok = Reply::Array(vec![
            bulk("subscribe"),
            bulk("+switch-master"),
            Reply::Int(1),
        ]);
        assert!(confirms(&ok, "subscribe", &CHANNELS));
        assert!(!confirms(&ok, "psubscribe", &[ABORTS]));
        let message = Reply::Array(vec![bulk("message"), bulk("+switch-master"), bulk("x")]);
        assert!(!confirms(&message, "subscribe", &CHANNELS));
    }

    fn watch() -> Arc<Watch> {
        watch_of(1)
    }

    fn watch_of(sentinels: u16) -> Arc<Watch> {
        let s = SentinelArgs {
            sentinels: (1..=sentinels).map(|port| ("h".into(), port)).collect(),
            service: "svc".into(),
            user: None,
            password: Some("sentinel-pw".into()),
            tls: None,
        };
        Arc::new(Watch::new(s, Duration::from_secs(1)))
    }

    /// A connection goes stale when the master moves away from its node, and only then; a
    /// connect whose answer predates a switch is not bound.
    #[test]
    fn generations() {
        let watch = watch();
        let a = ("a".to_owned(), 1);
        let b = ("b".to_owned(), 2);
        let asked = watch.generation();
        let on_a = watch.bind(a.clone(), asked).expect("first bind");
        assert!(!on_a.stale());
        assert_eq!(watch.users.load(Ordering::SeqCst), 1);
        watch.answered(a.clone(), 0);
        assert!(!on_a.stale(), "the same master again is no move");
        watch.answered(b.clone(), 0);
        assert!(on_a.stale());
        assert_eq!(on_a.moved().code(), Some("SENTINEL_MASTER_MOVED"));
        assert!(
            on_a.moved().message().contains("b:2"),
            "{}",
            on_a.moved().message()
        );
        // An answer naming `a` from before the switch must not bind.
        assert!(watch.bind(a.clone(), asked).is_none());
        let on_b = watch.bind(b.clone(), watch.generation()).expect("bind b");
        assert!(!on_b.stale());
        drop(on_a);
        drop(on_b);
        assert_eq!(watch.users.load(Ordering::SeqCst), 0);
        *lock(&watch.readers) = vec![true];
        assert!(watch.retire(0));
        assert_eq!(*lock(&watch.readers), vec![false]);
    }

    #[test]
    fn debug_shows_no_password() {
        let watch = watch();
        let shown = format!("{watch:?}");
        assert!(!shown.contains("sentinel-pw"), "{shown}");
        let bound = watch.bind(("a".into(), 1), 0).expect("bind");
        assert!(!format!("{bound:?}").contains("sentinel-pw"));
    }
}
