//! Owns one running server process and its directory: stop, kill, liveness, final cleanup.
//!
//! State sits behind a mutex so the shared instances (reachable only as `&'static`) can be shut
//! down from the `atexit` handler.

use std::process::Child;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;
use crate::process;
use crate::workdir::WorkDir;

/// How long a clean shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct State {
    child: Option<Child>,
    workdir: Option<WorkDir>,
}

#[derive(Debug)]
pub(crate) struct Supervisor {
    state: Mutex<State>,
    /// The signal that asks the server for a clean, quick shutdown.
    stop_signal: libc::c_int,
}

impl Supervisor {
    pub(crate) fn new(workdir: WorkDir, stop_signal: libc::c_int) -> Supervisor {
        Supervisor {
            state: Mutex::new(State {
                child: None,
                workdir: Some(workdir),
            }),
            stop_signal,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes ownership of a freshly spawned server process.
    pub(crate) fn adopt(&self, child: Child) {
        let mut st = self.lock();
        if let Some(mut old) = st.child.take() {
            process::kill_tree(&mut old);
        }
        st.child = Some(child);
    }

    /// `Some(description)` if the server process has exited (it is reaped), `None` if it runs.
    pub(crate) fn exited(&self) -> Option<String> {
        let mut st = self.lock();
        let outcome = match st.child.as_mut()?.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => format!("the server exited with {status}"),
            Err(e) => format!("waiting for the server failed: {e}"),
        };
        st.child = None;
        Some(outcome)
    }

    /// Polls `ready` every `interval` until it answers yes (`Ok`), the server process exits,
    /// or `timeout` passes; the last two become `start_failed(what happened)`, which adds the
    /// server's log. An error from `ready` itself (a probe that could not run) is returned as is.
    pub(crate) fn wait_ready(
        &self,
        port: u16,
        timeout: Duration,
        interval: Duration,
        mut ready: impl FnMut() -> Result<bool, ServerError>,
        start_failed: impl Fn(String) -> ServerError,
    ) -> Result<(), ServerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(what) = self.exited() {
                return Err(start_failed(what));
            }
            if ready()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(start_failed(format!(
                    "not ready after {timeout:?} on port {port}"
                )));
            }
            thread::sleep(interval);
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        let mut st = self.lock();
        match st.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                st.child = None;
                false
            }
            None => false,
        }
    }

    /// Clean shutdown with the stop signal; SIGKILL if it takes longer than [`STOP_TIMEOUT`].
    pub(crate) fn stop(&self) -> Result<(), ServerError> {
        let mut st = self.lock();
        Self::stop_locked(&mut st, self.stop_signal);
        Ok(())
    }

    fn stop_locked(st: &mut State, stop_signal: libc::c_int) {
        if let Some(mut child) = st.child.take() {
            if let Ok(None) = child.try_wait() {
                process::signal(child.id(), stop_signal);
                if !process::wait_exit(&mut child, STOP_TIMEOUT) {
                    process::kill_tree(&mut child);
                }
            }
        }
    }

    /// SIGKILL to the server and its children; keeps the data.
    pub(crate) fn kill(&self) -> Result<(), ServerError> {
        let mut st = self.lock();
        if let Some(mut child) = st.child.take() {
            process::kill_tree(&mut child);
        }
        Ok(())
    }

    /// Stops the server and removes its directory. Used by `Drop`.
    pub(crate) fn dispose(&self) {
        let mut st = self.lock();
        Self::stop_locked(&mut st, self.stop_signal);
        st.workdir = None;
    }

    /// Like [`Supervisor::dispose`], but gives up after a few seconds if another thread holds the
    /// lock: at process exit a stuck thread must not hang the exit. The server then still gets
    /// its parent-death signal.
    pub(crate) fn dispose_at_exit(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.state.try_lock() {
                Ok(mut st) => {
                    Self::stop_locked(&mut st, self.stop_signal);
                    st.workdir = None;
                    return;
                }
                Err(TryLockError::Poisoned(p)) => {
                    let mut st = p.into_inner();
                    Self::stop_locked(&mut st, self.stop_signal);
                    st.workdir = None;
                    return;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(TryLockError::WouldBlock) => return,
            }
        }
    }
}
