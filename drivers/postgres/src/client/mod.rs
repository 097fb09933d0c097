//! [`PgClient`]: one PostgreSQL connection that owns its socket and its runtime, with a
//! blocking API on top of `tokio-postgres`.
//!
//! Each connection has its own current-thread tokio runtime and no thread of its own: the
//! `tokio_postgres::Connection` (the half that reads and writes the socket) is polled inline,
//! on the calling thread, by every blocking call ([`PgClient::block_on`]), alongside the
//! request being waited for; between calls nothing polls it. So a parked connection is
//! memory and file descriptors only (the socket, and the runtime's epoll and event fds), and
//! it can move to any thread. This is what the synchronous `postgres` crate does inside; here
//! the driver owns the socket, so it can bound a connect as a whole and close without waiting
//! for the server.
//!
//! **Closing** (dropping a `PgClient`) never waits on the network. Dropping the
//! `tokio_postgres::Client` closes its request channel; the connection is then polled once,
//! without blocking, which writes `Terminate` and shuts the socket's write side down when the
//! socket has room (it always has, unless the peer stopped reading) and does nothing when it
//! has not; the connection is dropped (the socket closed: no linger, so no wait), and the
//! runtime is shut down in the background (`shutdown_background`: it does not join the one
//! thread it may have, a name lookup still running after a timed-out connect). The `postgres`
//! crate's `Client` drop instead waited for the server's answer to `Terminate`'s flush on a
//! silent network (rust-postgres #755).
//!
//! **Async code** runs on the connection's runtime through [`PgClient::block_on`] (with
//! [`PgClient::client`]) or [`PgClient::run`] (with `&mut tokio_postgres::Client`, for
//! transactions). A `PgClient` must not be used from inside another tokio runtime's async
//! context (as with `postgres::Client`, blocking there panics): use `spawn_blocking`.

mod cancel;
mod cancel_delivery;
mod copy;
mod deadline;
mod notifications;
mod statements;
mod sync_api;
mod transaction;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::mem::ManuallyDrop;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::noop_waker_ref;
use tokio::runtime::Runtime;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Error, Notification, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::MakeTls;

pub use cancel::PgCancelToken;
pub(crate) use cancel_delivery::CancelAddress;
pub use copy::{CopyInWriter, CopyOutReader};
pub use deadline::Expired;
pub(crate) use deadline::CANCEL_GRACE;
pub use notifications::{Notifications, NotificationsIter, TimeoutIter};
pub use transaction::PgTransaction;

/// The socket half of a connection, as the driver's connector makes it.
pub(crate) type PgConnection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// A PostgreSQL connection with the blocking methods of `postgres::Client` (the native client
/// of the `"postgres"` driver: `Conn::native_mut::<PgClient>()`).
///
/// The familiar methods (`query`, `query_one`, `query_opt`, `query_typed`, `execute`,
/// `batch_execute`, `simple_query`, `prepare`, `transaction`, `copy_in`, `copy_out`,
/// `notifications`, `is_valid`…) take and return `tokio_postgres` types, which are the ones
/// `postgres` re-exports: `Row`, `Statement`, `ToSql`, `Error` are the same types. Anything
/// else `tokio-postgres` offers runs through [`PgClient::block_on`] or [`PgClient::run`].
///
/// It takes `&self` where `postgres::Client` takes `&mut self` for statements (so it also
/// works through `Conn::native`), and `&mut self` for transactions.
pub struct PgClient {
    // Declared first, so dropped first: its channel closes before `io` polls the connection
    // one last time (which then writes `Terminate`).
    client: tokio_postgres::Client,
    io: RefCell<Io>,
    /// The connector the connection was made with, for cancel requests (same TLS checks).
    tls: MakeTls,
    /// Where this session's cancel requests go (`cancel_delivery.rs`).
    cancel_address: CancelAddress,
    /// A cancel token was handed out: it holds the backend's pid and secret key, which no
    /// reset can change, so it could cancel a later user's statement. The session is then
    /// closed on release instead of parked (see `PgDriver::detach`).
    pub(crate) cancel_handed_out: std::cell::Cell<bool>,
    /// Whether what the server reports about its role (`in_hot_standby`,
    /// `default_transaction_read_only`) agreed with what it answered when asked at connect; a
    /// proxy's stale reports do not (see `crate::role`). Read only for keys that watch a role.
    pub(crate) role_reports_trusted: bool,
}

