//! [`PgConn`]: a [`PgClient`] behind the uniform [`Connection`] surface.

use std::any::Any;
use std::cell::Cell;
use std::time::Duration;

use pool_driver::{ConnArgs, Connection, DriverError, DriverErrorKind, Rows, Value};
use tokio_postgres::SimpleQueryMessage;

use crate::client::{Expired, PgClient, CANCEL_GRACE};
use crate::role::{Role, SessionAttrs};
use crate::{cells, describe, error, params};

/// An open PostgreSQL connection, attached or parked (the driver's `Conn` and `Handle` alike:
/// a [`PgClient`] is `Send` and needs no thread, so detaching needs no conversion).
pub struct PgConn {
    /// Boxed: the client holds its runtime and socket state inline (over a kilobyte), and a
    /// `PgConn` moves by value on every `attach`/`detach`: the box keeps open + release at a
    /// pointer's copy.
    pub(crate) client: Box<PgClient>,
    /// Set by the first error that leaves the session unusable; the pool then closes the
    /// connection instead of parking it.
    pub(crate) broken: bool,
    /// Whether anything could have changed the session since it was opened or last reset:
    /// a statement ran or the native client was reached (`native` or `native_mut`). An
    /// untouched session needs no reset, which spares a round trip and a "there is no
    /// transaction in progress" warning in the server log (for example for connections the
    /// pool's primer parks). Which statement ran does not matter: the full reset is the same
    /// for every used session. A `Cell`, because `native(&self)` sets it too (see there).
    pub(crate) touched: Cell<bool>,
    /// The arguments it was opened with, kept only to scrub their secrets from error messages.
    args: ConnArgs,
    /// The bound on the driver's own reset: the connect timeout it was opened with (the
    /// contract gives `detach` none). A reset that runs into it marks the connection broken.
    pub(crate) reset_bound: Duration,
    /// The key's `target_session_attrs`: which server this connection must stay on (see
    /// [`crate::role`]).
    pub(crate) attrs: SessionAttrs,
    /// Why the server no longer fits `attrs`, once a statement's answer showed it: every later
    /// statement is refused (see `refuse_if_moved`).
    moved: Option<String>,
}

impl PgConn {
    pub(crate) fn new(client: PgClient, args: ConnArgs, reset_bound: Duration) -> Self {
        client.set_cancel_grace(CANCEL_GRACE.min(reset_bound));
        Self {
            client: Box::new(client),
            broken: false,
            touched: Cell::new(false),
            attrs: SessionAttrs::of(&args),
            moved: None,
            args,
            reset_bound: reset_bound.max(Duration::from_millis(1)),
        }
    }

    /// The server's role as it reported it with its last answer (PostgreSQL 14+): `None` if
    /// it reports no `in_hot_standby`, or if its reports were not the server's own at connect
    /// (a proxy's stale copy). `read_only` includes the session's own
    /// `SET default_transaction_read_only`.
    pub(crate) fn reported_role(&self) -> Option<Role> {
        if !self.client.role_reports_trusted {
            return None;
        }
        Role::reported(|name| self.client.reported_as(name, "on"))
    }

    /// Whether the server still fits the key's `target_session_attrs`, by what it reported
    /// with its last answer (no I/O; see [`crate::role`]). If not, the connection is marked
    /// broken, so the pool closes it on release and checks the key's other parked
    /// connections before handing them out. `None` when it fits or nothing tells.
    pub(crate) fn role_moved(&mut self) -> Option<String> {
        if matches!(self.attrs, SessionAttrs::Any | SessionAttrs::PreferStandby) {
            return None;
        }
        let why = self.attrs.reported_mismatch(self.reported_role())?;
        self.broken = true;
        self.moved = Some(why.clone());
        Some(why)
    }

    /// The error for a statement on a session whose server changed role: refused before it is
    /// sent, so a key that asked for a replica sends nothing more to a promoted server (the one
    /// statement that showed the change has run).
    fn refuse_if_moved(&self) -> Result<(), DriverError> {
        match &self.moved {
            Some(why) => Err(self.attrs.moved(why)),
            None => Ok(()),
        }
    }

