//! The locked state of one pool: the LIFO stack, the counts, the waiter queue and the
//! decisions `open`, `release`, the primer and the reaper make on them.
//!
//! Everything here runs with the pool's state lock held (`super::KeyCore` owns the lock), so
//! none of it does I/O, calls a driver, reads a clock or calls user code: methods take `now` as
//! an input, decide, and return what the caller must do outside the lock.
//!
//! # Invariants (checked after every step by the state-machine test, `super::state_machine`)
//!
//! 1. **Limit.** `total() = idle + in_use + resetting + opening + checking + closing <= max_open`. Every
//!    path that adds to `total` does so under the lock, before it connects, and only while
//!    `total < max_open`: a connect is a [`Reservation`], consumed only by "connected" or
//!    "connect failed". Connections taken out to be closed stay counted (`closing`) until the
//!    close finished, so the server never sees more than `max_open` sessions either.
//!    (Lowering `max_open` below `total` is allowed; nothing new is added until it fits.)
//! 2. **No lost wake-up.** When the lock is released (`settle`, called by `KeyCore` on every
//!    unlock): if someone waits and the pool is open, then there is no free room or every
//!    waiter can be served by a reset in flight (`waiters <= resetting`: room goes to the front
//!    waiters as permits until then), and if a connection is parked, the front waiter has been
//!    woken to take it (`woken`, its slot holds `Grant::Retry`). `settle` restores this after
//!    any change, in one place, instead of every path remembering to. A waiter counting on a
//!    reset that hangs stops counting on it after `RESET_PATIENCE` (`impatient`).
//! 3. **Conservation.** Every connection is in exactly one place: the stack, a waiter's slot,
//!    a caller's hands (`in_use`, which also counts the one in the fast slot, kept outside
//!    this state by `KeyCore`), being reset after release (`resetting`), a connect in flight,
//!    the reaper's check, or being closed.
//! 4. **Reset before reuse.** A released connection reaches the stack (or a waiter) only
//!    through `reset_done`, after its reset finished: while `resetting` it is in no place
//!    `open` can take from.
//! 5. **LIFO by release order.** The stack is sorted by each connection's release order
//!    (`released`, increasing from bottom to top), so `open` takes the most recently released
//!    connection, however long each one's reset took.
//!
//! # The stack's order
//!
//! Every release takes a number from the pool's release counter (`KeyCore::release_order`)
//! when it starts. A primed connection was never released: it counts as older than every
//! release (`NEVER_RELEASED`, 0) and sits below the released ones, so it is handed out only
//! once no released one is parked, which is when the primer was asked for it, and a
//! connection a user just released is always the next one handed out. Resets finish out
//! of order (one on the resetter thread, a later one on the releasing thread when the
//! resetter's queue is full), so a connection is inserted where its number belongs instead of
//! pushed on top. Nearly always that is the top (one comparison); a reset that finishes late
//! goes below the connections released after it. The fast slot, outside this state, holds a
//! connection newer than the top of this stack whenever no release is in flight: see
//! `KeyCore::park` and `KeyCore::push_by_order`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::reservation::Reservation;
use super::waiter::{Grant, Waiter};
use crate::clock::Tick;
use crate::lease::{LeaseId, LeaseRecord, Leases};
use crate::settings::Settings;

/// A parked connection with its timestamps.
pub(crate) struct Idle<E> {
    pub(crate) item: E,
    /// When it was last released by a user: what idle expiry measures.
    parked_at: Tick,
    /// When it was last known alive (released, or checked by the reaper): what validation measures.
    alive_at: Tick,
    /// Its slot in the lease table, kept for the connection's whole life.
    lease: LeaseId,
    /// Its place in the release order (see "The stack's order" in the module doc).
    released: u64,
}

/// A parked connection the reaper has taken out to check (counted in `checking`); it goes back
/// to its place by release order.
pub(crate) struct Checking<E> {
    pub(crate) idle: Idle<E>,
}

/// A parked connection `open` may use.
pub(crate) struct Taken<E> {
    pub(crate) item: E,
    pub(crate) lease: LeaseId,
    /// Check it with `connected` before use.
    pub(crate) validate: bool,
    /// The stack just became empty: wake the primer.
    pub(crate) prime: bool,
}

