//! A PostgreSQL primary and a streaming standby on this machine, for failover tests: kill the
//! primary and promote the standby (a crash failover), or stop it cleanly, promote, and let the
//! old primary follow the new one (a switchover).
//!
//! # How the pair is built
//!
//! Both nodes are [`PgServer`]s, each with its own temporary directory, loopback port and unix
//! socket directory (never the system's port 5432 or its sockets), so everything a test knows
//! about one server (`psql`, `port`, `trust_args`, the log) works on either node.
//!
//! 1. The first node (`node_a`) is a plain [`PgServer::start`], given the replication settings
//!    ([`REPLICATION_CONF`]) and `replication` lines in `pg_hba.conf`, and restarted
//!    (`wal_level` only changes at a restart).
//! 2. The second node (`node_b`) is `pg_basebackup -R -X stream` of the first over TCP: a copy
//!    of its data directory (roles, database and settings included) with `standby.signal` and a
//!    `primary_conninfo` pointing at the first. Its own socket directory and `cluster_name`
//!    are appended to the copied `postgresql.conf`, and it starts on a port of its own.
//! 3. For [`Replication::Synchronous`], the primary names the standby in
//!    `synchronous_standby_names` (`ALTER SYSTEM`, so only the primary's own
//!    `postgresql.auto.conf` says it); then [`PgReplication::start`] waits until
//!    `pg_stat_replication` shows the standby streaming (and `sync`).
//!
//! Each node's `cluster_name` is its name, and the walreceiver uses `cluster_name` as its
//! `application_name`: that is the name `synchronous_standby_names` and `pg_stat_replication`
//! see, whichever node is the standby.
//!
//! # Durability, and what a lost write means
//!
//! The test servers run with `fsync = off` for speed. That loses nothing when a *process* is
//! killed (written WAL sits in the kernel's page cache, which survives), only when the machine
//! dies. But [`PgServer`] also sets `synchronous_commit = off`, which would let a commit be
//! acknowledged before its WAL is even written or sent: the pair turns it back on, so an
//! acknowledged commit is in the primary's WAL, and with synchronous replication also flushed
//! by the standby. After a crash failover a write the client saw committed and the new primary
//! lacks is then lost by the replication mode (asynchronous), never by the test setup.
//!
//! # Synchronous replication has a price
//!
//! With [`Replication::Synchronous`], a commit on the primary waits until the named standby
//! confirms it. While the standby is stopped ([`PgReplication::stop_standby`]) every commit
//! waits, as PostgreSQL does. A promoted node must not wait for a standby that is not there: a
//! promotion first removes any `synchronous_standby_names` the node itself still carries from
//! an earlier term as primary, and only [`PgReplication::rejoin_old_primary_as_standby`] names
//! a synchronous standby again, once that standby streams (what an HA manager such as Patroni
//! does too).
//!
//! # Bounds and cleanup
//!
//! Every wait here has a deadline ([`WAIT`]), and every helper tool (`pg_basebackup`,
//! `pg_ctl promote`) is killed after [`TOOL_TIMEOUT`]. Dropping the pair stops both nodes
//! (the standby first, so the primary's shutdown does not wait for it) and deletes their
//! directories; a node that was killed and never started again leaves its System V
//! shared-memory segment behind (a SIGKILLed postmaster cannot remove it), which the drop
//! removes too.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::pg::{self, PgServer};
use crate::process::{self, ServiceUser};
use crate::workdir::WorkDir;

/// The nodes' names: their `cluster_name`, and the `application_name` their walreceiver
/// shows the primary.
const NODE_NAMES: [&str; 2] = ["node_a", "node_b"];

/// Bound on each wait: until a node streams, is promoted, has replayed.
const WAIT: Duration = Duration::from_secs(30);

