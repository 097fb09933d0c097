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
//! of these under the lock before it connects, so no path ever over-allocates.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Tick;
use crate::settings::Settings;
use crate::waiter::{Grant, Waiter};

/// A parked connection with its timestamps.
pub(crate) struct Idle<E> {
    pub(crate) item: E,
    /// When it was last released by a user: what idle expiry measures.
    pub(crate) parked_at: Tick,
    /// When it was last known alive (released, or checked by the reaper): what validation measures.
    pub(crate) alive_at: Tick,
}

/// Index of a connection in use in the lease table.
pub(crate) type LeaseId = usize;

/// What `acquire` decided.
pub(crate) enum Acquire<E> {
    /// Use this parked connection; `validate` asks for a `connected` check first, `prime` asks
    /// the caller to wake the primer (the stack just became empty).
    Take { item: E, lease: LeaseId, validate: bool, prime: bool },
    /// Room under the limit: connect (already counted as opening).
    Connect,
    /// At the limit: enqueue a waiter.
    Wait,
    /// At the limit, and every connection in use is held by the calling thread.
    WouldDeadlock,
    /// The pool is shut down.
    Closed,
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

/// Who holds the connections in use, for the timeout message.
#[derive(Default)]
struct Leases {
    slots: Vec<Option<(Tick, &'static Location<'static>)>>,
    free: Vec<LeaseId>,
}

impl Leases {
    fn insert(&mut self, since: Tick, at: &'static Location<'static>) -> LeaseId {
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some((since, at));
                id
            }
            None => {
                self.slots.push(Some((since, at)));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, id: LeaseId) {
        if let Some(slot) = self.slots.get_mut(id) {
            if slot.take().is_some() {
                self.free.push(id);
            }
        }
    }

