//! A private PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free loopback port and a
//! private unix socket directory.
//!
//! `postgres` is started directly (not through `pg_ctl start`, which daemonizes) so it stays our
//! child: it can be reaped, and its parent-death signal (SIGINT, PostgreSQL's "fast shutdown")
//! stops it if the test process dies. [`PgServer::stop`] sends the same SIGINT, exactly what
//! `pg_ctl stop -m fast` does.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::ServerError;
use crate::pki::{InstalledTls, ServerCert, ServerTls, TestPki};
use crate::process::{self, conn_value, ServiceUser};
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

const TRUST_USER: &str = "pool_trust";
const SCRAM_USER: &str = "pool_scram";
/// Logs in with a client certificate only (`cert` auth); exists on TLS servers.
const CERT_USER: &str = "pool_cert";
const SCRAM_PASSWORD: &str = "scram-secret-pw";
const DATABASE: &str = "pool_test";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Client authentication: `pool_scram` must use its password, everything else is trusted.
/// Only loopback and the private socket are configured, so nothing else can connect at all.
const PG_HBA: &str = "\
local all pool_scram scram-sha-256
host  all pool_scram 127.0.0.1/32 scram-sha-256
local all all trust
host  all all 127.0.0.1/32 trust
";

/// Client authentication of a TLS server ([`PgServer::start_tls`]): over TCP only TLS is
/// accepted, so a plain connect gets the server's own clear refusal ("no pg_hba.conf entry
/// for host ..., no encryption", SQLSTATE 28000) instead of silently working. `pool_cert`
/// logs in with a client certificate whose CN is its name (`cert` auth verifies the
/// certificate against `ssl_ca_file`); `pool_scram` with its password (and, because the
/// session is TLS, SCRAM-SHA-256-PLUS channel binding is offered); everyone else is trusted.
/// The unix socket stays plain for the suite's own `psql`.
const PG_HBA_TLS: &str = "\
local     all pool_scram scram-sha-256
local     all all trust
hostnossl all all 0.0.0.0/0 reject
hostnossl all all ::/0 reject
hostssl   all pool_cert 127.0.0.1/32 cert
hostssl   all pool_scram 127.0.0.1/32 scram-sha-256
hostssl   all all 127.0.0.1/32 trust
";

#[derive(Debug)]
struct Bins {
    initdb: PathBuf,
    postgres: PathBuf,
    pg_isready: PathBuf,
    psql: PathBuf,
}

impl Bins {
    /// The binaries of the highest PostgreSQL version under `/usr/lib/postgresql/*/bin`
    /// (override with `POOL_TESTSERVERS_PG_BINDIR`), then `PATH`.
    fn locate() -> Result<Bins, ServerError> {
        let dirs = bin_dirs();
        Ok(Bins {
            initdb: process::find_binary("initdb", &dirs, "postgresql")?,
            postgres: process::find_binary("postgres", &dirs, "postgresql")?,
            pg_isready: process::find_binary("pg_isready", &dirs, "postgresql-client")?,
            psql: process::find_binary("psql", &dirs, "postgresql-client")?,
        })
    }
}