/// The runtime and the socket half, used by one blocking call at a time.
struct Io {
    /// Taken only in `Drop` (to shut it down in the background).
    runtime: ManuallyDrop<Runtime>,
    /// `None` once it ended (the server closed, the socket broke): the client's pending and
    /// later requests then fail with "connection closed".
    connection: Option<PgConnection>,
    /// `NOTIFY` payloads received, oldest first.
    notifications: VecDeque<Notification>,
    /// Why the connection ended, if it failed: the cause behind a later "connection closed".
    failure: Option<Error>,
    /// The statement deadline and what cancelling needs (`deadline.rs`).
    deadline: deadline::Deadline,
}

impl PgClient {
    pub(crate) fn new(
        runtime: Runtime,
        client: tokio_postgres::Client,
        conn: PgConnection,
        tls: MakeTls,
        address: CancelAddress,
    ) -> Self {
        let deadline = deadline::Deadline::new(client.cancel_token(), tls.clone(), address.clone());
        PgClient {
            client,
            tls,
            cancel_address: address,
            cancel_handed_out: std::cell::Cell::new(false),
            role_reports_trusted: false,
            io: RefCell::new(Io {
                runtime: ManuallyDrop::new(runtime),
                connection: Some(conn),
                notifications: VecDeque::new(),
                failure: None,
                deadline,
            }),
        }
    }

