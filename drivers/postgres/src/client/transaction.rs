//! [`PgTransaction`]: `postgres::Transaction`'s blocking methods over a
//! `tokio_postgres::Transaction`.

use std::cell::RefCell;
use std::future::Future;

use tokio_postgres::{Error, Transaction};

use super::{deadline, no_probe, request_on, Io, PgClient};

/// A transaction on a [`PgClient`]. Dropped without [`PgTransaction::commit`] it rolls back:
/// the `ROLLBACK` is queued without waiting and goes out ahead of the connection's next
/// request (the pool's reset on release ends it in any case).
pub struct PgTransaction<'a> {
    tx: Transaction<'a>,
    io: &'a RefCell<Io>,
}

impl<'a> PgTransaction<'a> {
    pub(super) fn begin(client: &'a mut PgClient) -> Result<PgTransaction<'a>, Error> {
        let PgClient { client, io, .. } = client;
        let io: &'a RefCell<Io> = io;
        let tx = request_on(io, client.transaction(), no_probe())?;
        Ok(PgTransaction { tx, io })
    }

    fn request<T>(&self, future: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        request_on(
            self.io,
            future,
            Some(|| -> deadline::Probe<'_> { Box::pin(self.tx.simple_query("SELECT 1")) }),
        )
    }

    /// The `tokio_postgres::Transaction`, for async code run with [`PgTransaction::block_on`].
    pub fn transaction(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// Runs `future` on the connection's runtime (see [`PgClient::block_on`]).
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match self.io.try_borrow_mut() {
            Ok(mut io) => io.block_on(future),
            Err(_) => panic!("PgTransaction::block_on called inside a block_on of the same client"),
        }
    }

    /// Commits.
    pub fn commit(self) -> Result<(), Error> {
        let io = self.io;
        request_on(io, self.tx.commit(), no_probe())
    }

    /// Rolls back (what dropping it does, but waiting for the server's answer).
    pub fn rollback(self) -> Result<(), Error> {
        let io = self.io;
        request_on(io, self.tx.rollback(), no_probe())
    }

    /// A nested transaction: a savepoint, released by its `commit`, rolled back to otherwise.
    pub fn savepoint(&mut self, name: &str) -> Result<PgTransaction<'_>, Error> {
        let io = self.io;
        let tx = request_on(io, self.tx.savepoint(name), no_probe())?;
        Ok(PgTransaction { tx, io })
    }

    super::statements::statement_methods!(tx);
}
