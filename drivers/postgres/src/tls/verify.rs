//! The server-certificate checks libpq's modes need and rustls does not offer as such.
//!
//! rustls verifies a chain and the host name together (`WebPkiServerVerifier`), which is
//! `verify-full`. libpq has two weaker checks that these verifiers provide:
//!
//! * **chain only** (`verify-ca`, and `require`/`prefer`/`allow` with `sslrootcert`): the
//!   webpki verifier runs in full, and only its verdict "valid chain, but not for this name" is
//!   turned into a pass. webpki checks the chain (trust anchor, validity dates, key usage)
//!   before the name, so that verdict is only reached for a certificate whose chain is valid.
//! * **any certificate** (`require`/`prefer`/`allow` without `sslrootcert`): the connection is
//!   encrypted but the server unauthenticated, exactly as libpq does. The handshake's
//!   signatures are still verified (with the provider's algorithms), so the peer must hold the
//!   private key of the certificate it shows.
//!
//! Public as `pool_postgres::tls_verifiers`, for native `tokio-postgres` code (and the latency
//! tool's baselines) that wants libpq's checks on a rustls connector of its own.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

/// A verifier of the chain against `roots`, and of the host name when `check_name`
/// (`verify-full`; without it, libpq's `verify-ca`).
pub fn chain(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    check_name: bool,
) -> Result<Arc<dyn ServerCertVerifier>, VerifierBuilderError> {
    let webpki =
        WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider)).build()?;
    Ok(match check_name {
        true => webpki,
        false => Arc::new(ChainOnly(webpki)),
    })
}

/// A verifier that accepts any certificate but checks the handshake's signatures (libpq's
/// `require` without `sslrootcert`; see the module docs).
pub fn any_certificate(provider: &Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyCertificate(Arc::clone(provider)))
}

/// `verify-ca`: webpki's verdict, except that a name mismatch passes.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Encryption without authentication of the server (see the module docs).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