    /// The `tokio_postgres::Client`, for async code run with [`PgClient::block_on`]:
    ///
    /// ```no_run
    /// # fn f(pg: &pool_postgres::PgClient) -> Result<(), pool_postgres::tokio_postgres::Error> {
    /// let rows = pg.block_on(pg.client().query("SELECT $1::int4", &[&7i32]))?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Runs `future` to completion on this connection's runtime, on the calling thread,
    /// driving the connection's socket alongside. Any `tokio` API works inside (timers,
    /// `tokio::join!` to pipeline several requests in one write, `tokio::time::timeout`), but
    /// tokio creates a timer in the runtime it is called from: write it inside the `async`
    /// block (`pg.block_on(async { tokio::time::sleep(d).await })`), not as the argument.
    ///
    /// # Panics
    ///
    /// When called from inside a tokio runtime's async context (blocking there is not
    /// allowed; use `spawn_blocking`), or from inside another `block_on` of this client.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self.io.try_borrow_mut() {
            Ok(mut io) => io.block_on(future),
            Err(_) => panic!("PgClient::block_on called inside a block_on of the same client"),
        }
    }

    /// Runs async code that needs `&mut tokio_postgres::Client` (a `Transaction`, a
    /// `TransactionBuilder`) on this connection's runtime:
    ///
    /// ```no_run
    /// # use pool_postgres::tokio_postgres::{self, IsolationLevel};
    /// # fn f(pg: &mut pool_postgres::PgClient) -> Result<(), tokio_postgres::Error> {
    /// pg.run(|client| {
    ///     Box::pin(async move {
    ///         let tx = client
    ///             .build_transaction()
    ///             .isolation_level(IsolationLevel::Serializable)
    ///             .start()
    ///             .await?;
    ///         tx.execute("UPDATE account SET n = n + 1", &[]).await?;
    ///         tx.commit().await
    ///     })
    /// })
    /// # }
    /// ```
    pub fn run<R>(
        &mut self,
        f: impl for<'c> FnOnce(&'c mut tokio_postgres::Client) -> Pin<Box<dyn Future<Output = R> + 'c>>,
    ) -> R {
        let future = f(&mut self.client);
        self.io.get_mut().block_on(future)
    }

    /// Whether the connection is known to be closed (the server ended it or the socket
    /// broke). Like `postgres::Client::is_closed`, this only knows what a call has seen.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Forgets the types looked up so far (after `SET search_path`, a new role, or a changed
    /// type).
    pub fn clear_type_cache(&self) {
        self.client.clear_type_cache();
    }

    /// A value the server reported at startup or since (`server_version`, `TimeZone`,
    /// `integer_datetimes`, `application_name`…), if the connection is still open.
    pub fn parameter(&self, name: &str) -> Option<String> {
        let io = self.io.try_borrow().ok()?;
        io.connection
            .as_ref()
            .and_then(|c| c.parameter(name))
            .map(str::to_owned)
    }

    /// Whether the server last reported `name` as `value` (no allocation: read after every
    /// statement of a key whose server role is watched, see `crate::role`). `None` if it never
    /// reported `name` or the connection ended.
    pub(crate) fn reported_as(&self, name: &str, value: &str) -> Option<bool> {
        let io = self.io.try_borrow().ok()?;
        let reported = io.connection.as_ref()?.parameter(name)?;
        Some(reported == value)
    }

    /// Bounds every statement of this client (its statement methods, its transactions', and
    /// the uniform API's) to `timeout`; `None` (the default for a client of its own) removes
    /// the bound. The pool sets its `statement_timeout` on every `open`. A statement past its
    /// deadline is cancelled on the server; see [`PgClient::take_expired`] for how it ended.
    /// Requests run through [`PgClient::block_on`] or [`PgClient::run`] are not bounded:
    /// use `tokio::time::timeout` inside them.
    pub fn set_statement_timeout(&self, timeout: Option<Duration>) {
        if let Ok(mut io) = self.io.try_borrow_mut() {
            io.deadline.timeout = timeout;
        }
    }

    /// The current statement deadline.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.io.try_borrow().ok().and_then(|io| io.deadline.timeout)
    }

    /// How long a late statement's cancel may take before the connection is closed instead
    /// (1 s by default, at least 1 ms).
    pub(crate) fn set_cancel_grace(&self, grace: Duration) {
        if let Ok(mut io) = self.io.try_borrow_mut() {
            io.deadline.grace = grace.max(Duration::from_millis(1));
        }
    }

    /// Whether a statement ran past its deadline since the last call, and how it ended: the
    /// server cancelled it (its error is SQLSTATE 57014, and the session is usable), or the
    /// connection was closed.
    pub fn take_expired(&self) -> Option<Expired> {
        self.io.try_borrow_mut().ok()?.deadline.expired.take()
    }

    /// Runs `future` under the statement deadline and, if it failed because the connection
    /// ended, reports why it ended instead of tokio-postgres' bare "connection closed".
    pub(crate) fn request<T>(
        &self,
        future: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        request_on(
            &self.io,
            future,
            Some(|| -> deadline::Probe<'_> { Box::pin(self.client.simple_query("SELECT 1")) }),
        )
    }

    /// Runs `future` for at most `timeout`; `None` if it did not finish in time.
    pub(crate) fn within<F: Future>(&self, timeout: Duration, future: F) -> Option<F::Output> {
        self.block_on(async { tokio::time::timeout(timeout, future).await.ok() })
    }

    /// Waits, at most `bound`, until every message the server sent before now has been read:
    /// one round trip of an empty query, whose answer comes after them all. An error's
    /// ErrorResponse is flushed on its own, so the `ParameterStatus` reports the server sends
    /// after it (before its ReadyForQuery) may not have arrived when the error is seen.
    /// `false` if the round trip failed or ran out of time.
    pub(crate) fn catch_up(&self, bound: Duration) -> bool {
        matches!(
            self.within(bound, self.client.simple_query("")),
            Some(Ok(_))
        )
    }

    /// Takes in whatever the socket has (notifications, notices, the end of the connection)
    /// without waiting for more.
    pub(crate) fn poll_socket(&self) {
        self.block_on(tokio::task::yield_now());
    }
}

