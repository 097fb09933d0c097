//! A limit of the `redis` crate (0.32) made visible: it reads the platform's CA store on every
//! TLS connect, even when `cacert` replaces it, and fails the connect when that store cannot
//! be read. The driver says so (`TLS_PLATFORM_ROOTS`, with what to do) instead of a bare
//! "Fetch certs Error". Alone in its binary: it points `SSL_CERT_FILE` at a missing file for
//! the whole process.

use pool_driver::{Driver, DriverErrorKind};
use pool_redis::RedisDriver;
use pool_testservers::{ClientCerts, RedisServer, ServerCert, TestPki};

#[test]
fn an_unreadable_platform_store_is_named_even_with_cacert() {
    // Before any thread of this test could read the environment.
    std::env::set_var(
        "SSL_CERT_FILE",
        "/nonexistent/pool-redis-test/ca-bundle.pem",
    );
    let pki = TestPki::generate().expect("pki");
    let server = RedisServer::start_tls(&pki, ServerCert::Valid, ClientCerts::NotRequested)
        .expect("TLS redis");
    let driver = RedisDriver::new();
    let args = driver.parse_args(&server.tls_url()).expect("args");
    let Err(error) = driver.connect(&args, std::time::Duration::from_secs(5)) else {
        panic!("connected, but the platform store cannot be read");
    };
    assert_eq!(error.kind(), DriverErrorKind::Connect, "{error}");
    assert_eq!(error.code(), Some("TLS_PLATFORM_ROOTS"), "{error}");
    assert!(error.message().contains("SSL_CERT_FILE"), "{error}");
    assert!(!error.message().contains(server.password()), "{error}");
}
