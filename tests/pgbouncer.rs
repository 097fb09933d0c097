//! The pool behind PgBouncer (issue 10, "Scale-out behind PgBouncer"): a private PgBouncer 1.18
//! in front of a private PostgreSQL server, each test with its own PgBouncer.
//!
//! * Transaction pooling with `ResetMode::RollbackOnly`: statements with and without
//!   parameters (bytes among them), zero-row results, transactions, an error inside a
//!   transaction, and six pools standing in for six application servers sharing PgBouncer's
//!   four server connections under load.
//! * Session pooling with the full reset: nothing of one `open`'s session reaches the next.
//! * PgBouncer in front of a failover (issue 21): its target's primary is killed, the standby
//!   promoted and PgBouncer repointed at it under load; the pool's key stays the same.
//!
//! The first four run in plain text in front of this binary's shared PostgreSQL server, and
//! over TLS on both legs (issue 17, [`Leg::Tls`]): the pool connects to PgBouncer with
//! `sslmode=verify-full sslrootcert=<the test CA>` (PgBouncer presents a certificate of a
//! [`TestPki`] and refuses plain clients), and PgBouncer to a PostgreSQL server of the test's
//! own that accepts only TLS over TCP, with `server_tls_sslmode = verify-full`. One case also
//! requires client certificates of PgBouncer ([`Leg::TlsClientCert`]).
//!
//! PgBouncer runs with `server_round_robin = 1` (see `PgBouncer::config`): once more than one
//! server connection is open, consecutive transactions land on different ones, so a driver that
//! relies on anything living on "its" server connection between two transactions (a
//! protocol-level named prepared statement, say) fails deterministically, not only under an
//! unlucky interleaving. The transaction-mode tests check that their statements really did
//! move between server connections, and end by looking at every server connection for named
//! statements left behind (a describe that prepared `s7` on one server connection and closed
//! it on another).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::eventually;
use pool::{ResetMode, Settings, Value};
use pool_testservers::{
    ClientCerts, PgBouncer, PgReplication, PgServer, PoolMode, Replication, ServerCert, TestPki,
};
use postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};
use rstest::rstest;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the pool reaches PostgreSQL through PgBouncer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    /// Plain TCP on both legs, in front of this binary's shared PostgreSQL server.
    Plain,
    /// TLS on both legs: the pool verifies PgBouncer (`sslmode=verify-full`), PgBouncer
    /// verifies a PostgreSQL server of the test's own that refuses plain TCP.
    Tls,
    /// As [`Leg::Tls`], and PgBouncer requires a client certificate signed by the test CA
    /// (`client_tls_sslmode = verify-full`): the pool sends one (`sslcert`, `sslkey`).
    TlsClientCert,
}

/// A test's PgBouncer, and the PostgreSQL server behind it.
struct Bouncer {
    bouncer: PgBouncer,
    /// The TLS-only PostgreSQL server of a TLS case (dropped after PgBouncer).
    own_pg: Option<PgServer>,
    /// The test CA's certificate (TLS cases).
    ca: Option<std::path::PathBuf>,
    /// The client certificate and key PgBouncer requires ([`Leg::TlsClientCert`]).
    client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Deref for Bouncer {
    type Target = PgBouncer;
    fn deref(&self) -> &PgBouncer {
        &self.bouncer
    }
}

impl Bouncer {
    /// The PostgreSQL server behind PgBouncer (for `psql` as the superuser, over its socket).
    fn pg(&self) -> &PgServer {
        self.own_pg
            .as_ref()
            .unwrap_or_else(|| pool_testservers::shared_pg())
    }

    /// The pool's args for `pool_scram` through PgBouncer: plain, or verified TLS to
    /// `localhost` (with the client certificate PgBouncer requires).
    fn pool_args(&self) -> String {
        match self.bouncer.tls() {
            Some(_) => self.bouncer.tls_args("verify-full"),
            None => self.bouncer.args(),
        }
    }

    /// A direct (unpooled) `postgres` client through PgBouncer with `args` (PgBouncer's own
    /// `args()` or `admin_args()`): plain, or over TLS verifying PgBouncer's certificate
    /// (issued for `127.0.0.1`) against the test CA.
    fn client(&self, args: &str) -> Client {
        let connected = match &self.ca {
            None => Client::connect(args, NoTls),
            Some(ca) => Client::connect(
                &format!("{args} sslmode=require"),
                rustls_connector(ca, self.client_cert.as_ref()),
            ),
        };
        connected.unwrap_or_else(|e| panic!("connecting to PgBouncer: {e}"))
    }

