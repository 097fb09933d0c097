//! The full reset of a used session, and what it must bring back.
//!
//! # What `COM_RESET_CONNECTION` leaves behind
//!
//! Measured on MariaDB 10.11 (what it keeps is probed in `tests/conformance.rs`, much of what
//! it clears in `tests/driver.rs`): it rolls back, drops
//! temporary tables and sequences, clears user variables, restores every session variable to
//! its global default (`sql_mode`, `time_zone`, `SET NAMES`, `autocommit`, isolation level and
//! access mode, also a one-transaction `SET TRANSACTION`, `max_statement_time`,
//! `lc_time_names`, `insert_id`, `timestamp`, the `RAND()` seeds…), resets `LAST_INSERT_ID()`,
//! sequences' `LASTVAL()`, the warnings, releases `GET_LOCK` and table locks, closes `HANDLER`s,
//! ends an `XA` transaction and deallocates prepared statements. It keeps:
//!
//! * **the current role** (`SET ROLE`), however it was set: directly, in a procedure,
//!   through `EXECUTE IMMEDIATE` or a prepared statement. `COM_CHANGE_USER` keeps it too.
//! * **the current database** (`USE`, also from `EXECUTE IMMEDIATE` and inside procedures).
//! * **the statement profiles**: `SHOW PROFILES` still lists the previous user's statements
//!   (their text), and the server goes on profiling every statement although `@@profiling`
//!   then says 0. `COM_CHANGE_USER` keeps them too.
//!
//! # Why the driver asks the server instead of reading the SQL
//!
//! The driver used to look for `USE` and `SET ROLE` in the text of each statement and take a
//! slower path only then. The text does not say what a statement does: `CALL p()` of a
//! procedure that runs `SET ROLE r`, `EXECUTE IMMEDIATE CONCAT('SET RO','LE r')`, or a prepared
//! statement built from a variable each handed the role to the next user. So no decision about
//! session state rests on the SQL any more. Every full reset of a used session is the same:
//!
//! 1. `COM_RESET_CONNECTION`, then, in the same bounded exchange, one more round trip: the
//!    check, `SELECT CURRENT_ROLE(), DATABASE(), CURRENT_USER(); SHOW PROFILES` (one
//!    multi-statement query). The server reports the state itself, so it does not matter how
//!    it was changed (uniform API, native client, procedures, dynamic SQL).
//! 2. If that matches what the session was when it was opened (its [`Identity`], read by the
//!    same `SELECT` right after connect) and no profile is stored, the session is clean: two
//!    round trips in all. This is nearly every release.
//! 3. Otherwise the driver restores what differs (`SET ROLE NONE` or `SET ROLE <the default
//!    role>`, `USE <the database>`, the profiles cleared) and asks again, in one more round
//!    trip; only a session opened without a database that now has one needs `COM_CHANGE_USER`
//!    first (there is no statement that leaves the current database). If the answer still
//!    differs, or another account is logged in (only the native client's `change_user` can do
//!    that), the reset fails with `NotReusable` and the pool closes the connection.
//!
//! Restoring keeps the session (a role change no longer costs a reconnect), and the check after
//! the restore makes even an untested path safe: a server that refuses a restoring statement
//! gets its connection closed, never handed on.
//!
//! **Cost.** A used release went from one round trip to two: the price of not guessing.
//! Interleaved A/B runs on loopback (MariaDB 10.11, a shared 2-core machine where a round trip
//! varied between 20 and 60 µs; medians of 3000 releases): the old `COM_RESET_CONNECTION`
//! alone 22–28 µs, this reset 73–130 µs, of which `SHOW PROFILES` 20–45 µs (its result comes
//! in a second flush: a second wake-up; ~5 µs when one connection runs back to back). The
//! old thorough path after `USE` (`COM_CHANGE_USER` + `CURRENT_ROLE()`) took 77–116 µs; the
//! restoring path, now rare in practice (`USE`, a role change), 136–294 µs and keeps the
//! session. Connecting pays the identity query: 151–322 µs → 189–426 µs. The reset of a used
//! session runs on the pool's resetter thread, not on the releasing caller's.
//!
//! **MySQL** (not tested here): `CURRENT_ROLE()` exists from 8.0 and says `NONE` or a list
//! such as `` `r`@`%` ``; an active-role list is restored with `SET ROLE DEFAULT` (what a new
//! session starts with) and verified like everything else. MySQL 5.7 has no roles: the check
//! reads `NULL` in their place.