/// What `acquire` decided.
pub(crate) enum Acquire<E> {
    /// Use this parked connection.
    Take(Taken<E>),
    /// Room under the limit: connect.
    Connect(Reservation),
    /// At the limit (no room): the caller queues a waiter (or refuses with `WouldDeadlock`).
    Wait,
    /// Nothing parked, but released connections are being reset: the caller queues and waits
    /// for one (at most `RESET_PATIENCE` before it may connect); `prime`: wake the primer.
    WaitForReset { prime: bool },
    /// The pool is shut down.
    Closed,
}

/// A final answer for a caller: what a waiter ends with.
pub(crate) enum Decided<E> {
    /// Use this parked connection.
    Take(Taken<E>),
    /// Connect with this reserved room.
    Connect(Reservation),
    /// The pool is shut down.
    Closed,
}

/// What a woken waiter's `retry` found.
pub(crate) enum Retried<E> {
    /// It is done waiting.
    Decided(Decided<E>),
    /// Nothing left for it: it waits on, still at the front.
    StillWaiting,
}

/// Where a released connection went.
pub(crate) enum Released<E> {
    /// Onto the stack or straight to the front waiter; `more`: the primer should add another
    /// (the pool is below `min_idle`; only from `prime_done`).
    Kept { more: bool },
    /// The pool is shut down: close it.
    Close(E),
}

/// Why `open` dropped the parked connection it took (see `State::dropped` and `State::retry_after_dropped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Found dead quickly (refused, reset, closed).
    Dead,
    /// Its check ran into `check_timeout`: the network may be silent.
    Silent,
    /// Past `max_lifetime`.
    Aged,
}

/// What the primer may do.
pub(crate) enum PrimeStart {
    /// Connect with this room.
    Go(Reservation),
    /// Nothing to do: at the limit, or the driver cannot park connections.
    NotNeeded,
    /// The pool is shut down.
    Closed,
}

/// A snapshot of the counts, for stats and errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) idle: usize,
    pub(crate) in_use: usize,
    pub(crate) resetting: usize,
    pub(crate) opening: usize,
    pub(crate) waiting: usize,
    pub(crate) max_open: usize,
}

/// What the lock-free paths read instead of taking the lock: derived from the state by
/// `settle` on every unlock and published by `KeyCore` (the one place mirrors are written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mirrors {
    pub(crate) waiting: bool,
    pub(crate) stack_empty: bool,
    pub(crate) could_prime: bool,
    pub(crate) suspect_before: Tick,
    pub(crate) closed: bool,
    /// The release order of the top of the stack (0: empty).
    pub(crate) top_released: u64,
}

