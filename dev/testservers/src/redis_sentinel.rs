//! A private Redis Sentinel deployment: a master, one replica (`--replicaof`) and one or more
//! Sentinels watching them, all on free loopback ports, each in its own temporary directory.
//!
//! # Why it is built this way
//!
//! * The data nodes are ordinary [`RedisServer`]s (same users, passwords and ACL), started with
//!   `--masterauth` (a node must authenticate to its master; every node may become a replica
//!   after a failover) and `--repl-diskless-sync-delay 0` (Redis 7 otherwise waits 5 s for more
//!   replicas before a full sync, which every start and restart would pay).
//! * Each Sentinel is `redis-server <conf> --sentinel` (the installed `redis-server` 7 is a
//!   Sentinel when asked; the Debian package `redis-sentinel` only adds a service around the
//!   same binary). A Sentinel must be given a config file it can rewrite (it records its id
//!   and every change of master there), so each gets one in its own directory.
//! * The timings are small so a failover takes about a second or two, not the production
//!   defaults' half a minute: `down-after-milliseconds` 1000 (a master silent that long is
//!   subjectively down; with quorum 1 also objectively down) and `failover-timeout` 4000.
//! * A Sentinel has its own password (`requirepass`, what clients give as
//!   `sentinel_password`), different from the data nodes', so a test proves the driver keeps
//!   the two apart. Sentinels reach the nodes as `default` (`sentinel auth-pass`): they need
//!   `REPLICAOF`, `CONFIG REWRITE`, `CLIENT KILL`, which `pool_user` may not run.
//!
//! Every wait here is bounded and fails with what was last seen. Nothing here uses port 6379
//! or 26379, or the machine's own Redis configuration.
//!
//! The helpers talk to the servers with a minimal RESP client of their own (this crate has no
//! Redis client dependency, and a test's own assertions should not share code with the driver
//! under test).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::process;
use crate::redis::{RedisServer, DEFAULT_PASSWORD, PASSWORD, USER};
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

/// The service (master) name the Sentinels monitor.
const SERVICE: &str = "mymaster";
/// The Sentinels' own password (`requirepass` in their config).
const SENTINEL_PASSWORD: &str = "sentinel-secret-pw";
/// How long a master may be silent before a Sentinel calls it down.
const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel's `failover-timeout`: also the pause before a failed failover is retried (twice
/// this), so small enough that a test does not wait long for a second attempt.
const FAILOVER_TIMEOUT_MS: u64 = 4000;
/// The bound on one helper request (connect, write, read).
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A Redis master, one replica and `n` Sentinels (see the module docs). Dropping it stops
/// every process and deletes their directories.
///
/// Which node is the master changes with failovers: ask [`master_port`](Self::master_port)
/// (what the Sentinels say) or [`role`](Self::role) (what a node says of itself).
#[derive(Debug)]
pub struct RedisSentinel {
    nodes: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct SentinelProcess {
    port: u16,
    conf: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    master_port: u16,
    quorum: usize,
    sup: Supervisor,
}

impl RedisSentinel {
    /// A master, a replica and one Sentinel (quorum 1), ready: see
    /// [`wait_ready`](Self::wait_ready).
    pub fn start() -> Result<RedisSentinel, ServerError> {
        Self::start_with_sentinels(1)
    }

    /// A master, a replica and `sentinels` Sentinels (quorum: a majority of them), ready.
    pub fn start_with_sentinels(sentinels: usize) -> Result<RedisSentinel, ServerError> {
        let sentinels = sentinels.max(1);
        let master = RedisServer::start_with(&strs(&node_args(None)))?;
        let master_port = master.port();
        let replica = RedisServer::start_with(&strs(&node_args(Some(master_port))))?;
        let mut deployment = RedisSentinel {
            nodes: vec![master, replica],
            sentinels: Vec::new(),
        };
        let quorum = sentinels / 2 + 1;
        for _ in 0..sentinels {
            let sentinel = SentinelProcess::start(master_port, quorum)?;
            deployment.sentinels.push(sentinel);
        }
        deployment.wait_ready(READY_TIMEOUT)?;
        Ok(deployment)
    }

