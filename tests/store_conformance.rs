//! The store conformance suite: the same store-level cases against every backend.
//!
//! The embedded store always runs. The CQL backend runs against the node named by
//! `SESSIOND_TEST_CQL` (and ScyllaDB by `SESSIOND_TEST_SCYLLA`), each `host:port`; when neither
//! is set the output says so, and with `SESSIOND_REQUIRE_CQL=1` a missing node fails the run.

mod conformance;

use conformance::Backend;

macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                for backend in Backend::all().await {
                    eprintln!("store conformance: {} on {}", stringify!($case), backend.name);
                    conformance::$case(backend.store.clone()).await;
                }
            }
        )*
    };
}

conformance_tests!(
    create_then_get_round_trips,
    expired_and_unknown_sessions_are_absent,
    user_listing_is_newest_first_and_scoped,
    rotation_is_compare_and_set,
    concurrent_rotations_have_one_winner,
    revoking_is_idempotent_and_reports_state,
    revoking_many_reports_only_active_ones,
    user_not_before_marks_never_move_back,
    global_not_before_is_monotonic,
    paging_all_users_returns_each_session_once,
    paging_one_user_and_filters,
    bad_cursor_is_rejected,
    touches_update_only_existing_sessions,
    audit_is_newest_first_and_paged,
    ping_and_sweep_answer,
);
