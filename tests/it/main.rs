//! sessiond's black-box suites, in one test binary (one link of the crate and the driver
//! instead of one per suite). Each module is one suite: it starts real servers on loopback
//! ports through `support` and calls them with the generated client, raw HTTP or raw HTTP/2.
//!
//! The CQL suites are ignored by a plain `cargo test`; `scripts/test` starts a node and runs
//! them with `--include-ignored` (and without a node named, they fail). The multi-node suite
//! (`cluster`) needs a cluster of several nodes: `scripts/test` skips it and
//! `scripts/test-cluster` starts one and runs it. `tests/otlp.rs` stays a binary of its own: it
//! installs the process-wide telemetry subscriber.

// Test code fails by panicking, and indexes what it has just asserted the length of.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod conformance;
mod support;

mod admin_http;
mod admission;
mod cluster;
mod cql_faults;
mod cql_settling;
mod embedded_file;
mod gateway;
mod hot_path;
mod idle;
mod keys;
mod lifetimes;
mod races;
mod refresh_grace;
mod replicas;
mod restart_and_crash;
mod rpc;
mod scylla_smoke;
mod security;
mod standard_services;
mod step_up;
mod store_conformance;
