//! Detailed store cases first written against the ScyllaDB backend alone, now run on every
//! backend through the conformance suite: exact round trips at the bounds (generation
//! `u32::MAX`, microsecond instants), expiry by time-to-live, sixteen racing rotations, the
//! revocation feed's order, paging across every listing kind and foreign cursors.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sessiond::model::ids::{SessionId, TenantId, UserId};
use sessiond::model::records::{
    AuditRecord, ClientSeen, RefreshHash, RefreshSalt, RevocationEvent, SessionRecord, SignIn,
};
use sessiond::model::time::Timestamp;
use sessiond::model::{Clock, ManualClock};

use super::step;
use sessiond::store::{Revocation, Rotation, SessionFilter, SessionScope, Store, StoreError};

const HOUR: Duration = Duration::from_secs(3600);

fn user(s: &str) -> UserId {
    UserId::parse("user_id", s).expect("user id")
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse("tenant_id", s).expect("tenant id")
}

fn hash(b: u8) -> RefreshHash {
    RefreshHash([b; 32])
}

/// A fresh session of `user` created `age` ago (microsecond precision, as the domain makes
/// them) and expiring in an hour.
fn session(user_id: &str, tenant_id: &str, age: Duration) -> SessionRecord {
    let now = Timestamp::now();
    let created = now.minus(age);
    SessionRecord {
        id: SessionId::new(),
        user_id: user(user_id),
        tenant_id: tenant(tenant_id),
        created_at: created,
        last_seen_at: created,
        expires_at: now.plus(HOUR),
        ip: "2001:db8::7%eth0".into(),
        user_agent: "smoke/1.0".into(),
        device_name: String::new(),
        metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        refresh_generation: 0,
        refresh_hash: hash(1),
        refresh_salt: None,
        previous_refresh: None,
        idle_timeout: None,
        sign_in: SignIn {
            auth_time: created,
            acr: String::new(),
            amr: Vec::new(),
        },
        revoked_at: None,
        revoke_reason: String::new(),
    }
}

