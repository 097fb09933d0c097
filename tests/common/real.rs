//! Fixtures for tests against real private servers (`pool-testservers`).
//!
//! Tests of one binary share one PostgreSQL and one MariaDB server and run in parallel, while
//! pools are process-wide and keyed by driver + arguments. So every test gets its own login
//! user ([`fresh_user`]): its own pool key, and a way to count *its* sessions on the server
//! ([`Admin::sessions`]), independent of what other tests do at the same time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use mysql::prelude::Queryable;
use pool::{Conn, Settings, Stats, Value};
use pool_testservers::{
    shared_maria, shared_pg, MariaServer, PgServer, ServerCert, ServerError, TestPki,
};

/// The two built-in drivers, each against its own kind of server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The `"postgres"` driver against PostgreSQL.
    Postgres,
    /// The `"mysql"` driver against MariaDB.
    Maria,
}

impl Backend {
    /// The pool driver name.
    pub fn driver(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Maria => "mysql",
        }
    }

    /// The shared server of this test binary (started on first use).
    pub fn shared(self) -> Server<'static> {
        match self {
            Backend::Postgres => Server::Pg(shared_pg()),
            Backend::Maria => Server::Maria(shared_maria()),
        }
    }

    /// The query that names the server session (backend pid / connection id).
    pub fn session_id_sql(self) -> &'static str {
        match self {
            Backend::Postgres => "SELECT pg_backend_pid()",
            Backend::Maria => "SELECT CONNECTION_ID()",
        }
    }

    /// The `n`-th (1-based) parameter placeholder.
    pub fn param(self, n: usize) -> String {
        match self {
            Backend::Postgres => format!("${n}"),
            Backend::Maria => "?".to_owned(),
        }
    }

    /// The server session behind `conn`.
    pub fn session_id(self, conn: &mut Conn) -> i64 {
        let rows = conn
            .query(self.session_id_sql(), &[])
            .expect("session id query");
        rows.scalar()
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("session id is not an integer: {rows:?}"))
    }

    /// Whether `conn` is inside a transaction block.
    ///
    /// PostgreSQL: `SAVEPOINT` is only accepted inside a transaction block (outside it fails
    /// with SQLSTATE 25P01, a harmless error); inside, the savepoint is released again at once.
    /// MariaDB: `@@in_transaction`.
    pub fn in_transaction(self, conn: &mut Conn) -> bool {
        match self {
            Backend::Postgres => match conn.execute("SAVEPOINT pool_probe", &[]) {
                Ok(_) => {
                    conn.execute("RELEASE SAVEPOINT pool_probe", &[])
                        .expect("release the probe savepoint");
                    true
                }
                Err(pool::Error::Query(e)) if e.code() == Some("25P01") => false,
                Err(e) => panic!("unexpected error probing the transaction state: {e}"),
            },
            Backend::Maria => {
                let rows = conn
                    .query("SELECT @@in_transaction", &[])
                    .expect("@@in_transaction");
                match rows.scalar().and_then(Value::as_i64) {
                    Some(0) => false,
                    Some(1) => true,
                    other => panic!("unexpected @@in_transaction: {other:?}"),
                }
            }
        }
    }
}

