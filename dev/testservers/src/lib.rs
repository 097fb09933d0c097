//! Throwaway private PostgreSQL, MariaDB and Redis servers for tests, benches and examples.
//!
//! Each server lives in its own temporary directory (data, unix socket, logs) and listens only on
//! `127.0.0.1` at a port picked free at start. The machine's own database services (and their
//! ports, sockets and config files) are never used, so tests may stop, kill and restart these
//! servers freely.
//!
//! ```no_run
//! let pg = pool_testservers::PgServer::start()?;
//! assert_eq!(pg.psql("SELECT 1")?, "1");
//! let conninfo = pg.trust_args(); // "host=127.0.0.1 port=NNNN user=pool_trust dbname=pool_test"
//! # let _ = conninfo;
//! # Ok::<(), pool_testservers::ServerError>(())
//! ```
//!
//! # TLS
//!
//! [`TestPki`] makes a throwaway CA and certificates at test time (a valid server certificate,
//! one for the wrong host name, an expired one, client certificates, a second unrelated CA).
//! [`PgServer::start_tls`], [`MariaServer::start_tls`] / [`MariaServer::start_tls_only`] and
//! [`RedisServer::start_tls`] start servers presenting one of them ([`ServerCert`]); each
//! keeps a [`ServerTls`] ([`PgServer::tls`], ...) that names the CA and client files a
//! client needs, and has helpers that build client arguments (`tls_args`, `cert_args`,
//! `x509_args`, `tls_url`, `tls_client_url`). A [`SilentListener`] accepts connections and
//! never answers (optionally after a [`Preamble`], so a client stalls inside its TLS
//! handshake), for "the handshake is bounded" tests.
//!
//! ```no_run
//! use pool_testservers::{ClientCerts, RedisServer, ServerCert, TestPki};
//! let pki = TestPki::generate()?;
//! let redis = RedisServer::start_tls(&pki, ServerCert::Valid, ClientCerts::Required)?;
//! // rediss://pool_user:redis-secret-pw@localhost:NNNN/0?cacert=...&cert=...&key=...
//! let url = redis.tls_client_url();
//! # let _ = url;
//! # Ok::<(), pool_testservers::ServerError>(())
//! ```
//!
//! # Root
//!
//! `initdb`, `postgres` and `mariadbd` refuse to run as root, and CI runs as root. Then the
//! servers run as the `postgres` / `mysql` system users (`Command::uid`/`gid`), and their
//! directories are chowned to those users. Otherwise they run as the current user.
//!
//! # Nothing left behind
//!
//! Three layers make sure no server outlives its test process:
//!
//! 1. `Drop` of [`PgServer`] / [`MariaServer`] stops the server (clean shutdown, SIGKILL after a
//!    timeout), reaps it, and deletes its directory. This covers servers a test owns, also when
//!    the test panics.
//! 2. The shared instances ([`shared_pg`], [`shared_maria`]) sit in statics whose `Drop` never
//!    runs; an `atexit` handler stops them and deletes their directories. Test binaries end with
//!    `exit` (via `std::process::exit` or by returning from `main`), which runs it.
//! 3. If the process is killed outright, the kernel's parent-death signal (`PR_SET_PDEATHSIG`)
//!    shuts each server down: SIGINT (fast shutdown) for PostgreSQL, SIGTERM for MariaDB. That
//!    signal fires when the *thread* that spawned the server exits, so servers are spawned from
//!    a keeper thread that lives as long as the process (see `process.rs`). Directories left by
//!    such a death are deleted by the next start (see `workdir.rs`).
//!
//! Each server runs in its own process group, out of reach of a terminal's Ctrl-C, which would
//! otherwise hit it before the test process has cleaned up.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod error;
mod maria;
mod pg;
mod pg_replication;
mod pgbouncer;
mod pki;
mod process;
mod proxy;
mod redis;
mod redis_sentinel;
mod silent;
mod supervisor;
mod workdir;

use std::sync::{Once, OnceLock};

pub use error::ServerError;
pub use maria::MariaServer;
pub use pg::PgServer;
pub use pg_replication::{PgReplication, Replication};
pub use pgbouncer::{PgBouncer, PoolMode};
pub use pki::{ClientCert, ServerCert, ServerTls, TestPki};
pub use proxy::{Proxy, ProxyMode};
pub use redis::{ClientCerts, RedisServer};
pub use redis_sentinel::RedisSentinel;
pub use silent::{Preamble, SilentListener};

static SHARED_PG: OnceLock<PgServer> = OnceLock::new();
static SHARED_MARIA: OnceLock<MariaServer> = OnceLock::new();
static SHARED_REDIS: OnceLock<RedisServer> = OnceLock::new();

/// One PostgreSQL server shared by all tests of this test binary, started on first use and
/// stopped when the process exits.
///
/// Tests sharing it must not stop or kill it; start an own [`PgServer`] for fault tests.
///
/// # Panics
///
/// If the server cannot be started (the message says why, e.g. which package to install).
pub fn shared_pg() -> &'static PgServer {
    register_exit_handler();
    SHARED_PG.get_or_init(|| {
        PgServer::start().unwrap_or_else(|e| panic!("starting the shared PostgreSQL server: {e}"))
    })
}

/// One MariaDB server shared by all tests of this test binary, started on first use and stopped
/// when the process exits.
///
/// Tests sharing it must not stop or kill it; start an own [`MariaServer`] for fault tests.
///
/// # Panics
///
/// If the server cannot be started (the message says why, e.g. which package to install).
pub fn shared_maria() -> &'static MariaServer {
    register_exit_handler();
    SHARED_MARIA.get_or_init(|| {
        MariaServer::start().unwrap_or_else(|e| panic!("starting the shared MariaDB server: {e}"))
    })
}

/// One Redis server shared by all tests of this test binary, started on first use and stopped
/// when the process exits.
///
/// Tests sharing it must not stop or kill it; start an own [`RedisServer`] for fault tests.
///
/// # Panics
///
/// If the server cannot be started (the message says why, e.g. which package to install).
pub fn shared_redis() -> &'static RedisServer {
    register_exit_handler();
    SHARED_REDIS.get_or_init(|| {
        RedisServer::start().unwrap_or_else(|e| panic!("starting the shared Redis server: {e}"))
    })
}

fn register_exit_handler() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn()`; if registration fails, layer 3 (the
        // parent-death signal) still stops the servers.
        unsafe {
            libc::atexit(stop_shared_servers);
        }
    });
}

extern "C" fn stop_shared_servers() {
    // A panic must not unwind into libc.
    let _ = std::panic::catch_unwind(|| {
        if let Some(pg) = SHARED_PG.get() {
            pg.dispose_at_exit();
        }
        if let Some(maria) = SHARED_MARIA.get() {
            maria.dispose_at_exit();
        }
        if let Some(redis) = SHARED_REDIS.get() {
            redis.dispose_at_exit();
        }
    });
}
