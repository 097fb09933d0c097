//! Statement deadlines: a request that runs past its deadline is cancelled on the server, and
//! the caller is back within the deadline plus a short grace, whatever the server does.
//!
//! On expiry (all on the calling thread, inside the connection's runtime, no thread started):
//!
//! 1. A cancel request goes to the server over a new connection (the host and port the session
//!    was opened on, the same TLS checks), and the driver waits for the server to close that
//!    connection: PostgreSQL sends the backend its `SIGINT` before it does
//!    (`cancel_delivery.rs`; `CancelToken::cancel_query` alone returns before that, which let
//!    a late signal cancel the next user's statement: `tests/deadline_races.rs`).
//! 2. The driver keeps waiting for the statement's own answer: normally SQLSTATE 57014
//!    (`query_canceled`), the one answer that counts as the cancel ([`Expired::Cancelled`]); a
//!    statement that finished just in time answers with its result or its own error, returned
//!    as they are (never a wrong result, never a relabelled error).
//! 3. **A probe** (`SELECT 1`) makes sure the cancel cannot reach a later statement. A backend
//!    that gets the cancel while idle ignores it, but one that gets it while it is still
//!    reading the next message holds it and fires it at that message (libpq's documented race).
//!    The probe is sent after step 1 ended, so after the signal was sent: the backend handles
//!    the signal before it can read the probe, and either the probe absorbs the cancel (and
//!    fails with 57014), or the cancel was already dropped; any error answer also clears a
//!    held cancel (the backend's error recovery forgets it). Once the probe is answered no
//!    cancel of ours is left on the session.
//!
//! Bounded are the statement methods of [`PgClient`](super::PgClient) and its transactions,
//! and each wait for data of a `COPY … TO STDOUT`; each chunk written to a `COPY … FROM STDIN`
//! is bounded on its own (a chunk past the deadline closes the connection: the probe cannot
//! go out while the copy is open), and code run inside `block_on`/`run` is not bounded.
//!
//! All three steps share one grace (`min(1 s, connect_timeout)` for the pool's connections). If
//! any of them fails or runs out of it (a stopped backend, a silent proxy, a cancel that could
//! not connect), the socket is closed at once, without `Terminate`: the statement's request then
//! fails with "connection closed", and the connection is broken, so the pool closes it instead of
//! parking it. A session whose statement the server cancelled and whose probe came back is
//! clean for the next user after its usual reset.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Error};

use super::cancel_delivery::{self, CancelAddress};
use super::Io;
use crate::tls::MakeTls;

/// The longest a pool connection waits, past a deadline, for the cancel to be acknowledged
/// (capped by its `connect_timeout`).
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// How the last request that ran past its deadline ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// The server cancelled it and answered the probe: the session is idle and usable.
    Cancelled,
    /// The server did not acknowledge the cancel within the grace (or it could not be sent):
    /// the connection was closed.
    Closed,
}

/// One connection's deadline, and what the cancel needs.
pub(crate) struct Deadline {
    /// The bound on each request; `None`: no bound.
    pub(crate) timeout: Option<Duration>,
    /// How long the cancel, the statement's answer and the probe may take past the deadline.
    pub(crate) grace: Duration,
    token: CancelToken,
    tls: MakeTls,
    /// The session's server, as its connect reached it (see `cancel_delivery.rs`).
    address: CancelAddress,
    /// Set when a request ran past its deadline; read (and cleared) by the next `take`.
    pub(crate) expired: Option<Expired>,
}

/// A future that asks the session one more question: the probe.
pub(crate) type Probe<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<tokio_postgres::SimpleQueryMessage>, Error>> + 'a>>;

impl Deadline {
    pub(crate) fn new(token: CancelToken, tls: MakeTls, address: CancelAddress) -> Self {
        Deadline {
            timeout: None,
            grace: CANCEL_GRACE,
            token,
            tls,
            address,
            expired: None,
        }
    }
}

impl Io {
    /// Runs `request` under the deadline (see the module docs). `probe` makes the probe's
    /// request on the client or transaction `request` came from; without one (a transaction's
    /// begin, commit or rollback, which consume or borrow it), the cancel is confirmed only
    /// if the server answered the request with an error (which clears a held cancel), and the
    /// connection is closed otherwise.
    pub(crate) fn bounded<'p, T>(
        &mut self,
        timeout: Duration,
        request: impl Future<Output = Result<T, Error>>,
        probe: Option<impl FnOnce() -> Probe<'p>>,
    ) -> Result<T, Error> {
        let mut request = std::pin::pin!(request);
        // Timers are made inside the `async` block: tokio ties them to the runtime they are
        // created in, and only inside `block_on` is that the connection's.
        let bounded = async { tokio::time::timeout(timeout, request.as_mut()).await };
        if let Ok(answer) = self.block_on(bounded) {
            return answer;
        }
        let grace_end = Instant::now() + self.deadline.grace;
        let left = move || grace_end.saturating_duration_since(Instant::now());
        let Deadline {
            token,
            tls,
            address,
            ..
        } = &self.deadline;
        let (token, tls, address) = (token.clone(), tls.clone(), address.clone());
        let sent = self.block_on(async {
            tokio::time::timeout(left(), cancel_delivery::deliver(&token, &address, &tls)).await
        });
        let answer = match sent {
            Ok(Ok(())) => self
                .block_on(async { tokio::time::timeout(left(), request.as_mut()).await })
                .ok(),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "the cancel request for a late statement failed");
                None
            }
            Err(_) => None,
        };
        let settled = match (&answer, probe) {
            (None, _) => false,
            (Some(_), Some(probe)) => {
                let probe = probe();
                // An error answer is as good as a result: either way the backend dealt with
                // the signal (see the module docs).
                self.block_on(async { tokio::time::timeout(left(), probe).await })
                    .is_ok_and(|answer| {
                        answer.is_ok() || answer.is_err_and(|e| e.as_db_error().is_some())
                    })
            }
            (Some(answer), None) => answer.as_ref().is_err_and(|e| e.as_db_error().is_some()),
        };
        match answer {
            Some(Ok(value)) if settled => Ok(value),
            // The cancel's own error: the statement was stopped.
            Some(Err(err)) if settled && err.code() == Some(&SqlState::QUERY_CANCELED) => {
                self.deadline.expired = Some(Expired::Cancelled);
                Err(err)
            }
            // The statement's own error, which came before the cancel could stop it.
            Some(Err(err)) if settled => Err(err),
            _ => {
                tracing::debug!(
                    ?timeout,
                    "the server did not acknowledge the cancel of a late statement in time; \
                     closing the connection"
                );
                self.deadline.expired = Some(Expired::Closed);
                // Closed without `Terminate`: the peer is not answering. The request's sender
                // goes with the connection, so the request fails with "connection closed".
                self.connection = None;
                match answer {
                    Some(answer) => answer,
                    None => self.block_on(request),
                }
            }
        }
    }
}
