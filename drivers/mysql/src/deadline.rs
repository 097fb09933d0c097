//! Statement deadlines: a statement that runs past its deadline is killed on the server
//! (`KILL QUERY`), and the caller is back within the deadline plus a short grace, whatever the
//! server does.
//!
//! The `mysql` crate is synchronous: while a statement runs, the caller's thread is blocked in a
//! socket read inside the crate, so something else must act at the deadline. That is one
//! watchdog thread for the whole process (`pool-mysql-deadline`), started by the first armed
//! deadline and gone again after [`IDLE_EXIT`] with nothing armed, so an idle process keeps no
//! thread of ours. Armed deadlines sit in a `BTreeMap` keyed by `(deadline, id)`: arming and
//! disarming (once per statement) are O(log n) under one short lock, and a disarmed deadline
//! leaves nothing behind.
//!
//! # The protocol
//!
//! Each armed statement is a [`Job`] whose state, under its own mutex, goes
//! `Armed → Killing → Done`, or `Armed → Disarmed`:
//!
//! 1. **Arm** before the statement is sent; **disarm** once its answer is read. A disarm that
//!    finds `Armed` wins: the watchdog skips the job, and the statement's result is returned as
//!    it is (it finished before any kill was issued).
//! 2. **At the deadline** the watchdog moves the job to `Killing` and hands it to a short-lived
//!    thread (`pool-mysql-kill`), so a slow kill never delays another connection's deadline.
//!    That thread opens a side connection to the same server with the session's own options
//!    (same account, same TLS as the session got), the connect bounded by what is left of the
//!    grace (itself at most the connect timeout), runs `KILL QUERY <connection id>`, and marks
//!    the job `Done`. The watchdog's lock is never held while connecting or killing.
//! 3. **The caller** that finds `Killing` waits (condvar) for `Done`: at most
//!    [`KILL_AFTER_ANSWER`] once its statement has answered, never past the grace. A kill not
//!    done by then fails the session (closed, as below).
//!    Once the kill was issued the statement's result is never returned: the caller gets
//!    `StatementTimeout` (a killed `SELECT SLEEP(10)` answers `1` on MariaDB, not an error).
//! 4. **The probe.** A `KILL QUERY` that reaches a session after its statement ended must not
//!    hit the next statement. So after the kill returned (the server has set the session's kill
//!    flag by then), the caller runs `DO 0` on its own session within the remaining grace:
//!    either the probe absorbs a pending kill (it fails with 1317, `ER_QUERY_INTERRUPTED`) or
//!    there was none; once its answer is read, no kill of ours is left on the session.
//!
//!    Measured on MariaDB 10.11 (`tests/statement_deadline.rs`,
//!    `a_kill_on_an_idle_session_hits_the_next_statement`): a `KILL QUERY` that finds the
//!    session *idle* is dropped: the server clears the kill flag as the next command starts,
//!    and that statement runs normally. So on MariaDB the probe normally just succeeds; it is
//!    kept because the driver does not rely on that (MySQL 5.x kept such a kill for the next
//!    statement), and it costs one round trip only after a kill.
//!
//!    Also observed on MariaDB 10.11: when several sessions running `SLEEP()` are killed at
//!    the same moment, some `KILL QUERY` statements take about a second to return (the killed
//!    session answers at once, but the `KILL` itself is slow: after setting the kill flag,
//!    the server's `THD::awake` broadcasts to the victim and then retries `trylock` on the
//!    mutex the victim waited on, sleeping 50 ms between tries for up to 2 s, and every
//!    `SLEEP()` waits on one shared mutex). The caller does not wait for such a kill: past
//!    [`KILL_AFTER_ANSWER`] its session is closed, which is safe and costs a new connection,
//!    where waiting held the connection (and the caller) for a second. Lock waits and running
//!    statements are killed at once.
//!
//! Any failure (the side connection could not be made, `KILL` failed, the grace ran out while
//! killing, the probe failed or was late) marks the connection broken: the pool closes it, and a
//! kill still in flight then finds no statement of ours to hit.
//!
//! The caller's own wait is bounded independently of all this: during a bounded statement the
//! session socket's read and write timeouts are the deadline plus [`ANSWER_PATIENCE`] (or the
//! grace, or the user's own `read_timeout`/`write_timeout`, if smaller), so a silent server
//! (stopped, or a blackholed network) or a stuck kill cannot hold the caller longer even if the
//! watchdog could not run. So a caller is back by its deadline plus about a quarter second at
//! worst (the answer's patience, then [`KILL_AFTER_ANSWER`]), and within milliseconds of it
//! when the kill works.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use pool_driver::ConnArgs;

