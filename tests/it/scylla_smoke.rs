//! The ScyllaDB backend against a real CQL node (`SESSIOND_TEST_CQL=host:port`, e.g. the node
//! `scripts/cql-node start` prints). Ignored by a plain `cargo test`; `scripts/test` runs it with
//! `--include-ignored`, and without a node named it fails. Each run uses a fresh random keyspace and drops it
//! when every check passed (a failed run leaves it for inspection).
//!
//! What only this backend has: the schema before and after `migrate`, and the revocation feed
//! with its cursors. Every other store case runs on both backends in the conformance suite
//! (`store_conformance`, cases in `conformance/`). The checks share one keyspace and one
//! runtime, because a driver session belongs to the runtime that created it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use sessiond::model::SystemClock;
use sessiond::model::ids::SessionId;
use sessiond::model::time::Timestamp;
use sessiond::store::scylla::{ScyllaConfig, ScyllaStore};
use sessiond::store::{Store, StoreError};

const HOUR: Duration = Duration::from_secs(3600);

fn node() -> String {
    std::env::var("SESSIOND_TEST_CQL")
        .ok()
        .filter(|addr| !addr.is_empty())
        .expect("SESSIOND_TEST_CQL must name a CQL node (scripts/test starts one)")
}

#[test]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
fn scylla_backend_against_a_real_node() {
    let addr = node();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let raw = SessionBuilder::new()
            .known_node(&addr)
            .build()
            .await
            .expect("raw session");
        print_backend(&raw).await;
        let keyspace = format!("sessiond_smoke_{}", uuid::Uuid::new_v4().simple());
        let store = Arc::new(unmigrated_store_then_migrate(&addr, &keyspace).await);
        let started = Instant::now();
        macro_rules! check {
            ($($name:ident),* $(,)?) => {$(
                let t = Instant::now();
                $name(&store).await;
                eprintln!("scylla smoke: {} ok ({:?})", stringify!($name), t.elapsed());
            )*};
        }
        // The feed is for stores that replicas share; the embedded store has none.
        let shared: Arc<dyn Store> = store.clone();
        crate::conformance::detailed::revocation_feed(shared).await;
        eprintln!("scylla smoke: revocation_feed ok");
        check!(feed_cursors_are_scylla_cursors);
        eprintln!("scylla smoke: all checks passed in {:?}", started.elapsed());
        raw.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
            .await
            .expect("drop keyspace");
    });
}

async fn print_backend(raw: &Session) {
    let version = raw
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .ok()
        .and_then(|r| r.into_rows_result().ok())
        .and_then(|r| r.maybe_first_row::<(String,)>().ok().flatten());
    eprintln!("scylla smoke: backend release_version {version:?}");
}

async fn unmigrated_store_then_migrate(addr: &str, keyspace: &str) -> ScyllaStore {
    let config = ScyllaConfig::from_uri(&format!(
        "scylla://{addr}/{keyspace}?rf=1&request_timeout=10s"
    ))
    .expect("uri");
    let store = ScyllaStore::connect(config, SystemClock::shared())
        .await
        .expect("connect");
    // Before migrate, operations fail and say why.
    match store.get_session(SessionId::new()).await {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("migrate"), "{msg}"),
        other => panic!("expected a schema error before migrate, got {other:?}"),
    }
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate again is a no-op");
    store.check_schema().await.expect("schema current");
    store
}

async fn feed_cursors_are_scylla_cursors(store: &Arc<ScyllaStore>) {
    // A cursor older than the feed's reach is a gap (cursor layout: version 1, polled-at and
    // floor micros, no seen ids).
    let mut old = vec![1u8];
    let an_hour_ago = Timestamp::now().minus(HOUR).as_micros().to_be_bytes();
    old.extend_from_slice(&an_hour_ago);
    old.extend_from_slice(&an_hour_ago);
    old.extend_from_slice(&0u16.to_be_bytes());
    let gap = store.poll_revocations(Some(&old)).await.expect("poll old");
    assert!(gap.gap && gap.events.is_empty());
    assert!(matches!(
        store.poll_revocations(Some(b"junk")).await,
        Err(StoreError::BadCursor)
    ));
}