/// Bound on one run of a helper tool (`pg_basebackup`, `pg_ctl promote`).
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the first node gets on top of [`PgServer`]'s settings, and every copy inherits:
///
/// * `wal_level`, `max_wal_senders`, `max_replication_slots`: what streaming needs (the
///   PostgreSQL 15 defaults, written out so the pair does not depend on them).
/// * `wal_keep_size`: a standby stopped for a while (or the old primary rejoining) finds the
///   WAL it missed still on the primary, without a replication slot to clean up.
/// * `hot_standby`: a standby accepts read-only sessions (the read key's target).
/// * `synchronous_commit = on`: see the module docs (durability).
/// * `wal_retrieve_retry_interval`: a standby whose primary went away retries every 100 ms, not
///   every 5 s, so a rejoin or a restarted primary is picked up at once.
const REPLICATION_CONF: &str = "
# pool-testservers: replication
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = '128MB'
hot_standby = on
synchronous_commit = on
wal_retrieve_retry_interval = '100ms'
";

/// Replication connections (the standby's walreceiver, `pg_basebackup`), trusted like all
/// else: the `all` database of the other lines does not cover them.
const REPLICATION_HBA: &str = "\
local replication all trust
host  replication all 127.0.0.1/32 trust
";

/// Whether the primary waits for the standby at each commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `synchronous_standby_names` names the standby, `synchronous_commit = on`: a commit is
    /// acknowledged once the standby has flushed it, so a failover loses no acknowledged write.
    Synchronous,
    /// The standby follows as fast as it can; a crash of the primary may lose the commits it
    /// had not yet sent.
    Asynchronous,
}

/// A PostgreSQL primary and a streaming standby, each a [`PgServer`] on its own port; which
/// node is the primary changes with [`promote_standby`](Self::promote_standby). Dropping it
/// stops both and deletes their files.
///
/// A crash failover:
///
/// ```no_run
/// use pool_testservers::{PgReplication, Replication};
/// let mut pair = PgReplication::start(Replication::Synchronous)?;
/// let key = format!("{} target_session_attrs=read-write", pair.hosts_args());
/// # let _ = key;
/// pair.kill_primary()?;
/// pair.promote_standby()?;
/// assert_eq!(pair.primary().psql("SELECT pg_is_in_recovery()")?, "f");
/// # Ok::<(), pool_testservers::ServerError>(())
/// ```
///
/// A switchover: [`stop_primary`](Self::stop_primary), [`promote_standby`](Self::promote_standby),
/// [`rejoin_old_primary_as_standby`](Self::rejoin_old_primary_as_standby) (or all three:
/// [`switchover`](Self::switchover)).
#[derive(Debug)]
pub struct PgReplication {
    nodes: [PgServer; 2],
    /// Index of the primary in `nodes`; the other node is the standby (or, after a failover,
    /// the old primary).
    primary: usize,
    replication: Replication,
    /// Whether a node's own `postgresql.auto.conf` names a synchronous standby: a node that
    /// was a synchronous primary once carries it into its next term.
    names_sync_standby: [bool; 2],
    /// Whether a node was killed (SIGKILL) and not started since: it cannot simply follow a
    /// new primary (its WAL may go beyond the point where the new timeline forked).
    crashed: [bool; 2],
    user: Option<ServiceUser>,
}

impl PgReplication {
    /// Starts a primary (`node_a`) and a standby (`node_b`) copied from it, and returns once
    /// the standby streams (as the synchronous standby for
    /// [`Replication::Synchronous`]).
    pub fn start(replication: Replication) -> Result<PgReplication, ServerError> {
        let user = process::service_user("postgres")?;
        let mut first = PgServer::start()?;
        append(&first.data_dir().join("pg_hba.conf"), REPLICATION_HBA)?;
        let settings = format!("{REPLICATION_CONF}{}", node_settings(0, first.socket_dir()));
        append(&first.data_dir().join("postgresql.conf"), &settings)?;
        first.restart()?;
        let second = copy_as_standby(&first, 1, user)?;
        let mut pair = PgReplication {
            nodes: [first, second],
            primary: 0,
            replication,
            names_sync_standby: [false; 2],
            crashed: [false; 2],
            user,
        };
        if replication == Replication::Synchronous {
            pair.name_sync_standby(0, Some(1))?;
        }
        pair.wait_streaming()?;
        Ok(pair)
    }