use std::io;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::Value as MyValue;
use pool_driver::{DriverError, DriverErrorKind};

use crate::conn::MyConn;
use crate::error;

/// The session's state that `COM_RESET_CONNECTION` does not restore and the driver does: what
/// the server reported right after connect, and what every reset must find again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `CURRENT_ROLE()`: the account's default role, `None` (MariaDB's NULL) when it has none.
    role: Option<String>,
    /// `DATABASE()`: the `dbname` the session was opened with, `None` without one.
    database: Option<String>,
    /// `CURRENT_USER()`: the account, which only the native client's `change_user` can switch.
    user: Option<String>,
}

/// What the server says about the statement profiles of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profiles {
    /// `SHOW PROFILES` listed this many.
    Count(usize),
    /// Not asked: the server refused `SHOW PROFILES` before.
    NotAsked,
    /// `SHOW PROFILES` refused (a server built without profiling, or one that dropped the
    /// deprecated statement): such a server keeps no profiles to leak, so it is not asked again.
    Refused,
}

/// What the server reports after a reset.
#[derive(Debug)]
struct Report {
    identity: Identity,
    profiles: Profiles,
}

/// `SHOW PROFILES`, the second half of the check.
const SHOW_PROFILES: &str = "SHOW PROFILES";

/// Clears the statement profiles and really stops profiling. Measured on MariaDB 10.11: only
/// this sequence works both when profiling was still on at the reset and when it had been
/// switched off before it (a smaller history size is applied when a statement finishes while
/// profiling is on, and switching profiling on and off again brings the flag the reset left
/// stale back in step). Each variable ends at its global default, as after the reset.
const CLEAR_PROFILES: &str = "SET profiling = 1; SET profiling_history_size = 0; \
     SET profiling = 0; SET profiling_history_size = DEFAULT";

/// The identity query for a server of `version` (`mysql::Conn::server_version`): MySQL 5.6 and
/// 5.7 have no roles and no `CURRENT_ROLE()`. MariaDB 10.x reports `5.5.5` there, MariaDB ≥ 11
/// and MySQL ≥ 8 their own version.
fn identity_sql(version: (u16, u16, u16)) -> &'static str {
    if ((5, 5, 6)..(8, 0, 0)).contains(&version) {
        "SELECT NULL, DATABASE(), CURRENT_USER()"
    } else {
        "SELECT CURRENT_ROLE(), DATABASE(), CURRENT_USER()"
    }
}

/// Reads the identity of a session that was just opened. Runs under the connect bound the
/// socket still has, one round trip more than the handshake.
pub(crate) fn identity_at_connect(conn: &mut mysql::Conn) -> mysql::Result<Identity> {
    let version = conn.server_version();
    let report = ask(conn, identity_sql(version), version)?;
    Ok(report.identity)
}

/// Resets a used session and brings back what the reset keeps (see the module docs). Every
/// exchange runs under `bound`; a failure marks the connection broken, a session that cannot
/// be restored is refused with `NotReusable`.
pub(crate) fn full(conn: &mut MyConn, bound: Duration) -> Result<(), DriverError> {
    let check = check_sql(conn);
    let version = conn.server_version();
    let report = conn.bounded(bound, "resetting the session", |c| {
        c.reset()?;
        // Client-side state the native client can set and the reset does not clear: the
        // previous user's `LOAD DATA LOCAL INFILE` handler would answer the next user's.
        c.set_local_infile_handler(None);
        ask(c, &check, version)
    })?;
    if report.profiles == Profiles::Refused {
        conn.profiling_refused();
    }
    if is_clean(conn, &report) {
        return Ok(());
    }
    restore(conn, bound, &report)
}

/// The check after a reset: the identity query, and `SHOW PROFILES` unless the server refused
/// it before.
fn check_sql(conn: &MyConn) -> String {
    let identity = identity_sql(conn.server_version());
    if conn.has_profiling() {
        format!("{identity}; {SHOW_PROFILES}")
    } else {
        identity.to_owned()
    }
}

/// Whether `report` shows the session as it was when opened.
fn is_clean(conn: &MyConn, report: &Report) -> bool {
    report.identity == *conn.identity() && !matches!(report.profiles, Profiles::Count(1..))
}

