//! A private MariaDB server: `mariadb-install-db` into a temp dir, `mariadbd` on a free loopback
//! port and a private unix socket.
//!
//! As root, both run directly as the `mysql` user (`Command::uid`) rather than with `--user=mysql`:
//! `mariadbd` switching user itself would clear its parent-death signal. Everything it writes
//! (data, socket, pid file, error log) lives in the work directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::ServerError;
use crate::process::{self, conn_value, ServiceUser};
use crate::supervisor::Supervisor;
use crate::workdir::WorkDir;

const USER: &str = "pool_user";
const PASSWORD: &str = "maria-secret-pw";
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
    sup: Supervisor,
}

impl MariaServer {
    /// Creates a data directory and starts the server; returns once it accepts connections and
    /// is set up.
    pub fn start() -> Result<MariaServer, ServerError> {
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
            .args(INNODB_ARGS)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2);
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
        ))
        .map(drop)
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
