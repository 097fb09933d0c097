//! `target_session_attrs`: which server a key wants (primary, standby, writable, read-only), how
//! a connect checks it, and how an open connection notices that its server changed role.
//!
//! libpq's six values, with libpq's meaning:
//!
//! | value | a server fits when |
//! | --- | --- |
//! | `any` (default) | always |
//! | `read-write` | a new session accepts writes (`transaction_read_only` is off) |
//! | `read-only` | a new session refuses writes (a standby, or `default_transaction_read_only`) |
//! | `primary` | it is not in recovery (`pg_is_in_recovery()` is false) |
//! | `standby` | it is in recovery |
//! | `prefer-standby` | a standby if any host is one, else any host |
//!
//! **At connect** the driver asks each host that accepted the login ([`ROLE_QUERY`], one round
//! trip, only when the value is not `any`) and moves on to the next host when it does not fit,
//! as libpq does; `tokio-postgres` itself knows only `any`, `read-write` and `read-only`, so
//! the driver does all six itself. It asks rather than reading what the server reported at
//! login (libpq reads `in_hot_standby` and `default_transaction_read_only` on PostgreSQL
//! 14+): a PgBouncer in front hands every client the values of its own first login and never
//! updates them (pgbouncer/pgbouncer#859), so after a failover they describe another server.
//! What it reported is *trusted* for this connection only if it agreed with the answer. For
//! `prefer-standby` the first host that answers but is not a standby is kept open as the
//! fallback while the others are tried (no host is connected to twice), and it is the answer
//! also when the connect's deadline ends the walk.
//!
//! **On an open connection** a server's role changes without a word to idle sessions: a
//! promoted standby keeps its sessions, and a read-write key's sessions on a node that is
//! demoted are cut when it restarts. So the driver looks three ways, none of which costs an
//! `any` key anything:
//!
//! * The pool's liveness check of a parked connection (`validate_after`, or after a fatal
//!   error marked the key's parked connections suspect) asks [`ROLE_QUERY`] instead of an
//!   empty query: the same one round trip (44 µs more of server work per check on this VM,
//!   `examples/role_check_cost.rs`; checks are off the request path).
//! * With trusted reports, PostgreSQL 14+ sends `in_hot_standby` and
//!   `default_transaction_read_only` with every answer in which they changed (before its
//!   ReadyForQuery). After each statement and each reset of a key that watches, the driver
//!   reads the last reported values (map lookups, no I/O). A session whose server changed role
//!   is marked broken and refuses its later statements before sending them, so the pool
//!   closes it on release and checks the key's other parked connections before handing them
//!   out. So a busy key, whose parked connections never get old enough to be validated, still
//!   leaves a promoted server after one statement per session. After a full reset (no `SET` of
//!   the session's own is left) the whole role must fit, so a server fenced read-only is left
//!   too.
//! * SQLSTATE 25006 (`read_only_sql_transaction`) on a `read-write` or `primary` key breaks the
//!   connection when the server reports it stopped taking writes (for `primary`: went into
//!   recovery), or when its reports are not trusted; the caller's own `BEGIN READ ONLY` is no
//!   failover and keeps the session.
//!
//! What no check can see without a round trip: a parked connection of a `standby` or
//! `read-only` key whose server was promoted since its last answer. Its next statement is
//! answered by the new primary (which has all the data), and nothing more runs there; a key
//! idle for `validate_after` has its parked connections checked first. A write never reaches a
//! standby through a `read-write`/`primary` key: a server becomes a standby only by
//! restarting, which ends every session it had, and every connect asks the server itself.

use pool_driver::{ConnArgs, DriverError, DriverErrorKind};
use tokio_postgres::SimpleQueryMessage;

/// One round trip that tells both facts any value needs (and nothing that changes the
/// session). Its text is fixed: no argument reaches it.
pub(crate) const ROLE_QUERY: &str =
    "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.current_setting('transaction_read_only')";

/// SQLSTATE `read_only_sql_transaction`: a write on a session that cannot write.
const READ_ONLY_SQL_TRANSACTION: &str = "25006";