fn unique_user(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub async fn create_get_and_exact_round_trip(store: Arc<dyn Store>) {
    let mut r = session(
        &unique_user("alice"),
        "acme",
        Duration::from_micros(1_234_567),
    );
    r.refresh_generation = u32::MAX;
    r.device_name = "laptop".into();
    store.create_session(&r).await.expect("create");
    assert_eq!(store.get_session(r.id).await.expect("get"), Some(r.clone()));
    let listed = store
        .list_user_sessions(&r.user_id, None)
        .await
        .expect("list");
    assert_eq!(listed, vec![r]);
    assert_eq!(
        store
            .get_session(SessionId::new())
            .await
            .expect("get unknown"),
        None
    );
}

pub async fn expired_sessions_are_absent(store: Arc<dyn Store>, clock: ManualClock) {
    let mut gone = session(&unique_user("exp"), "", Duration::ZERO);
    gone.expires_at = clock.now().minus(Duration::from_secs(1));
    store.create_session(&gone).await.expect("create expired");
    assert_eq!(store.get_session(gone.id).await.expect("get"), None);

    let mut soon = session(&unique_user("exp"), "", Duration::ZERO);
    soon.expires_at = clock.now().plus(HOUR);
    store.create_session(&soon).await.expect("create");
    let mut twin = session(&unique_user("exp"), "", Duration::ZERO);
    twin.expires_at = soon.expires_at;
    store.create_session(&twin).await.expect("create");
    let of_user = SessionFilter {
        scope: SessionScope::User(soon.user_id.clone()),
        include_revoked: true,
    };
    // One microsecond before its end the session is there, in every read.
    clock.advance(HOUR - Duration::from_micros(1));
    assert_eq!(
        store.get_session(soon.id).await.expect("get"),
        Some(soon.clone())
    );
    assert_eq!(
        store
            .list_user_sessions(&soon.user_id, None)
            .await
            .expect("list"),
        vec![soon.clone()]
    );
    let (listed, _) = collect_pages(&store, &of_user, 10).await;
    assert_eq!(listed, vec![soon.id]);
    // ...and it can still be revoked and touched, as any live session.
    assert!(matches!(
        store
            .revoke_session(twin.id, clock.now(), "last microsecond")
            .await
            .expect("revoke"),
        Revocation::Revoked(_)
    ));
    store
        .touch_sessions(&[(soon.id, clock.now())])
        .await
        .expect("touch");
    assert_eq!(
        store
            .get_session(soon.id)
            .await
            .expect("get")
            .map(|r| r.last_seen_at),
        Some(clock.now())
    );

    // At its end it is over (`expires_at <= now`), by the store's clock alone: on ScyllaDB its
    // cells live on for the real hour of their TTL, and reads treat it as absent all the same.
    clock.advance(Duration::from_micros(1));
    assert_eq!(store.get_session(soon.id).await.expect("get"), None);
    assert!(
        store
            .list_user_sessions(&soon.user_id, None)
            .await
            .expect("list")
            .is_empty()
    );
    let (listed, _) = collect_pages(&store, &of_user, 10).await;
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(
        store
            .rotate_refresh(soon.id, &step((0, hash(1)), (1, hash(2))), &[])
            .await
            .expect("rotate"),
        Rotation::Gone
    );
    assert_eq!(
        store
            .revoke_session(soon.id, clock.now(), "x")
            .await
            .expect("revoke"),
        Revocation::NotFound
    );
    assert!(
        store
            .revoke_sessions(&[soon.id], clock.now(), "x")
            .await
            .expect("revoke many")
            .is_empty()
    );
    store
        .touch_sessions(&[(soon.id, clock.now())])
        .await
        .expect("touch");
    assert_eq!(
        store.get_session(soon.id).await.expect("get"),
        None,
        "a touch never brings an ended session back"
    );
}

pub async fn user_listing(store: Arc<dyn Store>) {
    let u = unique_user("bob");
    let old = session(&u, "t2", Duration::from_secs(30));
    let mid = session(&u, "t1", Duration::from_secs(20));
    let new = session(&u, "t2", Duration::from_secs(10));
    let other = session(&unique_user("carol"), "t2", Duration::ZERO);
    for r in [&old, &mid, &new, &other] {
        store.create_session(r).await.expect("create");
    }
    let all = store
        .list_user_sessions(&user(&u), None)
        .await
        .expect("list");
    assert_eq!(
        all,
        vec![new.clone(), mid.clone(), old.clone()],
        "newest first across tenants"
    );
    let t2 = store
        .list_user_sessions(&user(&u), Some(&tenant("t2")))
        .await
        .expect("list t2");
    assert_eq!(t2, vec![new, old]);
}

pub async fn sixteen_racing_rotations_have_one_winner(store: Arc<dyn Store>) {
    let r = session(&unique_user("race"), "", Duration::ZERO);
    store.create_session(&r).await.expect("create");
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let next = hash(100 + i);
                let outcome = store
                    .rotate_refresh(r.id, &step((0, hash(1)), (1, next)), &[])
                    .await;
                (i, outcome)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen_by_losers = Vec::new();
    for t in tasks {
        let (i, outcome) = t.await.expect("join");
        match outcome.expect("rotate") {
            Rotation::Won => winners.push(i),
            Rotation::Lost(current) => seen_by_losers.push(*current),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner_hash = hash(100 + winners[0]);
    // Every loser is told the state the winner left, from which a grace replay answers the
    // winner's token: the new generation, and the replaced one as previous.
    assert_eq!(seen_by_losers.len(), 15);
    for current in &seen_by_losers {
        assert_eq!(
            (current.refresh_generation, current.refresh_hash),
            (1, winner_hash)
        );
        let previous = current.previous_refresh.expect("previous generation kept");
        assert_eq!(
            (previous.state.generation, previous.state.hash),
            (0, hash(1))
        );
        assert_eq!(current.refresh_salt, Some(RefreshSalt([5; 16])));
    }
    let stored = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (stored.refresh_generation, stored.refresh_hash),
        (1, winner_hash)
    );
    // The per-user index mirrors the winner.
    let listed = store
        .list_user_sessions(&r.user_id, None)
        .await
        .expect("list");
    assert_eq!(listed, vec![stored]);
    // A stale expectation loses; the current one wins; an unknown session is gone.
    let stale = store
        .rotate_refresh(r.id, &step((0, hash(1)), (1, hash(9))), &[])
        .await
        .expect("rotate");
    assert!(matches!(stale, Rotation::Lost(_)));
    let mut with_changes = step((1, winner_hash), (2, hash(3)));
    with_changes.client = Some(ClientSeen {
        ip: "198.51.100.7".into(),
        user_agent: "phone/2".into(),
        device_name: "Phone".into(),
    });
    with_changes.sign_in = Some(SignIn {
        auth_time: with_changes.at,
        acr: "urn:example:mfa".into(),
        amr: vec!["pwd".into(), "otp".into()],
    });
    let ok = store
        .rotate_refresh(r.id, &with_changes, &[])
        .await
        .expect("rotate");
    assert_eq!(ok, Rotation::Won);
    // The rotation's client, sign-in and last-seen instant are stored, in the point read and
    // in the per-user listing alike.
    let stored = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored, with_changes.applied_to(r.clone()));
    assert_eq!(stored.ip, "198.51.100.7");
    assert_eq!(stored.sign_in.amr, vec!["pwd".to_owned(), "otp".to_owned()]);
    assert_eq!(stored.last_seen_at, with_changes.at);
    let listed = store
        .list_user_sessions(&r.user_id, None)
        .await
        .expect("list");
    assert_eq!(listed, vec![stored]);
    let none = store
        .rotate_refresh(SessionId::new(), &step((0, hash(1)), (1, hash(2))), &[])
        .await;
    assert_eq!(none.expect("rotate unknown"), Rotation::Gone);
}

pub async fn revocation(store: Arc<dyn Store>) {
    let u = unique_user("rev");
    let a = session(&u, "", Duration::from_secs(3));
    let b = session(&u, "", Duration::from_secs(2));
    let c = session(&u, "", Duration::from_secs(1));
    for r in [&a, &b, &c] {
        store.create_session(r).await.expect("create");
    }
    let at = Timestamp::now();
    let Revocation::Revoked(revoked) = store
        .revoke_session(a.id, at, "user_logout")
        .await
        .expect("revoke")
    else {
        panic!("expected Revoked");
    };
    assert_eq!(
        (revoked.revoked_at, revoked.revoke_reason.as_str()),
        (Some(at), "user_logout")
    );
    let stored = store
        .get_session(a.id)
        .await
        .expect("get")
        .expect("still present");
    assert_eq!(stored, *revoked);
    assert!(matches!(
        store.revoke_session(a.id, Timestamp::now(), "again").await.expect("revoke again"),
        Revocation::AlreadyRevoked(r) if r.revoke_reason == "user_logout"
    ));
    assert_eq!(
        store
            .revoke_session(SessionId::new(), at, "x")
            .await
            .expect("revoke unknown"),
        Revocation::NotFound
    );
    // A revoked session's refresh token no longer rotates.
    let lost = store
        .rotate_refresh(a.id, &step((0, hash(1)), (1, hash(2))), &[])
        .await
        .expect("rotate");
    assert_eq!(lost, Rotation::Revoked);
    let many = store
        .revoke_sessions(&[a.id, b.id, SessionId::new(), c.id], at, "")
        .await
        .expect("revoke many");
    assert_eq!(many, vec![b.id, c.id]);
    let listed = store
        .list_user_sessions(&user(&u), None)
        .await
        .expect("list");
    assert!(
        listed.is_empty(),
        "revoked sessions are not listed: {listed:?}"
    );
}

pub async fn not_before_marks(store: Arc<dyn Store>, clock: ManualClock) {
    let u = user(&unique_user("nb"));
    assert!(store.user_not_before(&u).await.expect("read").is_empty());
    let t1 = Timestamp::from_micros(clock.now().as_micros() / 1_000_000 * 1_000_000 + 123_457);
    let keep = clock.now().plus(HOUR);
    store
        .set_user_not_before(&u, &TenantId::none(), t1, keep)
        .await
        .expect("set");
    store
        .set_user_not_before(&u, &tenant("acme"), t1.plus(Duration::from_micros(1)), keep)
        .await
        .expect("set");
    // An earlier instant never moves a mark back.
    store
        .set_user_not_before(
            &u,
            &TenantId::none(),
            t1.minus(Duration::from_micros(1)),
            keep,
        )
        .await
        .expect("set earlier");
    let marks = store.user_not_before(&u).await.expect("read");
    assert_eq!(
        marks,
        BTreeMap::from([
            (TenantId::none(), t1),
            (tenant("acme"), t1.plus(Duration::from_micros(1)))
        ])
    );
    // A mark at its keep-until by the store's clock is not kept.
    let v = user(&unique_user("nb"));
    store
        .set_user_not_before(&v, &TenantId::none(), t1, clock.now())
        .await
        .expect("set");
    assert!(store.user_not_before(&v).await.expect("read").is_empty());

    let before = store.global_not_before().await.expect("global");
    let g = clock.now().plus(Duration::from_micros(7));
    assert_eq!(store.set_global_not_before(g).await.expect("set global"), g);
    let earlier = g.minus(Duration::from_secs(60));
    assert_eq!(
        store
            .set_global_not_before(earlier)
            .await
            .expect("set earlier"),
        g
    );
    assert_eq!(store.global_not_before().await.expect("global"), Some(g));
    assert!(before.is_none_or(|b| b <= g));
}

pub async fn paging_and_cursors(store: Arc<dyn Store>) {
    let u = unique_user("pager");
    let mut ids = HashSet::new();
    for i in 0..25u64 {
        let r = session(
            &u,
            if i % 2 == 0 { "even" } else { "odd" },
            Duration::from_secs(i),
        );
        store.create_session(&r).await.expect("create");
        ids.insert(r.id);
    }
    let revoked = *ids.iter().next().expect("an id");
    store
        .revoke_session(revoked, Timestamp::now(), "")
        .await
        .expect("revoke");

    // One user, revoked included, pages of 10.
    let filter = SessionFilter {
        scope: SessionScope::User(user(&u)),
        include_revoked: true,
    };
    let (got, pages) = collect_pages(&store, &filter, 10).await;
    assert_eq!(got.len(), 25);
    assert_eq!(got.iter().copied().collect::<HashSet<_>>(), ids);
    assert!(pages >= 3, "pages: {pages}");
    // Revoked excluded; tenant filter.
    let filter = SessionFilter {
        scope: SessionScope::User(user(&u)),
        include_revoked: false,
    };
    let (got, _) = collect_pages(&store, &filter, 7).await;
    assert_eq!(got.len(), 24);
    assert!(!got.contains(&revoked));
    let filter = SessionFilter {
        scope: SessionScope::UserInTenant(user(&u), tenant("even")),
        include_revoked: true,
    };
    let (got, _) = collect_pages(&store, &filter, 4).await;
    assert_eq!(got.len(), 13);

    // All users: every session of this user appears exactly once.
    let (all, _) = collect_pages(
        &store,
        &SessionFilter {
            include_revoked: true,
            ..Default::default()
        },
        9,
    )
    .await;
    let mine: Vec<_> = all.iter().filter(|id| ids.contains(id)).collect();
    assert_eq!(mine.len(), 25);
    assert_eq!(
        all.len(),
        all.iter().collect::<HashSet<_>>().len(),
        "no session twice"
    );

    // Cursors of another listing, or junk, are BadCursor.
    let user_filter = SessionFilter {
        scope: SessionScope::User(user(&u)),
        include_revoked: true,
    };
    let page = store
        .list_sessions(&user_filter, None, 5)
        .await
        .expect("page");
    let cursor = page.next.expect("more pages");
    let scan = SessionFilter::default();
    assert!(matches!(
        store.list_sessions(&scan, Some(&cursor), 5).await,
        Err(StoreError::BadCursor)
    ));
    assert!(matches!(
        store.list_sessions(&scan, Some(b"junk"), 5).await,
        Err(StoreError::BadCursor)
    ));
    let mut tampered = cursor.clone();
    tampered.truncate(3);
    let result = store.list_sessions(&user_filter, Some(&tampered), 5).await;
    assert!(matches!(result, Err(StoreError::BadCursor)), "{result:?}");
    assert!(matches!(
        store.list_audit(None, Some(&cursor), 5).await,
        Err(StoreError::BadCursor)
    ));
}

async fn collect_pages(
    store: &Arc<dyn Store>,
    filter: &SessionFilter,
    limit: usize,
) -> (Vec<SessionId>, usize) {
    let mut cursor: Option<Vec<u8>> = None;
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let page = store
            .list_sessions(filter, cursor.as_deref(), limit)
            .await
            .expect("page");
        assert!(page.items.len() <= limit);
        pages += 1;
        out.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (out, pages),
        }
        assert!(pages < 10_000, "paging does not end");
    }
}

