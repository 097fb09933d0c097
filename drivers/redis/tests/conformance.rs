//! The Redis driver against the conformance suite every driver runs (dev/conformance), on a
//! private redis-server with an ACL user. Redis-specific leaks (MULTI, SUBSCRIBE, HELLO 3,
//! CLIENT TRACKING, the ACL user after RESET, servers without RESET) are in the other files.
//!
//! The probes set state every way a handler can: through the uniform API, inside
//! `MULTI`…`EXEC` (where the command only runs at `EXEC`), and through the native
//! `redis::Connection` (`native_mut`, and `native` for the socket timeouts). No probe uses
//! `EVAL`: a script's `redis.call('SELECT', n)` changes the db for the rest of the script only
//! (Redis restores the caller's db when the script ends, checked on Redis 7.0), and the
//! connection commands that would outlive it (`CLIENT`, `HELLO`, `SUBSCRIBE`…) are refused
//! inside scripts, so a script sets no session state to probe.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use pool_conformance::{
    native, native_mut, NativeProbe, StateProbe, Statement, Subject, TlsCases, TlsSubject,
};
use pool_driver::{Connection, Driver, Value};
use pool_redis::{RedisConn, RedisDriver};
use pool_testservers::{ClientCerts, RedisServer, ServerCert, TestPki};

/// Runs `cmd` on the native client of `conn`, panicking with the command's name on failure.
fn on_native(conn: &mut RedisConn, cmd: &mut redis::Cmd, what: &str) -> redis::Value {
    let native = native_mut::<redis::Connection, _>(conn);
    cmd.query(native)
        .unwrap_or_else(|e| panic!("{what} through the native client: {e}"))
}

/// Runs `statements` through the uniform API.
fn uniform(conn: &mut RedisConn, statements: &[(&str, &[&str])]) {
    for (command, args) in statements {
        let params: Vec<Value> = args.iter().map(|a| Value::from(*a)).collect();
        conn.execute(command, &params)
            .unwrap_or_else(|e| panic!("{command}: {e}"));
    }
}

/// The protocol and the tracking flag this session's `CLIENT INFO` reports, as one value.
fn protocol_and_tracking(conn: &mut RedisConn) -> Value {
    let info = conn
        .query("CLIENT INFO", &[])
        .unwrap_or_else(|e| panic!("CLIENT INFO: {e}"));
    let text = info.scalar().map(ToString::to_string).unwrap_or_default();
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key))
            .unwrap_or("?")
            .to_owned()
    };
    let flags = field("flags=");
    Value::Text(format!(
        "resp={} tracking={} subscriptions={}",
        field("resp="),
        flags.contains('t'),
        field("sub=")
    ))
}

struct Redis {
    driver: RedisDriver,
    server: Mutex<RedisServer>,
    port: u16,
    args: String,
    password: String,
    admin_args: String,
    /// The TLS servers, started by the first TLS check.
    tls: OnceLock<RedisTls>,
}

/// TLS-only Redis servers (`--port 0 --tls-port`), one per certificate the TLS section needs,
/// and one that requires client certificates.
struct RedisTls {
    pki: TestPki,
    valid: RedisServer,
    wrong_host: RedisServer,
    expired: RedisServer,
    client_certs: RedisServer,
}

impl RedisTls {
    fn start() -> RedisTls {
        let pki = TestPki::generate().unwrap_or_else(|e| panic!("making the test PKI: {e}"));
        let start = |cert, client_certs| {
            RedisServer::start_tls(&pki, cert, client_certs)
                .unwrap_or_else(|e| panic!("starting a TLS Redis ({cert:?}): {e}"))
        };
        RedisTls {
            valid: start(ServerCert::Valid, ClientCerts::NotRequested),
            wrong_host: start(ServerCert::WrongHost, ClientCerts::NotRequested),
            expired: start(ServerCert::Expired, ClientCerts::NotRequested),
            client_certs: start(ServerCert::Valid, ClientCerts::Required),
            pki,
        }
    }
}

/// `key=value` arguments for TLS to `localhost:port`, as `pool_user`, trusting `cacert`.
fn tls_args(server: &RedisServer, port: u16, cacert: &str) -> String {
    format!(
        "host=localhost port={port} user={} password={} tls=on cacert={cacert}",
        server.user(),
        server.password()
    )
}

