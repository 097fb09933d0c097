//! The PostgreSQL driver against the conformance suite every driver runs (dev/conformance),
//! on a private server. PostgreSQL-specific behaviour is tested in the other files here.

use std::sync::{Mutex, OnceLock, PoisonError};

use pool_conformance::{Preamble, StateProbe, Statement, Subject, TlsCases, TlsSubject};
use pool_driver::{Connection, Value};
use pool_postgres::{PgClient, PgConn, PgDriver};
use pool_testservers::{PgServer, ServerCert, TestPki};

struct Postgres {
    server: Mutex<PgServer>,
    port: u16,
    scram: String,
    tls: OnceLock<PgTls>,
}

/// The TLS servers of the suite's TLS section, started on first use: one per server
/// certificate (valid, for another host, expired), all TLS-only over TCP.
struct PgTls {
    pki: TestPki,
    valid: PgServer,
    wrong_host: PgServer,
    expired: PgServer,
}

impl PgTls {
    fn start() -> PgTls {
        let pki = TestPki::generate().unwrap_or_else(|e| panic!("making certificates: {e}"));
        let start = |cert| {
            PgServer::start_tls(&pki, cert)
                .unwrap_or_else(|e| panic!("starting a TLS PostgreSQL ({cert:?}): {e}"))
        };
        PgTls {
            valid: start(ServerCert::Valid),
            wrong_host: start(ServerCert::WrongHost),
            expired: start(ServerCert::Expired),
            pki,
        }
    }
}

impl Postgres {
    fn start() -> Postgres {
        let server = PgServer::start().unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
        Postgres {
            port: server.port(),
            scram: server.scram_args(),
            server: Mutex::new(server),
            tls: OnceLock::new(),
        }
    }

