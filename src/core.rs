//! The concurrent core of one pool: the LIFO stack, the counts, the waiter queue and the
//! decisions `open`, `release`, the primer and the reaper make on them.
//!
//! Everything here runs with the pool's state lock held, so none of it does I/O, calls a
//! driver, or calls user code: methods decide, the caller acts outside the lock. That keeps the
//! core small enough to model-check (its primitives come from `crate::sync`).
//!
//! Invariant: `idle.len() + in_use + opening + checking <= max_open`, where `opening` counts
//! connects in flight (callers, granted waiters and the primer) and `checking` counts parked
//! connections the reaper has taken out to check. Every path that reserves room increments one
//! of these under the lock before it connects, so no path ever over-allocates. `in_use` also
//! counts the connection parked in the pool's fast slot (`crate::fast_slot`), which lives
//! outside this state: it comes back through `release` or `discard` like any leased one.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Tick;
use crate::lease::LeaseRecord;
use crate::settings::Settings;
use crate::waiter::{Grant, Waiter};

/// A parked connection with its timestamps.
pub(crate) struct Idle<E> {
    pub(crate) item: E,
    /// When it was last released by a user: what idle expiry measures.
    pub(crate) parked_at: Tick,
    /// When it was last known alive (released, or checked by the reaper): what validation measures.
    pub(crate) alive_at: Tick,
    /// Its slot in the lease table, kept for the connection's whole life.
    lease: LeaseId,
}

/// A connection's slot in the lease table: allocated when the connection is opened, freed when
/// it is closed, so leasing and releasing only write the slot.
pub(crate) type LeaseId = usize;

/// What `acquire` decided.
pub(crate) enum Acquire<E> {
    /// Use this parked connection; `validate` asks for a `connected` check first, `prime` asks
    /// the caller to wake the primer (the stack just became empty).
    Take {
        item: E,
        lease: LeaseId,
        validate: bool,
        prime: bool,
    },
    /// Room under the limit: connect (already counted as opening).
    Connect,
    /// At the limit: enqueue a waiter.
    Wait,
    /// At the limit, and every connection in use is held by the calling thread.
    WouldDeadlock,
    /// The pool is shut down.
    Closed,
}

/// What a woken waiter's `retry` found.
pub(crate) enum Retried<E> {
    /// It takes a parked connection or connects.
    Decided(Acquire<E>),
    /// It had been served directly meanwhile: use this grant.
    Granted(Grant<E>),
    /// Nothing left for it: it waits on, still at the front.
    StillWaiting,
}

/// Where a released connection went.
pub(crate) enum Released<E> {
    /// Onto the stack.
    Parked,
    /// Straight to the front waiter.
    Handed,
    /// The pool is shut down: close it.
    Close(E),
}

/// The lease record of every open connection, for the timeout message (see `crate::lease`).
/// A connection's slot is taken when it is opened and freed when it is closed.
#[derive(Default)]
struct Leases {
    records: Vec<Option<Arc<LeaseRecord>>>,
    free: Vec<LeaseId>,
}

impl Leases {
    /// A slot for a new connection's record.
    fn register(&mut self, record: Arc<LeaseRecord>) -> LeaseId {
        match self.free.pop() {
            Some(id) => {
                self.records[id] = Some(record);
                id
            }
            None => {
                self.records.push(Some(record));
                self.records.len() - 1
            }
        }
    }

    /// The connection was closed: its slot can serve another.
    fn free(&mut self, id: LeaseId) {
        if let Some(slot) = self.records.get_mut(id) {
            if slot.take().is_some() {
                self.free.push(id);
            }
        }
    }

    fn oldest(&self) -> Option<(Tick, &'static Location<'static>)> {
        self.records
            .iter()
            .flatten()
            .filter_map(|r| r.current())
            .min_by_key(|(since, _)| *since)
    }
}

/// A snapshot of the counts, for stats and errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) idle: usize,
    pub(crate) in_use: usize,
    pub(crate) opening: usize,
    pub(crate) waiting: usize,
    pub(crate) max_open: usize,
}

