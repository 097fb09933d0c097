//! A private MariaDB server: `mariadb-install-db` into a temp dir, `mariadbd` on a free loopback
//! port and a private unix socket.
//!
//! As root, both run directly as the `mysql` user (`Command::uid`) rather than with `--user=mysql`:
//! `mariadbd` switching user itself would clear its parent-death signal. Everything it writes
//! (data, socket, pid file, error log) lives in the work directory that user owns.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::ServerError;
use crate::pki::{InstalledTls, ServerCert, ServerTls, TestPki};
use crate::process::{self, conn_value, ServiceUser};
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

const USER: &str = "pool_user";
const PASSWORD: &str = "maria-secret-pw";
/// On TLS servers: may log in only over TLS (`REQUIRE SSL`).
const TLS_USER: &str = "pool_tls";
const TLS_PASSWORD: &str = "maria-tls-secret-pw";
/// On TLS servers: may log in only over TLS with a client certificate signed by the CA
/// (`REQUIRE X509`), and its password.
const X509_USER: &str = "pool_x509";
const X509_PASSWORD: &str = "maria-x509-secret-pw";
const DATABASE: &str = "pool_test";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Small InnoDB settings: quick start and crash recovery, 26 MB of data instead of 112 MB (the
/// default redo log alone is 96 MB). Given to the bootstrap too, so the data dir is created small.
const INNODB_ARGS: [&str; 4] = [
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=8M",
    "--innodb-doublewrite=0",
    "--innodb-flush-log-at-trx-commit=0",
];

#[derive(Debug)]
struct Bins {
    mariadbd: PathBuf,
    install_db: PathBuf,
    client: PathBuf,
}

impl Bins {
    fn locate() -> Result<Bins, ServerError> {
        Ok(Bins {
            mariadbd: process::find_binary("mariadbd", &[], "mariadb-server")?,
            install_db: process::find_binary("mariadb-install-db", &[], "mariadb-server")?,
            client: process::find_binary("mariadb", &[], "mariadb-client")?,
        })
    }
}

/// A throwaway MariaDB server. Dropping it stops the server and deletes all its files.
///
/// User `pool_user` (password `maria-secret-pw`, all privileges on `pool_test`, plus `PROCESS`),
/// database `pool_test`. `root` has no password and is reachable only over the private socket.
///
/// Started with [`MariaServer::start_tls`] (or [`MariaServer::start_tls_only`]) it also speaks
/// TLS and has two more users: `pool_tls` (`REQUIRE SSL`) and `pool_x509` (`REQUIRE X509`),
/// each with all privileges on `pool_test`.
#[derive(Debug)]
pub struct MariaServer {
    port: u16,
    socket_path: PathBuf,
    data_dir: PathBuf,
    tmp_dir: PathBuf,
    pid_path: PathBuf,
    error_log: PathBuf,
    out_log: PathBuf,
    bins: Bins,
    user: Option<ServiceUser>,
    tls: Option<ServerTls>,
    /// The server's copies of the TLS files.
    tls_files: Option<InstalledTls>,
    /// `require_secure_transport=ON`: every TCP login needs TLS.
    tls_only: bool,
    sup: Supervisor,
}

impl MariaServer {
    /// Creates a data directory and starts the server; returns once it accepts connections and
    /// is set up.
    pub fn start() -> Result<MariaServer, ServerError> {
        Self::start_with(None, false)
    }

    /// Like [`start`](Self::start), with TLS: `--ssl-cert`/`--ssl-key` from `cert` of `pki`,
    /// `--ssl-ca` its CA (which also verifies client certificates), each a private copy owned by
    /// the server's user. TLS is offered, not required: `pool_user` may still log in plain,
    /// `pool_tls` ([`tls_user`](Self::tls_user)) only over TLS (`REQUIRE SSL`), `pool_x509`
    /// ([`x509_user`](Self::x509_user)) only with a client certificate signed by the CA
    /// (`REQUIRE X509`; [`TestPki::client`]`("pool_x509")`) and its password.
    pub fn start_tls(pki: &TestPki, cert: ServerCert) -> Result<MariaServer, ServerError> {
        Self::start_with(Some(ServerTls::new(pki, cert)), false)
    }

    /// Like [`start_tls`](Self::start_tls), and the server requires TLS of every TCP login
    /// (`require_secure_transport=ON`, MariaDB 10.5.2+): a plain login of any user is refused.
    /// MariaDB answers it with "Access denied for user ..." (error 1045, SQLSTATE 28000), not
    /// MySQL's error 3159, so a driver cannot tell it from a wrong password by the code; the
    /// same login over TLS works. The private unix socket counts as secure, so
    /// [`sql`](Self::sql) still works.
    pub fn start_tls_only(pki: &TestPki, cert: ServerCert) -> Result<MariaServer, ServerError> {
        Self::start_with(Some(ServerTls::new(pki, cert)), true)
    }

    fn start_with(tls: Option<ServerTls>, tls_only: bool) -> Result<MariaServer, ServerError> {
        let bins = Bins::locate()?;
        let user = process::service_user("mysql")?;
        let workdir = WorkDir::create("maria", user)?;
        let dir = workdir.path().to_path_buf();
        let data_dir = dir.join("data");
        // A private tmpdir: the bootstrap's temporary tables must not meet other servers' in /tmp.
        let tmp_dir = workdir.subdir("tmp", user)?;

        let mut install = Command::new(&bins.install_db);
        clean_env(&mut install);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data_dir.display()))
            .arg(format!("--tmpdir={}", tmp_dir.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(["--skip-name-resolve", "--skip-log-bin"])
            .args(INNODB_ARGS);
        process::run(install, user)?;
        let tls_files = match &tls {
            Some(tls) => Some(tls.install(&workdir.subdir("tls", user)?, user)?),
            None => None,
        };

        let mut server = MariaServer {
            port: 0,
            socket_path: dir.join("mysqld.sock"),
            data_dir,
            tmp_dir,
            pid_path: dir.join("mysqld.pid"),
            error_log: dir.join("error.log"),
            out_log: dir.join("mariadbd.out"),
            bins,
            user,
            tls,
            tls_files,
            tls_only,
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
        server.setup()?;
        Ok(server)
    }

    fn launch(&self) -> Result<(), ServerError> {
        let (out, out2) = process::log_pair(&self.out_log)?;
        let mut cmd = Command::new(&self.bins.mariadbd);
        clean_env(&mut cmd);
        // --no-defaults must come first.
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir.display()))
            .arg(format!("--socket={}", self.socket_path.display()))
            .arg(format!("--tmpdir={}", self.tmp_dir.display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--pid-file={}", self.pid_path.display()))
            .arg(format!("--log-error={}", self.error_log.display()))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--max-connections=300",
            ])
            .args(INNODB_ARGS);
        if let Some(files) = &self.tls_files {
            cmd.arg(format!("--ssl-ca={}", files.ca.display()))
                .arg(format!("--ssl-cert={}", files.cert.display()))
                .arg(format!("--ssl-key={}", files.key.display()));
        }
        if self.tls_only {
            cmd.arg("--require-secure-transport=ON");
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(out2);
        process::prepare(&mut cmd, self.user, libc::SIGTERM);
        let child = process::spawn_from_keeper(cmd).map_err(|e| {
            ServerError::io(format!("spawning {}", self.bins.mariadbd.display()), e)
        })?;
        self.sup.adopt(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), ServerError> {
        self.sup.wait_ready(
            self.port,
            READY_TIMEOUT,
            Duration::from_millis(20),
            // The socket appears only once the server is ready; skip the client until then.
            || Ok(self.socket_path.exists() && self.sql("SELECT 1").is_ok()),
            |what| self.start_failed(what),
        )
    }

    fn start_failed(&self, what: String) -> ServerError {
        ServerError::StartFailed {
            what,
            log_tail: process::log_tail(&[&self.error_log, &self.out_log], 30),
        }
    }

    fn setup(&self) -> Result<(), ServerError> {
        self.sql(&format!(
            "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost'; \
             FLUSH PRIVILEGES; \
             CREATE DATABASE {DATABASE}; \
             CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             CREATE USER '{USER}'@'localhost' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL ON {DATABASE}.* TO '{USER}'@'%', '{USER}'@'localhost'; \
             GRANT PROCESS ON *.* TO '{USER}'@'%', '{USER}'@'localhost';"
        ))?;
        if self.tls.is_some() {
            for (user, password, require) in [
                (TLS_USER, TLS_PASSWORD, "SSL"),
                (X509_USER, X509_PASSWORD, "X509"),
            ] {
                self.sql(&format!(
                    "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}' REQUIRE {require}; \
                     CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}' \
                     REQUIRE {require}; \
                     GRANT ALL ON {DATABASE}.* TO '{user}'@'%', '{user}'@'localhost';"
                ))?;
            }
        }
        Ok(())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's unix socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The data directory (kept across [`stop`](Self::stop) and [`kill`](Self::kill)).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's error log.
    pub fn log_path(&self) -> &Path {
        &self.error_log
    }

    /// `key=value` args for `pool_user` over TCP.
    pub fn args(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={DATABASE}",
            self.port
        )
    }

    /// `key=value` args for `pool_user` over the unix socket.
    pub fn socket_args(&self) -> String {
        format!(
            "socket={} user={USER} password={PASSWORD} dbname={DATABASE}",
            conn_value(&self.socket_path.to_string_lossy())
        )
    }

    /// `mysql://pool_user:maria-secret-pw@127.0.0.1:<port>/pool_test`
    pub fn url(&self) -> String {
        format!(
            "mysql://{USER}:{PASSWORD}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// The name of the test user, `pool_user`.
    pub fn user(&self) -> &str {
        USER
    }

    /// The password of `pool_user`.
    pub fn password(&self) -> &str {
        PASSWORD
    }

    /// The database, `pool_test`.
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// What the server was started with for TLS: `None` for [`start`](Self::start), `Some` for
    /// [`start_tls`](Self::start_tls) / [`start_tls_only`](Self::start_tls_only).
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// Whether every TCP login needs TLS (`require_secure_transport=ON`,
    /// [`start_tls_only`](Self::start_tls_only)).
    pub fn requires_tls(&self) -> bool {
        self.tls_only
    }

    /// The user that may log in only over TLS (`REQUIRE SSL`), `pool_tls`; TLS servers only.
    pub fn tls_user(&self) -> &str {
        TLS_USER
    }

    /// The password of `pool_tls`.
    pub fn tls_password(&self) -> &str {
        TLS_PASSWORD
    }

    /// The user that needs a client certificate signed by the CA (`REQUIRE X509`) and its
    /// password, `pool_x509`; TLS servers only. Its certificate:
    /// [`TestPki::client`]`("pool_x509")`.
    pub fn x509_user(&self) -> &str {
        X509_USER
    }

    /// The password of `pool_x509`.
    pub fn x509_password(&self) -> &str {
        X509_PASSWORD
    }

    /// `key=value` args for `pool_tls` over TLS to `localhost` (a name in the server
    /// certificate) with `ssl-mode=<mode>` and `ssl-ca=<the CA>`, e.g.
    /// `host=localhost port=NNNN user=pool_tls password=maria-tls-secret-pw dbname=pool_test
    /// ssl-mode=VERIFY_IDENTITY ssl-ca=/tmp/pool-testservers-pki-XXXX/ca.crt`.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS.
    pub fn tls_args(&self, ssl_mode: &str) -> String {
        format!(
            "host=localhost port={} user={TLS_USER} password={TLS_PASSWORD} dbname={DATABASE} \
             ssl-mode={ssl_mode} ssl-ca={}",
            self.port,
            conn_value(&self.expect_tls("tls_args").ca_cert().to_string_lossy()),
        )
    }

    /// `key=value` args for `pool_x509` with its client certificate, fully verified:
    /// `host=localhost port=NNNN user=pool_x509 password=... dbname=pool_test
    /// ssl-mode=VERIFY_IDENTITY ssl-ca=<CA> ssl-cert=<client cert> ssl-key=<client key>`.
    ///
    /// # Panics
    ///
    /// If the server was started without TLS, or the client certificate cannot be made.
    pub fn x509_args(&self) -> String {
        let tls = self.expect_tls("x509_args");
        let client = tls
            .pki()
            .client(X509_USER)
            .unwrap_or_else(|e| panic!("making the client certificate of {X509_USER}: {e}"));
        format!(
            "host=localhost port={} user={X509_USER} password={X509_PASSWORD} \
             dbname={DATABASE} ssl-mode=VERIFY_IDENTITY ssl-ca={} ssl-cert={} ssl-key={}",
            self.port,
            conn_value(&tls.ca_cert().to_string_lossy()),
            conn_value(&client.cert().to_string_lossy()),
            conn_value(&client.key().to_string_lossy()),
        )
    }

    /// The first packet the server sends on a new TCP connection (its handshake greeting,
    /// which on a TLS server announces `CLIENT_SSL`). A [`crate::SilentListener`] that sends it
    /// ([`crate::Preamble::Greet`]) makes a MySQL client ask for TLS and then wait in its TLS
    /// handshake: the place a "silent TLS peer" test wants the silence.
    pub fn greeting(&self) -> Result<Vec<u8>, ServerError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let io = |e| {
            ServerError::io(
                format!("reading the greeting of 127.0.0.1:{}", self.port),
                e,
            )
        };
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(io)?;
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).map_err(io)?;
        let len =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        let mut packet = header.to_vec();
        packet.resize(4 + len, 0);
        stream.read_exact(&mut packet[4..]).map_err(io)?;
        Ok(packet)
    }

    fn expect_tls(&self, what: &str) -> &ServerTls {
        match &self.tls {
            Some(tls) => tls,
            None => panic!(
                "MariaServer::{what} on a server started without TLS: use MariaServer::start_tls"
            ),
        }
    }

    /// Clean shutdown (SIGTERM); keeps the data. No-op if not running.
    pub fn stop(&mut self) -> Result<(), ServerError> {
        self.sup.stop()
    }

    /// SIGKILL; keeps the data (the next start runs InnoDB crash recovery). No-op if not running.
    pub fn kill(&mut self) -> Result<(), ServerError> {
        self.sup.kill()
    }

    /// Starts the server again on the same port and socket with the same data, stopping it first
    /// if it runs.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.sup.stop()?;
        self.launch()
    }

    /// Whether the server process is alive.
    pub fn is_running(&self) -> bool {
        self.sup.is_running()
    }

    /// Runs `sql` as `root` over the private socket with `mariadb -N -B` and returns the trimmed
    /// output (one row per line, columns separated by tabs).
    pub fn sql(&self, sql: &str) -> Result<String, ServerError> {
        let mut cmd = Command::new(&self.bins.client);
        cmd.env_clear()
            .arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(format!("--socket={}", self.socket_path.display()))
            .args(["-uroot", "-N", "-B", "--connect-timeout=10", "-e", sql]);
        process::run(cmd, None)
    }

    pub(crate) fn dispose_at_exit(&self) {
        self.sup.dispose_at_exit();
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        self.sup.dispose();
    }
}

fn clean_env(cmd: &mut Command) {
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LC_ALL", "C");
}
