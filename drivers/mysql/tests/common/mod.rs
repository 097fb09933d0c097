//! Helpers shared by the driver's integration tests.

#![allow(dead_code)]

use std::time::Duration;

use pool_driver::Driver;
use pool_mysql::{MyConn, MysqlDriver};

/// The bound on connects and checks in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Connects straight through the driver (no pool) with `args`.
pub fn connect(args: &str) -> MyConn {
    let driver = MysqlDriver;
    let args = driver.parse_args(args).expect("args parse");
    driver.connect(&args, TIMEOUT).expect("connects")
}