/// The state of one pool, guarded by its lock.
pub(crate) struct State<E> {
    idle: Vec<Idle<E>>,
    in_use: usize,
    opening: usize,
    checking: usize,
    waiters: VecDeque<Arc<Waiter<E>>>,
    leases: Leases,
    pub(crate) settings: Settings,
    /// Handles last known alive at or before this moment were parked when a dead one was found:
    /// a server restart kills them all at once, so each is checked before it is handed out.
    /// (At or before: the coarse clock gives events of one tick the same time; one extra check
    /// is cheaper than one missed.)
    suspect_before: Tick,
    /// The primer was asked for a connection and has not delivered it yet.
    prime_pending: bool,
    /// The front waiter was sent `Grant::Retry` and has not come back yet (only one waiter is
    /// woken at a time; only the front one is ever woken, so it stays the front until it leaves).
    woken: bool,
    /// Waiters granted something under the lock, to be notified once it is released.
    wakes: Vec<Arc<Waiter<E>>>,
    closed: bool,
    pub(crate) last_connect_error: Option<String>,
}

impl<E> State<E> {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            idle: Vec::new(),
            in_use: 0,
            opening: 0,
            checking: 0,
            waiters: VecDeque::new(),
            leases: Leases::default(),
            settings,
            suspect_before: Tick::default(),
            prime_pending: false,
            woken: false,
            wakes: Vec::new(),
            closed: false,
            last_connect_error: None,
        }
    }

    /// Every connection counted against the limit.
    pub(crate) fn total(&self) -> usize {
        self.idle.len() + self.in_use + self.opening + self.checking
    }

    fn has_room(&self) -> bool {
        self.total() < self.settings.max_open
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            idle: self.idle.len(),
            in_use: self.in_use,
            opening: self.opening + self.checking,
            waiting: self.waiters.len(),
            max_open: self.settings.max_open,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Where the longest-held connection was opened, and since when.
    pub(crate) fn longest_held(&self) -> Option<(Tick, &'static Location<'static>)> {
        self.leases.oldest()
    }

    /// A connection in use stopped counting: released (`close` false) or closed (`close` true).
    /// (Who holds it is in its lease record, written by the holder: see `crate::lease`.)
    fn unlease(&mut self, lease: LeaseId, close: bool) {
        self.in_use -= 1;
        if close {
            self.leases.free(lease);
        }
    }

    /// Decides how `open` gets a connection. `Wait` means at the limit: the caller checks
    /// `would_deadlock` and queues a waiter, under the same lock.
    pub(crate) fn acquire(&mut self, now: Tick) -> Acquire<E> {
        if self.closed {
            return Acquire::Closed;
        }
        // A newcomer may overtake waiters only while the front one is not starving.
        if self.waiters.front().is_none_or(|w| !w.is_starving(now)) {
            if let Some(take) = self.take_idle(now) {
                return take;
            }
        }
        if self.has_room() && self.waiters.is_empty() {
            self.opening += 1;
            return Acquire::Connect;
        }
        Acquire::Wait
    }

    /// At the limit, a thread holding `held` of this pool's connections would wait forever if
    /// it holds every connection in use and nothing else is being opened or checked.
    pub(crate) fn would_deadlock(&self, held: usize) -> bool {
        held > 0 && held >= self.in_use && self.opening == 0 && self.checking == 0
    }

    /// Applies new settings; if the limit grew, waiters get the new room at once.
    pub(crate) fn reconfigure(&mut self, settings: Settings) {
        self.settings = settings;
        while !self.waiters.is_empty() && self.has_room() && !self.closed {
            self.room_freed();
        }
    }

    /// Pops the top of the stack as a lease. Asks for a prime when it took the last one.
    fn take_idle(&mut self, now: Tick) -> Option<Acquire<E>> {
        let idle = self.idle.pop()?;
        let validate = idle.alive_at <= self.suspect_before
            || now.since(idle.alive_at) > self.settings.validate_after;
        let prime = self.idle.is_empty() && !self.prime_pending && self.has_room();
        if prime {
            self.prime_pending = true;
        }
        self.in_use += 1;
        Some(Acquire::Take {
            item: idle.item,
            lease: idle.lease,
            validate,
            prime,
        })
    }

    /// Takes the front waiter out of the queue (it is being served).
    fn pop_front_waiter(&mut self) -> Option<Arc<Waiter<E>>> {
        let front = self.waiters.pop_front()?;
        self.woken = false;
        Some(front)
    }

    /// Removes `waiter` from wherever it is in the queue.
    fn remove_waiter(&mut self, waiter: &Arc<Waiter<E>>) {
        if self.waiters.front().is_some_and(|w| Arc::ptr_eq(w, waiter)) {
            self.pop_front_waiter();
        } else {
            self.waiters.retain(|w| !Arc::ptr_eq(w, waiter));
        }
    }

    /// Wakes the front waiter to come and take a parked connection, unless one is already on
    /// its way.
    fn wake_front(&mut self) {
        if self.woken || self.idle.is_empty() {
            return;
        }
        if let Some(front) = self.waiters.front() {
            self.woken = true;
            front.grant(Grant::Retry);
            self.wakes.push(Arc::clone(front));
        }
    }

    /// The woken front waiter is back: it takes a parked connection or free room if there is
    /// one, and otherwise goes back to waiting at the front (`Retried::StillWaiting`).
    pub(crate) fn retry(&mut self, waiter: &Arc<Waiter<E>>, now: Tick) -> Retried<E> {
        if !self.waiters.front().is_some_and(|w| Arc::ptr_eq(w, waiter)) {
            // It was served between its wake-up and this call (it had become the starving
            // front): the grant is in its slot, put there under this lock.
            return match waiter.take() {
                Some(grant) => Retried::Granted(grant),
                None => Retried::StillWaiting,
            };
        }
        self.woken = false;
        if let Some(take) = self.take_idle(now) {
            self.remove_waiter(waiter);
            self.wake_front();
            return Retried::Decided(take);
        }
        if self.has_room() {
            self.remove_waiter(waiter);
            self.opening += 1;
            return Retried::Decided(Acquire::Connect);
        }
        Retried::StillWaiting
    }

    /// Whether any waiter was granted something since the last `take_wakes`.
    #[inline]
    pub(crate) fn has_wakes(&self) -> bool {
        !self.wakes.is_empty()
    }

    /// Whether any caller waits (mirrored for the fast slot).
    pub(crate) fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Whether the locked stack is empty (mirrored for the fast slot's prime rule).
    pub(crate) fn stack_is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// Parked connections last known alive at or before this moment are suspect (mirrored).
    pub(crate) fn suspect_before(&self) -> Tick {
        self.suspect_before
    }

    /// Whether asking the primer for one more could succeed now (mirrored, so the fast path
    /// locks for `want_prime_after_fast_take` only when it can say yes).
    pub(crate) fn could_prime(&self) -> bool {
        !self.closed && !self.prime_pending && self.has_room()
    }

    /// `open` took the fast slot's connection and the stack is empty: the pool has nothing
    /// parked, so ask for a primed one (the rule `take_idle` applies to the stack).
    pub(crate) fn want_prime_after_fast_take(&mut self) -> bool {
        if self.closed || !self.idle.is_empty() || self.prime_pending || !self.has_room() {
            return false;
        }
        self.prime_pending = true;
        true
    }

    /// Waiters granted something since the last call: notify them after unlocking.
    pub(crate) fn take_wakes(&mut self) -> Vec<Arc<Waiter<E>>> {
        std::mem::take(&mut self.wakes)
    }

    /// Queues a waiter behind all earlier ones.
    pub(crate) fn enqueue(&mut self, waiter: Arc<Waiter<E>>) {
        self.waiters.push_back(waiter);
    }

    /// A waiter gave up at its deadline. If it was granted something in the meantime, that
    /// grant is returned and must be used (or given back); otherwise it leaves the queue.
    pub(crate) fn cancel_wait(&mut self, waiter: &Arc<Waiter<E>>) -> Option<Grant<E>> {
        match waiter.take() {
            Some(Grant::Retry) | None => {
                self.remove_waiter(waiter);
                // If it was woken for a parked connection, pass the wake-up on.
                self.wake_front();
                None
            }
            Some(grant) => Some(grant),
        }
    }

    /// A connect reserved by `acquire` or a permit succeeded: count it in use.
    pub(crate) fn connected(&mut self, record: Arc<LeaseRecord>) -> LeaseId {
        self.opening -= 1;
        self.in_use += 1;
        self.leases.register(record)
    }

    /// A connect reserved by `acquire` or a permit failed: free its room.
    pub(crate) fn connect_failed(&mut self, error: String) {
        self.opening -= 1;
        self.last_connect_error = Some(error);
        self.room_freed();
    }

    /// Room under the limit came free: the front waiter may connect.
    fn room_freed(&mut self) {
        if self.closed || !self.has_room() {
            return;
        }
        if let Some(waiter) = self.pop_front_waiter() {
            self.opening += 1;
            // This may replace a `Retry` the front waiter had not acted on yet: the parked
            // connection that `Retry` was for goes to the next waiter instead.
            waiter.grant(Grant::Permit);
            self.wakes.push(waiter);
            self.wake_front();
        }
    }

    /// Hands `item` to the front waiter if it is starving; otherwise parks it on top of the
    /// stack and wakes the front waiter to come and take it (see `crate::waiter`).
    fn park_or_hand(&mut self, item: E, lease: LeaseId, now: Tick) -> Released<E> {
        if self.waiters.front().is_some_and(|w| w.is_starving(now)) {
            if let Some(waiter) = self.pop_front_waiter() {
                self.in_use += 1;
                waiter.grant(Grant::Item(item, lease));
                self.wakes.push(waiter);
                return Released::Handed;
            }
        }
        self.idle.push(Idle {
            item,
            parked_at: now,
            alive_at: now,
            lease,
        });
        self.wake_front();
        Released::Parked
    }

    /// A user released a healthy, reset connection.
    pub(crate) fn release(&mut self, item: E, lease: LeaseId, now: Tick) -> Released<E> {
        self.unlease(lease, self.closed);
        if self.closed {
            return Released::Close(item);
        }
        self.park_or_hand(item, lease, now)
    }

    /// A connection in use was closed (broken, failed reset, panicking holder). `suspect`
    /// marks every parked connection for a check before hand-out: a connection that broke
    /// under its user usually means the server restarted, which killed the parked ones too.
    pub(crate) fn discard(&mut self, lease: LeaseId, suspect: Option<Tick>) {
        if let Some(now) = suspect {
            self.suspect_before = now;
        }
        self.unlease(lease, true);
        self.room_freed();
    }

    /// `open` found the connection it took dead: drop it from the count, suspect every other
    /// parked handle, and decide again for the same caller. The room the dead connection frees
    /// is this caller's (it was served before the queued waiters), so it may take a parked
    /// connection or connect even with waiters queued; were it to queue as a newcomer, nobody
    /// would hand that room to anyone.
    pub(crate) fn retry_after_dead(&mut self, lease: LeaseId, now: Tick) -> Acquire<E> {
        self.unlease(lease, true);
        self.suspect_before = now;
        if self.closed {
            return Acquire::Closed;
        }
        if let Some(take) = self.take_idle(now) {
            return take;
        }
        if self.has_room() {
            self.opening += 1;
            return Acquire::Connect;
        }
        Acquire::Wait
    }

    /// The primer wants to connect: true reserves room; false means the pool is at its limit
    /// (or closed). It adds one connection even if the stack has refilled since it was asked:
    /// an emptied stack means demand reached the pool's size, so it grows by one (the reaper
    /// shrinks it again once the demand is gone). This also keeps steady-state `open` from
    /// waking the primer on every call.
    pub(crate) fn prime_begin(&mut self) -> bool {
        if self.closed || !self.has_room() {
            self.prime_pending = false;
            return false;
        }
        self.opening += 1;
        true
    }

    /// The primer connected.
    pub(crate) fn prime_done(
        &mut self,
        item: E,
        record: Arc<LeaseRecord>,
        now: Tick,
    ) -> Released<E> {
        self.opening -= 1;
        self.prime_pending = false;
        if self.closed {
            return Released::Close(item);
        }
        let lease = self.leases.register(record);
        self.park_or_hand(item, lease, now)
    }

    /// The primer's connect failed; it will try again after a pause.
    pub(crate) fn prime_failed(&mut self, error: String) {
        self.connect_failed(error);
    }

    /// Asks for a primed connection if the pool has none at all (the reaper's rule). Returns
    /// true if the caller must wake the primer.
    pub(crate) fn want_prime_if_empty(&mut self) -> bool {
        if self.closed || self.total() > 0 || self.prime_pending {
            return false;
        }
        self.prime_pending = true;
        true
    }

    /// Removes parked connections unused for longer than `idle_timeout`, oldest first, but never
    /// the last open connection: a quiet service keeps one warm, and what is reaped for idleness
    /// is never replaced (no churn).
    pub(crate) fn expire_idle(&mut self, now: Tick) -> Vec<E> {
        let timeout = self.settings.idle_timeout;
        let mut expired = Vec::new();
        // The stack is LIFO, so the oldest parked connections sit at the bottom.
        while self.total() > 1
            && self
                .idle
                .first()
                .is_some_and(|i| now.since(i.parked_at) > timeout)
        {
            let idle = self.idle.remove(0);
            self.leases.free(idle.lease);
            expired.push(idle.item);
        }
        if !expired.is_empty() {
            self.room_freed();
        }
        expired
    }

    /// Takes out the oldest parked connection due for a liveness check in the sweep that
    /// started at `sweep_start` (one at a time, so concurrent callers keep the rest).
    pub(crate) fn take_for_check(
        &mut self,
        sweep_start: Tick,
        now: Tick,
    ) -> Option<(usize, Idle<E>)> {
        let window = self.settings.validate_after;
        let suspect_before = self.suspect_before;
        let index = self.idle.iter().position(|i| {
            i.alive_at < sweep_start
                && (i.alive_at <= suspect_before || now.since(i.alive_at) > window)
        })?;
        self.checking += 1;
        Some((index, self.idle.remove(index)))
    }

    /// The reaper's check of a connection taken by `take_for_check` finished. A live one goes
    /// back where it was (or to a waiter); a dead one is returned for closing.
    pub(crate) fn check_done(
        &mut self,
        index: usize,
        mut idle: Idle<E>,
        alive: bool,
        now: Tick,
    ) -> Option<E> {
        self.checking -= 1;
        if self.closed || !alive {
            self.leases.free(idle.lease);
            if !alive {
                self.suspect_before = now;
                self.room_freed();
            }
            return Some(idle.item);
        }
        idle.alive_at = now;
        let at = index.min(self.idle.len());
        self.idle.insert(at, idle);
        self.wake_front();
        None
    }

    /// Shuts the pool: returns every parked connection for closing and tells every waiter.
    pub(crate) fn close(&mut self) -> Vec<E> {
        self.closed = true;
        self.woken = false;
        for waiter in self.waiters.drain(..) {
            waiter.grant(Grant::Closed);
            self.wakes.push(waiter);
        }
        let parked: Vec<Idle<E>> = self.idle.drain(..).collect();
        parked
            .into_iter()
            .map(|i| {
                self.leases.free(i.lease);
                i.item
            })
            .collect()
    }

    /// How long ago the oldest lease started, for error messages.
    pub(crate) fn longest_held_for(&self, now: Tick) -> Option<(String, Duration)> {
        self.longest_held()
            .map(|(since, at)| (at.to_string(), now.since(since)))
    }
}