/// A URL without credentials' percent-encoding worries: the test servers' are plain words.
fn url(scheme: &str, server: &RedisServer, host: &str, query: &str) -> String {
    format!(
        "{scheme}://{}:{}@{host}:{}/0{query}",
        server.user(),
        server.password(),
        server.port()
    )
}

impl Redis {
    fn start() -> Redis {
        let server = RedisServer::start().unwrap_or_else(|e| panic!("starting Redis: {e}"));
        Redis {
            driver: RedisDriver::new(),
            port: server.port(),
            args: server.args(),
            password: server.password().to_owned(),
            admin_args: server.default_user_args(),
            server: Mutex::new(server),
            tls: OnceLock::new(),
        }
    }
}

impl Subject for Redis {
    type Driver = RedisDriver;
    type Native = redis::Connection;

    fn driver(&self) -> &RedisDriver {
        &self.driver
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

    fn session_id(&self, conn: &mut RedisConn) -> Value {
        let rows = conn.query("CLIENT ID", &[]).expect("CLIENT ID");
        rows.scalar().cloned().expect("one value")
    }

    fn kill_session(&self, id: &Value) {
        // The ACL user may not kill clients (@dangerous): the default user does, as an
        // operator would.
        let mut admin = self.connect(&self.admin_args).expect("admin connect");
        admin
            .execute("CLIENT KILL ID", std::slice::from_ref(id))
            .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"));
        let _ = self.driver.detach(admin, pool_driver::ResetMode::Full);
    }

    fn state_probes(&self) -> Vec<StateProbe> {
        vec![
            StateProbe {
                name: "the selected database",
                prepare: vec![Statement::with(
                    "SET",
                    vec!["conformance_db_probe".into(), "1".into()],
                )],
                set: vec![Statement::with("SELECT", vec![Value::Int(3)])],
                observe: Statement::with("EXISTS", vec!["conformance_db_probe".into()]),
            },
            StateProbe {
                name: "the client name",
                prepare: vec![],
                set: vec![Statement::with(
                    "CLIENT SETNAME",
                    vec!["conformance".into()],
                )],
                observe: Statement::new("CLIENT GETNAME"),
            },
            StateProbe {
                name: "the database, selected inside MULTI…EXEC",
                prepare: vec![Statement::with(
                    "SET",
                    vec!["conformance_db_probe".into(), "1".into()],
                )],
                set: vec![
                    Statement::new("MULTI"),
                    Statement::with("SELECT", vec![Value::Int(3)]),
                    Statement::new("EXEC"),
                ],
                observe: Statement::with("EXISTS", vec!["conformance_db_probe".into()]),
            },
            StateProbe {
                name: "the client name, set inside MULTI…EXEC",
                prepare: vec![],
                set: vec![
                    Statement::new("MULTI"),
                    Statement::with("CLIENT SETNAME", vec!["conformance-multi".into()]),
                    Statement::new("EXEC"),
                ],
                observe: Statement::new("CLIENT GETNAME"),
            },
            StateProbe {
                name: "an open MULTI",
                prepare: vec![],
                set: vec![Statement::new("MULTI")],
                observe: Statement::new("PING"),
            },
        ]
    }

    fn native_probes(&self) -> Vec<NativeProbe<RedisConn>> {
        let blpop_key = format!("conformance_blpop:{}", std::process::id());
        vec![
            NativeProbe::new(
                "the database, selected through the native client",
                |conn| {
                    on_native(conn, redis::cmd("SELECT").arg(3), "SELECT");
                },
                Statement::with("EXISTS", vec!["conformance_db_probe".into()]),
            )
            .prepared_by(vec![Statement::with(
                "SET",
                vec!["conformance_db_probe".into(), "1".into()],
            )]),
            NativeProbe::new(
                "the client name, set through the native client",
                |conn| {
                    on_native(
                        conn,
                        redis::cmd("CLIENT")
                            .arg("SETNAME")
                            .arg("conformance-native"),
                        "CLIENT SETNAME",
                    );
                },
                Statement::new("CLIENT GETNAME"),
            ),
            NativeProbe::new(
                "RESP3 and client tracking, through the native client",
                |conn| {
                    on_native(conn, redis::cmd("HELLO").arg(3), "HELLO 3");
                    on_native(
                        conn,
                        redis::cmd("CLIENT").arg("TRACKING").arg("ON"),
                        "CLIENT TRACKING ON",
                    );
                },
                Statement::new("CLIENT INFO"),
            )
            .observed_by(protocol_and_tracking),
            // Through `native()` (`&self`): `set_read_timeout` needs no `&mut`, so a handler can
            // change the socket's timeout without ever borrowing the client mutably.
            NativeProbe::new(
                "a socket read timeout, set through `native()`",
                |conn| {
                    native::<redis::Connection, _>(conn)
                        .set_read_timeout(Some(Duration::from_millis(20)))
                        .expect("set_read_timeout");
                },
                Statement::new("PING"),
            )
            .observed_by(move |conn| {
                // Blocks 200 ms on the server: answered (nil) under the session's 30 s read
                // timeout, a timeout error under 20 ms. The late reply is the reset's to skip.
                let native = native_mut::<redis::Connection, _>(conn);
                let blocked = redis::cmd("BLPOP")
                    .arg(&blpop_key)
                    .arg(0.2)
                    .query::<redis::Value>(native);
                match blocked {
                    Ok(_) => Value::from("answered"),
                    Err(e) if e.is_timeout() => Value::from("timed out"),
                    Err(e) => panic!("BLPOP through the native client: {e}"),
                }
            }),
        ]
    }

    fn rollback_only_probes(&self) -> Vec<NativeProbe<RedisConn>> {
        let channel = format!("conformance_channel:{}", std::process::id());
        let resp3_channel = channel.clone();
        vec![
            NativeProbe::new(
                "client tracking, turned on inside MULTI…EXEC",
                |conn| {
                    uniform(
                        conn,
                        &[("MULTI", &[]), ("CLIENT TRACKING", &["on"]), ("EXEC", &[])],
                    );
                },
                Statement::new("CLIENT INFO"),
            )
            .observed_by(protocol_and_tracking),
            NativeProbe::new(
                "client tracking, turned on through the native client",
                |conn| {
                    on_native(
                        conn,
                        redis::cmd("CLIENT").arg("TRACKING").arg("ON"),
                        "CLIENT TRACKING ON",
                    );
                },
                Statement::new("CLIENT INFO"),
            )
            .observed_by(protocol_and_tracking),
            NativeProbe::new(
                "RESP3, switched to through the native client",
                |conn| {
                    on_native(conn, redis::cmd("HELLO").arg(3), "HELLO 3");
                },
                Statement::new("CLIENT INFO"),
            )
            .observed_by(protocol_and_tracking),
            // Subscribed on RESP2, the session refuses everything but (un)subscribing and PING,
            // which it answers as a pub/sub message: `pong` instead of `PONG`.
            NativeProbe::new(
                "a subscription, through the native client",
                move |conn| {
                    on_native(conn, redis::cmd("SUBSCRIBE").arg(&channel), "SUBSCRIBE");
                },
                Statement::new("PING"),
            ),
            NativeProbe::new(
                "a subscription on RESP3, through the native client",
                move |conn| {
                    on_native(conn, redis::cmd("HELLO").arg(3), "HELLO 3");
                    // On RESP3 the confirmation is a push, not a reply: send without waiting
                    // for one (the observing command skips the push).
                    let subscribe = redis::cmd("SUBSCRIBE")
                        .arg(&resp3_channel)
                        .get_packed_command();
                    native_mut::<redis::Connection, _>(conn)
                        .send_packed_command(&subscribe)
                        .expect("SUBSCRIBE through the native client");
                },
                Statement::new("CLIENT INFO"),
            )
            .observed_by(protocol_and_tracking),
        ]
    }

    fn transaction_probe(&self) -> StateProbe {
        StateProbe {
            name: "a write queued in MULTI",
            prepare: vec![Statement::with("DEL", vec!["conformance_tx".into()])],
            set: vec![
                Statement::new("MULTI"),
                Statement::with("SET", vec!["conformance_tx".into(), "1".into()]),
            ],
            observe: Statement::with("EXISTS", vec!["conformance_tx".into()]),
        }
    }

    fn restart(&self) {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        server
            .restart()
            .unwrap_or_else(|e| panic!("restarting Redis: {e}"));
    }

    fn trivial(&self) -> Statement {
        Statement::new("PING")
    }

    /// The server's data-only commands (`commands.rs`): a session that ran only these is
    /// parked with no reset.
    fn unchanging_statements(&self) -> Vec<Statement> {
        let key: Value = "conformance_unchanging".into();
        vec![
            Statement::with("SET", vec![key.clone(), "1".into()]),
            Statement::with("GET", vec![key.clone()]),
            Statement::with("INCR", vec![key.clone()]),
            Statement::with("EXPIRE", vec![key.clone(), "60".into()]),
            Statement::with("DEL", vec![key]),
        ]
    }

    fn slow_statement(&self, seconds: f64) -> Option<Statement> {
        Some(Statement::with(
            "BLPOP",
            vec![
                Value::from("conformance:always-empty"),
                Value::from(seconds.to_string()),
            ],
        ))
    }

    /// `rediss://` URLs with redis-cli's names (`cacert`, `cert`, `key`, `insecure`) for the
    /// required cases, `key=value` (`tls=on`) for some extra ones. No `prefer` (Redis has no
    /// such mode) and no probe (the servers' ports speak TLS only, so a session that works is
    /// encrypted); the silent peer says nothing (the client speaks first).
    fn tls(&self) -> Option<TlsSubject> {
        let t = self.tls.get_or_init(RedisTls::start);
        let ca = t.pki.ca_cert().display().to_string();
        let other_ca = t.pki.other_ca_cert().display().to_string();
        let client = t.pki.client(t.client_certs.user()).ok()?;
        let untrusted = t.pki.untrusted_client(t.client_certs.user()).ok()?;
        let with_client = |args: String, cert: &pool_testservers::ClientCert| {
            format!(
                "{args}&cert={}&key={}",
                cert.cert().display(),
                cert.key().display()
            )
        };
        let (user, password, silent_ca) = (
            t.valid.user().to_owned(),
            t.valid.password().to_owned(),
            ca.clone(),
        );
        let silent =
            move |port| format!("rediss://{user}:{password}@localhost:{port}/0?cacert={silent_ca}");
        Some(
            TlsSubject::new(
                t.pki.clone(),
                TlsCases {
                    verified: t.valid.tls_url(),
                    wrong_ca: url(
                        "rediss",
                        &t.valid,
                        "localhost",
                        &format!("?cacert={other_ca}"),
                    ),
                    wrong_host: t.wrong_host.tls_url(),
                    expired: t.expired.tls_url(),
                    unverified: url("rediss", &t.wrong_host, "localhost", "?insecure"),
                    plain_to_tls_only: url("redis", &t.valid, "localhost", ""),
                    client_cert: t.client_certs.tls_client_url(),
                    client_cert_missing: t.client_certs.tls_url(),
                    key_as_ca: url(
                        "rediss",
                        &t.valid,
                        "localhost",
                        &format!("?cacert={}", client.key().display()),
                    ),
                },
                silent,
            )
            .also_accepts(
                "key=value with tls=on",
                tls_args(&t.valid, t.valid.port(), &ca),
            )
            .also_accepts(
                "the IP address in the certificate",
                url("rediss", &t.valid, "127.0.0.1", &format!("?cacert={ca}")),
            )
            .also_accepts(
                "insecure with another CA's cacert, against the expired certificate",
                format!(
                    "{} insecure=on",
                    tls_args(&t.expired, t.expired.port(), &other_ca)
                ),
            )
            .also_accepts(
                "a client certificate, key=value",
                format!(
                    "{} cert={} key={}",
                    tls_args(&t.client_certs, t.client_certs.port(), &ca),
                    client.cert().display(),
                    client.key().display()
                ),
            )
            .also_refuses(
                "a client certificate from another CA",
                with_client(
                    url(
                        "rediss",
                        &t.client_certs,
                        "localhost",
                        &format!("?cacert={ca}"),
                    ),
                    &untrusted,
                ),
            )
            .also_refuses(
                "a certificate with another certificate's key",
                format!(
                    "{}&cert={}&key={}",
                    url(
                        "rediss",
                        &t.client_certs,
                        "localhost",
                        &format!("?cacert={ca}")
                    ),
                    client.cert().display(),
                    untrusted.key().display()
                ),
            )
            // A plain Redis mostly stays silent to a TLS hello: the driver keeps a fifth of
            // the connect timeout to find out it speaks plain Redis (TLS_NOT_OFFERED).
            .also_refuses(
                "rediss:// to the plain server's port",
                format!(
                    "rediss://pool_user:{}@localhost:{}/0?cacert={ca}&connect_timeout=0.5",
                    self.password, self.port
                ),
            ),
        )
    }
}

pool_conformance::conformance_tests!(Redis, Redis::start());