/// The value of `target_session_attrs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SessionAttrs {
    #[default]
    Any,
    ReadWrite,
    ReadOnly,
    Primary,
    Standby,
    PreferStandby,
}

/// What a server answered to [`ROLE_QUERY`], or reported on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Role {
    /// In recovery: a standby (`pg_is_in_recovery()`, or `in_hot_standby` reported on).
    pub(crate) in_recovery: bool,
    /// A new session refuses writes (`transaction_read_only` on).
    pub(crate) read_only: bool,
}

impl Role {
    /// The role a server reports on its own (PostgreSQL 14+), from `is_on`, which tells
    /// whether a reported parameter is `on` (`None`: never reported). `None` without
    /// `in_hot_standby`: an older server, or no report at all.
    pub(crate) fn reported(is_on: impl Fn(&str) -> Option<bool>) -> Option<Role> {
        let in_recovery = is_on("in_hot_standby")?;
        let default_read_only = is_on("default_transaction_read_only").unwrap_or(false);
        Some(Role {
            in_recovery,
            read_only: in_recovery || default_read_only,
        })
    }
}

impl SessionAttrs {
    /// Every value, as written.
    pub(crate) const SPELLINGS: &'static str =
        "any, read-write, read-only, primary, standby or prefer-standby";

    pub(crate) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            _ => return None,
        })
    }

    /// The key's value (`any` when absent; the arguments were checked when the pool first
    /// saw them).
    pub(crate) fn of(args: &ConnArgs) -> Self {
        args.get("target_session_attrs")
            .and_then(Self::parse)
            .unwrap_or_default()
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Whether an open connection's server must keep fitting: `any` takes every server, and
    /// `prefer-standby` keeps what it got (libpq never moves a session either).
    pub(crate) fn is_checked(self) -> bool {
        !matches!(self, Self::Any | Self::PreferStandby)
    }

    /// Whether a server of `role` fits. `prefer-standby` takes any server here; the connect
    /// prefers a standby among those that answer.
    pub(crate) fn accepts(self, role: Role) -> bool {
        match self {
            Self::Any | Self::PreferStandby => true,
            Self::ReadWrite => !role.read_only,
            Self::ReadOnly => role.read_only,
            Self::Primary => !role.in_recovery,
            Self::Standby => role.in_recovery,
        }
    }

    /// Why a server of `role` does not fit, in libpq's words.
    pub(crate) fn mismatch(self, role: Role) -> String {
        let why = match self {
            Self::ReadWrite if role.in_recovery => "server is in hot standby mode",
            Self::ReadWrite => "session is read-only",
            Self::ReadOnly => "session is not read only",
            Self::Primary => "server is in hot standby mode",
            Self::Standby => "server is not in hot standby mode",
            Self::Any | Self::PreferStandby => "server fits",
        };
        format!("{why} (target_session_attrs={})", self.as_str())
    }

    /// Whether `error` says this key's server stopped taking writes: 25006 on a key that
    /// asked for a writable server or a primary.
    pub(crate) fn write_refused(self, error: &DriverError) -> bool {
        matches!(self, Self::ReadWrite | Self::Primary)
            && error.code() == Some(READ_ONLY_SQL_TRANSACTION)
    }

    /// What the server last reported on its own (PostgreSQL 14+ sends `in_hot_standby` and
    /// `default_transaction_read_only` whenever they change, with the next answer), if it shows
    /// this key's server changed role: a `read-write` or `primary` key's server went into
    /// recovery, a `standby` key's server was promoted, or a `read-only` key's server was
    /// promoted and its sessions now take writes. `reported` is what the session last heard
    /// (`None`: nothing, an older server). For `read-write` and `primary` only recovery counts:
    /// the session's own `SET default_transaction_read_only` changes the other report too, and
    /// that is no failover (the validation's check, after a reset, decides that case).
    pub(crate) fn reported_mismatch(self, reported: Option<Role>) -> Option<String> {
        let role = reported?;
        let moved = match self {
            Self::ReadWrite | Self::Primary => role.in_recovery,
            Self::Standby => !role.in_recovery,
            Self::ReadOnly => !role.read_only,
            Self::Any | Self::PreferStandby => false,
        };
        moved.then(|| self.mismatch(role))
    }

    /// The error for a connection found on a server that no longer fits.
    pub(crate) fn moved(self, why: &str) -> DriverError {
        DriverError::new(
            DriverErrorKind::Broken,
            format!(
                "the server of this postgres connection changed role ({why}), as in a \
                 failover; the connection is closed and the next one goes to a server that \
                 fits. Retry the request"
            ),
        )
    }
}

