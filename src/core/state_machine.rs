//! Randomized state-machine test of the pure core (`State`), plus the deterministic
//! reproductions of the races it exists to catch.
//!
//! A seeded loop plays thousands of random sequences of what the threads around the state do
//! (open, connect finishing or failing, release, release broken, dead on take, a waiter
//! acting on its grant or timing out, reaping, liveness checks, priming, shutdown,
//! reconfiguring, time passing) and after **every** step, exactly as `KeyCore::unlock` does,
//! settles the state and checks the invariants of `state.rs` against the harness's own ground
//! truth: where every connection is, who holds what, who waits.
//!
//! `POOL_STATE_MACHINE_CASES` (default 3000) and `POOL_STATE_MACHINE_STEPS` (default 300) set
//! the depth; a failure prints the seed, and `POOL_STATE_MACHINE_SEED` replays one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::reservation::Reservation;
use super::state::{
    Acquire, Checking, Decided, Dropped, PrimeStart, Released, Retried, State, Taken,
};
use super::waiter::{Grant, Waiter};
use super::NEVER_RELEASED;
use crate::clock::Tick;
use crate::lease::{LeaseId, LeaseRecord};
use crate::settings::Settings;

/// A tiny deterministic generator (xorshift64*), so a seed replays a sequence exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A connection is a number; the harness knows where each one is.
type Id = u32;

struct Harness {
    state: State<Id>,
    now: Tick,
    next_id: Id,
    /// Connections in callers' hands, with their lease.
    held: Vec<(Id, LeaseId)>,
    /// Released connections whose reset runs (on the resetter), with their lease and release
    /// order.
    resetting: Vec<(Id, LeaseId, u64)>,
    /// The release counter (`KeyCore::release_order`): each release and each prime takes
    /// the next number.
    releases: u64,
    /// Caller connects in flight.
    connecting: Vec<Reservation>,
    /// The primer's connect in flight.
    priming: Option<Reservation>,
    /// Connections the reaper has taken out to check.
    checking: Vec<Checking<Id>>,
    /// Connections taken out for closing whose close has not finished.
    closing: Vec<Id>,
    /// Connections closed for good.
    closed: BTreeSet<Id>,
    /// Callers waiting at the limit (queued, or served and not yet back).
    waiting: Vec<Arc<Waiter<Id>>>,
    /// Leases of open connections (for checking the lease table).
    leases: HashMap<Id, LeaseId>,
    shut: bool,
    total_before: usize,
}

impl Harness {
    fn new(max_open: usize) -> Self {
        let settings = Settings {
            max_open,
            idle_timeout: Duration::from_millis(5),
            validate_after: Duration::from_millis(3),
            ..Settings::default()
        };
        Self {
            state: State::new(settings, true),
            now: Tick::from_nanos(1_000_000_000),
            next_id: 0,
            held: Vec::new(),
            resetting: Vec::new(),
            releases: 0,
            connecting: Vec::new(),
            priming: None,
            checking: Vec::new(),
            closing: Vec::new(),
            closed: BTreeSet::new(),
            waiting: Vec::new(),
            leases: HashMap::new(),
            shut: false,
            total_before: 0,
        }
    }

    fn new_connection(&mut self) -> (Id, Arc<LeaseRecord>) {
        self.next_id += 1;
        (self.next_id, Arc::default())
    }

    /// The next release order.
    fn release_order(&mut self) -> u64 {
        self.releases += 1;
        self.releases
    }

    fn close_for_good(&mut self, id: Id) {
        self.leases.remove(&id);
        assert!(self.closed.insert(id), "connection {id} closed twice");
    }

    /// A caller got `taken`: it holds it now.
    fn take(&mut self, taken: Taken<Id>) {
        if taken.prime {
            assert!(
                self.priming.is_none(),
                "a prime was asked while one is pending"
            );
        }
        self.held.push((taken.item, taken.lease));
    }

