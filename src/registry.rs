//! The process-wide registry: drivers by name, pools by driver + normalised arguments.
//!
//! Lookup is the first thing every `open` does, so it has three tiers:
//! 1. a per-thread cache of the last few (driver, raw args) strings → pool: no lock at all;
//! 2. a shared map from the raw strings the program actually passes → pool: one read lock;
//! 3. parse and normalise the arguments and find or create the pool under the write lock.
//!
//! Tier 3 is what makes `host=a user=b` and `user=b  host=a` one pool; tiers 1 and 2 only
//! remember its answer. `shutdown` empties the maps and bumps `generation`, which invalidates
//! every thread's cache.
//!
//! Lock order: `shutting` (held for a whole `shutdown`) or `configuring` (held for a whole
//! `configure_defaults`; the two are never nested), then `drivers`, then `pools`, then
//! `defaults`, then `reaper`; a pool's own lock is
//! never taken while any of these is held except through `AnyPool::configure`/`stats`, which
//! take only that pool's state lock and call no driver.
//!
//! Pools and the reaper change together under the `pools` write lock: a pool is created (and
//! given the running reaper's wake handle, starting one if needed) and its raw argument string
//! remembered in one critical section, and `shutdown` empties the maps and takes the reaper in
//! one critical section. So a pool is either shut by a concurrent `shutdown` or created after
//! it, with a live reaper; never remembered after the shutdown nor left without a reaper.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::erased::{AnyDriver, AnyPool};
use crate::error::Error;
use crate::reaper::{Reaped, Reaper, ReaperWake};
use crate::settings::Settings;
use crate::sync::{lock, per_thread, process_global, read, write};
use crate::sync::{AtomicU64, Mutex, Ordering, RwLock};
use pool_driver::Driver;

/// Raw argument strings remembered per driver, at most (beyond this, lookups still work
/// through normalisation, just without the shortcut).
const MAX_RAW_PER_DRIVER: usize = 1024;
/// Entries in each thread's lookup cache.
const THREAD_CACHE: usize = 4;

#[derive(Default)]
struct Pools {
    /// driver name → canonical args → pool. The source of truth.
    by_key: FxHashMap<String, FxHashMap<String, &'static dyn AnyPool>>,
    /// driver name → raw args as passed → pool. A memo of tier 3.
    by_raw: FxHashMap<String, FxHashMap<String, &'static dyn AnyPool>>,
}

pub(crate) struct Registry {
    /// Held for a whole `shutdown`, so a second concurrent call returns only once the first
    /// has closed everything (first in the lock order).
    shutting: Mutex<()>,
    /// Held for a whole `configure_defaults`, so two concurrent calls apply one after the
    /// other and every pool ends on the defaults the registry keeps (first in the lock order,
    /// beside `shutting`; no engine thread takes it).
    configuring: Mutex<()>,
    drivers: RwLock<FxHashMap<String, Arc<dyn AnyDriver>>>,
    pools: RwLock<Pools>,
    defaults: RwLock<Settings>,
    reaper: Mutex<Option<Reaper>>,
    generation: AtomicU64,
}

process_global! {
    /// The one registry (under the model checker: one per checked execution).
    static REGISTRY: Registry = Registry::with_builtin_drivers();
}

pub(crate) fn registry() -> &'static Registry {
    &REGISTRY
}

/// Every pool, as the reaper sees it.
fn reaped_pools() -> Vec<&'static dyn Reaped> {
    registry()
        .all_pools()
        .into_iter()
        .map(|pool| pool.reaped())
        .collect()
}

struct Cached {
    generation: u64,
    driver: Box<str>,
    args: Box<str>,
    pool: &'static dyn AnyPool,
}

per_thread! {
    static CACHE: RefCell<Vec<Cached>> = RefCell::new(Vec::new());
}

impl Registry {
    fn with_builtin_drivers() -> Registry {
        let registry = Registry {
            shutting: Mutex::new(()),
            configuring: Mutex::new(()),
            drivers: RwLock::new(FxHashMap::default()),
            pools: RwLock::new(Pools::default()),
            defaults: RwLock::new(Settings::default()),
            reaper: Mutex::new(None),
            generation: AtomicU64::new(0),
        };
        #[cfg(feature = "postgres")]
        registry.insert_driver(Arc::new(pool_postgres::PgDriver));
        #[cfg(feature = "mysql")]
        registry.insert_driver(Arc::new(pool_mysql::MysqlDriver));
        #[cfg(feature = "redis")]
        registry.insert_driver(Arc::new(pool_redis::RedisDriver::new()));
        registry
    }

