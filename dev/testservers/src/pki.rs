//! A throwaway certificate authority for TLS tests: certificates made at test time, written as
//! PEM files into a private temporary directory.
//!
//! Why made at test time instead of checked in: a checked-in certificate expires one day and
//! every TLS test fails at once, for no reason in the code; a checked-in private key invites
//! copying into something real. Generation is cheap (ECDSA P-256 keys, a few milliseconds
//! each, pure Rust through `rcgen` on `ring`, no system OpenSSL).
//!
//! What one [`TestPki`] holds, and what each part is for:
//!
//! | file | for |
//! | --- | --- |
//! | [`ca_cert`](TestPki::ca_cert) | the CA a client trusts: it signed every server certificate and [`client`](TestPki::client) certificate |
//! | [`other_ca_cert`](TestPki::other_ca_cert) | a second, unrelated CA: a client trusting it must refuse every server here ("wrong CA") |
//! | [`server_cert`](TestPki::server_cert)`(`[`ServerCert::Valid`]`)` | `localhost`, `127.0.0.1` and `::1`, valid now |
//! | [`server_cert`](TestPki::server_cert)`(`[`ServerCert::WrongHost`]`)` | valid now, but only for `wrong.example` ("wrong host name") |
//! | [`server_cert`](TestPki::server_cert)`(`[`ServerCert::Expired`]`)` | the right names, but expired yesterday |
//! | [`client`](TestPki::client)`(user)` | a client certificate with `CN = user`, signed by the CA (PostgreSQL `cert` auth, MariaDB `REQUIRE X509`, Redis `tls-auth-clients`) |
//! | [`untrusted_client`](TestPki::untrusted_client)`(user)` | the same, signed by the other CA: every server must refuse it |
//! | [`encrypted_client_key`](TestPki::encrypted_client_key)`(user)` | the client key as encrypted PKCS#8 (passphrase [`key_passphrase`](TestPki::key_passphrase)), made with the `openssl` CLI |
//!
//! Every private key file has mode 0600: libpq refuses a client key that group or others can
//! read, and PostgreSQL a server key. A server never reads these files where they are: it gets
//! its own copies, owned by the user it runs as (see [`ServerTls`]).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::ServerError;
use crate::process::{self, ServiceUser};
use crate::workdir::WorkDir;

/// The passphrase of every [`TestPki::encrypted_client_key`]. Distinctive, so a test can search
/// for it in error messages and `Debug` output (it must never appear there).
const KEY_PASSPHRASE: &str = "pki-key-Pa55phrase-x9Qv";

/// The host names and addresses a [`ServerCert::Valid`] (and an expired one) is issued for.
const RIGHT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// The only name a [`ServerCert::WrongHost`] certificate is issued for.
const WRONG_NAME: &str = "wrong.example";

/// Which server certificate a TLS server presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerCert {
    /// Signed by the CA, for `localhost`, `127.0.0.1` and `::1`, valid now: full verification
    /// (PostgreSQL `verify-full`, MariaDB `VERIFY_IDENTITY`, Redis with a CA) succeeds.
    Valid,
    /// Signed by the CA and valid now, but only for `wrong.example`: verifying the CA succeeds
    /// (`verify-ca`), verifying the host name fails.
    WrongHost,
    /// Signed by the CA, for the right names, but its validity ended yesterday: every
    /// verifying client refuses it; `require` without verification still connects.
    Expired,
}

impl ServerCert {
    /// The names (DNS names and IP addresses) the certificate is issued for.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            ServerCert::Valid | ServerCert::Expired => &RIGHT_NAMES,
            ServerCert::WrongHost => &[WRONG_NAME],
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            ServerCert::Valid => "server",
            ServerCert::WrongHost => "server-wrong-host",
            ServerCert::Expired => "server-expired",
        }
    }
}

/// A client certificate and its key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    user: String,
    cert: PathBuf,
    key: PathBuf,
}

impl ClientCert {
    /// The user name in the certificate's common name (what PostgreSQL `cert` auth compares
    /// with the login name).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The certificate (PEM).
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// Its private key (PEM, unencrypted PKCS#8, mode 0600).
    pub fn key(&self) -> &Path {
        &self.key
    }
}