use crate::error::{self, Phase};
use crate::opts::ConnectPlan;
use crate::socket;

/// The longest a caller waits, past its deadline, for the kill and the probe (capped by the
/// connection's connect timeout), as PostgreSQL's driver does for its cancel.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(1);

/// How long a caller whose statement has answered waits for a kill still under way before it
/// gives up on the session (closed, not reused). The answer means the server is done with the
/// statement; a `KILL` that has not returned by then is most often stuck in MariaDB's wake-up
/// retries (see the module docs), which can take a second or two, and holding the connection
/// (and the caller) for that long costs more than a new connection.
pub(crate) const KILL_AFTER_ANSWER: Duration = Duration::from_millis(100);

/// How long past its deadline a statement's answer is waited for (each socket read of a
/// statement under a deadline times out this long after the deadline, if the grace is not
/// shorter). A kill that works is answered within milliseconds: the victim sees the kill flag
/// as soon as it is set. One stuck in MariaDB's wake-up retries can hold the victim's answer
/// back as long as it holds the `KILL` (up to two seconds): the session is then given up.
pub(crate) const ANSWER_PATIENCE: Duration = Duration::from_millis(150);

/// How long the watchdog thread stays with nothing armed before it exits.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The watchdog thread's name (threads tests look for it).
const WATCHDOG_THREAD: &str = "pool-mysql-deadline";
/// The name of the short-lived threads that run one kill each.
const KILL_THREAD: &str = "pool-mysql-kill";

/// Locks `mutex`, taking over a poisoned one: every state here stays consistent across a
/// panic (single assignments), and a panic elsewhere must not take the deadlines down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whatever can cancel a statement on the server: the side connection in the driver, a fake in
/// the unit tests.
pub(crate) trait Killer: Send + Sync + 'static {
    /// Cancels the statement running on session `connection_id`, giving up at `until`.
    /// `true`: the server confirmed the kill.
    fn kill(&self, connection_id: u32, until: Instant) -> bool;
}

/// What a side connection to a session's server needs: the session's connect plan (same
/// account, same address, same TLS checks) and whether the session got TLS (an
/// `ssl-mode=PREFERRED` session may have fallen back to plain, and its kill goes the same way).
pub(crate) struct KillTarget {
    plan: ConnectPlan,
    encrypted: bool,
    /// Only to scrub secrets from the messages of a failed kill.
    args: ConnArgs,
}

impl KillTarget {
    pub(crate) fn new(plan: ConnectPlan, encrypted: bool, args: ConnArgs) -> Self {
        KillTarget {
            plan,
            encrypted,
            args,
        }
    }
}

impl Killer for KillTarget {
    fn kill(&self, connection_id: u32, until: Instant) -> bool {
        let left = || until.saturating_duration_since(Instant::now());
        let bound = left().min(self.plan.bound);
        if bound.is_zero() {
            tracing::warn!(
                connection_id,
                "mysql: no time left to kill a statement past its deadline"
            );
            return false;
        }
        let mut side = match mysql::Conn::new(self.plan.opts(self.encrypted, bound)) {
            Ok(side) => side,
            Err(e) => {
                let e = error::map(&e, Phase::Connect, None, &self.args, "connecting");
                tracing::warn!(
                    connection_id,
                    error = %e,
                    "mysql: could not connect to kill a statement past its deadline"
                );
                return false;
            }
        };
        let killed = socket::set_bound(&side, left().max(Duration::from_millis(1)))
            .map_err(mysql::Error::from)
            .and_then(|()| side.query_drop(format!("KILL QUERY {connection_id}")));
        match killed {
            Ok(()) => {
                tracing::debug!(
                    connection_id,
                    "mysql: killed a statement past its deadline (KILL QUERY)"
                );
                true
            }
            Err(e) => {
                let e = error::map(&e, Phase::Session, None, &self.args, "KILL QUERY");
                tracing::warn!(
                    connection_id,
                    error = %e,
                    "mysql: could not kill a statement past its deadline"
                );
                false
            }
        }
    }
}