    /// Maps `err`, remembering whether it broke the connection. A statement that ran past its
    /// deadline (the client's `take_expired`) becomes `StatementTimeout`, whatever error the
    /// cancel left behind.
    pub(crate) fn fail(&mut self, err: &tokio_postgres::Error) -> DriverError {
        let by_the_deadline =
            err.is_closed() || err.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED);
        if let Some(expired) = self.client.take_expired().filter(|_| by_the_deadline) {
            let message = match expired {
                Expired::Cancelled => {
                    "past its deadline, the statement was cancelled by the server; the session \
                     is still usable"
                }
                Expired::Closed => {
                    self.broken = true;
                    "past its deadline, the statement's cancel was not acknowledged in time; the \
                     connection was closed"
                }
            };
            return DriverError::new(DriverErrorKind::StatementTimeout, message);
        }
        let mapped = error::map(err, &self.args);
        if self.attrs.write_refused(&mapped) && self.write_refused_by_the_server() {
            // The node stopped taking writes (a failover): no later write of this key may
            // land here. Broken, so transient for the caller and closed by the pool.
            self.broken = true;
            let why = format!("the server refused a write: {}", mapped.message());
            let moved = self.attrs.moved(&why);
            return match mapped.code() {
                Some(code) => moved.with_code(code),
                None => moved,
            };
        }
        if mapped.is_fatal() {
            self.broken = true;
        }
        // What the server reported with the error counts as well.
        self.role_moved();
        mapped
    }

    /// After a 25006 on a key that asked for writes: whether the server itself stopped taking
    /// writes (a failover, or the server fenced read-only), rather than the caller's own
    /// read-only transaction. Read from what the server reported with the error (it sends a
    /// changed `default_transaction_read_only` or `in_hot_standby` before the ReadyForQuery
    /// that follows the error, flushed after the error: one empty round trip waits for it).
    /// Without trusted reports (a proxy, a server older than 14), or if that round trip fails,
    /// yes: closing a good session costs a connect, keeping a fenced one costs every later
    /// write. The round trip is paid only on a 25006 of a key that asked for writes, and
    /// bounded like a cancel (the caller's statement already has its answer).
    fn write_refused_by_the_server(&self) -> bool {
        let bound = CANCEL_GRACE.min(self.reset_bound);
        if !self.client.role_reports_trusted || !self.client.catch_up(bound) {
            return true;
        }
        let Some(role) = self.reported_role() else {
            return true;
        };
        match self.attrs {
            SessionAttrs::Primary => role.in_recovery,
            _ => role.read_only,
        }
    }

    /// [`PgConn::fail`] for a statement run with `params`: a type mismatch in a statement with
    /// bytes gets [`params::BYTES_HINT`], since the server cannot know the bytes were not meant
    /// as `bytea`.
    fn fail_with(&mut self, err: &tokio_postgres::Error, params: &[Value]) -> DriverError {
        let mapped = self.fail(err);
        if !params::has_bytes(params) || !params::is_type_mismatch(mapped.code()) {
            return mapped;
        }
        let message = format!("{}{}", mapped.message(), params::BYTES_HINT);
        reword(&mapped, message)
    }
}

/// `error` with another message, same kind and code.
fn reword(error: &DriverError, message: String) -> DriverError {
    let reworded = DriverError::new(error.kind(), message);
    match error.code() {
        Some(code) => reworded.with_code(code),
        None => reworded,
    }
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("args", &self.args) // redacted by ConnArgs' Debug
            .field("broken", &self.broken)
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl Connection for PgConn {
    /// One round trip. Without parameters the statement goes through the simple protocol
    /// (which also allows several statements; the count is the last one's, as in libpq's
    /// `PQcmdTuples`); with them, through the unnamed statement (`Client::execute_typed`, see
    /// `params.rs`).
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DriverError> {
        self.touched.set(true);
        self.refuse_if_moved()?;
        if params.is_empty() {
            let messages = self.client.simple_query(sql).map_err(|e| self.fail(&e))?;
            let count = messages.iter().rev().find_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            });
            self.role_moved();
            return Ok(count.unwrap_or(0));
        }
        let bound = params::bind(params);
        let refs = params::typed_refs(&bound);
        let count = self
            .client
            .execute_typed(sql, &refs)
            .map_err(|e| self.fail_with(&e, params))?;
        self.role_moved();
        Ok(count)
    }

    /// One round trip when rows come back: parse, bind, describe and execute the unnamed
    /// statement in one write (`Client::query_typed`; parameter types declared or left to the
    /// server, see `params.rs`). Only unnamed statements are used, so nothing is left on the
    /// server session: this stays correct after any reset and behind a transaction-mode
    /// PgBouncer, where each transaction may run on another server connection. When no row
    /// comes back the column names are not available from the reply, so a plain query is asked
    /// once more for them, without running it again (see `describe.rs`); other statements
    /// that return no rows have no column names.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, DriverError> {
        self.touched.set(true);
        self.refuse_if_moved()?;
        let bound = params::bind(params);
        let refs = params::typed_refs(&bound);
        let rows = self
            .client
            .query_typed(sql, &refs)
            .map_err(|e| self.fail_with(&e, params))?;
        // The statement's answer stands; a server that changed role under it is noted for
        // the release (see `role_moved`).
        self.role_moved();
        if let Some(first) = rows.first() {
            return cells::rows(first.columns(), &rows);
        }
        let Some(wrapped) = describe::one_null_row(sql) else {
            return Ok(Rows::new(Vec::new(), Vec::new()));
        };
        let described = self.client.query_typed(&wrapped, &refs).map_err(|e| {
            let mapped = self.fail(&e);
            let message = format!(
                "the query returned no rows, and asking for its column names failed: {}",
                mapped.message()
            );
            reword(&mapped, message)
        })?;
        let columns = described.first().map_or(&[][..], |row| row.columns());
        cells::rows(columns, &[])
    }

    fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Bounds the uniform API's statements and the native client's alike (`PgClient`'s
    /// statement methods and its transactions'; not what runs inside `block_on`/`run`).
    fn set_statement_timeout(&mut self, timeout: Option<Duration>) -> bool {
        self.client.set_statement_timeout(timeout);
        true
    }

    /// Marks the session used: `&PgClient` runs statements (its methods take `&self`), and
    /// the rule is that any native access counts as use unless the driver can prove nothing
    /// changed.
    fn native(&self) -> &dyn Any {
        self.touched.set(true);
        &*self.client
    }

    /// Marks the session used: the native client can run anything.
    fn native_mut(&mut self) -> &mut dyn Any {
        self.touched.set(true);
        &mut *self.client
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<PgClient>()
    }

    /// The same rule `detach` applies: an untouched session is parked with no round trip.
    fn needs_reset(&self) -> bool {
        self.touched.get()
    }
}
