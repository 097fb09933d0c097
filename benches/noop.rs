//! A driver that does nothing, for measuring the engine alone (and its r2d2 twin).

use std::any::Any;
use std::time::Duration;

use pool::{ConnArgs, Connection, Driver, DriverError, ResetMode, Rows, Value};

pub struct NoopDriver;

/// A connection that only remembers whether a statement ran on it since it was attached, as
/// the real drivers do: an untouched session needs no reset (`release` parks it through the
/// fast slot), a used one does (`release` hands it to the resetter thread, whose reset here
/// costs nothing, so what is measured is the hand-off).
#[derive(Default)]
pub struct NoopConn {
    used: bool,
}

impl Driver for NoopDriver {
    type Conn = NoopConn;
    type Handle = NoopConn;

    fn name(&self) -> &str {
        "noop"
    }
    fn connect(&self, _: &ConnArgs, _: Duration) -> Result<NoopConn, DriverError> {
        Ok(NoopConn::default())
    }
    fn detach(&self, _: NoopConn, _: ResetMode) -> Result<NoopConn, DriverError> {
        Ok(NoopConn::default())
    }
    fn attach(&self, handle: NoopConn) -> Result<NoopConn, DriverError> {
        Ok(handle)
    }
    fn connected(&self, _: &mut NoopConn, _: Duration) -> bool {
        true
    }
}

impl Connection for NoopConn {
    fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64, DriverError> {
        self.used = true;
        Ok(0)
    }
    fn query(&mut self, _: &str, _: &[Value]) -> Result<Rows, DriverError> {
        self.used = true;
        Ok(Rows::default())
    }
    fn needs_reset(&self) -> bool {
        self.used
    }
    fn is_broken(&self) -> bool {
        false
    }
    fn native(&self) -> &dyn Any {
        self
    }
    fn native_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn native_type_name(&self) -> &'static str {
        "NoopConn"
    }
}

/// The same no-op connection behind r2d2, with r2d2's default settings.
pub struct NoopManager;

#[derive(Debug)]
pub struct Never;
impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}
impl std::error::Error for Never {}

impl r2d2::ManageConnection for NoopManager {
    type Connection = NoopConn;
    type Error = Never;

    fn connect(&self) -> Result<NoopConn, Never> {
        Ok(NoopConn::default())
    }
    fn is_valid(&self, _: &mut NoopConn) -> Result<(), Never> {
        Ok(())
    }
    fn has_broken(&self, _: &mut NoopConn) -> bool {
        false
    }
}
