//! The conformance suite: what every `pool` driver must do, checked against a real server.
//!
//! A driver crate runs it with a few lines: implement [`Subject`] for a type that owns a
//! private server (from `pool-testservers`) and knows the driver's own probes, then
//!
//! ```ignore
//! pool_conformance::conformance_tests!(MySubject, MySubject::start());
//! ```
//!
//! in one of its integration tests. That generates one `#[test]` per check; the checks share
//! one server, except [`restart_recovery`], which starts its own (it restarts the server).
//!
//! State set through the driver's native client is probed too: override
//! [`Subject::native_probes`] (and, for state a rollback-only release must not hand on,
//! [`Subject::rollback_only_probes`]) to return [`NativeProbe`]s whose `set` is code — usually
//! [`native_mut`]`::<Native, _>(conn)` (or [`native`] for `&self` access) and a command on the
//! driver's own client. Both default to none, so a driver that does not override them runs the
//! two checks with nothing to probe.
//!
//! The checks are driver-level (they call `connect`/`detach`/`attach`/`connected` directly),
//! so a failure names the driver, not the pool. What they pin down:
//!
//! * **reuse** ([`reuse`]): a detached session attaches on another thread as the same session;
//!   an untouched session detaches with no I/O at all (proven through a proxy that swallows
//!   everything); the native client is reachable by its type.
//! * **state** ([`state`]): every piece of session state the driver's probes can set is gone
//!   after a full reset — set through the uniform API ([`Subject::state_probes`]) or through
//!   the native client ([`Subject::native_probes`]) —, a rollback-only reset ends a
//!   transaction but keeps the session, and state the rollback-only cleanup cannot undo
//!   ([`Subject::rollback_only_probes`]) is never handed on.
//! * **faults** ([`faults`]): a session killed by the server is broken and refused by `detach`;
//!   `connected` is bounded on a silent peer; after a server restart old handles are dead and a
//!   fresh connect works.
//! * **deadlines** ([`deadlines`]): a driver that bounds statements stops a slow one in time
//!   with `StatementTimeout`, and leaves the same working session or a broken one that is
//!   never parked; statements within a deadline, or without one, run as usual.
//! * **errors** ([`errors`]): wrong credentials and an unreachable server are clear errors of
//!   the right kind, within the connect timeout, and no password appears in any error or in
//!   `Debug` output.
//! * **TLS** ([`tls`]): for a driver whose [`Subject::tls`] returns a [`TlsSubject`]: verified
//!   connects work (and park and move between threads), the wrong CA, the wrong host and an
//!   expired certificate are refused with clear `Connect` errors, encryption without
//!   verification connects, a plain connect to a TLS-only server is refused, client
//!   certificates log in, `prefer` falls back to plain, a handshake with a silent peer is
//!   bounded and leaves no socket or thread behind, and no secret (password, key passphrase,
//!   key material) appears in an error or `Debug`. A driver whose `tls()` is `None` (the
//!   default) gets a note on stderr for each TLS check, which then passes: the suite never
//!   lets a driver that *claims* TLS skip a case.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod deadlines;
pub mod errors;
pub mod faults;
#[doc(hidden)]
pub mod isolation;
pub mod reuse;
pub mod state;
mod subject;
pub mod tls;

pub use deadlines::*;
pub use errors::*;
pub use faults::*;
/// The TLS test servers' types a [`TlsSubject`] is built from.
pub use pool_testservers::{Preamble, TestPki};
pub use reuse::*;
pub use state::*;
pub use subject::{native, native_mut, NativeProbe, StateProbe, Statement, Subject};
pub use tls::*;

/// Generates one `#[test]` per conformance check for `$subject` (a type implementing
/// [`Subject`]), built by `$start` (an expression, evaluated once for the shared server and
/// once more for the restart check's own server).
#[macro_export]
macro_rules! conformance_tests {
    ($subject:ty, $start:expr) => {
        fn conformance_subject() -> &'static $subject {
            static SUBJECT: ::std::sync::OnceLock<$subject> = ::std::sync::OnceLock::new();
            SUBJECT.get_or_init(|| $start)
        }
        $crate::conformance_tests!(@checks $subject;
            detached_session_moves_between_threads,
            untouched_session_detaches_without_io,
            unchanged_session_detaches_without_io,
            native_client_is_reachable_by_its_type,
            no_session_state_reaches_the_next_user,
            no_native_session_state_reaches_the_next_user,
            rollback_only_ends_the_transaction_and_keeps_the_session,
            rollback_only_never_hands_on_what_it_cannot_undo,
            killed_session_is_broken_and_not_parked,
            connected_is_bounded_on_a_silent_peer,
            statement_past_its_deadline_is_stopped_in_time,
            wrong_password_is_a_clear_error_without_the_password,
            unreachable_server_is_a_clear_error_within_the_timeout,
            passwords_never_appear_in_debug_output,
            tls_verified_connect_works,
            tls_wrong_ca_is_refused,
            tls_wrong_host_is_refused,
            tls_expired_certificate_is_refused,
            tls_without_verification_connects,
            tls_plain_connect_to_tls_only_server_is_refused,
            tls_client_certificate_login_works,
            tls_prefer_falls_back_to_plain,
            tls_errors_and_debug_hold_no_secrets,
            tls_driver_specific_cases,
        );
        #[test]
        fn restart_recovery() {
            let _isolation = $crate::isolation::shared();
            let own: $subject = $start;
            $crate::restart_recovery(&own);
        }
        // Counts the process's threads: takes the suite's lock exclusively itself (see
        // `isolation`), so it is not among the checks that hold it shared.
        #[test]
        fn tls_handshake_with_silent_peer_is_bounded() {
            $crate::tls_handshake_with_silent_peer_is_bounded(conformance_subject());
        }
    };
    (@checks $subject:ty; $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                let _isolation = $crate::isolation::shared();
                $crate::$check(conformance_subject());
            }
        )*
    };
}
