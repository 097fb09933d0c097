//! Starts real private servers and checks the promises of the crate: access, roles, stop / kill /
//! restart on the same port, and that nothing is left running afterwards.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pool_testservers::{shared_maria, shared_pg, MariaServer, PgServer};

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Waits up to 10 s for no process to mention `needle`.
fn assert_no_process_mentions(needle: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left for {needle:?}: {left:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of the server backends: children of the process whose command line names `data_dir`.
fn backend_pids(data_dir: &Path) -> Vec<u32> {
    let parents = processes_mentioning(data_dir);
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s[s.rfind(')')? + 1..].to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                .is_some_and(|ppid| parents.contains(&ppid))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn psql_tcp(pg: &PgServer, user: &str, password: Option<&str>, sql: &str) -> std::process::Output {
    let mut cmd = Command::new("psql");
    cmd.env_clear()
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
        ])
        .args(["-U", user, "-d", "pool_test", "-w", "-c", sql])
        .stdin(Stdio::null());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    cmd.output().expect("run psql")
}

fn mariadb_tcp(m: &MariaServer, password: &str, sql: &str) -> std::process::Output {
    Command::new("mariadb")
        .env_clear()
        .args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1"])
        .arg(format!("--port={}", m.port()))
        .args(["-u", "pool_user"])
        .arg(format!("--password={password}"))
        .args(["-N", "-B", "pool_test", "-e", sql])
        .stdin(Stdio::null())
        .output()
        .expect("run mariadb")
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn pg_roles_and_auth() {
    let t = Instant::now();
    let pg = PgServer::start().expect("start postgres");
    eprintln!("PgServer::start took {:?}", t.elapsed());
    assert!(pg.is_running());
    assert_eq!(pg.psql("SELECT 1").expect("psql"), "1");
    assert_eq!(pg.psql("SELECT current_user").expect("psql"), "pool_trust");

    let trust = psql_tcp(&pg, "pool_trust", None, "SELECT 1");
    assert!(trust.status.success(), "{trust:?}");

    let ok = psql_tcp(
        &pg,
        "pool_scram",
        Some(pg.scram_password()),
        "SELECT current_user",
    );
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(stdout(&ok), "pool_scram");
    let wrong = psql_tcp(&pg, "pool_scram", Some("wrong"), "SELECT 1");
    assert!(!wrong.status.success(), "a wrong password must fail");
    let none = psql_tcp(&pg, "pool_scram", None, "SELECT 1");
    assert!(!none.status.success(), "no password must fail");

    let rights = psql_tcp(
        &pg,
        "pool_scram",
        Some(pg.scram_password()),
        "CREATE TEMP TABLE t(x int); CREATE TABLE p(x int); SET ROLE pool_other; \
         SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = 'pool_scram')",
    );
    assert!(rights.status.success(), "{rights:?}");
    assert_eq!(stdout(&rights), "pool_other|f");
    let err = pg
        .psql("SELET 1")
        .expect_err("bad SQL must fail")
        .to_string();
    assert!(err.contains("syntax error"), "{err}");
    assert_eq!(
        pg.psql("SHOW password_encryption").expect("psql"),
        "scram-sha-256"
    );
    assert_eq!(pg.psql("SHOW max_connections").expect("psql"), "200");

    assert!(pg.trust_args().contains(&format!("port={}", pg.port())));
    assert!(pg
        .trust_socket_args()
        .starts_with(&format!("host={}", pg.socket_dir().display())));
    assert!(pg.scram_args().contains("password=scram-secret-pw"));
    assert_eq!(
        pg.url(),
        format!("postgres://pool_trust@127.0.0.1:{}/pool_test", pg.port())
    );
}

#[test]
fn pg_stop_kill_restart_keep_port_and_data() {
    let mut pg = PgServer::start().expect("start postgres");
    let port = pg.port();
    pg.psql("CREATE TABLE kept(x int); INSERT INTO kept VALUES (42)")
        .expect("create");

    pg.stop().expect("stop");
    assert!(!pg.is_running());
    assert!(pg.psql("SELECT 1").is_err());
    pg.stop().expect("second stop is a no-op");
    let t = Instant::now();
    pg.restart().expect("restart after stop");
    eprintln!("PgServer::restart after stop took {:?}", t.elapsed());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("SELECT x FROM kept").expect("select"), "42");

    // Open a session so there is a backend to kill too.
    let mut session = Command::new("psql")
        .env_clear()
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "pool_trust",
        ])
        .args(["-d", "pool_test", "-c", "SELECT pg_sleep(60)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn psql");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg
        .psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
        .expect("count")
        != "1"
    {
        assert!(Instant::now() < deadline, "session did not show up");
        thread::sleep(Duration::from_millis(20));
    }
    let backends = backend_pids(pg.data_dir());
    assert!(backends.len() >= 2, "expected backends, got {backends:?}");

    pg.kill().expect("kill");
    assert!(!pg.is_running());
    for b in &backends {
        assert!(!alive(*b), "backend {b} survived kill()");
    }
    let _ = session.wait();
    let t = Instant::now();
    pg.restart().expect("restart after kill");
    eprintln!("PgServer::restart after kill took {:?}", t.elapsed());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("SELECT x FROM kept").expect("select"), "42");

    pg.restart().expect("restart while running");
    assert_eq!(pg.psql("SELECT 1").expect("select"), "1");
}

