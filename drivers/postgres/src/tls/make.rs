//! [`MakeTls`]: `tokio-postgres-rustls`' connector, plus a flag saying whether a handshake
//! was started.
//!
//! The flag decides two things libpq does after a failed attempt: `sslmode=prefer` retries
//! without TLS only when TLS was actually tried (the server answered the SSLRequest with `S`),
//! and a plain login the server refuses (`no pg_hba.conf entry … no encryption`) gets the
//! advice that the server may require TLS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::ClientConfig;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector of one connect; [`MakeTls::attempt`] gives each host attempt its own flag.
#[derive(Clone)]
pub(crate) struct MakeTls {
    config: Arc<ClientConfig>,
}

impl MakeTls {
    pub(crate) fn new(config: Arc<ClientConfig>) -> Self {
        MakeTls { config }
    }

    /// A connector for one attempt, and the flag it sets when it starts a handshake.
    pub(crate) fn attempt(&self) -> (Flagged, Arc<AtomicBool>) {
        let started = Arc::new(AtomicBool::new(false));
        let connector = Flagged {
            inner: MakeRustlsConnect::new(ClientConfig::clone(&self.config)),
            started: Arc::clone(&started),
        };
        (connector, started)
    }
}

/// `MakeRustlsConnect` that records the start of a handshake.
pub(crate) struct Flagged {
    inner: MakeRustlsConnect,
    started: Arc<AtomicBool>,
}

impl<S> MakeTlsConnect<S> for Flagged
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = Started<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(Started {
            inner: self.inner.make_tls_connect(domain)?,
            started: Arc::clone(&self.started),
        })
    }
}

/// A `TlsConnect` that sets its flag when the handshake starts.
pub(crate) struct Started<C> {
    inner: C,
    started: Arc<AtomicBool>,
}

impl<S, C: TlsConnect<S>> TlsConnect<S> for Started<C> {
    type Stream = C::Stream;
    type Error = C::Error;
    type Future = C::Future;

    fn connect(self, stream: S) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        self.inner.connect(stream)
    }
}