/// [`PgClient::request`] on the `io` of a client whose `tokio_postgres::Client` is borrowed
/// elsewhere (by a transaction), with the deadline's `probe` made on it (see `deadline.rs`).
fn request_on<'p, T>(
    io: &RefCell<Io>,
    future: impl Future<Output = Result<T, Error>>,
    probe: Option<impl FnOnce() -> deadline::Probe<'p>>,
) -> Result<T, Error> {
    let Ok(mut io) = io.try_borrow_mut() else {
        panic!("PgClient used inside a block_on of the same client")
    };
    // What an earlier request's deadline left is no news about this one.
    io.deadline.expired = None;
    let answer = match io.deadline.timeout {
        Some(timeout) => io.bounded(timeout, future, probe),
        None => io.block_on(future),
    };
    match answer {
        Err(err) if err.is_closed() => Err(io.failure.take().unwrap_or(err)),
        other => other,
    }
}

/// No probe: for the requests that consume or borrow their transaction.
fn no_probe<'p>() -> Option<fn() -> deadline::Probe<'p>> {
    None
}

impl Io {
    /// Polls the connection (taking in notifications and notices, and noticing its end), then
    /// `future`, each time either can go on, until `future` is done.
    fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let Io {
            runtime,
            connection,
            notifications,
            failure,
            ..
        } = self;
        let mut future = pin!(future);
        runtime.block_on(poll_fn(|cx| {
            drive(connection, notifications, failure, cx);
            future.as_mut().poll(cx)
        }))
    }
}

/// Polls `connection` until it has nothing more to do now; drops it when it ended, which fails
/// every request still waiting for an answer (with "connection closed").
pub(crate) fn drive(
    connection: &mut Option<PgConnection>,
    notifications: &mut VecDeque<Notification>,
    failure: &mut Option<Error>,
    cx: &mut Context<'_>,
) {
    let Some(conn) = connection else { return };
    let ended = loop {
        match conn.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => notifications.push_back(n),
            Poll::Ready(Some(Ok(AsyncMessage::Notice(notice)))) => {
                // Routine here (a reset's "there is already a transaction in progress").
                tracing::trace!(
                    severity = notice.severity(),
                    message = notice.message(),
                    "postgres notice"
                );
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(error = %err, "postgres connection ended with an error");
                *failure = Some(err);
                break true;
            }
            Poll::Ready(None) => break true,
            Poll::Pending => break false,
        }
    };
    if ended {
        *connection = None;
    }
}

impl Drop for Io {
    /// Runs after the `tokio_postgres::Client` was dropped (see `PgClient`'s field order):
    /// one non-blocking poll writes `Terminate` and shuts the write side down if the socket
    /// takes it, then the socket is closed and the runtime shut down without waiting.
    fn drop(&mut self) {
        if let Some(mut conn) = self.connection.take() {
            let _context = self.runtime.enter();
            let mut cx = Context::from_waker(noop_waker_ref());
            for _ in 0..4 {
                match conn.poll_message(&mut cx) {
                    Poll::Ready(Some(Ok(_))) => continue,
                    _ => break,
                }
            }
            drop(conn);
        }
        // SAFETY: `runtime` is never used again: this is `Io`'s drop, and nothing after this
        // line touches the field.
        let runtime = unsafe { ManuallyDrop::take(&mut self.runtime) };
        runtime.shutdown_background();
    }
}

impl std::fmt::Debug for PgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgClient")
            .field("closed", &self.client.is_closed())
            .finish_non_exhaustive()
    }
}

/// A current-thread runtime for one connection: no worker thread. Its blocking pool starts a
/// thread only to resolve a host name (tokio's DNS lookup is a blocking call), at most one, and
/// lets it go right after the lookup.
pub(crate) fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(1)
        .thread_keep_alive(Duration::from_millis(10))
        .thread_name("pool-postgres-dns")
        .build()
}
