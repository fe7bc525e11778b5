//! sessiond on a real three-node CQL cluster, with nodes failing under load.
//!
//! Needs the cluster `scripts/cql-cluster` runs: `SESSIOND_TEST_CLUSTER` names its state
//! directory, and every node kill, stop and start goes through the script (which signals only
//! the PIDs it recorded and returns once the cluster's own gossip reports the change, so each
//! step of a test follows what the cluster reports, never a sleep). `scripts/test-cluster`
//! starts a cluster and runs this suite (`cargo test --test it cluster::`). The tests are ignored
//! by a plain `cargo test`, and `scripts/test` skips them; run with `--include-ignored` but
//! without the variable, every one of them fails, naming it.
//!
//! The tests share one cluster, so they take turns (`harness::exclusive`), each starting from
//! every node up and leaving it so.

mod harness;
mod load;
mod multi_node;
mod two_dc;
