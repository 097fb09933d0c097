//! Closing dead connections off the caller's thread.
//!
//! Closing a healthy connection is quick (a goodbye message, a socket close). Closing one that
//! died mid-request may not be: a client library may wait for the answer to the request that
//! timed out before it lets go, for as long as the network stays silent (the `postgres` crate
//! does). So a connection found dead or broken is closed on a short-lived helper thread of its
//! own (`pool-close`), all of them at once, and the caller, or the reaper, goes on at once.
//! Keys never wait on each other's closes.
//!
//! The room the connection held under `max_open` stays counted (as closing) until its close
//! finished, so the server never sees more than `max_open` sessions, but at most `GRACE` from
//! when it was handed over: each pool's watchdog thread (`pool-closer`, started on first need)
//! frees the room of any close still running by then, and that close goes on alone (when the
//! peer answers or the socket dies). A silent peer must not wedge the pool. Whichever comes
//! first, the close or the deadline, frees the room, exactly once.
//!
//! `stop` (shutdown) waits for the closes still running, at most `GRACE`, so that normally no
//! connection outlives `shutdown`; a close stuck on a silent network is left to finish alone.
//! After `stop` the room of a dead connection is freed at once: the pool is shut.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Deadline, Instant};
use crate::guard;
use crate::sync::thread::JoinHandle;
use crate::sync::{channel, lock, spawn, wait_timeout, Condvar, Mutex, Receiver};
use crate::sync::{recv_timeout, RecvTimeoutError, Sender};

/// Longest a dead connection's close keeps its room counted.
const GRACE: Duration = Duration::from_secs(1);
/// How long the watchdog sleeps when nothing is pending.
const IDLE: Duration = Duration::from_secs(3600);

/// What frees a dead connection's room: run once, by whichever comes first.
struct Freed(Mutex<Option<Box<dyn FnOnce() + Send>>>);

impl Freed {
    /// Runs the callback if nobody has; a panic in it is caught, so that neither a helper nor
    /// the watchdog can die of it (and leave the in-flight count or the watchdog gone).
    fn fire(&self) {
        let free = lock(&self.0).take();
        if let Some(free) = free {
            if catch_unwind(AssertUnwindSafe(free)).is_err() {
                guard::log(|| tracing::error!("freeing a dead connection's room panicked"));
            }
        }
    }

    fn fired(&self) -> bool {
        lock(&self.0).is_none()
    }
}

/// A close whose room the watchdog frees at `deadline` if the close has not.
type Pending = (Instant, Arc<Freed>);

#[derive(Default)]
struct Watchdog {
    send: Option<Sender<Pending>>,
    handle: Option<JoinHandle<()>>,
    stopped: bool,
}

/// How many helpers are still closing, and a wake-up when one finishes (for `stop`).
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    finished: Condvar,
}

impl InFlight {
    fn finish(&self) {
        *lock(&self.count) -= 1;
        self.finished.notify_all();
    }
}

/// A pool's dead-connection closing: helpers and the watchdog.
#[derive(Default)]
pub(crate) struct Closer {
    watchdog: Mutex<Watchdog>,
    in_flight: Arc<InFlight>,
}