/// A server to run tests against: a shared one, or one a fault test owns.
#[derive(Clone, Copy, Debug)]
pub enum Server<'a> {
    Pg(&'a PgServer),
    Maria(&'a MariaServer),
}

impl Server<'_> {
    pub fn backend(self) -> Backend {
        match self {
            Server::Pg(_) => Backend::Postgres,
            Server::Maria(_) => Backend::Maria,
        }
    }

    pub fn port(self) -> u16 {
        match self {
            Server::Pg(s) => s.port(),
            Server::Maria(s) => s.port(),
        }
    }

    /// Whether the server speaks only TLS over TCP (a PostgreSQL server from
    /// [`start_pg_tls`]).
    pub fn tls(self) -> bool {
        matches!(self, Server::Pg(s) if s.tls().is_some())
    }

    /// What a test prints for this server: `PostgreSQL`, `PostgreSQL over TLS`, `MariaDB`.
    pub fn label(self) -> &'static str {
        match self {
            Server::Pg(_) if self.tls() => "PostgreSQL over TLS",
            Server::Pg(_) => "PostgreSQL",
            Server::Maria(_) => "MariaDB",
        }
    }

    /// Runs `sql` as the superuser (`pool_trust` through `psql`, `root` through `mariadb`).
    pub fn superuser_sql(self, sql: &str) -> String {
        match self {
            Server::Pg(s) => s.psql(sql),
            Server::Maria(s) => s.sql(sql),
        }
        .unwrap_or_else(|e| panic!("superuser SQL failed: {sql}: {e}"))
    }

    /// A direct (unpooled) administrative connection. On a TLS server (which refuses plain
    /// TCP) over its unix socket, which stays plain.
    pub fn admin(self) -> Admin {
        match self {
            Server::Pg(s) => Admin::Pg(Box::new(
                postgres::Client::connect(
                    &if self.tls() {
                        s.trust_socket_args()
                    } else {
                        s.trust_args()
                    },
                    postgres::NoTls,
                )
                .expect("admin connection to PostgreSQL"),
            )),
            Server::Maria(s) => {
                // `pool_user` has PROCESS, so it sees every session in the processlist.
                let opts = mysql::OptsBuilder::new()
                    .ip_or_hostname(Some("127.0.0.1"))
                    .tcp_port(s.port())
                    .user(Some(s.user()))
                    .pass(Some(s.password()))
                    .db_name(Some("pool_test"))
                    .prefer_socket(false);
                Admin::Maria(mysql::Conn::new(opts).expect("admin connection to MariaDB"))
            }
        }
    }
}

/// A server a fault test owns: it may stop, kill and restart it.
pub enum OwnServer {
    Pg(PgServer),
    Maria(MariaServer),
}

impl OwnServer {
    pub fn start(backend: Backend) -> OwnServer {
        match backend {
            Backend::Postgres => OwnServer::Pg(start_server("PostgreSQL", PgServer::start)),
            Backend::Maria => OwnServer::Maria(start_server("MariaDB", MariaServer::start)),
        }
    }

    /// A private PostgreSQL server that speaks only TLS over TCP ([`start_pg_tls`]).
    pub fn start_pg_tls() -> OwnServer {
        OwnServer::Pg(start_pg_tls())
    }

    pub fn server(&self) -> Server<'_> {
        match self {
            OwnServer::Pg(s) => Server::Pg(s),
            OwnServer::Maria(s) => Server::Maria(s),
        }
    }

    /// SIGKILL (crash), after making recent commits durable: the test servers trade durability
    /// for speed (PostgreSQL `synchronous_commit = off`, InnoDB `flush_log_at_trx_commit = 0`),
    /// so commits of the last few hundred milliseconds, such as the test's own user, would not
    /// survive a SIGKILL otherwise.
    pub fn kill(&mut self) {
        match self {
            OwnServer::Pg(s) => {
                s.psql("CHECKPOINT").expect("checkpoint");
                s.kill().expect("kill");
            }
            OwnServer::Maria(s) => {
                s.sql("FLUSH TABLES; FLUSH ENGINE LOGS").expect("flush");
                s.kill().expect("kill");
            }
        }
    }

    /// Starts a killed or stopped server again on the same port with the same data; returns
    /// once it accepts connections.
    pub fn start_again(&mut self) {
        self.restart();
    }

    /// Stops the server and starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        match self {
            OwnServer::Pg(s) => s.restart(),
            OwnServer::Maria(s) => s.restart(),
        }
        .expect("restarting the server")
    }
}

/// Starts a private server, panicking with the reason if it cannot.
pub fn start_server<T>(what: &str, start: impl Fn() -> Result<T, ServerError>) -> T {
    start().unwrap_or_else(|e| panic!("starting a private {what}: {e}"))
}