#[test]
fn pg_drop_leaves_nothing() {
    let pg = PgServer::start().expect("start postgres");
    let data = pg.data_dir().to_path_buf();
    let root = data.parent().expect("work dir").to_path_buf();
    let backends = backend_pids(&data);
    assert!(!processes_mentioning(&data).is_empty());
    drop(pg);
    assert_no_process_mentions(&data);
    for b in backends {
        assert!(!alive(b), "backend {b} survived drop");
    }
    assert!(!root.exists(), "{root:?} not removed");
}

#[test]
fn maria_users_and_auth() {
    let t = Instant::now();
    let m = MariaServer::start().expect("start mariadb");
    eprintln!("MariaServer::start took {:?}", t.elapsed());
    assert!(m.is_running());
    assert_eq!(m.sql("SELECT 1").expect("sql"), "1");

    let ok = mariadb_tcp(&m, m.password(), "SELECT CURRENT_USER(), DATABASE()");
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(stdout(&ok), "pool_user@%\tpool_test");
    let wrong = mariadb_tcp(&m, "wrong", "SELECT 1");
    assert!(!wrong.status.success(), "a wrong password must fail");
    let rights = mariadb_tcp(
        &m,
        m.password(),
        "CREATE TABLE t(x int); INSERT INTO t VALUES (1); \
         SELECT COUNT(*) FROM information_schema.processlist",
    );
    assert!(rights.status.success(), "{rights:?}");

    let root_tcp = Command::new("mariadb")
        .env_clear()
        .args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1"])
        .arg(format!("--port={}", m.port()))
        .args(["-u", "root", "-e", "SELECT 1"])
        .stdin(Stdio::null())
        .output()
        .expect("run mariadb");
    assert!(!root_tcp.status.success(), "root must not log in over TCP");

    assert_eq!(
        m.args(),
        format!(
            "host=127.0.0.1 port={} user=pool_user password=maria-secret-pw dbname=pool_test",
            m.port()
        )
    );
    assert!(m
        .socket_args()
        .starts_with(&format!("socket={}", m.socket_path().display())));
    assert_eq!(
        m.url(),
        format!(
            "mysql://pool_user:maria-secret-pw@127.0.0.1:{}/pool_test",
            m.port()
        )
    );
}

#[test]
fn maria_stop_kill_restart_keep_port_and_data() {
    let mut m = MariaServer::start().expect("start mariadb");
    let port = m.port();
    m.sql("CREATE TABLE pool_test.kept(x int); INSERT INTO pool_test.kept VALUES (42)")
        .expect("create");

    m.stop().expect("stop");
    assert!(!m.is_running());
    assert!(m.sql("SELECT 1").is_err());
    let t = Instant::now();
    m.restart().expect("restart after stop");
    eprintln!("MariaServer::restart after stop took {:?}", t.elapsed());
    assert_eq!(m.port(), port);
    assert_eq!(m.sql("SELECT x FROM pool_test.kept").expect("select"), "42");

    m.kill().expect("kill");
    assert!(!m.is_running());
    assert_no_process_mentions(m.data_dir());
    let t = Instant::now();
    m.restart().expect("restart after kill");
    eprintln!("MariaServer::restart after kill took {:?}", t.elapsed());
    assert_eq!(m.port(), port);
    assert_eq!(m.sql("SELECT x FROM pool_test.kept").expect("select"), "42");
    let ok = mariadb_tcp(&m, m.password(), "SELECT 1");
    assert!(ok.status.success(), "{ok:?}");
}

