//! A private PgBouncer in front of a private [`PgServer`]: `pgbouncer` with its own
//! `pgbouncer.ini` and auth file in a temp dir, on a free loopback port, no unix socket.
//!
//! It exists to test the pool where it is deployed at scale: many application servers, each
//! with its own pool, multiplexed by PgBouncer onto a few server connections. Transaction
//! pooling is the mode that matters (and the one that breaks clients relying on session state
//! or on protocol-level named prepared statements); session pooling is there to check that the
//! full reset still works through a proxy that pins the server session to the client.
//!
//! `pgbouncer` refuses to run as root, so as root it runs as the `postgres` system user (like
//! the PostgreSQL server), in the foreground (no `-d`), as our child: it is stopped with SIGTERM
//! ("immediate shutdown"; SIGINT would wait for clients in transaction mode to go idle) when the
//! handle drops, and gets the same signal from the kernel if the test process dies.
//!
//! # TLS
//!
//! [`PgBouncer::start_tls`] starts it with TLS towards its clients (`client_tls_sslmode`,
//! `client_tls_cert_file`, `client_tls_key_file` and `client_tls_ca_file`, names as in
//! PgBouncer 1.18's `pgbouncer.ini`), presenting a server certificate of a [`TestPki`]; plain
//! clients are then refused. In front of a TLS [`PgServer`] ([`PgServer::start_tls`], which
//! refuses plain TCP) PgBouncer connects to it over verified TLS (`server_tls_sslmode =
//! verify-full`, `server_tls_ca_file`), whichever way it was started.
//!
//! # Moving the target
//!
//! [`PgBouncer::retarget`] points the `[databases]` entry at another port (a promoted standby,
//! say), rewrites `pgbouncer.ini` and has PgBouncer `RELOAD` it, as an operator or a failover
//! manager would.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::ServerError;
use crate::pg::PgServer;
use crate::pki::{InstalledTls, ServerCert, ServerTls, TestPki};
use crate::process::{self, conn_value, ServiceUser};
use crate::redis::ClientCerts;
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The console user: PgBouncer's virtual `pgbouncer` database (`SHOW POOLS`, `SHOW SERVERS`).
/// It exists only in PgBouncer's auth file, not in PostgreSQL.
const ADMIN_USER: &str = "pool_bouncer_admin";
const ADMIN_PASSWORD: &str = "bouncer-admin-pw";
/// Server connections per (database, user) pair: deliberately few, so that a handful of
/// application pools must share them.
const DEFAULT_POOL_SIZE: usize = 4;
/// Client connections PgBouncer accepts in all: far more than any test opens, so a refusal
/// would be a bug in the test, not a limit it runs into.
const MAX_CLIENT_CONN: usize = 500;

/// How PgBouncer assigns server connections to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection belongs to a client for as long as the client stays connected, so
    /// session state (settings, temp tables, prepared statements) lives on between
    /// transactions. A pool in front of it needs the full reset.
    Session,
    /// A server connection belongs to a client only for one transaction; the next transaction
    /// may run on another one. Session state does not survive a transaction, and a
    /// protocol-level named statement prepared in one transaction is missing in the next.
    Transaction,
}

impl PoolMode {
    /// The `pool_mode` value in `pgbouncer.ini`.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// A throwaway PgBouncer in front of one [`PgServer`]. Dropping it stops PgBouncer and deletes
/// its directory (the PostgreSQL server is left alone).
///
/// It serves one database, the server's `pool_test`, to the password role `pool_scram` (with
/// the server's password, SCRAM on both legs), with `default_pool_size = 4` server connections
/// and `server_round_robin = 1` (see [`PgBouncer::config`]). The console (`dbname=pgbouncer`)
/// takes [`PgBouncer::admin_args`].
#[derive(Debug)]
pub struct PgBouncer {
    port: u16,
    mode: PoolMode,
    pg_port: u16,
    user: String,
    password: String,
    dbname: String,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    bin: PathBuf,
    service_user: Option<ServiceUser>,
    /// TLS towards the clients ([`PgBouncer::start_tls`]).
    client_tls: Option<ClientTls>,
    /// PgBouncer's copy of the CA of a TLS PostgreSQL server behind it (`server_tls_ca_file`):
    /// the server leg is TLS, verified, when set.
    server_tls_ca: Option<PathBuf>,
    /// Settings given with [`PgBouncer::set`], in order: written after the others in
    /// `[pgbouncer]`, so they win.
    extra: Vec<(String, String)>,
    sup: Supervisor,
}

/// What [`PgBouncer::start_tls`] was started with.
#[derive(Debug)]
struct ClientTls {
    tls: ServerTls,
    client_certs: ClientCerts,
    /// PgBouncer's own copies of its certificate, key and the CA (owned by its user).
    installed: InstalledTls,
}

impl ClientTls {
    /// `client_tls_sslmode`: PgBouncer's `verify-ca` and `verify-full` both mean "the client
    /// must present a certificate signed by `client_tls_ca_file`"; `require` asks for none
    /// (and would not validate one).
    fn sslmode(&self) -> &'static str {
        match self.client_certs {
            ClientCerts::Required => "verify-full",
            ClientCerts::NotRequested | ClientCerts::Optional => "require",
        }
    }
}

