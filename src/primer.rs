//! The primer: one background thread per pool that opens a connection whenever `open` takes
//! the last parked one, so the next caller does not pay for a connect.
//!
//! Each pool has its own primer thread, started on first need, so a slow or unreachable
//! database delays only its own key's priming. A failed connect is retried after a pause that
//! doubles from 50 ms up to `primer_backoff_max`, with jitter (so many pools restarting against
//! one server do not connect in lockstep); it never gives up until it has added its
//! connection (or the pool reached its limit, or shut down).
//!
//! The primer sees its pool only through the narrow [`Primed`] trait (one attempt, the backoff
//! bound), so this module does not depend on the pool's type. The thread, its wake channel and
//! whether it was stopped live under one small lock, so a `wake` racing `stop` either starts a
//! thread that `stop` then joins, or sees the primer stopped and starts nothing.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::guard;
use crate::sync::{lock, spawn, sync_channel, thread::JoinHandle, Mutex, Receiver};
use crate::sync::{recv_timeout, RecvTimeoutError, SyncSender, TrySendError};

/// First pause after a failed primer connect.
const BACKOFF_START: Duration = Duration::from_millis(50);

/// What one primer attempt achieved.
pub(crate) enum PrimeOutcome {
    /// A connection was parked (or handed to a waiter); `more`: the pool is still below
    /// `min_idle`, so the primer goes on at once.
    Done {
        /// Another one is wanted.
        more: bool,
    },
    /// Nothing to do: the pool is at its limit, or cannot park connections.
    NotNeeded,
    /// The connect failed; try again after a pause.
    Failed,
    /// The pool is shut down.
    Closed,
}

/// What the primer needs from its pool.
pub(crate) trait Primed: Send + Sync {
    /// Reserves room, connects, detaches and parks one connection.
    fn prime_once(&self) -> PrimeOutcome;
    /// The longest pause between failed attempts (a setting, read on every failure).
    fn backoff_max(&self) -> Duration;
    /// No primer thread can run (none could be started): the prime the pool counted as
    /// pending will never come, so the pool must stop counting it, or it would never ask
    /// again.
    fn prime_abandoned(&self);
}

#[derive(Default)]
struct Thread {
    wake: Option<SyncSender<()>>,
    handle: Option<JoinHandle<()>>,
    stopped: bool,
}

/// The handle a pool keeps on its primer thread.
#[derive(Default)]
pub(crate) struct Primer {
    thread: Mutex<Thread>,
}

impl Primer {
    /// Asks the primer to fill the pool's empty stack, starting its thread on first use. Never
    /// blocks on the primer's work: the wake is a non-blocking send on a one-slot channel (a
    /// wake already pending is enough).
    ///
    /// Every wake reaches a running thread, or the pool hears that none can run: the pool
    /// counts the prime as pending from the moment it asks, and only the primer (or
    /// [`Primed::prime_abandoned`]) clears that, so a wake that went nowhere would stop the
    /// pool from ever asking again. A thread that ended (it unwound: its receiver is gone) is
    /// replaced by a new one. Never unwinds (its one log line is caught): `open` calls it with
    /// its waiter already queued.
    pub(crate) fn wake(&self, pool: &'static dyn Primed) {
        let mut thread = lock(&self.thread);
        if thread.stopped {
            return;
        }
        for _attempt in 0..2 {
            if thread.wake.is_none() {
                let (tx, rx) = sync_channel(1);
                match spawn("pool-primer", move || run(pool, rx)) {
                    Ok(handle) => {
                        thread.handle = Some(handle);
                        thread.wake = Some(tx);
                    }
                    Err(error) => {
                        drop(thread);
                        pool.prime_abandoned();
                        guard::log(|| {
                            tracing::error!(%error, "could not start the primer thread; pool will connect on demand");
                        });
                        return;
                    }
                }
            }
            let sent = thread.wake.as_ref().map(|wake| wake.try_send(()));
            match sent {
                Some(Ok(()) | Err(TrySendError::Full(()))) => return,
                // The thread is gone (or going: it unwound). Its handle is dropped, not joined
                // (never a join under this lock), and a new thread takes the wake.
                Some(Err(TrySendError::Disconnected(()))) | None => {
                    thread.wake = None;
                    thread.handle = None;
                }
            }
        }
        // A fresh thread's receiver cannot be gone yet unless it died at once: give up here
        // rather than spin, and let the next wake try again.
        drop(thread);
        pool.prime_abandoned();
    }