pub async fn touches(store: Arc<dyn Store>) {
    let r = session(&unique_user("touch"), "", Duration::from_secs(60));
    store.create_session(&r).await.expect("create");
    let later = r.last_seen_at.plus(Duration::from_micros(30_000_001));
    let unknown = SessionId::new();
    store
        .touch_sessions(&[(r.id, later), (unknown, later), (r.id, r.last_seen_at)])
        .await
        .expect("touch");
    let got = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.last_seen_at, later);
    assert_eq!(
        store
            .list_user_sessions(&r.user_id, None)
            .await
            .expect("list"),
        vec![got]
    );
    store
        .touch_sessions(&[(r.id, r.last_seen_at)])
        .await
        .expect("touch earlier");
    let got = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.last_seen_at, later, "never moves back");
    assert_eq!(
        store.get_session(unknown).await.expect("get"),
        None,
        "never recreated"
    );
}

fn audit(user_id: &str, at: Timestamp, kind: &str) -> AuditRecord {
    AuditRecord {
        event_id: uuid::Uuid::now_v7(),
        at,
        kind: kind.into(),
        actor: "smoke".into(),
        user_id: user_id.into(),
        session_id: Some(SessionId::new()),
        ip: "10.0.0.1".into(),
        user_agent: String::new(),
        reason: String::new(),
    }
}