    fn oldest(&self) -> Option<(Tick, &'static Location<'static>)> {
        self.slots.iter().flatten().min_by_key(|(since, _)| *since).copied()
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

    fn lease(&mut self, now: Tick, at: &'static Location<'static>) -> LeaseId {
        self.in_use += 1;
        self.leases.insert(now, at)
    }

    /// Decides how `open` gets a connection. `held` is how many of this pool's connections the
    /// calling thread already holds.
    pub(crate) fn acquire(&mut self, now: Tick, at: &'static Location<'static>, held: usize) -> Acquire<E> {
        if self.closed {
            return Acquire::Closed;
        }
        if let Some(idle) = self.idle.pop() {
            let validate = idle.alive_at <= self.suspect_before
                || now.since(idle.alive_at) > self.settings.validate_after;
            let prime = self.idle.is_empty() && !self.prime_pending && self.has_room();
            if prime {
                self.prime_pending = true;
            }
            let lease = self.lease(now, at);
            return Acquire::Take { item: idle.item, lease, validate, prime };
        }
        if self.has_room() {
            self.opening += 1;
            return Acquire::Connect;
        }
        if held > 0 && held >= self.in_use && self.opening == 0 && self.checking == 0 {
            return Acquire::WouldDeadlock;
        }
        Acquire::Wait
    }

    /// Applies new settings; if the limit grew, waiters get the new room at once.
    pub(crate) fn reconfigure(&mut self, settings: Settings) {
        self.settings = settings;
        while !self.waiters.is_empty() && self.has_room() && !self.closed {
            self.room_freed();
        }
    }

    /// Queues a waiter behind all earlier ones.
    pub(crate) fn enqueue(&mut self, waiter: Arc<Waiter<E>>) {
        self.waiters.push_back(waiter);
    }

    /// A waiter gave up at its deadline. If it was granted something in the meantime, that
    /// grant is returned and must be used (or given back); otherwise it leaves the queue.
    pub(crate) fn cancel_wait(&mut self, waiter: &Arc<Waiter<E>>) -> Option<Grant<E>> {
        if let Some(grant) = waiter.take() {
            return Some(grant);
        }
        self.waiters.retain(|w| !Arc::ptr_eq(w, waiter));
        None
    }

    /// A connect reserved by `acquire` or a permit succeeded: count it in use.
    pub(crate) fn connected(&mut self, now: Tick, at: &'static Location<'static>) -> LeaseId {
        self.opening -= 1;
        self.lease(now, at)
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
        if let Some(waiter) = self.waiters.pop_front() {
            self.opening += 1;
            waiter.grant(Grant::Permit);
        }
    }

    /// Hands `item` to the front waiter, or parks it on top of the stack.
    fn park_or_hand(&mut self, item: E, now: Tick) -> Released<E> {
        if let Some(waiter) = self.waiters.pop_front() {
            let lease = self.lease(now, waiter.opened_at);
            waiter.grant(Grant::Item(item, lease));
            return Released::Handed;
        }
        self.idle.push(Idle { item, parked_at: now, alive_at: now });
        Released::Parked
    }

    /// A user released a healthy, reset connection.
    pub(crate) fn release(&mut self, item: E, lease: LeaseId, now: Tick) -> Released<E> {
        self.in_use -= 1;
        self.leases.remove(lease);
        if self.closed {
            return Released::Close(item);
        }
        self.park_or_hand(item, now)
    }

    /// A connection in use was closed (broken, failed reset, panicking holder). `suspect`
    /// marks every parked connection for a check before hand-out: a connection that broke
    /// under its user usually means the server restarted, which killed the parked ones too.
    pub(crate) fn discard(&mut self, lease: LeaseId, suspect: Option<Tick>) {
        if let Some(now) = suspect {
            self.suspect_before = now;
        }
        self.in_use -= 1;
        self.leases.remove(lease);
        self.room_freed();
    }

    /// `open` found the connection it took dead: drop it from the count, suspect every other
    /// parked handle, and decide again for the same caller (it keeps its place ahead of waiters).
    pub(crate) fn retry_after_dead(
        &mut self,
        lease: LeaseId,
        now: Tick,
        at: &'static Location<'static>,
        held: usize,
    ) -> Acquire<E> {
        self.in_use -= 1;
        self.leases.remove(lease);
        self.suspect_before = now;
        self.acquire(now, at, held)
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
    pub(crate) fn prime_done(&mut self, item: E, now: Tick) -> Released<E> {
        self.opening -= 1;
        self.prime_pending = false;
        if self.closed {
            return Released::Close(item);
        }
        self.park_or_hand(item, now)
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
            && self.idle.first().is_some_and(|i| now.since(i.parked_at) > timeout)
        {
            expired.push(self.idle.remove(0).item);
        }
        expired
    }

    /// Takes out the oldest parked connection due for a liveness check in the sweep that
    /// started at `sweep_start` (one at a time, so concurrent callers keep the rest).
    pub(crate) fn take_for_check(&mut self, sweep_start: Tick, now: Tick) -> Option<(usize, Idle<E>)> {
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
    pub(crate) fn check_done(&mut self, index: usize, mut idle: Idle<E>, alive: bool, now: Tick) -> Option<E> {
        self.checking -= 1;
        if self.closed {
            return Some(idle.item);
        }
        if !alive {
            self.suspect_before = now;
            self.room_freed();
            return Some(idle.item);
        }
        if let Some(waiter) = self.waiters.pop_front() {
            let lease = self.lease(now, waiter.opened_at);
            waiter.grant(Grant::Item(idle.item, lease));
            return None;
        }
        idle.alive_at = now;
        let at = index.min(self.idle.len());
        self.idle.insert(at, idle);
        None
    }

    /// Shuts the pool: returns every parked connection for closing and tells every waiter.
    pub(crate) fn close(&mut self) -> Vec<E> {
        self.closed = true;
        for waiter in self.waiters.drain(..) {
            waiter.grant(Grant::Closed);
        }
        self.idle.drain(..).map(|i| i.item).collect()
    }

    /// How long ago the oldest lease started, for error messages.
    pub(crate) fn longest_held_for(&self, now: Tick) -> Option<(String, Duration)> {
        self.longest_held().map(|(since, at)| (at.to_string(), now.since(since)))
    }
}