/// How far one armed statement's deadline got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    /// Waiting for its deadline.
    Armed,
    /// The caller disarmed it first: no kill.
    Disarmed,
    /// The deadline passed; the kill is under way.
    Killing,
    /// The kill ended: `true` if the server confirmed it.
    Done(bool),
}

/// One armed statement.
struct Job {
    state: Mutex<JobState>,
    /// Signalled when the state becomes `Done`.
    done: Condvar,
    connection_id: u32,
    /// When the kill must have ended: the deadline plus the grace.
    until: Instant,
    killer: Arc<dyn Killer>,
}

impl Job {
    /// The deadline passed: issue the kill unless the caller disarmed first.
    fn fire(self: Arc<Self>) {
        {
            let mut state = lock(&self.state);
            if *state != JobState::Armed {
                return;
            }
            *state = JobState::Killing;
        }
        let job = Arc::clone(&self);
        let spawned = thread::Builder::new()
            .name(KILL_THREAD.into())
            .spawn(move || job.kill());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "mysql: cannot start a kill thread; killing inline");
            self.kill();
        }
    }

    fn kill(&self) {
        let killed = self.killer.kill(self.connection_id, self.until);
        *lock(&self.state) = JobState::Done(killed);
        self.done.notify_all();
    }
}

/// How an armed statement's deadline ended, as its caller sees it on disarming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    /// Disarmed before the deadline fired: no kill was issued.
    No,
    /// The server confirmed the kill.
    Killed,
    /// The kill failed, or did not end within the grace: the session must be closed.
    Failed,
}

/// The watchdog's armed deadlines.
struct Armed {
    jobs: BTreeMap<(Instant, u64), Arc<Job>>,
    /// Whether the watchdog thread runs (it clears this under the lock as it exits).
    running: bool,
    /// Since when nothing was armed (`None`: something was, since the watchdog last looked).
    /// Every arm clears it, so a deadline armed and disarmed while the watchdog slept keeps
    /// it alive as well.
    idle_since: Option<Instant>,
}

/// The process's deadline watchdog (see the module docs).
pub(crate) struct Watchdog {
    armed: Mutex<Armed>,
    /// Wakes the watchdog when a deadline earlier than all others is armed.
    wake: Condvar,
    next_id: AtomicU64,
    idle_exit: Duration,
}

/// The one watchdog of the process.
static WATCHDOG: Watchdog = Watchdog::new(IDLE_EXIT);

/// Arms a deadline on the process's watchdog (see [`Watchdog::arm`]).
pub(crate) fn arm(
    deadline: Instant,
    grace: Duration,
    connection_id: u32,
    killer: Arc<dyn Killer>,
) -> Deadline {
    WATCHDOG.arm(deadline, grace, connection_id, killer)
}

impl Watchdog {
    pub(crate) const fn new(idle_exit: Duration) -> Self {
        Watchdog {
            armed: Mutex::new(Armed {
                jobs: BTreeMap::new(),
                running: false,
                idle_since: None,
            }),
            wake: Condvar::new(),
            next_id: AtomicU64::new(0),
            idle_exit,
        }
    }

