//! Type erasure between the registry (which knows drivers only by name) and the generic
//! `KeyPool<D>` (which knows the driver's types).

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Tick;
use crate::conn::Conn;
use crate::error::Error;
use crate::guard::guarded;
use crate::key_pool::KeyPool;
use crate::reaper::ReaperWake;
use crate::settings::Settings;
use crate::stats::Stats;
use pool_driver::{ConnArgs, Driver, DriverError};

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

impl<D: Driver> AnyDriver for Arc<D> {
    fn name(&self) -> &str {
        D::name(self)
    }

    fn parse(&self, args: &str) -> Result<ConnArgs, DriverError> {
        self.parse_args(args)
    }

    fn parks(&self) -> bool {
        guarded("can_detach", || Ok(self.can_detach())).unwrap_or(false)
    }

    fn new_pool(
        &self,
        args: ConnArgs,
        settings: Settings,
        parks: bool,
        explicit: bool,
        reaper: ReaperWake,
    ) -> &'static dyn AnyPool {
        KeyPool::new(Arc::clone(self), args, settings, parks, explicit, reaper)
    }
}

/// One key's pool, whatever its driver.
pub(crate) trait AnyPool: Send + Sync {
    /// Hands out a connection; `at` is the caller's location, for the timeout report.
    fn open(&'static self, at: &'static Location<'static>) -> Result<Conn, Error>;
    /// Applies settings; `explicit` marks a per-key configuration, which defaults never override.
    fn configure(&self, settings: Settings, explicit: bool);
    fn stats(&self) -> Stats;
    /// Sweeps if due (or asked to), and says how long until it is due again.
    fn reap(&'static self, now: Tick) -> Duration;
    /// Closes parked connections, fails waiters, stops the primer.
    fn shutdown(&self);
    /// Whether `shutdown` ran (for the model checker's registry invariant).
    #[cfg(pool_model)]
    fn is_closed(&self) -> bool;
}