pub async fn audit_paging(store: Arc<dyn Store>) {
    let u = unique_user("aud");
    let now = Timestamp::now();
    // Several events share one instant, so the cross-shard merge and the keyset must agree on
    // the order of event ids; two fall in the previous month.
    let mut mine: Vec<AuditRecord> = (0..20)
        .map(|i| {
            audit(
                &u,
                now.minus(Duration::from_micros(i / 4)),
                "session_issued",
            )
        })
        .collect();
    mine.push(audit(
        &u,
        now.minus(Duration::from_secs(40 * 86_400)),
        "old",
    ));
    mine.push(audit(
        &u,
        now.minus(Duration::from_secs(35 * 86_400)),
        "old",
    ));
    let global = audit("", now, "global_revoked");
    let mut all = mine.clone();
    all.push(global.clone());
    store.append_audit(&all).await.expect("append");

    let mut expected = mine.clone();
    expected.sort_by_key(|e| std::cmp::Reverse((e.at, e.event_id)));
    let got = audit_pages(&store, Some(&user(&u)), 3).await;
    assert_eq!(got.len(), expected.len());
    assert_eq!(
        got.iter().map(|e| e.event_id).collect::<HashSet<_>>().len(),
        got.len(),
        "no event twice"
    );
    assert!(got.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    assert_eq!(
        got.iter().map(|e| e.event_id).collect::<HashSet<_>>(),
        expected.iter().map(|e| e.event_id).collect()
    );
    assert_eq!(got.iter().find(|e| e.event_id == global.event_id), None);
    let first = got
        .iter()
        .find(|e| e.event_id == mine[0].event_id)
        .expect("first event");
    assert_eq!(*first, mine[0]);

    // All users: pages of 4 over the day shards; every event of this run exactly once.
    let everything = audit_pages(&store, None, 4).await;
    let ids: Vec<_> = everything.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "no event twice"
    );
    for e in &all {
        assert_eq!(
            ids.iter().filter(|id| **id == e.event_id).count(),
            1,
            "event {e:?}"
        );
    }
    assert!(
        everything.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first"
    );
}

