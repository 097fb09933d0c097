//! The MySQL/MariaDB driver against the conformance suite every driver runs
//! (dev/conformance), on a private MariaDB server. MariaDB-specific behaviour (roles, the
//! current database, both protocols) is tested in the other files here.

use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;

use pool_conformance::{Preamble, StateProbe, Statement, Subject, TestPki, TlsCases, TlsSubject};
use pool_driver::Value;
use pool_mysql::{MyConn, MysqlDriver};
use pool_testservers::{MariaServer, ServerCert};

struct Maria {
    server: Mutex<MariaServer>,
    port: u16,
    args: String,
    password: String,
    /// The TLS servers, started by the first TLS check.
    tls: OnceLock<MariaTls>,
}

/// Three private TLS servers from one throwaway PKI: each presents one of the test
/// certificates (valid for localhost/127.0.0.1, valid for another host only, expired).
struct MariaTls {
    pki: TestPki,
    valid: MariaServer,
    wrong_host: MariaServer,
    expired: MariaServer,
}

impl MariaTls {
    fn start() -> MariaTls {
        let pki = TestPki::generate().unwrap_or_else(|e| panic!("making the test PKI: {e}"));
        let start = |cert| {
            MariaServer::start_tls(&pki, cert)
                .unwrap_or_else(|e| panic!("starting MariaDB with {cert:?}: {e}"))
        };
        let (valid, wrong_host, expired) = thread::scope(|scope| {
            let valid = scope.spawn(|| start(ServerCert::Valid));
            let wrong_host = scope.spawn(|| start(ServerCert::WrongHost));
            let expired = start(ServerCert::Expired);
            let join = |h: thread::ScopedJoinHandle<'_, MariaServer>| {
                h.join()
                    .unwrap_or_else(|_| panic!("starting a TLS server panicked"))
            };
            (join(valid), join(wrong_host), expired)
        });
        MariaTls {
            pki,
            valid,
            wrong_host,
            expired,
        }
    }
}

/// A path as a quoted argument value.
fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}

/// What the indirect probes need, made by `root` before any session (as a migration would):
/// a role granted to the test user, and procedures that change the role and the current
/// database. `SQL SECURITY INVOKER`, so they act on the caller's session: a definer-rights
/// procedure of `root` would switch roles in `root`'s borrowed security context, not the
/// caller's. Made here, not in a probe's `prepare`, so that nothing the probed session sends
/// names a role or says `USE`: the driver must find the state by asking the server.
const SETUP: &str = "CREATE ROLE IF NOT EXISTS conformance_role; \
     GRANT conformance_role TO pool_user; \
     CREATE OR REPLACE PROCEDURE pool_test.conformance_set_role() SQL SECURITY INVOKER \
         SET ROLE conformance_role; \
     CREATE OR REPLACE PROCEDURE pool_test.conformance_switch_db() SQL SECURITY INVOKER \
         EXECUTE IMMEDIATE 'USE information_schema'";

impl Maria {
    fn start() -> Maria {
        let server = MariaServer::start().unwrap_or_else(|e| panic!("starting MariaDB: {e}"));
        server
            .sql(SETUP)
            .unwrap_or_else(|e| panic!("setting up roles and procedures: {e}"));
        Maria {
            port: server.port(),
            args: server.args(),
            password: server.password().to_owned(),
            server: Mutex::new(server),
            tls: OnceLock::new(),
        }
    }
}

impl Subject for Maria {
    type Driver = MysqlDriver;
    type Native = mysql::Conn;

    fn driver(&self) -> &MysqlDriver {
        &MysqlDriver
    }

