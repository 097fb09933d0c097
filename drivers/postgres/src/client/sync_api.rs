//! The blocking methods of [`PgClient`], named and typed as `postgres::Client`'s, each one
//! request on the connection's runtime (see `client/mod.rs`).

use std::time::Duration;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, Statement, ToStatement};

use super::{CopyInWriter, CopyOutReader, Notifications, PgCancelToken, PgClient, PgTransaction};

impl PgClient {
    super::statements::statement_methods!(client);

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

    /// [`PgClient::prepare`] with the parameter types given.
    pub fn prepare_typed(&self, query: &str, types: &[Type]) -> Result<Statement, Error> {
        self.request(self.client.prepare_typed(query, types))
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
        PgCancelToken::new(
            self.client.cancel_token(),
            self.tls.clone(),
            self.cancel_address.clone(),
        )
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