impl PgBouncer {
    /// Starts PgBouncer in `mode` in front of `pg`; returns once it accepts connections.
    ///
    /// PgBouncer connects to `pg` lazily, on the first client transaction (session mode: the
    /// first client), so `pg` must keep running while this is used.
    ///
    /// In front of a TLS server ([`PgServer::start_tls`]) PgBouncer's connections to it are
    /// TLS, verified against the server's CA and host name (`server_tls_sslmode =
    /// verify-full`); towards its clients it stays plain.
    pub fn start(pg: &PgServer, mode: PoolMode) -> Result<PgBouncer, ServerError> {
        Self::start_with(pg, mode, None)
    }

    /// Like [`start`](Self::start), with TLS towards the clients: PgBouncer presents the
    /// server certificate `cert` of `pki` and refuses clients that do not speak TLS.
    ///
    /// * [`ClientCerts::NotRequested`]: `client_tls_sslmode = require`, no client certificate
    ///   asked for.
    /// * [`ClientCerts::Required`]: `client_tls_sslmode = verify-full` (in PgBouncer the same
    ///   as `verify-ca`): a client must also present a certificate signed by `pki`'s CA
    ///   (`client_tls_ca_file`); [`tls_args`](Self::tls_args) then carries one
    ///   ([`TestPki::client`]`("pool_scram")`). Authentication stays SCRAM either way.
    /// * [`ClientCerts::Optional`] is refused: PgBouncer 1.18 either requires a valid client
    ///   certificate or validates none.
    ///
    /// The server leg is TLS if `pg` is a TLS server, as with [`start`](Self::start).
    pub fn start_tls(
        pg: &PgServer,
        mode: PoolMode,
        pki: &TestPki,
        cert: ServerCert,
        client_certs: ClientCerts,
    ) -> Result<PgBouncer, ServerError> {
        if client_certs == ClientCerts::Optional {
            return Err(ServerError::io(
                "starting PgBouncer with optional client certificates",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "PgBouncer has no optional client certificates: use Required or NotRequested",
                ),
            ));
        }
        Self::start_with(pg, mode, Some((ServerTls::new(pki, cert), client_certs)))
    }

    fn start_with(
        pg: &PgServer,
        mode: PoolMode,
        client_tls: Option<(ServerTls, ClientCerts)>,
    ) -> Result<PgBouncer, ServerError> {
        let bin = process::find_binary("pgbouncer", &[], "pgbouncer")?;
        let service_user = process::service_user("postgres")?;
        let workdir = WorkDir::create("pgbouncer", service_user)?;
        let dir = workdir.path().to_path_buf();
        let client_tls = match client_tls {
            Some((tls, client_certs)) => {
                let installed = tls.install(&workdir.subdir("tls", service_user)?, service_user)?;
                Some(ClientTls {
                    tls,
                    client_certs,
                    installed,
                })
            }
            None => None,
        };
        // The server's own args are the one source of the role, password and database names.
        let scram = pg.scram_args();
        let arg = |key: &str| -> Result<String, ServerError> {
            scram
                .split_whitespace()
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(|| {
                    ServerError::io(
                        format!("reading `{key}` from the PostgreSQL server's scram args"),
                        std::io::Error::new(std::io::ErrorKind::InvalidData, "missing"),
                    )
                })
        };
        let mut bouncer = PgBouncer {
            port: 0,
            mode,
            pg_port: pg.port(),
            user: arg("user")?,
            password: arg("password")?,
            dbname: arg("dbname")?,
            config_path: dir.join("pgbouncer.ini"),
            log_path: dir.join("pgbouncer.log"),
            stderr_path: dir.join("stderr.log"),
            dir,
            bin,
            service_user,
            client_tls,
            server_tls_ca: None,
            extra: Vec::new(),
            sup: Supervisor::new(workdir, libc::SIGTERM),
        };
        bouncer.write_file(&bouncer.dir.join("userlist.txt"), &bouncer.auth_file())?;
        if let Some(tls) = pg.tls() {
            // The PKI's directory is private to the test's user: PgBouncer gets its own copy.
            let path = bouncer.dir.join("server-ca.crt");
            let ca = fs::read_to_string(tls.ca_cert())
                .map_err(|e| ServerError::io(format!("reading {}", tls.ca_cert().display()), e))?;
            bouncer.write_file(&path, &ca)?;
            bouncer.server_tls_ca = Some(path);
        }
        process::launch_on_free_port(
            &mut bouncer,
            |bouncer, port| {
                bouncer.port = port;
                bouncer.launch()
            },
            |bouncer| bouncer.sup.is_running(),
        )?;
        Ok(bouncer)
    }

    /// Writes the config for `self.port`, spawns `pgbouncer` and waits until it is ready.
    fn launch(&self) -> Result<(), ServerError> {
        self.write_file(&self.config_path, &self.config())?;
        let (out, out2) = process::log_pair(&self.stderr_path)?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            // -q: log only to `logfile` (stderr keeps what comes before it is opened).
            .arg("-q")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2);
        process::prepare(&mut cmd, self.service_user, libc::SIGTERM);
        let child = process::spawn_from_keeper(cmd)
            .map_err(|e| ServerError::io(format!("spawning {}", self.bin.display()), e))?;
        self.sup.adopt(child);
        self.wait_ready()
    }

    /// Ready once something on our port answers a PostgreSQL `SSLRequest` the way this
    /// PgBouncer does: `N` without TLS towards clients, `S` with it (the handshake is then
    /// left unfinished). A bare TCP connect could also reach another program that took the
    /// port between our pick and PgBouncer's bind; PgBouncer then exits and the supervisor
    /// sees it, but only the protocol answer shows that PgBouncer is the one listening.
    fn wait_ready(&self) -> Result<(), ServerError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let expected = if self.client_tls.is_some() {
            b'S'
        } else {
            b'N'
        };
        self.sup.wait_ready(
            self.port,
            READY_TIMEOUT,
            Duration::from_millis(10),
            || Ok(answers_ssl_request(addr) == Some(expected)),
            |what| ServerError::StartFailed {
                what,
                log_tail: process::log_tail(&[&self.log_path, &self.stderr_path], 30),
            },
        )
    }

    /// Writes `text` to `path`, readable only by the user PgBouncer runs as.
    fn write_file(&self, path: &Path, text: &str) -> Result<(), ServerError> {
        use std::os::unix::fs::PermissionsExt;
        fs::write(path, text)
            .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))?;
        if let Some(u) = self.service_user {
            std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
                .map_err(|e| ServerError::io(format!("chown {}", path.display()), e))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| ServerError::io(format!("chmod {}", path.display()), e))
    }

    /// The auth file: plain-text passwords, so PgBouncer can both check a client's SCRAM
    /// exchange and run its own SCRAM exchange with PostgreSQL as the same role (a SCRAM
    /// secret alone would serve only the first).
    fn auth_file(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        format!(
            "{} {}\n{} {}\n",
            quote(&self.user),
            quote(&self.password),
            quote(ADMIN_USER),
            quote(ADMIN_PASSWORD)
        )
    }

    /// The `pgbouncer.ini` this instance runs with (for the current port).
    ///
    /// * `listen_addr = 127.0.0.1` on a port picked free; `unix_socket_dir` empty, which
    ///   disables the unix socket (its default `/tmp/.s.PGSQL.6432` could clash with a system
    ///   PgBouncer).
    /// * `auth_type = scram-sha-256` with the auth file above; the console user is in
    ///   `admin_users`.
    /// * `default_pool_size = 4`: the server connections one (database, user) pair may open.
    /// * `max_client_conn = 500`.
    /// * `server_round_robin = 1`: idle server connections are reused first-in first-out
    ///   instead of PgBouncer's default last-in first-out. With the default a lone client gets
    ///   the same server connection transaction after transaction, which hides any reliance on
    ///   session state; round robin moves each transaction to another server connection as
    ///   soon as more than one is open, so such a reliance fails deterministically.
    /// * No `ignore_startup_parameters`: the `postgres` crate's startup packet carries `user`,
    ///   `database`, `client_encoding` and, when set, `application_name` (all of which
    ///   PgBouncer tracks itself) and `options` (only when the connection args set it:
    ///   PgBouncer 1.18 then refuses the connection, which is right, since it could not apply
    ///   those settings to every server connection).
    /// * `logfile`, `pidfile` in the temp dir.
    /// * With [`start_tls`](Self::start_tls): `client_tls_sslmode` (`require`, or
    ///   `verify-full` when client certificates are required), `client_tls_cert_file`,
    ///   `client_tls_key_file`, `client_tls_ca_file` (PgBouncer's own copies).
    /// * In front of a TLS PostgreSQL server: `server_tls_sslmode = verify-full` and
    ///   `server_tls_ca_file` (its CA, copied); the `[databases]` entry's `host=127.0.0.1` is
    ///   one of the names in the server's certificate.
    /// * Last, what [`set`](Self::set) was given.
    pub fn config(&self) -> String {
        let mut tail = String::new();
        if let Some(client) = &self.client_tls {
            tail.push_str(&format!(
                "client_tls_sslmode = {}\n\
                 client_tls_cert_file = {}\n\
                 client_tls_key_file = {}\n\
                 client_tls_ca_file = {}\n",
                client.sslmode(),
                client.installed.cert.display(),
                client.installed.key.display(),
                client.installed.ca.display(),
            ));
        }
        if let Some(ca) = &self.server_tls_ca {
            tail.push_str(&format!(
                "server_tls_sslmode = verify-full\n\
                 server_tls_ca_file = {}\n",
                ca.display()
            ));
        }
        for (name, value) in &self.extra {
            tail.push_str(&format!("{name} = {value}\n"));
        }
        format!(
            "[databases]\n\
             {db} = host=127.0.0.1 port={pg_port} dbname={db}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {auth}\n\
             admin_users = {ADMIN_USER}\n\
             pool_mode = {mode}\n\
             default_pool_size = {DEFAULT_POOL_SIZE}\n\
             max_client_conn = {MAX_CLIENT_CONN}\n\
             server_round_robin = 1\n\
             logfile = {log}\n\
             pidfile = {pid}\n\
             {tail}",
            db = self.dbname,
            pg_port = self.pg_port,
            port = self.port,
            auth = self.dir.join("userlist.txt").display(),
            mode = self.mode.as_str(),
            log = self.log_path.display(),
            pid = self.dir.join("pgbouncer.pid").display(),
        )
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pooling mode it was started with.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// The server connections PgBouncer opens at most per (database, user): 4.
    pub fn default_pool_size(&self) -> usize {
        DEFAULT_POOL_SIZE
    }

    /// libpq `key=value` args for `pool_scram` to `pool_test` through PgBouncer, the
    /// counterpart of [`PgServer::scram_args`].
    pub fn args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={}",
            self.port, self.user, self.password, self.dbname
        )
    }

    /// libpq `key=value` args for PgBouncer's console (the virtual database `pgbouncer`,
    /// simple query protocol only: `SHOW POOLS`, `SHOW SERVERS`, ...).
    pub fn admin_args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={ADMIN_USER} password={ADMIN_PASSWORD} dbname=pgbouncer",
            self.port
        )
    }

    /// What [`start_tls`](Self::start_tls) was started with towards the clients (the PKI,
    /// for the CA, and which certificate PgBouncer presents); `None` for
    /// [`start`](Self::start).
    pub fn tls(&self) -> Option<&ServerTls> {
        self.client_tls.as_ref().map(|c| &c.tls)
    }

    /// Whether a client must present a certificate ([`ClientCerts::Required`] to
    /// [`start_tls`](Self::start_tls)).
    pub fn requires_client_certs(&self) -> bool {
        self.client_tls
            .as_ref()
            .is_some_and(|c| c.client_certs == ClientCerts::Required)
    }

    /// Whether PgBouncer talks TLS to the PostgreSQL server behind it (it is a TLS server).
    pub fn server_tls(&self) -> bool {
        self.server_tls_ca.is_some()
    }

    /// libpq args for `pool_scram` to `pool_test` through a TLS PgBouncer, to `localhost` (a
    /// name in its certificate), with `sslmode=<sslmode>` and `sslrootcert=<the CA>`, plus
    /// `sslcert`/`sslkey` ([`TestPki::client`]`("pool_scram")`) when PgBouncer requires client
    /// certificates: the counterpart of [`PgServer::tls_args`].
    ///
    /// # Panics
    ///
    /// If PgBouncer was started without TLS, or the client certificate cannot be made.
    pub fn tls_args(&self, sslmode: &str) -> String {
        let Some(client_tls) = &self.client_tls else {
            panic!("PgBouncer::tls_args on a PgBouncer started without TLS: use start_tls")
        };
        let mut args = format!(
            "host=localhost port={} user={} password={} dbname={} sslmode={sslmode}              sslrootcert={}",
            self.port,
            self.user,
            self.password,
            self.dbname,
            conn_value(&client_tls.tls.ca_cert().to_string_lossy()),
        );
        args.push_str(&self.client_cert_args());
        args
    }

    /// ` sslcert=... sslkey=...` of `pool_scram`'s client certificate when PgBouncer requires
    /// one, else empty.
    fn client_cert_args(&self) -> String {
        match &self.client_tls {
            Some(c) if c.client_certs == ClientCerts::Required => {
                let user = &self.user;
                let cert = c
                    .tls
                    .pki()
                    .client(user)
                    .unwrap_or_else(|e| panic!("making the client certificate of {user}: {e}"));
                format!(
                    " sslcert={} sslkey={}",
                    conn_value(&cert.cert().to_string_lossy()),
                    conn_value(&cert.key().to_string_lossy()),
                )
            }
            _ => String::new(),
        }
    }

    /// The port of the PostgreSQL server the `[databases]` entry points at.
    pub fn target_port(&self) -> u16 {
        self.pg_port
    }

    /// Points the `[databases]` entry at the PostgreSQL server on `127.0.0.1:pg_port` (the
    /// same roles and database; TLS towards it as before), rewrites `pgbouncer.ini` and has
    /// PgBouncer [`reload`](Self::reload) it. PgBouncer marks its server connections to the
    /// old target "close needed" (closed at the end of their transaction in transaction mode,
    /// of their client's session in session mode) and opens new ones to the new target; its
    /// client connections stay. After failed connects to the old target it still refuses
    /// clients for `server_login_retry` (see [`set`](Self::set)).
    pub fn retarget(&mut self, pg_port: u16) -> Result<(), ServerError> {
        self.pg_port = pg_port;
        self.write_file(&self.config_path, &self.config())?;
        self.reload()
    }

    /// Sets `name = value` in the `[pgbouncer]` section (after every other setting, so it
    /// wins; a later `set` of the same name replaces it), rewrites `pgbouncer.ini` and
    /// [`reload`](Self::reload)s it. For settings PgBouncer applies on `RELOAD`, e.g.
    /// `server_login_retry`: how long PgBouncer refuses clients ("server login has been
    /// failing, try again later") after a failed connect to the server, 15 s by default,
    /// which a `RELOAD` that moves the target does not cut short.
    ///
    /// # Panics
    ///
    /// If `name` is not a setting name (letters, digits, `_`) or `value` spans lines.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ServerError> {
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "not a PgBouncer setting name: {name:?}"
        );
        assert!(
            !value.contains(['\n', '\r']),
            "a PgBouncer setting's value spans lines: {value:?}"
        );
        self.extra.retain(|(n, _)| n != name);
        self.extra.push((name.to_owned(), value.to_owned()));
        self.write_file(&self.config_path, &self.config())?;
        self.reload()
    }

    /// `RELOAD` over the console (with `psql`, which returns once PgBouncer has read
    /// `pgbouncer.ini` again): what an operator runs after editing it.
    pub fn reload(&self) -> Result<(), ServerError> {
        let psql = process::find_binary("psql", &[], "postgresql-client")?;
        let mut cmd = Command::new(psql);
        let conninfo = match &self.client_tls {
            Some(c) => format!(
                "{} sslmode=verify-full sslrootcert={}{}",
                self.admin_args(),
                conn_value(&c.tls.ca_cert().to_string_lossy()),
                self.client_cert_args()
            ),
            None => format!("{} sslmode=disable", self.admin_args()),
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-A", "-t", "-q", "-c", "RELOAD", "-d"])
            .arg(conninfo);
        process::run(cmd, None).map(drop)
    }

    /// PgBouncer's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Immediate shutdown (SIGTERM); clients are disconnected. No-op if not running.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.sup.stop()
    }

    /// Whether the PgBouncer process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.sup.dispose();
    }
}

/// Sends a PostgreSQL `SSLRequest` to `addr`; its one-byte answer (`N`: no TLS, `S`: TLS), if
/// one came.
fn answers_ssl_request(addr: SocketAddr) -> Option<u8> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let attempt = || -> std::io::Result<u8> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(1)))?;
        stream.set_write_timeout(Some(Duration::from_secs(1)))?;
        stream.write_all(&SSL_REQUEST)?;
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer)?;
        Ok(answer[0])
    };
    attempt().ok()
}