/// A private PostgreSQL server with TLS, presenting a valid certificate (`localhost`,
/// `127.0.0.1`) from a PKI made for it (kept as long as the server). Over TCP it accepts TLS
/// only (`hostnossl ... reject`), so nothing a test does there can silently run in plain text;
/// [`fresh_user`] gives its users `sslmode=verify-full` arguments, [`Server::admin`] goes
/// through the (plain) unix socket.
pub fn start_pg_tls() -> PgServer {
    let pki = TestPki::generate().unwrap_or_else(|e| panic!("making the test PKI: {e}"));
    start_server("PostgreSQL with TLS", || {
        PgServer::start_tls(&pki, ServerCert::Valid)
    })
}

/// The server of one test case: a backend's shared server, or a PostgreSQL server of the
/// case's own that speaks only TLS ([`start_pg_tls`]).
pub enum CaseServer {
    Shared(Backend),
    PgTls(Box<PgServer>),
}

impl CaseServer {
    /// Starts a private TLS PostgreSQL server for the case.
    pub fn pg_tls() -> CaseServer {
        CaseServer::PgTls(Box::new(start_pg_tls()))
    }

    pub fn server(&self) -> Server<'_> {
        match self {
            CaseServer::Shared(backend) => backend.shared(),
            CaseServer::PgTls(s) => Server::Pg(s),
        }
    }
}

/// A direct administrative connection, not through the pool and not as any test user, so it
/// never shows up in a test user's session count.
pub enum Admin {
    Pg(Box<postgres::Client>),
    Maria(mysql::Conn),
}

impl Admin {
    /// How many server sessions `user` has right now.
    pub fn sessions(&mut self, user: &str) -> i64 {
        match self {
            Admin::Pg(c) => c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                    &[&user],
                )
                .expect("counting sessions in pg_stat_activity")
                .get(0),
            Admin::Maria(c) => c
                .exec_first::<i64, _, _>(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
                    (user,),
                )
                .expect("counting sessions in the processlist")
                .unwrap_or(0),
        }
    }

    /// Whether the server session `id` (backend pid / connection id) still exists.
    pub fn session_exists(&mut self, id: i64) -> bool {
        match self {
            Admin::Pg(c) => {
                let pid = i32::try_from(id).expect("a backend pid fits in int4");
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                        &[&pid],
                    )
                    .expect("looking up a backend")
                    .get(0);
                n > 0
            }
            Admin::Maria(c) => {
                let n = c
                    .exec_first::<i64, _, _>(
                        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?",
                        (id,),
                    )
                    .expect("looking up a session")
                    .unwrap_or(0);
                n > 0
            }
        }
    }
}

/// A login user that belongs to one test: its own pool key and its own server sessions.
#[derive(Debug)]
pub struct TestUser<'a> {
    pub backend: Backend,
    /// The login name (lower case; also a prefix for the test's own objects).
    pub name: String,
    /// The pool arguments (TCP to 127.0.0.1; on a TLS server to `localhost` with
    /// `sslmode=verify-full sslrootcert=<the CA>`).
    pub args: String,
    pub server: Server<'a>,
}

/// The password every MariaDB test user gets (PostgreSQL test users authenticate by trust,
/// over verified TLS on a TLS server).
pub const MARIA_TEST_PASSWORD: &str = "t-user-pw";