/// [`ROLE_QUERY`]'s answer, or `None` if it was not the one row of two columns it must be.
pub(crate) fn parse_answer(messages: &[SimpleQueryMessage]) -> Option<Role> {
    let row = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })?;
    Some(Role {
        in_recovery: row.get(0)? == "t",
        read_only: row.get(1)? == "on",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: Role = Role {
        in_recovery: false,
        read_only: false,
    };
    const READ_ONLY_PRIMARY: Role = Role {
        in_recovery: false,
        read_only: true,
    };
    const STANDBY: Role = Role {
        in_recovery: true,
        read_only: true,
    };

    #[test]
    fn each_value_takes_the_servers_libpq_takes() {
        use SessionAttrs::*;
        let table = [
            (Any, [true, true, true]),
            (ReadWrite, [true, false, false]),
            (ReadOnly, [false, true, true]),
            (Primary, [true, true, false]),
            (Standby, [false, false, true]),
            (PreferStandby, [true, true, true]),
        ];
        for (attrs, fits) in table {
            let got = [PRIMARY, READ_ONLY_PRIMARY, STANDBY].map(|r| attrs.accepts(r));
            assert_eq!(got, fits, "{attrs:?}");
            assert_eq!(SessionAttrs::parse(attrs.as_str()), Some(attrs));
        }
        assert_eq!(SessionAttrs::parse("master"), None);
    }

    #[test]
    fn a_reported_change_of_role_is_seen_only_where_it_matters() {
        let promoted = Some(Role {
            in_recovery: false,
            read_only: false,
        });
        let demoted = Some(STANDBY);
        let silent = None;
        assert!(SessionAttrs::Standby.reported_mismatch(promoted).is_some());
        assert!(SessionAttrs::ReadOnly.reported_mismatch(promoted).is_some());
        // A primary whose sessions default to read-only still fits a read-only key.
        assert!(SessionAttrs::ReadOnly
            .reported_mismatch(Some(READ_ONLY_PRIMARY))
            .is_none());
        // A read-write key's own `SET default_transaction_read_only` is no failover.
        assert!(SessionAttrs::ReadWrite
            .reported_mismatch(Some(READ_ONLY_PRIMARY))
            .is_none());
        assert!(SessionAttrs::Primary.reported_mismatch(promoted).is_none());
        assert!(SessionAttrs::ReadWrite.reported_mismatch(demoted).is_some());
        assert!(SessionAttrs::Primary.reported_mismatch(demoted).is_some());
        assert!(SessionAttrs::Standby.reported_mismatch(demoted).is_none());
        assert!(SessionAttrs::Any.reported_mismatch(demoted).is_none());
        assert!(SessionAttrs::PreferStandby
            .reported_mismatch(promoted)
            .is_none());
        assert!(SessionAttrs::Primary.reported_mismatch(silent).is_none());
    }

    #[test]
    fn a_refused_write_breaks_only_keys_that_asked_for_writes() {
        let refused = DriverError::new(DriverErrorKind::Query, "x").with_code("25006");
        let other = DriverError::new(DriverErrorKind::Query, "x").with_code("23505");
        assert!(SessionAttrs::ReadWrite.write_refused(&refused));
        assert!(SessionAttrs::Primary.write_refused(&refused));
        assert!(!SessionAttrs::Any.write_refused(&refused));
        assert!(!SessionAttrs::ReadOnly.write_refused(&refused));
        assert!(!SessionAttrs::ReadWrite.write_refused(&other));
    }
}
