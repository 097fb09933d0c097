//! The reaper: one background thread for the whole registry.
//!
//! Every pool's `reap_interval` it closes parked connections idle for longer than
//! `idle_timeout` and checks the others with `connected`, one at a time and outside every lock
//! (see `KeyPool::sweep`). A pool that finds a dead connection in `open` wakes it for an
//! immediate sweep, since a server restart kills every parked connection at once.
//!
//! The thread sleeps until the earliest pool is due, or until woken (new pool, new settings,
//! sweep request, stop). It holds no lock while sweeping; it takes the registry's read lock
//! only to copy the list of pools.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Tick;
use crate::sync::{recv_timeout, Receiver, RecvTimeoutError, SyncSender};
use crate::sync::{spawn, sync_channel, thread::JoinHandle, AtomicBool, Ordering};

/// Longest sleep when no pool exists yet.
const IDLE_SLEEP: Duration = Duration::from_secs(60);

/// When a pool's sweep panicked (a logging layer or other user code on this thread; driver
/// calls are guarded on their own): how soon to look at it again.
const AFTER_PANIC: Duration = Duration::from_secs(1);

/// What the reaper needs from a pool.
pub(crate) trait Reaped: Send + Sync {
    /// Sweeps if due (or asked to), and says how long until it is due again.
    fn reap(&'static self, now: Tick) -> Duration;
}

/// What pools keep to wake the reaper.
#[derive(Clone)]
pub(crate) struct ReaperWake(SyncSender<()>);

impl ReaperWake {
    /// Wakes the reaper; a wake already pending is enough.
    pub(crate) fn wake(&self) {
        let _ = self.0.try_send(());
    }
}

/// The running reaper thread.
pub(crate) struct Reaper {
    wake: ReaperWake,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts the reaper over the pools `pools` lists.
    pub(crate) fn start(pools: fn() -> Vec<&'static dyn Reaped>) -> Reaper {
        let (tx, rx) = sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = spawn("pool-reaper", move || run(pools, rx, stop_flag));
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::error!(%error, "could not start the reaper thread; idle connections will not be reaped");
                None
            }
        };
        Reaper {
            wake: ReaperWake(tx),
            stop,
            thread,
        }
    }

    pub(crate) fn wake_handle(&self) -> ReaperWake {
        self.wake.clone()
    }

    /// Stops the thread and waits for it (at most one sweep in progress).
    pub(crate) fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        self.wake.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One pool's `reap`, caught if it panics: this one thread serves every pool, and a sweep
/// settles each count before it logs, so a panic (a logging layer's, say) loses a log line,
/// never the thread or a connection's room. The report of the panic is caught too.
fn reap_guarded(pool: &'static dyn Reaped) -> Duration {
    let reap = std::panic::AssertUnwindSafe(|| pool.reap(Tick::now()));
    std::panic::catch_unwind(reap).unwrap_or_else(|_| {
        crate::guard::log(|| {
            tracing::error!("a pool's sweep panicked on the reaper thread; it goes on");
        });
        AFTER_PANIC
    })
}

fn run(pools: fn() -> Vec<&'static dyn Reaped>, wake: Receiver<()>, stop: Arc<AtomicBool>) {
    loop {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let mut sleep = IDLE_SLEEP;
        for pool in pools() {
            if stop.load(Ordering::Acquire) {
                return;
            }
            sleep = sleep.min(reap_guarded(pool));
        }
        #[cfg(pool_model)]
        passes::finished();
        match recv_timeout(&wake, sleep) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Under the model checker: how many passes over the pools the reaper finished, so a test can
/// wait for a sweep it caused (`pool_model::model::reaper_passes`).
#[cfg(pool_model)]
pub(crate) mod passes {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    crate::sync::process_global! {
        static PASSES: AtomicUsize = AtomicUsize::new(0);
    }

    pub(super) fn finished() {
        PASSES.fetch_add(1, SeqCst);
    }

    pub(crate) fn count() -> usize {
        PASSES.load(SeqCst)
    }
}
