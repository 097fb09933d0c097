//! Closing dead connections off the caller's thread.
//!
//! Closing a healthy connection is quick (a goodbye message, a socket close). Closing one that
//! died mid-request may not be: a client library may wait for the answer to the request that
//! timed out before it lets go, for as long as the network stays silent (the `postgres` crate
//! does). So a connection found dead or broken is handed to its pool's closer thread
//! (`pool-closer`, one per key, started on first need) and the caller, or the reaper, goes on
//! at once. Keys never wait on each other's closes.
//!
//! The room the connection held under `max_open` stays counted (as closing) until its close
//! finished, so the server never sees more than `max_open` sessions, but at most `GRACE`: the
//! closer drops each connection on a helper thread (`pool-close`) and waits that long for it.
//! A close still stuck then is left to end on its own (when the peer answers or the socket
//! dies) and its room is freed anyway: a silent peer must not wedge the pool.
//!
//! `stop` (shutdown) lets the closer finish what it holds, waiting at most `STOP_WAIT`.

use std::any::Any;
use std::time::Duration;

use crate::guard;
use crate::sync::thread::JoinHandle;
use crate::sync::{channel, lock, spawn, sync_channel, Mutex, Receiver, Sender, SyncSender};

/// Longest a dead connection's close keeps its room counted.
const GRACE: Duration = Duration::from_secs(1);
/// Longest `stop` waits for the closer to finish.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// A dead connection, and what to do once it is gone (free its room).
type Dead = (Box<dyn Any + Send>, Box<dyn FnOnce() + Send>);

#[derive(Default)]
struct Thread {
    send: Option<Sender<Dead>>,
    done: Option<Receiver<()>>,
    handle: Option<JoinHandle<()>>,
    stopped: bool,
}

/// A pool's closer thread.
#[derive(Default)]
pub(crate) struct Closer {
    thread: Mutex<Thread>,
}

impl Closer {
    /// Closes `dead` on the closer thread (starting it if needed), then calls `closed`; does
    /// both here if the closer is stopped or cannot start.
    pub(crate) fn close<T: Send + 'static>(&self, dead: T, closed: impl FnOnce() + Send + 'static) {
        let dead: Dead = (Box::new(dead), Box::new(closed));
        let mut thread = lock(&self.thread);
        if !thread.stopped && thread.send.is_none() {
            let (send, receive) = channel::<Dead>();
            let (finished, done) = sync_channel(1);
            match spawn("pool-closer", move || run(receive, finished)) {
                Ok(handle) => {
                    thread.send = Some(send);
                    thread.done = Some(done);
                    thread.handle = Some(handle);
                }
                Err(error) => {
                    tracing::error!(%error, "could not start the closer thread; closing in place");
                }
            }
        }
        let dead = match &thread.send {
            Some(send) => match send.send(dead) {
                Ok(()) => return,
                Err(returned) => returned.0,
            },
            None => dead,
        };
        drop(thread);
        close_one(dead);
    }

    /// Stops the closer after it closed what it holds, waiting at most `STOP_WAIT`.
    pub(crate) fn stop(&self) {
        let (done, handle) = {
            let mut thread = lock(&self.thread);
            thread.stopped = true;
            thread.send = None;
            (thread.done.take(), thread.handle.take())
        };
        let (Some(done), Some(handle)) = (done, handle) else {
            return;
        };
        if done.recv_timeout(STOP_WAIT).is_ok() {
            let _ = handle.join();
        } else {
            tracing::warn!(
                "dead connections are still closing after {STOP_WAIT:?} (their network is \
                 silent); leaving them to finish on their own"
            );
        }
    }
}

fn run(dead: Receiver<Dead>, finished: SyncSender<()>) {
    for one in dead {
        close_one(one);
    }
    let _ = finished.send(());
}

/// Drops one dead connection on a helper thread, waits up to `GRACE`, then runs its `closed`.
fn close_one((connection, closed): Dead) {
    let (finished, done) = sync_channel::<()>(1);
    let helper = spawn("pool-close", move || {
        guard::close(connection);
        let _ = finished.send(());
    });
    match helper {
        Ok(helper) => {
            if done.recv_timeout(GRACE).is_ok() {
                let _ = helper.join();
            } else {
                tracing::warn!(
                    "closing a dead connection takes longer than {GRACE:?} (its network is \
                     silent); freeing its room, the close goes on in the background"
                );
            }
        }
        Err(error) => {
            tracing::error!(%error, "could not start a thread to close a dead connection");
        }
    }
    closed();
}