/// A throwaway PKI: two CAs, three server certificates, client certificates on demand. Cheap
/// to clone (the clones share one directory, deleted when the last one is dropped).
///
/// ```no_run
/// use pool_testservers::{PgServer, ServerCert, TestPki};
/// let pki = TestPki::generate()?;
/// let pg = PgServer::start_tls(&pki, ServerCert::Valid)?;
/// let args = format!(
///     "host=localhost port={} user=pool_scram password={} dbname=pool_test \
///      sslmode=verify-full sslrootcert={}",
///     pg.port(),
///     pg.scram_password(),
///     pki.ca_cert().display(),
/// );
/// # let _ = args;
/// # Ok::<(), pool_testservers::ServerError>(())
/// ```
#[derive(Clone)]
pub struct TestPki {
    inner: Arc<Inner>,
}

struct Inner {
    dir: WorkDir,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    other_ca_cert: PathBuf,
    other_ca_key: PathBuf,
    /// Signs client certificates made later, on demand.
    ca: Issuer<'static, KeyPair>,
    other_ca: Issuer<'static, KeyPair>,
    clients: Mutex<Clients>,
}

#[derive(Default)]
struct Clients {
    trusted: HashMap<String, ClientCert>,
    untrusted: HashMap<String, ClientCert>,
    encrypted: HashMap<String, PathBuf>,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Makes both CAs and the three server certificates and writes them into a new private
    /// directory (`<tmp>/pool-testservers-pki-XXXXXX`, mode 0700).
    pub fn generate() -> Result<TestPki, ServerError> {
        let dir = WorkDir::create("pki", None)?;
        let now = OffsetDateTime::now_utc();
        let (ca, ca_cert, ca_key) = make_ca(dir.path(), "ca", "pool-testservers CA", now)?;
        let (other_ca, other_ca_cert, other_ca_key) =
            make_ca(dir.path(), "other-ca", "pool-testservers unrelated CA", now)?;
        for which in [
            ServerCert::Valid,
            ServerCert::WrongHost,
            ServerCert::Expired,
        ] {
            make_server_cert(dir.path(), &ca, which, now)?;
        }
        Ok(TestPki {
            inner: Arc::new(Inner {
                dir,
                ca_cert,
                ca_key,
                other_ca_cert,
                other_ca_key,
                ca,
                other_ca,
                clients: Mutex::new(Clients::default()),
            }),
        })
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// The CA certificate clients trust (PEM): PostgreSQL `sslrootcert`, MariaDB `ssl-ca`,
    /// Redis `cacert`. It signed every server certificate and every [`client`](Self::client)
    /// certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.inner.ca_cert
    }

    /// The CA's private key (for tests that sign something of their own with `openssl`).
    pub fn ca_key(&self) -> &Path {
        &self.inner.ca_key
    }

    /// An unrelated CA's certificate: trusting it instead of [`ca_cert`](Self::ca_cert) must
    /// make every verifying client refuse every server here.
    pub fn other_ca_cert(&self) -> &Path {
        &self.inner.other_ca_cert
    }

    /// The unrelated CA's private key.
    pub fn other_ca_key(&self) -> &Path {
        &self.inner.other_ca_key
    }

    /// The server certificate `which` (PEM).
    pub fn server_cert(&self, which: ServerCert) -> PathBuf {
        self.dir().join(format!("{}.crt", which.file_stem()))
    }

    /// The private key of the server certificate `which` (PEM, mode 0600).
    pub fn server_key(&self, which: ServerCert) -> PathBuf {
        self.dir().join(format!("{}.key", which.file_stem()))
    }

    /// A client certificate for `user` (`CN = user`), signed by the CA; made on first use.
    pub fn client(&self, user: &str) -> Result<ClientCert, ServerError> {
        self.client_signed_by(user, true)
    }

    /// A client certificate for `user` signed by the *other* CA: a server trusting only
    /// [`ca_cert`](Self::ca_cert) must refuse it.
    pub fn untrusted_client(&self, user: &str) -> Result<ClientCert, ServerError> {
        self.client_signed_by(user, false)
    }

