//! TLS for the baselines (the cold connect and r2d2): rustls on `ring`, set up from the same
//! arguments the pool's drivers read, so both sides of a TLS comparison encrypt and verify
//! alike.
//!
//! The pool's drivers build their TLS from their own arguments; the baselines here are the
//! ecosystem crates a service would use without the pool (`postgres` + `tokio-postgres-rustls`,
//! `mysql` with `SslOpts`, `redis` with `tls-rustls`), configured by hand. PostgreSQL needs the
//! most of it, because `tokio-postgres` knows only `sslmode=disable|prefer|require` and leaves
//! verification to the connector: [`postgres_connector`] turns libpq's `sslmode` /
//! `sslrootcert` / `sslcert` / `sslkey` into a rustls `ClientConfig` with libpq's checks.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use pool::postgres_driver::tls_verifiers;
use r2d2_postgres::postgres::config::SslMode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::measure::BoxError;

/// Makes `ring` rustls' process-wide crypto provider, unless one is set already.
///
/// The `redis` crate (0.32) builds its rustls config with `ClientConfig::builder()`, which uses
/// the process-wide provider and panics when none is installed and the build has more or less
/// than one compiled in. The pool's Redis driver installs `ring` before its first TLS connect,
/// but the tool's own Redis client (cold connect, r2d2) must not depend on the pool having
/// connected first. `Err` only means a provider is installed already: that one is kept.
pub fn install_ring_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// libpq's TLS arguments of a PostgreSQL target, as the pool's driver reads them.
#[derive(Debug, Default)]
pub struct PgTls {
    /// `sslmode`; `None` means libpq's (and the driver's) default, `prefer`.
    pub mode: Option<String>,
    /// `sslrootcert`: a PEM file, or `system` for the operating system's trust store.
    pub root: Option<String>,
    /// `sslcert` and `sslkey`: a client certificate and its (unencrypted) key.
    pub client: Option<(String, String)>,
}

/// The `sslmode` for `tokio-postgres`, and a rustls connector that checks the server's
/// certificate as libpq's mode says:
///
/// * `verify-full`: the chain against `sslrootcert` and the host name;
/// * `verify-ca`, and `prefer`/`require` with `sslrootcert`: the chain only (libpq's rule, also
///   the driver's);
/// * `prefer`/`require` without `sslrootcert`: encrypted, the server not authenticated (the
///   handshake's signatures are still checked).
///
/// The config is built once and shared by every connect of the baseline, as a service would;
/// the pool's driver reads the files on every connect instead (so a rotated certificate is
/// used by the next one), which costs microseconds of a connect's milliseconds.
pub fn postgres_connector(tls: &PgTls) -> Result<(SslMode, MakeRustlsConnect), BoxError> {
    let mode = tls.mode.as_deref().unwrap_or("prefer");
    let (ssl_mode, check_name) = match mode {
        "disable" => (SslMode::Disable, false),
        // `allow` tries plain first; tokio-postgres cannot, and TLS when offered is close.
        "allow" | "prefer" => (SslMode::Prefer, false),
        "require" | "verify-ca" => (SslMode::Require, false),
        "verify-full" => (SslMode::Require, true),
        other => return Err(format!("sslmode `{other}` is not a libpq sslmode").into()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    // The checks themselves are the driver's (`pool_postgres::tls_verifiers`), so both sides
    // of a comparison verify alike by construction.
    let verifier = match tls.root.as_deref() {
        Some(root) => tls_verifiers::chain(Arc::new(root_store(root)?), &provider, check_name)?,
        None if check_name || mode == "verify-ca" => {
            return Err(format!("sslmode={mode} needs sslrootcert (a PEM file or `system`)").into())
        }
        None => tls_verifiers::any_certificate(&provider),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &tls.client {
        Some((cert, key)) => builder.with_client_auth_cert(
            read_certificates(Path::new(cert), "sslcert")?,
            // The parser's error is not shown: it may quote a line of the key file.
            PrivateKeyDer::from_pem_file(key)
                .map_err(|_| format!("sslkey {key}: no unencrypted PEM private key in it"))?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok((ssl_mode, MakeRustlsConnect::new(config)))
}

/// The CAs to trust: a PEM file, or the operating system's store for `system`.
fn root_store(root: &str) -> Result<RootCertStore, BoxError> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            return Err(format!(
                "sslrootcert=system: no CA certificate found in the system store ({:?})",
                found.errors
            )
            .into());
        }
        store.add_parsable_certificates(found.certs);
    } else {
        for cert in read_certificates(Path::new(root), "sslrootcert")? {
            store.add(cert)?;
        }
    }
    Ok(store)
}

/// Every certificate of a PEM file; an error names the argument, never the file's content.
fn read_certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, BoxError> {
    let pem = fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| format!("{key} {}: not a PEM file of certificates", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no PEM certificate in it", path.display()).into());
    }
    Ok(certs)
}
