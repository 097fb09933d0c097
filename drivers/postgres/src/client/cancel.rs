//! [`PgCancelToken`]: cancel a running query from another thread, as `postgres::CancelToken`
//! does, but bounded.
//!
//! A cancel request is a new connection to the same server (with the same TLS checks) that
//! names the session by its process id and secret key. It runs on a runtime of its own, on
//! the calling thread, under the given timeout: a silent server cannot hold the canceller.

use std::io;
use std::time::Duration;

use tokio_postgres::CancelToken;

use super::cancel_delivery::{deliver, CancelAddress};
use crate::tls::MakeTls;

/// Cancels the query running on the connection it came from
/// ([`PgClient::cancel_token`](super::PgClient::cancel_token)). `Send`, `Sync` and `Clone`:
/// hand it to a watchdog thread.
#[derive(Clone)]
pub struct PgCancelToken {
    token: CancelToken,
    tls: MakeTls,
    address: CancelAddress,
}

impl PgCancelToken {
    pub(super) fn new(token: CancelToken, tls: MakeTls, address: CancelAddress) -> Self {
        PgCancelToken {
            token,
            tls,
            address,
        }
    }

    /// Asks the server to cancel whatever the connection is running, waiting at most
    /// `timeout` for the request to be delivered and acted on (the server closes the cancel
    /// connection once it has signalled the session: see `cancel_delivery.rs`). The query then fails with SQLSTATE 57014
    /// (`query_canceled`); if nothing is running, nothing happens. Errors: the cancel
    /// connection failed (`io::ErrorKind::Other`, wrapping the `tokio_postgres::Error`), or
    /// `TimedOut`.
    pub fn cancel_query(&self, timeout: Duration) -> io::Result<()> {
        let runtime = super::runtime()?;
        let outcome = runtime.block_on(async {
            let delivery = deliver(&self.token, &self.address, &self.tls);
            tokio::time::timeout(timeout, delivery).await
        });
        runtime.shutdown_background();
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(io::Error::other(err.to_string())),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the cancel request was not delivered within {timeout:?}"),
            )),
        }
    }
}

impl std::fmt::Debug for PgCancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token holds the session's secret key: not shown.
        f.debug_struct("PgCancelToken").finish_non_exhaustive()
    }
}