    /// The key of [`client`](Self::client)`(user)` as encrypted PKCS#8 (AES-256-CBC, PBKDF2;
    /// `-----BEGIN ENCRYPTED PRIVATE KEY-----`) with the passphrase
    /// [`key_passphrase`](Self::key_passphrase): libpq's `sslpassword`. Made with the `openssl`
    /// CLI (Debian package `openssl`) on first use.
    pub fn encrypted_client_key(&self, user: &str) -> Result<PathBuf, ServerError> {
        let client = self.client(user)?;
        let mut clients = self.clients();
        if let Some(path) = clients.encrypted.get(user) {
            return Ok(path.clone());
        }
        let path = self
            .dir()
            .join(format!("client-{}.enc.key", file_safe(user)));
        let openssl = process::find_binary("openssl", &[], "openssl")?;
        let mut cmd = Command::new(openssl);
        cmd.env_clear()
            .env("POOL_TESTSERVERS_KEY_PASSPHRASE", KEY_PASSPHRASE)
            .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in"])
            .arg(client.key())
            .arg("-out")
            .arg(&path)
            .args(["-passout", "env:POOL_TESTSERVERS_KEY_PASSPHRASE"]);
        process::run(cmd, None)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| ServerError::io(format!("chmod {}", path.display()), e))?;
        clients.encrypted.insert(user.to_string(), path.clone());
        Ok(path)
    }

    /// The passphrase of every [`encrypted_client_key`](Self::encrypted_client_key).
    pub fn key_passphrase(&self) -> &str {
        KEY_PASSPHRASE
    }

    /// Every private key file written so far (CAs, servers, clients, encrypted keys): what a
    /// secrets test reads to make sure no part of a key shows up in an error message.
    pub fn private_keys(&self) -> Vec<PathBuf> {
        let mut keys = vec![
            self.ca_key().to_path_buf(),
            self.other_ca_key().to_path_buf(),
        ];
        keys.extend(
            [
                ServerCert::Valid,
                ServerCert::WrongHost,
                ServerCert::Expired,
            ]
            .map(|which| self.server_key(which)),
        );
        let clients = self.clients();
        keys.extend(
            clients
                .trusted
                .values()
                .chain(clients.untrusted.values())
                .map(|c| c.key.clone()),
        );
        keys.extend(clients.encrypted.values().cloned());
        keys
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn client_signed_by(&self, user: &str, trusted: bool) -> Result<ClientCert, ServerError> {
        let mut clients = self.clients();
        let made = if trusted {
            &mut clients.trusted
        } else {
            &mut clients.untrusted
        };
        if let Some(cert) = made.get(user) {
            return Ok(cert.clone());
        }
        let (issuer, stem) = if trusted {
            (&self.inner.ca, format!("client-{}", file_safe(user)))
        } else {
            (
                &self.inner.other_ca,
                format!("untrusted-client-{}", file_safe(user)),
            )
        };
        let mut params = params(&[], OffsetDateTime::now_utc(), Validity::Now)?;
        params.distinguished_name = common_name(user);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(|e| rcgen_error("a client key", e))?;
        let cert = params
            .signed_by(&key, issuer)
            .map_err(|e| rcgen_error("signing a client certificate", e))?;
        let client = ClientCert {
            user: user.to_string(),
            cert: self.dir().join(format!("{stem}.crt")),
            key: self.dir().join(format!("{stem}.key")),
        };
        write_file(&client.cert, &cert.pem(), false)?;
        write_file(&client.key, &key.serialize_pem(), true)?;
        made.insert(user.to_string(), client.clone());
        Ok(client)
    }
}

/// What a TLS server was started with: the PKI (for the client's side of the files) and which
/// server certificate it presents. Every TLS server keeps one ([`crate::PgServer::tls`],
/// [`crate::MariaServer::tls`], [`crate::RedisServer::tls`]).
#[derive(Clone, Debug)]
pub struct ServerTls {
    pki: TestPki,
    cert: ServerCert,
}

/// The server-side copies of the TLS files, owned by the user the server runs as.
#[derive(Debug)]
pub(crate) struct InstalledTls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: PathBuf,
}

impl ServerTls {
    pub(crate) fn new(pki: &TestPki, cert: ServerCert) -> ServerTls {
        ServerTls {
            pki: pki.clone(),
            cert,
        }
    }

    /// The PKI the server's certificate comes from.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// Which certificate the server presents.
    pub fn server_cert(&self) -> ServerCert {
        self.cert
    }

