//! The `redis` driver of `pool`: Redis (≥ 6.2 for the full reset) through the [`redis`]
//! crate's synchronous `redis::Connection`.
//!
//! [`RedisDriver`] implements [`pool_driver::Driver`]; its connection and parked handle are both
//! [`RedisConn`], because a `redis::Connection` may move between threads as it is.
//!
//! # Arguments
//!
//! `redis://user:password@host:port/db` (`?name=…` and the keys below as query parameters), or
//! `host=127.0.0.1 port=6379 user=app password=… db=0 name=web`; `socket=/run/redis.sock` (or
//! `host=/path`) for the unix socket; `connect_timeout`, `read_timeout`, `write_timeout` in
//! seconds (fractions allowed, `0` = none; user commands default to 30 s). Without `user` the
//! password is the `default` user's (`AUTH password`). Unknown keys are rejected. Through Redis
//! Sentinel: `redis+sentinel://` or `sentinel=… service_name=…` (see "Redis Sentinel").
//! Passwords never appear in errors, `Debug` output or logs.
//!
//! # TLS
//!
//! `rediss://` (or `tls=on` in `key=value` text, or `?tls=on` on a `redis://` URL), with
//! `redis-cli`'s names for the rest:
//!
//! | redis-cli | URL | `key=value` | meaning |
//! | --- | --- | --- | --- |
//! | `--tls`, `-u rediss://…` | `rediss://…` | `tls=on` | TLS on the TCP port (not on a unix socket) |
//! | `--cacert <file>` | `?cacert=<file>` | `cacert=<file>` | trust the CAs in this PEM file, *instead of* the platform's |
//! | (OpenSSL's default paths) | (no `cacert`) | (no `cacert`) | trust the platform's roots (`rustls-native-certs`: Debian's `ca-certificates`; `SSL_CERT_FILE`/`SSL_CERT_DIR` override) |
//! | `--cert <file>` | `?cert=<file>` | `cert=<file>` | client certificate (chain), PEM, for `tls-auth-clients` |
//! | `--key <file>` | `?key=<file>` | `key=<file>` | its private key: unencrypted PEM (PKCS#8, PKCS#1 or SEC1) |
//! | `--insecure` | `?insecure` | `insecure=on` | verify nothing (no CA, no host name, no SNI): for tests only |
//! | `--sni <name>` | — | — | the SNI and verified name are always `host` as written |
//! | `--cacertdir`, `--tls-ciphers`, `--tls-ciphersuites` | — | — | not offered (rustls' safe defaults) |
//!
//! Flags take `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0` (a bare `?insecure` is on) and
//! are folded to one spelling, so `rediss://h/0` and `host=h db=0 tls=yes` share a pool. The
//! certificate is verified against `host` as written: an IP address must be in the
//! certificate's IP SANs, a name in its DNS names. `cacert`, `cert`, `key` or `insecure`
//! without TLS are refused (the user meant TLS: connecting in plain text would be worse than
//! failing), as are `cert` without `key`, and TLS with a socket.
//!
//! The arguments name files, and the files are read on every connect: a certificate rotated
//! on disk is used by the next connect, no restart needed; the registry key holds the paths
//! (so different certificates never share a pool), never their contents. Relative paths are
//! relative to the process's working directory at connect time.
//!
//! A TLS connect, the handshake included, stays within the connect timeout; the reset, the
//! rollback-only cleanup and the liveness ping set their socket timeouts on the TCP stream
//! under the TLS session exactly as in plain text. The crypto provider is `ring`, installed as
//! rustls' process default only if the application installed none (`src/tls.rs` says why the
//! process default, and why only then).
//!
//! A failed handshake is a `Connect` error that says what failed and what to do, with a code to
//! match on ([`pool_driver::DriverError::code`]): `TLS_UNTRUSTED_CERTIFICATE` (unknown CA: give
//! `cacert`), `TLS_HOST_NAME_MISMATCH`, `TLS_CERTIFICATE_EXPIRED` (or not valid yet),
//! `TLS_BAD_CERTIFICATE`, `TLS_NOT_OFFERED` (`rediss://` to a plain port), `TLS_REQUIRED`
//! (plain `redis://` to a TLS-only port: the server hangs up), `TLS_CLIENT_CERTIFICATE_REQUIRED`
//! (`tls-auth-clients yes` and no `cert`), `TLS_CLIENT_CERTIFICATE_REFUSED`,
//! `TLS_BAD_HOST_NAME`, `TLS_KEY_MISMATCH`, `TLS_PLATFORM_ROOTS`, `TLS_FAILED`. A TLS hello sent to a plain Redis
//! port is mostly met with silence (Redis waits for the end of an inline command), so the last
//! fifth of the connect timeout (at most 500 ms) is kept for a plain `PING` on a fresh
//! connection to tell that port from a silent server; a silent one is a `Timeout`.
//!
//! Cost: a cold TLS connect on loopback took about 4 ms against 0.1 ms in plain text here, 3 ms
//! of it the `redis` crate (0.32) rereading the platform's CA store on every TLS connect, even
//! with `cacert` (see `src/tls.rs`); `cargo run --release -p pool-redis --example
//! connect_cost`. The pool's `open` of a parked connection does none of that.
//!
//! # Redis Sentinel
//!
//! A key can name the Sentinels and the service instead of a host; the driver asks the
//! Sentinels where the master is on every connect, and follows it when it moves:
//!
//! ```text
//! redis+sentinel://[user:password@]s1:26379,s2:26379,s3/mymaster[/db][?sentinel_password=…]
//! sentinel=s1:26379,s2:26379,s3 service_name=mymaster [user=app] password=… [db=0] [sentinel_password=…]
//! ```
//!
//! Both spell the same key (one pool). The URL is the form Python's `redis-sentinel-url` and
//! redisvl (Python and Java) read: the hosts are the Sentinels (26379 when no port is
//! given), the first path segment is the service name, the second the db. As in a
//! `redis://` URL, the user name and password are the data nodes' (the master's); a
//! Sentinel's own password (its `requirepass`, usually another one) is `sentinel_password`
//! (and `sentinel_user` for a Sentinel ACL user), as go-redis names them; without it the
//! Sentinels are asked without `AUTH`. `rediss+sentinel://` (or `tls=on`) is TLS to the
//! Sentinels and to the master, with the same `cacert`/`cert`/`key`; the master's
//! certificate is checked against the address the Sentinels give (an IP address unless they
//! run with `announce-hostnames yes`). Aliases: `sentinels`, `master_name` (go-redis),
//! `sentinel_username`. `host`, `port` and `socket` cannot go with `sentinel`. Not accepted:
//! Lettuce's `redis-sentinel://…/db#master` (there the path is the db and the service comes
//! after `#`: the two URL forms would read `/mymaster` differently).
//!
//! **The connect** asks the Sentinels in turn (the one that answered last, or that announced
//! the last failover, first; each gets the connect timeout over the number of Sentinels plus
//! one, so a silent one cannot starve the others) with `SENTINEL GET-MASTER-ADDR-BY-NAME`,
//! connects to the address named exactly as a `host`/`port` key would (TLS, `AUTH`,
//! `SELECT`, name), and asks the node its role (`ROLE`;
//! `HELLO`'s `role` field for users who may not run `ROLE`, an `@dangerous`
//! command). A node that answers as a replica is refused and the Sentinels asked again
//! while the bound allows (a failover in progress). Errors say what each Sentinel answered
//! and carry a code: `SENTINEL_UNREACHABLE`, `SENTINEL_UNKNOWN_SERVICE`,
//! `SENTINEL_NOT_MASTER`. (Not the `redis` crate's `sentinel` module: it connects to the
//! Sentinels with no timeout at all, and builds the master's connection itself; see
//! `src/sentinel.rs`.)
//!
//! **After a failover** no command of a Sentinel key is sent to a node that is no longer
//! the master:
//!
//! * A crash (the master killed): its connections fail with I/O errors (`Broken`), the pool
//!   closes them and checks the parked ones before handing them out; new connects go where
//!   the Sentinels now point.
//! * A switchover (`SENTINEL FAILOVER`, or a failover while the old master still runs) is the
//!   dangerous case: the old master stays a writable master for about ten seconds, until the
//!   Sentinel demotes it, and every write it acknowledges meanwhile is lost when it resyncs.
//!   So the first connect of a service starts its watcher: one thread
//!   (`pool-redis-sentinel`) per Sentinel in the list, each subscribed to its Sentinel's
//!   events, ended once the service has no connection and no fence is up. Every Sentinel is
//!   heard because only the failover's leader announces the promotion's start. When the
//!   leader, whichever it is, starts promoting a replica
//!   (`+failover-state-send-slaveof-noone`) the old master is fenced: commands on its
//!   connections are refused *before they are sent* (`Broken`, code `SENTINEL_FAILOVER`) and
//!   connects to it are refused, until the promotion (`+promoted-slave`, `+switch-master`,
//!   from whichever Sentinel says it first) or the leader's abort (`-failover-abort-*`) is
//!   heard (at most 10 s). Then the old master's connections
//!   are refused the same way (code `SENTINEL_MASTER_MOVED`) and closed as they are next used,
//!   released, attached or checked. The cost on the happy path is one atomic load per command.
//! * `READONLY` and `MASTERDOWN` replies on a Sentinel key mark the connection broken
//!   (`Broken`, with the server's code); on a plain key they stay `Query` errors (such a key
//!   may point at a replica on purpose). The liveness check of a Sentinel key's parked
//!   connection (`connected`, after `validate_after` or once a broken connection made the
//!   parked ones suspect) asks the role in the same round trip as its `PING`.
//!
//! All of these are transient errors ([`pool_driver::DriverErrorKind::Broken`], `Connect`):
//! retry, and the next connection goes to the new master. Measured on a private master,
//! replica and Sentinel (`down-after-milliseconds` 1000), 8 threads writing unique keys
//! through `pool::open` (`cargo test -p pool-redis --test sentinel -- --nocapture`, three
//! runs): after a SIGKILL of the master, calls failed for 2.0–2.2 s and the first write
//! reached the new master 120–180 ms after the Sentinel named it; no write sent after the
//! kill was lost, nor any a replica had confirmed (`WAIT 1`); 1–3 of 10,000–14,000 sent
//! before the kill were lost to Redis' asynchronous replication. In a switchover, calls were
//! refused for 0.9–1.0 s and no acknowledged write was lost (without the fence, about 24,000
//! were, in the second before `+switch-master`), while a client without Sentinel support,
//! writing to the old master, had 15,000–20,000 writes acknowledged and lost in the two
//! seconds after it.
//!
//! Limits: the fence needs the leader heard; if its connection is down (or it refused the
//! subscription) when it leads, the others' `+switch-master` follows up to 2 s later and
//! writes the old master acknowledges in between are lost (configure the master with
//! `min-replicas-to-write` to narrow that). Only the Sentinels in the key's list are heard.
//! Reads from replicas are not offered.
//!
//! **The Sentinel user's ACL** (`sentinel_user`, Sentinels with ACLs, Redis ≥ 6.2): besides
//! `AUTH`, the connect needs `SENTINEL GET-MASTER-ADDR-BY-NAME`, and the watcher `SUBSCRIBE`,
//! `PSUBSCRIBE`, `PING` and the event channels. Since Redis 7.0 a new user has *no* Pub/Sub
//! channel (`acl-pubsub-default resetchannels`), so they must be granted, e.g.:
//!
//! ```text
//! ACL SETUSER watcher on >password -@all +auth +ping +subscribe +psubscribe +unsubscribe
//!     +punsubscribe +sentinel|get-master-addr-by-name &+switch-master
//!     &+failover-state-send-slaveof-noone &+promoted-slave &-failover-abort-*
//! ```
//!
//! (`+client|setinfo` may be added; its refusal is ignored.) A Sentinel that refuses the
//! subscription (`-NOPERM`) is logged at `warn`, once per service, and the watcher falls back
//! to polling `GET-MASTER-ADDR-BY-NAME` every 250 ms: a switch is then followed once the
//! Sentinels name the new master (up to a second or two after a switchover's promotion),
//! and the old master is not fenced meanwhile, so writes it acknowledges in that window may
//! be lost. Grant the channels.
//!
//! **The native client** of a Sentinel key's connection is checked when it is asked for
//! (`native_mut`): if the Sentinels replaced (or are replacing) its node, the connection is
//! closed first (`QUIT`) and marked broken, so native commands fail instead of reaching the
//! old master. A native connection is not fenced *mid-lease*: one taken before the switch and
//! used through it writes to the old master like any client without Sentinel support; take
//! it again for each piece of work, or use the uniform surface, which checks every command.
//!
//! # Commands through the uniform surface
//!
//! `sql` names the command; its whitespace-separated words come first, then every parameter
//! as one argument: `conn.query("GET", &[Value::from("k")])`, `conn.execute("SET", &["k".into(),
//! "v".into()])`, `conn.query("CLIENT GETNAME", &[])`. Parameters: `Text`/`Bytes` as they are,
//! `Int`/`Float` as their decimal text, `Bool` as `1`/`0`; `Null` is refused.
//!
//! * `query` returns one column `value`: one row per element of an array, set or push reply
//!   (a map's keys and values alternate), one row for anything else; nil is `Null`, bulk strings
//!   `Text` (or `Bytes` when not UTF-8), integers `Int`, nested aggregates their text (`[a, b]`).
//! * `execute` returns an integer reply as is (negative as 0), 1 for `OK` and other status
//!   replies, 0 for nil, an aggregate's length.
//! * A server error reply (`ERR`, `WRONGTYPE`, `NOPERM`…) is a `Query` error with the code
//!   (`ERR`, `WRONGTYPE`) and leaves the connection usable; an I/O error or timeout is `Broken`.
//!
//! Everything else goes through the native client: `conn.native_mut::<redis::Connection>()`.
//!
//! # Blocking commands
//!
//! User commands run under the session's read timeout (`read_timeout=`, 30 s by default). A
//! blocking command (`BLPOP k 60`, `XREAD BLOCK 60000 …`) must be given more: set it on the
//! native client first — `native.set_read_timeout(Some(Duration::from_secs(65)))` — and run the
//! command there. The driver puts its own timeouts back when the connection is released.
//! A read through the uniform surface that times out leaves the reply in flight: the
//! connection is marked broken and closed on release. Through the native client the `redis`
//! crate skips the late reply itself; the release's reset then waits for it (the server answers
//! in order) within its bound, and closes the connection if it does not come.
//!
//! `CLIENT REPLY OFF`/`SKIP` make the server send no reply, so only send them through the
//! native client (`send_packed_command`): through `query`/`execute` the read waits for a reply
//! that never comes and times out. The release turns replies back on (both reset modes).
//!
//! # Release
//!
//! A session that ran only commands the server classes as data-only (`GET`, `SET`, `HGET`,
//! `INCR`, `EXPIRE`…: ACL categories `@read`/`@write` and none of `@connection`, `@pubsub`,
//! `@transaction`, `@scripting`, `@admin`, `@dangerous`, asked once per server with `COMMAND`)
//! is parked with no I/O: nothing it ran can have changed the connection. Any other command
//! (`SELECT`, `CLIENT …`, `MULTI`, `WATCH`, `SUBSCRIBE`, scripts, one the server does not list),
//! and reaching the native client at all (`native()` too: a shared borrow can change the
//! socket's timeouts), makes the release reset it; a server that cannot classify its commands
//! gets every used session reset. The reset is the same exchange whatever ran (a command queued
//! in `MULTI` and run by `EXEC`, or sent through the native client, shows no text to read).
//!
//! [`pool_driver::ResetMode::Full`] is one round trip: `RESET` (discards `MULTI`, unwatches,
//! leaves pub/sub, `MONITOR` and tracking, `CLIENT REPLY ON`, back to RESP2 and db 0, clears
//! the client name, logged out to `default`), then the handshake again — `AUTH`, `SELECT` when
//! the db is not 0, `CLIENT SETNAME` with the configured name or `""` (a user denied it may
//! skip clearing) — and `PING <nonce>`. Replies
//! are read up to the nonce, skipping stale pub/sub and push messages (bounded in count and
//! time); every handshake reply must be `OK`, or the connection is closed. Known to survive
//! `RESET`: `CLIENT SETINFO`'s library name and version (Redis ≥ 7.2), and on Redis 7.0
//! `CLIENT NO-EVICT` (an `@dangerous` command; 7.2 clears it).
//!
//! `RollbackOnly` is one round trip too, and keeps the db, the name and the user by design:
//! `DISCARD`, then undoing what would break the next user's protocol — `CLIENT REPLY ON`,
//! `UNWATCH`, `CLIENT TRACKING OFF`, `HELLO 2` — then `CLIENT INFO` and `PING <nonce>`. What
//! the server reports decides: a session still subscribed, monitoring, on RESP3, tracking or
//! inside `MULTI` (or answering out of step, as a monitor or a subscriber does) is refused
//! (`NotReusable`, closed). Where the server cannot report (`CLIENT INFO` is Redis ≥ 6.2, and
//! may be denied by ACL) the undos and the server's own refusals carry it; `src/reset.rs`
//! (`rollback`) says what that leaves uncovered.
//!
//! On a server without `RESET` (Redis < 6.2; found out by the first release there, remembered
//! per server) `Full` is that rollback-only cleanup plus the handshake (`AUTH`, `SELECT`,
//! `CLIENT SETNAME` with the configured name or `""`), and the report must also show the
//! configured db and name.
//!
//! **Liveness** is `PING <nonce>` with the socket timeouts set to the check's bound.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(unsafe_code)]

mod commands;
mod conn;
mod convert;
mod driver;
mod error;
mod opts;
mod reset;
mod sentinel;
mod setup;
mod tls;

pub use conn::RedisConn;
pub use driver::RedisDriver;
