//! Examples of each spelling; `tests/args_properties.rs` holds the property tests.

use super::*;

#[test]
fn order_and_spacing_do_not_change_the_key() {
    let a = ConnArgs::parse("host=db  user=app password=pw dbname=shop").unwrap();
    let b = ConnArgs::parse(" dbname = shop password=pw user=app host=db ").unwrap();
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(a.canonical(), "dbname=shop host=db password=pw user=app");
}

#[test]
fn credentials_are_part_of_the_key() {
    let a = ConnArgs::parse("host=db user=app password=one").unwrap();
    let b = ConnArgs::parse("host=db user=app password=two").unwrap();
    assert_ne!(a.canonical(), b.canonical());
}

#[test]
fn url_and_key_values_normalise_alike() {
    let url = ConnArgs::parse("postgres://app:p%40ss@db:5433/shop?sslmode=disable").unwrap();
    let kv =
        ConnArgs::parse("user=app password=p@ss host=db port=5433 dbname=shop sslmode=disable")
            .unwrap();
    assert_eq!(url, kv);
}

#[test]
fn quoted_values_round_trip() {
    let a = ConnArgs::parse(r"password='it\'s a secret' host=/run/pg").unwrap();
    assert_eq!(a.get("password"), Some("it's a secret"));
    let again = ConnArgs::parse(&a.canonical()).unwrap();
    assert_eq!(a, again);
}

#[test]
fn redaction_hides_every_secret() {
    let a = ConnArgs::parse("user=app password=hunter2 sslpassword=x9x9 host=db").unwrap();
    let shown = format!("{a} {a:?} {}", a.redacted());
    assert!(
        !shown.contains("hunter2") && !shown.contains("x9x9"),
        "{shown}"
    );
    assert_eq!(a.scrub("auth failed for hunter2"), "auth failed for ***");
}

#[test]
fn url_with_socket_host_and_ipv6() {
    let a = ConnArgs::parse("postgresql://%2Frun%2Fpg/shop").unwrap();
    assert_eq!(a.get("host"), Some("/run/pg"));
    let b = ConnArgs::parse("mysql://u@[::1]:3307/db").unwrap();
    assert_eq!((b.get("host"), b.get("port")), (Some("::1"), Some("3307")));
}

#[test]
fn a_malformed_argument_is_named_by_position_never_by_its_text() {
    let error = ConnArgs::parse("host=db password=Zebra Stripes-Secret-91 user=app")
        .expect_err("an unquoted space splits the value");
    let message = error.message();
    for fragment in ["Zebra", "Stripes", "Secret", "91"] {
        assert!(!message.contains(fragment), "{message}");
    }
    assert!(message.contains("argument 3"), "{message}");
    assert!(message.contains("`password`"), "{message}");
    let first = ConnArgs::parse("oops").expect_err("no =");
    assert!(!first.message().contains("oops"), "{}", first.message());
}

#[test]
fn malformed_input_is_an_error() {
    assert!(ConnArgs::parse("host").is_err());
    assert!(ConnArgs::parse("password='open").is_err());
    assert!(ConnArgs::parse("postgres://h:port/db").is_err());
}

#[test]
fn rename_keeps_the_explicit_key() {
    let mut a = ConnArgs::parse("database=x dbname=y").unwrap();
    a.rename("database", "dbname");
    assert_eq!(a.canonical(), "dbname=y");
}

#[test]
fn url_parts_are_percent_decoded_and_plus_stays_a_plus() {
    let a = ConnArgs::parse(
        "postgres://app%40corp:p%3Aw%2Fd%20x@db.internal/shop%2Fv2?password2=a+b&note=x%26y",
    )
    .unwrap();
    assert_eq!(a.get("user"), Some("app@corp"));
    assert_eq!(a.get("password"), Some("p:w/d x"));
    assert_eq!(a.get("dbname"), Some("shop/v2"));
    assert_eq!(a.get("password2"), Some("a+b"), "not form-decoded");
    assert_eq!(a.get("note"), Some("x&y"));
}

#[test]
fn url_without_host_takes_the_host_from_the_query() {
    let a = ConnArgs::parse("postgresql:///shop?host=%2Frun%2Fpg&port=5433").unwrap();
    let b = ConnArgs::parse("host=/run/pg port=5433 dbname=shop").unwrap();
    assert_eq!(a, b);
    let c = ConnArgs::parse("mysql://[2001:db8::1]/db").unwrap();
    assert_eq!(c.get("host"), Some("2001:db8::1"));
    assert_eq!(c.get("port"), None);
}

#[test]
fn a_malformed_url_never_echoes_its_parts() {
    for text in [
        "postgres://app:Sekr1tValue@db:notaport/shop",
        "postgres://app:Sekr1tValue@[::zz]/shop",
        "postgres://app:Sekr1tValue%ZZ@db/shop",
        "postgres://app:Sekr1tValue%FF@db/shop",
        "postgres://db/shop?=Sekr1tValue",
    ] {
        let error = ConnArgs::parse(text).expect_err(text);
        assert!(!error.message().contains("Sekr1t"), "{}", error.message());
    }
}