    fn admin(&self) -> Client {
        self.client(&self.bouncer.admin_args())
    }
}

/// rustls on `ring` trusting only `ca` (host names checked), with a client certificate if given.
fn rustls_connector(
    ca: &std::path::Path,
    client_cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("reading the test CA") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("trusting the test CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .expect("reading the client certificate")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("a client certificate"),
                PrivateKeyDer::from_pem_file(key).expect("the client key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    MakeRustlsConnect::new(config)
}

fn start(mode: PoolMode, leg: Leg) -> Bouncer {
    let started = |r: Result<PgBouncer, _>| r.unwrap_or_else(|e| panic!("starting PgBouncer: {e}"));
    match leg {
        Leg::Plain => Bouncer {
            bouncer: started(PgBouncer::start(pool_testservers::shared_pg(), mode)),
            own_pg: None,
            ca: None,
            client_cert: None,
        },
        Leg::Tls | Leg::TlsClientCert => {
            let pki = TestPki::generate().unwrap_or_else(|e| panic!("making the test PKI: {e}"));
            let pg = PgServer::start_tls(&pki, ServerCert::Valid)
                .unwrap_or_else(|e| panic!("starting a TLS-only PostgreSQL: {e}"));
            let certs = if leg == Leg::TlsClientCert {
                ClientCerts::Required
            } else {
                ClientCerts::NotRequested
            };
            let bouncer = started(PgBouncer::start_tls(
                &pg,
                mode,
                &pki,
                ServerCert::Valid,
                certs,
            ));
            assert!(bouncer.server_tls(), "PgBouncer talks TLS to PostgreSQL");
            let client_cert = (leg == Leg::TlsClientCert).then(|| {
                let c = pki
                    .client(pg.scram_user())
                    .unwrap_or_else(|e| panic!("a client certificate: {e}"));
                (c.cert().to_path_buf(), c.key().to_path_buf())
            });
            Bouncer {
                bouncer,
                own_pg: Some(pg),
                ca: Some(pki.ca_cert().to_path_buf()),
                client_cert,
            }
        }
    }
}

/// A name no other test (or run) uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pool key of its own behind `bouncer`: PgBouncer's args plus a harmless `application_name`
/// (a different key, so a different pool; the same PgBouncer user and database, so the same
/// PgBouncer server pool).
fn pool_key(bouncer: &Bouncer, name: &str) -> String {
    format!("{} application_name={name}", bouncer.pool_args())
}

fn configure(key: &str, settings: Settings) {
    pool::configure("postgres", key, settings).expect("configure");
}

fn open(key: &str) -> pool::Conn {
    pool::open("postgres", key).unwrap_or_else(|e| panic!("open: {e}"))
}

fn query(conn: &mut pool::Conn, sql: &str, params: &[Value]) -> pool::Rows {
    conn.query(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn execute(conn: &mut pool::Conn, sql: &str, params: &[Value]) -> u64 {
    conn.execute(sql, params)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn int(conn: &mut pool::Conn, sql: &str, params: &[Value]) -> i64 {
    query(conn, sql, params)
        .scalar()
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{sql}: not one integer"))
}

fn rows(client: &mut Client, sql: &str) -> Vec<SimpleQueryRow> {
    client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

/// Opens PgBouncer's whole server pool (`default_pool_size` server connections) by holding as
/// many transactions open at once, then ends them. Without this a lone client would keep
/// getting the only server connection there is.
fn warm_up(bouncer: &Bouncer) {
    let mut held: Vec<Client> = (0..bouncer.default_pool_size())
        .map(|_| bouncer.client(&bouncer.args()))
        .collect();
    for c in &mut held {
        rows(c, "BEGIN; SELECT 1");
    }
    for c in &mut held {
        rows(c, "COMMIT");
    }
}

/// The protocol-level named prepared statements on every server connection of `bouncer`'s
/// pool, by backend pid. Each probe holds a transaction open, which pins one server connection
/// to it, so `default_pool_size` probes see every server connection the pool may have.
fn named_statements(bouncer: &Bouncer) -> BTreeMap<String, String> {
    let mut probes: Vec<Client> = (0..bouncer.default_pool_size())
        .map(|_| bouncer.client(&bouncer.args()))
        .collect();
    let mut found = BTreeMap::new();
    for probe in &mut probes {
        let row = rows(
            probe,
            "BEGIN; SELECT pg_backend_pid()::text AS pid, \
             coalesce(string_agg(name, ','), '') AS names \
             FROM pg_prepared_statements WHERE NOT from_sql",
        )
        .pop()
        .expect("one row");
        let pid = row.get("pid").expect("pid").to_owned();
        found.insert(pid, row.get("names").expect("names").to_owned());
    }
    for probe in &mut probes {
        rows(probe, "COMMIT");
    }
    assert_eq!(
        found.len(),
        bouncer.default_pool_size(),
        "each probe pinned a server connection of its own"
    );
    found
}

fn assert_no_named_statements(bouncer: &Bouncer) {
    let found = named_statements(bouncer);
    assert!(
        found.values().all(String::is_empty),
        "protocol-level named statements left on PgBouncer's server connections (pid: names): \
         {found:?}"
    );
}

/// PgBouncer's view of its server connections to `pool_test`: their backend pids.
fn server_pids(bouncer: &Bouncer) -> BTreeSet<String> {
    let mut admin = bouncer.admin();
    rows(&mut admin, "SHOW SERVERS")
        .iter()
        .filter(|r| r.get("database") == Some("pool_test"))
        .map(|r| r.get("remote_pid").expect("remote_pid").to_owned())
        .collect()
}

/// Whether every client and server connection of `pool_test` PgBouncer has is TLS (its
/// `SHOW CLIENTS` / `SHOW SERVERS` `tls` column is set), or every one plain, as `leg` says.
fn assert_legs(bouncer: &Bouncer, leg: Leg) {
    let mut admin = bouncer.admin();
    for show in ["SHOW CLIENTS", "SHOW SERVERS"] {
        let tls: Vec<String> = rows(&mut admin, show)
            .iter()
            .filter(|r| r.get("database") == Some("pool_test"))
            .map(|r| r.get("tls").unwrap_or_default().to_owned())
            .collect();
        assert!(!tls.is_empty(), "{show}: no connection of pool_test");
        let encrypted = tls.iter().filter(|t| !t.is_empty()).count();
        let want = if leg == Leg::Plain { 0 } else { tls.len() };
        assert_eq!(encrypted, want, "{show}, {leg:?}: tls columns {tls:?}");
    }
}

/// A TLS PgBouncer refuses the pool in plain text, and without the client certificate it
/// requires.
fn assert_tls_enforced(bouncer: &Bouncer) {
    let refused = |args: String, what: &str| {
        let err = match pool::open("postgres", &args) {
            Ok(_) => panic!("{what}: PgBouncer let the pool in"),
            Err(e) => e,
        };
        assert!(
            matches!(err, pool::Error::Connect { .. }),
            "{what}: not a connect error: {err:?}"
        );
        eprintln!("{what}: {err}");
    };
    refused(
        format!("{} sslmode=disable", bouncer.args()),
        "plain text to a TLS PgBouncer",
    );
    if bouncer.requires_client_certs() {
        let args = bouncer.tls_args("verify-full");
        let without_cert = args[..args.find(" sslcert=").expect("sslcert")].to_owned();
        refused(without_cert, "no client certificate");
    }
}

fn pid(conn: &mut pool::Conn) -> i64 {
    int(conn, "SELECT pg_backend_pid()", &[])
}

/// Statements through a transaction-mode PgBouncer give the results they give without it.
#[rstest]
#[case::plain(Leg::Plain)]
#[case::tls(Leg::Tls)]
#[case::tls_client_cert(Leg::TlsClientCert)]
fn transaction_mode_statements_params_bytes_and_zero_rows(#[case] leg: Leg) {
    let bouncer = start(PoolMode::Transaction, leg);
    if leg != Leg::Plain {
        assert_tls_enforced(&bouncer);
    }
    warm_up(&bouncer);
    let key = pool_key(&bouncer, "pgb_statements");
    configure(
        &key,
        Settings {
            max_open: 2,
            reset_mode: ResetMode::RollbackOnly,
            ..Settings::default()
        },
    );
    let table = unique("pgb_items");
    let mut conn = open(&key);
    execute(
        &mut conn,
        &format!("CREATE TABLE {table} (k int8 PRIMARY KEY, name text, payload bytea)"),
        &[],
    );

    // Every transaction goes to the next server connection: what follows crosses them.
    let (first, second) = (pid(&mut conn), pid(&mut conn));
    assert_ne!(
        first, second,
        "consecutive statements share a server connection"
    );

    // No parameters (simple protocol for execute, an unnamed statement for query).
    let rows = query(&mut conn, "SELECT 41 + 1 AS n, 'x'::text AS t", &[]);
    assert_eq!(rows.columns(), ["n", "t"]);
    assert_eq!(rows.rows(), [vec![Value::Int(42), Value::Text("x".into())]]);

    // Parameters of every kind, their types inferred by the server.
    let rows = query(
        &mut conn,
        "SELECT $1::int8 * 2 AS twice, $2 AS echo, $3::float8 AS f, $4::bool AS b, \
         $5::int4 AS nothing",
        &[
            Value::Int(21),
            Value::Text("hé".into()),
            Value::Float(0.5),
            Value::Bool(true),
            Value::Null,
        ],
    );
    assert_eq!(rows.columns(), ["twice", "echo", "f", "b", "nothing"]);
    assert_eq!(
        rows.rows(),
        [vec![
            Value::Int(42),
            Value::Text("hé".into()),
            Value::Float(0.5),
            Value::Bool(true),
            Value::Null,
        ]]
    );

    // Bytes: a parameter, stored, read back, and compared against.
    let raw = vec![0u8, 1, 0x80, 0xff];
    let rows = query(
        &mut conn,
        "SELECT $1::bytea AS raw, length($1) AS len",
        &[Value::Bytes(raw.clone())],
    );
    assert_eq!(
        rows.rows(),
        [vec![Value::Bytes(raw.clone()), Value::Int(4)]]
    );
    for k in 1..=3 {
        let inserted = execute(
            &mut conn,
            &format!("INSERT INTO {table} (k, name, payload) VALUES ($1, $2, $3)"),
            &[
                Value::Int(k),
                Value::Text(format!("item {k}")),
                Value::Bytes(raw.clone()),
            ],
        );
        assert_eq!(inserted, 1);
    }
    let rows = query(
        &mut conn,
        &format!("SELECT k, name FROM {table} WHERE payload = $1 AND k > $2 ORDER BY k"),
        &[Value::Bytes(raw.clone()), Value::Int(1)],
    );
    assert_eq!(
        rows.rows(),
        [
            vec![Value::Int(2), Value::Text("item 2".into())],
            vec![Value::Int(3), Value::Text("item 3".into())],
        ]
    );

    // Zero rows: the column names are still there, with and without (bytes) parameters.
    let empty = query(
        &mut conn,
        &format!("SELECT k, payload FROM {table} WHERE k = $1"),
        &[Value::Int(-1)],
    );
    assert_eq!(
        (empty.columns(), empty.len()),
        (&["k", "payload"].map(String::from)[..], 0)
    );
    let empty = query(
        &mut conn,
        &format!("SELECT name AS label FROM {table} WHERE payload = $1"),
        &[Value::Bytes(b"nothing like it".to_vec())],
    );
    assert_eq!(
        (empty.columns(), empty.len()),
        (&["label".to_owned()][..], 0)
    );
    let empty = query(
        &mut conn,
        &format!("SELECT k FROM {table} WHERE false"),
        &[],
    );
    assert_eq!((empty.columns(), empty.len()), (&["k".to_owned()][..], 0));
    conn.release().expect("release");

    // A committed transaction is visible afterwards, a rolled-back one is not, and one left
    // open at release is rolled back by the reset.
    let mut conn = open(&key);
    execute(&mut conn, "BEGIN", &[]);
    execute(
        &mut conn,
        &format!("INSERT INTO {table} (k) VALUES ($1)"),
        &[Value::Int(10)],
    );
    execute(&mut conn, "COMMIT", &[]);
    execute(&mut conn, "BEGIN", &[]);
    execute(
        &mut conn,
        &format!("INSERT INTO {table} (k) VALUES ($1)"),
        &[Value::Int(11)],
    );
    execute(&mut conn, "ROLLBACK", &[]);
    execute(&mut conn, "BEGIN", &[]);
    execute(
        &mut conn,
        &format!("INSERT INTO {table} (k) VALUES ($1)"),
        &[Value::Int(12)],
    );
    conn.release().expect("release inside a transaction");
    let mut conn = open(&key);
    let count = |conn: &mut pool::Conn, k: i64| {
        int(
            conn,
            &format!("SELECT count(*) FROM {table} WHERE k = $1"),
            &[Value::Int(k)],
        )
    };
    assert_eq!(count(&mut conn, 10), 1, "committed");
    assert_eq!(count(&mut conn, 11), 0, "rolled back");
    assert_eq!(count(&mut conn, 12), 0, "rolled back by the reset");
    let direct = bouncer
        .pg()
        .psql(&format!(
            "SELECT string_agg(k::text, ',' ORDER BY k) FROM {table}"
        ))
        .expect("psql");
    assert_eq!(direct, "1,2,3,10", "as PostgreSQL itself sees it");
    conn.release().expect("release");

    // An error inside a transaction: the release rolls the aborted transaction back and the
    // connection is parked, not closed; the next open gets it, usable.
    let stats_before = pool::stats("postgres", &key).expect("stats");
    let mut conn = open(&key);
    execute(&mut conn, "BEGIN", &[]);
    execute(
        &mut conn,
        &format!("INSERT INTO {table} (k) VALUES ($1)"),
        &[Value::Int(20)],
    );
    let err = conn
        .query("SELECT 1 / $1::int4 AS boom", &[Value::Int(0)])
        .expect_err("division by zero");
    assert!(err.to_string().contains("division by zero"), "{err}");
    let err = conn
        .query("SELECT 1", &[])
        .expect_err("the transaction is aborted");
    assert!(err.to_string().contains("aborted"), "{err}");
    conn.release().expect("release after an error");
    let mut conn = open(&key);
    assert_eq!(int(&mut conn, "SELECT 1 + $1::int4", &[Value::Int(1)]), 2);
    assert_eq!(count(&mut conn, 20), 0, "the failed transaction's insert");
    execute(&mut conn, &format!("DROP TABLE {table}"), &[]);
    conn.release().expect("release");
    let stats = pool::stats("postgres", &key).expect("stats");
    // (The primer may have opened its spare meanwhile, up to `max_open`: that is no
    // replacement, which would also close one.)
    assert_eq!(
        (stats.closed, stats.dropped_dead, stats.reset_failures),
        (stats_before.closed, 0, 0),
        "no connection was closed or replaced: {stats:?}"
    );
    assert!(stats.opened <= 2, "{stats:?}");

    assert_legs(&bouncer, leg);
    assert_no_named_statements(&bouncer);
}

/// One round of one worker of one application server (round `seq` picks what it does): the
/// backend pid a statement reported (0 if none did), or what went wrong.
fn work(key: &str, table: &str, app: usize, worker: usize, seq: i64) -> Result<i64, String> {
    let id = ((app * 100 + worker) as i64) * 1_000_000 + seq;
    let payload: Vec<u8> = id.to_be_bytes().iter().chain(&[0, 0xff]).copied().collect();
    let fail = |what: &str, e: pool::Error| format!("app {app} worker {worker} {what}: {e}");
    let mut conn = pool::open("postgres", key).map_err(|e| fail("open", e))?;
    let backend = match seq % 5 {
        0 => {
            let rows = conn
                .query(
                    "SELECT $1::int8 + 1 AS next, $2 AS echo, pg_backend_pid() AS pid",
                    &[Value::Int(id), Value::Text(format!("w{worker}"))],
                )
                .map_err(|e| fail("params", e))?;
            let want = [Value::Int(id + 1), Value::Text(format!("w{worker}"))];
            if rows.len() != 1 || rows.rows()[0][..2] != want {
                return Err(format!("params: got {:?}", rows.rows()));
            }
            rows.rows()[0][2].as_i64().unwrap_or(0)
        }
        1 => {
            conn.execute(
                &format!("INSERT INTO {table} (id, app, payload) VALUES ($1, $2, $3)"),
                &[
                    Value::Int(id),
                    Value::Int(app as i64),
                    Value::Bytes(payload.clone()),
                ],
            )
            .map_err(|e| fail("insert bytes", e))?;
            let rows = conn
                .query(
                    &format!("SELECT payload, pg_backend_pid() FROM {table} WHERE id = $1"),
                    &[Value::Int(id)],
                )
                .map_err(|e| fail("read bytes", e))?;
            if rows.rows().first().map(|r| &r[0]) != Some(&Value::Bytes(payload)) {
                return Err(format!("bytes: got {:?}", rows.rows()));
            }
            rows.rows()[0][1].as_i64().unwrap_or(0)
        }
        2 => {
            let rows = conn
                .query(
                    &format!("SELECT id, app FROM {table} WHERE payload = $1 AND app = $2"),
                    &[
                        Value::Bytes(b"no such payload".to_vec()),
                        Value::Int(app as i64),
                    ],
                )
                .map_err(|e| fail("zero rows", e))?;
            if rows.columns() != ["id", "app"] || !rows.is_empty() {
                return Err(format!(
                    "zero rows: got {:?} {:?}",
                    rows.columns(),
                    rows.rows()
                ));
            }
            0
        }
        3 => {
            conn.execute("BEGIN", &[]).map_err(|e| fail("begin", e))?;
            let inside = conn
                .query("SELECT pg_backend_pid()", &[])
                .map_err(|e| fail("in transaction", e))?;
            conn.execute(
                &format!("INSERT INTO {table} (id, app) VALUES ($1, $2)"),
                &[Value::Int(id), Value::Int(app as i64)],
            )
            .map_err(|e| fail("insert in transaction", e))?;
            conn.execute("COMMIT", &[]).map_err(|e| fail("commit", e))?;
            let seen = conn
                .query(
                    &format!("SELECT count(*) FROM {table} WHERE id = $1"),
                    &[Value::Int(id)],
                )
                .map_err(|e| fail("after commit", e))?;
            if seen.scalar() != Some(&Value::Int(1)) {
                return Err(format!("committed row not visible: {:?}", seen.rows()));
            }
            inside.scalar().and_then(Value::as_i64).unwrap_or(0)
        }
        _ => {
            conn.execute("BEGIN", &[]).map_err(|e| fail("begin", e))?;
            match conn.query("SELECT 1 / $1::int4", &[Value::Int(0)]) {
                Err(e) if e.to_string().contains("division by zero") => {}
                other => return Err(format!("expected division by zero, got {other:?}")),
            }
            0
        }
    };
    conn.release().map_err(|e| fail("release", e))?;
    Ok(backend)
}

/// Six application servers (a pool each, `max_open` 3, four worker threads each) share
/// PgBouncer's four server connections for a few seconds: no error, and PgBouncer really
/// multiplexed them.
#[rstest]
#[case::plain(Leg::Plain)]
#[case::tls(Leg::Tls)]
fn transaction_mode_six_app_servers_share_four_server_connections(#[case] leg: Leg) {
    const APPS: usize = 6;
    const WORKERS: usize = 4;
    const MAX_OPEN: usize = 3;
    const LOAD: Duration = Duration::from_secs(3);
    let bouncer = start(PoolMode::Transaction, leg);
    let table = unique("pgb_load");
    bouncer
        .pg()
        .psql(&format!(
            "CREATE TABLE {table} (id int8 PRIMARY KEY, app int4, payload bytea); \
         GRANT ALL ON {table} TO pool_scram"
        ))
        .expect("create table");
    let keys: Vec<String> = (0..APPS)
        .map(|app| pool_key(&bouncer, &format!("pgb_app{app}")))
        .collect();
    for key in &keys {
        configure(
            key,
            Settings {
                max_open: MAX_OPEN,
                reset_mode: ResetMode::RollbackOnly,
                ..Settings::default()
            },
        );
    }

    let errors = Mutex::new(Vec::new());
    let backends = Mutex::new(BTreeSet::new());
    let statements = AtomicUsize::new(0);
    let until = Instant::now() + LOAD;
    thread::scope(|s| {
        for (app, key) in keys.iter().enumerate() {
            for worker in 0..WORKERS {
                let (errors, backends, statements, table) =
                    (&errors, &backends, &statements, &table);
                s.spawn(move || {
                    let mut seq = 0;
                    while Instant::now() < until {
                        match work(key, table, app, worker, seq) {
                            Ok(0) => {}
                            Ok(pid) => {
                                backends.lock().unwrap().insert(pid.to_string());
                            }
                            Err(e) => errors.lock().unwrap().push(e),
                        }
                        statements.fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                    }
                });
            }
        }
    });

    let errors = errors.into_inner().unwrap();
    assert!(
        errors.is_empty(),
        "{} of {} rounds failed; the first ones:\n{}",
        errors.len(),
        statements.load(Ordering::Relaxed),
        errors[..errors.len().min(10)].join("\n")
    );
    let rounds = statements.load(Ordering::Relaxed);
    assert!(rounds >= APPS * WORKERS * 5, "only {rounds} rounds ran");

    // PgBouncer was in front: the pools held more connections than PgBouncer has server
    // connections, and every statement ran on one of those at most four.
    let opened: u64 = keys
        .iter()
        .map(|k| pool::stats("postgres", k).expect("stats").opened)
        .sum();
    assert!(
        opened > bouncer.default_pool_size() as u64,
        "the pools opened {opened} connections"
    );
    let backends = backends.into_inner().unwrap();
    let servers = server_pids(&bouncer);
    assert!(
        (2..=bouncer.default_pool_size()).contains(&backends.len()),
        "statements ran on the backends {backends:?}"
    );
    assert!(
        backends.is_subset(&servers) && servers.len() <= bouncer.default_pool_size(),
        "backends seen {backends:?}, PgBouncer's server connections {servers:?}"
    );
    let direct = bouncer
        .pg()
        .psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid IN ({})",
            backends.iter().cloned().collect::<Vec<_>>().join(",")
        ))
        .expect("psql");
    assert_eq!(
        direct,
        backends.len().to_string(),
        "still PostgreSQL's backends"
    );

    assert_legs(&bouncer, leg);
    assert_no_named_statements(&bouncer);
    bouncer
        .pg()
        .psql(&format!("DROP TABLE {table}"))
        .expect("drop table");
}

/// Clients waiting in PgBouncer's queue for a server connection, by `application_name`.
fn waiting_clients(bouncer: &Bouncer, application_name: &str) -> usize {
    let mut admin = bouncer.admin();
    rows(&mut admin, "SHOW CLIENTS")
        .iter()
        .filter(|r| {
            r.get("state") == Some("waiting") && r.get("application_name") == Some(application_name)
        })
        .count()
}

/// Found by the load test above, when its pools ran with background resets: behind a
/// transaction-mode PgBouncer a connection released inside a transaction keeps its server
/// connection until its rollback has run, and a connection that only ran autocommit statements
/// needs a free server connection for its rollback. On one resetter thread per pool, one at a
/// time, the second kind at the head of the queue waited for a server connection that only the
/// first kind, queued behind it (in this pool or another), would free: every resetter stuck
/// until PgBouncer's `query_wait_timeout` (120 s), and with them PgBouncer's whole server pool,
/// for every application server behind it. Seen failing so (all four backends "idle in
/// transaction (aborted)", 4 resets pending after 20 s). Since then a `RollbackOnly` reset
/// (one round trip) runs on the releasing thread whatever `background_reset` says, and each
/// release waits only for its own server connection.
///
/// Here two pools with the default settings (but `RollbackOnly`), every connection held by a
/// thread of its own as a request handler would: each pool's first release is a used, idle
/// session whose rollback must wait for a server connection, released while four failed
/// transactions (two per pool) hold all four; then those four are released.
#[rstest]
#[case::plain(Leg::Plain)]
#[case::tls(Leg::Tls)]
fn rollback_only_resets_never_wait_on_each_other_for_pgbouncers_server_connections(
    #[case] leg: Leg,
) {
    let bouncer = start(PoolMode::Transaction, leg);
    let names = ["pgb_deadlock_a", "pgb_deadlock_b"];
    let keys: Vec<String> = names.iter().map(|n| pool_key(&bouncer, n)).collect();
    for key in &keys {
        configure(
            key,
            Settings {
                max_open: 3,
                reset_mode: ResetMode::RollbackOnly,
                ..Settings::default()
            },
        );
    }
    let released = AtomicUsize::new(0);
    thread::scope(|s| {
        let handler = |key, work| handler(s, key, &released, work);
        // First, one session per pool that ran a statement outside a transaction (it holds no
        // server connection now, and its rollback will need one).
        let used: Vec<_> = keys
            .iter()
            .map(|key| {
                handler(key, |conn| {
                    execute(conn, "SELECT 1", &[]);
                })
            })
            .collect();
        // Then four failed transactions, two per pool, holding all four server connections.
        let aborted: Vec<_> = keys
            .iter()
            .flat_map(|key| [key, key])
            .map(|key| {
                handler(key, |conn| {
                    execute(conn, "BEGIN", &[]);
                    conn.execute("SELECT 1 / 0", &[])
                        .expect_err("division by zero");
                })
            })
            .collect();
        for (go, name) in used.into_iter().zip(names) {
            go.send(()).expect("release the used session");
            assert!(
                eventually(Duration::from_secs(10), || waiting_clients(&bouncer, name)
                    == 1),
                "the rollback of {name}'s used session waits for a server connection"
            );
        }
        for go in aborted {
            go.send(()).expect("release the failed transaction");
        }
    });
    assert_eq!(released.load(Ordering::SeqCst), 6);
    for (key, name) in keys.iter().zip(names) {
        let stats = || pool::stats("postgres", key).expect("stats");
        assert!(
            eventually(Duration::from_secs(20), || stats().resetting == 0),
            "{name}: {} resets still pending after 20 s, {} clients waiting in PgBouncer",
            stats().resetting,
            waiting_clients(&bouncer, name)
        );
        assert_eq!(stats().in_use, 0);
        assert_eq!(stats().reset_failures, 0);
    }
    assert_legs(&bouncer, leg);
}

/// A request handler on a thread of its own: opens a connection of `key`, does `work` on it and
/// holds it until the returned sender says to release it.
fn handler<'scope>(
    s: &'scope thread::Scope<'scope, '_>,
    key: &'scope str,
    released: &'scope AtomicUsize,
    work: fn(&mut pool::Conn),
) -> mpsc::Sender<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    s.spawn(move || {
        let mut conn = open(key);
        work(&mut conn);
        let (go_tx, go_rx) = mpsc::channel::<()>();
        ready_tx.send(go_tx).expect("ready");
        go_rx.recv().expect("go");
        conn.release().expect("release");
        released.fetch_add(1, Ordering::SeqCst);
    });
    ready_rx.recv().expect("handler ready")
}

/// What a session can leave behind, as one line.
const SESSION_STATE: &str = "SELECT concat_ws(' ', \
    'app=' || current_setting('application_name'), \
    'search_path=' || current_setting('search_path'), \
    'work_mem=' || current_setting('work_mem'), \
    'tenant=' || coalesce(current_setting('app.tenant', true), ''), \
    'temp=' || (SELECT count(*) FROM pg_class WHERE relpersistence = 't'), \
    'prepared=' || (SELECT count(*) FROM pg_prepared_statements), \
    'xact=' || coalesce(pg_current_xact_id_if_assigned()::text, 'none'))";

fn session_state(conn: &mut pool::Conn) -> String {
    match query(conn, SESSION_STATE, &[]).scalar() {
        Some(Value::Text(s)) => s.clone(),
        other => panic!("session state: {other:?}"),
    }
}

fn dirty(conn: &mut pool::Conn) {
    for sql in [
        "SET application_name = 'dirty'",
        "SET search_path = pg_temp, public",
        "SET work_mem = '1MB'",
        "SELECT set_config('app.tenant', 'acme', false)",
        "CREATE TEMP TABLE scratch (x int)",
        "PREPARE mine AS SELECT 1",
        "BEGIN",
        "INSERT INTO scratch VALUES (1)",
    ] {
        execute(conn, sql, &[]);
    }
}

/// Session pooling pins a server connection to each client connection, so the session a pool
/// parks is the one it hands out next: the full reset must clean it, and does.
#[rstest]
#[case::plain(Leg::Plain)]
#[case::tls(Leg::Tls)]
fn session_mode_full_reset_leaves_nothing_for_the_next_open(#[case] leg: Leg) {
    let bouncer = start(PoolMode::Session, leg);
    let key = pool_key(&bouncer, "pgb_session");
    configure(
        &key,
        Settings {
            max_open: 1,
            ..Settings::default()
        },
    );
    let mut conn = open(&key);
    let backend = pid(&mut conn);
    let clean = session_state(&mut conn);
    dirty(&mut conn);
    conn.release().expect("release");

    let mut conn = open(&key);
    assert_eq!(pid(&mut conn), backend, "the same server session");
    let after = session_state(&mut conn);
    // RESET ALL returns application_name to the server session's default; behind PgBouncer
    // that is not the name the client connected with (PgBouncer sets that with SET when it
    // assigns the server connection) but empty. Nothing of the previous user's remains.
    assert_eq!(
        after,
        clean.replace("app=pgb_session", "app="),
        "state after the full reset (before: {clean})"
    );
    conn.release().expect("release");
    assert_eq!(pool::stats("postgres", &key).expect("stats").opened, 1);

    // Why the full reset is needed here: with RollbackOnly the same session keeps its state.
    let leaky = pool_key(&bouncer, "pgb_session_rollback_only");
    configure(
        &leaky,
        Settings {
            max_open: 1,
            reset_mode: ResetMode::RollbackOnly,
            ..Settings::default()
        },
    );
    let mut conn = open(&leaky);
    execute(&mut conn, "SET search_path = pg_temp, public", &[]);
    conn.release().expect("release");
    let mut conn = open(&leaky);
    let kept = session_state(&mut conn);
    assert!(kept.contains("search_path=pg_temp, public"), "{kept}");
    conn.release().expect("release");
    assert_legs(&bouncer, leg);
}

/// Issue 21, "PgBouncer in front of the failover": the pool's key names PgBouncer, PgBouncer's
/// `[databases]` entry names the primary of a synchronous primary + standby pair. Under load
/// (writer threads: open, INSERT a unique id, release, through a transaction-mode PgBouncer)
/// the primary is killed (SIGKILL), the standby promoted a second later, and PgBouncer
/// repointed at it (its ini rewritten, `RELOAD` over its console), as an operator or a
/// failover manager would. The pool's key never changes.
///
/// Every failed call is transient (a 503 for a handler) and bounded, writes go through again
/// soon after the repoint, and no write the pool acknowledged is missing on the new primary
/// (synchronous replication: every acknowledged commit was on the standby). The test prints
/// the error window, the time from the repoint to the first successful write and the slowest
/// call.
#[test]
fn writes_go_on_through_pgbouncer_when_its_target_fails_over() {
    const WRITERS: usize = 4;
    const BEFORE: Duration = Duration::from_secs(1);
    const DOWN_FOR: Duration = Duration::from_secs(1);
    const AFTER: Duration = Duration::from_secs(3);
    let mut pair = PgReplication::start(Replication::Synchronous)
        .unwrap_or_else(|e| panic!("starting a primary and a synchronous standby: {e}"));
    let mut bouncer = PgBouncer::start(pair.primary(), PoolMode::Transaction)
        .unwrap_or_else(|e| panic!("starting PgBouncer: {e}"));
    // After a failed connect to its server PgBouncer refuses every client for
    // `server_login_retry` ("server login has been failing, try again later"), 15 s by
    // default, and a RELOAD that moves its target does not cut that short: with the default,
    // writes resumed 13.8 s after the repoint (an error window of 15.0 s). A deployment that
    // repoints PgBouncer on failover lowers it, as here.
    bouncer
        .set("server_login_retry", "1")
        .unwrap_or_else(|e| panic!("setting server_login_retry: {e}"));
    let table = unique("pgb_failover");
    pair.primary()
        .psql(&format!(
            "CREATE TABLE {table} (id int8 PRIMARY KEY, writer int4); \
             GRANT ALL ON {table} TO pool_scram"
        ))
        .expect("create table");
    pair.wait_caught_up().expect("the table on the standby");
    let key = format!("{} application_name=pgb_failover", bouncer.args());
    let settings = Settings {
        max_open: WRITERS,
        reset_mode: ResetMode::RollbackOnly,
        acquire_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        check_timeout: Duration::from_secs(1),
        statement_timeout: Some(Duration::from_secs(2)),
        primer_backoff_max: Duration::from_millis(500),
        ..Settings::default()
    };
    // Waiting for a connection, connecting, then a statement past its deadline and the cancel,
    // with room for a slow, shared machine.
    let bound = settings.acquire_timeout
        + settings.connect_timeout
        + settings.statement_timeout.unwrap_or_default()
        + Duration::from_secs(2);
    configure(&key, settings);

    struct Outcome {
        finished: Instant,
        took: Duration,
        /// The id, if the pool acknowledged the write (the INSERT and the release succeeded).
        acked: Option<i64>,
        error: Option<String>,
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let outcomes = Mutex::new(Vec::new());
    let (mut killed, mut promoted, mut repointed) =
        (Instant::now(), Instant::now(), Instant::now());
    thread::scope(|s| {
        for writer in 0..WRITERS {
            let (stop, outcomes, key, table) = (&stop, &outcomes, &key, &table);
            s.spawn(move || {
                let mut seq = 0i64;
                while !stop.load(Ordering::SeqCst) {
                    seq += 1;
                    let id = writer as i64 * 1_000_000 + seq;
                    let started = Instant::now();
                    let result = (|| {
                        let mut conn = pool::open("postgres", key)?;
                        conn.execute(
                            &format!("INSERT INTO {table} (id, writer) VALUES ($1, $2)"),
                            &[Value::Int(id), Value::Int(writer as i64)],
                        )?;
                        conn.release()
                    })();
                    let error = match result {
                        Ok(()) => None,
                        Err(e) => {
                            assert!(e.is_transient(), "not a 503-able error: {e:?}");
                            Some(e.to_string())
                        }
                    };
                    outcomes.lock().unwrap().push(Outcome {
                        finished: Instant::now(),
                        took: started.elapsed(),
                        acked: error.is_none().then_some(id),
                        error,
                    });
                }
            });
        }
        thread::sleep(BEFORE);
        killed = Instant::now();
        pair.kill_primary().expect("kill the primary");
        thread::sleep(DOWN_FOR);
        pair.promote_standby().expect("promote the standby");
        promoted = Instant::now();
        bouncer
            .retarget(pair.primary().port())
            .unwrap_or_else(|e| panic!("repointing PgBouncer: {e}"));
        repointed = Instant::now();
        thread::sleep(AFTER);
        stop.store(true, Ordering::SeqCst);
    });

    let outcomes = outcomes.into_inner().unwrap();
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap_or_default();
    let errors: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    let first_error = errors.iter().map(|o| o.finished).min();
    let last_error = errors.iter().map(|o| o.finished).max();
    let first_write_after_repoint = outcomes
        .iter()
        .filter(|o| o.acked.is_some() && o.finished > repointed)
        .map(|o| o.finished.duration_since(repointed))
        .min();
    let acked: BTreeSet<i64> = outcomes.iter().filter_map(|o| o.acked).collect();
    let stored: BTreeSet<i64> = pair
        .primary()
        .psql(&format!("SELECT id FROM {table}"))
        .expect("reading the writes back from the new primary")
        .lines()
        .map(|l| l.parse().expect("an id"))
        .collect();
    let lost = acked.difference(&stored).count();
    let unacked_but_stored = stored.difference(&acked).count();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for e in errors.iter().filter_map(|o| o.error.as_deref()) {
        // The message without the pool's key and advice: what a handler saw, grouped.
        let kind = e.split(": ").skip(1).take(2).collect::<Vec<_>>().join(": ");
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!(
        "PgBouncer in front of a failover (synchronous replication, {WRITERS} writers): {} \
         calls, {} failed; killed → promoted {:?}, promoted → repointed {:?}; error window {:?} \
         (first error {:?} after the kill, last {:?} after the repoint); repoint → first \
         successful write {:?}; slowest call {slowest:?} (bound {bound:?}); acknowledged writes \
         {}, lost {lost}; committed but not acknowledged {unacked_but_stored}\nerrors by kind: \
         {kinds:#?}",
        outcomes.len(),
        errors.len(),
        promoted.duration_since(killed),
        repointed.duration_since(promoted),
        first_error
            .zip(last_error)
            .map(|(f, l)| l.duration_since(f)),
        first_error.map(|f| f.saturating_duration_since(killed)),
        last_error.map(|l| l.saturating_duration_since(repointed)),
        first_write_after_repoint,
        acked.len(),
    );
    assert!(!errors.is_empty(), "the failover was noticed");
    assert!(
        slowest <= bound,
        "a call took {slowest:?} (bound {bound:?})"
    );
    assert!(
        first_write_after_repoint.is_some_and(|t| t <= Duration::from_secs(2)),
        "writes resumed {first_write_after_repoint:?} after the repoint"
    );
    let late: Vec<&str> = errors
        .iter()
        .filter(|o| o.finished > repointed + Duration::from_secs(2))
        .filter_map(|o| o.error.as_deref())
        .collect();
    assert!(
        late.is_empty(),
        "failures more than 2 s after the repoint: {late:#?}"
    );
    assert_eq!(lost, 0, "acknowledged writes missing on the new primary");
    let stats = pool::stats("postgres", &key).expect("stats");
    assert!(stats.in_use == 0 && stats.waiting == 0, "{stats:?}");
}