    fn insert_driver<D: Driver>(&self, driver: Arc<D>) -> bool {
        let name = driver.name().to_owned();
        let mut drivers = write(&self.drivers);
        if drivers.contains_key(&name) {
            return false;
        }
        drivers.insert(name, Arc::new(driver));
        true
    }

    pub(crate) fn register<D: Driver>(&self, driver: D) -> Result<(), Error> {
        let name = driver.name().to_owned();
        if self.insert_driver(Arc::new(driver)) {
            tracing::info!(driver = %name, "registered a driver");
            Ok(())
        } else {
            Err(Error::DriverAlreadyRegistered { name })
        }
    }

    fn driver(&self, name: &str) -> Result<Arc<dyn AnyDriver>, Error> {
        let drivers = read(&self.drivers);
        match drivers.get(name) {
            Some(driver) => Ok(Arc::clone(driver)),
            None => {
                let mut registered: Vec<String> = drivers.keys().cloned().collect();
                registered.sort();
                Err(Error::UnknownDriver {
                    name: name.to_owned(),
                    registered,
                })
            }
        }
    }

    /// The pool for `driver` + `args`, created on first use.
    #[inline]
    pub(crate) fn pool(&self, driver: &str, args: &str) -> Result<&'static dyn AnyPool, Error> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = CACHE.try_with(|cache| {
            let cache = cache.try_borrow().ok()?;
            cache
                .iter()
                .find(|c| c.generation == generation && *c.args == *args && *c.driver == *driver)
                .map(|c| c.pool)
        });
        if let Ok(Some(pool)) = cached {
            return Ok(pool);
        }
        let pool = self.pool_uncached(driver, args)?;
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache.retain(|c| c.generation == generation);
                if cache.len() >= THREAD_CACHE {
                    cache.remove(0);
                }
                cache.push(Cached {
                    generation,
                    driver: driver.into(),
                    args: args.into(),
                    pool,
                });
            }
        });
        Ok(pool)
    }

    fn pool_uncached(&self, driver: &str, args: &str) -> Result<&'static dyn AnyPool, Error> {
        if let Some(pool) = read(&self.pools)
            .by_raw
            .get(driver)
            .and_then(|m| m.get(args))
        {
            return Ok(*pool);
        }
        self.pool_for_key(driver, args, None)
    }

    /// Finds or creates the pool for the normalised key; `explicit` settings configure it.
    /// A lookup by raw string (no `explicit`) is remembered in `by_raw` in the same critical
    /// section that found or created the pool, so a concurrent `shutdown` can never leave the
    /// string bound to a closed pool.
    fn pool_for_key(
        &self,
        driver_name: &str,
        args: &str,
        explicit: Option<Settings>,
    ) -> Result<&'static dyn AnyPool, Error> {
        let driver = self.driver(driver_name)?;
        let parsed = driver.parse(args).map_err(|e| Error::InvalidArgs {
            driver: driver_name.to_owned(),
            message: e.message().to_owned(),
        })?;
        let key = parsed.canonical();
        let parks = driver.parks();
        let remember_raw = explicit.is_none();
        let mut pools = write(&self.pools);
        let existing = pools
            .by_key
            .get(driver_name)
            .and_then(|m| m.get(&key))
            .copied();
        let created = existing.is_none();
        let (pool, explicit) = match existing {
            Some(pool) => (pool, explicit),
            None => {
                let is_explicit = explicit.is_some();
                let settings = explicit.unwrap_or_else(|| read(&self.defaults).clone());
                let pool =
                    driver.new_pool(parsed, settings, parks, is_explicit, self.reaper_wake());
                #[cfg(pool_model)]
                model_pools::created(pool);
                pools
                    .by_key
                    .entry(driver_name.to_owned())
                    .or_default()
                    .insert(key, pool);
                (pool, None)
            }
        };
        if remember_raw {
            let raw = pools.by_raw.entry(driver_name.to_owned()).or_default();
            if raw.len() < MAX_RAW_PER_DRIVER {
                raw.insert(args.to_owned(), pool);
            }
        }
        drop(pools);
        let reconfigured = explicit.is_some();
        if let Some(settings) = explicit {
            pool.configure(settings, true);
        }
        if created || reconfigured {
            self.wake_reaper();
        }
        if created {
            tracing::debug!(driver = %driver_name, "created a pool");
        }
        Ok(pool)
    }

    /// The reaper's wake handle, starting the reaper if it is not running. Called with the
    /// `pools` write lock held (lock order: pools, then reaper).
    fn reaper_wake(&self) -> ReaperWake {
        let mut reaper = lock(&self.reaper);
        reaper
            .get_or_insert_with(|| Reaper::start(reaped_pools))
            .wake_handle()
    }

    fn wake_reaper(&self) {
        if let Some(reaper) = lock(&self.reaper).as_ref() {
            reaper.wake_handle().wake();
        }
    }

    pub(crate) fn all_pools(&self) -> Vec<&'static dyn AnyPool> {
        read(&self.pools)
            .by_key
            .values()
            .flat_map(|m| m.values().copied())
            .collect()
    }

    pub(crate) fn configure(
        &self,
        driver: &str,
        args: &str,
        settings: Settings,
    ) -> Result<(), Error> {
        settings
            .validate()
            .map_err(|message| Error::InvalidSettings { message })?;
        self.pool_for_key(driver, args, Some(settings)).map(|_| ())
    }

    pub(crate) fn configure_defaults(&self, settings: Settings) -> Result<(), Error> {
        settings
            .validate()
            .map_err(|message| Error::InvalidSettings { message })?;
        let _one_at_a_time = lock(&self.configuring);
        // A pool created from here on reads the new defaults (under the `pools` lock); one
        // created before is in the list below (one created in between gets them twice).
        *write(&self.defaults) = settings.clone();
        for pool in self.all_pools() {
            // A key configured on its own keeps its settings: decided under its state lock.
            pool.configure(settings.clone(), false);
        }
        self.wake_reaper();
        Ok(())
    }

    /// Checks the registry's invariants (for the model checker): no pool it hands out is shut,
    /// and while it holds a pool, a reaper runs.
    #[cfg(pool_model)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let pools = read(&self.pools);
        let reaper_runs = lock(&self.reaper).is_some();
        for pool in pools
            .by_key
            .values()
            .chain(pools.by_raw.values())
            .flat_map(|m| m.values())
        {
            if pool.is_closed() {
                return Err("the registry hands out a pool that is shut down".into());
            }
            if !reaper_runs {
                return Err("the registry holds a pool but no reaper runs".into());
            }
        }
        Ok(())
    }

    /// The first duty a pool of this execution neglects now that nothing is in flight, shut
    /// pools included (see `State::quiescence_violation`).
    #[cfg(pool_model)]
    pub(crate) fn quiescence_violation(&self) -> Option<String> {
        model_pools::all()
            .into_iter()
            .find_map(|pool| pool.quiescence_violation())
    }

    pub(crate) fn stats(&self, driver: &str, args: &str) -> Result<crate::Stats, Error> {
        Ok(self.pool(driver, args)?.stats())
    }

    /// Empties the registry, stops the reaper, then shuts every pool (closing parked
    /// connections and joining primers), outside every registry lock.
    pub(crate) fn shutdown(&self) {
        let _one_at_a_time = lock(&self.shutting);
        let (pools, reaper) = {
            let mut pools = write(&self.pools);
            self.generation.fetch_add(1, Ordering::AcqRel);
            pools.by_raw.clear();
            let by_key = std::mem::take(&mut pools.by_key);
            // Taken in the same critical section: a pool created after this one starts a new
            // reaper instead of keeping the wake handle of the one stopped below.
            let reaper = lock(&self.reaper).take();
            let pools: Vec<&'static dyn AnyPool> = by_key
                .into_values()
                .flat_map(HashMap::into_values)
                .collect();
            (pools, reaper)
        };
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache.clear();
            }
        });
        if let Some(reaper) = reaper {
            reaper.stop();
        }
        for pool in &pools {
            pool.shutdown();
        }
        crate::guard::log(|| tracing::info!(pools = pools.len(), "pool registry shut down"));
    }
}

/// Every pool created in this checked execution, shut ones included (the registry forgets a
/// pool at shutdown; the model checker still checks what it does afterwards).
#[cfg(pool_model)]
mod model_pools {
    use crate::erased::AnyPool;
    use std::sync::{Mutex, PoisonError};

    crate::sync::process_global! {
        static CREATED: Mutex<Vec<&'static dyn AnyPool>> = Mutex::new(Vec::new());
    }

    pub(super) fn created(pool: &'static dyn AnyPool) {
        CREATED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(pool);
    }

    pub(super) fn all() -> Vec<&'static dyn AnyPool> {
        CREATED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