    /// Synchronous or asynchronous, as started.
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// The primary: the first node, or the one promoted last.
    pub fn primary(&self) -> &PgServer {
        &self.nodes[self.primary]
    }

    /// The other node: the standby, or after a failover the old primary (down, or following
    /// the new one after [`rejoin_old_primary_as_standby`](Self::rejoin_old_primary_as_standby)).
    pub fn standby(&self) -> &PgServer {
        &self.nodes[self.standby_index()]
    }

    /// A node by its place in the host lists ([`hosts_args`](Self::hosts_args)): 0 is `node_a`
    /// (the first primary), 1 is `node_b`.
    ///
    /// # Panics
    ///
    /// If `index` is not 0 or 1.
    pub fn node(&self, index: usize) -> &PgServer {
        &self.nodes[index]
    }

    /// The primary's place in the host lists (0 or 1).
    pub fn primary_index(&self) -> usize {
        self.primary
    }

    /// The standby's (other node's) place in the host lists.
    pub fn standby_index(&self) -> usize {
        1 - self.primary
    }

    /// A node's name: its `cluster_name`, and its `application_name` in the primary's
    /// `pg_stat_replication` while it streams.
    pub fn node_name(&self, index: usize) -> &'static str {
        NODE_NAMES[index]
    }

    /// libpq `key=value` arguments for `pool_trust` over both nodes, in node order (which does
    /// not change with the roles): `host=127.0.0.1,127.0.0.1 port=P1,P2 user=pool_trust
    /// dbname=pool_test`. Add `target_session_attrs=...` to pick a role.
    pub fn hosts_args(&self) -> String {
        let [a, b] = &self.nodes;
        format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user={} dbname={}",
            a.port(),
            b.port(),
            a.trust_user(),
            a.database()
        )
    }

    /// The same host list as a URL: `postgres://pool_trust@127.0.0.1:P1,127.0.0.1:P2/pool_test`.
    pub fn hosts_url(&self) -> String {
        let [a, b] = &self.nodes;
        format!(
            "postgres://{}@127.0.0.1:{},127.0.0.1:{}/{}",
            a.trust_user(),
            a.port(),
            b.port(),
            a.database()
        )
    }

    /// `key=value` arguments for one node alone ([`PgServer::trust_args`]).
    pub fn node_args(&self, index: usize) -> String {
        self.nodes[index].trust_args()
    }

    /// `key=value` arguments for the current primary alone.
    pub fn primary_args(&self) -> String {
        self.primary().trust_args()
    }

    /// `key=value` arguments for the current standby alone.
    pub fn standby_args(&self) -> String {
        self.standby().trust_args()
    }

    /// Waits until the primary's `pg_stat_replication` shows the standby `streaming` (and, for
    /// [`Replication::Synchronous`], with `sync_state = 'sync'`), at most [`WAIT`].
    pub fn wait_streaming(&self) -> Result<(), ServerError> {
        let name = NODE_NAMES[self.standby_index()];
        let want = match self.replication {
            Replication::Synchronous => "streaming|sync",
            Replication::Asynchronous => "streaming|async",
        };
        let sql = format!(
            "SELECT state, sync_state FROM pg_catalog.pg_stat_replication \
             WHERE application_name = '{name}'"
        );
        self.wait_for(&format!("{name} streaming ({want})"), || {
            Ok(self.primary().psql(&sql)? == want)
        })
    }

    /// Waits until the standby has replayed all the WAL the primary has written so far (a
    /// table just created on the primary is then there on the standby), at most [`WAIT`].
    pub fn wait_caught_up(&self) -> Result<(), ServerError> {
        let lsn = self
            .primary()
            .psql("SELECT pg_catalog.pg_current_wal_lsn()")?;
        let sql = format!("SELECT pg_catalog.pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        self.wait_for(&format!("the standby replaying up to {lsn}"), || {
            Ok(self.standby().psql(&sql)? == "t")
        })
    }

    /// A crash: SIGKILL to the primary's postmaster and all its backends. Its sessions end
    /// without a word (clients see the connection reset); the standby's walreceiver loses its
    /// upstream and keeps retrying. No-op if it is not running.
    pub fn kill_primary(&mut self) -> Result<(), ServerError> {
        let p = self.primary;
        if self.nodes[p].is_running() {
            self.crashed[p] = true;
        }
        self.nodes[p].kill()
    }

    /// A clean stop of the primary (fast shutdown, as `pg_ctl stop -m fast`): its sessions are
    /// terminated (SQLSTATE 57P01), and before it exits it sends all its WAL, up to the
    /// shutdown checkpoint, to the streaming standby and waits for the standby to flush it. So
    /// the standby then has everything, and after [`promote_standby`](Self::promote_standby)
    /// the old primary can follow the new one
    /// ([`rejoin_old_primary_as_standby`](Self::rejoin_old_primary_as_standby)).
    pub fn stop_primary(&mut self) -> Result<(), ServerError> {
        let p = self.primary;
        self.nodes[p].stop()
    }

    /// Promotes the standby (`pg_ctl promote`) and returns once it accepts writes
    /// (`pg_is_in_recovery()` is false); it is then [`primary`](Self::primary). It starts a new
    /// timeline; the old primary, if it still runs, is not touched (stop or kill it first, or
    /// two primaries take writes).
    ///
    /// If this node named a synchronous standby in an earlier term as primary, that is removed
    /// first (see the module docs): a new primary must not wait for a standby that is not
    /// there.
    pub fn promote_standby(&mut self) -> Result<(), ServerError> {
        let s = self.standby_index();
        if !self.nodes[s].is_running() {
            return Err(misuse(
                "promoting the standby",
                format!("{} does not run", NODE_NAMES[s]),
            ));
        }
        if self.names_sync_standby[s] {
            self.name_sync_standby(s, None)?;
        }
        let node = &self.nodes[s];
        let mut promote = Command::new(pg::find_pg_binary("pg_ctl")?);
        pg::clean_env(&mut promote);
        promote.arg("promote").arg("-D").arg(node.data_dir()).args([
            "-w",
            "-t",
            &WAIT.as_secs().to_string(),
        ]);
        run_tool(promote, self.user, TOOL_TIMEOUT)?;
        self.wait_for(&format!("{} out of recovery", NODE_NAMES[s]), || {
            Ok(node.psql("SELECT pg_catalog.pg_is_in_recovery()")? == "f")
        })?;
        self.primary = s;
        Ok(())
    }

    /// The second half of a switchover: the old primary, stopped cleanly
    /// ([`stop_primary`](Self::stop_primary)) before the promotion, starts again on its own
    /// port as a standby of the new primary (`standby.signal`, `primary_conninfo` naming the
    /// new primary, `recovery_target_timeline = 'latest'` so it follows the promotion's new
    /// timeline), and this returns once it streams (as the synchronous standby for
    /// [`Replication::Synchronous`]: the new primary names it only now).
    ///
    /// A node that was killed is refused: its WAL may go beyond the point where the new
    /// primary's timeline forked, and such a node needs `pg_rewind` first.
    pub fn rejoin_old_primary_as_standby(&mut self) -> Result<(), ServerError> {
        let old = self.standby_index();
        let name = NODE_NAMES[old];
        if self.nodes[old].is_running() {
            return Err(misuse(
                "rejoining the old primary",
                format!("{name} still runs: stop it (stop_primary) before the promotion"),
            ));
        }
        if self.crashed[old] {
            return Err(misuse(
                "rejoining the old primary",
                format!("{name} was killed, and may have WAL the new primary lacks (pg_rewind)"),
            ));
        }
        let primary = self.primary();
        let data = self.nodes[old].data_dir().to_path_buf();
        let signal = data.join("standby.signal");
        fs::write(&signal, "")
            .map_err(|e| ServerError::io(format!("writing {}", signal.display()), e))?;
        if let Some(u) = self.user {
            std::os::unix::fs::chown(&signal, Some(u.uid), Some(u.gid))
                .map_err(|e| ServerError::io(format!("chown {}", signal.display()), e))?;
        }
        // postgresql.auto.conf is read last, so these win over anything before them (a
        // former standby's own primary_conninfo, written there by pg_basebackup -R).
        append(
            &data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user={} application_name={name}'\n\
                 recovery_target_timeline = 'latest'\n",
                primary.port(),
                primary.trust_user()
            ),
        )?;
        self.nodes[old].restart()?;
        if self.replication == Replication::Synchronous {
            // Streaming first, then named: commits on the new primary never wait for it
            // while it catches up.
            self.wait_for_state(old, "streaming")?;
            self.name_sync_standby(self.primary, Some(old))?;
        }
        self.wait_streaming()
    }

    /// A whole switchover: [`stop_primary`](Self::stop_primary),
    /// [`promote_standby`](Self::promote_standby),
    /// [`rejoin_old_primary_as_standby`](Self::rejoin_old_primary_as_standby).
    pub fn switchover(&mut self) -> Result<(), ServerError> {
        self.stop_primary()?;
        self.promote_standby()?;
        self.rejoin_old_primary_as_standby()
    }

    /// A clean stop of the standby (fast shutdown: its sessions are terminated). With
    /// [`Replication::Synchronous`], commits on the primary wait until it is back.
    pub fn stop_standby(&mut self) -> Result<(), ServerError> {
        let s = self.standby_index();
        self.nodes[s].stop()
    }

    /// Starts the standby again on its port, and returns once it streams.
    pub fn start_standby(&mut self) -> Result<(), ServerError> {
        let s = self.standby_index();
        self.nodes[s].restart()?;
        self.crashed[s] = false;
        self.wait_streaming()
    }

    /// Sets (`Some(standby)`) or removes (`None`) `synchronous_standby_names` in node `on`'s
    /// `postgresql.auto.conf`, and reloads it. `ALTER SYSTEM` is allowed on a standby too (it
    /// only writes the file).
    fn name_sync_standby(&mut self, on: usize, standby: Option<usize>) -> Result<(), ServerError> {
        let node = &self.nodes[on];
        node.psql(&match standby {
            Some(s) => format!(
                "ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({})'",
                NODE_NAMES[s]
            ),
            None => "ALTER SYSTEM RESET synchronous_standby_names".to_owned(),
        })?;
        node.psql("SELECT pg_catalog.pg_reload_conf()")?;
        self.names_sync_standby[on] = standby.is_some();
        Ok(())
    }

    /// Waits until node `index`'s walsender on the primary is in `state`.
    fn wait_for_state(&self, index: usize, state: &str) -> Result<(), ServerError> {
        let name = NODE_NAMES[index];
        let sql = format!(
            "SELECT state FROM pg_catalog.pg_stat_replication WHERE application_name = '{name}'"
        );
        self.wait_for(&format!("{name} {state}"), || {
            Ok(self.primary().psql(&sql)? == state)
        })
    }

    /// Polls `done` every 20 ms until it answers yes, at most [`WAIT`]. An error from `done`
    /// (a node briefly not answering) counts as "not yet"; the last one is in the timeout's
    /// message, with both nodes' logs.
    fn wait_for(
        &self,
        what: &str,
        mut done: impl FnMut() -> Result<bool, ServerError>,
    ) -> Result<(), ServerError> {
        let deadline = Instant::now() + WAIT;
        let mut last_error = None;
        loop {
            match done() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                let logs: Vec<&Path> = self.nodes.iter().map(PgServer::log_path).collect();
                let last = last_error.map_or(String::new(), |e| format!(" (last error: {e})"));
                return Err(ServerError::StartFailed {
                    what: format!("not done within {WAIT:?}: {what}{last}"),
                    log_tail: process::log_tail(&logs, 20),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgReplication {
    fn drop(&mut self) {
        // The standby first: a primary's clean shutdown waits for a streaming standby to
        // confirm the last WAL.
        let _ = self.nodes[self.standby_index()].stop();
        let _ = self.nodes[self.primary].stop();
        for node in &self.nodes {
            remove_orphaned_shared_memory(node.data_dir());
        }
        // Dropping the nodes deletes their directories.
    }
}

/// `pg_basebackup -R` of `source` into a fresh directory, as node `index`, started as a
/// standby on a free port of its own.
fn copy_as_standby(
    source: &PgServer,
    index: usize,
    user: Option<ServiceUser>,
) -> Result<PgServer, ServerError> {
    let workdir = WorkDir::create("pg-standby", user)?;
    let socket_dir = workdir.subdir("socket", user)?;
    let data_dir = workdir.path().join("data");
    let mut backup = Command::new(pg::find_pg_binary("pg_basebackup")?);
    pg::clean_env(&mut backup);
    // Over TCP, so the primary_conninfo that -R writes names 127.0.0.1 and the port (a socket
    // directory would be the primary's private one).
    backup
        .env("PGCONNECT_TIMEOUT", "10")
        .arg("-D")
        .arg(&data_dir)
        .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"])
        .args(["-h", "127.0.0.1", "-p", &source.port().to_string()])
        .args(["-U", source.trust_user()]);
    run_tool(backup, user, TOOL_TIMEOUT)?;
    append(
        &data_dir.join("postgresql.conf"),
        &node_settings(index, &socket_dir),
    )?;
    PgServer::start_on_copy(workdir, data_dir, socket_dir)
}

/// A node's own lines in `postgresql.conf`, after everything it inherited: its socket
/// directory and its name.
fn node_settings(index: usize, socket_dir: &Path) -> String {
    format!(
        "\n# pool-testservers: node {name}\n\
         unix_socket_directories = '{}'\n\
         cluster_name = '{name}'\n",
        socket_dir.to_string_lossy().replace('\'', "''"),
        name = NODE_NAMES[index],
    )
}

/// Appends `text` to a file of the server's (keeping its owner).
fn append(path: &Path, text: &str) -> Result<(), ServerError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| ServerError::io(format!("appending to {}", path.display()), e))
}

fn misuse(what: &str, why: String) -> ServerError {
    ServerError::io(what, io::Error::new(io::ErrorKind::InvalidInput, why))
}

/// Runs a helper tool as `user` (PostgreSQL's tools refuse to run as root, and `pg_ctl`
/// signals a postmaster only its own user may signal) to completion, killed (with its
/// children) after `timeout`; returns its trimmed stdout.
fn run_tool(
    mut cmd: Command,
    user: Option<ServiceUser>,
    timeout: Duration,
) -> Result<String, ServerError> {
    process::prepare(&mut cmd, user, libc::SIGKILL);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let line = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| ServerError::io(format!("running {line}"), e))?;
    // Read both pipes while the tool runs, so a full pipe never blocks it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let finished = process::wait_exit(&mut child, timeout);
    if !finished {
        process::kill_tree(&mut child);
    }
    let status = child.wait();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Ok(status) if finished && status.success() => Ok(stdout.trim().to_owned()),
        Ok(status) => Err(ServerError::Command {
            command: line,
            status: match finished {
                true => status.to_string(),
                false => format!("killed after {timeout:?}"),
            },
            stderr: stderr.trim().to_owned(),
        }),
        Err(e) => Err(ServerError::io(format!("waiting for {line}"), e)),
    }
}

