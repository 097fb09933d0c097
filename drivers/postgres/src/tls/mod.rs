//! TLS: libpq's arguments, and the rustls connector a connect uses.
//!
//! The arguments are libpq's, with libpq's meaning (the table is in the README):
//!
//! | `sslmode` | TLS | certificate checked | on failure |
//! | --- | --- | --- | --- |
//! | `disable` | never | — | — |
//! | `allow` | only if the server refuses the plain login | chain, if `sslrootcert` is given | — |
//! | `prefer` (the default, as in libpq) | if the server offers it | chain, if `sslrootcert` is given | a failed TLS attempt is retried without TLS |
//! | `require` | always | chain, if `sslrootcert` is given (libpq: then `require` acts as `verify-ca`) | error |
//! | `verify-ca` | always | chain against `sslrootcert` | error |
//! | `verify-full` | always | chain, and the host name | error |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the operating system's
//! trust store (which, as in libpq, implies and requires `verify-full`). `sslcert`/`sslkey` are
//! a PEM client certificate (chain) and its unencrypted private key, for `cert` authentication;
//! an encrypted key is refused with a clear error (libpq's `sslpassword` is not supported).
//! Unlike libpq, nothing is read from `~/.postgresql/`: `verify-ca` and `verify-full` need
//! `sslrootcert`, and a client certificate is used only when both files are named. Unix socket
//! connections never use TLS (the server does not offer it there), whatever `sslmode` says.
//!
//! Files are checked on every connect: the configuration built from them is shared by every
//! connection while they are unchanged (one root store in memory, and TLS sessions resumed
//! across connects), and rebuilt from the files as soon as one was replaced or rewritten, so a
//! rotated certificate or CA bundle is picked up by the next connect; a missing or unreadable
//! file fails that connect with a message naming the argument. The system trust store is
//! re-read at most every five minutes. File content never appears in an error, in `Debug`
//! output or in a log.
//!
//! rustls runs on the `ring` provider, chosen explicitly for each connector (never the
//! process-wide default), so the driver builds on a bare machine from crates alone (no
//! aws-lc-rs, no OpenSSL) and is unaffected by which provider another crate in the process
//! installs.

mod cache;
mod diagnose;
mod files;
mod make;
pub mod verify;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pool_driver::{ConnArgs, DriverError};
use rustls::ClientConfig;

use crate::config::{bad_value, invalid};

pub(crate) use diagnose::{describe, is_handshake_failure};
pub(crate) use make::MakeTls;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first; TLS only if the server refuses the plain login.
    Allow,
    /// TLS if the server offers it, plain otherwise (also after a failed TLS attempt).
    Prefer,
    /// TLS or nothing; the certificate is checked only against a given `sslrootcert`.
    Require,
    /// TLS, the certificate chain checked against `sslrootcert`, any host name.
    VerifyCa,
    /// TLS, the chain checked and the host name matched.
    VerifyFull,
}

