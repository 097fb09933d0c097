//! A private Redis server: `redis-server` on a free loopback port and a private unix socket, no
//! persistence, a password on the default user and one restricted ACL user.
//!
//! Everything is given on the command line (no config file), so the machine's own Redis and its
//! `/etc/redis` are never read, and its port 6379 is never used.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::ServerError;
use crate::process::{self, conn_value};
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

const USER: &str = "pool_user";
const PASSWORD: &str = "redis-secret-pw";
const DEFAULT_PASSWORD: &str = "redis-default-pw";
/// What `pool_user` may do: everything but the `@dangerous` commands (`CONFIG`, `FLUSHALL`,
/// `DEBUG`, `KEYS`, most of `CLIENT` and `ACL`), plus the few connection commands a pooled
/// session uses: naming itself, turning replies off, tracking, and asking who it is. A test can
/// so tell `pool_user` from `default`, which may run anything.
const ACL_RULES: [&str; 15] = [
    "on",
    "resetchannels",
    "&*",
    "~*",
    "+@all",
    "-@dangerous",
    "+client|setname",
    "+client|getname",
    "+client|reply",
    "+client|tracking",
    "+client|id",
    "+client|info",
    "+client|trackinginfo",
    "+acl|whoami",
    "+select",
];
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A throwaway Redis server. Dropping it stops the server and deletes its directory.
///
/// User `pool_user` (password `redis-secret-pw`, see [`RedisServer::args`]); the `default` user
/// needs the password `redis-default-pw`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    socket_path: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    extra: Vec<String>,
    sup: Supervisor,
}

impl RedisServer {
    /// Starts a server; returns once it answers `PING`.
    pub fn start() -> Result<RedisServer, ServerError> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments appended (for example
    /// `["--rename-command", "RESET", ""]` to play a server older than 6.2).
    pub fn start_with(extra: &[&str]) -> Result<RedisServer, ServerError> {
        let bin = process::find_binary("redis-server", &[], "redis-server")?;
        let workdir = WorkDir::create("redis", None)?;
        let dir = workdir.path().to_path_buf();
        let mut server = RedisServer {
            port: 0,
            socket_path: dir.join("r.sock"),
            log: dir.join("redis.log"),
            dir,
            bin,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            sup: Supervisor::new(workdir, libc::SIGTERM),
        };
        process::launch_on_free_port(
            &mut server,
            |server, port| {
                server.port = port;
                server.launch()
            },
            |server| server.sup.is_running(),
        )?;
        Ok(server)
    }

    fn launch(&self) -> Result<(), ServerError> {
        let (out, out2) = process::log_pair(&self.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(&self.socket_path)
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .args(["--requirepass", DEFAULT_PASSWORD])
            .args(["--user", USER])
            .arg(format!(">{PASSWORD}"))
            .args(ACL_RULES)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2);
        process::prepare(&mut cmd, None, libc::SIGTERM);
        let child = process::spawn_from_keeper(cmd)
            .map_err(|e| ServerError::io(format!("spawning {}", self.bin.display()), e))?;
        self.sup.adopt(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ServerError> {
        self.sup.wait_ready(
            self.port,
            READY_TIMEOUT,
            Duration::from_millis(10),
            || {
                Ok(self.socket_path.exists()
                    && TcpStream::connect(("127.0.0.1", self.port)).is_ok())
            },
            |what| self.start_failed(what),
        )
    }

    fn start_failed(&self, what: String) -> ServerError {
        ServerError::StartFailed {
            what,
            log_tail: process::log_tail(&[&self.log], 30),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The server's log (its stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `key=value` args for `pool_user` over TCP.
    pub fn args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD}",
            self.port
        )
    }

    /// `key=value` args for `pool_user` over the unix socket.
    pub fn socket_args(&self) -> String {
        format!(
            "socket={} user={USER} password={PASSWORD}",
            conn_value(&self.socket_path.to_string_lossy())
        )
    }

    /// `key=value` args for the `default` user (password only, no user name) over TCP.
    pub fn default_user_args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} password={DEFAULT_PASSWORD}",
            self.port
        )
    }

    /// `redis://pool_user:redis-secret-pw@127.0.0.1:<port>/0`
    pub fn url(&self) -> String {
        format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    /// The name of the ACL user, `pool_user`.
    pub fn user(&self) -> &str {
        USER
    }

    /// The password of `pool_user`.
    pub fn password(&self) -> &str {
        PASSWORD
    }

    /// The `default` user's password (`requirepass`).
    pub fn default_password(&self) -> &str {
        DEFAULT_PASSWORD
    }

    /// Clean shutdown (SIGTERM). No-op if not running.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.sup.stop()
    }

    /// SIGKILL. No-op if not running.
    pub fn kill(&mut self) -> Result<(), ServerError> {
        self.sup.kill()
    }

    /// Starts the server again on the same port and socket, stopping it first if it runs. The
    /// data is gone (nothing is persisted); the users are the same.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.sup.stop()?;
        let _ = std::fs::remove_file(&self.socket_path);
        self.launch()
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }

    pub(crate) fn dispose_at_exit(&self) {
        self.sup.dispose_at_exit();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.sup.dispose();
    }
}