impl Closer {
    /// Closes `dead` on a helper thread; `freed` runs once the close finished or `GRACE`
    /// passed, whichever comes first (at once if the pool is shut). Never unwinds (its log
    /// lines are caught): callers close several dead connections in a row, and `release` calls
    /// it from `Conn`'s `Drop` while a thread unwinds.
    pub(crate) fn close<T: Send + 'static>(&self, dead: T, freed: impl FnOnce() + Send + 'static) {
        let freed = Arc::new(Freed(Mutex::new(Some(Box::new(freed)))));
        let deadline = Instant::now()
            .checked_add(GRACE)
            .unwrap_or_else(Instant::now);
        // The connection sits in a slot the helper empties, so that if no helper can start it
        // is still here to be closed (guarded) in place.
        let slot: Arc<Mutex<Option<Box<dyn Any + Send>>>> =
            Arc::new(Mutex::new(Some(Box::new(dead))));
        let (helper_slot, helper_freed) = (Arc::clone(&slot), Arc::clone(&freed));
        let in_flight = Arc::clone(&self.in_flight);
        *lock(&in_flight.count) += 1;
        let helper = spawn("pool-close", move || {
            let dead = lock(&helper_slot).take();
            guard::close(dead);
            helper_freed.fire();
            in_flight.finish();
        });
        if let Err(error) = helper {
            self.in_flight.finish();
            let dead = lock(&slot).take();
            guard::close(dead);
            freed.fire();
            // Logged once the room is free, so a panicking logger cannot keep it counted.
            guard::log(|| {
                tracing::error!(%error, "could not start a thread to close a dead connection; closed it in place");
            });
            return;
        }
        match self.watch((deadline, Arc::clone(&freed))) {
            Ok(true) => {}
            // Shut: nothing to hold the room for.
            Ok(false) => freed.fire(),
            Err(error) => {
                // No watchdog: the room is freed now, and only then logged.
                freed.fire();
                guard::log(|| tracing::error!(%error, "could not start the closer watchdog"));
            }
        }
    }

    /// Hands `pending` to the watchdog (starting it if needed); false if there is none (the
    /// pool is shut, or the watchdog just ended), `Err` if none could be started.
    fn watch(&self, pending: Pending) -> std::io::Result<bool> {
        let mut watchdog = lock(&self.watchdog);
        if watchdog.stopped {
            return Ok(false);
        }
        if watchdog.send.is_none() {
            let (send, receive) = channel::<Pending>();
            let handle = spawn("pool-closer", move || run(receive))?;
            watchdog.send = Some(send);
            watchdog.handle = Some(handle);
        }
        let sent = watchdog
            .send
            .as_ref()
            .is_some_and(|send| send.send(pending).is_ok());
        if !sent {
            // The watchdog is gone: the next close starts a new one.
            watchdog.send = None;
            watchdog.handle = None;
        }
        Ok(sent)
    }

    /// Stops the watchdog (rooms still held are freed: the pool is shut) and waits for the
    /// closes still running, at most `GRACE`; one stuck longer goes on alone.
    pub(crate) fn stop(&self) {
        let handle = {
            let mut watchdog = lock(&self.watchdog);
            watchdog.stopped = true;
            watchdog.send = None;
            watchdog.handle.take()
        };
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        let deadline = Deadline::after(GRACE);
        let mut running = lock(&self.in_flight.count);
        while *running > 0 {
            let left = deadline.left().unwrap_or(GRACE);
            if left.is_zero() {
                let closing = *running;
                drop(running);
                guard::log(|| {
                    tracing::warn!(
                        closing,
                        "dead connections are still closing at shutdown (their network is \
                         silent); leaving them to finish on their own"
                    );
                });
                return;
            }
            running = wait_timeout(
                &self.in_flight.finished,
                &self.in_flight.count,
                running,
                left,
            );
        }
    }
}

/// The watchdog: frees the room of every close still running at its deadline.
fn run(incoming: Receiver<Pending>) {
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        let now = Instant::now();
        let mut overdue = 0usize;
        for (deadline, freed) in &pending {
            if *deadline <= now && !freed.fired() {
                freed.fire();
                overdue += 1;
            }
        }
        pending.retain(|(_, freed)| !freed.fired());
        // Logged only once every overdue room is free, and caught: a logging layer that
        // panics must not kill the watchdog, or the closes still pending would keep their
        // rooms until their network gives up instead of `GRACE`.
        if overdue > 0 {
            guard::log(|| {
                tracing::warn!(
                    overdue,
                    "closing a dead connection takes longer than {GRACE:?} (its network is \
                     silent); freed its room, the close goes on in the background"
                );
            });
        }
        // Firing took time: measure what is left from now, not from the top of the pass.
        let now = Instant::now();
        let wait = pending
            .iter()
            .map(|(deadline, _)| deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(IDLE);
        match recv_timeout(&incoming, wait) {
            Ok(one) => pending.push(one),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // Stopped: the pool is shut, so nothing needs the rooms any more.
    for (_, freed) in pending {
        freed.fire();
    }
}