    /// Stops the primer for good and waits for it to finish (at most one connect attempt,
    /// bounded by `connect_timeout`): dropping the sender wakes it, also out of a pause.
    pub(crate) fn stop(&self) {
        let handle = {
            let mut thread = lock(&self.thread);
            thread.stopped = true;
            thread.wake = None;
            thread.handle.take()
        };
        if let Some(handle) = handle {
            if handle.thread().id() != crate::sync::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// The primer thread's body. An attempt that panics (outside the guarded driver calls: a
/// logging layer, say) counts as failed, and is retried after the pause: the attempt gave its
/// reserved room back as it unwound, and the prime is still pending, so this thread must go on.
fn run(pool: &'static dyn Primed, wake: Receiver<()>) {
    let mut jitter = Jitter::seeded();
    while wake.recv().is_ok() {
        let mut pause = BACKOFF_START;
        loop {
            let outcome = catch_unwind(AssertUnwindSafe(|| pool.prime_once()))
                .unwrap_or(PrimeOutcome::Failed);
            match outcome {
                PrimeOutcome::Closed => return,
                PrimeOutcome::Done { more: true } => pause = BACKOFF_START,
                PrimeOutcome::Done { more: false } | PrimeOutcome::NotNeeded => break,
                PrimeOutcome::Failed => {
                    let sleep = jitter.spread(pause);
                    guard::log(|| {
                        tracing::warn!(retry_in = ?sleep, "primer could not connect; backing off");
                    });
                    match recv_timeout(&wake, sleep) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    pause = (pause * 2).min(pool.backoff_max().max(BACKOFF_START));
                }
            }
        }
    }
}

/// A tiny xorshift generator: jitter needs spread, not cryptographic quality.
struct Jitter(u64);

impl Jitter {
    #[cfg(not(pool_model))]
    fn seeded() -> Self {
        use crate::clock::Tick;
        let here = &0u8 as *const u8 as u64;
        Jitter((Tick::now().since(Tick::default()).as_nanos() as u64 ^ here.rotate_left(17)) | 1)
    }

    /// Under the model checker the seed is the schedule's, so a replayed schedule pauses for
    /// the same times (an address would change from run to run).
    #[cfg(pool_model)]
    fn seeded() -> Self {
        use rand::RngCore;
        Jitter(shuttle::rand::thread_rng().next_u64() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A pause between half of `pause` and all of it.
    fn spread(&mut self, pause: Duration) -> Duration {
        let half = pause / 2;
        let nanos = half.as_nanos() as u64;
        half + Duration::from_nanos(if nanos == 0 { 0 } else { self.next() % nanos })
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use super::*;

    /// Jitter exists so pools restarting together do not retry in lockstep: the pauses of
    /// one generator, and of two generators seeded a moment apart, must differ.
    #[test]
    fn jitter_spreads_the_pauses() {
        let pause = Duration::from_millis(100);
        let mut one = Jitter::seeded();
        let draws: Vec<Duration> = (0..1000).map(|_| one.spread(pause)).collect();
        let distinct: std::collections::BTreeSet<_> = draws.iter().collect();
        assert!(
            distinct.len() > 900,
            "{} distinct pauses of 1000",
            distinct.len()
        );
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(60))
            .count();
        let high = draws
            .iter()
            .filter(|d| **d > Duration::from_millis(90))
            .count();
        assert!(low > 100 && high > 100, "{low} low, {high} high of 1000");
        std::thread::sleep(Duration::from_millis(5));
        let mut other = Jitter::seeded();
        let theirs: Vec<Duration> = (0..10).map(|_| other.spread(pause)).collect();
        assert_ne!(theirs, draws[..10], "two generators paused alike");
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        let mut j = Jitter::seeded();
        for _ in 0..1000 {
            let d = j.spread(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
    }
}