    fn psql(&self, sql: &str) -> String {
        let server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server.psql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Subject for Postgres {
    type Driver = PgDriver;
    type Native = PgClient;

    fn driver(&self) -> &PgDriver {
        &PgDriver
    }

    fn args(&self, port: Option<u16>) -> String {
        format!("{} port={}", self.scram, port.unwrap_or(self.port))
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn wrong_password_args(&self, password: &str) -> String {
        format!("{} password={password}", self.scram)
    }

    fn session_id(&self, conn: &mut PgConn) -> Value {
        let rows = conn.query("SELECT pg_backend_pid()", &[]).expect("pid");
        rows.scalar().cloned().expect("one value")
    }

    fn kill_session(&self, id: &Value) {
        let pid = id.as_i64().expect("a pid");
        self.psql(&format!("SELECT pg_terminate_backend({pid})"));
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        vec![
            StateProbe {
                name: "a setting",
                prepare: vec![],
                set: vec![Statement::new("SET statement_timeout = '4321s'")],
                observe: Statement::new("SHOW statement_timeout"),
            },
            StateProbe {
                name: "a temporary table",
                prepare: vec![],
                set: vec![Statement::new("CREATE TEMP TABLE conformance_tmp (x int)")],
                observe: Statement::new("SELECT to_regclass('pg_temp.conformance_tmp')::text"),
            },
            StateProbe {
                name: "an advisory lock",
                prepare: vec![],
                set: vec![Statement::new("SELECT pg_advisory_lock(4242)")],
                observe: Statement::new(
                    "SELECT count(*) FROM pg_locks \
                     WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
                ),
            },
            StateProbe {
                name: "a prepared statement",
                prepare: vec![],
                set: vec![Statement::new("PREPARE conformance_q AS SELECT 1")],
                observe: Statement::new(
                    "SELECT count(*) FROM pg_prepared_statements WHERE name = 'conformance_q'",
                ),
            },
            StateProbe {
                name: "a LISTEN",
                prepare: vec![],
                set: vec![Statement::new("LISTEN conformance_channel")],
                observe: Statement::new("SELECT count(*) FROM pg_listening_channels()"),
            },
            StateProbe {
                name: "an open transaction",
                prepare: vec![],
                set: vec![Statement::new("BEGIN ISOLATION LEVEL SERIALIZABLE")],
                observe: Statement::new("SHOW transaction_isolation"),
            },
            // State changed inside functions and `DO` blocks: the statement the session sent
            // never says `SET ROLE`. (`pg_temp` functions: nothing outlives the session.)
            StateProbe {
                name: "a role set inside a function",
                prepare: vec![Statement::new(
                    "CREATE FUNCTION pg_temp.conformance_set_role() RETURNS void \
                     LANGUAGE plpgsql AS $$ BEGIN SET ROLE pool_other; END $$",
                )],
                set: vec![Statement::new("SELECT pg_temp.conformance_set_role()")],
                observe: Statement::new("SELECT current_user::text"),
            },
            StateProbe {
                name: "a setting set inside an SQL function",
                prepare: vec![Statement::new(
                    "CREATE FUNCTION pg_temp.conformance_set_app() RETURNS text LANGUAGE sql \
                     AS $$ SELECT set_config('app.conformance', 'leaked', false) $$",
                )],
                set: vec![Statement::new("SELECT pg_temp.conformance_set_app()")],
                // A placeholder setting resets to '' rather than to unset (see reset.rs).
                observe: Statement::new(
                    "SELECT coalesce(current_setting('app.conformance', true), '')",
                ),
            },
            StateProbe {
                name: "a role set through EXECUTE in a DO block",
                prepare: vec![],
                set: vec![Statement::new(
                    "DO $$ BEGIN EXECUTE 'SET RO' || 'LE pool_other'; END $$",
                )],
                observe: Statement::new("SELECT current_user::text"),
            },
            StateProbe {
                name: "a setting set through EXECUTE in a DO block",
                prepare: vec![],
                set: vec![Statement::new(
                    "DO $$ BEGIN EXECUTE format('SET %I = %L', 'work_mem', '1234kB'); END $$",
                )],
                observe: Statement::new("SHOW work_mem"),
            },
        ]
    }

    fn slow_statement(&self, seconds: f64) -> Option<Statement> {
        Some(Statement::new(format!("SELECT pg_sleep({seconds})::text")))
    }

    fn transaction_probe(&self) -> StateProbe {
        StateProbe {
            name: "a write in an open transaction",
            prepare: vec![Statement::new(
                "CREATE TABLE IF NOT EXISTS conformance_tx (x int)",
            )],
            set: vec![
                Statement::new("BEGIN"),
                Statement::new("INSERT INTO conformance_tx VALUES (1)"),
            ],
            observe: Statement::new("SELECT count(*) FROM conformance_tx"),
        }
    }

    fn tls(&self) -> Option<TlsSubject> {
        let t = self.tls.get_or_init(PgTls::start);
        let pki = &t.pki;
        let ca = pki.ca_cert().display().to_string();
        let (valid, wrong_host) = (t.valid.port(), t.wrong_host.port());
        let login = format!(
            "user={} password={} dbname={}",
            t.valid.scram_user(),
            t.valid.scram_password(),
            t.valid.database()
        );
        let key = pki
            .client(t.valid.cert_user())
            .unwrap_or_else(|e| panic!("making a client certificate: {e}"))
            .key()
            .display()
            .to_string();
        let silent_login = login.clone();
        let silent_ca = ca.clone();
        Some(
            TlsSubject::new(
                pki.clone(),
                TlsCases {
                    verified: t.valid.tls_args("verify-full"),
                    wrong_ca: format!(
                        "host=localhost port={valid} {login} sslmode=verify-full sslrootcert={}",
                        pki.other_ca_cert().display()
                    ),
                    wrong_host: t.wrong_host.tls_args("verify-full"),
                    expired: t.expired.tls_args("verify-full"),
                    unverified: format!("host=localhost port={wrong_host} {login} sslmode=require"),
                    plain_to_tls_only: format!(
                        "host=127.0.0.1 port={valid} {login} sslmode=disable"
                    ),
                    client_cert: t.valid.cert_args(),
                    client_cert_missing: format!(
                        "host=localhost port={valid} user={} dbname={} sslmode=verify-full \
                         sslrootcert={ca}",
                        t.valid.cert_user(),
                        t.valid.database()
                    ),
                    key_as_ca: format!(
                        "host=localhost port={valid} {login} sslmode=verify-full sslrootcert={key}"
                    ),
                },
                // 127.0.0.1 (an IP address in the certificate): no name lookup in the count.
                move |port| {
                    format!(
                        "host=127.0.0.1 port={port} {silent_login} sslmode=verify-full \
                         sslrootcert={silent_ca}"
                    )
                },
            )
            .preferring(
                format!("{} port={} sslmode=prefer", self.scram, self.port),
                Some(format!(
                    "host=localhost port={valid} {login} sslmode=prefer"
                )),
            )
            .probed_by(Statement::new(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ))
            // 'S': yes to the SSLRequest, then silence inside the TLS handshake.
            .silent_preamble(Preamble::Answer(b"S".to_vec()))
            .also_accepts(
                "channel binding required (SCRAM-SHA-256-PLUS)",
                format!(
                    "{} channel_binding=require",
                    t.valid.tls_args("verify-full")
                ),
            )
            .also_accepts(
                "the IP address in the certificate",
                format!("host=127.0.0.1 port={valid} {login} sslmode=verify-full sslrootcert={ca}"),
            )
            .also_accepts(
                "verify-ca against a certificate for another host",
                t.wrong_host.tls_args("verify-ca"),
            )
            .also_accepts(
                "require with sslrootcert acts as verify-ca (libpq)",
                t.wrong_host.tls_args("require"),
            )
            .also_refuses(
                "require with sslrootcert of another CA",
                format!(
                    "host=localhost port={wrong_host} {login} sslmode=require sslrootcert={}",
                    pki.other_ca_cert().display()
                ),
            )
            .also_refuses(
                "a client certificate of another CA",
                untrusted_client_args(t),
            )
            .also_refuses(
                "channel binding required without TLS",
                format!(
                    "{} port={} sslmode=prefer channel_binding=require",
                    self.scram, self.port
                ),
            ),
        )
    }

    fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .restart()
            .unwrap_or_else(|e| panic!("restarting PostgreSQL: {e}"));
    }
}

/// The client-certificate login with a certificate signed by the unrelated CA.
fn untrusted_client_args(t: &PgTls) -> String {
    let client = t
        .pki
        .untrusted_client(t.valid.cert_user())
        .unwrap_or_else(|e| panic!("making an untrusted client certificate: {e}"));
    format!(
        "host=localhost port={} user={} dbname={} sslmode=verify-full sslrootcert={} \
         sslcert={} sslkey={}",
        t.valid.port(),
        t.valid.cert_user(),
        t.valid.database(),
        t.pki.ca_cert().display(),
        client.cert().display(),
        client.key().display()
    )
}

pool_conformance::conformance_tests!(Postgres, Postgres::start());
