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
fn url_with_a_host_list_gives_host_and_port_lists() {
    let a = ConnArgs::parse(
        "postgres://app:p%2Cw@db1:5432,db2:5433/shop?target_session_attrs=read-write",
    )
    .unwrap();
    let kv = ConnArgs::parse(
        "user=app password=p,w host=db1,db2 port=5432,5433 dbname=shop \
         target_session_attrs=read-write",
    )
    .unwrap();
    assert_eq!(a, kv);
    // No port anywhere: no port key; a port on some: an empty entry for the others.
    let b = ConnArgs::parse("postgresql://u@a,b/db").unwrap();
    assert_eq!((b.get("host"), b.get("port")), (Some("a,b"), None));
    let c = ConnArgs::parse("postgresql://u@a,[::1]:6000,%2Frun%2Fpg/db").unwrap();
    assert_eq!(
        (c.get("host"), c.get("port")),
        (Some("a,::1,/run/pg"), Some(",6000,"))
    );
    // A comma in the user info is not a host separator.
    let d = ConnArgs::parse("redis://u:a,b@h:1/0").unwrap();
    assert_eq!((d.get("password"), d.get("host")), (Some("a,b"), Some("h")));
}

/// An unencoded `/` in the password spills the user info into the path: its pieces must not
/// become host names (shown in errors, looked up in DNS). Refused, as before host lists.
#[test]
fn a_password_piece_never_becomes_a_host_name() {
    let error = ConnArgs::parse("postgres://app:1,Hunter2piece/x@127.0.0.1:5432/db")
        .expect_err("the password spilled over");
    assert!(!error.message().contains("Hunter2"), "{error}");
}

/// libpq's `postgres://user@/db?host=/dir`: user info and no host, the socket in the query.
#[test]
fn a_url_with_user_info_and_no_host_takes_the_host_from_the_query() {
    let a = ConnArgs::parse("postgres://app@/shop?host=/run/pg").unwrap();
    assert_eq!(
        (a.get("user"), a.get("host"), a.get("dbname")),
        (Some("app"), Some("/run/pg"), Some("shop"))
    );
    let b = ConnArgs::parse("postgres://app:pw@/shop").unwrap();
    assert_eq!((b.get("host"), b.get("password")), (None, Some("pw")));
}

