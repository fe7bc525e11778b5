//! The CQL store's compare-and-sets when their outcome is not known: a reply lost after the
//! write landed, a read-back that fails, a node that refuses. On a real cluster these happen
//! under load while a node restarts; here the store's fault hooks (`CasFaults`) place them on
//! the exact call, on a real CQL node (`SESSIOND_TEST_CQL`, and `SESSIOND_TEST_SCYLLA` when
//! set). Ignored by a plain `cargo test`; `scripts/test` runs them with `--include-ignored`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessiond::model::SystemClock;
use sessiond::model::ids::TenantId;
use sessiond::model::records::{AuditRecord, SessionRecord};
use sessiond::model::time::Timestamp;
use sessiond::store::scylla::{CasFault, CasPoint, ScyllaConfig, ScyllaStore};
use sessiond::store::{Rotation, Store, StoreError};

use crate::conformance::{self, hash, step};

const HOUR: Duration = Duration::from_secs(3600);

/// Faults to hand out per point, in order (then none), and how many statements reached each.
#[derive(Default)]
struct Script {
    planned: HashMap<CasPoint, VecDeque<CasFault>>,
    always: HashMap<CasPoint, CasFault>,
    reached: HashMap<CasPoint, u32>,
}

type Shared = Arc<Mutex<Script>>;

fn plan(script: &Shared, point: CasPoint, faults: &[CasFault]) {
    let mut s = script.lock().expect("script");
    s.planned.insert(point, faults.iter().copied().collect());
    s.reached.clear();
}

fn reached(script: &Shared, point: CasPoint) -> u32 {
    let s = script.lock().expect("script");
    s.reached.get(&point).copied().unwrap_or(0)
}

/// A store on each named CQL node, in a fresh keyspace, with faults from its script.
async fn stores() -> Vec<(String, Arc<dyn Store>, Shared)> {
    let mut out = Vec::new();
    for var in ["SESSIOND_TEST_CQL", "SESSIOND_TEST_SCYLLA"] {
        let Some(addr) = std::env::var(var).ok().filter(|a| !a.is_empty()) else {
            continue;
        };
        let config = ScyllaConfig::from_uri(&conformance::cql::fresh_uri(&addr)).expect("uri");
        let mut store = ScyllaStore::connect(config, SystemClock::shared())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let script: Shared = Arc::default();
        let decide = script.clone();
        store.inject_cas_faults(Arc::new(move |point| {
            let mut s = decide.lock().ok()?;
            *s.reached.entry(point).or_default() += 1;
            if let Some(fault) = s.always.get(&point) {
                return Some(*fault);
            }
            s.planned.get_mut(&point).and_then(VecDeque::pop_front)
        }));
        out.push((
            format!("{var}={addr}"),
            Arc::new(store) as Arc<dyn Store>,
            script,
        ));
    }
    assert!(
        !out.is_empty(),
        "no CQL node named: set SESSIOND_TEST_CQL (scripts/test starts one) or SESSIOND_TEST_SCYLLA"
    );
    out
}

fn fresh_session() -> SessionRecord {
    conformance::session(
        &conformance::user(),
        &TenantId::none(),
        Duration::ZERO,
        HOUR,
    )
}

fn audit_of(r: &SessionRecord, kind: &str) -> AuditRecord {
    AuditRecord {
        event_id: uuid::Uuid::now_v7(),
        at: Timestamp::now(),
        kind: kind.into(),
        actor: "settling".into(),
        user_id: r.user_id.as_str().into(),
        session_id: Some(r.id),
        ip: String::new(),
        user_agent: String::new(),
        reason: String::new(),
    }
}

