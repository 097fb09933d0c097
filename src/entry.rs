//! One physical connection as the pool stores it, and the guarded calls into its driver.
//!
//! An entry is boxed once, when its connection is opened, and the same box moves between the
//! stack (holding the parked handle) and a `Conn` guard (holding the attached connection and the
//! way back to its pool). Steady-state `open`/`release` therefore allocate nothing.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::conn::Lease;
use crate::core::LeaseId;
use crate::key_pool::KeyPool;
use crate::{Connection, Driver, DriverError, DriverErrorKind, Error};

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
    pub(crate) lease: LeaseId,
}

impl<D: Driver> Entry<D> {
    pub(crate) fn attached(conn: D::Conn) -> Box<Self> {
        Box::new(Self {
            slot: Slot::Attached(conn),
            pool: None,
            lease: 0,
        })
    }

    pub(crate) fn parked(handle: D::Handle) -> Box<Self> {
        Box::new(Self {
            slot: Slot::Parked(handle),
            pool: None,
            lease: 0,
        })
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
}

/// Runs a driver call, turning a panic inside the driver into a `Broken` error, so a buggy
/// driver can never leave a reservation or a lease counted forever.
pub(crate) fn guarded<T>(
    what: &str,
    call: impl FnOnce() -> Result<T, DriverError>,
) -> Result<T, DriverError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(result) => result,
        Err(_) => Err(DriverError::new(
            DriverErrorKind::Broken,
            format!("the driver panicked in {what}"),
        )),
    }
}
