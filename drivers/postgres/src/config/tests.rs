//! Argument parsing: spellings, host lists, timeouts, TLS settings, and that no error gives a
//! password (or a piece of one) away.

use super::*;
use crate::tls::{RootCerts, SslMode};
use pool_driver::leak_check;

fn norm(text: &str) -> Result<ConnArgs, DriverError> {
    normalise(ConnArgs::parse(text)?)
}

fn plan_of(text: &str) -> Plan {
    plan(&norm(text).unwrap()).unwrap()
}

fn tcp(name: &str, port: u16) -> Target {
    Target {
        host: Host::Tcp(name.into()),
        hostaddr: None,
        port,
    }
}

#[test]
fn key_values_and_urls_map_to_the_same_plan() {
    let kv = norm("host=db.local port=6543 user=app password=s3cret dbname=shop").unwrap();
    let url = norm("postgresql://app:s3cret@db.local:6543/shop").unwrap();
    let alias = norm("host=db.local port=6543 username=app pass=s3cret database=shop").unwrap();
    assert_eq!(kv, url);
    assert_eq!(kv, alias);
    let plan = plan(&kv).unwrap();
    assert_eq!(plan.targets, [tcp("db.local", 6543)]);
    assert_eq!(plan.base.get_user(), Some("app"));
    assert_eq!(plan.base.get_password(), Some(&b"s3cret"[..]));
    assert_eq!(plan.base.get_dbname(), Some("shop"));
    assert_eq!(plan.per_host, None);
    // libpq's default: TLS when the server offers it, plain otherwise.
    assert_eq!(plan.tls.mode, SslMode::Prefer);
}