async fn audit_kinds(store: &Arc<dyn Store>, r: &SessionRecord) -> Vec<String> {
    let page = store
        .list_audit(Some(&r.user_id), None, 100)
        .await
        .expect("audit");
    page.items.into_iter().map(|e| e.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
async fn a_rotation_whose_reply_is_lost_and_whose_read_back_fails_still_wins_once() {
    for (name, store, script) in stores().await {
        let r = fresh_session();
        store.create_session(&r).await.expect("create");
        // The compare-and-set lands but its reply is lost; the serial read that would settle
        // it fails; the next attempt finds the session already moved on, by this rotation.
        plan(&script, CasPoint::RefreshWrite, &[CasFault::ReplyLost]);
        plan(&script, CasPoint::SerialRead, &[CasFault::Refused]);
        let first = step((0, hash(1)), (1, hash(2)));
        let rotated = store
            .rotate_refresh(r.id, &first, &[audit_of(&r, "session_refreshed")])
            .await;
        assert_eq!(rotated.expect("rotation settles"), Rotation::Won, "{name}");
        assert_eq!(reached(&script, CasPoint::RefreshWrite), 2, "{name}");
        assert_eq!(reached(&script, CasPoint::SerialRead), 2, "{name}");
        let stored = store
            .get_session(r.id)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            (stored.refresh_generation, stored.refresh_hash),
            (1, hash(2)),
            "{name}"
        );
        assert_eq!(
            audit_kinds(&store, &r).await,
            ["session_refreshed"],
            "{name}"
        );
        // Another racer with the same step still loses to it.
        assert!(
            matches!(
                store.rotate_refresh(r.id, &first, &[]).await,
                Ok(Rotation::Lost(_))
            ),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
async fn a_rotation_that_never_settles_answers_unavailable_and_changes_nothing() {
    for (name, store, script) in stores().await {
        let r = fresh_session();
        store.create_session(&r).await.expect("create");
        script
            .lock()
            .expect("script")
            .always
            .insert(CasPoint::RefreshWrite, CasFault::TimedOut);
        let rotated = store
            .rotate_refresh(
                r.id,
                &step((0, hash(1)), (1, hash(2))),
                &[audit_of(&r, "session_refreshed")],
            )
            .await;
        match rotated {
            Err(StoreError::Unavailable(message)) => {
                assert!(
                    message.contains("could not be settled"),
                    "{name}: {message}"
                )
            }
            other => panic!("{name}: a rotation that never settles answered {other:?}"),
        }
        let attempts = reached(&script, CasPoint::RefreshWrite);
        assert!(
            (2..=6).contains(&attempts),
            "{name}: {attempts} attempts, want at least 2 and at most 6"
        );
        let stored = store
            .get_session(r.id)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(stored.refresh_generation, 0, "{name}");
        assert!(audit_kinds(&store, &r).await.is_empty(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
async fn an_issue_whose_slot_write_fails_once_takes_its_slot_and_twice_fails_fast() {
    for (name, store, script) in stores().await {
        // Refused once: the next round takes the slot.
        let first = fresh_session();
        plan(&script, CasPoint::SlotWrite, &[CasFault::Refused]);
        let created = store
            .create_session_capped(&first, 2, "session_limit", &[audit_of(&first, "issued")])
            .await;
        assert_eq!(created.expect("issue settles"), Vec::new(), "{name}");
        assert_eq!(reached(&script, CasPoint::SlotWrite), 2, "{name}");
        assert!(store.get_session(first.id).await.expect("get").is_some());
        assert_eq!(audit_kinds(&store, &first).await, ["issued"], "{name}");

        // Its reply lost after it landed: the slot is read back as taken, and counts.
        let mut second = fresh_session();
        second.user_id = first.user_id.clone();
        plan(&script, CasPoint::SlotWrite, &[CasFault::ReplyLost]);
        let created = store
            .create_session_capped(&second, 2, "session_limit", &[])
            .await;
        assert_eq!(created.expect("issue settles"), Vec::new(), "{name}");
        assert_eq!(reached(&script, CasPoint::SlotWrite), 1, "{name}");

        // Refused twice: UNAVAILABLE at once, nothing created, nobody evicted.
        let mut third = fresh_session();
        third.user_id = first.user_id.clone();
        plan(
            &script,
            CasPoint::SlotWrite,
            &[CasFault::Refused, CasFault::Refused],
        );
        let created = store
            .create_session_capped(&third, 2, "session_limit", &[audit_of(&third, "lost")])
            .await;
        assert!(
            matches!(created, Err(StoreError::Unavailable(_))),
            "{name}: {created:?}"
        );
        assert_eq!(reached(&script, CasPoint::SlotWrite), 2, "{name}");
        assert_eq!(store.get_session(third.id).await.expect("get"), None);
        assert_eq!(audit_kinds(&store, &first).await, ["issued"], "{name}");
        for kept in [&first, &second] {
            let stored = store.get_session(kept.id).await.expect("get");
            assert!(stored.is_some_and(|s| !s.is_revoked()), "{name}");
        }

        // The cap still holds once the store answers: the oldest goes.
        let mut fourth = fresh_session();
        fourth.user_id = first.user_id.clone();
        let created = store
            .create_session_capped(&fourth, 2, "session_limit", &[])
            .await;
        assert_eq!(created.expect("issue settles"), vec![first.id], "{name}");
    }
}
