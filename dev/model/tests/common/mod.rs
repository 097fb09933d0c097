//! What the model-checking test files share.

#![allow(dead_code, unused_macros, unused_imports)] // each test file uses a part

/// Schedules per scheduler: `POOL_MODEL_ITERATIONS` (default 1000) divided by `share` (a file
/// whose executions are long runs a share of it).
pub(crate) fn iterations(share: usize) -> usize {
    std::env::var("POOL_MODEL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000)
        .div_ceil(share)
}

/// Runs `body` under shuttle's random scheduler and its PCT scheduler (depth 3), `n`
/// schedules each; after each execution, the first invariant the engine found broken on
/// itself on any thread (`model::violation`) fails it.
pub(crate) fn check(body: impl Fn() + Send + Sync + Clone + 'static, n: usize) {
    let checked = move || {
        body();
        if let Err(broken) = pool_model::model::violation() {
            panic!("the engine broke an invariant: {broken}");
        }
    };
    shuttle::check_random(checked.clone(), n);
    shuttle::check_pct(checked, n, 3);
}

/// Implements `Connection` for a model connection type with `broken` and `dirty` fields:
/// `execute` breaks it (its release closes it), `query` changes its session (its release
/// resets it, on the resetter thread).
macro_rules! model_connection {
    ($conn:ident) => {
        impl pool_model::Connection for $conn {
            fn execute(
                &mut self,
                _: &str,
                _: &[pool_model::Value],
            ) -> Result<u64, pool_model::DriverError> {
                self.broken = true;
                Ok(0)
            }
            fn query(
                &mut self,
                _: &str,
                _: &[pool_model::Value],
            ) -> Result<pool_model::Rows, pool_model::DriverError> {
                self.dirty = true;
                Ok(pool_model::Rows::default())
            }
            fn is_broken(&self) -> bool {
                self.broken
            }
            fn native(&self) -> &dyn std::any::Any {
                self
            }
            fn native_mut(&mut self) -> &mut dyn std::any::Any {
                self
            }
            fn native_type_name(&self) -> &'static str {
                stringify!($conn)
            }
            fn needs_reset(&self) -> bool {
                self.dirty
            }
        }
    };
}
pub(crate) use model_connection;
