//! Short forms shared by the engine tests on the fake driver: a fresh database per test (the
//! `db` fixture), `configure` and `open` on the `fake` driver, and a connection's id.

use std::sync::Arc;

use pool::Settings;
use rstest::fixture;

use super::fake::{args, new_db, FakeConn, FakeDb};

/// A fresh fake database, so tests sharing the process-wide registry never meet.
#[fixture]
pub fn db() -> Arc<FakeDb> {
    new_db("engine")
}

/// Configures `db`'s pool on the `fake` driver.
pub fn configure(db: &FakeDb, settings: Settings) {
    pool::configure("fake", &args(db), settings).unwrap();
}

/// Opens a connection to `db` on the `fake` driver.
///
/// Deliberately not `#[track_caller]`: a lease opened here is recorded at this file
/// (`tests/common/engine.rs`), which `limits_and_waiting.rs` checks a timeout names.
pub fn open(db: &FakeDb) -> pool::Conn {
    pool::open("fake", &args(db)).unwrap()
}

/// The fake connection's id: equal ids mean the same server connection.
pub fn id(conn: &pool::Conn) -> u64 {
    conn.native::<FakeConn>().unwrap().id
}