    /// Arms a kill of session `connection_id`'s statement at `deadline`, to be done by
    /// `deadline + grace`; starts the watchdog thread if it does not run. If the thread cannot
    /// be started the deadline is still armed (a later arm retries); the statement is then
    /// bounded by its socket timeout alone.
    pub(crate) fn arm(
        &'static self,
        deadline: Instant,
        grace: Duration,
        connection_id: u32,
        killer: Arc<dyn Killer>,
    ) -> Deadline {
        let key = (deadline, self.next_id.fetch_add(1, Ordering::Relaxed));
        let job = Arc::new(Job {
            state: Mutex::new(JobState::Armed),
            done: Condvar::new(),
            connection_id,
            until: deadline + grace,
            killer,
        });
        let mut armed = lock(&self.armed);
        let first = armed.jobs.first_key_value().is_none_or(|(k, _)| key < *k);
        armed.jobs.insert(key, Arc::clone(&job));
        armed.idle_since = None;
        if !armed.running {
            match thread::Builder::new()
                .name(WATCHDOG_THREAD.into())
                .spawn(move || self.watch())
            {
                Ok(_) => armed.running = true,
                Err(e) => tracing::warn!(
                    error = %e,
                    "mysql: cannot start the statement deadline thread; statements are bounded \
                     by their socket timeout only"
                ),
            }
        } else if first {
            self.wake.notify_one();
        }
        drop(armed);
        Deadline {
            watchdog: self,
            key,
            job: Some(job),
        }
    }

