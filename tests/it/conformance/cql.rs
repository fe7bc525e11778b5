//! Which CQL nodes this test run uses: `SESSIOND_TEST_CQL` (the project's Cassandra node) and
//! `SESSIOND_TEST_SCYLLA` (a ScyllaDB node), each `host:port`. Each test gets a fresh keyspace.

#![allow(dead_code)]

use std::sync::Arc;

use sessiond::model::{ManualClock, SystemClock};
use sessiond::store::Store;

/// The CQL backends named in the environment, connected and migrated, with their names and
/// the manual clock each runs on.
pub async fn stores() -> Vec<(String, Arc<dyn Store>, ManualClock)> {
    let mut out = Vec::new();
    for (var, label) in [
        ("SESSIOND_TEST_CQL", "cql"),
        ("SESSIOND_TEST_SCYLLA", "scylladb"),
    ] {
        match std::env::var(var) {
            Ok(addr) if !addr.is_empty() => {
                let clock = ManualClock::starting_now();
                let store = connect(&addr, &clock).await;
                out.push((format!("{label} ({addr})"), store, clock))
            }
            _ => {}
        }
    }
    out
}

/// A fresh keyspace's URI on the node at `addr`.
pub fn fresh_uri(addr: &str) -> String {
    let keyspace = format!("sessiond_test_{}", uuid::Uuid::new_v4().simple());
    format!("scylla://{addr}/{keyspace}?rf=1")
}

async fn connect(addr: &str, clock: &ManualClock) -> Arc<dyn Store> {
    let uri = fresh_uri(addr);
    let mut config = sessiond::Config::new(std::env::temp_dir());
    config.store = uri.parse().expect("store uri");
    config.clock = clock.shared();
    sessiond::store::backend::migrate(&config.store_settings())
        .await
        .expect("migrate");
    let store = sessiond::store::backend::open(&config.store_settings())
        .await
        .expect("connect");
    // Migrating took seconds of real time: the case starts with the clock at the wall
    // clock's instant, as the records it stamps by the wall clock expect.
    clock.set(sessiond::model::Clock::now(&SystemClock));
    store
}