/// Where PostgreSQL's binaries are looked for, best first: `POOL_TESTSERVERS_PG_BINDIR`, then
/// `/usr/lib/postgresql/*/bin` from the highest version down.
fn bin_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("POOL_TESTSERVERS_PG_BINDIR") {
        dirs.push(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").is_file())
        .collect();
    versions.sort();
    dirs.extend(versions.into_iter().rev().map(|(_, d)| d));
    dirs
}

/// Another PostgreSQL tool (`pg_basebackup`, `pg_ctl`), from where [`PgServer`] takes
/// `postgres`, so that both are of the same version.
pub(crate) fn find_pg_binary(name: &str) -> Result<PathBuf, ServerError> {
    process::find_binary(name, &bin_dirs(), "postgresql")
}

/// A throwaway PostgreSQL server. Dropping it stops the server and deletes all its files.
///
/// Roles: `pool_trust` (superuser, trust auth), `pool_scram` (password `scram-secret-pw`,
/// scram-sha-256, not superuser, may connect to and create temp tables in `pool_test`, member of
/// the NOLOGIN role `pool_other`). Database: `pool_test`.
///
/// Started with [`PgServer::start_tls`] it speaks TLS only over TCP (see [`PgServer::tls`])
/// and has one more role, `pool_cert`, that logs in with a client certificate.
#[derive(Debug)]
pub struct PgServer {
    port: u16,
    socket_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    bins: Bins,
    user: Option<ServiceUser>,
    tls: Option<ServerTls>,
    sup: Supervisor,
}

impl PgServer {
    /// Creates a cluster and starts it; returns once it accepts connections and is set up.
    pub fn start() -> Result<PgServer, ServerError> {
        Self::start_with(None)
    }

    /// Like [`start`](Self::start), with TLS: the server presents `cert` from `pki` and
    /// verifies client certificates against `pki`'s CA (`ssl = on`, `ssl_cert_file`,
    /// `ssl_key_file`, `ssl_ca_file`, each a private copy owned by the server's user).
    ///
    /// Over TCP only TLS is accepted (`hostnossl ... reject`: a plain connect is refused by the
    /// server with "no encryption"); the unix socket stays plain. Roles: as [`start`]
    /// (`pool_trust` trusted, `pool_scram` by password, over TLS) plus `pool_cert`
    /// ([`cert_user`](Self::cert_user)), which logs in with a client certificate
    /// ([`TestPki::client`]`("pool_cert")`) and nothing else.
    ///
    /// [`start`]: Self::start
    pub fn start_tls(pki: &TestPki, cert: ServerCert) -> Result<PgServer, ServerError> {
        Self::start_with(Some(ServerTls::new(pki, cert)))
    }

    fn start_with(tls: Option<ServerTls>) -> Result<PgServer, ServerError> {
        let bins = Bins::locate()?;
        let user = process::service_user("postgres")?;
        let workdir = WorkDir::create("pg", user)?;
        let socket_dir = workdir.subdir("socket", user)?;
        let data_dir = workdir.path().join("data");
        let log_path = workdir.path().join("postgres.log");

        let mut initdb = Command::new(&bins.initdb);
        clean_env(&mut initdb);
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args(["-A", "trust", "-U", TRUST_USER, "--no-sync", "-E", "UTF8"])
            .args(["--locale=C", "--no-instructions"]);
        process::run(initdb, user)?;
        let installed = match &tls {
            Some(tls) => Some(tls.install(&workdir.subdir("tls", user)?, user)?),
            None => None,
        };
        write_config(&data_dir, &socket_dir, installed.as_ref())?;

        let server = PgServer {
            port: 0,
            socket_dir,
            data_dir,
            log_path,
            bins,
            user,
            tls,
            sup: Supervisor::new(workdir, libc::SIGINT),
        }
        .on_a_free_port()?;
        server.setup()?;
        Ok(server)
    }

    /// Starts `postgres` on a data directory made elsewhere (a standby's, copied by
    /// `pg_basebackup`) on a free port: no `initdb` and no setup, the roles and the database
    /// came with the copy. `data_dir` and `socket_dir` lie in `workdir` (its `postgresql.conf`
    /// must name `socket_dir`), which the server owns from now on, like one [`start`] made.
    ///
    /// [`start`]: Self::start
    pub(crate) fn start_on_copy(
        workdir: WorkDir,
        data_dir: PathBuf,
        socket_dir: PathBuf,
    ) -> Result<PgServer, ServerError> {
        let log_path = workdir.path().join("postgres.log");
        PgServer {
            port: 0,
            socket_dir,
            data_dir,
            log_path,
            bins: Bins::locate()?,
            user: process::service_user("postgres")?,
            tls: None,
            sup: Supervisor::new(workdir, libc::SIGINT),
        }
        .on_a_free_port()
    }

    /// Launches this (not yet started) server on a free port, retrying on a port taken
    /// meanwhile.
    fn on_a_free_port(mut self) -> Result<PgServer, ServerError> {
        process::launch_on_free_port(
            &mut self,
            |server, port| {
                server.port = port;
                server.launch()
            },
            |server| server.sup.is_running(),
        )?;
        Ok(self)
    }

    /// Spawns `postgres` on `self.port` and waits until it accepts connections.
    fn launch(&self) -> Result<(), ServerError> {
        let (log, log2) = process::log_pair(&self.log_path)?;
        let mut cmd = Command::new(&self.bins.postgres);
        clean_env(&mut cmd);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        process::prepare(&mut cmd, self.user, libc::SIGINT);
        let child = process::spawn_from_keeper(cmd).map_err(|e| {
            ServerError::io(format!("spawning {}", self.bins.postgres.display()), e)
        })?;
        self.sup.adopt(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ServerError> {
        self.sup.wait_ready(
            self.port,
            READY_TIMEOUT,
            Duration::from_millis(20),
            || {
                let ready = Command::new(&self.bins.pg_isready)
                    .arg("-q")
                    .arg("-h")
                    .arg(&self.socket_dir)
                    .args([
                        "-p",
                        &self.port.to_string(),
                        "-U",
                        TRUST_USER,
                        "-d",
                        "postgres",
                    ])
                    .args(["-t", "1"])
                    .stdin(Stdio::null())
                    .status()
                    .map_err(|e| ServerError::io("running pg_isready", e))?;
                Ok(ready.success())
            },
            |what| self.start_failed(what),
        )
    }

    fn start_failed(&self, what: String) -> ServerError {
        ServerError::StartFailed {
            what,
            log_tail: process::log_tail(&[&self.log_path], 30),
        }
    }

    /// Creates the database and the roles the tests rely on.
    fn setup(&self) -> Result<(), ServerError> {
        let mut cmd = self.psql_command("postgres");
        let cert_role = self.tls.as_ref().map(|_| {
            [
                format!("CREATE ROLE {CERT_USER} LOGIN"),
                format!("GRANT ALL ON DATABASE {DATABASE} TO {CERT_USER}"),
                format!("GRANT ALL ON SCHEMA public TO {CERT_USER}"),
            ]
        });
        for sql in [
            "CREATE ROLE pool_other NOLOGIN".to_string(),
            format!("CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'"),
            format!("GRANT pool_other TO {SCRAM_USER}"),
            format!("CREATE DATABASE {DATABASE}"),
            format!("GRANT ALL ON DATABASE {DATABASE} TO {SCRAM_USER}"),
            format!("\\c {DATABASE}"),
            format!("GRANT ALL ON SCHEMA public TO {SCRAM_USER}"),
        ]
        .into_iter()
        .chain(cert_role.into_iter().flatten())
        {
            cmd.arg("-c").arg(sql);
        }
        process::run(cmd, None).map(drop)
    }

    fn psql_command(&self, dbname: &str) -> Command {
        let mut cmd = Command::new(&self.bins.psql);
        cmd.env_clear()
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", TRUST_USER, "-d", dbname]);
        cmd
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket `.s.PGSQL.<port>`.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory (kept across [`stop`](Self::stop) and [`kill`](Self::kill)).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file (stdout and stderr of `postgres`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// libpq `key=value` args for the trust-auth superuser `pool_trust` over TCP.
    pub fn trust_args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={TRUST_USER} dbname={DATABASE}",
            self.port
        )
    }

    /// Like [`trust_args`](Self::trust_args), over the unix socket.
    pub fn trust_socket_args(&self) -> String {
        format!(
            "host={} port={} user={TRUST_USER} dbname={DATABASE}",
            conn_value(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }

    /// libpq args for the password (scram-sha-256) role `pool_scram` over TCP.
    pub fn scram_args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SCRAM_USER} password={SCRAM_PASSWORD} dbname={DATABASE}",
            self.port
        )
    }

    /// Like [`scram_args`](Self::scram_args), over the unix socket.
    pub fn scram_socket_args(&self) -> String {
        format!(
            "host={} port={} user={SCRAM_USER} password={SCRAM_PASSWORD} dbname={DATABASE}",
            conn_value(&self.socket_dir.to_string_lossy()),
            self.port
        )
    }

    /// The password of `pool_scram`.
    pub fn scram_password(&self) -> &str {
        SCRAM_PASSWORD
    }

    /// The trust-auth superuser, `pool_trust`.
    pub fn trust_user(&self) -> &str {
        TRUST_USER
    }

    /// The password role, `pool_scram`.
    pub fn scram_user(&self) -> &str {
        SCRAM_USER
    }

    /// The database, `pool_test`.
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// What the server was started with for TLS: `None` for [`start`](Self::start), `Some` for
    /// [`start_tls`](Self::start_tls) (the PKI, for the CA and client certificates, and which
    /// server certificate it presents).
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The role that logs in by client certificate on a TLS server, `pool_cert`: its
    /// certificate is [`TestPki::client`]`("pool_cert")`.
    pub fn cert_user(&self) -> &str {
        CERT_USER
    }

    /// libpq args for `pool_scram` over TLS to `localhost` (the name in the server
    /// certificate) with `sslmode=<sslmode>` and `sslrootcert=<the CA>`, e.g.
    /// `host=localhost port=NNNN user=pool_scram password=scram-secret-pw dbname=pool_test
    /// sslmode=verify-full sslrootcert=/tmp/pool-testservers-pki-XXXX/ca.crt`.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS.
    pub fn tls_args(&self, sslmode: &str) -> String {
        format!(
            "host=localhost port={} user={SCRAM_USER} password={SCRAM_PASSWORD} \
             dbname={DATABASE} sslmode={sslmode} sslrootcert={}",
            self.port,
            conn_value(&self.expect_tls("tls_args").ca_cert().to_string_lossy()),
        )
    }

    /// libpq args for `pool_cert` with its client certificate, fully verified:
    /// `host=localhost port=NNNN user=pool_cert dbname=pool_test sslmode=verify-full
    /// sslrootcert=<CA> sslcert=<client cert> sslkey=<client key>`.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS, or the client certificate cannot be made.
    pub fn cert_args(&self) -> String {
        let tls = self.expect_tls("cert_args");
        let client = tls
            .pki()
            .client(CERT_USER)
            .unwrap_or_else(|e| panic!("making the client certificate of {CERT_USER}: {e}"));
        format!(
            "host=localhost port={} user={CERT_USER} dbname={DATABASE} sslmode=verify-full \
             sslrootcert={} sslcert={} sslkey={}",
            self.port,
            conn_value(&tls.ca_cert().to_string_lossy()),
            conn_value(&client.cert().to_string_lossy()),
            conn_value(&client.key().to_string_lossy()),
        )
    }

    fn expect_tls(&self, what: &str) -> &ServerTls {
        match &self.tls {
            Some(tls) => tls,
            None => {
                panic!("PgServer::{what} on a server started without TLS: use PgServer::start_tls")
            }
        }
    }

    /// `postgres://pool_trust@127.0.0.1:<port>/pool_test`
    pub fn url(&self) -> String {
        format!("postgres://{TRUST_USER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// `postgres://pool_scram:scram-secret-pw@127.0.0.1:<port>/pool_test`
    pub fn scram_url(&self) -> String {
        format!(
            "postgres://{SCRAM_USER}:{SCRAM_PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// Fast shutdown (SIGINT, as `pg_ctl stop -m fast`); keeps the data. No-op if not running.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.sup.stop()
    }

    /// SIGKILL to the postmaster and all its backends (which live in their own sessions, so a
    /// process-group kill alone would miss them); keeps the data. No-op if not running.
    pub fn kill(&mut self) -> Result<(), ServerError> {
        self.sup.kill()
    }

    /// Starts the server again on the same port and socket directory with the same data,
    /// stopping it first if it runs. After [`kill`](Self::kill) PostgreSQL runs crash recovery.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.sup.stop()?;
        self.launch()
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }

    /// Runs `sql` as `pool_trust` in `pool_test` with `psql -X -A -t` over the socket and returns
    /// the trimmed output (one row per line, columns separated by `|`).
    pub fn psql(&self, sql: &str) -> Result<String, ServerError> {
        let mut cmd = self.psql_command(DATABASE);
        cmd.arg("-c").arg(sql);
        process::run(cmd, None)
    }

    /// Stops the server and removes its files; used at process exit for shared instances.
    pub(crate) fn dispose_at_exit(&self) {
        self.sup.dispose_at_exit();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.sup.dispose();
    }
}

/// A minimal, predictable environment for the server tools (no inherited `PG*` variables).
pub(crate) fn clean_env(cmd: &mut Command) {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C");
}

/// Writes `pg_hba.conf` and appends test settings to `postgresql.conf` (the files already belong
/// to the service user; rewriting them in place keeps that ownership). With `tls`, turns TLS on
/// with those files and writes the TLS-only `pg_hba.conf`.
fn write_config(
    data_dir: &Path,
    socket_dir: &Path,
    tls: Option<&InstalledTls>,
) -> Result<(), ServerError> {
    let hba = data_dir.join("pg_hba.conf");
    fs::write(&hba, if tls.is_some() { PG_HBA_TLS } else { PG_HBA })
        .map_err(|e| ServerError::io(format!("writing {}", hba.display()), e))?;
    let conf = data_dir.join("postgresql.conf");
    let quoted = |p: &Path| p.to_string_lossy().replace('\'', "''");
    let tls_settings = match tls {
        Some(tls) => format!(
            "ssl = on\n\
             ssl_cert_file = '{}'\n\
             ssl_key_file = '{}'\n\
             ssl_ca_file = '{}'\n",
            quoted(&tls.cert),
            quoted(&tls.key),
            quoted(&tls.ca),
        ),
        None => String::new(),
    };
    let settings = format!(
        "\n# pool-testservers\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         max_connections = 200\n\
         password_encryption = 'scram-sha-256'\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         shared_buffers = 32MB\n\
         logging_collector = off\n\
         {tls_settings}",
        quoted(socket_dir)
    );
    let mut text = fs::read_to_string(&conf)
        .map_err(|e| ServerError::io(format!("reading {}", conf.display()), e))?;
    text.push_str(&settings);
    fs::write(&conf, text).map_err(|e| ServerError::io(format!("writing {}", conf.display()), e))
}