    /// What a caller does with a decision (as `KeyCore::decide` would).
    fn apply(&mut self, acquire: Acquire<Id>, held_by_caller: usize) {
        match acquire {
            Acquire::Take(taken) => self.take(taken),
            Acquire::Connect(reservation) => self.connecting.push(reservation),
            Acquire::Closed => assert!(self.shut, "Closed from an open pool"),
            Acquire::WaitForReset { prime } => {
                assert!(
                    self.state.resetting() > 0,
                    "told to wait for a reset with none in flight"
                );
                if prime {
                    assert!(
                        self.priming.is_none(),
                        "a prime was asked while one is pending"
                    );
                }
                let waiter = Arc::new(Waiter::new(self.now));
                self.state.enqueue(Arc::clone(&waiter));
                self.waiting.push(waiter);
            }
            Acquire::Wait => {
                assert!(
                    self.state.total() >= self.state.settings.max_open,
                    "told to wait with room: total {} < max_open {}",
                    self.state.total(),
                    self.state.settings.max_open
                );
                if self.state.would_deadlock(held_by_caller) {
                    self.assert_true_deadlock(held_by_caller);
                } else if let Some(waiting) = self.state.queue_full() {
                    let max = self.state.settings.max_waiting;
                    assert!(
                        max.is_some_and(|max| waiting >= max),
                        "shed below max_waiting"
                    );
                } else {
                    let waiter = Arc::new(Waiter::new(self.now));
                    self.state.enqueue(Arc::clone(&waiter));
                    self.waiting.push(waiter);
                }
            }
        }
    }

    /// `WouldDeadlock` is right only if nothing can ever reach the caller: nothing parked,
    /// opening, checked or closing, nothing in any waiter's hands, and every connection in use
    /// held by the caller.
    fn assert_true_deadlock(&self, held_by_caller: usize) {
        let parked = self.state.parked().count();
        let in_slots = self
            .waiting
            .iter()
            .filter(|w| w.peek(|g| matches!(g, Some(Grant::Item(..) | Grant::Permit(_)))))
            .count();
        assert!(
            parked == 0
                && self.resetting.is_empty()
                && self.connecting.is_empty()
                && self.priming.is_none()
                && self.checking.is_empty()
                && self.closing.is_empty()
                && in_slots == 0
                && held_by_caller >= self.held.len(),
            "false WouldDeadlock: parked {parked}, connecting {}, checking {}, closing {}, \
             granted waiters {in_slots}, held {} of which the caller {held_by_caller}",
            self.connecting.len(),
            self.checking.len(),
            self.closing.len(),
            self.held.len(),
        );
    }

