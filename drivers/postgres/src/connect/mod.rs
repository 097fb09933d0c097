//! Opening a connection: every host attempt (socket, TLS negotiation, startup, authentication,
//! the `target_session_attrs` check) is one future, and the whole connect runs under the
//! pool's `connect_timeout` on the new connection's own runtime, on the calling thread.
//!
//! On timeout the future is dropped, and with it the socket and the TLS session: nothing is
//! left running and no thread stays behind (the driver on the `postgres` crate ran the connect
//! on a helper thread and abandoned it, blocked for as long as the server stayed silent). The
//! one exception is a host name lookup still running in the system resolver: it finishes on
//! the runtime's blocking thread, bounded by the resolver's own timeouts, and that thread then
//! ends (the runtime is shut down in the background, never joined).

mod failure;
mod hosts;

use std::cell::RefCell;
use std::time::Duration;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};

use crate::client::{self, PgClient};
use crate::config;

/// Connects as `args` say, within `timeout` in all (each host also within `connect_timeout`
/// when the arguments set it, as in libpq).
pub(crate) fn connect(args: &ConnArgs, timeout: Duration) -> Result<PgClient, DriverError> {
    let plan = config::plan(args)?;
    // Certificate files are read here, on every connect: a rotated one is picked up.
    let tls = plan.tls.connector(args)?;
    let runtime = client::runtime().map_err(|e| {
        DriverError::new(
            DriverErrorKind::Connect,
            format!("cannot create the connection's runtime: {e}"),
        )
    })?;
    let failures = RefCell::new(Vec::new());
    // Outside the timed future: a `prefer-standby` fallback found before the deadline ran out
    // is still the answer (the host being tried when it did is given up).
    let fallback = RefCell::new(None);
    let outcome = runtime.block_on(async {
        let attempts = hosts::first_that_answers(&plan, &tls, &failures, &fallback);
        tokio::time::timeout(timeout, attempts).await
    });
    let (answer, overall) = match outcome {
        Ok(answer) => (answer, None),
        Err(_elapsed) => (fallback.into_inner(), Some(timeout)),
    };
    if let Some(answer) = answer {
        let address = answer.target.cancel_address();
        let mut client = PgClient::new(runtime, answer.client, answer.connection, tls, address);
        client.role_reports_trusted = answer.reports_trusted;
        return Ok(client);
    }
    runtime.shutdown_background();
    let error = failure::report(&failures.into_inner(), args, overall);
    tracing::debug!(args = %args, error = %error, "postgres connect failed");
    Err(error)
}
