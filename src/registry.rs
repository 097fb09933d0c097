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
//! Lock order: `drivers`, then `pools`, then `defaults`, then `reaper`; a pool's own lock is
//! never taken while any of these is held except through `AnyPool::configure`/`stats`, which
//! take only that pool's state lock and call no driver.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use rustc_hash::FxHashMap;

use crate::erased::{AnyDriver, AnyPool};
use crate::reaper::{Reaper, ReaperWake};
use crate::settings::Settings;
use crate::sync::{lock, read, write, Mutex, RwLock};
use crate::{Driver, Error};

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
    drivers: RwLock<FxHashMap<String, Arc<dyn AnyDriver>>>,
    pools: RwLock<Pools>,
    defaults: RwLock<Settings>,
    reaper: Mutex<Option<Reaper>>,
    generation: AtomicU64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::with_builtin_drivers);

pub(crate) fn registry() -> &'static Registry {
    &REGISTRY
}

struct Cached {
    generation: u64,
    driver: Box<str>,
    args: Box<str>,
    pool: &'static dyn AnyPool,
}

thread_local! {
    static CACHE: RefCell<Vec<Cached>> = const { RefCell::new(Vec::new()) };
}

impl Registry {
    fn with_builtin_drivers() -> Registry {
        let registry = Registry {
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
        let (pool, _) = self.pool_for_key(driver, args, None)?;
        let mut pools = write(&self.pools);
        let raw = pools.by_raw.entry(driver.to_owned()).or_default();
        if raw.len() < MAX_RAW_PER_DRIVER {
            raw.insert(args.to_owned(), pool);
        }
        Ok(pool)
    }

    /// Finds or creates the pool for the normalised key; `explicit` settings configure it.
    /// Returns the pool and whether it was created.
    fn pool_for_key(
        &self,
        driver_name: &str,
        args: &str,
        explicit: Option<Settings>,
    ) -> Result<(&'static dyn AnyPool, bool), Error> {
        let driver = self.driver(driver_name)?;
        let parsed = driver.parse(args).map_err(|e| Error::InvalidArgs {
            driver: driver_name.to_owned(),
            message: e.message().to_owned(),
        })?;
        let key = parsed.canonical();
        let mut pools = write(&self.pools);
        let by_key = pools.by_key.entry(driver_name.to_owned()).or_default();
        if let Some(pool) = by_key.get(&key) {
            let pool = *pool;
            drop(pools);
            if let Some(settings) = explicit {
                pool.configure(settings, true);
                self.wake_reaper();
            }
            return Ok((pool, false));
        }
        let is_explicit = explicit.is_some();
        let settings = explicit.unwrap_or_else(|| read(&self.defaults).clone());
        let pool = driver.new_pool(parsed, settings, is_explicit, self.reaper_wake());
        by_key.insert(key, pool);
        drop(pools);
        self.wake_reaper();
        tracing::debug!(driver = %driver_name, "created a pool");
        Ok((pool, true))
    }

    /// The reaper's wake handle, starting the reaper if it is not running.
    fn reaper_wake(&self) -> ReaperWake {
        let mut reaper = lock(&self.reaper);
        reaper
            .get_or_insert_with(|| Reaper::start(|| registry().all_pools()))
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
        *write(&self.defaults) = settings.clone();
        for pool in self.all_pools() {
            pool.configure(settings.clone(), false);
        }
        self.wake_reaper();
        Ok(())
    }

    pub(crate) fn stats(&self, driver: &str, args: &str) -> Result<crate::Stats, Error> {
        Ok(self.pool(driver, args)?.stats())
    }

    /// Empties the registry, stops the reaper, then shuts every pool (closing parked
    /// connections and joining primers), outside every registry lock.
    pub(crate) fn shutdown(&self) {
        let pools: Vec<&'static dyn AnyPool> = {
            let mut pools = write(&self.pools);
            self.generation.fetch_add(1, Ordering::AcqRel);
            pools.by_raw.clear();
            let by_key = std::mem::take(&mut pools.by_key);
            by_key
                .into_values()
                .flat_map(HashMap::into_values)
                .collect()
        };
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache.clear();
            }
        });
        let reaper = lock(&self.reaper).take();
        if let Some(reaper) = reaper {
            reaper.stop();
        }
        for pool in &pools {
            pool.shutdown();
        }
        tracing::info!(pools = pools.len(), "pool registry shut down");
    }
}
