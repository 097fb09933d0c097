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
use crate::pki::{InstalledTls, ServerCert, ServerTls, TestPki};
use crate::process::{self, conn_value};
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

pub(crate) const USER: &str = "pool_user";
pub(crate) const PASSWORD: &str = "redis-secret-pw";
pub(crate) const DEFAULT_PASSWORD: &str = "redis-default-pw";
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

/// Whether a TLS Redis server asks clients for a certificate (`--tls-auth-clients`).
///
/// Redis 7.0 does not map a certificate to a user: the certificate is checked against the CA
/// during the handshake, and the client still logs in with `AUTH` as usual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientCerts {
    /// `yes`: a client without a certificate signed by the CA fails the TLS handshake.
    Required,
    /// `optional`: a certificate is asked for and, if sent, must be signed by the CA.
    Optional,
    /// `no`: no certificate is asked for.
    NotRequested,
}

impl ClientCerts {
    fn redis_value(self) -> &'static str {
        match self {
            ClientCerts::Required => "yes",
            ClientCerts::Optional => "optional",
            ClientCerts::NotRequested => "no",
        }
    }
}

/// A throwaway Redis server. Dropping it stops the server and deletes its directory.
///
/// User `pool_user` (password `redis-secret-pw`, see [`RedisServer::args`]); the `default` user
/// needs the password `redis-default-pw`.
///
/// Started with [`RedisServer::start_tls`] its TCP port speaks TLS only (`--port 0
/// --tls-port <port>`): [`port`](RedisServer::port) is then the TLS port, and a plain client
/// there fails (the server drops it after a failed handshake). The unix socket stays plain.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    socket_path: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    extra: Vec<String>,
    tls: Option<(ServerTls, ClientCerts, InstalledTls)>,
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
        Self::start_inner(extra, None)
    }

    /// Starts a server whose TCP port speaks TLS only: it presents `cert` from `pki`
    /// (`--tls-cert-file`, `--tls-key-file`, private copies) and verifies client certificates
    /// against `pki`'s CA (`--tls-ca-cert-file`) as `client_certs` says
    /// (`--tls-auth-clients yes|optional|no`). Users and passwords as [`start`](Self::start).
    /// Redis 7 is built with TLS on Debian; a build without it fails to start here with
    /// "unrecognized option" in the log.
    pub fn start_tls(
        pki: &TestPki,
        cert: ServerCert,
        client_certs: ClientCerts,
    ) -> Result<RedisServer, ServerError> {
        Self::start_inner(&[], Some((ServerTls::new(pki, cert), client_certs)))
    }

    fn start_inner(
        extra: &[&str],
        tls: Option<(ServerTls, ClientCerts)>,
    ) -> Result<RedisServer, ServerError> {
        let bin = process::find_binary("redis-server", &[], "redis-server")?;
        let workdir = WorkDir::create("redis", None)?;
        let dir = workdir.path().to_path_buf();
        let tls = match tls {
            Some((tls, client_certs)) => {
                let files = tls.install(&workdir.subdir("tls", None)?, None)?;
                Some((tls, client_certs, files))
            }
            None => None,
        };
        let mut server = RedisServer {
            port: 0,
            socket_path: dir.join("r.sock"),
            log: dir.join("redis.log"),
            dir,
            bin,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            tls,
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
        cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        match &self.tls {
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
            Some((_, client_certs, files)) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&files.cert)
                    .arg("--tls-key-file")
                    .arg(&files.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&files.ca)
                    .args(["--tls-auth-clients", client_certs.redis_value()]);
            }
        }
        cmd.args(["--bind", "127.0.0.1"])
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

    /// What the server was started with for TLS: `None` for [`start`](Self::start), `Some` for
    /// [`start_tls`](Self::start_tls).
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref().map(|(tls, _, _)| tls)
    }

    /// Whether (and how) a TLS server asks for client certificates; `None` without TLS.
    pub fn client_certs(&self) -> Option<ClientCerts> {
        self.tls.as_ref().map(|(_, client_certs, _)| *client_certs)
    }

    /// `rediss://pool_user:redis-secret-pw@localhost:<port>/0?cacert=<the CA>`: TLS to
    /// `localhost` (a name in the server certificate), verified against the CA, without a client
    /// certificate.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS.
    pub fn tls_url(&self) -> String {
        let tls = self.expect_tls("tls_url");
        format!(
            "rediss://{USER}:{PASSWORD}@localhost:{}/0?cacert={}",
            self.port,
            query_value(&tls.ca_cert().to_string_lossy()),
        )
    }

    /// [`tls_url`](Self::tls_url) plus the client certificate [`TestPki::client`]`("pool_user")`:
    /// `...?cacert=<CA>&cert=<client cert>&key=<client key>`.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS, or the client certificate cannot be made.
    pub fn tls_client_url(&self) -> String {
        let tls = self.expect_tls("tls_client_url");
        let client = tls
            .pki()
            .client(USER)
            .unwrap_or_else(|e| panic!("making the client certificate of {USER}: {e}"));
        format!(
            "{}&cert={}&key={}",
            self.tls_url(),
            query_value(&client.cert().to_string_lossy()),
            query_value(&client.key().to_string_lossy()),
        )
    }

    fn expect_tls(&self, what: &str) -> &ServerTls {
        match self.tls() {
            Some(tls) => tls,
            None => panic!(
                "RedisServer::{what} on a server started without TLS: use RedisServer::start_tls"
            ),
        }
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

    /// Like [`restart`](Self::restart), with `extra` replacing the extra arguments the server
    /// was started with (from now on, later restarts use them too): for example
    /// `["--replicaof", "127.0.0.1", "<port>"]` to bring an old master back as a replica.
    pub fn restart_with(&mut self, extra: &[&str]) -> Result<(), ServerError> {
        self.extra = extra.iter().map(|s| (*s).to_owned()).collect();
        self.restart()
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

/// Percent-encodes a URL query value (a file path): everything but unreserved characters and `/`.
fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