async fn audit_pages(store: &Arc<dyn Store>, u: Option<&UserId>, limit: usize) -> Vec<AuditRecord> {
    let mut cursor: Option<Vec<u8>> = None;
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = store
            .list_audit(u, cursor.as_deref(), limit)
            .await
            .expect("audit page");
        assert!(page.items.len() <= limit);
        out.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("audit paging does not end");
}

pub async fn revocation_feed(store: Arc<dyn Store>) {
    let start = store.poll_revocations(None).await.expect("poll from now");
    assert!(start.events.is_empty() && !start.gap);

    let r = session(&unique_user("feed"), "", Duration::ZERO);
    store.create_session(&r).await.expect("create");
    store
        .revoke_session(r.id, Timestamp::now(), "")
        .await
        .expect("revoke");
    let nb_user = user(&unique_user("feed"));
    store
        .set_user_not_before(
            &nb_user,
            &TenantId::none(),
            Timestamp::now(),
            Timestamp::now().plus(HOUR),
        )
        .await
        .expect("user not before");
    store
        .set_global_not_before(Timestamp::now())
        .await
        .expect("global");

    let batch = store
        .poll_revocations(Some(&start.cursor))
        .await
        .expect("poll");
    assert!(!batch.gap);
    let wanted = [
        RevocationEvent::Session(r.id),
        RevocationEvent::User(nb_user.clone()),
        RevocationEvent::Global,
    ];
    for w in &wanted {
        assert!(
            batch.events.contains(w),
            "{w:?} missing from {:?}",
            batch.events
        );
    }
    let pos = |e: &RevocationEvent| batch.events.iter().position(|x| x == e);
    assert!(
        pos(&wanted[0]) < pos(&wanted[1]) && pos(&wanted[1]) < pos(&wanted[2]),
        "oldest first"
    );

    // Polling on from the new cursor does not repeat them.
    let again = store
        .poll_revocations(Some(&batch.cursor))
        .await
        .expect("poll again");
    for w in &wanted {
        assert!(!again.events.contains(w), "{w:?} delivered twice");
    }
}