/// The state of one pool, guarded by its lock.
pub(crate) struct State<E> {
    idle: Vec<Idle<E>>,
    in_use: usize,
    /// Released connections whose reset runs (on the resetter, or inline as a fallback): not
    /// usable yet, but each will be parked soon, so `open` waits for one instead of connecting.
    resetting: usize,
    opening: usize,
    checking: usize,
    /// Connections taken out to be closed and not closed yet: still counted against the limit.
    closing: usize,
    waiters: VecDeque<Arc<Waiter<E>>>,
    leases: Leases,
    pub(crate) settings: Settings,
    /// Configured for this key on its own (`pool::configure`): `configure_defaults` leaves it
    /// alone. Under the lock with `settings`, so "is it explicit?" and "apply the defaults"
    /// are one decision: a `configure` that returned is never undone by the defaults.
    explicit: bool,
    /// Whether connections can be parked at all (`Driver::can_detach`). If not, nothing is
    /// ever primed: a primed connection could only be closed again.
    parks: bool,
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
    pub(crate) fn new(settings: Settings, parks: bool) -> Self {
        Self {
            idle: Vec::new(),
            in_use: 0,
            resetting: 0,
            opening: 0,
            checking: 0,
            closing: 0,
            waiters: VecDeque::new(),
            leases: Leases::default(),
            settings,
            explicit: false,
            parks,
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
        self.idle.len() + self.in_use + self.resetting + self.opening + self.checking + self.closing
    }

    /// Whether the waiters outnumber the resets in flight, so free room should go to the
    /// front one as a permit: the others are each served by a reset that will finish soon.
    fn waiters_beyond_resets(&self) -> bool {
        self.waiters.len() > self.resetting
    }

    fn has_room(&self) -> bool {
        self.total() < self.settings.max_open
    }

    pub(crate) fn counts(&self) -> Counts {
        Counts {
            idle: self.idle.len(),
            in_use: self.in_use,
            resetting: self.resetting,
            opening: self.opening + self.checking + self.closing,
            waiting: self.waiters.len(),
            max_open: self.settings.max_open,
        }
    }

    /// Leases held longer than `threshold`, not reported yet.
    pub(crate) fn overdue_leases(&self, now: Tick, threshold: Duration) -> Vec<Arc<LeaseRecord>> {
        self.leases.overdue(now, threshold)
    }

    /// Where the longest-held connection was opened, and for how long, for error messages.
    pub(crate) fn longest_held(&self, now: Tick) -> Option<(String, Duration)> {
        self.leases.longest_held(now)
    }

    /// Restores invariant 2 (see the module doc) and returns the mirrors to publish. `KeyCore`
    /// calls it before every unlock, so no decision has to remember to pass wake-ups on.
    pub(crate) fn settle(&mut self) -> Mirrors {
        if !self.closed {
            // A parked connection is offered to the front waiter first; room becomes a permit
            // only when nothing is parked (connecting is the expensive way).
            if self.idle.is_empty() {
                while self.has_room() && self.waiters_beyond_resets() {
                    let Some(waiter) = self.pop_front_waiter() else {
                        break;
                    };
                    self.opening += 1;
                    // This may replace a `Retry` the waiter had not acted on yet; nothing is
                    // parked, so that `Retry` had nothing left to take.
                    waiter.grant(Grant::Permit(Reservation::new()));
                    self.wakes.push(waiter);
                }
            } else if !self.woken {
                if let Some(front) = self.waiters.front() {
                    self.woken = true;
                    front.grant(Grant::Retry);
                    self.wakes.push(Arc::clone(front));
                }
            }
        }
        Mirrors {
            waiting: !self.waiters.is_empty(),
            stack_empty: self.idle.is_empty(),
            could_prime: self.could_prime(),
            suspect_before: self.suspect_before,
            closed: self.closed,
            top_released: self.top_released(),
        }
    }

    /// Whether asking the primer for one more could succeed now.
    fn could_prime(&self) -> bool {
        self.parks && !self.closed && !self.prime_pending && self.has_room()
    }

    /// A connection in use stopped counting: released (`close` false) or closed (`close` true).
    /// (Who holds it is in its lease record, written by the holder: see `crate::lease`.)
    fn unlease(&mut self, lease: LeaseId, close: bool) {
        self.in_use -= 1;
        if close {
            self.leases.free(lease);
        }
    }

    fn reserve(&mut self) -> Reservation {
        self.opening += 1;
        Reservation::new()
    }

    /// Decides how `open` gets a connection. `Wait` means at the limit: the caller checks
    /// `would_deadlock` and queues a waiter, under the same lock.
    pub(crate) fn acquire(&mut self, now: Tick) -> Acquire<E> {
        if self.closed {
            return Acquire::Closed;
        }
        // A newcomer may overtake waiters only while the front one is not starving.
        if self.waiters.front().is_none_or(|w| !w.is_starving(now)) {
            if let Some(taken) = self.take_idle(now) {
                return Acquire::Take(taken);
            }
        }
        if self.has_room() {
            // Settled, any waiters are each counting on a reset in flight (invariant 2). A
            // reset nobody counts on yet will park a connection in a moment, far sooner than a
            // connect would finish: wait for it (bounded by `RESET_PATIENCE`) and ask the
            // primer for one more, as for any emptied stack. Otherwise connect: room is never
            // a reason to wait (or to be shed by `max_waiting`).
            if self.waiters.len() < self.resetting && self.queue_full().is_none() {
                return Acquire::WaitForReset {
                    prime: self.want_prime_if_stack_empty(),
                };
            }
            return Acquire::Connect(self.reserve());
        }
        Acquire::Wait
    }

    /// At the limit, a thread holding `held` of this pool's connections would wait forever if
    /// nothing can ever reach it: it holds every connection in use, none is parked, and none is
    /// being opened, checked or closed (each of which can free room or bring one back).
    pub(crate) fn would_deadlock(&self, held: usize) -> bool {
        held > 0
            && held >= self.in_use
            && self.idle.is_empty()
            && self.resetting == 0
            && self.opening == 0
            && self.checking == 0
            && self.closing == 0
    }

    /// Whether one more caller may queue, or `max_waiting` callers already wait (the caller is
    /// then refused at once: load shedding). Returns the number waiting when refused.
    pub(crate) fn queue_full(&self) -> Option<usize> {
        let waiting = self.waiters.len();
        self.settings
            .max_waiting
            .filter(|max| waiting >= *max)
            .map(|_| waiting)
    }

    /// Applies new settings; `settle` gives waiters any room a larger limit made.
    pub(crate) fn reconfigure(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// Applies settings from `pool::configure` (`explicit`: this key's own, which win from then
    /// on) or from `configure_defaults` (ignored once the key has its own). Returns whether
    /// they were applied.
    pub(crate) fn configure(&mut self, settings: Settings, explicit: bool) -> bool {
        if !explicit && self.explicit {
            return false;
        }
        self.explicit |= explicit;
        self.reconfigure(settings);
        true
    }

    /// Pops the top of the stack as a lease. Asks for a prime when it took the last one.
    fn take_idle(&mut self, now: Tick) -> Option<Taken<E>> {
        let idle = self.idle.pop()?;
        let validate = idle.alive_at <= self.suspect_before
            || now.since(idle.alive_at) > self.settings.validate_after;
        self.in_use += 1;
        let prime = self.idle.is_empty() && self.could_prime();
        if prime {
            self.prime_pending = true;
        }
        Some(Taken {
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

    fn is_front(&self, waiter: &Arc<Waiter<E>>) -> bool {
        self.waiters.front().is_some_and(|w| Arc::ptr_eq(w, waiter))
    }

    /// Removes `waiter` from wherever it is in the queue.
    fn remove_waiter(&mut self, waiter: &Arc<Waiter<E>>) {
        if self.is_front(waiter) {
            self.pop_front_waiter();
        } else {
            self.waiters.retain(|w| !Arc::ptr_eq(w, waiter));
        }
    }

    /// A grant taken out of a waiter's slot, as the waiter's final answer. `None` for
    /// `Retry`, which is not an answer but a request to come and look.
    pub(crate) fn decided(grant: Grant<E>) -> Option<Decided<E>> {
        match grant {
            Grant::Item(item, lease) => Some(Decided::Take(Taken {
                item,
                lease,
                validate: false,
                prime: false,
            })),
            Grant::Permit(reservation) => Some(Decided::Connect(reservation)),
            Grant::Closed => Some(Decided::Closed),
            Grant::Retry => None,
        }
    }

    /// The woken front waiter is back: it takes a parked connection or free room if there is
    /// one, and otherwise goes back to waiting at the front (`Retried::StillWaiting`).
    pub(crate) fn retry(&mut self, waiter: &Arc<Waiter<E>>, now: Tick) -> Retried<E> {
        if !self.is_front(waiter) {
            // It was served between its wake-up and this call (it had become the starving
            // front, or the pool closed): the grant is in its slot, put there under this lock.
            return match waiter.take().and_then(Self::decided) {
                Some(decided) => Retried::Decided(decided),
                None => Retried::StillWaiting,
            };
        }
        self.woken = false;
        if let Some(taken) = self.take_idle(now) {
            self.remove_waiter(waiter);
            return Retried::Decided(Decided::Take(taken));
        }
        if self.has_room() && self.waiters_beyond_resets() {
            self.remove_waiter(waiter);
            return Retried::Decided(Decided::Connect(self.reserve()));
        }
        Retried::StillWaiting
    }

    /// A waiter woke on its own: `RESET_PATIENCE` passed (every waiter wakes that often), or its
    /// deadline came. Free room that `settle` held back for the resets in flight (one may hang
    /// on a silent network) is its now. `StillWaiting` (it is then still queued) if there is
    /// none.
    ///
    /// Whatever was granted meanwhile is its answer; a `Retry` that arrived since it stopped
    /// sleeping is acted on here (it would otherwise be lost with `woken` still set): the front
    /// waiter takes a parked connection first, like `retry`.
    pub(crate) fn impatient(&mut self, waiter: &Arc<Waiter<E>>, now: Tick) -> Retried<E> {
        match waiter.take() {
            None | Some(Grant::Retry) => {}
            Some(grant) => {
                return match Self::decided(grant) {
                    Some(decided) => Retried::Decided(decided),
                    None => Retried::StillWaiting,
                }
            }
        }
        if self.closed || !self.waiters.iter().any(|w| Arc::ptr_eq(w, waiter)) {
            return Retried::StillWaiting;
        }
        if self.is_front(waiter) {
            self.woken = false;
            if let Some(taken) = self.take_idle(now) {
                self.remove_waiter(waiter);
                return Retried::Decided(Decided::Take(taken));
            }
        }
        if !self.has_room() {
            return Retried::StillWaiting;
        }
        self.remove_waiter(waiter);
        Retried::Decided(Decided::Connect(self.reserve()))
    }

    /// Waiters granted something since the last call: notify them after unlocking.
    pub(crate) fn take_wakes(&mut self) -> Vec<Arc<Waiter<E>>> {
        std::mem::take(&mut self.wakes)
    }

    /// Whether any waiter was granted something since the last `take_wakes`.
    #[inline]
    pub(crate) fn has_wakes(&self) -> bool {
        !self.wakes.is_empty()
    }

    /// Queues a waiter behind all earlier ones.
    pub(crate) fn enqueue(&mut self, waiter: Arc<Waiter<E>>) {
        self.waiters.push_back(waiter);
    }

    /// A waiter gives up (deadline, or it found the fast slot's connection after queueing). If
    /// it was granted something in the meantime, that is its answer and must be used or given
    /// back; otherwise it leaves the queue (and `settle` passes a pending wake-up on).
    pub(crate) fn cancel_wait(&mut self, waiter: &Arc<Waiter<E>>) -> Option<Decided<E>> {
        match waiter.take().and_then(Self::decided) {
            Some(decided) => Some(decided),
            None => {
                self.remove_waiter(waiter);
                None
            }
        }
    }

    /// A connect reserved by `acquire`, a permit or `retry` succeeded: count it in use. `None`
    /// if the pool was shut meanwhile: the caller closes the new connection (room granted
    /// before a shutdown never opens a connection after it).
    pub(crate) fn connected(
        &mut self,
        reservation: Reservation,
        record: Arc<LeaseRecord>,
    ) -> Option<LeaseId> {
        reservation.redeem();
        self.opening -= 1;
        if self.closed {
            return None;
        }
        self.in_use += 1;
        Some(self.leases.register(record))
    }

    /// A reserved connect failed: free its room.
    pub(crate) fn connect_failed(&mut self, reservation: Reservation, error: String) {
        reservation.redeem();
        self.opening -= 1;
        self.last_connect_error = Some(error);
    }

    /// Hands `item` to the front waiter if it is starving; otherwise parks it on top of the
    /// stack (and `settle` wakes the front waiter to come and take it; see `super::waiter`).
    fn park_or_hand(&mut self, item: E, lease: LeaseId, now: Tick, released: u64) {
        if self.waiters.front().is_some_and(|w| w.is_starving(now)) {
            if let Some(waiter) = self.pop_front_waiter() {
                self.in_use += 1;
                waiter.grant(Grant::Item(item, lease));
                self.wakes.push(waiter);
                return;
            }
        }
        self.push_in_order(Idle {
            item,
            parked_at: now,
            alive_at: now,
            lease,
            released,
        });
    }

    /// Puts `idle` where its release order belongs (invariant 5): above every connection
    /// released before it. Usually the top, found with one comparison.
    fn push_in_order(&mut self, idle: Idle<E>) {
        let at = self
            .idle
            .iter()
            .rposition(|below| below.released <= idle.released)
            .map_or(0, |below| below + 1);
        self.idle.insert(at, idle);
    }

    /// The release order of the top of the stack (0 when empty), for `KeyCore`'s fast slot.
    pub(crate) fn top_released(&self) -> u64 {
        self.idle.last().map_or(0, |i| i.released)
    }

    /// A user released a healthy, reset connection (`released`: its release order).
    pub(crate) fn release(
        &mut self,
        item: E,
        lease: LeaseId,
        now: Tick,
        released: u64,
    ) -> Released<E> {
        self.unlease(lease, self.closed);
        if self.closed {
            return Released::Close(item);
        }
        self.park_or_hand(item, lease, now, released);
        Released::Kept { more: false }
    }

    /// A released connection goes to be reset: it stops counting in use and counts as
    /// `resetting` (keeping its lease) until `reset_done` or `reset_failed`.
    pub(crate) fn begin_reset(&mut self) {
        self.in_use -= 1;
        self.resetting += 1;
    }

    /// Its reset succeeded: park it by its release order `released` (or hand it to a
    /// starving waiter); closed if shut.
    pub(crate) fn reset_done(
        &mut self,
        item: E,
        lease: LeaseId,
        now: Tick,
        released: u64,
    ) -> Released<E> {
        self.resetting -= 1;
        if self.closed {
            self.leases.free(lease);
            return Released::Close(item);
        }
        self.park_or_hand(item, lease, now, released);
        Released::Kept { more: false }
    }

    /// Its reset failed (or said the session cannot be reset): the caller closed it; its room
    /// is free. `suspect` as in `discard`.
    pub(crate) fn reset_failed(&mut self, lease: LeaseId, suspect: Option<Tick>) {
        self.resetting -= 1;
        if let Some(now) = suspect {
            self.suspect_before = now;
        }
        self.leases.free(lease);
    }

    /// A connection in use was closed (broken, failed reset, panicking holder), or its close
    /// is about to finish: the caller closes it *before* calling this, so its room is freed
    /// only once the server no longer counts it. `suspect` marks every parked connection for a
    /// check before hand-out: a connection that broke under its user usually means the server
    /// restarted, which killed the parked ones too.
    pub(crate) fn discard(&mut self, lease: LeaseId, suspect: Option<Tick>) {
        if let Some(now) = suspect {
            self.suspect_before = now;
        }
        self.unlease(lease, true);
    }

    /// A connection in use is being closed by the closer thread (it broke): it stays counted,
    /// as `closing`, until `closed` says its close finished (or gave up waiting).
    pub(crate) fn discard_closing(&mut self, lease: LeaseId, suspect: Tick) {
        self.suspect_before = suspect;
        self.unlease(lease, true);
        self.closing += 1;
    }

    /// `open` dropped the parked connection it took (`why`): it stops counting in use. A dead
    /// or silent one is being closed by the closer thread and stays counted (`closing`) until
    /// `closed`, and every other parked connection becomes suspect; an aged one was closed
    /// already (its age says nothing about the others). The caller then decides again with
    /// `retry_after_dropped`.
    ///
    /// After `Silent` with no room left, the other parked connections (suspect, on the same
    /// silent path) are taken out for closing too and returned: checking them one by one would
    /// cost a `check_timeout` each, and closing an idle connection is quick, so their room
    /// soon lets the caller connect fresh.
    #[must_use = "evicted connections must be closed, then `closed`"]
    pub(crate) fn dropped(&mut self, lease: LeaseId, now: Tick, why: Dropped) -> Vec<E> {
        self.unlease(lease, true);
        if why == Dropped::Aged {
            return Vec::new();
        }
        self.suspect_before = now;
        self.closing += 1;
        if why != Dropped::Silent || self.has_room() {
            return Vec::new();
        }
        let evicted: Vec<E> = self
            .idle
            .drain(..)
            .map(|idle| {
                self.leases.free(idle.lease);
                idle.item
            })
            .collect();
        self.closing += evicted.len();
        evicted
    }

    /// Decides again for a caller whose taken connection was `dropped`. It was served before
    /// the queued waiters, so it may take a parked connection or connect even with waiters
    /// queued. After `Silent` (its check ran into the timeout: the network may have gone
    /// quiet) a fresh connect is tried before the other parked connections, each of which
    /// could cost another whole `check_timeout`.
    pub(crate) fn retry_after_dropped(&mut self, now: Tick, why: Dropped) -> Acquire<E> {
        if self.closed {
            return Acquire::Closed;
        }
        if why == Dropped::Silent && self.has_room() {
            return Acquire::Connect(self.reserve());
        }
        if let Some(taken) = self.take_idle(now) {
            return Acquire::Take(taken);
        }
        if self.has_room() {
            return Acquire::Connect(self.reserve());
        }
        Acquire::Wait
    }

    /// The primer wants to connect. It adds one connection even if the stack has refilled
    /// since it was asked: an emptied stack means demand reached the pool's size, so it grows
    /// by one (the reaper shrinks it again once the demand is gone). This also keeps
    /// steady-state `open` from waking the primer on every call.
    pub(crate) fn prime_begin(&mut self) -> PrimeStart {
        if self.closed {
            self.prime_pending = false;
            return PrimeStart::Closed;
        }
        if !self.parks || !self.has_room() {
            self.prime_pending = false;
            return PrimeStart::NotNeeded;
        }
        // Pending until it is delivered: nobody asks for another meanwhile.
        self.prime_pending = true;
        PrimeStart::Go(self.reserve())
    }

    /// The primer connected and detached a fresh connection; `released`: the release order it
    /// is parked with (`NEVER_RELEASED`: below every released connection).
    pub(crate) fn prime_done(
        &mut self,
        reservation: Reservation,
        item: E,
        record: Arc<LeaseRecord>,
        now: Tick,
        released: u64,
    ) -> Released<E> {
        reservation.redeem();
        self.opening -= 1;
        self.prime_pending = false;
        if self.closed {
            return Released::Close(item);
        }
        let lease = self.leases.register(record);
        self.park_or_hand(item, lease, now, released);
        // Still below the warm floor: the primer goes on with the next one.
        Released::Kept {
            more: self.want_prime_below_floor(),
        }
    }

    /// The prime asked for will never come (no primer thread could run): not pending any more,
    /// so the next emptied stack asks again.
    pub(crate) fn prime_abandoned(&mut self) {
        self.prime_pending = false;
    }

    /// The primer's connect (or detach) failed; it will try again after a pause.
    pub(crate) fn prime_failed(&mut self, reservation: Reservation, error: String) {
        self.connect_failed(reservation, error);
    }

    /// Asks for a primed connection if the pool is below its warm floor, `min_idle` open
    /// connections (the reaper's rule). Returns true if the caller must wake the primer.
    pub(crate) fn want_prime_below_floor(&mut self) -> bool {
        if self.total() - self.closing >= self.settings.min_idle || !self.could_prime() {
            return false;
        }
        self.prime_pending = true;
        true
    }

    /// The stack is empty after `open` took the fast slot's connection, or after a connection
    /// was rotated out: ask for a primed one (the rule `take_idle` applies to the stack).
    pub(crate) fn want_prime_if_stack_empty(&mut self) -> bool {
        if !self.idle.is_empty() || !self.could_prime() {
            return false;
        }
        self.prime_pending = true;
        true
    }

    /// Takes out parked connections unused for longer than `idle_timeout`, oldest first, for
    /// closing, but never below `min_idle` open connections (and never the last one): a quiet
    /// service keeps its floor warm, and what is reaped for idleness is never replaced (no
    /// churn). They stay counted (`closing`) until
    /// `closed` says they are gone.
    pub(crate) fn expire_idle(&mut self, now: Tick) -> Vec<E> {
        let timeout = self.settings.idle_timeout;
        let mut expired = Vec::new();
        // The stack is in release order, so the longest parked sit at the bottom; a primed
        // connection (never released) sits below them however recently it was parked, so the
        // scan goes on past one that is not idle long enough yet.
        let floor = self.settings.min_idle.max(1);
        let mut index = 0;
        while index < self.idle.len() && self.total() - self.closing > floor {
            if now.since(self.idle[index].parked_at) > timeout {
                let idle = self.idle.remove(index);
                self.leases.free(idle.lease);
                self.closing += 1;
                expired.push(idle.item);
            } else {
                index += 1;
            }
        }
        expired
    }

    /// Takes out the parked connections `expired` says are past their lifetime, for closing
    /// (counted in `closing` until `closed`).
    pub(crate) fn take_expired(&mut self, expired: impl Fn(&E) -> bool) -> Vec<E> {
        let mut taken = Vec::new();
        let mut index = 0;
        while index < self.idle.len() {
            if expired(&self.idle[index].item) {
                let idle = self.idle.remove(index);
                self.leases.free(idle.lease);
                self.closing += 1;
                taken.push(idle.item);
            } else {
                index += 1;
            }
        }
        taken
    }

    /// `count` connections taken out for closing (`expire_idle`, `take_expired`, a dead
    /// `check_done`, `discard_closing`, a dead or silent `dropped`) are closed, or the closer gave
    /// up waiting for them: their room is free.
    pub(crate) fn closed(&mut self, count: usize) {
        self.closing -= count;
    }

    /// Takes out the oldest parked connection due for a liveness check in the sweep that
    /// started at `sweep_start` (one at a time, so concurrent callers keep the rest).
    pub(crate) fn take_for_check(&mut self, sweep_start: Tick, now: Tick) -> Option<Checking<E>> {
        let window = self.settings.validate_after;
        let suspect_before = self.suspect_before;
        let index = self.idle.iter().position(|i| {
            i.alive_at < sweep_start
                && (i.alive_at <= suspect_before || now.since(i.alive_at) > window)
        })?;
        self.checking += 1;
        Some(Checking {
            idle: self.idle.remove(index),
        })
    }

    /// The reaper's check of a connection taken by `take_for_check` finished. A live one goes
    /// back to its place by release order; a dead one (or any, once the pool is shut) is returned for closing,
    /// counted in `closing` until `closed`.
    pub(crate) fn check_done(&mut self, checked: Checking<E>, alive: bool, now: Tick) -> Option<E> {
        self.checking -= 1;
        let Checking { mut idle } = checked;
        if self.closed || !alive {
            self.leases.free(idle.lease);
            self.closing += 1;
            if !alive {
                self.suspect_before = now;
            }
            return Some(idle.item);
        }
        idle.alive_at = now;
        self.push_in_order(idle);
        None
    }

    /// Shuts the pool: returns every parked connection for closing and tells every waiter.
    pub(crate) fn close(&mut self) -> Vec<E> {
        self.closed = true;
        self.woken = false;
        for waiter in self.waiters.drain(..) {
            // Replaces a pending `Retry`: the waiter's answer is now `Closed`.
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
}

/// The duties of the paths around the state, checked by both checkers: after every step by the
/// state-machine test and on every unlock by the model checker (`KeyCore::unlock`), and, where
/// they hold only once every thread is done, at quiescence (`KeyCore::quiescence_violation`).
#[cfg(any(test, pool_model))]
impl<E> State<E> {
    /// What must hold at every unlock: the counts users see (`Stats`) add up to what the pool
    /// holds; a shut pool parks nothing and has nobody waiting (a reset, a prime or a check
    /// finishing after `close` must close its connection).
    pub(crate) fn duty_violation(&self) -> Option<String> {
        let counts = self.counts();
        let counted = counts.idle + counts.in_use + counts.resetting + counts.opening;
        if counted != self.total() {
            return Some(format!(
                "the counts users see add up to {counted}, the pool holds {}",
                self.total()
            ));
        }
        if self.closed && !self.idle.is_empty() {
            return Some(format!("{} parked after shutdown", self.idle.len()));
        }
        if self.closed && !self.waiters.is_empty() {
            return Some(format!("{} waiting after shutdown", self.waiters.len()));
        }
        None
    }

    /// Connections open and not on their way out (what `min_idle` counts).
    pub(crate) fn open_count(&self) -> usize {
        self.total() - self.closing
    }
}

/// Duties checked only at quiescence, which only the model checker reaches (the state-machine
/// test has no threads to wait for).
#[cfg(pool_model)]
impl<E> State<E> {
    /// What must hold once no thread is doing anything for the pool: every room counted for
    /// work in flight came back (`resetting`, `opening`, `checking`, `closing` are zero), nobody
    /// waits, and no prime is pending unless it cannot be delivered anyway (the pool is shut,
    /// at its limit, or cannot park): a prime left pending with room would stop the pool from
    /// ever asking the primer again.
    pub(crate) fn quiescence_violation(&self) -> Option<String> {
        let in_flight = [
            ("resetting", self.resetting),
            ("opening", self.opening),
            ("checking", self.checking),
            ("closing", self.closing),
            ("waiting", self.waiters.len()),
        ];
        if let Some((what, count)) = in_flight.iter().find(|(_, count)| *count > 0) {
            return Some(format!("{count} still {what} with nothing in flight"));
        }
        // Every connection the pool holds has its lease record (for the timeout report and
        // leak detection), and a closed one has none: a record freed under the wrong lease
        // leaks one slot and drops another's.
        let records = self.leases.live();
        if records != self.total() {
            return Some(format!(
                "{records} lease records for the {} connections held",
                self.total()
            ));
        }
        if self.prime_pending && self.could_deliver_prime() {
            return Some("a prime is pending with room for it and no primer at work".into());
        }
        None
    }

    fn could_deliver_prime(&self) -> bool {
        self.parks && !self.closed && self.has_room()
    }
}

/// Read-only views for the state-machine test's invariant checks.
#[cfg(all(test, not(pool_model)))]
impl<E> State<E> {
    pub(crate) fn parked(&self) -> impl Iterator<Item = &E> {
        self.idle.iter().map(|i| &i.item)
    }
    /// The stack's release orders, bottom to top.
    pub(crate) fn parked_order(&self) -> impl Iterator<Item = u64> + '_ {
        self.idle.iter().map(|i| i.released)
    }
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }
    pub(crate) fn resetting(&self) -> usize {
        self.resetting
    }
    pub(crate) fn opening(&self) -> usize {
        self.opening
    }
    pub(crate) fn checking(&self) -> usize {
        self.checking
    }
    pub(crate) fn closing(&self) -> usize {
        self.closing
    }
    pub(crate) fn waiters(&self) -> impl Iterator<Item = &Arc<Waiter<E>>> {
        self.waiters.iter()
    }
    pub(crate) fn woken(&self) -> bool {
        self.woken
    }
    pub(crate) fn prime_pending(&self) -> bool {
        self.prime_pending
    }
    pub(crate) fn live_leases(&self) -> usize {
        self.leases.live()
    }
}
