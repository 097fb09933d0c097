//! What the fresh-eyes review of the tokio-postgres driver found. Each test failed on the
//! driver as reviewed (except `native_copy_in_is_closed_not_parked`, a check of what was found
//! sound) and passes since the fix it names.

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pool_driver::{Connection, Driver, DriverErrorKind, ResetMode};
use pool_postgres::{PgClient, PgConn, PgDriver};

/// Runs `detach` on a helper thread; `None` if it did not return within `bound`.
fn detach_within(conn: PgConn, mode: ResetMode, bound: Duration) -> Option<Result<PgConn, String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let out = PgDriver.detach(conn, mode).map_err(|e| e.to_string());
        let _ = tx.send(out);
    });
    rx.recv_timeout(bound).ok()
}

/// SOUND (passes): a `COPY … FROM STDIN` started through the native client's `execute`
/// leaves the server in COPY-in mode; tokio-postgres ends the connection on the unexpected
/// CopyInResponse, so the reset fails ("connection closed") and the connection is closed,
/// never parked out of step.
#[test]
fn native_copy_in_is_closed_not_parked() {
    for mode in [ResetMode::Full, ResetMode::RollbackOnly] {
        let mut conn = common::trust();
        let table = common::unique("zz_copy");
        conn.execute(&format!("CREATE TEMP TABLE {table} (a int)"), &[])
            .expect("create");
        {
            let pg = conn
                .native_mut()
                .downcast_mut::<PgClient>()
                .expect("native");
            let err = pg
                .execute(&format!("COPY {table} FROM STDIN"), &[])
                .expect_err("simple-protocol COPY IN is not supported by the client");
            eprintln!("native COPY error: {err}");
        }
        assert!(
            !conn.is_broken(),
            "not reported broken either (documenting)"
        );
        match detach_within(conn, mode, Duration::from_secs(10)) {
            None => panic!("{mode:?}: detach still blocked after 10 s on a healthy server"),
            Some(Ok(mut back)) => {
                // If it did return, the session must be usable and in sync.
                eprintln!("{mode:?}: detach ok");
                let n = common::int(&mut back, "SELECT 42");
                assert_eq!(n, 42, "{mode:?}: replies out of step after the reset");
            }
            Some(Err(e)) => eprintln!("{mode:?}: detach error: {e}"),
        }
    }
}

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use pool_testservers::{PgServer, Proxy, ProxyMode, ServerCert, TestPki};

fn trust_via(port: u16, extra: &str) -> String {
    let pg = pool_testservers::shared_pg();
    format!(
        "host=127.0.0.1 port={port} user={} dbname={} {extra}",
        pg.trust_user(),
        pg.database()
    )
}

/// The reset is bounded by the connect timeout, also on a peer that takes the bytes but never
/// answers (a SIGSTOP'd server, or a network that still acknowledges them), where
/// `tcp_user_timeout` never fires and keepalives are answered by the peer's kernel. It used to
/// block forever: in the pool that wedged the key's resetter thread and, with `RollbackOnly`
/// (or a full resetter queue), the caller's `release`.
#[test]
fn a_reset_on_a_silent_peer_returns_within_the_connect_timeout() {
    let pg = pool_testservers::shared_pg();
    let upstream: SocketAddr = ([127, 0, 0, 1], pg.port()).into();
    let proxy = Proxy::start(upstream).expect("proxy");
    let args = PgDriver
        .parse_args(&trust_via(proxy.port(), "tcp_user_timeout=1"))
        .expect("args");
    let bound = Duration::from_millis(800);
    for mode in [ResetMode::RollbackOnly, ResetMode::Full] {
        proxy.set_mode(ProxyMode::Pass);
        let mut conn = PgDriver.connect(&args, bound).expect("connect");
        conn.execute("SET application_name = 'silent'", &[])
            .expect("touch");
        proxy.set_mode(ProxyMode::Blackhole);
        let started = Instant::now();
        let outcome = detach_within(conn, mode, bound + Duration::from_secs(2));
        let error = match outcome {
            None => panic!(
                "{mode:?}: detach still blocked after {:?}",
                started.elapsed()
            ),
            Some(Ok(_)) => panic!("{mode:?}: a silent reset cannot succeed"),
            Some(Err(error)) => error,
        };
        assert!(error.contains("no answer within"), "{mode:?}: {error}");
    }
    drop(proxy);
}

/// TLS servers of this file.
struct Tls {
    pki: TestPki,
    valid: PgServer,
}

