//! The same handlers' database work without this pool against MySQL/MariaDB, for the load
//! generator: through r2d2 (`r2d2_mysql`, default settings: a `COM_PING` on checkout and again
//! on return, no reset) and with a cold connect per request. Written the way the `mysql`
//! crate's users write it: `exec_first` with `?` parameters (prepared once per connection and
//! cached by the crate, since nothing resets the session).

use std::time::Duration;

use r2d2_mysql::mysql::{self, prelude::Queryable, Opts, OptsBuilder};
use r2d2_mysql::MySqlConnectionManager;

use crate::app::{Db, DbError, Item, NewItem, MYSQL};

fn failed(error: impl std::fmt::Display) -> DbError {
    DbError::Unavailable(error.to_string())
}

fn builder(url: &str) -> Result<OptsBuilder, String> {
    let opts = Opts::from_url(url).map_err(|_| "cannot parse the MySQL URL".to_owned())?;
    Ok(OptsBuilder::from_opts(opts).tcp_connect_timeout(Some(Duration::from_secs(2))))
}

fn get_item(conn: &mut impl Queryable, id: i64) -> Result<Option<Item>, DbError> {
    let row: Option<(i64, String, i64)> = conn.exec_first(MYSQL.get_item, (id,)).map_err(failed)?;
    Ok(row.map(|(id, name, price_cents)| Item {
        id,
        name,
        price_cents,
    }))
}

fn create_item(conn: &mut mysql::Conn, new: &NewItem) -> Result<Item, DbError> {
    let mut tx = conn
        .start_transaction(mysql::TxOpts::default())
        .map_err(failed)?;
    tx.exec_drop(MYSQL.insert_item, (&new.name, new.price_cents))
        .map_err(failed)?;
    let id = tx.last_insert_id().ok_or_else(|| failed("no insert id"))? as i64;
    tx.commit().map_err(failed)?;
    Ok(Item {
        id,
        name: new.name.clone(),
        price_cents: new.price_cents,
    })
}

/// r2d2 with `max_size` as the pool's `max_open`, and the same acquire bound.
pub struct R2d2MyDb(r2d2::Pool<MySqlConnectionManager>);

impl R2d2MyDb {
    pub fn new(url: &str, max_size: u32) -> Result<R2d2MyDb, String> {
        let pool = r2d2::Pool::builder()
            .max_size(max_size)
            .connection_timeout(Duration::from_secs(2))
            .build(MySqlConnectionManager::new(builder(url)?))
            .map_err(|e| format!("r2d2: {e}"))?;
        Ok(R2d2MyDb(pool))
    }

    fn get(&self) -> Result<r2d2::PooledConnection<MySqlConnectionManager>, DbError> {
        self.0.get().map_err(failed)
    }
}

impl Db for R2d2MyDb {
    fn get_item(&self, id: i64) -> Result<Option<Item>, DbError> {
        get_item(&mut *self.get()?, id)
    }

    fn create_item(&self, new: &NewItem) -> Result<Item, DbError> {
        create_item(&mut *self.get()?, new)
    }

    fn ping(&self) -> Result<(), DbError> {
        self.get()?.query_drop("SELECT 1").map_err(failed)
    }
}

/// A new connection for every request, closed after it.
pub struct ColdMyDb(Opts);

impl ColdMyDb {
    pub fn new(url: &str) -> Result<ColdMyDb, String> {
        Ok(ColdMyDb(builder(url)?.into()))
    }

    fn connect(&self) -> Result<mysql::Conn, DbError> {
        mysql::Conn::new(self.0.clone()).map_err(failed)
    }
}

impl Db for ColdMyDb {
    fn get_item(&self, id: i64) -> Result<Option<Item>, DbError> {
        get_item(&mut self.connect()?, id)
    }

    fn create_item(&self, new: &NewItem) -> Result<Item, DbError> {
        create_item(&mut self.connect()?, new)
    }

    fn ping(&self) -> Result<(), DbError> {
        self.connect()?.query_drop("SELECT 1").map_err(failed)
    }
}
