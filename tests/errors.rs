//! Errors and pool keys: an unknown driver's error lists the registered ones; malformed args are
//! `InvalidArgs`; option order and spacing do not split a pool; different credentials never share
//! a connection; native access with the wrong type is `NativeType`, naming the real type.

mod common;

use std::sync::Arc;

use common::engine::{configure, db, id, open};
use common::fake::{quiet, FakeConn, FakeDb};
use pool::Error;
use rstest::rstest;

#[test]
fn an_unknown_driver_lists_the_registered_ones() {
    common::fake::register_fakes();
    let err = pool::open("nosuch", "db=x").unwrap_err();
    let Error::UnknownDriver { registered, .. } = &err else {
        panic!("{err}")
    };
    assert!(registered.iter().any(|d| d == "fake"), "{registered:?}");
    assert!(err.to_string().contains("fake"));
}

#[rstest]
fn invalid_args_are_an_error(db: Arc<FakeDb>) {
    let err = pool::open("fake", &format!("db={} user", db.name)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgs { .. }), "{err}");
}

#[rstest]
fn option_order_and_spacing_share_one_pool(db: Arc<FakeDb>) {
    let one = format!("db={} user=app password=pw", db.name);
    let two = format!("  password=pw   user=app db={} ", db.name);
    pool::configure("fake", &one, quiet()).unwrap();
    let first = {
        let c = pool::open("fake", &one).unwrap();
        id(&c)
    };
    let second = pool::open("fake", &two).unwrap();
    assert_eq!(id(&second), first);
}

#[rstest]
fn different_credentials_never_share_a_connection(db: Arc<FakeDb>) {
    let alice = format!("db={} user=alice password=a", db.name);
    let bob = format!("db={} user=alice password=b", db.name);
    let a = {
        let c = pool::open("fake", &alice).unwrap();
        id(&c)
    };
    let b = pool::open("fake", &bob).unwrap();
    assert_ne!(id(&b), a);
}

#[rstest]
fn native_access_with_the_wrong_type_is_an_error(db: Arc<FakeDb>) {
    configure(&db, quiet());
    let mut conn = open(&db);
    assert!(conn.native_mut::<FakeConn>().is_ok());
    let err = conn.native::<String>().unwrap_err();
    assert!(
        matches!(err, Error::NativeType { .. }) && err.to_string().contains("FakeConn"),
        "{err}"
    );
}