    /// The watchdog thread: fires due jobs, sleeps until the next deadline, exits after
    /// `idle_exit` with nothing armed.
    fn watch(&self) {
        let mut due = Vec::new();
        let mut armed = lock(&self.armed);
        loop {
            let now = Instant::now();
            while let Some(entry) = armed.jobs.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            if !due.is_empty() {
                drop(armed);
                for job in due.drain(..) {
                    job.fire();
                }
                armed = lock(&self.armed);
                continue;
            }
            let wait = match armed.jobs.first_key_value() {
                Some(((at, _), _)) => at.saturating_duration_since(now),
                None => {
                    let since = *armed.idle_since.get_or_insert(now);
                    let idle = now.saturating_duration_since(since);
                    if idle >= self.idle_exit {
                        armed.running = false;
                        return;
                    }
                    self.idle_exit - idle
                }
            };
            armed = self
                .wake
                .wait_timeout(armed, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    #[cfg(test)]
    fn armed_count(&self) -> usize {
        lock(&self.armed).jobs.len()
    }

    #[cfg(test)]
    fn is_running(&self) -> bool {
        lock(&self.armed).running
    }
}

/// An armed deadline, held by the caller while its statement runs. Dropping it disarms it
/// without waiting (a panic in the statement).
pub(crate) struct Deadline {
    watchdog: &'static Watchdog,
    key: (Instant, u64),
    job: Option<Arc<Job>>,
}

impl Deadline {
    /// The statement's answer is in: disarm. If the kill was already issued, waits for it
    /// (at most [`KILL_AFTER_ANSWER`], and never past the deadline plus the grace) and says
    /// how it went.
    pub(crate) fn disarm(mut self) -> Fired {
        let Some(job) = self.job.take() else {
            return Fired::No;
        };
        let mut state = lock(&job.state);
        if *state == JobState::Armed {
            *state = JobState::Disarmed;
            drop(state);
            lock(&self.watchdog.armed).jobs.remove(&self.key);
            return Fired::No;
        }
        let until = job.until.min(Instant::now() + KILL_AFTER_ANSWER);
        while *state == JobState::Killing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Fired::Failed;
            }
            state = job
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        match *state {
            JobState::Done(true) => Fired::Killed,
            JobState::Disarmed => Fired::No,
            _ => Fired::Failed,
        }
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let mut state = lock(&job.state);
            if *state == JobState::Armed {
                *state = JobState::Disarmed;
                drop(state);
                lock(&self.watchdog.armed).jobs.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts kills; each takes `takes` and answers `answer`.
    struct Fake {
        kills: AtomicUsize,
        takes: Duration,
        answer: bool,
    }

    impl Killer for Fake {
        fn kill(&self, _connection_id: u32, _until: Instant) -> bool {
            self.kills.fetch_add(1, Ordering::SeqCst);
            thread::sleep(self.takes);
            self.answer
        }
    }

    fn fake(takes: Duration, answer: bool) -> Arc<Fake> {
        Arc::new(Fake {
            kills: AtomicUsize::new(0),
            takes,
            answer,
        })
    }

    fn watchdog(idle_exit: Duration) -> &'static Watchdog {
        Box::leak(Box::new(Watchdog::new(idle_exit)))
    }

    const GRACE: Duration = Duration::from_millis(300);

    #[test]
    fn a_disarm_before_the_deadline_leaves_nothing_and_kills_nothing() {
        let dog = watchdog(IDLE_EXIT);
        let killer = fake(Duration::ZERO, true);
        for _ in 0..1000 {
            let armed = dog.arm(
                Instant::now() + Duration::from_secs(5),
                GRACE,
                7,
                killer.clone(),
            );
            assert_eq!(armed.disarm(), Fired::No);
        }
        // Dropped without disarming: removed too.
        drop(dog.arm(
            Instant::now() + Duration::from_secs(5),
            GRACE,
            7,
            killer.clone(),
        ));
        assert_eq!(dog.armed_count(), 0, "nothing accumulates");
        assert_eq!(killer.kills.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_deadline_that_passes_is_killed_and_the_caller_waits_for_it() {
        let dog = watchdog(IDLE_EXIT);
        let killer = fake(Duration::from_millis(30), true);
        let armed = dog.arm(
            Instant::now() + Duration::from_millis(20),
            GRACE,
            7,
            killer.clone(),
        );
        // The statement "runs" past its deadline, then its answer comes in while the kill is
        // under way: the caller waits for the kill's end.
        thread::sleep(Duration::from_millis(30));
        assert_eq!(armed.disarm(), Fired::Killed);
        assert_eq!(killer.kills.load(Ordering::SeqCst), 1);
        assert_eq!(dog.armed_count(), 0);
    }

    #[test]
    fn a_failed_or_late_kill_is_reported_within_the_grace() {
        let dog = watchdog(IDLE_EXIT);
        let failing = fake(Duration::ZERO, false);
        let armed = dog.arm(Instant::now(), GRACE, 7, failing);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(armed.disarm(), Fired::Failed);

        // A kill that outlasts the statement's answer is given up on soon after it: the
        // caller does not sit out the grace (it used to: a second with MariaDB's SLEEP).
        let slow = fake(Duration::from_secs(2), true);
        let started = Instant::now();
        let armed = dog.arm(started, Duration::from_secs(1), 7, slow);
        thread::sleep(Duration::from_millis(20));
        let answered = Instant::now();
        assert_eq!(armed.disarm(), Fired::Failed);
        let waited = answered.elapsed();
        assert!(
            waited >= KILL_AFTER_ANSWER && waited < KILL_AFTER_ANSWER + Duration::from_millis(150),
            "{waited:?}"
        );

        // Never past the grace, either.
        let slow = fake(Duration::from_secs(2), true);
        let started = Instant::now();
        let armed = dog.arm(started, Duration::from_millis(50), 7, slow);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(armed.disarm(), Fired::Failed);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(50 + 100), "{took:?}");
    }

    #[test]
    fn deadlines_fire_in_order_whatever_order_they_were_armed_in() {
        let dog = watchdog(IDLE_EXIT);
        let killer = fake(Duration::ZERO, true);
        let now = Instant::now();
        let late = dog.arm(now + Duration::from_secs(5), GRACE, 1, killer.clone());
        // Armed after, due first: it must wake the sleeping watchdog.
        let early = dog.arm(now + Duration::from_millis(30), GRACE, 2, killer.clone());
        thread::sleep(Duration::from_millis(100));
        assert_eq!(killer.kills.load(Ordering::SeqCst), 1);
        assert_eq!(early.disarm(), Fired::Killed);
        assert_eq!(late.disarm(), Fired::No);
    }

    #[test]
    fn the_thread_exits_when_idle_and_comes_back_when_needed() {
        let dog = watchdog(Duration::from_millis(50));
        let killer = fake(Duration::ZERO, true);
        let armed = dog.arm(
            Instant::now() + Duration::from_secs(5),
            GRACE,
            7,
            killer.clone(),
        );
        assert!(dog.is_running());
        assert_eq!(armed.disarm(), Fired::No);
        let started = Instant::now();
        while dog.is_running() {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the thread stays"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let armed = dog.arm(Instant::now(), GRACE, 7, killer.clone());
        assert!(dog.is_running());
        thread::sleep(Duration::from_millis(20));
        assert_eq!(armed.disarm(), Fired::Killed);
    }
}
