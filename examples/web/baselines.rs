//! The same handlers' database work without this pool, for the load generator: through r2d2
//! (`r2d2_postgres`, written the way its users write it) and with a cold connect per request.
//! PostgreSQL only.

use std::time::Duration;

use r2d2_postgres::postgres::{self, config::SslMode, NoTls};
use r2d2_postgres::PostgresConnectionManager;

use crate::app::{Db, DbError, Item, NewItem, POSTGRES};

fn failed(error: impl std::fmt::Display) -> DbError {
    DbError::Unavailable(error.to_string())
}

fn config(url: &str) -> Result<postgres::Config, String> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|_| "cannot parse the PostgreSQL URL".to_owned())?;
    // As the pool's driver: no TLS, no SSLRequest round trip.
    config.ssl_mode(SslMode::Disable);
    config.connect_timeout(Duration::from_secs(2));
    Ok(config)
}

fn item_of(row: Option<postgres::Row>) -> Option<Item> {
    row.map(|row| Item {
        id: row.get(0),
        name: row.get(1),
        price_cents: row.get(2),
    })
}

fn get_item(client: &mut postgres::Client, id: i64) -> Result<Option<Item>, DbError> {
    Ok(item_of(
        client
            .query_opt(POSTGRES.get_item, &[&id])
            .map_err(failed)?,
    ))
}

fn create_item(client: &mut postgres::Client, new: &NewItem) -> Result<Item, DbError> {
    let mut tx = client.transaction().map_err(failed)?;
    let row = tx
        .query_one(POSTGRES.insert_item, &[&new.name, &new.price_cents])
        .map_err(failed)?;
    tx.commit().map_err(failed)?;
    Ok(Item {
        id: row.get(0),
        name: new.name.clone(),
        price_cents: new.price_cents,
    })
}

/// r2d2 with `max_size` as the pool's `max_open`, and the same acquire bound.
pub struct R2d2Db(r2d2::Pool<PostgresConnectionManager<NoTls>>);

impl R2d2Db {
    pub fn new(url: &str, max_size: u32) -> Result<R2d2Db, String> {
        let manager = PostgresConnectionManager::new(config(url)?, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            .connection_timeout(Duration::from_secs(2))
            .build(manager)
            .map_err(|e| format!("r2d2: {e}"))?;
        Ok(R2d2Db(pool))
    }

    fn get(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, DbError> {
        self.0.get().map_err(failed)
    }
}

impl Db for R2d2Db {
    fn get_item(&self, id: i64) -> Result<Option<Item>, DbError> {
        get_item(&mut *self.get()?, id)
    }

    fn create_item(&self, new: &NewItem) -> Result<Item, DbError> {
        create_item(&mut *self.get()?, new)
    }

    fn ping(&self) -> Result<(), DbError> {
        self.get()?.simple_query("SELECT 1").map_err(failed)?;
        Ok(())
    }
}

/// A new connection for every request, closed after it.
pub struct ColdDb(postgres::Config);

impl ColdDb {
    pub fn new(url: &str) -> Result<ColdDb, String> {
        Ok(ColdDb(config(url)?))
    }

    fn connect(&self) -> Result<postgres::Client, DbError> {
        self.0.connect(NoTls).map_err(failed)
    }
}

impl Db for ColdDb {
    fn get_item(&self, id: i64) -> Result<Option<Item>, DbError> {
        get_item(&mut self.connect()?, id)
    }

    fn create_item(&self, new: &NewItem) -> Result<Item, DbError> {
        create_item(&mut self.connect()?, new)
    }

    fn ping(&self) -> Result<(), DbError> {
        self.connect()?.simple_query("SELECT 1").map_err(failed)?;
        Ok(())
    }
}