fn tls() -> &'static Tls {
    static S: OnceLock<Tls> = OnceLock::new();
    S.get_or_init(|| {
        let pki = TestPki::generate().expect("pki");
        let valid = PgServer::start_tls(&pki, ServerCert::Valid).expect("tls server");
        Tls { pki, valid }
    })
}

fn scram_login(server: &PgServer, port: u16, extra: &str) -> String {
    format!(
        "host=localhost port={port} user={} password={} dbname={} {extra}",
        server.scram_user(),
        server.scram_password(),
        server.database()
    )
}

/// `sslmode=prefer`: a TLS login that succeeded but was rejected by `target_session_attrs`
/// must not be retried on the same host without TLS (libpq moves to the next host: it never
/// sends a login in the clear to a server that just accepted TLS). It used to be: the
/// password login went over a plain connection, for nothing.
#[test]
fn prefer_does_not_retry_in_the_clear_after_a_target_session_attrs_rejection() {
    let s = tls();
    let upstream: SocketAddr = ([127, 0, 0, 1], s.valid.port()).into();
    let proxy = Proxy::start(upstream).expect("proxy");
    let args = PgDriver
        .parse_args(&scram_login(
            &s.valid,
            proxy.port(),
            "sslmode=prefer target_session_attrs=read-only",
        ))
        .expect("args");
    let error = match PgDriver.connect(&args, common::TIMEOUT) {
        Ok(_) => panic!("a primary is not read-only"),
        Err(e) => e,
    };
    eprintln!("error: {error}");
    assert_eq!(
        proxy.accepted(),
        1,
        "one host, one TLS login rejected by target_session_attrs: a second (plaintext) \
         connection was opened: {error}"
    );
}

/// Same size, same inode, same mtime: a CA file rewritten in place by a tool that keeps the
/// modification time (`cp -p`, `rsync --inplace -t`, `tar x`, `touch -r`) must still be read
/// again (the stamp holds the ctime, which no tool can set back). Here the trusted CA is
/// swapped for one that did NOT sign the server's certificate: `verify-full` must refuse. The
/// cached configuration used to be kept for the life of the process.
#[test]
fn a_ca_rewritten_in_place_with_the_same_size_and_mtime_is_read_again() {
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let unix_now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    };
    let s = tls();
    let dir = s
        .pki
        .dir()
        .join(format!("zz-rotation-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("dir");
    let ca = dir.join("ca.pem");
    let mut good = fs::read(s.pki.ca_cert()).expect("ca");
    let mut bad = fs::read(s.pki.other_ca_cert()).expect("other ca");
    let len = good.len().max(bad.len());
    good.resize(len, b'\n');
    bad.resize(len, b'\n');
    let mtime = SystemTime::now() - Duration::from_secs(3600);
    let write_in_place = |bytes: &[u8]| {
        let mut f = fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&ca)
            .expect("open");
        f.write_all(bytes).expect("write");
        f.set_modified(mtime).expect("mtime");
    };
    write_in_place(&good);
    // Old enough to be cached (a file changed in the last 2 s is always read again).
    let settled = Instant::now();
    while fs::metadata(&ca).expect("meta").ctime() > unix_now() - 3 {
        assert!(
            settled.elapsed() < Duration::from_secs(10),
            "ctime never settled"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let args = PgDriver
        .parse_args(&scram_login(
            &s.valid,
            s.valid.port(),
            &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        ))
        .expect("args");
    drop(
        PgDriver
            .connect(&args, common::TIMEOUT)
            .expect("trusted CA"),
    );
    write_in_place(&bad);
    match PgDriver.connect(&args, common::TIMEOUT) {
        Ok(_) => panic!(
            "connected with verify-full although sslrootcert now holds a CA that did not sign \
             the server certificate (stale cached configuration)"
        ),
        Err(e) => assert!(e.message().contains("CA"), "{e}"),
    }
}

/// A `PgCancelToken` names the server session (pid and secret key), which no reset changes: a
/// token one user took could cancel the next user's statement on the same session. It used
/// to (57014 on the next user's `pg_sleep`). A session whose token was handed out is closed on
/// release, not reused.
#[test]
fn a_session_whose_cancel_token_was_handed_out_is_not_reused() {
    for mode in [ResetMode::Full, ResetMode::RollbackOnly] {
        let mut conn = common::trust();
        let _token = conn
            .native_mut()
            .downcast_mut::<PgClient>()
            .expect("native")
            .cancel_token();
        match PgDriver.detach(conn, mode) {
            Ok(_) => panic!("{mode:?}: parked a session whose cancel token is out"),
            Err(e) => assert_eq!(e.kind(), DriverErrorKind::NotReusable, "{mode:?}: {e}"),
        }
    }
}
