//! [`PgConn`]: a `postgres::Client` behind the uniform [`Connection`] surface.

use std::any::Any;

use pool_driver::{ConnArgs, Connection, DriverError, Rows, Value};
use postgres::{Client, SimpleQueryMessage};

use crate::error::{self, Phase};
use crate::{cells, params};

/// An open PostgreSQL connection, attached or parked (the driver's `Conn` and `Handle` alike:
/// `postgres::Client` is `Send`, so detaching needs no conversion).
pub struct PgConn {
    pub(crate) client: Client,
    /// Set by the first error that leaves the session unusable; the pool then closes the
    /// connection instead of parking it.
    pub(crate) broken: bool,
    /// Whether anything could have changed the session since it was opened or last reset:
    /// a statement ran or the native client was borrowed mutably. An untouched session needs
    /// no reset, which spares a round trip and a "there is no transaction in progress"
    /// warning in the server log (for example for connections the pool's primer parks).
    pub(crate) touched: bool,
    /// The arguments it was opened with, kept only to scrub their secrets from error messages.
    args: ConnArgs,
}

impl PgConn {
    pub(crate) fn new(client: Client, args: ConnArgs) -> Self {
        Self {
            client,
            broken: false,
            touched: false,
            args,
        }
    }

    /// Maps `err`, remembering whether it broke the connection.
    pub(crate) fn fail(&mut self, err: &postgres::Error) -> DriverError {
        let mapped = error::map(err, Phase::Statement, &self.args);
        if mapped.is_fatal() {
            self.broken = true;
        }
        mapped
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
    /// `PQcmdTuples`); with them, through an unnamed statement whose parameter types the server
    /// infers (see [`params::TextParam`]). A statement with bytes parameters is prepared first
    /// (two round trips) so they are encoded for the column's type.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DriverError> {
        self.touched = true;
        if params.is_empty() {
            let messages = self.client.simple_query(sql).map_err(|e| self.fail(&e))?;
            let count = messages.iter().rev().find_map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => Some(*n),
                _ => None,
            });
            return Ok(count.unwrap_or(0));
        }
        if params::all_text(params) {
            let bound = params::bind_text(params);
            let refs = params::typed_refs(&bound);
            return self
                .client
                .execute_typed(sql, &refs)
                .map_err(|e| self.fail(&e));
        }
        let bound = params::bind(params);
        let refs = params::refs(&bound);
        self.client.execute(sql, &refs).map_err(|e| self.fail(&e))
    }

    /// One round trip when rows come back: parse, bind, describe and execute an unnamed
    /// statement in one write (`Client::query_typed`; parameter types inferred by the server,
    /// see [`params::TextParam`]). Nothing is cached on the connection, so this stays correct
    /// after any reset and behind a transaction-mode PgBouncer. When no row comes back the
    /// column names are not in the reply, so the statement is described once more (a second
    /// round trip, only then). With bytes parameters it is prepared first, as before.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Rows, DriverError> {
        self.touched = true;
        if !params::all_text(params) {
            let statement = self.client.prepare(sql).map_err(|e| self.fail(&e))?;
            let bound = params::bind(params);
            let refs = params::refs(&bound);
            let rows = self
                .client
                .query(&statement, &refs)
                .map_err(|e| self.fail(&e))?;
            return cells::rows(statement.columns(), &rows);
        }
        let bound = params::bind_text(params);
        let refs = params::typed_refs(&bound);
        let rows = self
            .client
            .query_typed(sql, &refs)
            .map_err(|e| self.fail(&e))?;
        match rows.first() {
            Some(first) => cells::rows(first.columns(), &rows),
            None => {
                let statement = self.client.prepare(sql).map_err(|e| self.fail(&e))?;
                cells::rows(statement.columns(), &rows)
            }
        }
    }

    fn is_broken(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    fn native(&self) -> &dyn Any {
        &self.client
    }

    /// `&Client` cannot run statements (they all take `&mut self`), so only this one marks
    /// the session as touched.
    fn native_mut(&mut self) -> &mut dyn Any {
        self.touched = true;
        &mut self.client
    }

    fn native_type_name(&self) -> &'static str {
        std::any::type_name::<Client>()
    }

    /// The same rule `detach` applies: an untouched session is parked with no round trip.
    fn needs_reset(&self) -> bool {
        self.touched
    }
}