    /// The CA that signed the server's certificate (what a verifying client is given).
    pub fn ca_cert(&self) -> &Path {
        self.pki.ca_cert()
    }

    /// Copies the server certificate, its key and the CA certificate (which the server uses to
    /// verify client certificates) into `dir`, owned by `user` when given. PostgreSQL refuses
    /// a key file that its own user does not own or that group or others can read, so each
    /// server gets private copies rather than sharing the PKI's files.
    pub(crate) fn install(
        &self,
        dir: &Path,
        user: Option<ServiceUser>,
    ) -> Result<InstalledTls, ServerError> {
        let installed = InstalledTls {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            ca: dir.join("ca.crt"),
        };
        for (from, to, private) in [
            (self.pki.server_cert(self.cert), &installed.cert, false),
            (self.pki.server_key(self.cert), &installed.key, true),
            (self.pki.ca_cert().to_path_buf(), &installed.ca, false),
        ] {
            let text = fs::read_to_string(&from)
                .map_err(|e| ServerError::io(format!("reading {}", from.display()), e))?;
            write_file(to, &text, private)?;
            if let Some(u) = user {
                std::os::unix::fs::chown(to, Some(u.uid), Some(u.gid))
                    .map_err(|e| ServerError::io(format!("chown {}", to.display()), e))?;
            }
        }
        Ok(installed)
    }
}

/// How long a certificate is valid.
enum Validity {
    /// From a day ago (a little clock skew between test and server does not matter) to 30 days
    /// from now (longer than any test run).
    Now,
    /// From 30 days ago to yesterday.
    Expired,
}

fn params(
    names: &[&str],
    now: OffsetDateTime,
    validity: Validity,
) -> Result<CertificateParams, ServerError> {
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let mut params =
        CertificateParams::new(names).map_err(|e| rcgen_error("certificate names", e))?;
    let (not_before, not_after) = match validity {
        Validity::Now => (now - Duration::days(1), now + Duration::days(30)),
        Validity::Expired => (now - Duration::days(30), now - Duration::days(1)),
    };
    params.not_before = not_before;
    params.not_after = not_after;
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pool-testservers");
    dn.push(DnType::CommonName, name);
    dn
}

/// A self-signed CA; writes `<stem>.crt` and `<stem>.key`.
fn make_ca(
    dir: &Path,
    stem: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<(Issuer<'static, KeyPair>, PathBuf, PathBuf), ServerError> {
    let mut params = params(&[], now, Validity::Now)?;
    params.use_authority_key_identifier_extension = false;
    params.distinguished_name = common_name(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().map_err(|e| rcgen_error("a CA key", e))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| rcgen_error("self-signing a CA", e))?;
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    write_file(&cert_path, &cert.pem(), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    Ok((Issuer::new(params, key), cert_path, key_path))
}

/// A server certificate signed by `ca`; writes `<stem>.crt` and `<stem>.key`.
fn make_server_cert(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    which: ServerCert,
    now: OffsetDateTime,
) -> Result<(), ServerError> {
    let validity = match which {
        ServerCert::Expired => Validity::Expired,
        ServerCert::Valid | ServerCert::WrongHost => Validity::Now,
    };
    let names = which.names();
    let mut params = params(names, now, validity)?;
    params.distinguished_name = common_name(names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(|e| rcgen_error("a server key", e))?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|e| rcgen_error("signing a server certificate", e))?;
    let stem = which.file_stem();
    write_file(&dir.join(format!("{stem}.crt")), &cert.pem(), false)?;
    write_file(&dir.join(format!("{stem}.key")), &key.serialize_pem(), true)
}

/// Writes `text` to a new file: mode 0600 when `private` (created so, never readable by others
/// in between), else 0644.
fn write_file(path: &Path, text: &str, private: bool) -> Result<(), ServerError> {
    let mode = if private { 0o600 } else { 0o644 };
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| ServerError::io(format!("creating {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))
}

/// A user name as part of a file name (anything but letters, digits, `-` and `_` becomes `_`).
fn file_safe(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn rcgen_error(what: &str, e: rcgen::Error) -> ServerError {
    ServerError::Certificate {
        what: format!("making {what}: {e}"),
    }
}