impl SslMode {
    /// The value as libpq spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RootCerts {
    /// A PEM file (`sslrootcert=/path`).
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`).
    System,
}

/// A client certificate and its key (`sslcert` + `sslkey`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientCert {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// The TLS arguments of one target, checked for contradictions when parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TlsArgs {
    pub(crate) mode: SslMode,
    pub(crate) root: Option<RootCerts>,
    pub(crate) client: Option<ClientCert>,
}

impl TlsArgs {
    /// Reads `sslmode`, `sslrootcert`, `sslcert` and `sslkey` from `args`.
    pub(crate) fn parse(args: &ConnArgs) -> Result<TlsArgs, DriverError> {
        let root = args.get("sslrootcert").map(|value| match value {
            "system" => RootCerts::System,
            path => RootCerts::File(PathBuf::from(path)),
        });
        let mode = match args.get("sslmode") {
            None if root == Some(RootCerts::System) => SslMode::VerifyFull,
            None => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("allow") => SslMode::Allow,
            Some("prefer") => SslMode::Prefer,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(_) => {
                return Err(bad_value(
                    args,
                    "sslmode",
                    "disable, allow, prefer, require, verify-ca or verify-full",
                ))
            }
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
            return Err(invalid(format!(
                "postgres connection argument sslmode={} needs sslrootcert: the path of a PEM \
                 file with the CA certificate(s) that signed the server's certificate, or \
                 sslrootcert=system for the operating system's trust store (unlike libpq, \
                 ~/.postgresql/root.crt is not read)",
                mode.as_str()
            )));
        }
        if root == Some(RootCerts::System) && mode != SslMode::VerifyFull {
            return Err(invalid(format!(
                "postgres connection arguments: sslrootcert=system needs sslmode=verify-full \
                 (as in libpq: a public CA vouches for names, so the name must be checked), \
                 not sslmode={}",
                mode.as_str()
            )));
        }
        let client = match (args.get("sslcert"), args.get("sslkey")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientCert {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    "postgres connection arguments: a client certificate needs both sslcert \
                     (the PEM certificate) and sslkey (its PEM private key); unlike libpq, \
                     ~/.postgresql/postgresql.crt and .key are not read",
                ))
            }
        };
        Ok(TlsArgs { mode, root, client })
    }

    /// The connector for one connect. With certificate files, the configuration built from
    /// them is reused while the files are unchanged (see `cache.rs`), and rebuilt from the
    /// files when one was replaced or rewritten: a rotated file is picked up by the next
    /// connect.
    pub(crate) fn connector(&self, args: &ConnArgs) -> Result<MakeTls, DriverError> {
        // With sslmode=disable tokio-postgres never touches TLS, but the type wants a
        // connector: the shared configuration that reads no file.
        if self.mode == SslMode::Disable || (self.root.is_none() && self.client.is_none()) {
            return Ok(MakeTls::new(unverified()?));
        }
        cache::get_or_build(self, || self.build(args)).map(MakeTls::new)
    }

    /// Reads the certificate files and builds the rustls client configuration for this mode.
    fn build(&self, args: &ConnArgs) -> Result<Arc<ClientConfig>, DriverError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_setup_error(&e))?;
        let builder = match &self.root {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(verify::any_certificate(&provider)),
            Some(root) => {
                let roots = files::root_store(root, args)?;
                let verifier = verify::chain(roots, &provider, self.mode == SslMode::VerifyFull)
                    .map_err(|e| tls_setup_error(&e))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
            }
        };
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let (chain, key) = files::client_identity(client, args)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| files::client_key_refused(&e, args))?
            }
        };
        Ok(Arc::new(config))
    }

    /// The files this configuration is read from (the system trust store is not a file).
    fn files(&self) -> Vec<&std::path::Path> {
        let mut files = Vec::new();
        if let Some(RootCerts::File(path)) = &self.root {
            files.push(path.as_path());
        }
        if let Some(client) = &self.client {
            files.push(client.cert.as_path());
            files.push(client.key.as_path());
        }
        files
    }
}

/// rustls' `ring` provider, built once.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The configuration for TLS without a CA to check against (`prefer`, `allow`, `require`
/// without `sslrootcert`): encrypts, checks the handshake's signatures, trusts any certificate
/// (libpq does the same). Built once: it reads no file.
fn unverified() -> Result<Arc<ClientConfig>, DriverError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let built = CONFIG.get_or_init(|| {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(verify::any_certificate(&provider))
                .with_no_client_auth(),
        ))
    });
    match built {
        Ok(config) => Ok(Arc::clone(config)),
        Err(message) => Err(tls_setup_error(message)),
    }
}

/// An error setting up rustls itself (not the user's files): a bug or an unsupported build.
fn tls_setup_error(error: &dyn std::fmt::Display) -> DriverError {
    DriverError::new(
        pool_driver::DriverErrorKind::Connect,
        format!("setting up TLS failed: {error}"),
    )
}
