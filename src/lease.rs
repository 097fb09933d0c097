//! Who holds each connection, written without the pool lock.
//!
//! Every open connection has one `LeaseRecord` for its whole life. Whoever leases the
//! connection writes when and where (`open`'s caller) into it, and clears it on release. The
//! writes are relaxed atomic stores (plain moves on x86), so they cost nothing on the hot path
//! and need no lock, which lets the lock-free fast path (the fast slot in `crate::core`) lease connections
//! too. The pool's state keeps every record so that a timeout can say where the longest-held
//! connection was opened; that report is a diagnostic, so a record read while it is being
//! rewritten may mix two leases' fields, never anything worse.

use std::backtrace::Backtrace;
use std::panic::Location;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Tick;
use crate::sync::{lock, AtomicBool, AtomicPtr, AtomicU64, Mutex, Ordering::Relaxed};

/// A connection's slot in the lease table: allocated when the connection is opened, freed when
/// it is closed, so leasing and releasing only write the slot.
pub(crate) type LeaseId = usize;

/// The lease of one connection.
#[derive(Default)]
pub(crate) struct LeaseRecord {
    /// When the current lease began (`Tick` nanoseconds).
    since: AtomicU64,
    /// Where the current lease's `open` was called; only ever a `&'static Location`.
    at: AtomicPtr<Location<'static>>,
    /// Whether the connection is leased now.
    held: AtomicBool,
    /// The current lease was already reported as a possible leak.
    reported: AtomicBool,
    /// The backtrace of the current lease's `open`, captured only while `leak_threshold` is set
    /// (a capture costs microseconds; with the setting off, `open` never touches this).
    origin: Mutex<Option<Arc<Backtrace>>>,
}

/// A lease held longer than `leak_threshold`, for the report.
pub(crate) struct Leak {
    pub(crate) held_for: Duration,
    pub(crate) at: &'static Location<'static>,
    pub(crate) backtrace: Option<String>,
}

impl LeaseRecord {
    /// A caller at `at` leased the connection at `since`.
    #[inline]
    pub(crate) fn begin(&self, since: Tick, at: &'static Location<'static>) {
        self.since.store(since.as_nanos(), Relaxed);
        self.at.store(ptr::from_ref(at).cast_mut(), Relaxed);
        self.reported.store(false, Relaxed);
        self.held.store(true, Relaxed);
    }

    /// Records the backtrace of the current lease's `open` (leak detection on).
    #[cold]
    pub(crate) fn trace_origin(&self) {
        let origin = Arc::new(Backtrace::force_capture());
        *lock(&self.origin) = Some(origin);
    }

    /// The current lease, if it has been held longer than `threshold` at `now` and was not
    /// reported yet (it is then marked reported: each lease is reported once).
    fn overdue(&self, now: Tick, threshold: Duration) -> bool {
        self.current()
            .is_some_and(|(since, _)| now.since(since) > threshold)
            && !self.reported.swap(true, Relaxed)
    }

    /// The report for an overdue lease (formats the backtrace: call without any pool lock).
    pub(crate) fn leak(&self, now: Tick) -> Option<Leak> {
        let (since, at) = self.current()?;
        // Symbols are resolved outside the record's lock: a new lease may be writing it.
        let origin = lock(&self.origin).clone();
        let backtrace = origin.map(|b| b.to_string());
        Some(Leak {
            held_for: now.since(since),
            at,
            backtrace,
        })
    }

    /// The connection was released.
    #[inline]
    pub(crate) fn end(&self) {
        self.held.store(false, Relaxed);
    }

    /// Since when and from where the connection is held, if it is.
    pub(crate) fn current(&self) -> Option<(Tick, &'static Location<'static>)> {
        if !self.held.load(Relaxed) {
            return None;
        }
        let at = self.at.load(Relaxed);
        // SAFETY: `at` is null or was stored from a `&'static Location<'static>` in `begin`,
        // so it points to a location that lives for the whole program and is never written.
        let at = unsafe { at.as_ref() }?;
        Some((Tick::from_nanos(self.since.load(Relaxed)), at))
    }
}

/// The lease record of every open connection of one pool, for the timeout report. Kept in the
/// pool's locked state; a connection's slot is taken when it is opened and freed when it is
/// closed.
#[derive(Default)]
pub(crate) struct Leases {
    records: Vec<Option<Arc<LeaseRecord>>>,
    free: Vec<LeaseId>,
}

impl Leases {
    /// A slot for a new connection's record.
    pub(crate) fn register(&mut self, record: Arc<LeaseRecord>) -> LeaseId {
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
    pub(crate) fn free(&mut self, id: LeaseId) {
        if let Some(slot) = self.records.get_mut(id) {
            if slot.take().is_some() {
                self.free.push(id);
            }
        }
    }

    /// Open connections with a record (the checkers' bookkeeping).
    #[cfg(any(test, pool_model))]
    pub(crate) fn live(&self) -> usize {
        self.records.iter().flatten().count()
    }

    /// The leases held longer than `threshold` and not reported yet (now marked reported).
    pub(crate) fn overdue(&self, now: Tick, threshold: Duration) -> Vec<Arc<LeaseRecord>> {
        self.records
            .iter()
            .flatten()
            .filter(|r| r.overdue(now, threshold))
            .cloned()
            .collect()
    }

    /// Where the longest-held connection was opened, and for how long it has been held.
    pub(crate) fn longest_held(&self, now: Tick) -> Option<(String, Duration)> {
        self.records
            .iter()
            .flatten()
            .filter_map(|r| r.current())
            .min_by_key(|(since, _)| *since)
            .map(|(since, at)| (at.to_string(), now.since(since)))
    }
}

#[cfg(all(test, not(pool_model)))]
mod tests {
    use super::*;

    #[test]
    fn a_record_reports_only_a_current_lease() {
        let record = LeaseRecord::default();
        assert!(record.current().is_none());
        let here = Location::caller();
        record.begin(Tick::from_nanos(42), here);
        assert_eq!(record.current(), Some((Tick::from_nanos(42), here)));
        record.end();
        assert!(record.current().is_none());
    }
}
