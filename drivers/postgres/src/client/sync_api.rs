//! The blocking methods of [`PgClient`], named and typed as `postgres::Client`'s, each one
//! request on the connection's runtime (see `client/mod.rs`).

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, SimpleQueryMessage, Statement, ToStatement};

use super::{CopyInWriter, CopyOutReader, Notifications, PgCancelToken, PgClient, PgTransaction};

impl PgClient {
    /// Runs a statement and returns the number of rows it changed. A `&str` statement is
    /// prepared first (a named statement; see [`PgClient::execute_typed`] for one round trip
    /// with the unnamed statement).
    pub fn execute<T>(&self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.request(self.client.execute(query, params))
    }

    /// Runs `query` as the unnamed statement in one round trip, with the parameter types
    /// given instead of asked for (`Type::UNKNOWN`… or a real type). Works behind a
    /// transaction-mode PgBouncer.
    pub fn execute_typed(
        &self,
        query: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, Error> {
        self.request(self.client.execute_typed(query, params))
    }

    /// Runs a query and returns its rows.
    pub fn query<T>(&self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.request(self.client.query(query, params))
    }

    /// Runs a query that returns exactly one row (an error otherwise).
    pub fn query_one<T>(&self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.request(self.client.query_one(query, params))
    }

    /// Runs a query that returns at most one row.
    pub fn query_opt<T>(
        &self,
        query: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.request(self.client.query_opt(query, params))
    }

    /// [`PgClient::query`] as the unnamed statement, in one round trip, with the parameter
    /// types given (see [`PgClient::execute_typed`]).
    pub fn query_typed(
        &self,
        query: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Error> {
        self.request(self.client.query_typed(query, params))
    }

    /// [`PgClient::query_one`] as the unnamed statement (see [`PgClient::query_typed`]).
    pub fn query_typed_one(
        &self,
        query: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Row, Error> {
        self.request(self.client.query_typed_one(query, params))
    }

    /// [`PgClient::query_opt`] as the unnamed statement (see [`PgClient::query_typed`]).
    pub fn query_typed_opt(
        &self,
        query: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<Row>, Error> {
        self.request(self.client.query_typed_opt(query, params))
    }

    /// Prepares a named statement (kept on this server session until the `Statement` is
    /// dropped; not usable behind a transaction-mode PgBouncer).
    pub fn prepare(&self, query: &str) -> Result<Statement, Error> {
        self.request(self.client.prepare(query))
    }

    /// [`PgClient::prepare`] with the parameter types given.
    pub fn prepare_typed(&self, query: &str, types: &[Type]) -> Result<Statement, Error> {
        self.request(self.client.prepare_typed(query, types))
    }

    /// Runs one or more statements through the simple protocol and returns their rows (as
    /// text) and command completions.
    pub fn simple_query(&self, query: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.request(self.client.simple_query(query))
    }

    /// Runs one or more statements through the simple protocol, discarding their rows.
    pub fn batch_execute(&self, query: &str) -> Result<(), Error> {
        self.request(self.client.batch_execute(query))
    }

    /// Starts a transaction; it rolls back unless committed (see [`PgTransaction`]).
    pub fn transaction(&mut self) -> Result<PgTransaction<'_>, Error> {
        PgTransaction::begin(self)
    }

    /// Starts a `COPY … FROM STDIN`: write the data, then call `finish`.
    pub fn copy_in<T>(&self, query: &T) -> Result<CopyInWriter<'_>, Error>
    where
        T: ?Sized + ToStatement,
    {
        CopyInWriter::start(self, query)
    }

    /// Starts a `COPY … TO STDOUT`: read the data.
    pub fn copy_out<T>(&self, query: &T) -> Result<CopyOutReader<'_>, Error>
    where
        T: ?Sized + ToStatement,
    {
        CopyOutReader::start(self, query)
    }

    /// A token that cancels the query running on this connection, from another thread.
    ///
    /// The token names the server session (its process id and secret key), which no reset can
    /// change: kept past `release`, it could cancel a statement of the next request on this
    /// session. So a connection whose token was handed out here is closed on release, not
    /// parked. (A token taken from the inner client, `client().cancel_token()`, bypasses that:
    /// do not keep it past the release.)
    pub fn cancel_token(&self) -> PgCancelToken {
        self.cancel_handed_out.set(true);
        PgCancelToken::new(self.client.cancel_token(), self.tls.clone())
    }

    /// The `NOTIFY` payloads received on this connection (after `LISTEN`).
    pub fn notifications(&self) -> Notifications<'_> {
        Notifications::new(self)
    }

    /// Whether the server answers an empty query within `timeout`. (`postgres::Client`'s
    /// `is_valid` returned a `Result`; tokio-postgres has no error value for a timeout, so this
    /// says yes or no.) A connection that did not answer in time has a request in flight and
    /// is best closed.
    pub fn is_valid(&self, timeout: Duration) -> bool {
        matches!(
            self.within(timeout, self.client.simple_query("")),
            Some(Ok(_))
        )
    }
}