    /// The service name the Sentinels monitor (`mymaster`).
    pub fn service_name(&self) -> &str {
        SERVICE
    }

    /// The Sentinels' own password (what a client gives as `sentinel_password`).
    pub fn sentinel_password(&self) -> &str {
        SENTINEL_PASSWORD
    }

    /// The Sentinels' ports on 127.0.0.1, in start order.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The data nodes' ports on 127.0.0.1 (the first started as master, the second as replica).
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The data node on `port`.
    pub fn node(&self, port: u16) -> Option<&RedisServer> {
        self.nodes.iter().find(|n| n.port() == port)
    }

    /// `127.0.0.1:p1,127.0.0.1:p2`: every Sentinel.
    pub fn sentinel_list(&self) -> String {
        let mut out = String::new();
        for (i, port) in self.sentinel_ports().into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "127.0.0.1:{port}");
        }
        out
    }

    /// `key=value` arguments for `pool_user` through the Sentinels:
    /// `sentinel=127.0.0.1:p1 service_name=mymaster user=pool_user password=…
    /// sentinel_password=…`.
    pub fn args(&self) -> String {
        format!(
            "sentinel={} service_name={SERVICE} user={USER} password={PASSWORD} \
             sentinel_password={SENTINEL_PASSWORD}",
            self.sentinel_list()
        )
    }

    /// `key=value` arguments for the `default` user (password only) through the Sentinels.
    pub fn default_user_args(&self) -> String {
        format!(
            "sentinel={} service_name={SERVICE} password={DEFAULT_PASSWORD} \
             sentinel_password={SENTINEL_PASSWORD}",
            self.sentinel_list()
        )
    }

    /// `redis+sentinel://pool_user:redis-secret-pw@127.0.0.1:p1,…/mymaster/0?sentinel_password=…`
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://{USER}:{PASSWORD}@{}/{SERVICE}/0?sentinel_password={SENTINEL_PASSWORD}",
            self.sentinel_list()
        )
    }

    /// Plain `key=value` arguments for `pool_user` straight to the node on `port`, without
    /// the Sentinels: what a client that does not know about Sentinel uses.
    pub fn node_args(&self, port: u16) -> String {
        format!("host=127.0.0.1 port={port} user={USER} password={PASSWORD}")
    }

    /// The master's port as the first Sentinel that answers names it (`SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`).
    pub fn master_port(&self) -> Result<u16, ServerError> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match sentinel.master_addr() {
                Ok(port) => return Ok(port),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| failed("no Sentinel".into())))
    }

    /// The master's port as Sentinel number `index` (start order) names it.
    pub fn master_port_of(&self, index: usize) -> Result<u16, ServerError> {
        self.sentinels
            .get(index)
            .ok_or_else(|| failed(format!("no Sentinel number {index}")))?
            .master_addr()
    }

    /// What the node on `port` says it is (`ROLE`'s first word: `master` or `slave`).
    pub fn role(&self, port: u16) -> Result<String, ServerError> {
        match node_call(port, &["ROLE"])? {
            Resp::Array(Some(items)) => match items.first() {
                Some(Resp::Bulk(Some(role))) => Ok(role.clone()),
                other => Err(failed(format!("ROLE on {port}: unexpected {other:?}"))),
            },
            other => Err(failed(format!("ROLE on {port}: unexpected {other:?}"))),
        }
    }

    /// Runs a command on the data node on `port` as `default` and returns the reply as text
    /// (a bulk or status as is, an integer in decimal, an array's items one per line, nil as
    /// an empty string). A server error is `Err`.
    pub fn node_command(&self, port: u16, args: &[&str]) -> Result<String, ServerError> {
        node_call(port, args)?.into_text(port)
    }

    /// Runs a command on Sentinel number `index` (start order), as [`node_command`] does.
    ///
    /// [`node_command`]: Self::node_command
    pub fn sentinel_command(&self, index: usize, args: &[&str]) -> Result<String, ServerError> {
        let sentinel = self
            .sentinels
            .get(index)
            .ok_or_else(|| failed(format!("no Sentinel number {index}")))?;
        sentinel.call(args)?.into_text(sentinel.port)
    }

    /// Waits until the deployment can fail over: every running replica's link to the master
    /// is up, and every Sentinel sees the master up (flags `master` only), knows each running
    /// replica with its link `ok`, and (with several) knows the other Sentinels.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.ready() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(self.timed_out(&format!("not ready after {timeout:?}: {last}")));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn ready(&self) -> Result<(), String> {
        let master = self.master_port().map_err(|e| e.to_string())?;
        let replicas: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.is_running() && n.port() != master)
            .map(RedisServer::port)
            .collect();
        for port in &replicas {
            let info = node_call(*port, &["INFO", "replication"])
                .and_then(|r| r.into_text(*port))
                .map_err(|e| e.to_string())?;
            if !info.contains(&format!("master_port:{master}"))
                || !info.contains("master_link_status:up")
            {
                return Err(format!(
                    "the replica on {port} is not in sync with {master}"
                ));
            }
        }
        for sentinel in &self.sentinels {
            let fields = sentinel
                .call(&["SENTINEL", "MASTER", SERVICE])
                .map_err(|e| e.to_string())?
                .fields();
            let flags = fields.get("flags").cloned().unwrap_or_default();
            if flags != "master" || fields.get("port") != Some(&master.to_string()) {
                return Err(format!(
                    "Sentinel {} sees the master {master} as `{flags}`",
                    sentinel.port
                ));
            }
            let others: usize = fields
                .get("num-other-sentinels")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if others + 1 < self.sentinels.len() {
                return Err(format!(
                    "Sentinel {} knows {others} other Sentinels",
                    sentinel.port
                ));
            }
            let known = sentinel
                .call(&["SENTINEL", "REPLICAS", SERVICE])
                .map_err(|e| e.to_string())?;
            let Resp::Array(Some(entries)) = known else {
                return Err("SENTINEL REPLICAS: not an array".into());
            };
            for port in &replicas {
                let entry = entries
                    .iter()
                    .map(Resp::fields)
                    .find(|f| f.get("port") == Some(&port.to_string()));
                let Some(entry) = entry else {
                    return Err(format!(
                        "Sentinel {} does not know the replica {port} yet",
                        sentinel.port
                    ));
                };
                let flags = entry.get("flags").cloned().unwrap_or_default();
                let link = entry.get("master-link-status").cloned().unwrap_or_default();
                if flags != "slave" || link != "ok" {
                    return Err(format!(
                        "Sentinel {} sees the replica {port} as `{flags}`, link `{link}`",
                        sentinel.port
                    ));
                }
            }
        }
        Ok(())
    }

    /// SIGKILLs the current master (as the Sentinels name it); returns its port. Its process
    /// is reaped; [`restart_as_replica`](Self::restart_as_replica) brings it back.
    pub fn kill_master(&mut self) -> Result<u16, ServerError> {
        let port = self.master_port()?;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .ok_or_else(|| failed(format!("the Sentinels name {port}, which is no node here")))?;
        node.kill()?;
        Ok(port)
    }

    /// Waits until the Sentinels name a master other than `old_port` and that node answers
    /// `ROLE` as master; returns its port. Every Sentinel is asked (each must agree).
    pub fn wait_failover(&self, old_port: u16, timeout: Duration) -> Result<u16, ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen: Vec<Result<u16, ServerError>> =
                self.sentinels.iter().map(|s| s.master_addr()).collect();
            let last = match seen.as_slice() {
                [Ok(first), rest @ ..]
                    if *first != old_port
                        && rest.iter().all(|r| matches!(r, Ok(p) if p == first)) =>
                {
                    match self.role(*first) {
                        Ok(role) if role == "master" => return Ok(*first),
                        Ok(role) => format!("{first} is named master but says {role}"),
                        Err(e) => e.to_string(),
                    }
                }
                _ => format!(
                    "the Sentinels name {:?}",
                    seen.iter()
                        .map(|r| r.as_ref().map_err(ToString::to_string))
                        .collect::<Vec<_>>()
                ),
            };
            if Instant::now() >= deadline {
                return Err(self.timed_out(&format!(
                    "no failover from {old_port} within {timeout:?}: {last}"
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// A switchover: `SENTINEL FAILOVER` on the first Sentinel (retried while the Sentinel
    /// says it cannot yet, `-INPROG` or `-NOGOODSLAVE`), then [`wait_failover`]. Returns
    /// (old master, new master). The old master keeps running: the Sentinel turns it into a
    /// replica of the new one by itself, some seconds later (see
    /// [`wait_replica_of`](Self::wait_replica_of)).
    ///
    /// [`wait_failover`]: Self::wait_failover
    pub fn switchover(&self, timeout: Duration) -> Result<(u16, u16), ServerError> {
        self.switchover_via(0, timeout)
    }

    /// [`switchover`](Self::switchover) led by Sentinel number `index` (start order):
    /// `SENTINEL FAILOVER` makes the Sentinel it is sent to run the failover itself (no
    /// election), so it alone announces the promotion's start
    /// (`+failover-state-send-slaveof-noone`) and `+promoted-slave`; the others repeat
    /// `+switch-master` once its hello messages reach them.
    pub fn switchover_via(
        &self,
        index: usize,
        timeout: Duration,
    ) -> Result<(u16, u16), ServerError> {
        let sentinel = self
            .sentinels
            .get(index)
            .ok_or_else(|| failed(format!("no Sentinel number {index}")))?;
        let deadline = Instant::now() + timeout;
        let old = self.master_port()?;
        loop {
            match sentinel.call(&["SENTINEL", "FAILOVER", SERVICE])? {
                Resp::Status(_) => break,
                Resp::Error(e) if Instant::now() < deadline => {
                    let _ = e;
                    thread::sleep(Duration::from_millis(100));
                }
                other => {
                    return Err(self.timed_out(&format!("SENTINEL FAILOVER: {other:?}")));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let new = self.wait_failover(old, left)?;
        Ok((old, new))
    }

    /// Brings the node on `port` (stopped or killed) back as a replica of the current master
    /// (`--replicaof`, as an operator restarting a failed master would), and waits until its
    /// link is up. Its data is gone before the resync (nothing is persisted).
    pub fn restart_as_replica(&mut self, port: u16, timeout: Duration) -> Result<(), ServerError> {
        let master = self.master_port()?;
        if master == port {
            return Err(failed(format!(
                "the Sentinels still name {port} as the master: fail over first"
            )));
        }
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .ok_or_else(|| failed(format!("no node on {port}")))?;
        let args = node_args(Some(master));
        node.restart_with(&strs(&args))?;
        self.wait_replica_of(port, master, timeout)
    }

    /// Waits until the node on `port` is a replica of `master` with its link up.
    pub fn wait_replica_of(
        &self,
        port: u16,
        master: u16,
        timeout: Duration,
    ) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last =
                match node_call(port, &["INFO", "replication"]).and_then(|r| r.into_text(port)) {
                    Ok(info)
                        if info.contains("role:slave")
                            && info.contains(&format!("master_port:{master}"))
                            && info.contains("master_link_status:up") =>
                    {
                        return Ok(())
                    }
                    Ok(info) => info
                        .lines()
                        .filter(|l| l.starts_with("role") || l.starts_with("master_"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Err(e) => e.to_string(),
                };
            if Instant::now() >= deadline {
                return Err(self.timed_out(&format!(
                    "{port} is not a replica of {master} after {timeout:?}: {last}"
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The Sentinels' logs, for a failure message or a test's diagnostics.
    pub fn sentinel_log_tail(&self, lines: usize) -> String {
        let logs: Vec<&std::path::Path> = self.sentinels.iter().map(|s| s.log.as_path()).collect();
        process::log_tail(&logs, lines)
    }

    fn timed_out(&self, what: &str) -> ServerError {
        let mut logs: Vec<&std::path::Path> =
            self.sentinels.iter().map(|s| s.log.as_path()).collect();
        logs.extend(self.nodes.iter().map(RedisServer::log_path));
        ServerError::StartFailed {
            what: what.to_owned(),
            log_tail: process::log_tail(&logs, 25),
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        // Sentinels first, so none starts a failover while the nodes go down.
        for sentinel in &self.sentinels {
            sentinel.sup.dispose();
        }
    }
}

/// A data node's extra arguments: see the module docs; `Some(port)` makes it a replica of the
/// master on `port`.
fn node_args(master: Option<u16>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--masterauth",
        DEFAULT_PASSWORD,
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(port) = master {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), port.to_string()]);
    }
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

impl SentinelProcess {
    fn start(master_port: u16, quorum: usize) -> Result<SentinelProcess, ServerError> {
        let bin = process::find_binary("redis-server", &[], "redis-server")?;
        let workdir = WorkDir::create("redis-sentinel", None)?;
        let dir = workdir.path().to_path_buf();
        let mut sentinel = SentinelProcess {
            port: 0,
            conf: dir.join("sentinel.conf"),
            log: dir.join("sentinel.log"),
            bin,
            master_port,
            quorum,
            sup: Supervisor::new(workdir, libc::SIGTERM),
        };
        process::launch_on_free_port(
            &mut sentinel,
            |s, port| {
                s.port = port;
                s.launch()
            },
            |s| s.sup.is_running(),
        )?;
        Ok(sentinel)
    }

    fn launch(&self) -> Result<(), ServerError> {
        let dir = self
            .conf
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let conf = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             protected-mode no\n\
             daemonize no\n\
             dir \"{dir}\"\n\
             requirepass {SENTINEL_PASSWORD}\n\
             sentinel sentinel-pass {SENTINEL_PASSWORD}\n\
             sentinel monitor {SERVICE} 127.0.0.1 {master} {quorum}\n\
             sentinel auth-pass {SERVICE} {DEFAULT_PASSWORD}\n\
             sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            port = self.port,
            master = self.master_port,
            quorum = self.quorum,
        );
        std::fs::write(&self.conf, conf)
            .map_err(|e| ServerError::io(format!("writing {}", self.conf.display()), e))?;
        let (out, out2) = process::log_pair(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg(&self.conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2);
        process::prepare(&mut cmd, None, libc::SIGTERM);
        let child = process::spawn_from_keeper(cmd)
            .map_err(|e| ServerError::io(format!("spawning {}", self.bin.display()), e))?;
        self.sup.adopt(child);
        self.sup.wait_ready(
            self.port,
            READY_TIMEOUT,
            Duration::from_millis(10),
            || Ok(matches!(self.call(&["PING"]), Ok(Resp::Status(s)) if s == "PONG")),
            |what| ServerError::StartFailed {
                what,
                log_tail: process::log_tail(&[&self.log], 30),
            },
        )
    }

    fn call(&self, args: &[&str]) -> Result<Resp, ServerError> {
        call(self.port, Some(SENTINEL_PASSWORD), args)
    }

    fn master_addr(&self) -> Result<u16, ServerError> {
        match self.call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])? {
            Resp::Array(Some(items)) => match items.as_slice() {
                [_, Resp::Bulk(Some(port))] => port
                    .parse()
                    .map_err(|_| failed(format!("Sentinel {}: port `{port}`", self.port))),
                other => Err(failed(format!("Sentinel {}: {other:?}", self.port))),
            },
            other => Err(failed(format!(
                "Sentinel {} does not name a master: {other:?}",
                self.port
            ))),
        }
    }
}

/// One reply of the minimal RESP2 client.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resp {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    fn into_text(self, port: u16) -> Result<String, ServerError> {
        Ok(match self {
            Resp::Status(s) | Resp::Bulk(Some(s)) => s,
            Resp::Int(n) => n.to_string(),
            Resp::Bulk(None) | Resp::Array(None) => String::new(),
            Resp::Array(Some(items)) => {
                let mut lines = Vec::with_capacity(items.len());
                for item in items {
                    lines.push(item.into_text(port)?);
                }
                lines.join("\n")
            }
            Resp::Error(e) => return Err(failed(format!("{port} answered -{e}"))),
        })
    }

    /// A flat `[key, value, key, value…]` array (Sentinel's reports) as a map.
    fn fields(&self) -> std::collections::HashMap<String, String> {
        let mut map = std::collections::HashMap::new();
        if let Resp::Array(Some(items)) = self {
            for pair in items.chunks(2) {
                if let [Resp::Bulk(Some(k)), Resp::Bulk(Some(v))] = pair {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
        map
    }
}

fn failed(what: String) -> ServerError {
    ServerError::StartFailed {
        what,
        log_tail: String::new(),
    }
}

/// A command on a data node as `default`.
fn node_call(port: u16, args: &[&str]) -> Result<Resp, ServerError> {
    call(port, Some(DEFAULT_PASSWORD), args)
}

/// One command on a fresh connection to 127.0.0.1:`port` (after `AUTH password`), every step
/// bounded by [`IO_TIMEOUT`].
fn call(port: u16, password: Option<&str>, args: &[&str]) -> Result<Resp, ServerError> {
    let what = || format!("asking 127.0.0.1:{port} {}", args.first().unwrap_or(&""));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| ServerError::io(what(), e))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| ServerError::io(what(), e))?;
    let mut out = Vec::new();
    if let Some(password) = password {
        encode(&mut out, &["AUTH", password]);
    }
    encode(&mut out, args);
    (&stream)
        .write_all(&out)
        .map_err(|e| ServerError::io(what(), e))?;
    let mut reader = BufReader::new(&stream);
    if password.is_some() {
        if let Resp::Error(e) = parse(&mut reader).map_err(|e| ServerError::io(what(), e))? {
            return Err(failed(format!("AUTH on {port}: -{e}")));
        }
    }
    parse(&mut reader).map_err(|e| ServerError::io(what(), e))
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn parse(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || rest.parse::<i64>().map_err(|_| bad("not a number"));
    Ok(match kind {
        "+" => Resp::Status(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(number()?),
        "$" => match number()? {
            n if n < 0 => Resp::Bulk(None),
            n => {
                let mut bytes = vec![0; n as usize + 2];
                std::io::Read::read_exact(reader, &mut bytes)?;
                bytes.truncate(n as usize);
                Resp::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
        },
        "*" => match number()? {
            n if n < 0 => Resp::Array(None),
            n => {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(parse(reader)?);
                }
                Resp::Array(Some(items))
            }
        },
        _ => return Err(bad("not RESP2")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash: SIGKILL of the master, the Sentinel's failover, the old master back as a
    /// replica of the new one, ready for the next failover. A few seconds: a real failover.
    #[test]
    fn failover_after_a_crash_and_the_old_master_back_as_a_replica() {
        let mut deployment = RedisSentinel::start().expect("start");
        let first = deployment.master_port().expect("master");
        assert_eq!(deployment.role(first).expect("role"), "master");
        assert_eq!(deployment.node_ports()[0], first);
        let killed = deployment.kill_master().expect("kill");
        assert_eq!(killed, first);
        let started = Instant::now();
        let new = deployment
            .wait_failover(killed, Duration::from_secs(20))
            .expect("failover");
        eprintln!("failover after SIGKILL in {:?}", started.elapsed());
        assert_ne!(new, killed);
        deployment
            .restart_as_replica(killed, Duration::from_secs(20))
            .expect("restart as replica");
        assert_eq!(deployment.role(killed).expect("role"), "slave");
        deployment
            .wait_ready(Duration::from_secs(30))
            .expect("ready after restart");
    }

    /// A switchover (`SENTINEL FAILOVER`): the replica is promoted; the old master runs on
    /// and is turned into a replica by the Sentinel itself.
    #[test]
    fn switchover() {
        let deployment = RedisSentinel::start().expect("start");
        let started = Instant::now();
        let (old, new) = deployment
            .switchover(Duration::from_secs(20))
            .expect("switchover");
        eprintln!("switchover {old} -> {new} in {:?}", started.elapsed());
        assert_ne!(new, old);
        assert_eq!(deployment.role(new).expect("role"), "master");
    }

    #[test]
    fn resp_parses_nested_replies() {
        let mut input: &[u8] = b"*3\r\n$6\r\nmaster\r\n:42\r\n*-1\r\n";
        assert_eq!(
            parse(&mut input).expect("parse"),
            Resp::Array(Some(vec![
                Resp::Bulk(Some("master".into())),
                Resp::Int(42),
                Resp::Array(None)
            ]))
        );
    }
}