pub async fn ping_and_sweep(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    assert_eq!(store.sweep(Timestamp::now()).await.expect("sweep"), 0);
}

/// The events an issue or a rotation carries are in the log once it returns, and a rotation
/// that does not win (lost, revoked, unknown) writes none of its events.
pub async fn writes_carry_their_audit_events(store: Arc<dyn Store>) {
    let u = unique_user("carried");
    let now = Timestamp::now();
    let r = session(&u, "", Duration::ZERO);
    let issued = audit(&u, now, "session_issued");
    store
        .create_session_capped(&r, 5, "session_limit", std::slice::from_ref(&issued))
        .await
        .expect("create");
    assert_eq!(
        store.get_session(r.id).await.expect("get").map(|s| s.id),
        Some(r.id)
    );

    let won = audit(&u, now.plus(Duration::from_secs(1)), "session_refreshed");
    let lost = audit(&u, now.plus(Duration::from_secs(2)), "lost");
    let revoked = audit(&u, now.plus(Duration::from_secs(3)), "revoked");
    let gone = audit(&u, now.plus(Duration::from_secs(4)), "gone");
    let first = step((0, hash(1)), (1, hash(2)));
    assert_eq!(
        store
            .rotate_refresh(r.id, &first, std::slice::from_ref(&won))
            .await
            .expect("rotate"),
        Rotation::Won
    );
    // The same step again: the session has moved on.
    assert!(matches!(
        store
            .rotate_refresh(r.id, &first, std::slice::from_ref(&lost))
            .await
            .expect("rotate"),
        Rotation::Lost(_)
    ));
    store
        .revoke_session(r.id, now, "test")
        .await
        .expect("revoke");
    assert_eq!(
        store
            .rotate_refresh(
                r.id,
                &step((1, hash(2)), (2, hash(3))),
                std::slice::from_ref(&revoked)
            )
            .await
            .expect("rotate"),
        Rotation::Revoked
    );
    assert_eq!(
        store
            .rotate_refresh(SessionId::new(), &first, std::slice::from_ref(&gone))
            .await
            .expect("rotate"),
        Rotation::Gone
    );

    let logged: Vec<uuid::Uuid> = audit_pages(&store, Some(&user(&u)), 10)
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(logged, vec![won.event_id, issued.event_id], "newest first");
}
