//! Store cases about time, on the store's manual clock: what has ended by the clock counts for
//! nothing, and listings look for what was stamped by it, however far it is from real time.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sessiond::model::ids::{SessionId, TenantId, UserId};
use sessiond::model::records::{AuditRecord, RefreshHash, SessionRecord, SignIn};
use sessiond::model::time::Timestamp;
use sessiond::model::{Clock, ManualClock};
use sessiond::store::Store;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn user() -> UserId {
    UserId::parse("user_id", &format!("timed-{}", uuid::Uuid::new_v4())).expect("user id")
}

/// A session of `user` made at `now` by the store's clock, ending `ttl` later.
fn session(user: &UserId, now: Timestamp, ttl: Duration) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(),
        user_id: user.clone(),
        tenant_id: TenantId::none(),
        created_at: now,
        last_seen_at: now,
        expires_at: now.plus(ttl),
        ip: "192.0.2.1".into(),
        user_agent: "timed".into(),
        device_name: String::new(),
        metadata: BTreeMap::new(),
        refresh_generation: 0,
        refresh_hash: RefreshHash([1; 32]),
        refresh_salt: None,
        previous_refresh: None,
        idle_timeout: None,
        sign_in: SignIn {
            auth_time: now,
            acr: String::new(),
            amr: Vec::new(),
        },
        revoked_at: None,
        revoke_reason: String::new(),
    }
}

pub async fn capped_creation_counts_only_sessions_the_clock_keeps(
    store: Arc<dyn Store>,
    clock: ManualClock,
) {
    const CAP: usize = 2;
    let u = user();
    let ending: Vec<SessionRecord> = (0..CAP).map(|_| session(&u, clock.now(), HOUR)).collect();
    for r in &ending {
        let evicted = store
            .create_session_capped(r, CAP, "session_limit", &[])
            .await
            .expect("create capped");
        assert!(evicted.is_empty());
    }
    // Both end by the clock; on ScyllaDB their rows and slots are still stored for real.
    clock.advance(HOUR);
    let fresh = session(&u, clock.now(), HOUR);
    let evicted = store
        .create_session_capped(&fresh, CAP, "session_limit", &[])
        .await
        .expect("create capped");
    assert!(
        evicted.is_empty(),
        "ended sessions take no slot: {evicted:?}"
    );
    clock.advance(Duration::from_micros(1));
    let second = session(&u, clock.now(), HOUR);
    let evicted = store
        .create_session_capped(&second, CAP, "session_limit", &[])
        .await
        .expect("create capped");
    assert!(evicted.is_empty(), "two live sessions fit a cap of two");
    clock.advance(Duration::from_micros(1));
    let third = session(&u, clock.now(), HOUR);
    let evicted = store
        .create_session_capped(&third, CAP, "session_limit", &[])
        .await
        .expect("create capped");
    assert_eq!(evicted, vec![fresh.id], "the oldest live session goes");
    let live: HashSet<SessionId> = store
        .list_user_sessions(&u, None)
        .await
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(live, HashSet::from([second.id, third.id]));
}

pub async fn audit_listing_follows_the_clock(store: Arc<dyn Store>, clock: ManualClock) {
    // Far enough ahead of real time that a listing windowed by the wall clock (ScyllaDB
    // walks day and month buckets back from "now") would not reach it.
    clock.advance(40 * DAY);
    let u = user();
    let event = AuditRecord {
        event_id: uuid::Uuid::now_v7(),
        at: clock.now(),
        kind: "session_issued".into(),
        actor: "timed".into(),
        user_id: u.as_str().to_owned(),
        session_id: Some(SessionId::new()),
        ip: "192.0.2.1".into(),
        user_agent: String::new(),
        reason: String::new(),
    };
    store
        .append_audit(std::slice::from_ref(&event))
        .await
        .expect("append");
    let mine = store.list_audit(Some(&u), None, 10).await.expect("list");
    assert_eq!(mine.items, vec![event.clone()]);
    let everyone = store.list_audit(None, None, 10).await.expect("list all");
    assert!(
        everyone.items.contains(&event),
        "newest first from the clock's now: {:?}",
        everyone.items
    );
}
