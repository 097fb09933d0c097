//! TLS: `ssl-mode`, `ssl-ca`, `ssl-cert` and `ssl-key`, as the mysql client spells them, turned
//! into the `mysql` crate's [`SslOpts`].
//!
//! The crate does the TLS itself (rustls on the `ring` provider): after the server's greeting it
//! sends the `SSLRequest`, wraps the socket in a rustls stream and verifies the server's
//! certificate as the [`SslOpts`] say. This module only decides what to ask for, and checks the
//! files before a connect so that a missing or encrypted file gets a message that names it.
//!
//! # The modes
//!
//! | `ssl-mode` | this driver | mysql client (MySQL 8) | mariadb client |
//! | --- | --- | --- | --- |
//! | `DISABLED` | plain (**the default**) | plain | `--skip-ssl` |
//! | `PREFERRED` | TLS if the server offers it, else plain (a second connect); not verified | TLS if offered, else plain (same connection); not verified; **the default** | `--ssl` before 11.4; from 11.4 TLS is the default, verified |
//! | `REQUIRED` | TLS or fail; not verified, but with `ssl-ca` the chain is (like `VERIFY_CA`) | TLS or fail; never verified (a warning if `ssl-ca` is given) | `--ssl`; with `--ssl-ca` the chain is verified |
//! | `VERIFY_CA` | TLS, chain verified, host name not | same | `--ssl-ca` without `--ssl-verify-server-cert` |
//! | `VERIFY_IDENTITY` | TLS, chain and host name verified | same | `--ssl-ca` and `--ssl-verify-server-cert` |
//! | no mode, `ssl-ca` given | `VERIFY_CA` | `VERIFY_CA` | TLS required, chain verified |
//! | no mode, only `ssl-cert`/`ssl-key` | `REQUIRED` | `PREFERRED` | TLS required |
//!
//! Spellings: the key as `ssl-mode`, `ssl_mode` or `sslmode`; the value in any case, with `-` or
//! `_`, and libpq's names for the same modes (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`). `ssl-ca`/`ssl_ca`, `ssl-cert`/`ssl_cert`, `ssl-key`/`ssl_key` are PEM (or
//! DER) file paths; a certificate needs its key and the other way round; the key must not be
//! encrypted (the mysql client takes no passphrase either). The client certificate is sent in
//! every mode that encrypts.
//!
//! **Why `REQUIRED` with `ssl-ca` verifies.** The MySQL client ignores the CA then (with a
//! warning); the MariaDB client and libpq's `require` verify the chain. A pool has nobody to read
//! a warning, and a CA the user went to the trouble of giving should never be silently unused:
//! so here it verifies. For the same reason a TLS file given without a mode turns TLS on
//! (MariaDB's rule; MySQL's for `ssl-ca`), instead of being ignored by the plain default.
//!
//! **Why the default is `DISABLED`, not the clients' `PREFERRED`.**
//!
//! * `PREFERRED` protects against a passive eavesdropper only. It verifies nothing, and an
//!   active attacker downgrades it silently by clearing the TLS flag in the server's greeting.
//!   A default that encrypts "sometimes, unverified" reads as security it does not give; a
//!   pool makes you say what you need, and a server that needs TLS answers a plain connect
//!   with an error that says which `ssl-mode` to add (see `error.rs`). For a server on a
//!   network you do not control, the answer is `VERIFY_IDENTITY`.
//! * The `mysql` crate cannot fall back on the same connection: it fails right after the
//!   greeting of a server without TLS, so `PREFERRED` here connects twice to such a server.
//!   As a default that would double the TCP connects of every cold connect to the many servers
//!   without TLS (MariaDB before 11.4 ships without it), and leave an aborted handshake on the
//!   server each time: `Aborted_connects` grows, and from a remote host each one counts toward
//!   `max_connect_errors` until a connect from it succeeds, so a pool retrying with a wrong
//!   password could get its host blocked until `FLUSH HOSTS`.
//! * Existing deployments keep connecting exactly as before.
//!
//! `PREFERRED` is there for whoever wants the clients' behaviour, with that cost (measured in
//! `tests/costs.rs`).
//!
//! **Unix sockets.** TLS is never used on a unix socket (the `mysql` crate does not wrap
//! one; the servers count a local socket as secure transport). `PREFERRED` there is plain, as
//! in the mysql client; `REQUIRED` and the verifying modes are refused as invalid arguments
//! rather than silently not encrypting.
//!
//! # Trust
//!
//! The crate always trusts Mozilla's public roots (`webpki-roots`, compiled in) besides
//! `ssl-ca`; it does not read the system's store. So a managed database with a publicly
//! trusted certificate verifies without `ssl-ca`, and one with a private CA (RDS, Cloud SQL,
//! Azure) needs its CA bundle as `ssl-ca`. A consequence for `VERIFY_CA`: any certificate a
//! public CA issued, for any name, passes it; only `VERIFY_IDENTITY` ties the certificate to
//! the host.
//!
//! # Rotation
//!
//! Nothing is cached: the crate reads `ssl-ca`, `ssl-cert` and `ssl-key` on every connect
//! (`make_secure` and `ClientIdentity::load`), so a rotated certificate is used by the next
//! connect, with the same arguments and so the same pool. Connections already open keep the
//! session they have.

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use mysql::{ClientIdentity, SslOpts};
use pool_driver::{ConnArgs, DriverError, DriverErrorKind};