#[test]
fn a_bad_host_in_a_url_host_list_is_named_by_position() {
    for (url, position) in [
        ("postgres://u:Sekr1tValue@a:1,b:notaport/db", "host 2"),
        ("postgres://u:Sekr1tValue@a:1,,c:3/db", "host 2"),
        ("postgres://u:Sekr1tValue@,b:2/db", "host 1"),
    ] {
        let message = ConnArgs::parse(url).unwrap_err().message().to_owned();
        assert!(message.contains(position), "{url}: {message}");
        assert!(
            !message.contains("Sekr1t") && !message.contains("notaport"),
            "{message}"
        );
    }
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

/// Issue 16: `password=correct horse=battery staple`, unquoted, must not put `horse` (a piece
/// of the password that the parser took for a key) into the parser's own errors.
#[test]
fn a_word_after_an_unquoted_password_is_never_named_by_the_parser() {
    for text in [
        "password=correct horse=battery staple",
        "host=db password=correct horse='battery staple",
        "password='correct' horse=battery staple",
    ] {
        let message = ConnArgs::parse(text).expect_err(text).message().to_owned();
        for piece in ["correct", "horse", "battery", "staple"] {
            assert!(!message.contains(piece), "{text}: {message}");
        }
        assert!(message.contains("argument"), "{text}: {message}");
    }
}

/// The known keys of a small made-up driver, for the checks below.
const TAKES: &[&str] = &["host", "user", "password", "dbname", "port"];

#[test]
fn an_unknown_key_is_named_only_if_some_driver_takes_it_and_no_password_precedes_it() {
    let args = ConnArgs::parse("host=db sslmode=disable frobnicate=1 user=app").unwrap();
    let message = args
        .check_known_keys("toy", TAKES)
        .unwrap_err()
        .message()
        .to_owned();
    assert!(message.contains("`sslmode` (argument 2)"), "{message}");
    assert!(
        message.contains("and argument 3 are not known toy"),
        "{message}"
    );
    assert!(!message.contains("frobnicate"), "{message}");
    assert!(message.contains("password='two words'"), "{message}");
    assert!(message.contains("toy takes: host, user"), "{message}");

    // After a password, even a name some driver takes may be a piece of it.
    let args = ConnArgs::parse("password=correct sslmode=battery horse=staple").unwrap();
    let message = args
        .check_known_keys("toy", TAKES)
        .unwrap_err()
        .message()
        .to_owned();
    for piece in ["correct", "sslmode", "battery", "horse", "staple"] {
        assert!(!message.contains(piece), "{message}");
    }
    assert!(message.contains("argument 2 and argument 3"), "{message}");
    assert!(args
        .check_known_keys("toy", &["password", "sslmode", "horse"])
        .is_ok());
}

#[test]
fn url_query_parameters_are_pointed_at_by_position() {
    let args = ConnArgs::parse("postgres://db/shop?sslmode=x&password=a&horse=b").unwrap();
    let message = args
        .check_known_keys("toy", TAKES)
        .unwrap_err()
        .message()
        .to_owned();
    assert!(
        message.contains("`sslmode` (query parameter 1 of the URL)"),
        "{message}"
    );
    assert!(
        message.contains("query parameter 3 of the URL are"),
        "{message}"
    );
    assert!(
        !message.contains("horse") && message.contains("%26"),
        "{message}"
    );

    // The user info spilled into the query (an unencoded `/` and `?` in the password).
    let args = ConnArgs::parse("postgres://app:12/x?sslmode=battery@db/shop").unwrap();
    let message = args
        .check_known_keys("toy", TAKES)
        .unwrap_err()
        .message()
        .to_owned();
    assert!(!message.contains("sslmode"), "{message}");
    assert!(!message.contains("battery"), "{message}");
    assert!(
        message.contains("query parameter 1 of the URL"),
        "{message}"
    );
    assert!(args.value_for_message("port").starts_with("(not shown"));
}

#[test]
fn keys_set_in_code_are_counted_not_named() {
    let args = ConnArgs::from_pairs([("host", "db"), ("Hots", "x"), ("colour", "y")]);
    let message = args
        .check_known_keys("toy", TAKES)
        .unwrap_err()
        .message()
        .to_owned();
    assert!(
        message.starts_with("2 arguments set in code are not known"),
        "{message}"
    );
    let args = ConnArgs::from_pairs([("host", "db"), ("socket", "/s")]);
    let message = args
        .check_known_keys("toy", TAKES)
        .unwrap_err()
        .message()
        .to_owned();
    assert!(
        message.starts_with("`socket` is not a known toy"),
        "{message}"
    );
}

#[test]
fn a_value_after_a_password_is_not_shown() {
    let args = ConnArgs::parse("port=five password=correct host=battery").unwrap();
    assert_eq!(args.value_for_message("port"), "`five`");
    assert!(args.value_for_message("host").starts_with("(not shown"));
    assert!(args.value_for_message("password").starts_with("(not shown"));
    let mut renamed = ConnArgs::parse("password=correct database=battery").unwrap();
    renamed.rename("database", "dbname");
    assert!(renamed
        .value_for_message("dbname")
        .starts_with("(not shown"));
}

#[test]
fn where_a_key_was_written_is_not_part_of_the_key() {
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    let a = ConnArgs::parse("password=pw host=db").unwrap();
    let b = ConnArgs::parse("host=db password=pw").unwrap();
    let c = ConnArgs::from_pairs([("host", "db"), ("password", "pw")]);
    let hash = |args: &ConnArgs| {
        let mut hasher = DefaultHasher::new();
        args.hash(&mut hasher);
        hasher.finish()
    };
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(hash(&a), hash(&b));
    assert_eq!(hash(&a), hash(&c));
}

#[test]
fn the_parsers_point_at_an_empty_key_by_position() {
    let error = ConnArgs::parse("host=db =x").unwrap_err();
    assert!(
        error.message().contains("argument 2"),
        "{}",
        error.message()
    );
    let error = ConnArgs::parse("postgres://db/shop?a=1&=x").unwrap_err();
    assert!(
        error.message().contains("parameter 2"),
        "{}",
        error.message()
    );
}
