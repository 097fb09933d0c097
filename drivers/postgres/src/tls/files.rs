//! Reading `sslrootcert`, `sslcert` and `sslkey`: on every connect, with errors that name the
//! argument and never show the file's content.
//!
//! PEM parsing errors are described in general words only: the parser's own messages can quote
//! a line of the file, and a line of a key file is key material.

use std::path::Path;
use std::sync::Arc;

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::{ClientCert, RootCerts};

/// The trusted CA certificates of `sslrootcert`.
pub(super) fn root_store(
    root: &RootCerts,
    args: &ConnArgs,
) -> Result<Arc<RootCertStore>, DriverError> {
    let certs = match root {
        RootCerts::File(path) => certificates(path, "sslrootcert", args)?,
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(failed(format!(
                    "sslrootcert=system: no CA certificate found in the operating system's \
                     trust store{why}; install the ca-certificates package, or name a CA file \
                     with sslrootcert=/path/to/ca.pem"
                )));
            }
            found.certs
        }
    };
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(failed(format!(
            "the sslrootcert file{} holds no usable CA certificate (every certificate in it \
             failed to parse)",
            shown_path(args, "sslrootcert")
        )));
    }
    Ok(Arc::new(store))
}

/// The client certificate chain and its private key.
pub(super) fn client_identity(
    client: &ClientCert,
    args: &ConnArgs,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), DriverError> {
    let chain = certificates(&client.cert, "sslcert", args)?;
    let pem = read(&client.key, "sslkey", args)?;
    if is_encrypted(&pem) {
        return Err(failed(format!(
            "the sslkey file{} is an encrypted private key; the pool cannot decrypt keys \
             (libpq's sslpassword is not supported): store the key unencrypted, readable only \
             by the service's user (for example `openssl pkey -in encrypted.key -out \
             client.key`)",
            shown_path(args, "sslkey")
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        failed(format!(
            "the sslkey file{} holds no private key in PEM form (PKCS#8 `BEGIN PRIVATE KEY`, \
             RSA `BEGIN RSA PRIVATE KEY` or EC `BEGIN EC PRIVATE KEY`)",
            shown_path(args, "sslkey")
        ))
    })?;
    Ok((chain, key))
}

/// rustls refused the certificate and key pair (a key that does not belong to the
/// certificate, or of a type it cannot sign with). rustls' message names no key material.
pub(super) fn client_key_refused(error: &rustls::Error, args: &ConnArgs) -> DriverError {
    failed(format!(
        "the client certificate (sslcert{}) and key (sslkey{}) cannot be used: {error}; \
         check that the key belongs to the certificate",
        shown_path(args, "sslcert"),
        shown_path(args, "sslkey")
    ))
}

/// Every `CERTIFICATE` section of the PEM file `path`, the value of argument `key`.
fn certificates(
    path: &Path,
    key: &str,
    args: &ConnArgs,
) -> Result<Vec<CertificateDer<'static>>, DriverError> {
    let pem = read(path, key, args)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(failed(format!(
            "the {key} file{} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            shown_path(args, key)
        ))),
        Err(_) => Err(failed(format!(
            "the {key} file{} is not a valid PEM certificate file",
            shown_path(args, key)
        ))),
    }
}

/// The bytes of `path`, or an error naming argument `key` and why the file cannot be read.
fn read(path: &Path, key: &str, args: &ConnArgs) -> Result<Vec<u8>, DriverError> {
    std::fs::read(path).map_err(|e| {
        failed(format!(
            "cannot read the {key} file{}: {e}",
            shown_path(args, key)
        ))
    })
}

/// Whether `pem` is an encrypted key: PKCS#8 `ENCRYPTED PRIVATE KEY`, or a traditional
/// OpenSSL key with a `Proc-Type: 4,ENCRYPTED` header.
fn is_encrypted(pem: &[u8]) -> bool {
    let contains = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(b"Proc-Type: 4,ENCRYPTED")
}

/// `` `path` `` (with a leading space) for a message, or nothing when the value may not be
/// shown (written after a password, it may be a piece of it: see
/// `ConnArgs::value_for_message`).
pub(super) fn shown_path(args: &ConnArgs, key: &str) -> String {
    let shown = args.value_for_message(key);
    match shown.starts_with('`') {
        true => format!(" {shown}"),
        false => String::new(),
    }
}

fn failed(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::Connect, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_keys_are_recognised() {
        assert!(is_encrypted(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n"
        ));
        assert!(is_encrypted(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n"
        ));
        assert!(!is_encrypted(
            b"-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n"
        ));
    }
}
