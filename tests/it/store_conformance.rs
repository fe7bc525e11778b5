//! The store conformance suite: the same store-level cases against every backend.
//!
//! `embedded::*` runs the cases on the embedded store, always. `cql::*` runs them on every CQL
//! node named by `SESSIOND_TEST_CQL` (the project's Cassandra node) and `SESSIOND_TEST_SCYLLA`
//! (a ScyllaDB node), each `host:port`, in a fresh keyspace; those tests are ignored by a plain
//! `cargo test` (the listing says so) and run by `scripts/test`, which starts the node and
//! passes `--include-ignored`. With `--include-ignored` and no node named, they fail.
//!
//! Every store runs on a manual clock; the cases under `on_the_clock` also get it and move it,
//! so expiry is decided at the instant the case chooses, on every backend alike.

use crate::conformance;

macro_rules! conformance_tests {
    (
        cases: [$($case:ident),* $(,)?],
        on_the_clock: [$($timed:ident),* $(,)?] $(,)?
    ) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = super::conformance::Backend::embedded();
                    super::conformance::$case(backend.store.clone()).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $timed() {
                    let backend = super::conformance::Backend::embedded();
                    super::conformance::$timed(backend.store.clone(), backend.clock.clone())
                        .await;
                }
            )*
        }

        mod cql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
                async fn $case() {
                    for backend in super::conformance::Backend::cql().await {
                        eprintln!("store conformance: {} on {}", stringify!($case), backend.name);
                        super::conformance::$case(backend.store.clone()).await;
                    }
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
                async fn $timed() {
                    for backend in super::conformance::Backend::cql().await {
                        eprintln!("store conformance: {} on {}", stringify!($timed), backend.name);
                        super::conformance::$timed(backend.store.clone(), backend.clock.clone())
                            .await;
                    }
                }
            )*
        }
    };
}

conformance_tests!(
    cases: [
        create_then_get_round_trips,
        session_and_marks_answer_as_their_two_reads,
        capped_creation_brings_the_users_marks,
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
        capped_creation_keeps_at_most_cap_active_under_races,
        create_get_and_exact_round_trip,
        user_listing,
        sixteen_racing_rotations_have_one_winner,
        revocation,
        paging_and_cursors,
        touches,
        audit_paging,
        writes_carry_their_audit_events,
        ping_and_sweep,
    ],
    // Cases that move the store's manual clock (`Backend::clock`) instead of waiting.
    on_the_clock: [
        expired_and_unknown_sessions_are_absent,
        ping_and_sweep_answer,
        expired_sessions_are_absent,
        not_before_marks,
        capped_creation_counts_only_sessions_the_clock_keeps,
        audit_listing_follows_the_clock,
    ],
);
