//! One physical connection as the pool stores it.
//!
//! An entry is boxed once, when its connection is opened, and the same box moves between the
//! stack (holding the parked handle) and a `Conn` guard (holding the attached connection and the
//! way back to its pool). Steady-state `open`/`release` therefore allocate nothing.

use std::sync::Arc;

use super::KeyPool;
use crate::clock::Tick;
use crate::conn::Lease;
use crate::core::Parkable;
use crate::error::Error;
use crate::lease::{LeaseId, LeaseRecord};
use pool_driver::{Connection, Driver};

/// What an entry holds right now.
pub(crate) enum Slot<D: Driver> {
    /// In a caller's hands.
    Attached(D::Conn),
    /// On the stack (or being checked, or on its way to a waiter).
    Parked(D::Handle),
    /// Transiently, while moving between the two, or after the driver failed.
    Empty,
}

/// A connection and, while it is leased, the pool it returns to.
pub(crate) struct Entry<D: Driver> {
    pub(crate) slot: Slot<D>,
    /// Set only while leased: the pool it returns to.
    pub(crate) pool: Option<&'static KeyPool<D>>,
    /// Its slot in the pool state's lease table.
    pub(crate) lease: LeaseId,
    /// Who holds it, written by the holder (see `crate::lease`).
    pub(crate) record: Arc<LeaseRecord>,
    /// When it was last released: validation and idle expiry measure from here.
    pub(crate) parked_at: Tick,
    /// Its last release's place in the LIFO order (`KeyCore::release_order`).
    pub(crate) released: u64,
    /// When it was opened: `max_lifetime` measures from here.
    born: Tick,
    /// How much earlier than `max_lifetime` this connection retires, in thousandths of it
    /// (0–50: up to 5 %), so connections opened together do not all expire together.
    lifetime_cut: u64,
}

impl<D: Driver> Entry<D> {
    fn new(slot: Slot<D>) -> Box<Self> {
        let born = Tick::now();
        let mut entry = Box::new(Self {
            slot,
            pool: None,
            lease: 0,
            record: Arc::default(),
            parked_at: Tick::default(),
            released: 0,
            born,
            lifetime_cut: 0,
        });
        // Spread, not secrecy: the box's address and the clock, mixed (splitmix64's finaliser).
        // The model checker's schedules must replay, so there only the (virtual) clock counts.
        #[cfg(not(pool_model))]
        let mut x = (&*entry as *const Self as u64) ^ born.as_nanos();
        #[cfg(pool_model)]
        let mut x = born.as_nanos();
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        entry.lifetime_cut = (x ^ (x >> 31)) % 51;
        entry
    }

    /// Whether this connection has outlived `max_lifetime_nanos` (minus its own cut) at `now`.
    pub(crate) fn past_lifetime(&self, max_lifetime_nanos: u64, now: Tick) -> bool {
        if max_lifetime_nanos == u64::MAX {
            return false;
        }
        let cut = max_lifetime_nanos / 1000 * self.lifetime_cut;
        let age = now.since(self.born);
        u64::try_from(age.as_nanos()).unwrap_or(u64::MAX) > max_lifetime_nanos - cut
    }

    pub(crate) fn attached(conn: D::Conn) -> Box<Self> {
        Self::new(Slot::Attached(conn))
    }

    pub(crate) fn parked(handle: D::Handle) -> Box<Self> {
        Self::new(Slot::Parked(handle))
    }
}

impl<D: Driver> Parkable for Entry<D> {
    #[inline]
    fn lease(&self) -> LeaseId {
        self.lease
    }

    #[inline]
    fn parked_at(&self) -> Tick {
        self.parked_at
    }

    #[inline]
    fn released(&self) -> u64 {
        self.released
    }
}

impl<D: Driver> Lease for Entry<D> {
    fn connection(&mut self) -> Option<&mut dyn Connection> {
        match &mut self.slot {
            Slot::Attached(conn) => Some(conn),
            _ => None,
        }
    }

    fn connection_ref(&self) -> Option<&dyn Connection> {
        match &self.slot {
            Slot::Attached(conn) => Some(conn),
            _ => None,
        }
    }

    fn release(mut self: Box<Self>) -> Result<(), Error> {
        match self.pool.take() {
            Some(pool) => pool.release(self),
            None => Ok(()),
        }
    }

    fn label(&self) -> &str {
        self.pool.as_ref().map_or("released", |p| p.label())
    }

    fn count_statement_timeout(&self) {
        if let Some(pool) = self.pool {
            pool.count_statement_timeout();
        }
    }
}