/// Puts back what differs in `report`, then checks once more; `NotReusable` if it cannot.
fn restore(conn: &mut MyConn, bound: Duration, report: &Report) -> Result<(), DriverError> {
    let home = conn.identity().clone();
    let now = &report.identity;
    if now.user != home.user {
        return Err(not_reusable(
            conn,
            "another account is logged in on the session (through the native client's \
             change_user)",
        ));
    }
    let mut differs = Vec::new();
    let mut fix = String::new();
    let mut changed_user = false;
    if now.database != home.database {
        differs.push("database");
        match &home.database {
            Some(database) => fix.push_str(&format!("USE {}; ", quote(database))),
            None => {
                // No statement leaves the current database. COM_CHANGE_USER logs in again with
                // the connection's own options, which name none; it keeps the role.
                conn.bounded(bound, "resetting the session (change user)", |c| {
                    c.change_user(mysql::ChangeUserOpts::DEFAULT)
                })?;
                changed_user = true;
            }
        }
    }
    if now.role != home.role {
        differs.push("role");
    }
    if now.role != home.role || changed_user {
        fix.push_str(&set_role_sql(home.role.as_deref()));
        fix.push_str("; ");
    }
    if matches!(report.profiles, Profiles::Count(1..)) {
        differs.push("statement profiles");
        fix.push_str(CLEAR_PROFILES);
        fix.push_str("; ");
    }
    fix.push_str(&check_sql(conn));
    tracing::debug!(
        connection_id = conn.connection_id(),
        ?differs,
        "mysql: the session reset kept state; restoring it"
    );
    let version = conn.server_version();
    let after = match conn.bounded(bound, "restoring the session after the reset", |c| {
        ask(c, &fix, version)
    }) {
        Ok(after) => after,
        // The server refused a restoring statement (a role or database dropped meanwhile):
        // the session works, but not as the next user must find it.
        Err(e) if e.kind() == DriverErrorKind::Query => {
            let message = format!(
                "cannot restore the session after the reset: {}",
                e.message()
            );
            return Err(not_reusable(conn, &message));
        }
        Err(e) => return Err(e),
    };
    if is_clean(conn, &after) {
        return Ok(());
    }
    let message = format!(
        "the session's {} still differ(s) from a new session's after the reset and a restore",
        differs.join(", ")
    );
    Err(not_reusable(conn, &message))
}

/// A `NotReusable` error for `conn`: the pool closes the connection instead of parking it.
fn not_reusable(conn: &MyConn, message: &str) -> DriverError {
    DriverError::new(
        DriverErrorKind::NotReusable,
        conn.scrub(&format!("{message}; the connection is not reused")),
    )
}

/// The statement that makes `role` the current role again. MariaDB: `SET ROLE NONE` or
/// `` SET ROLE `name` `` (`CURRENT_ROLE()` says NULL or the name). MySQL 8 says `NONE` or a
/// list of `` `name`@`host` ``, and `SET ROLE DEFAULT` activates exactly the account's default
/// roles, which is what a new session starts with.
fn set_role_sql(role: Option<&str>) -> String {
    match role {
        None | Some("NONE") => "SET ROLE NONE".to_owned(),
        Some(list) if list.starts_with('`') => "SET ROLE DEFAULT".to_owned(),
        Some(name) => format!("SET ROLE {}", quote(name)),
    }
}