#[test]
fn maria_drop_leaves_nothing() {
    let m = MariaServer::start().expect("start mariadb");
    let data = m.data_dir().to_path_buf();
    let root = data.parent().expect("work dir").to_path_buf();
    assert!(!processes_mentioning(&data).is_empty());
    drop(m);
    assert_no_process_mentions(&data);
    assert!(!root.exists(), "{root:?} not removed");
}

#[test]
fn shared_instances_are_shared_and_private() {
    let pg = shared_pg();
    assert_eq!(pg.port(), shared_pg().port());
    assert_eq!(pg.psql("SELECT 1").expect("psql"), "1");
    let m = shared_maria();
    assert_eq!(m.port(), shared_maria().port());
    assert_eq!(m.sql("SELECT 1").expect("sql"), "1");

    // Private: never the machine's own services, their ports or sockets.
    for port in [pg.port(), m.port()] {
        assert_ne!(port, 5432);
        assert_ne!(port, 3306);
    }
    assert!(!pg.socket_dir().starts_with("/var/run/postgresql"));
    assert!(!pg.socket_dir().starts_with("/run/postgresql"));
    assert!(!m.socket_path().starts_with("/run/mysqld"));
    assert_eq!(
        pg.psql("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
            .expect("psql"),
        pg.data_dir().to_string_lossy()
    );
}

/// Not a test by itself: run in a child process by the two tests below (gated by an env var).
/// Starts the shared servers, prints their data dirs and then either exits normally or waits to
/// be killed.
#[test]
fn child_process_helper() {
    let Ok(mode) = std::env::var("POOL_TESTSERVERS_CHILD") else {
        return;
    };
    let pg = shared_pg();
    let m = shared_maria();
    println!("DATA {}", pg.data_dir().display());
    println!("DATA {}", m.data_dir().display());
    if mode == "wait" {
        thread::sleep(Duration::from_secs(120));
    }
}

fn run_child(mode: &str) -> (std::process::Child, Vec<std::path::PathBuf>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "child_process_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POOL_TESTSERVERS_CHILD", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process");
    let out = child.stdout.take().expect("stdout");
    let mut dirs = Vec::new();
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.expect("read child output");
        // libtest prints "test child_process_helper ... " without a newline before our output.
        if let Some(at) = line.find("DATA ") {
            dirs.push(std::path::PathBuf::from(&line[at + 5..]));
            if dirs.len() == 2 {
                break;
            }
        }
    }
    if dirs.len() != 2 {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child did not report its servers: {dirs:?}");
    }
    // Keep reading so the child's last words do not hit a closed pipe.
    thread::spawn(move || lines.for_each(drop));
    (child, dirs)
}

#[test]
fn shared_servers_stop_at_exit() {
    let (mut child, dirs) = run_child("exit");
    let status = child.wait().expect("wait child");
    assert!(status.success());
    for d in &dirs {
        // The atexit handler ran before the child exited: nothing may be left, not even briefly.
        assert!(
            processes_mentioning(d).is_empty(),
            "server for {d:?} survived exit"
        );
        assert!(!d.exists(), "{d:?} not removed at exit");
    }
}

#[test]
fn shared_servers_stop_when_process_is_killed() {
    let (mut child, dirs) = run_child("wait");
    for d in &dirs {
        assert!(!processes_mentioning(d).is_empty());
    }
    child.kill().expect("SIGKILL child");
    let _ = child.wait();
    // No destructor and no atexit ran: the parent-death signal must stop the servers.
    for d in &dirs {
        assert_no_process_mentions(d);
    }
    // The directories stay until the next start in this temp dir removes them.
    let _fresh = PgServer::start().expect("start postgres");
    for d in &dirs {
        assert!(
            !d.parent().expect("work dir").exists(),
            "abandoned {d:?} not cleaned up"
        );
    }
}