/// Creates a login user for one test on `server`, named after `tag` (letters, digits, `_`).
///
/// PostgreSQL: `LOGIN`, all rights on database `pool_test` and schema `public`, member of
/// `pool_other` (so it may `SET ROLE pool_other`); trust authentication over TCP (on a TLS
/// server: over TLS, and its arguments verify the server's certificate and host name).
/// MariaDB: `'name'@'%'` and `'name'@'localhost'` with [`MARIA_TEST_PASSWORD`], all rights on
/// `pool_test.*` (as the testservers crate sets up `pool_user`).
pub fn fresh_user<'a>(server: Server<'a>, tag: &str) -> TestUser<'a> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let backend = server.backend();
    let name = format!(
        "t_{}_{}_{n}",
        tag.to_ascii_lowercase(),
        match backend {
            Backend::Postgres => "pg",
            Backend::Maria => "my",
        }
    );
    // PostgreSQL fails concurrent GRANTs on the same object ("tuple concurrently updated":
    // every user here is granted rights on the same database and schema), so users are
    // created one at a time.
    static CREATING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = CREATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let args = match server {
        Server::Pg(s) => {
            s.psql(&format!(
                "CREATE ROLE {name} LOGIN; GRANT ALL ON DATABASE pool_test TO {name}; \
                 GRANT ALL ON SCHEMA public TO {name}; GRANT pool_other TO {name}"
            ))
            .unwrap_or_else(|e| panic!("creating PostgreSQL role {name}: {e}"));
            if s.tls().is_some() {
                // `host=localhost port=N user=pool_scram password=... dbname=pool_test
                // sslmode=verify-full sslrootcert=<CA>`, as this user (trusted: no password).
                let scram = format!("user={} password={}", s.scram_user(), s.scram_password());
                let args = s.tls_args("verify-full");
                assert!(args.contains(&scram), "unexpected TLS args: {args}");
                args.replace(&scram, &format!("user={name}"))
            } else {
                format!(
                    "host=127.0.0.1 port={} user={name} dbname=pool_test",
                    s.port()
                )
            }
        }
        Server::Maria(s) => {
            s.sql(&format!(
                "CREATE USER '{name}'@'%' IDENTIFIED BY '{MARIA_TEST_PASSWORD}'; \
                 CREATE USER '{name}'@'localhost' IDENTIFIED BY '{MARIA_TEST_PASSWORD}'; \
                 GRANT ALL ON pool_test.* TO '{name}'@'%', '{name}'@'localhost'"
            ))
            .unwrap_or_else(|e| panic!("creating MariaDB user {name}: {e}"));
            format!(
                "host=127.0.0.1 port={} user={name} password={MARIA_TEST_PASSWORD} \
                 dbname=pool_test",
                s.port()
            )
        }
    };
    TestUser {
        backend,
        name,
        args,
        server,
    }
}

impl TestUser<'_> {
    pub fn driver(&self) -> &'static str {
        self.backend.driver()
    }

    /// `pool::open` for this user's key; panics with the error.
    #[track_caller]
    pub fn open(&self) -> Conn {
        pool::open(self.driver(), &self.args)
            .unwrap_or_else(|e| panic!("open as {} failed: {e}", self.name))
    }

    /// Releases `conn` and waits until its reset (on the resetter thread) is done, so that the
    /// next `open` gets this same session back: it is then the newest parked connection (LIFO
    /// by release order; a spare the primer parks meanwhile goes below it).
    #[track_caller]
    pub fn release_on_top(&self, conn: Conn) -> Stats {
        conn.release()
            .unwrap_or_else(|e| panic!("release as {} failed: {e}", self.name));
        self.settled()
    }

    /// Waits until no released connection of this user's key is still being reset and no
    /// connect is in flight (the primer's spare included), and returns the stats then: every
    /// released session is parked, in release order.
    #[track_caller]
    pub fn settled(&self) -> Stats {
        super::wait_until("no reset or connect in flight", super::SOON, || {
            let s = self.stats();
            s.resetting == 0 && s.opening == 0
        });
        self.stats()
    }

    /// `pool::configure` for this user's key.
    pub fn configure(&self, settings: Settings) {
        pool::configure(self.driver(), &self.args, settings).expect("configure");
    }

    /// `pool::stats` for this user's key.
    pub fn stats(&self) -> Stats {
        pool::stats(self.driver(), &self.args).expect("stats")
    }

    /// Creates an empty table `<name>_rows (id int)` owned by / writable for this user, as the
    /// superuser (so the user's pool sees no connection for it). Returns the table name.
    pub fn create_table(&self) -> String {
        let table = format!("{}_rows", self.name);
        let sql = match self.backend {
            Backend::Postgres => format!(
                "CREATE TABLE {table} (id int); ALTER TABLE {table} OWNER TO {}",
                self.name
            ),
            Backend::Maria => format!("CREATE TABLE pool_test.{table} (id INT) ENGINE=InnoDB"),
        };
        self.server.superuser_sql(&sql);
        table
    }

    /// Rows of `table`, counted by `conn`.
    pub fn count_rows(&self, conn: &mut Conn, table: &str) -> i64 {
        conn.query(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .expect("count rows")
            .scalar()
            .and_then(Value::as_i64)
            .expect("count is an integer")
    }
}
