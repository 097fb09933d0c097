//! Type erasure between the registry (which knows drivers only by name) and the generic
//! `KeyPool<D>` (which knows the driver's types). Traits only: `key_pool` implements them, so
//! the registry never depends on `key_pool` and `key_pool` never on the registry.

use std::panic::Location;

use crate::conn::Conn;
use crate::error::Error;
use crate::reaper::{Reaped, ReaperWake};
use crate::settings::Settings;
use crate::stats::Stats;
use pool_driver::{ConnArgs, DriverError};

/// A registered driver, by name.
pub(crate) trait AnyDriver: Send + Sync {
    fn name(&self) -> &str;
    fn parse(&self, args: &str) -> Result<ConnArgs, DriverError>;
    /// `Driver::can_detach`, guarded (a panic means no). Asked before any registry lock is
    /// taken: it is driver code.
    fn parks(&self) -> bool;
    /// A new pool; called under the registry's `pools` lock, so it runs no driver code.
    fn new_pool(
        &self,
        args: ConnArgs,
        settings: Settings,
        parks: bool,
        explicit: bool,
        reaper: ReaperWake,
    ) -> &'static dyn AnyPool;
}

/// One key's pool, whatever its driver.
pub(crate) trait AnyPool: Send + Sync {
    /// Hands out a connection; `at` is the caller's location, for the timeout report.
    fn open(&'static self, at: &'static Location<'static>) -> Result<Conn, Error>;
    /// Applies settings; `explicit` marks a per-key configuration, which defaults never override.
    fn configure(&self, settings: Settings, explicit: bool);
    fn stats(&self) -> Stats;
    /// The same pool as the reaper sees it.
    fn reaped(&'static self) -> &'static dyn Reaped;
    /// Closes parked connections, fails waiters, stops the primer.
    fn shutdown(&self);
    /// Whether `shutdown` ran (for the model checker's registry invariant).
    #[cfg(pool_model)]
    fn is_closed(&self) -> bool;
    /// A duty this pool neglects now that nothing is in flight (for the model checker).
    #[cfg(pool_model)]
    fn quiescence_violation(&self) -> Option<String>;
}