/// The argument keys, after the aliases are folded.
pub(crate) const MODE: &str = "sslmode";
pub(crate) const CA: &str = "ssl-ca";
pub(crate) const CERT: &str = "ssl-cert";
pub(crate) const KEY: &str = "ssl-key";

/// `ssl-mode`, as the mysql client defines it (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    /// Reads a mode in any case, with `-` or `_`, in the mysql client's or libpq's spelling.
    pub(crate) fn parse(text: &str) -> Option<SslMode> {
        match text.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" | "DISABLE" => Some(SslMode::Disabled),
            "PREFERRED" | "PREFER" => Some(SslMode::Preferred),
            "REQUIRED" | "REQUIRE" => Some(SslMode::Required),
            "VERIFY_CA" => Some(SslMode::VerifyCa),
            "VERIFY_IDENTITY" | "VERIFY_FULL" => Some(SslMode::VerifyIdentity),
            _ => None,
        }
    }

    /// The mysql client's spelling: the canonical value in the registry key.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disabled => "DISABLED",
            SslMode::Preferred => "PREFERRED",
            SslMode::Required => "REQUIRED",
            SslMode::VerifyCa => "VERIFY_CA",
            SslMode::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

/// Folds the TLS arguments onto one spelling per meaning, so that every way of writing the
/// same TLS settings lands in one pool, and rejects what cannot work. Idempotent (the driver
/// runs it again on arguments that did not come through `parse_args`).
///
/// * The mode is written in the mysql client's spelling. Without a mode: `ssl-ca` means
///   `VERIFY_CA` (as in the mysql client), `ssl-cert` and `ssl-key` alone `REQUIRED` (as in
///   the mariadb client), nothing `DISABLED`. A mode that says what its absence would is
///   dropped, so `ssl-mode=disabled` and nothing share a pool.
/// * `ssl-cert` and `ssl-key` come together; no path is empty.
/// * A unix socket with `REQUIRED` or a verifying mode is refused: nothing would be encrypted.
pub(crate) fn normalise(args: &mut ConnArgs) -> Result<(), DriverError> {
    let mode = match args.get(MODE) {
        Some(text) => SslMode::parse(text).ok_or_else(|| {
            invalid(format!(
                "mysql connection argument `ssl-mode` has an invalid value {}; expected \
                 DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY",
                args.value_for_message(MODE)
            ))
        })?,
        None => implied_mode(args),
    };
    if mode == implied_mode(args) {
        args.remove(MODE);
    } else {
        args.set(MODE, mode.as_str());
    }
    for key in [CA, CERT, KEY] {
        if args.get(key).is_some_and(|path| path.trim().is_empty()) {
            return Err(invalid(format!(
                "mysql connection argument `{key}` is empty; expected the path of a PEM file"
            )));
        }
    }
    match (args.get(CERT).is_some(), args.get(KEY).is_some()) {
        (true, false) => {
            return Err(invalid(
                "mysql connection argument `ssl-cert` needs `ssl-key` (the client \
                 certificate's private key) too"
                    .to_owned(),
            ))
        }
        (false, true) => {
            return Err(invalid(
                "mysql connection argument `ssl-key` needs `ssl-cert` (the client certificate \
                 it belongs to) too"
                    .to_owned(),
            ))
        }
        _ => {}
    }
    let on_socket = args.get("socket").is_some();
    if on_socket && !matches!(mode, SslMode::Disabled | SslMode::Preferred) {
        return Err(invalid(format!(
            "ssl-mode={} cannot be used on a unix socket: TLS is not used on a local socket \
             (the server counts it as secure transport). Connect over TCP (host= and port=) \
             to encrypt, or use ssl-mode=PREFERRED or DISABLED on the socket",
            mode.as_str()
        )));
    }
    Ok(())
}

