//! The driver contract of `pool`.
//!
//! `pool` splits the user API from the driver contract the way Go splits `database/sql` from
//! `database/sql/driver`: this crate holds only what a driver author implements and what the two
//! sides exchange. The pool re-exports all of it, so users never depend on this crate directly.
//!
//! A driver implements [`Driver`]: `connect` opens a connection, `detach` rolls it back, resets
//! its session and turns it into a `Send` handle that can be parked and attached again from
//! another thread, `attach` does the reverse and `connected` checks, within a bound, whether the
//! server is still there. The attached connection implements [`Connection`], the small uniform
//! SQL surface (`execute`/`query` with [`Value`] parameters) plus typed access to the driver's
//! own client.
//!
//! Connection arguments are parsed once into [`ConnArgs`], which gives the pool its registry key
//! (normalised: option order and spacing do not matter, credentials included) and a redacted
//! form for errors and logs (passwords never appear).

#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod args;
mod driver;
mod error;
mod value;

/// Test support for driver authors (cargo feature `test-support`).
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod leak_check;

pub use args::ConnArgs;
pub use driver::{Connection, Driver, ResetMode};
pub use error::{DriverError, DriverErrorKind};
pub use value::{Rows, Value};
