//! What the model-checking test files share.

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