/// Removes the System V shared-memory segment a killed postmaster left behind (a clean
/// shutdown removes it, and so would the next start on this data directory, which a killed
/// node of a dropped pair never gets). The segment is named in `postmaster.pid`, which only a
/// postmaster that did not shut down cleanly leaves: line 1 its pid, line 7 the segment's key
/// and id. It is removed only if nothing is attached and that postmaster created it.
fn remove_orphaned_shared_memory(data_dir: &Path) {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let pid = lines
        .first()
        .and_then(|l| l.trim().parse::<libc::pid_t>().ok());
    let id = lines
        .get(6)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|id| id.parse::<libc::c_int>().ok());
    let (Some(pid), Some(id)) = (pid, id) else {
        return;
    };
    if process::is_alive(pid as u32) {
        return;
    }
    // SAFETY: `ds` is a plain C struct that shmctl fills; IPC_RMID takes no buffer.
    unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        if libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0
            && ds.shm_nattch == 0
            && ds.shm_cpid == pid
        {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(node: &PgServer, table: &str) -> String {
        node.psql(&format!("SELECT count(*) FROM {table}"))
            .expect("count")
    }

    /// A crash failover with synchronous replication: what the primary acknowledged is on the
    /// promoted standby, which then takes writes; the killed node's shared memory is gone
    /// after the drop.
    #[test]
    fn kill_and_promote_keeps_acknowledged_commits() {
        let started = Instant::now();
        let mut pair = PgReplication::start(Replication::Synchronous).expect("start the pair");
        eprintln!("pair up in {:?}", started.elapsed());
        let standby = pair.standby_index();
        assert_eq!(
            pair.standby().psql("SELECT pg_is_in_recovery()").unwrap(),
            "t"
        );
        pair.primary()
            .psql("CREATE TABLE kept AS SELECT generate_series(1, 100) AS id")
            .expect("write");
        pair.kill_primary().expect("kill");
        let promoting = Instant::now();
        pair.promote_standby().expect("promote");
        eprintln!("promoted in {:?}", promoting.elapsed());
        assert_eq!(pair.primary_index(), standby);
        assert_eq!(count(pair.primary(), "kept"), "100");
        pair.primary()
            .psql("INSERT INTO kept VALUES (101)")
            .expect("the new primary takes writes");
        let pid_file = pair.standby().data_dir().join("postmaster.pid");
        assert!(pid_file.exists(), "a killed postmaster leaves its pid file");
        assert!(pair.rejoin_old_primary_as_standby().is_err());
    }

    /// A switchover: the old primary follows the new one, replays what it writes, and is its
    /// synchronous standby.
    #[test]
    fn switchover_makes_the_old_primary_a_standby() {
        let mut pair = PgReplication::start(Replication::Synchronous).expect("start the pair");
        let (a, b) = (pair.node(0).port(), pair.node(1).port());
        let started = Instant::now();
        pair.switchover().expect("switchover");
        eprintln!("switchover in {:?}", started.elapsed());
        assert_eq!(pair.primary().port(), b);
        assert_eq!(pair.standby().port(), a);
        assert_eq!(
            pair.standby().psql("SELECT pg_is_in_recovery()").unwrap(),
            "t"
        );
        pair.primary()
            .psql("CREATE TABLE after_switch AS SELECT 1 AS id")
            .expect("write on the new primary");
        pair.wait_caught_up().expect("replayed");
        assert_eq!(count(pair.standby(), "after_switch"), "1");
        // And back: the first node is promoted again, without waiting for a standby it named
        // in its first term.
        pair.switchover().expect("switch back");
        assert_eq!(pair.primary().port(), a);
        pair.primary()
            .psql("INSERT INTO after_switch VALUES (2)")
            .expect("write after switching back");
        assert!(pair.hosts_args().contains(&format!("port={a},{b}")));
    }

    /// Asynchronous: the standby may be stopped while the primary takes writes, and catches up
    /// when it is back.
    #[test]
    fn an_async_standby_catches_up_after_a_stop() {
        let mut pair = PgReplication::start(Replication::Asynchronous).expect("start the pair");
        pair.stop_standby().expect("stop");
        pair.primary()
            .psql("CREATE TABLE while_down AS SELECT 1 AS id")
            .expect("write while the standby is down");
        pair.start_standby().expect("start again");
        pair.wait_caught_up().expect("caught up");
        assert_eq!(count(pair.standby(), "while_down"), "1");
    }
}
