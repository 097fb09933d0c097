//! Socket timeouts on a live `mysql::Conn`, to bound single operations.
//!
//! The `mysql` crate sets read/write timeouts only once, when it opens the socket, and keeps the
//! stream private. But `mysql::Conn` implements `AsRawFd`, and `SO_RCVTIMEO`/`SO_SNDTIMEO` can be
//! changed on a live socket (TCP or unix) at any time. So the driver opens with a bound for the
//! handshake, then sets the session's own timeouts (none by default, so long user queries run
//! as long as they need), and wraps only its own short operations (ping, reset, rollback, the
//! goodbye on close) in a temporary bound. Each change is one `setsockopt`, about a microsecond.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::SockRef;

use crate::opts::SessionTimeouts;

/// Sets the read and write timeouts of `conn`'s socket (`None`: block without limit).
pub(crate) fn set_timeouts(conn: &mysql::Conn, timeouts: SessionTimeouts) -> io::Result<()> {
    let fd = borrow(conn);
    let socket = SockRef::from(&fd);
    socket.set_read_timeout(timeouts.read.map(at_least_1ms))?;
    socket.set_write_timeout(timeouts.write.map(at_least_1ms))
}

/// Sets both timeouts to `bound`.
pub(crate) fn set_bound(conn: &mysql::Conn, bound: Duration) -> io::Result<()> {
    set_timeouts(
        conn,
        SessionTimeouts {
            read: Some(bound),
            write: Some(bound),
        },
    )
}

/// The socket `conn` owns, borrowed for as long as `conn` is.
fn borrow(conn: &mysql::Conn) -> BorrowedFd<'_> {
    // SAFETY: `mysql::Conn` owns this descriptor (its stream is always present once `Conn::new`
    // returned) and closes it only when dropped; the returned borrow is tied to `&conn`, so the
    // descriptor stays open for as long as the borrow lives.
    #[allow(unsafe_code)]
    unsafe {
        BorrowedFd::borrow_raw(conn.as_raw_fd())
    }
}

/// A zero timeout means "no timeout" to `setsockopt` and is rejected by std: use 1 ms instead.
fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}