#[test]
fn socket_directories_and_host_lists() {
    let plan = plan_of("host=/run/pg,/tmp port=5433");
    let unix = |dir: &str| Target {
        host: Host::Unix(dir.into()),
        hostaddr: None,
        port: 5433,
    };
    assert_eq!(plan.targets, [unix("/run/pg"), unix("/tmp")]);
    assert!(plan.targets[0].is_unix());
    assert_eq!(
        plan_of("postgres://%2Frun%2Fpg/shop").targets[0].host,
        Host::Unix("/run/pg".into())
    );
    // A hostaddr alone: its text is the host (the name TLS verifies).
    let plan = plan_of("hostaddr=127.0.0.1");
    assert_eq!(
        plan.targets,
        [Target {
            host: Host::Tcp("127.0.0.1".into()),
            hostaddr: Some("127.0.0.1".parse().unwrap()),
            port: 5432,
        }]
    );
    // One port per host, or one for all.
    let plan = plan_of("host=a,b,c port=1,2,3");
    assert_eq!(plan.targets, [tcp("a", 1), tcp("b", 2), tcp("c", 3)]);
    let plan = plan_of("host=a,b hostaddr=10.0.0.1,10.0.0.2 port=7");
    assert_eq!(plan.targets[1].hostaddr, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(plan.targets[1].host, Host::Tcp("b".into()));
    assert_eq!(plan.targets[1].label(), "b:7");
    for bad in ["host=a,b port=1,2,3", "host=a,b hostaddr=10.0.0.1"] {
        let err = norm(bad).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{bad}: {err}");
    }
}

#[test]
fn connect_timeout_is_per_host() {
    assert_eq!(
        plan_of("host=h connect_timeout=2").per_host,
        Some(Duration::from_secs(2))
    );
    assert_eq!(plan_of("host=h connect_timeout=0").per_host, None);
    assert_eq!(plan_of("host=h connect_timeout=-1").per_host, None);
}

#[test]
fn options_pass_through() {
    let plan = plan_of(
        "host=h application_name=web options='-c search_path=app' keepalives=0 \
         target_session_attrs=read-write channel_binding=disable sslmode=prefer \
         load_balance_hosts=random",
    );
    assert_eq!(plan.base.get_application_name(), Some("web"));
    assert_eq!(plan.base.get_options(), Some("-c search_path=app"));
    assert!(!plan.base.get_keepalives());
    assert_eq!(plan.attrs, crate::role::SessionAttrs::ReadWrite);
    assert_eq!(plan.base.get_channel_binding(), ChannelBinding::Disable);
    assert!(plan.random_order);
}

#[test]
fn tls_arguments() {
    let plan =
        plan_of("host=h sslmode=verify-full sslrootcert=/ca.pem sslcert=/c.pem sslkey=/c.key");
    assert_eq!(plan.tls.mode, SslMode::VerifyFull);
    assert_eq!(plan.tls.root, Some(RootCerts::File("/ca.pem".into())));
    assert_eq!(
        plan.tls.client.as_ref().map(|c| c.cert.clone()),
        Some("/c.pem".into())
    );
    let url = plan_of("postgres://h/db?sslmode=verify-ca&sslrootcert=%2Fca.pem");
    assert_eq!(url.tls.mode, SslMode::VerifyCa);
    // libpq: sslrootcert=system means verify-full unless said otherwise.
    assert_eq!(
        plan_of("host=h sslrootcert=system").tls.mode,
        SslMode::VerifyFull
    );
    assert_eq!(plan_of("host=h sslmode=allow").tls.mode, SslMode::Allow);
    assert_eq!(plan_of("host=h sslmode=disable").tls.mode, SslMode::Disable);
}

#[test]
fn contradicting_tls_arguments_are_rejected() {
    for (bad, needle) in [
        ("host=h sslmode=verify-full", "sslrootcert"),
        ("host=h sslmode=verify-ca", "sslrootcert"),
        ("host=h sslmode=require sslrootcert=system", "verify-full"),
        ("host=h sslcert=/c.pem", "sslkey"),
        ("host=h sslkey=/c.key", "sslcert"),
        (
            "host=h sslmode=disable channel_binding=require",
            "channel_binding",
        ),
        ("host=h sslmode=on", "sslmode"),
    ] {
        let err = norm(&format!("{bad} password=hunter2")).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{bad}: {err}");
        assert!(err.message().contains(needle), "{bad}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn unsupported_arguments_are_rejected_without_leaking_secrets() {
    for bad in [
        "host=h frobnicate=1 password=hunter2",
        "host=h port=five password=hunter2",
        "host=h target_session_attrs=master password=hunter2",
        "user=app password=hunter2",
    ] {
        let err = norm(bad).unwrap_err();
        assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{bad}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

/// Another driver's error names a postgres key only if the contract's list of every
/// driver's names has it.
#[test]
fn every_name_this_driver_takes_is_in_the_contracts_list() {
    let aliases = ALIASES
        .iter()
        .flat_map(|(alias, canonical)| [alias, canonical]);
    for key in SUPPORTED_KEYS.iter().chain(aliases) {
        assert!(ConnArgs::ANY_DRIVER_KEYS.contains(key), "{key}");
    }
}

#[test]
fn explicit_keys_win_over_aliases() {
    let args = norm("host=h database=a dbname=b").unwrap();
    assert_eq!(args.get("dbname"), Some("b"));
    assert_eq!(args.get("database"), None);
}

/// This driver's own names (keys and aliases): a piece of a password that is one of them
/// is an argument the driver takes, which its messages may name.
fn own_names() -> Vec<&'static str> {
    let aliases = ALIASES
        .iter()
        .flat_map(|(alias, canonical)| [*alias, *canonical]);
    SUPPORTED_KEYS.iter().copied().chain(aliases).collect()
}

/// Issue 16: an unquoted password with a space (`password=correct horse=battery`) reads as
/// more pairs; the error must name none of its pieces, whatever they turn into (an unknown
/// key, a known key of another driver, the value of a key this driver knows).
#[test]
fn an_unquoted_password_never_reaches_the_error() {
    leak_check::assert_refused_without_pieces(
        &[
            (
                "host=h password=correct horse=battery",
                &["correct", "horse", "battery"][..],
            ),
            ("host=h password=a b c=d", &["b", "c", "d"]),
            (
                "host=h pass=correct horse=battery",
                &["correct", "horse", "battery"],
            ),
            (
                "host=h password=correct port=battery",
                &["correct", "battery"],
            ),
            (
                "host=h password=correct sslmode=battery",
                &["correct", "battery"],
            ),
            (
                "host=h password=correct socket=battery",
                &["correct", "socket", "battery"],
            ),
            (
                "postgresql://app@h/db?password=correct&horse=battery",
                &["correct", "horse"],
            ),
            (
                "postgresql://app:5432/x?horse=battery@h/db",
                &["horse", "battery"],
            ),
        ],
        |text| norm(text).map(drop),
    );
}

/// The key is named only when some driver knows it (a hint that helps); otherwise the
/// message gives its position and says how to quote a value.
#[test]
fn an_unknown_key_is_named_only_when_some_driver_knows_it() {
    leak_check::assert_unknown_keys_named_only_when_known(|text| norm(text).map(drop), "socket");
}

#[test]
fn no_piece_of_a_generated_password_reaches_an_error() {
    leak_check::assert_no_piece_leaks(
        &own_names(),
        &[
            "host=h password={} user=app",
            "host=h pass={}",
            "postgres://app@h/db?password={}&sslmode=disable",
            "postgres://app:5432/x?{}@h/db",
            "host=h password={} sslmode=verify-full sslrootcert=/ca.pem",
        ],
        |text| norm(text).map(drop),
    );
}

/// libpq's URL host list: one target per host, an empty port entry being the default port.
#[test]
fn a_url_host_list_gives_one_target_per_host() {
    let plan =
        plan_of("postgres://app@db1:5433,db2,[::1]:6000/shop?target_session_attrs=prefer-standby");
    assert_eq!(
        plan.targets,
        vec![tcp("db1", 5433), tcp("db2", 5432), tcp("::1", 6000)]
    );
    assert_eq!(plan.attrs, crate::role::SessionAttrs::PreferStandby);
    let plan = plan_of("host=a,b port=,5433");
    assert_eq!(plan.targets, vec![tcp("a", 5432), tcp("b", 5433)]);
}

#[test]
fn every_target_session_attrs_value_of_libpq_is_taken() {
    for value in [
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ] {
        let plan = plan_of(&format!("host=h target_session_attrs={value}"));
        assert_eq!(plan.attrs.as_str(), value);
    }
}

/// `host=a,,b port=1,2,3`: an empty entry would pair `b` with port 2 if dropped.
#[test]
fn an_empty_entry_in_a_host_list_is_refused() {
    let err = norm("host=a,,b port=1,2,3").unwrap_err();
    assert_eq!(err.kind(), DriverErrorKind::InvalidArgs, "{err}");
    assert!(err.message().contains("none empty"), "{err}");
}
