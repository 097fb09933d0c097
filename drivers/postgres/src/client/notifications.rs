//! `NOTIFY` payloads received on a connection, as `postgres::Notifications` offers them
//! (without `blocking_iter`: a wait with no bound is what this driver avoids; use
//! `timeout_iter`).
//!
//! The connection takes notifications in whenever it is polled, so they pile up in the client
//! while requests run; [`Notifications::iter`] also reads what already arrived on the socket.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use tokio_postgres::Notification;

use super::{drive, PgClient};

/// The notifications of one [`PgClient`].
pub struct Notifications<'a> {
    client: &'a PgClient,
}

impl<'a> Notifications<'a> {
    pub(super) fn new(client: &'a PgClient) -> Self {
        Notifications { client }
    }

    /// How many were received and not yet taken.
    pub fn len(&self) -> usize {
        self.client.io.borrow().notifications.len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the ones received so far, after reading whatever the socket already holds,
    /// without waiting for more.
    pub fn iter(&mut self) -> NotificationsIter<'_> {
        self.client.poll_socket();
        NotificationsIter {
            client: self.client,
        }
    }

    /// Takes notifications, waiting up to `timeout` for each next one.
    pub fn timeout_iter(&mut self, timeout: Duration) -> TimeoutIter<'_> {
        TimeoutIter {
            client: self.client,
            timeout,
        }
    }
}

/// The notifications already received (see [`Notifications::iter`]).
pub struct NotificationsIter<'a> {
    client: &'a PgClient,
}

impl Iterator for NotificationsIter<'_> {
    type Item = Notification;

    fn next(&mut self) -> Option<Notification> {
        self.client.io.borrow_mut().notifications.pop_front()
    }
}

/// Notifications, each waited for up to a timeout (see [`Notifications::timeout_iter`]);
/// ends at the first timeout or when the connection closed.
pub struct TimeoutIter<'a> {
    client: &'a PgClient,
    timeout: Duration,
}

impl Iterator for TimeoutIter<'_> {
    type Item = Notification;

    fn next(&mut self) -> Option<Notification> {
        let mut io = self.client.io.borrow_mut();
        if let Some(next) = io.notifications.pop_front() {
            return Some(next);
        }
        let super::Io {
            runtime,
            connection,
            notifications,
            failure,
            ..
        } = &mut *io;
        runtime.block_on(async {
            let arrival = poll_fn(|cx| {
                drive(connection, notifications, failure, cx);
                match notifications.pop_front() {
                    Some(next) => Poll::Ready(Some(next)),
                    None if connection.is_none() => Poll::Ready(None),
                    None => Poll::Pending,
                }
            });
            tokio::time::timeout(self.timeout, arrival)
                .await
                .ok()
                .flatten()
        })
    }
}