/// `name` as a quoted identifier: in backticks, each backtick doubled.
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Runs `sql` (statements that restore, if any, then the identity query, then maybe
/// `SHOW PROFILES`) and reads the server's report: the first result set with columns is the
/// identity, the second the profiles. A server error after the identity can only come from
/// `SHOW PROFILES` (a multi-statement query stops at its first error).
fn ask(conn: &mut mysql::Conn, sql: &str, version: (u16, u16, u16)) -> mysql::Result<Report> {
    let mut result = conn.query_iter(sql)?;
    let mut identity = None;
    let mut profiles = Profiles::NotAsked;
    let mut sets = 0;
    while let Some(set) = result.iter() {
        let has_columns = !set.columns().as_ref().is_empty();
        if has_columns {
            sets += 1;
        }
        let mut rows = 0;
        for row in set {
            match row {
                Ok(row) if has_columns && sets == 1 => identity = Some(identity_of(row)?),
                Ok(_) => rows += 1,
                Err(mysql::Error::MySqlError(e))
                    if identity.is_some() && !error::is_fatal_code(e.code, Some(version)) =>
                {
                    tracing::debug!(
                        code = e.code,
                        "mysql: SHOW PROFILES refused; not asked again"
                    );
                    profiles = Profiles::Refused;
                }
                Err(e) => return Err(e),
            }
        }
        if has_columns && sets == 2 {
            profiles = Profiles::Count(rows);
        }
    }
    let identity = identity.ok_or_else(|| unexpected("the identity query returned no row"))?;
    Ok(Report { identity, profiles })
}

/// The identity in one row of the identity query.
fn identity_of(row: mysql::Row) -> mysql::Result<Identity> {
    let [role, database, user] = <[MyValue; 3]>::try_from(row.unwrap())
        .map_err(|_| unexpected("the identity query returned another number of columns"))?;
    Ok(Identity {
        role: text(role)?,
        database: text(database)?,
        user: text(user)?,
    })
}

/// A text cell: NULL or UTF-8 bytes (the text protocol sends every value as bytes).
fn text(value: MyValue) -> mysql::Result<Option<String>> {
    match value {
        MyValue::NULL => Ok(None),
        MyValue::Bytes(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| unexpected("a role, database or user name is not UTF-8")),
        _ => Err(unexpected(
            "the identity query returned a value that is not text",
        )),
    }
}

/// A reply the driver cannot read. As an I/O error of kind `InvalidData` it maps to `Broken`
/// on an open session and to `Connect` while connecting, with `what` in the message.
fn unexpected(what: &str) -> mysql::Error {
    mysql::Error::IoError(io::Error::new(io::ErrorKind::InvalidData, what.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_restored_with_the_servers_own_spelling() {
        assert_eq!(set_role_sql(None), "SET ROLE NONE");
        assert_eq!(set_role_sql(Some("NONE")), "SET ROLE NONE");
        assert_eq!(set_role_sql(Some("app_reader")), "SET ROLE `app_reader`");
        assert_eq!(set_role_sql(Some("we`ird")), "SET ROLE `we``ird`");
        assert_eq!(set_role_sql(Some("`r`@`%`,`s`@`%`")), "SET ROLE DEFAULT");
        assert_eq!(quote("shop"), "`shop`");
    }

    /// The two ways a check can fail on the server, on a private MariaDB: a refused
    /// `SHOW PROFILES` (a server without profiling) is an answer, not an error, and leaves the
    /// connection in step; a refused restoring statement before the identity is an error.
    #[test]
    fn refusals_in_the_check() {
        let server = pool_testservers::shared_maria();
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(server.port())
            .user(Some(server.user()))
            .pass(Some(server.password()))
            .prefer_socket(false);
        let mut conn = mysql::Conn::new(opts).expect("connect");
        let version = conn.server_version();
        let identity = identity_sql(version);
        // A statement the server refuses, in the place of `SHOW PROFILES`.
        let refused = format!("{identity}; SHOW NO_SUCH_LIST");
        let report = ask(&mut conn, &refused, version).expect("an answer");
        assert_eq!(report.profiles, Profiles::Refused);
        assert_eq!(report.identity.database, None);
        assert_eq!(report.identity.role, None);
        let check = format!("{identity}; {SHOW_PROFILES}");
        let report = ask(&mut conn, &check, version).expect("in step");
        assert_eq!(report.profiles, Profiles::Count(0));
        let restore = format!("USE no_such_database; {check}");
        let err = ask(&mut conn, &restore, version).expect_err("USE refused");
        assert!(matches!(err, mysql::Error::MySqlError(_)), "{err:?}");
        let report = ask(&mut conn, identity, version).expect("in step");
        assert_eq!(report.profiles, Profiles::NotAsked);
    }

    #[test]
    fn only_mysql_before_8_has_no_current_role() {
        for version in [(5, 5, 5), (8, 0, 0), (8, 4, 2), (10, 11, 9), (11, 4, 0)] {
            assert!(
                identity_sql(version).contains("CURRENT_ROLE()"),
                "{version:?}"
            );
        }
        for version in [(5, 6, 51), (5, 7, 44)] {
            assert!(
                !identity_sql(version).contains("CURRENT_ROLE()"),
                "{version:?}"
            );
        }
    }
}
