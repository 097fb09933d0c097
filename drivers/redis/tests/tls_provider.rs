//! The crypto provider is the application's when it installed one: the driver installs `ring`
//! as rustls' process default only when none is set (see `src/tls.rs`). Alone in its binary,
//! because the process default can be set once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pool_driver::Driver;
use pool_redis::RedisDriver;
use pool_testservers::{ClientCerts, RedisServer, ServerCert, TestPki};
use rustls::crypto::{ring, CryptoProvider, GetRandomFailed, SecureRandom};

/// `ring`'s random numbers, counted: a handshake draws some (the client random, key shares),
/// so the count shows whose provider the `redis` crate's handshake ran on.
#[derive(Debug)]
struct Counted;

static DRAWN: AtomicUsize = AtomicUsize::new(0);

impl SecureRandom for Counted {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        DRAWN.fetch_add(1, Ordering::SeqCst);
        ring::default_provider().secure_random.fill(buf)
    }
}

#[test]
fn an_application_provider_is_kept_and_used() {
    let mut chosen = ring::default_provider();
    chosen.secure_random = &Counted;
    chosen
        .install_default()
        .expect("first install in this process");

    let pki = TestPki::generate().expect("pki");
    let server = RedisServer::start_tls(&pki, ServerCert::Valid, ClientCerts::NotRequested)
        .expect("TLS redis");
    let driver = RedisDriver::new();
    let args = driver.parse_args(&server.tls_url()).expect("args");
    let before = DRAWN.load(Ordering::SeqCst);
    let conn = driver
        .connect(&args, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connects with the application's provider: {e}"));
    drop(conn);

    assert!(
        DRAWN.load(Ordering::SeqCst) > before,
        "the handshake did not run on the application's provider"
    );
    // Still the application's provider: drawing from the installed one counts.
    let installed = CryptoProvider::get_default().expect("a provider");
    let before = DRAWN.load(Ordering::SeqCst);
    installed.secure_random.fill(&mut [0u8; 4]).expect("random");
    assert_eq!(
        DRAWN.load(Ordering::SeqCst),
        before + 1,
        "the driver replaced the application's provider"
    );
}
