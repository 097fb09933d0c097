//! A logging layer that panics on the resetter thread must not kill that thread and strand
//! the connections queued for it (their `resetting` count would never come back, and with a
//! small `max_open` the key would wedge). The subscriber is process-global, so this test has
//! a binary of its own.

mod common;

use std::thread;

use common::after_resets;
use common::engine::{configure, db, open};
use common::fake::{quiet, stats};
use pool::Settings;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Panics on every event logged on a `pool-reset` thread.
struct PanicsOnTheResetter;

impl<S: Subscriber> Layer<S> for PanicsOnTheResetter {
    fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {
        if thread::current().name() == Some("pool-reset") {
            panic!("a logging layer panicked on the resetter thread");
        }
    }
}

#[test]
fn a_panicking_logger_does_not_strand_queued_resets() {
    let subscriber = tracing_subscriber::registry().with(PanicsOnTheResetter);
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let db = db();
    configure(
        &db,
        Settings {
            max_open: 2,
            ..quiet()
        },
    );
    for round in 0..4 {
        let mut conn = open(&db);
        conn.execute("SET leaked", &[]).expect("a statement");
        conn.release().expect("release");
        let s = after_resets(|| stats(&db));
        assert_eq!((s.resetting, s.in_use), (0, 0), "round {round}: {s:?}");
    }
    let s = stats(&db);
    // The reset connection is parked (the primer may have parked a spare beside it).
    assert!((1..=2).contains(&s.idle), "{s:?}");
}