    fn args(&self, port: Option<u16>) -> String {
        format!("{} port={}", self.args, port.unwrap_or(self.port))
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn wrong_password_args(&self, password: &str) -> String {
        self.args.replace(&self.password, password)
    }

    fn session_id(&self, conn: &mut MyConn) -> Value {
        Value::Int(i64::from(conn.connection_id()))
    }

    fn kill_session(&self, id: &Value) {
        let id = id.as_i64().expect("a connection id");
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .sql(&format!("KILL CONNECTION {id}"))
            .unwrap_or_else(|e| panic!("kill: {e}"));
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        vec![
            StateProbe {
                name: "a user variable",
                prepare: vec![],
                set: vec![Statement::new("SET @conformance = 42")],
                observe: Statement::new("SELECT @conformance"),
            },
            StateProbe {
                name: "a session variable",
                prepare: vec![],
                set: vec![Statement::new("SET SESSION sql_mode = 'ANSI'")],
                observe: Statement::new("SELECT @@SESSION.sql_mode"),
            },
            StateProbe {
                name: "a named lock",
                prepare: vec![],
                set: vec![Statement::new("SELECT GET_LOCK('conformance', 0)")],
                observe: Statement::new("SELECT IS_USED_LOCK('conformance') IS NOT NULL"),
            },
            StateProbe {
                name: "an open transaction",
                prepare: vec![],
                set: vec![Statement::new("START TRANSACTION WITH CONSISTENT SNAPSHOT")],
                observe: Statement::new("SELECT @@in_transaction"),
            },
            // MariaDB's COM_RESET_CONNECTION keeps the current role and database, however
            // they were changed; none of these statements says so in its text.
            StateProbe {
                name: "a role set by a procedure",
                prepare: vec![],
                set: vec![Statement::new("CALL conformance_set_role()")],
                observe: Statement::new("SELECT CURRENT_ROLE()"),
            },
            StateProbe {
                name: "a role set by EXECUTE IMMEDIATE",
                prepare: vec![],
                set: vec![Statement::new(
                    "EXECUTE IMMEDIATE CONCAT('SET RO', 'LE conformance_role')",
                )],
                observe: Statement::new("SELECT CURRENT_ROLE()"),
            },
            StateProbe {
                name: "a role set by a prepared statement",
                prepare: vec![],
                set: vec![
                    Statement::new(
                        "SET @conformance_sql = CONCAT('SET RO', 'LE conformance_role')",
                    ),
                    Statement::new("PREPARE conformance_stmt FROM @conformance_sql"),
                    Statement::new("EXECUTE conformance_stmt"),
                ],
                observe: Statement::new("SELECT CURRENT_ROLE()"),
            },
            StateProbe {
                name: "a database switched by a procedure",
                prepare: vec![],
                set: vec![Statement::new("CALL conformance_switch_db()")],
                observe: Statement::new("SELECT DATABASE()"),
            },
            StateProbe {
                name: "a database switched by EXECUTE IMMEDIATE",
                prepare: vec![],
                set: vec![Statement::new(
                    "EXECUTE IMMEDIATE CONCAT('US', 'E information_schema')",
                )],
                observe: Statement::new("SELECT DATABASE()"),
            },
            // MariaDB 10.11 keeps the profiling history (statement texts) through
            // COM_RESET_CONNECTION, and goes on profiling although @@profiling then says 0.
            StateProbe {
                name: "statement profiles",
                prepare: vec![],
                set: vec![
                    Statement::new("SET profiling = 1"),
                    Statement::new("SELECT 'the previous user''s statement'"),
                ],
                observe: Statement::new("SELECT COUNT(*) FROM information_schema.PROFILING"),
            },
        ]
    }

    fn slow_statement(&self, seconds: f64) -> Option<Statement> {
        Some(Statement::new(format!("SELECT SLEEP({seconds})")))
    }

    fn transaction_probe(&self) -> StateProbe {
        StateProbe {
            name: "a write in an open transaction",
            prepare: vec![Statement::new(
                "CREATE TABLE IF NOT EXISTS conformance_tx (x INT) ENGINE = InnoDB",
            )],
            set: vec![
                Statement::new("START TRANSACTION"),
                Statement::new("INSERT INTO conformance_tx VALUES (1)"),
            ],
            observe: Statement::new("SELECT COUNT(*) FROM conformance_tx"),
        }
    }

    /// MariaDB's TLS section (the cases are described in `pool_conformance::tls`). Users:
    /// `pool_tls` (`REQUIRE SSL`) for password logins over TLS, so a plain connect of it is
    /// the "plain to a TLS-only server" case; `pool_x509` (`REQUIRE X509`) for the client
    /// certificate.
    fn tls(&self) -> Option<TlsSubject> {
        let t = self.tls.get_or_init(MariaTls::start);
        let pki = &t.pki;
        let ca = quoted(pki.ca_cert());
        let (valid, wrong_host) = (t.valid.port(), t.wrong_host.port());
        let login = format!(
            "user={} password={} dbname=pool_test",
            t.valid.tls_user(),
            t.valid.tls_password()
        );
        let x509 = format!(
            "user={} password={} dbname=pool_test",
            t.valid.x509_user(),
            t.valid.x509_password()
        );
        let client = pki.client(t.valid.x509_user()).ok()?;
        let foreign = pki.untrusted_client(t.valid.x509_user()).ok()?;
        let verified = |port: u16, ca: &str| {
            format!("host=localhost port={port} {login} ssl-mode=VERIFY_IDENTITY ssl-ca={ca}")
        };
        let silent_login = login.clone();
        let silent_ca = ca.clone();
        Some(
            TlsSubject::new(
                pki.clone(),
                TlsCases {
                    verified: t.valid.tls_args("VERIFY_IDENTITY"),
                    wrong_ca: verified(valid, &quoted(pki.other_ca_cert())),
                    wrong_host: t.wrong_host.tls_args("VERIFY_IDENTITY"),
                    expired: t.expired.tls_args("VERIFY_IDENTITY"),
                    unverified: format!(
                        "host=localhost port={wrong_host} {login} ssl-mode=REQUIRED"
                    ),
                    plain_to_tls_only: format!(
                        "host=127.0.0.1 port={valid} {login} ssl-mode=DISABLED"
                    ),
                    client_cert: t.valid.x509_args(),
                    client_cert_missing: format!(
                        "host=localhost port={valid} {x509} ssl-mode=VERIFY_IDENTITY ssl-ca={ca}"
                    ),
                    key_as_ca: verified(valid, &quoted(client.key())),
                },
                move |port| {
                    format!(
                        "host=localhost port={port} {silent_login} ssl-mode=VERIFY_IDENTITY \
                         ssl-ca={silent_ca}"
                    )
                },
            )
            .preferring(
                format!("{} ssl-mode=PREFERRED", self.args),
                Some(format!(
                    "host=localhost port={valid} {login} ssl-mode=PREFERRED"
                )),
            )
            .probed_by(Statement::new(
                "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
                 WHERE VARIABLE_NAME = 'Ssl_cipher'",
            ))
            .silent_preamble(Preamble::Greet(t.valid.greeting().ok()?))
            .also_accepts(
                "the IP address in the certificate",
                verified(valid, &ca).replace("host=localhost", "host=127.0.0.1"),
            )
            .also_accepts(
                "the URL form",
                format!(
                    "mysql://{}:{}@localhost:{valid}/pool_test?ssl-mode=VERIFY_IDENTITY\
                     &ssl-ca={}",
                    t.valid.tls_user(),
                    t.valid.tls_password(),
                    pki.ca_cert().display()
                ),
            )
            .also_accepts(
                "VERIFY_CA with a certificate for another host",
                t.wrong_host.tls_args("VERIFY_CA"),
            )
            .also_accepts(
                "ssl-ca without ssl-mode (VERIFY_CA)",
                format!("host=localhost port={wrong_host} {login} ssl-ca={ca}"),
            )
            .also_refuses(
                "REQUIRED against a server without TLS",
                format!("{} ssl-mode=REQUIRED", self.args),
            )
            .also_refuses(
                "REQUIRED with ssl-ca verifies the chain (an expired certificate)",
                t.expired.tls_args("REQUIRED"),
            )
            .also_refuses(
                "a client certificate from another CA",
                format!(
                    "host=localhost port={valid} {x509} ssl-mode=VERIFY_IDENTITY ssl-ca={ca} \
                     ssl-cert={} ssl-key={}",
                    quoted(foreign.cert()),
                    quoted(foreign.key())
                ),
            )
            .also_refuses(
                "REQUIRED on a unix socket (never encrypted)",
                format!("{} ssl-mode=REQUIRED", t.valid.socket_args()),
            ),
        )
    }

    fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .restart()
            .unwrap_or_else(|e| panic!("restarting MariaDB: {e}"));
    }
}

pool_conformance::conformance_tests!(Maria, Maria::start());
