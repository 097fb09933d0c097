//! The private servers of a run without `--url`: a plain PostgreSQL, MariaDB and Redis, and a
//! TLS one of each with a throwaway CA (dev/testservers). The machine's own servers are never
//! used.

use std::thread;

use pool::ConnArgs;
use pool_testservers::{
    ClientCerts, MariaServer, PgServer, RedisServer, ServerCert, ServerError, TestPki,
};

use crate::measure::BoxError;

/// The running servers: dropping this stops them and deletes their files (and the CA's).
pub struct Servers {
    _pg: PgServer,
    _pg_tls: PgServer,
    _maria: MariaServer,
    _maria_tls: MariaServer,
    _redis: RedisServer,
    _redis_tls: RedisServer,
}

/// One target to measure: the pool's driver name and its arguments.
pub struct Endpoint {
    pub driver: &'static str,
    pub args: String,
}

/// Starts the six servers and returns the arguments of each, plain and TLS next to each other
/// per driver.
///
/// The TLS targets differ from the plain ones only by TLS: the same address (`127.0.0.1`,
/// which the test certificate names, so `verify-full`/`VERIFY_IDENTITY` check it as they would
/// a host name), the same kind of login (PostgreSQL's trust-auth user, MariaDB's and Redis's
/// password users; MariaDB's TLS user is `REQUIRE SSL`), and full verification against the
/// test CA. The two PostgreSQL servers start on threads of their own while this thread starts
/// the two MariaDB servers: `initdb` and `mariadb-install-db` take seconds each.
pub fn start() -> Result<(Servers, Vec<Endpoint>), BoxError> {
    let pki = TestPki::generate().map_err(|e| format!("making the test CA: {e}"))?;
    let (pg, pg_tls, maria, maria_tls) = thread::scope(|scope| {
        let pg = scope.spawn(PgServer::start);
        let pg_tls = scope.spawn(|| PgServer::start_tls(&pki, ServerCert::Valid));
        let maria = MariaServer::start().map_err(|e| format!("starting MariaDB: {e}"));
        let maria_tls = MariaServer::start_tls(&pki, ServerCert::Valid)
            .map_err(|e| format!("starting MariaDB with TLS: {e}"));
        (
            joined(pg, "PostgreSQL"),
            joined(pg_tls, "PostgreSQL with TLS"),
            maria,
            maria_tls,
        )
    });
    let (pg, pg_tls, maria, maria_tls) = (pg?, pg_tls?, maria?, maria_tls?);
    let redis = RedisServer::start().map_err(|e| format!("starting Redis: {e}"))?;
    let redis_tls = RedisServer::start_tls(&pki, ServerCert::Valid, ClientCerts::NotRequested)
        .map_err(|e| format!("starting Redis with TLS: {e}"))?;

    let ca = pki.ca_cert().to_string_lossy().into_owned();
    let port = |p: u16| p.to_string();
    // `canonical` quotes each value as the `key=value` parser expects (a CA path with a space).
    let pg_tls_args = ConnArgs::from_pairs([
        ("host", "127.0.0.1".to_owned()),
        ("port", port(pg_tls.port())),
        ("user", pg_tls.trust_user().to_owned()),
        ("dbname", pg_tls.database().to_owned()),
        ("sslmode", "verify-full".to_owned()),
        ("sslrootcert", ca.clone()),
    ])
    .canonical();
    let maria_tls_args = ConnArgs::from_pairs([
        ("host", "127.0.0.1".to_owned()),
        ("port", port(maria_tls.port())),
        ("user", maria_tls.tls_user().to_owned()),
        ("password", maria_tls.tls_password().to_owned()),
        ("dbname", maria_tls.database().to_owned()),
        ("ssl-mode", "VERIFY_IDENTITY".to_owned()),
        ("ssl-ca", ca.clone()),
    ])
    .canonical();
    let redis_tls_args = ConnArgs::from_pairs([
        ("host", "127.0.0.1".to_owned()),
        ("port", port(redis_tls.port())),
        ("user", redis_tls.user().to_owned()),
        ("password", redis_tls.password().to_owned()),
        ("tls", "on".to_owned()),
        ("cacert", ca),
    ])
    .canonical();
    let endpoints = vec![
        Endpoint {
            driver: "postgres",
            args: pg.url(),
        },
        Endpoint {
            driver: "postgres",
            args: pg_tls_args,
        },
        Endpoint {
            driver: "mysql",
            args: maria.url(),
        },
        Endpoint {
            driver: "mysql",
            args: maria_tls_args,
        },
        // `key=value` args for its ACL user; the machine's own Redis (6379) is never used.
        Endpoint {
            driver: "redis",
            args: redis.args(),
        },
        Endpoint {
            driver: "redis",
            args: redis_tls_args,
        },
    ];
    let servers = Servers {
        _pg: pg,
        _pg_tls: pg_tls,
        _maria: maria,
        _maria_tls: maria_tls,
        _redis: redis,
        _redis_tls: redis_tls,
    };
    Ok((servers, endpoints))
}

/// The server a starting thread made, or why it has none (its error, or its panic).
fn joined(
    handle: thread::ScopedJoinHandle<'_, Result<PgServer, ServerError>>,
    what: &str,
) -> Result<PgServer, String> {
    match handle.join() {
        Ok(started) => started.map_err(|e| format!("starting {what}: {e}")),
        Err(_) => Err(format!("starting {what}: the starting thread panicked")),
    }
}
