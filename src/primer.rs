//! The primer: one background thread per pool that opens a connection whenever `open` takes
//! the last parked one, so the next caller does not pay for a connect.
//!
//! Each pool has its own primer thread, started on first need, so a slow or unreachable
//! database delays only its own key's priming. A failed connect is retried after a pause that
//! doubles from 50 ms up to `primer_backoff_max`, with jitter (so many pools restarting against
//! one server do not connect in lockstep); it never gives up until it has added its
//! connection (or the pool reached its limit, or shut down).
//!
//! The thread wakes on a channel: `wake` from `open` or the
//! reaper, and `stop` at shutdown (which also cuts a backoff pause short).

use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::clock::Tick;
use crate::key_pool::{KeyPool, PrimeOutcome};
use crate::sync::{lock, Mutex};
use crate::Driver;

/// First pause after a failed primer connect.
const BACKOFF_START: Duration = Duration::from_millis(50);

/// The handle a pool keeps on its primer thread.
#[derive(Default)]
pub(crate) struct Primer {
    wake: OnceLock<Sender<()>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Primer {
    /// Asks the primer to fill the pool's empty stack, starting its thread on first use.
    pub(crate) fn wake<D: Driver>(&self, pool: &'static KeyPool<D>) {
        let sender = self.wake.get_or_init(|| {
            let (tx, rx) = bounded(1);
            let spawned = std::thread::Builder::new()
                .name("pool-primer".into())
                .spawn(move || run(pool, rx));
            match spawned {
                Ok(handle) => *lock(&self.thread) = Some(handle),
                Err(error) => tracing::error!(%error, "could not start the primer thread; pool will connect on demand"),
            }
            tx
        });
        match sender.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// Wakes the primer so it sees its pool closed, and waits for it to finish (at most one
    /// connect attempt, bounded by `connect_timeout`).
    pub(crate) fn stop(&self) {
        if let Some(sender) = self.wake.get() {
            let _ = sender.try_send(());
        }
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

/// The primer thread's body.
fn run<D: Driver>(pool: &'static KeyPool<D>, wake: Receiver<()>) {
    let mut jitter = Jitter::seeded();
    while wake.recv().is_ok() {
        let mut pause = BACKOFF_START;
        loop {
            let outcome = pool.prime_once();
            let backoff_max = pool.primer_backoff_max();
            match outcome {
                PrimeOutcome::Closed => return,
                PrimeOutcome::Done | PrimeOutcome::NotNeeded => break,
                PrimeOutcome::Failed => {
                    let sleep = jitter.spread(pause);
                    tracing::warn!(retry_in = ?sleep, "primer could not connect; backing off");
                    match wake.recv_timeout(sleep) {
                        Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    pause = (pause * 2).min(backoff_max.max(BACKOFF_START));
                }
            }
        }
    }
}

/// A tiny xorshift generator: jitter needs spread, not cryptographic quality.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let here = &0u8 as *const u8 as u64;
        Jitter((Tick::now().since(Tick::default()).as_nanos() as u64 ^ here.rotate_left(17)) | 1)
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

#[cfg(test)]
mod tests {
    use super::*;

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