    fn decided(&mut self, decided: Decided<Id>) {
        match decided {
            Decided::Take(taken) => self.take(taken),
            Decided::Connect(reservation) => self.connecting.push(reservation),
            Decided::Closed => assert!(self.shut, "a waiter was told Closed by an open pool"),
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        match rng.below(20) {
            // A newcomer opens (holding nothing, or everything held: the re-entrant case).
            0 | 1 => {
                let held = if rng.chance(30) { self.held.len() } else { 0 };
                let acquire = self.state.acquire(self.now);
                self.apply(acquire, held);
            }
            // A caller's connect finishes.
            2 => {
                if let Some(reservation) = pop_random(&mut self.connecting, rng) {
                    if rng.chance(80) {
                        let (id, record) = self.new_connection();
                        match self.state.connected(reservation, record) {
                            Some(lease) => {
                                self.leases.insert(id, lease);
                                self.held.push((id, lease));
                            }
                            None => {
                                assert!(self.shut, "a connect refused by an open pool");
                                self.closed.insert(id);
                            }
                        }
                    } else {
                        self.state.connect_failed(reservation, "refused".into());
                    }
                }
            }
            // A holder releases a healthy connection: parked at once (nothing to reset), or
            // handed to the resetter.
            3 | 4 => {
                if let Some((id, lease)) = pop_random(&mut self.held, rng) {
                    let order = self.release_order();
                    if rng.chance(50) {
                        self.state.begin_reset();
                        self.resetting.push((id, lease, order));
                    } else if let Released::Close(id) =
                        self.state.release(id, lease, self.now, order)
                    {
                        assert!(self.shut, "release closed a connection of an open pool");
                        self.close_for_good(id);
                    }
                }
            }
            // A reset finishes: parked, or (failed) closed.
            17 | 18 => {
                if let Some((id, lease, order)) = pop_random(&mut self.resetting, rng) {
                    if rng.chance(80) {
                        if let Released::Close(id) =
                            self.state.reset_done(id, lease, self.now, order)
                        {
                            assert!(self.shut, "a reset connection closed by an open pool");
                            self.close_for_good(id);
                        }
                    } else {
                        self.close_for_good(id);
                        self.state
                            .reset_failed(lease, rng.chance(50).then_some(self.now));
                    }
                }
            }
            // A waiter's patience with the resets runs out.
            19 => {
                if self.waiting.is_empty() {
                    return;
                }
                let index = rng.below(self.waiting.len());
                let waiter = Arc::clone(&self.waiting[index]);
                if let Retried::Decided(decided) = self.state.impatient(&waiter, self.now) {
                    self.waiting.swap_remove(index);
                    self.decided(decided);
                }
            }
            // A holder's connection broke: closed on the spot, or handed to the closer thread
            // (counted until its close finishes).
            5 => {
                if let Some((id, lease)) = pop_random(&mut self.held, rng) {
                    if rng.chance(50) {
                        self.close_for_good(id);
                        self.state.discard(lease, Some(self.now));
                    } else {
                        self.state.discard_closing(lease, self.now);
                        self.leases.remove(&id);
                        self.closing.push(id);
                    }
                }
            }
            // `open` found the connection it took dead: it decides again, ahead of the queue.
            6 => {
                if let Some((id, lease)) = pop_random(&mut self.held, rng) {
                    let why = [Dropped::Dead, Dropped::Silent, Dropped::Aged][rng.below(3)];
                    let evicted = self.state.dropped(lease, self.now, why);
                    if why == Dropped::Aged {
                        self.close_for_good(id);
                    } else {
                        // The closer thread closes it; its room stays counted until then.
                        self.leases.remove(&id);
                        self.closing.push(id);
                    }
                    for parked in evicted {
                        assert_eq!(why, Dropped::Silent, "only a silent drop evicts");
                        self.leases.remove(&parked);
                        self.closing.push(parked);
                    }
                    let acquire = self.state.retry_after_dropped(self.now, why);
                    self.apply(acquire, 0);
                }
            }
            // A waiter wakes and acts on what is in its slot.
            7 | 8 => {
                if self.waiting.is_empty() {
                    return;
                }
                let index = rng.below(self.waiting.len());
                let waiter = Arc::clone(&self.waiting[index]);
                match waiter.take() {
                    None => {}
                    Some(Grant::Retry) => match self.state.retry(&waiter, self.now) {
                        Retried::Decided(decided) => {
                            self.waiting.swap_remove(index);
                            self.decided(decided);
                        }
                        Retried::StillWaiting => {}
                    },
                    Some(grant) => {
                        self.waiting.swap_remove(index);
                        let decided = State::decided(grant).expect("a final grant");
                        self.decided(decided);
                    }
                }
            }
            // A waiter's deadline passes.
            9 => {
                if let Some(waiter) = pop_random(&mut self.waiting, rng) {
                    if let Some(decided) = self.state.cancel_wait(&waiter) {
                        self.decided(decided);
                    }
                }
            }
            // The reaper expires idle connections (or rotates old ones: here, odd ids); their
            // close finishes later.
            10 => {
                let taken = if rng.chance(70) {
                    let (open_before, floor) =
                        (self.state.open_count(), self.state.settings.min_idle.max(1));
                    let expired = self.state.expire_idle(self.now);
                    assert!(
                        self.state.open_count() >= open_before.min(floor),
                        "idle expiry went from {open_before} open to {}, below min_idle {floor}",
                        self.state.open_count()
                    );
                    expired
                } else {
                    self.state.take_expired(|id| id % 2 == 1)
                };
                for id in taken {
                    self.leases.remove(&id);
                    self.closing.push(id);
                }
            }
            // A close finishes.
            11 => {
                if let Some(id) = pop_random(&mut self.closing, rng) {
                    self.closed.insert(id);
                    self.state.closed(1);
                }
            }
            // The reaper takes one connection out to check, or a check finishes.
            12 => {
                if rng.chance(50) {
                    if let Some(checked) = self.state.take_for_check(self.now, self.now) {
                        self.checking.push(checked);
                    }
                } else if let Some(checked) = pop_random(&mut self.checking, rng) {
                    let id = checked.idle.item;
                    if let Some(id) = self.state.check_done(checked, rng.chance(70), self.now) {
                        self.leases.remove(&id);
                        self.closing.push(id);
                    } else {
                        assert!(self.state.parked().any(|p| *p == id), "checked {id} lost");
                    }
                }
            }
            // The primer: asked by the reaper rule, starts, finishes.
            13 => match self.priming.take() {
                None => {
                    let _ = self.state.want_prime_below_floor();
                    if let PrimeStart::Go(reservation) = self.state.prime_begin() {
                        self.priming = Some(reservation);
                    }
                }
                Some(reservation) => {
                    if rng.chance(80) {
                        let (id, record) = self.new_connection();
                        let order = NEVER_RELEASED;
                        if let Released::Close(id) =
                            self.state
                                .prime_done(reservation, id, record, self.now, order)
                        {
                            assert!(self.shut);
                            self.closed.insert(id);
                        }
                    } else {
                        self.state.prime_failed(reservation, "refused".into());
                    }
                }
            },
            // Time passes (the hand-off window is 1 ms, validation 3 ms, idle expiry 5 ms).
            14 => self.now = self.now + Duration::from_micros(rng.below(2500) as u64),
            // The limit changes.
            15 => {
                let max_open = 1 + rng.below(4);
                let settings = Settings {
                    max_open,
                    max_waiting: rng.chance(30).then(|| rng.below(3)),
                    min_idle: rng.below(3).min(max_open),
                    ..self.state.settings.clone()
                };
                self.state.reconfigure(settings);
            }
            // Shutdown (rarely).
            _ => {
                if rng.chance(3) {
                    self.shut = true;
                    for id in self.state.close() {
                        self.close_for_good(id);
                    }
                }
            }
        }
    }

    /// What `KeyCore::unlock` does after every locked change, then every invariant.
    fn settle_and_check(&mut self) {
        let mirrors = self.state.settle();
        for waiter in self.state.take_wakes() {
            assert!(
                waiter.peek(|g| g.is_some()),
                "a waiter was woken with nothing"
            );
        }
        let state = &self.state;
        let max_open = state.settings.max_open;
        let total = state.total();

        // 1. The limit: never exceeded, and never grown while above a lowered limit.
        assert!(
            total <= max_open || total <= self.total_before,
            "over the limit: total {total}, max_open {max_open}, before {}",
            self.total_before
        );
        self.total_before = total;

        // 3. Conservation: the counts match where the harness knows each connection is.
        let granted_items = self
            .waiting
            .iter()
            .filter(|w| w.peek(|g| matches!(g, Some(Grant::Item(..)))))
            .count();
        let granted_permits = self
            .waiting
            .iter()
            .filter(|w| w.peek(|g| matches!(g, Some(Grant::Permit(_)))))
            .count();
        assert_eq!(state.in_use(), self.held.len() + granted_items, "in_use");
        assert_eq!(
            state.opening(),
            self.connecting.len() + usize::from(self.priming.is_some()) + granted_permits,
            "opening"
        );
        assert_eq!(state.checking(), self.checking.len(), "checking");
        assert_eq!(state.resetting(), self.resetting.len(), "resetting");
        assert_eq!(state.closing(), self.closing.len(), "closing");
        let mut seen = BTreeSet::new();
        let parked: Vec<Id> = state.parked().copied().collect();
        let in_slots: Vec<Id> = self
            .waiting
            .iter()
            .filter_map(|w| {
                w.peek(|g| match g {
                    Some(Grant::Item(id, _)) => Some(*id),
                    _ => None,
                })
            })
            .collect();
        let everywhere = parked
            .iter()
            .chain(&in_slots)
            .chain(self.held.iter().map(|(id, _)| id))
            .chain(self.resetting.iter().map(|(id, _, _)| id))
            .chain(self.checking.iter().map(|c| &c.idle.item))
            .chain(&self.closing)
            .chain(&self.closed);
        for id in everywhere {
            assert!(seen.insert(*id), "connection {id} is in two places");
        }
        assert_eq!(seen.len(), self.next_id as usize, "a connection was lost");
        let open = parked.len()
            + in_slots.len()
            + self.held.len()
            + self.resetting.len()
            + self.checking.len();
        assert_eq!(state.live_leases(), open, "lease table");

        // 2. No lost wake-up: someone waits only while nothing can be handed to them.
        let queued: Vec<&Arc<Waiter<Id>>> = state.waiters().collect();
        for waiter in &self.waiting {
            let in_queue = queued.iter().any(|q| Arc::ptr_eq(q, waiter));
            let answered = waiter.peek(|g| matches!(g, Some(g) if !matches!(g, Grant::Retry)));
            assert!(
                in_queue != answered,
                "a waiter is both queued and answered, or neither"
            );
        }
        if !mirrors.closed {
            if let Some(front) = queued.first() {
                if parked.is_empty() {
                    assert!(
                        total >= max_open || queued.len() <= state.resetting(),
                        "room under the limit while {} wait and {} resets are in flight",
                        queued.len(),
                        state.resetting()
                    );
                } else {
                    assert!(
                        state.woken() && front.peek(|g| matches!(g, Some(Grant::Retry))),
                        "{} parked while {} wait and the front one was not woken",
                        parked.len(),
                        queued.len()
                    );
                }
            }
        }

        // 5. LIFO by release order: the stack is sorted by it, newest on top, however the
        // resets finished.
        let order: Vec<u64> = state.parked_order().collect();
        assert!(
            order.windows(2).all(|pair| pair[0] <= pair[1]),
            "the stack is not in release order: {order:?}"
        );
        assert_eq!(mirrors.top_released, order.last().copied().unwrap_or(0));

        // The duties: a shut pool parks nothing and has nobody waiting.
        if let Some(broken) = state.duty_violation() {
            panic!("{broken}");
        }

        // The mirrors say what the state says.
        assert_eq!(mirrors.waiting, !queued.is_empty());
        assert_eq!(mirrors.stack_empty, parked.is_empty());
        if mirrors.could_prime {
            assert!(!state.prime_pending() && total < max_open && !mirrors.closed);
        }
    }
}

fn pop_random<T>(items: &mut Vec<T>, rng: &mut Rng) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    let index = rng.below(items.len());
    Some(items.swap_remove(index))
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_case(seed: u64, steps: u64) {
    let mut rng = Rng(seed | 1);
    let mut harness = Harness::new(1 + rng.below(3));
    for step in 0..steps {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            harness.step(&mut rng);
            harness.settle_and_check();
        }));
        if let Err(panic) = outcome {
            eprintln!("state machine failed: seed {seed}, step {step} (replay with POOL_STATE_MACHINE_SEED={seed})");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn random_sequences_keep_every_invariant() {
    let steps = env("POOL_STATE_MACHINE_STEPS", 300);
    if let Ok(seed) = std::env::var("POOL_STATE_MACHINE_SEED") {
        run_case(seed.parse().expect("a numeric seed"), steps);
        return;
    }
    let cases = env("POOL_STATE_MACHINE_CASES", 3000);
    for case in 0..cases {
        run_case(0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(case + 1), steps);
    }
}

// ---- The races the state machine exists for, as fixed scenarios --------------------------

/// Connections 1..=`count`, connected and in use.
fn connect(state: &mut State<Id>, count: Id, now: Tick) -> Vec<(Id, LeaseId)> {
    let held = (1..=count)
        .map(|id| {
            let Acquire::Connect(reservation) = state.acquire(now) else {
                panic!("room for {count}");
            };
            let lease = state.connected(reservation, Arc::default());
            (id, lease.expect("the pool is open"))
        })
        .collect();
    state.settle();
    held
}

fn two_in_use() -> (State<Id>, Tick, Vec<(Id, LeaseId)>) {
    let settings = Settings {
        max_open: 2,
        ..Settings::default()
    };
    let mut state = State::new(settings, true);
    let now = Tick::from_nanos(1_000_000_000);
    let held = connect(&mut state, 2, now);
    (state, now, held)
}

/// Bug 1: with A and B in use and W1, W2 waiting, A is released while W1 is inside its barging
/// window (parked, W1 woken), then B is released once W1 starves (handed to W1 directly, which
/// replaces its wake-up). A must not stay parked with W2 asleep.
#[test]
fn handing_to_a_starving_front_waiter_passes_the_wake_up_on() {
    let (mut state, now, held) = two_in_use();
    let (w1, w2) = (Arc::new(Waiter::new(now)), Arc::new(Waiter::new(now)));
    state.enqueue(Arc::clone(&w1));
    state.enqueue(Arc::clone(&w2));
    state.settle();
    let _ = state.release(held[0].0, held[0].1, now, 1);
    state.settle();
    assert!(w1.peek(|g| matches!(g, Some(Grant::Retry))));
    let later = now + Duration::from_millis(2);
    let _ = state.release(held[1].0, held[1].1, later, 2);
    state.settle();
    assert!(w1.peek(|g| matches!(g, Some(Grant::Item(2, _)))));
    assert!(
        w2.peek(|g| matches!(g, Some(Grant::Retry))),
        "connection 1 is parked and W2 was never woken to take it"
    );
}

/// Bug 2: idle 1, in use 1, waiting 1 (a connection parked while the front waiter starves):
/// the thread holding the other connection must wait (and will be served), not be refused.
#[test]
fn a_parked_connection_means_waiting_cannot_deadlock() {
    let (mut state, now, held) = two_in_use();
    let front = Arc::new(Waiter::new(now));
    state.enqueue(Arc::clone(&front));
    state.settle();
    let _ = state.release(held[0].0, held[0].1, now, 1);
    state.settle();
    let later = now + Duration::from_millis(2);
    assert!(matches!(state.acquire(later), Acquire::Wait));
    assert!(
        !state.would_deadlock(1),
        "refused with a connection parked and one waiter ahead"
    );
}

/// Room freed by several closes at once reaches as many waiters.
#[test]
fn every_slot_freed_by_expiry_reaches_a_waiter() {
    let settings = Settings {
        max_open: 3,
        idle_timeout: Duration::from_millis(1),
        ..Settings::default()
    };
    let mut state: State<Id> = State::new(settings, true);
    let now = Tick::from_nanos(1_000_000_000);
    let mut leases = connect(&mut state, 3, now);
    for (id, lease) in leases.drain(..2) {
        let _ = state.release(id, lease, now, u64::from(id));
    }
    state.settle();
    // Two parked and idle, one in use; the holder keeps it and two callers wait (after the
    // parked ones were taken by the reaper's expiry below).
    let later = now + Duration::from_millis(5);
    let expired = state.expire_idle(later);
    assert_eq!(expired.len(), 2);
    let (a, b) = (Arc::new(Waiter::new(later)), Arc::new(Waiter::new(later)));
    state.enqueue(Arc::clone(&a));
    state.enqueue(Arc::clone(&b));
    state.settle();
    assert!(
        a.peek(|g| g.is_none()),
        "no room before the closes finished"
    );
    state.closed(expired.len());
    state.settle();
    assert!(a.peek(|g| matches!(g, Some(Grant::Permit(_)))));
    assert!(b.peek(|g| matches!(g, Some(Grant::Permit(_)))));
}

/// A driver that cannot detach: nothing can be parked, so nothing is ever primed.
#[test]
fn a_pool_that_cannot_park_never_primes() {
    let mut state: State<Id> = State::new(Settings::default(), false);
    assert!(!state.settle().could_prime);
    assert!(!state.want_prime_below_floor());
    assert!(matches!(state.prime_begin(), PrimeStart::NotNeeded));
}

/// Background reset: a caller that finds only a connection being reset waits for it (even
/// with room to connect) and gets it once the reset is done, never before.
#[test]
fn an_open_during_a_reset_waits_for_it_instead_of_connecting() {
    let (mut state, now, held) = two_in_use();
    state.reconfigure(Settings {
        max_open: 3,
        ..state.settings.clone()
    });
    let (id, lease) = held[0];
    state.begin_reset();
    state.settle();
    let Acquire::WaitForReset { .. } = state.acquire(now) else {
        panic!("an open with room connected while a reset was in flight");
    };
    let waiter = Arc::new(Waiter::new(now));
    state.enqueue(Arc::clone(&waiter));
    state.settle();
    assert!(
        waiter.peek(|g| g.is_none()),
        "the waiter was served while the only spare connection was still being reset"
    );
    let _ = state.reset_done(id, lease, now, 1);
    state.settle();
    assert!(waiter.peek(|g| matches!(g, Some(Grant::Retry))));
    let _ = waiter.take();
    let Retried::Decided(Decided::Take(taken)) = state.retry(&waiter, now) else {
        panic!("the woken waiter did not get the reset connection");
    };
    assert_eq!(taken.item, id);
}

/// A reset that hangs: after its patience the waiter connects with the free room.
#[test]
fn an_impatient_waiter_connects_when_a_reset_hangs() {
    let (mut state, now, _held) = two_in_use();
    state.reconfigure(Settings {
        max_open: 3,
        ..state.settings.clone()
    });
    state.begin_reset();
    state.settle();
    assert!(matches!(state.acquire(now), Acquire::WaitForReset { .. }));
    let waiter = Arc::new(Waiter::new(now));
    state.enqueue(Arc::clone(&waiter));
    state.settle();
    let Retried::Decided(Decided::Connect(reservation)) = state.impatient(&waiter, now) else {
        panic!("an impatient waiter with room did not get to connect");
    };
    assert!(state.connected(reservation, Arc::default()).is_some());
    state.settle();
    assert_eq!(state.waiters().count(), 0);
}

/// More waiters than resets in flight: the extra ones get permits at once.
#[test]
fn waiters_beyond_the_resets_in_flight_get_room() {
    let (mut state, now, _held) = two_in_use();
    state.reconfigure(Settings {
        max_open: 4,
        ..state.settings.clone()
    });
    state.begin_reset();
    let (w1, w2) = (Arc::new(Waiter::new(now)), Arc::new(Waiter::new(now)));
    state.enqueue(Arc::clone(&w1));
    state.enqueue(Arc::clone(&w2));
    state.settle();
    let permits = [&w1, &w2]
        .iter()
        .filter(|w| w.peek(|g| matches!(g, Some(Grant::Permit(_)))))
        .count();
    assert_eq!(
        permits, 1,
        "one waiter is served by the reset, the other by room"
    );
}

/// `Acquire::Wait` means "at the limit" (the caller queues without patience). With a reset in
/// flight, one caller already waiting for it, and room for two more connections, a newcomer
/// is told `Wait`: it queues with no `RESET_PATIENCE`, its arrival hands the room to the front
/// waiter (waiters > resetting), and it is left counting on the reset until `acquire_timeout`.
#[test]
fn a_newcomer_with_room_is_never_told_to_wait_without_patience() {
    let (mut state, now, _held) = two_in_use();
    state.reconfigure(Settings {
        max_open: 4,
        ..state.settings.clone()
    });
    state.begin_reset();
    state.settle();
    assert!(matches!(state.acquire(now), Acquire::WaitForReset { .. }));
    let a = Arc::new(Waiter::new(now));
    state.enqueue(Arc::clone(&a));
    state.settle();
    let plain_wait = matches!(state.acquire(now), Acquire::Wait);
    assert!(
        !(plain_wait && state.total() < state.settings.max_open),
        "told to wait as if at the limit with total {} < max_open {}",
        state.total(),
        state.settings.max_open
    );
}

/// `max_waiting: Some(1)`: one caller waiting for a reset, room for two more connections; the
/// next caller is told `Wait` and the queue is full, so `KeyCore::wait` sheds it with
/// `TooManyWaiting` although the pool is far from its limit.
#[test]
fn a_reset_in_flight_never_sheds_a_newcomer_while_there_is_room() {
    let (mut state, now, _held) = two_in_use();
    state.reconfigure(Settings {
        max_open: 4,
        max_waiting: Some(1),
        ..state.settings.clone()
    });
    state.begin_reset();
    state.settle();
    assert!(matches!(state.acquire(now), Acquire::WaitForReset { .. }));
    let a = Arc::new(Waiter::new(now));
    state.enqueue(Arc::clone(&a));
    state.settle();
    let shed = matches!(state.acquire(now), Acquire::Wait) && state.queue_full().is_some();
    assert!(
        !shed,
        "shed with total {} < max_open {}",
        state.total(),
        state.settings.max_open
    );
}