/// The mode arguments without `ssl-mode` mean (see [`normalise`]).
fn implied_mode(args: &ConnArgs) -> SslMode {
    if args.get(CA).is_some() {
        SslMode::VerifyCa
    } else if args.get(CERT).is_some() || args.get(KEY).is_some() {
        SslMode::Required
    } else {
        SslMode::Disabled
    }
}

/// What one connect does about TLS, read from normalised arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsPlan {
    mode: SslMode,
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    /// TLS is never used on a unix socket (see the module documentation).
    on_socket: bool,
}

impl TlsPlan {
    /// The plan for arguments that went through [`normalise`].
    pub(crate) fn from_args(args: &ConnArgs) -> Result<TlsPlan, DriverError> {
        let mode = match args.get(MODE) {
            Some(text) => SslMode::parse(text).ok_or_else(|| {
                invalid(format!(
                    "mysql connection argument `ssl-mode` has an invalid value {}",
                    args.value_for_message(MODE)
                ))
            })?,
            None => implied_mode(args),
        };
        let identity = match (args.get(CERT), args.get(KEY)) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            _ => None,
        };
        Ok(TlsPlan {
            mode,
            ca: args.get(CA).map(PathBuf::from),
            identity,
            on_socket: args.get("socket").is_some(),
        })
    }

    pub(crate) fn mode(&self) -> SslMode {
        self.mode
    }

    /// Whether the first attempt asks the server for TLS.
    pub(crate) fn asks_for_tls(&self) -> bool {
        self.mode != SslMode::Disabled && !self.on_socket
    }

    /// Whether a server that offers no TLS gets a second, plain attempt (`PREFERRED` only).
    pub(crate) fn falls_back_to_plain(&self) -> bool {
        self.mode == SslMode::Preferred
    }

    /// Whether a client certificate is sent.
    pub(crate) fn has_client_cert(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether the server's certificate chain is checked: the verifying modes, and `REQUIRED`
    /// with `ssl-ca` (see the module documentation).
    fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::Disabled | SslMode::Preferred => false,
            SslMode::Required => self.ca.is_some(),
            SslMode::VerifyCa | SslMode::VerifyIdentity => true,
        }
    }

    /// The crate's options for an attempt that asks for TLS: `None` when it does not.
    ///
    /// The crate's two switches: `accept_invalid_certs` skips every check of the server's
    /// certificate (chain, dates, name, and the handshake signature: a `REQUIRED` connection
    /// is encrypted against a passive eavesdropper, nothing more), `skip_domain_validation`
    /// only the name (the chain and dates are still checked first).
    pub(crate) fn ssl_opts(&self) -> Option<SslOpts> {
        if !self.asks_for_tls() {
            return None;
        }
        let verify_chain = self.verifies_chain();
        let mut opts = SslOpts::default()
            .with_danger_accept_invalid_certs(!verify_chain)
            .with_danger_skip_domain_validation(self.mode != SslMode::VerifyIdentity)
            .with_client_identity(
                self.identity
                    .as_ref()
                    .map(|(cert, key)| ClientIdentity::new(cert.clone(), key.clone())),
            );
        if verify_chain {
            opts = opts.with_root_cert_path(self.ca.clone());
        }
        Some(opts)
    }

    /// Checks, right before a connect that asks for TLS, that the files can be read and the key
    /// is not encrypted, so the error names the file and the cause ("no such file", "encrypted
    /// key") instead of a bare I/O error from inside the crate. The crate reads them again
    /// itself; nothing is kept. Messages show paths as [`ConnArgs::value_for_message`] allows,
    /// never file contents.
    pub(crate) fn check_files(&self, args: &ConnArgs) -> Result<(), DriverError> {
        if !self.asks_for_tls() {
            return Ok(());
        }
        let unreadable = |key: &str, e: std::io::Error| {
            DriverError::new(
                DriverErrorKind::Connect,
                format!(
                    "cannot read the {key} file {}: {e}",
                    args.value_for_message(key)
                ),
            )
        };
        if let (Some(ca), true) = (&self.ca, self.verifies_chain()) {
            fs::File::open(ca).map_err(|e| unreadable(CA, e))?;
        }
        if let Some((cert, key)) = &self.identity {
            fs::File::open(cert).map_err(|e| unreadable(CERT, e))?;
            let mut text = Vec::new();
            fs::File::open(key)
                .and_then(|mut file| file.read_to_end(&mut text))
                .map_err(|e| unreadable(KEY, e))?;
            let encrypted = is_encrypted_pem(&text);
            text.fill(0);
            if encrypted {
                return Err(DriverError::new(
                    DriverErrorKind::Connect,
                    format!(
                        "the {KEY} file {} holds an encrypted private key, which the mysql \
                         client library cannot use (it takes no passphrase): decrypt it, for \
                         example with `openssl pkey -in <file> -out <new file>`, and keep the \
                         new file readable only by this service",
                        args.value_for_message(KEY)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether PEM text holds an encrypted private key (PKCS#8 `ENCRYPTED PRIVATE KEY`, or a
/// traditional key with a `Proc-Type: 4,ENCRYPTED` header). Looks at the labels only.
fn is_encrypted_pem(text: &[u8]) -> bool {
    let contains = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(b"Proc-Type: 4,ENCRYPTED")
}

/// Makes sure rustls has a process-wide crypto provider before the `mysql` crate builds its
/// TLS configuration.
///
/// The crate calls `ClientConfig::builder()`, which uses the process default provider, and
/// when none is installed, installs one from rustls' cargo features, which works only when
/// exactly one provider is compiled in. This driver compiles in `ring`; an application that
/// also links `aws-lc-rs` (through another crate's rustls features) would make that call
/// panic. So when no default is installed, `ring`'s is installed here: what rustls itself does
/// when `ring` is the only one, and a working default when both are. An application that
/// prefers another provider installs it at startup, before the first TLS connect, and this
/// driver uses that one.
pub(crate) fn ensure_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread's install is fine: a default is then set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn invalid(message: String) -> DriverError {
    DriverError::new(DriverErrorKind::InvalidArgs, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(text: &str) -> Result<ConnArgs, DriverError> {
        let mut args = ConnArgs::parse(text)?;
        for (alias, canonical) in [
            ("ssl-mode", MODE),
            ("ssl_mode", MODE),
            ("ssl_ca", CA),
            ("ssl_cert", CERT),
            ("ssl_key", KEY),
        ] {
            args.rename(alias, canonical);
        }
        normalise(&mut args)?;
        Ok(args)
    }

    fn plan(text: &str) -> TlsPlan {
        TlsPlan::from_args(&normalised(text).expect("normalises")).expect("plans")
    }

    #[test]
    fn modes_in_every_spelling() {
        for (text, mode) in [
            ("disabled", SslMode::Disabled),
            ("DISABLE", SslMode::Disabled),
            ("Preferred", SslMode::Preferred),
            ("prefer", SslMode::Preferred),
            ("REQUIRED", SslMode::Required),
            ("require", SslMode::Required),
            ("verify_ca", SslMode::VerifyCa),
            ("verify-ca", SslMode::VerifyCa),
            ("VERIFY_IDENTITY", SslMode::VerifyIdentity),
            ("verify-identity", SslMode::VerifyIdentity),
            ("verify-full", SslMode::VerifyIdentity),
        ] {
            assert_eq!(SslMode::parse(text), Some(mode), "{text}");
            assert_eq!(SslMode::parse(mode.as_str()), Some(mode));
        }
        for text in ["", "allow", "on", "true", "verify", "VERIFY_SERVER_CERT"] {
            assert_eq!(SslMode::parse(text), None, "{text}");
        }
    }

    #[test]
    fn the_default_is_disabled_and_shares_a_key_with_it() {
        let none = normalised("host=h").expect("normalises");
        let explicit = normalised("host=h ssl-mode=disabled").expect("normalises");
        assert_eq!(none.canonical(), explicit.canonical());
        assert_eq!(none.get(MODE), None);
        assert_eq!(plan("host=h").mode(), SslMode::Disabled);
        let verify = normalised("host=h ssl_mode=verify-full").expect("normalises");
        let same = normalised("host=h sslmode=VERIFY_IDENTITY").expect("normalises");
        assert_eq!(verify.canonical(), same.canonical());
        assert_eq!(verify.get(MODE), Some("VERIFY_IDENTITY"));
        let preferred = normalised("host=h ssl-mode=prefer").expect("normalises");
        assert_eq!(preferred.get(MODE), Some("PREFERRED"));
    }

    /// A TLS file without a mode turns TLS on rather than being ignored by the plain default.
    #[test]
    fn tls_files_without_a_mode_imply_one() {
        let implicit = normalised("host=h ssl-ca=/ca.pem").expect("normalises");
        let explicit = normalised("host=h ssl-mode=VERIFY_CA ssl_ca=/ca.pem").expect("normalises");
        assert_eq!(implicit.canonical(), explicit.canonical());
        assert_eq!(plan("host=h ssl-ca=/ca.pem").mode(), SslMode::VerifyCa);
        let cert = "ssl-cert=/c.pem ssl-key=/k.pem";
        assert_eq!(plan(&format!("host=h {cert}")).mode(), SslMode::Required);
        assert_eq!(
            normalised(&format!("host=h {cert}"))
                .expect("normalises")
                .canonical(),
            normalised(&format!("host=h {cert} ssl-mode=required"))
                .expect("normalises")
                .canonical()
        );
        // An explicit mode stays what it says (and is then part of the key).
        for (text, mode) in [
            (
                "host=h ssl-mode=PREFERRED ssl-ca=/ca.pem",
                SslMode::Preferred,
            ),
            ("host=h ssl-mode=DISABLED ssl-ca=/ca.pem", SslMode::Disabled),
        ] {
            assert_eq!(plan(text).mode(), mode, "{text}");
            assert_eq!(
                normalised(text).expect("normalises").get(MODE),
                Some(mode.as_str())
            );
        }
    }

    /// What each mode asks the crate for.
    #[test]
    fn ssl_opts_per_mode() {
        assert!(plan("host=h ssl-mode=DISABLED").ssl_opts().is_none());
        assert!(plan("host=h ssl-mode=DISABLED ssl-ca=/ca")
            .ssl_opts()
            .is_none());

        let unverified = |o: &SslOpts| o.accept_invalid_certs() && o.root_cert_path().is_none();
        assert!(plan("host=h").ssl_opts().is_none(), "plain by default");
        let preferred = plan("host=h ssl-mode=PREFERRED")
            .ssl_opts()
            .expect("asks for TLS");
        assert!(unverified(&preferred));
        assert!(plan("host=h ssl-mode=PREFERRED").falls_back_to_plain());
        let preferred_ca = plan("host=h ssl-mode=PREFERRED ssl-ca=/ca")
            .ssl_opts()
            .expect("tls");
        assert!(unverified(&preferred_ca), "PREFERRED never verifies");

        let required = plan("host=h ssl-mode=REQUIRED");
        assert!(unverified(&required.ssl_opts().expect("tls")));
        assert!(!required.falls_back_to_plain());
        let required_ca = plan("host=h ssl-mode=REQUIRED ssl-ca=/ca")
            .ssl_opts()
            .expect("tls");
        assert!(!required_ca.accept_invalid_certs());
        assert!(required_ca.skip_domain_validation());
        assert_eq!(
            required_ca.root_cert_path(),
            Some(std::path::Path::new("/ca"))
        );

        let ca = plan("host=h ssl-mode=VERIFY_CA ssl-ca=/ca")
            .ssl_opts()
            .expect("tls");
        assert!(!ca.accept_invalid_certs() && ca.skip_domain_validation());
        assert_eq!(ca.root_cert_path(), Some(std::path::Path::new("/ca")));
        let public_roots = plan("host=h ssl-mode=VERIFY_IDENTITY")
            .ssl_opts()
            .expect("tls");
        assert!(!public_roots.accept_invalid_certs() && !public_roots.skip_domain_validation());
        assert_eq!(public_roots.root_cert_path(), None);

        let with_cert = plan("host=h ssl-mode=REQUIRED ssl-cert=/c.pem ssl-key=/k.pem");
        assert!(with_cert.has_client_cert());
        let identity = with_cert
            .ssl_opts()
            .and_then(|o| o.client_identity().cloned())
            .expect("identity");
        assert_eq!(identity.cert_chain_path(), std::path::Path::new("/c.pem"));
        assert_eq!(identity.priv_key_path(), std::path::Path::new("/k.pem"));
    }

    #[test]
    fn unworkable_settings_are_refused() {
        for text in [
            "host=h ssl-mode=maybe",
            "host=h ssl-cert=/c.pem",
            "host=h ssl-key=/k.pem",
            "host=h ssl-ca=''",
            "socket=/run/my.sock ssl-mode=REQUIRED",
            "socket=/run/my.sock ssl-mode=VERIFY_IDENTITY",
            "socket=/run/my.sock ssl-ca=/ca.pem",
        ] {
            let error = normalised(text).expect_err(text);
            assert_eq!(error.kind(), DriverErrorKind::InvalidArgs, "{text}");
        }
        // PREFERRED on a socket is simply plain, as in the mysql client.
        let on_socket = plan("socket=/run/my.sock ssl-mode=PREFERRED");
        assert!(!on_socket.asks_for_tls() && on_socket.ssl_opts().is_none());
    }

    #[test]
    fn encrypted_keys_are_recognised_by_their_labels() {
        assert!(is_encrypted_pem(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
        ));
        assert!(is_encrypted_pem(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES\n"
        ));
        assert!(!is_encrypted_pem(
            b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
        ));
    }

    #[test]
    fn file_errors_name_the_file_and_never_show_its_contents() {
        let dir = std::env::temp_dir().join(format!("pool-mysql-tls-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let key = dir.join("enc.key");
        fs::write(
            &key,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nU2VjcmV0S2V5TWF0ZXJpYWw=\n\
             -----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .expect("write");
        let cert = dir.join("c.pem");
        fs::write(&cert, "not checked here").expect("write");
        let text = format!(
            "host=h ssl-mode=REQUIRED ssl-cert={} ssl-key={}",
            cert.display(),
            key.display()
        );
        let args = normalised(&text).expect("normalises");
        let error = TlsPlan::from_args(&args)
            .expect("plans")
            .check_files(&args)
            .expect_err("encrypted");
        assert_eq!(error.kind(), DriverErrorKind::Connect);
        assert!(error.message().contains("encrypted private key"), "{error}");
        assert!(error.message().contains("enc.key"), "{error}");
        assert!(!error.message().contains("U2Vj"), "{error}");

        let missing = normalised("host=h ssl-ca=/no/such/ca.pem").expect("normalises");
        let error = TlsPlan::from_args(&missing)
            .expect("plans")
            .check_files(&missing)
            .expect_err("missing");
        assert!(
            error.message().contains("ssl-ca file `/no/such/ca.pem`"),
            "{error}"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
