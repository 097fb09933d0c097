//! The resetter: one background thread per pool that resets released connections, so
//! `release` costs the caller a hand-off instead of a round trip to the server.
//!
//! # Why it is safe
//!
//! A connection handed here is counted as `resetting` by the pool's core (not in use, not
//! parked): `open` cannot take it, so no request ever runs on a session whose reset has not
//! finished. When the reset succeeds the pool parks it; when it fails the pool closes it. An
//! `open` that finds nothing parked while resets are in flight waits for one (bounded by
//! `core::RESET_PATIENCE`) instead of connecting cold.
//!
//! # Bounds
//!
//! * At most [`MAX_QUEUED`] connections wait behind the one being reset; a release that finds
//!   the queue full resets on its own thread, as if there were no resetter (backpressure: under
//!   a burst the releasing threads share the work, and no connection sits unusable behind a
//!   long queue).
//! * Each pool has its own thread, so a reset that hangs (a silent network) delays only its
//!   own key: its queue fills, and that key's releases reset inline.
//! * An idle thread ends after [`IDLE_EXIT`]; the next release starts a new one.
//! * `stop` (pool shutdown) lets the thread finish what is queued (the pool is shut by then,
//!   so each queued connection is closed, not reset) and waits for that at most [`STOP_WAIT`].
//!
//! The queue, whether a thread runs and whether it sleeps live under one small lock of their
//! own, never held while resetting and never taken under the pool's state lock.
//!
//! The resetter sees its pool only through the [`Resets`] trait, so this module does not
//! depend on the pool's type.

use std::collections::VecDeque;
use std::time::Duration;

use crate::clock::{Deadline, Instant};
use crate::sync::{lock, spawn, wait_timeout, Condvar, Mutex};

/// Most released connections queued behind the one being reset.
pub(crate) const MAX_QUEUED: usize = 2;

/// An idle resetter thread ends after this long.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// Whether an idle resetter thread should end now. Under the model checker (a virtual clock,
/// waits that never time out) the checker chooses, so the race of a thread ending with a
/// release starting a new one is explored on every schedule.
fn idle_over(idle_since: Instant) -> bool {
    #[cfg(pool_model)]
    {
        let _ = idle_since;
        crate::sync::choice()
    }
    #[cfg(not(pool_model))]
    {
        idle_since.elapsed() >= IDLE_EXIT
    }
}

/// Longest `stop` waits for the thread to finish what it holds.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// What the resetter needs from its pool.
pub(crate) trait Resets: Send + Sync {
    /// A released connection, counted as resetting.
    type Item: Send + 'static;
    /// Resets `item` and parks it, or closes it if the reset failed or the pool shut. Driver
    /// calls are guarded; if anything else panics, the implementation must still give the
    /// item's room back (the thread catches the panic and goes on).
    fn reset_released(&self, item: Self::Item);
    /// The pool's resetter.
    fn resetter(&self) -> &Resetter<Self::Item>;
}

struct Queue<I> {
    items: VecDeque<I>,
    /// A thread is running (it may be sleeping).
    running: bool,
    /// The thread waits on `wake` (a submit must notify it).
    sleeping: bool,
    stopped: bool,
}

/// An item `submit` did not queue, for the caller to reset itself.
pub(crate) struct Rejected<I> {
    pub(crate) item: I,
    /// No resetter thread could be started: to be logged once the item is settled.
    pub(crate) spawn_error: Option<std::io::Error>,
}

/// The handle a pool keeps on its resetter thread.
pub(crate) struct Resetter<I> {
    queue: Mutex<Queue<I>>,
    /// Wakes the thread (work or stop), and `stop` (the thread ended).
    wake: Condvar,
    ended: Condvar,
}

impl<I> Default for Resetter<I> {
    fn default() -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                running: false,
                sleeping: false,
                stopped: false,
            }),
            wake: Condvar::new(),
            ended: Condvar::new(),
        }
    }
}

impl<I: Send + 'static> Resetter<I> {
    /// Hands `item` to the pool's resetter thread, starting it if needed. `Err`: the queue is
    /// full, the pool is stopping, or no thread could be started; the caller then resets the
    /// item itself, and only then reports `Rejected::spawn_error` (the item's room is counted
    /// until its reset is settled, so nothing is logged before).
    pub(crate) fn submit(
        &self,
        pool: &'static dyn Resets<Item = I>,
        item: I,
    ) -> Result<(), Rejected<I>> {
        let mut queue = lock(&self.queue);
        if queue.stopped || queue.items.len() >= MAX_QUEUED {
            return Err(Rejected {
                item,
                spawn_error: None,
            });
        }
        if !queue.running {
            match spawn("pool-reset", move || run(pool)) {
                Ok(_detached) => queue.running = true,
                Err(error) => {
                    return Err(Rejected {
                        item,
                        spawn_error: Some(error),
                    })
                }
            }
        }
        queue.items.push_back(item);
        // The backlog bound: a release beyond it resets on its own thread instead.
        #[cfg(pool_model)]
        if queue.items.len() > MAX_QUEUED {
            crate::violations::report(format!("the resetter's queue grew past {MAX_QUEUED}"));
        }
        let sleeping = queue.sleeping;
        drop(queue);
        if sleeping {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Stops taking work; waits (at most `STOP_WAIT`) for the thread to finish what it holds.
    pub(crate) fn stop(&self) {
        let mut queue = lock(&self.queue);
        queue.stopped = true;
        self.wake.notify_one();
        let deadline = Deadline::after(STOP_WAIT);
        while queue.running {
            let left = deadline.left().unwrap_or(STOP_WAIT);
            if left.is_zero() {
                let queued = queue.items.len();
                drop(queue);
                crate::guard::log(|| {
                    tracing::warn!(
                        queued,
                        "a reset is still running after shutdown waited {STOP_WAIT:?}; it finishes on its own"
                    );
                });
                return;
            }
            queue = wait_timeout(&self.ended, &self.queue, queue, left);
        }
    }
}

/// The resetter thread's body: resets queued connections until it has been idle for
/// `IDLE_EXIT` or the pool stopped with nothing left.
fn run<I: Send + 'static>(pool: &'static dyn Resets<Item = I>) {
    let this = pool.resetter();
    // Whatever ends this thread, the next `submit` must see it gone and start another, or
    // the items it queues are never reset and their `resetting` room never comes back.
    let _running = Running(this);
    let mut queue = lock(&this.queue);
    let mut idle_since = Instant::now();
    loop {
        if let Some(item) = queue.items.pop_front() {
            drop(queue);
            // The reset is guarded (a panicking driver); so is the report of it, because a
            // logging layer may panic too, and this thread must outlive both.
            let reset = std::panic::AssertUnwindSafe(|| pool.reset_released(item));
            if std::panic::catch_unwind(reset).is_err() {
                crate::guard::log(|| {
                    tracing::error!("a connection's reset panicked on the resetter thread");
                });
            }
            queue = lock(&this.queue);
            idle_since = Instant::now();
            continue;
        }
        if queue.stopped || idle_over(idle_since) {
            queue.running = false;
            drop(queue);
            this.ended.notify_all();
            return;
        }
        queue.sleeping = true;
        queue = wait_timeout(&this.wake, &this.queue, queue, IDLE_EXIT);
        queue.sleeping = false;
    }
}

/// Marks the resetter thread gone when it ends by unwinding (its normal exit does so under
/// the queue lock itself), so the next `submit` starts a new one for what is still queued.
struct Running<'a, I>(&'a Resetter<I>);

impl<I> Drop for Running<'_, I> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.queue).running = false;
            self.0.ended.notify_all();
        }
    }
}
