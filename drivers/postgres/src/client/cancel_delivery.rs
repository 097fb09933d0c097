//! Delivering a cancel request and knowing it was acted on: the server has signalled the
//! backend once it closes the cancel connection.
//!
//! `tokio_postgres::CancelToken::cancel_query` writes the request, shuts its write side down
//! and returns: the postmaster may not have forked, read the request or sent the backend its
//! `SIGINT` yet. A statement that then finishes on its own lets the next one start, and the
//! late signal cancels *that* one (the next user's, after the pool's reset), as libpq's
//! `PQcancel` documents when it waits: "Wait for the postmaster to close the connection, which
//! indicates that it's processed the request. Without this delay, we might issue another
//! command only to find that our cancel zaps that command instead of the one we thought we
//! were canceling." PostgreSQL's child for a cancel request sends the signal, then exits, which
//! closes the connection. So the driver dials the session's own server itself, hands the socket
//! to `cancel_query_raw` (the same TLS negotiation as the session's) wrapped in [`UntilClosed`],
//! whose shutdown reads until the server closes: once delivery returns, the signal was sent.
//!
//! A cancel that reaches another server (a name that now resolves elsewhere) names a backend
//! that server does not have: it is dropped, no signal is ever sent to ours, and the statement
//! goes on to its own answer or the grace ends and the connection is closed. Either way no
//! signal of ours is left in flight.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::CancelToken;

use crate::tls::MakeTls;

/// Where a session's server listens, as the connect that opened the session reached it.
#[derive(Clone, Debug)]
pub(crate) enum CancelAddress {
    /// A TCP host (`hostaddr` when given, else the host name) and port, and the name TLS
    /// verifies.
    Tcp {
        host: String,
        port: u16,
        tls_name: String,
    },
    /// A unix socket (`<dir>/.s.PGSQL.<port>`); never TLS.
    Unix(PathBuf),
}

/// Sends `token`'s cancel request to `address` (with the session's TLS negotiation) and waits
/// until the server closes the connection: then the backend has been signalled.
pub(crate) async fn deliver(
    token: &CancelToken,
    address: &CancelAddress,
    tls: &MakeTls,
) -> Result<(), DeliveryError> {
    match address {
        CancelAddress::Tcp {
            host,
            port,
            tls_name,
        } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
            let stream = UntilClosed::new(stream);
            let (mut connector, _) = tls.attempt();
            let connect = MakeTlsConnect::<UntilClosed<tokio::net::TcpStream>>::make_tls_connect(
                &mut connector,
                tls_name,
            )
            .map_err(|e| DeliveryError::Tls(e.to_string()))?;
            token.cancel_query_raw(stream, connect).await?;
        }
        CancelAddress::Unix(path) => {
            let stream = UntilClosed::new(tokio::net::UnixStream::connect(path).await?);
            token
                .cancel_query_raw(stream, tokio_postgres::tls::NoTls)
                .await?;
        }
    }
    Ok(())
}

/// Why a cancel could not be delivered (the caller closes the connection).
#[derive(Debug)]
pub(crate) enum DeliveryError {
    Io(io::Error),
    Tls(String),
    Pg(tokio_postgres::Error),
}

impl From<io::Error> for DeliveryError {
    fn from(e: io::Error) -> Self {
        DeliveryError::Io(e)
    }
}

impl From<tokio_postgres::Error> for DeliveryError {
    fn from(e: tokio_postgres::Error) -> Self {
        DeliveryError::Pg(e)
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Io(e) => write!(f, "{e}"),
            DeliveryError::Tls(e) => write!(f, "TLS: {e}"),
            DeliveryError::Pg(e) => write!(f, "{e}"),
        }
    }
}

/// A stream whose shutdown, after shutting its write side down, reads (and drops) whatever
/// comes until the peer closes: `cancel_query_raw` ends with a shutdown, so it returns only
/// once the server has acted on the request. A read error counts as closed too (the server
/// reset the connection: it is gone either way).
pub(crate) struct UntilClosed<S> {
    inner: S,
    write_shut: bool,
}

impl<S> UntilClosed<S> {
    pub(crate) fn new(inner: S) -> Self {
        UntilClosed {
            inner,
            write_shut: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UntilClosed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for UntilClosed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.write_shut {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.write_shut = true;
        }
        let mut scratch = [0u8; 256];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => continue,
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}
