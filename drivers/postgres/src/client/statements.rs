//! The statement methods [`PgClient`](super::PgClient) and
//! [`PgTransaction`](super::PgTransaction) share: each is one request of the same
//! `tokio_postgres` method on the inner client or transaction, run to completion on the
//! connection's runtime (`request`). One definition serves both, so the two cannot drift apart.

/// Defines the shared statement methods inside an `impl` block whose type has a
/// `request(&self, future)` method and the `tokio_postgres` client or transaction in the field
/// named `$inner`.
macro_rules! statement_methods {
    ($inner:ident) => {
        /// Runs a statement and returns the number of rows it changed. A `&str` statement is
        /// prepared first (a named statement; see `execute_typed` for one round trip with the
        /// unnamed statement).
        pub fn execute<T>(
            &self,
            query: &T,
            params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        ) -> Result<u64, tokio_postgres::Error>
        where
            T: ?Sized + tokio_postgres::ToStatement,
        {
            self.request(self.$inner.execute(query, params))
        }

        /// Runs `query` as the unnamed statement in one round trip, with the parameter types
        /// given instead of asked for (`Type::UNKNOWN`… or a real type). Works behind a
        /// transaction-mode PgBouncer.
        pub fn execute_typed(
            &self,
            query: &str,
            params: &[(
                &(dyn tokio_postgres::types::ToSql + Sync),
                tokio_postgres::types::Type,
            )],
        ) -> Result<u64, tokio_postgres::Error> {
            self.request(self.$inner.execute_typed(query, params))
        }

        /// Runs a query and returns its rows.
        pub fn query<T>(
            &self,
            query: &T,
            params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>
        where
            T: ?Sized + tokio_postgres::ToStatement,
        {
            self.request(self.$inner.query(query, params))
        }

        /// Runs a query that returns exactly one row (an error otherwise).
        pub fn query_one<T>(
            &self,
            query: &T,
            params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        ) -> Result<tokio_postgres::Row, tokio_postgres::Error>
        where
            T: ?Sized + tokio_postgres::ToStatement,
        {
            self.request(self.$inner.query_one(query, params))
        }

        /// Runs a query that returns at most one row.
        pub fn query_opt<T>(
            &self,
            query: &T,
            params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error>
        where
            T: ?Sized + tokio_postgres::ToStatement,
        {
            self.request(self.$inner.query_opt(query, params))
        }

        /// `query` as the unnamed statement, in one round trip, with the parameter types
        /// given (see `execute_typed`).
        pub fn query_typed(
            &self,
            query: &str,
            params: &[(
                &(dyn tokio_postgres::types::ToSql + Sync),
                tokio_postgres::types::Type,
            )],
        ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
            self.request(self.$inner.query_typed(query, params))
        }

        /// Prepares a named statement (kept on this server session until the `Statement` is
        /// dropped; not usable behind a transaction-mode PgBouncer).
        pub fn prepare(
            &self,
            query: &str,
        ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
            self.request(self.$inner.prepare(query))
        }

        /// Runs one or more statements through the simple protocol and returns their rows (as
        /// text) and command completions.
        pub fn simple_query(
            &self,
            query: &str,
        ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error> {
            self.request(self.$inner.simple_query(query))
        }

        /// Runs one or more statements through the simple protocol, discarding their rows.
        pub fn batch_execute(&self, query: &str) -> Result<(), tokio_postgres::Error> {
            self.request(self.$inner.batch_execute(query))
        }
    };
}
pub(super) use statement_methods;
