//! The cases of the store conformance suite, each written once against `Arc<dyn Store>`.
//! Every case uses fresh user ids, so cases can share one database.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sessiond::model::ids::{SessionId, TenantId, UserId};
use sessiond::model::records::{
    AuditRecord, RefreshHash, RefreshSalt, RefreshState, RotationStep, SessionRecord, SignIn,
};
use sessiond::model::time::Timestamp;
use sessiond::model::{Clock, ManualClock};
use sessiond::store::embedded::{EmbeddedOptions, EmbeddedStore};
use sessiond::store::{
    Revocation, Rotation, SessionFilter, SessionScope, Store, StoreError, UserNotBefore,
};

/// A store under test, the name printed for it and the clock it runs on: a manual clock
/// starting at the wall clock's instant, which time-sensitive cases move instead of waiting.
pub struct Backend {
    pub name: String,
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    // Keeps the embedded store's directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// The embedded store in a fresh temporary directory.
    pub fn embedded() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::starting_now();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), clock.shared())
            .expect("open embedded store");
        Backend {
            name: "embedded (redb)".into(),
            store: Arc::new(store),
            clock,
            _dir: Some(dir),
        }
    }

    /// Every CQL node named in the environment, each in a fresh keyspace; fails when none is.
    pub async fn cql() -> Vec<Backend> {
        let backends: Vec<Backend> = cql::stores()
            .await
            .into_iter()
            .map(|(name, store, clock)| Backend {
                name,
                store,
                clock,
                _dir: None,
            })
            .collect();
        assert!(
            !backends.is_empty(),
            "no CQL node named: set SESSIOND_TEST_CQL or SESSIOND_TEST_SCYLLA"
        );
        backends
    }
}

pub mod cql;
pub mod detailed;
pub mod timed;

pub use detailed::{
    audit_paging, create_get_and_exact_round_trip, expired_sessions_are_absent, not_before_marks,
    paging_and_cursors, ping_and_sweep, revocation, sixteen_racing_rotations_have_one_winner,
    touches, user_listing, writes_carry_their_audit_events,
};
pub use timed::{
    audit_listing_follows_the_clock, capped_creation_counts_only_sessions_the_clock_keeps,
};

pub fn user() -> UserId {
    UserId::parse("user_id", &format!("conf-{}", uuid::Uuid::new_v4())).expect("user id")
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse("tenant_id", s).expect("tenant id")
}

pub fn hash(byte: u8) -> RefreshHash {
    RefreshHash([byte; 32])
}

/// A session of `user` created `age` ago, living `ttl` from now. Timestamps are whole
/// milliseconds so every backend stores them exactly.
pub fn session(user: &UserId, tenant_id: &TenantId, age: Duration, ttl: Duration) -> SessionRecord {
    let now = Timestamp::from_micros(Timestamp::now().as_micros() / 1000 * 1000);
    SessionRecord {
        id: SessionId::new(),
        user_id: user.clone(),
        tenant_id: tenant_id.clone(),
        created_at: now.minus(age),
        last_seen_at: now.minus(age),
        expires_at: now.plus(ttl),
        ip: "192.0.2.1".into(),
        user_agent: "conformance".into(),
        device_name: "test device".into(),
        metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        refresh_generation: 0,
        refresh_hash: hash(1),
        refresh_salt: None,
        previous_refresh: None,
        idle_timeout: None,
        sign_in: SignIn {
            auth_time: now.minus(age),
            acr: String::new(),
            amr: Vec::new(),
        },
        revoked_at: None,
        revoke_reason: String::new(),
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// A rotation from `expected` to `next` (generation, hash) with nothing else changed.
pub fn step(expected: (u32, RefreshHash), next: (u32, RefreshHash)) -> RotationStep {
    RotationStep {
        expected: RefreshState {
            generation: expected.0,
            hash: expected.1,
        },
        next: RefreshState {
            generation: next.0,
            hash: next.1,
        },
        salt: RefreshSalt([5; 16]),
        at: Timestamp::from_micros(Timestamp::now().as_micros() / 1000 * 1000),
        client: None,
        sign_in: None,
    }
}

async fn create(store: &Arc<dyn Store>, r: &SessionRecord) {
    store.create_session(r).await.expect("create session");
}

pub async fn create_then_get_round_trips(store: Arc<dyn Store>) {
    let u = user();
    let r = session(&u, &tenant("acme"), Duration::ZERO, HOUR);
    create(&store, &r).await;
    let got = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got, r);
}

pub async fn session_and_marks_answer_as_their_two_reads(store: Arc<dyn Store>) {
    let u = user();
    let r = session(&u, &tenant("acme"), Duration::ZERO, HOUR);
    create(&store, &r).await;
    let (got, marks) = store.session_and_marks(r.id, &u).await.expect("read");
    assert_eq!(got.as_ref(), Some(&r));
    assert!(marks.is_empty());

    let at = Timestamp::now();
    store
        .set_user_not_before(&u, &tenant("acme"), at, at.plus(HOUR))
        .await
        .expect("set");
    let (got, marks) = store.session_and_marks(r.id, &u).await.expect("read");
    assert_eq!(got.as_ref(), Some(&r));
    assert_eq!(marks, store.user_not_before(&u).await.expect("marks"));
    assert_eq!(marks.get(&tenant("acme")).copied(), Some(at));

    // An unknown session, and a user with no marks.
    let (got, marks) = store
        .session_and_marks(SessionId::new(), &user())
        .await
        .expect("read");
    assert!(got.is_none() && marks.is_empty());
}

pub async fn capped_creation_brings_the_users_marks(store: Arc<dyn Store>) {
    let u = user();
    let first = session(&u, &tenant("acme"), Duration::ZERO, HOUR);
    let (evicted, marks) = store
        .create_session_capped_with_marks(&first, 0, "limit", &[])
        .await
        .expect("create");
    assert!(evicted.is_empty());
    assert_eq!(marks, Some(UserNotBefore::new()), "a user with no marks");
    assert_eq!(
        store.get_session(first.id).await.expect("get").as_ref(),
        Some(&first)
    );

    let at = Timestamp::now();
    store
        .set_user_not_before(&u, &tenant("acme"), at, at.plus(HOUR))
        .await
        .expect("set");
    // The cap applies as in `create_session_capped`: the older session is evicted.
    let second = session(&u, &tenant("acme"), Duration::ZERO, HOUR);
    let (evicted, marks) = store
        .create_session_capped_with_marks(&second, 1, "limit", &[])
        .await
        .expect("create");
    assert_eq!(evicted, vec![first.id]);
    let marks = marks.expect("marks read");
    assert_eq!(marks, store.user_not_before(&u).await.expect("marks"));
    assert_eq!(marks.get(&tenant("acme")).copied(), Some(at));
    assert_eq!(
        store.get_session(second.id).await.expect("get").as_ref(),
        Some(&second)
    );
}

pub async fn expired_and_unknown_sessions_are_absent(store: Arc<dyn Store>, clock: ManualClock) {
    assert!(
        store
            .get_session(SessionId::new())
            .await
            .expect("get")
            .is_none()
    );
    let u = user();
    let mut r = session(&u, &TenantId::none(), HOUR, HOUR);
    r.expires_at = clock.now().minus(Duration::from_secs(1));
    create(&store, &r).await;
    assert!(
        store.get_session(r.id).await.expect("get").is_none(),
        "expired session must read as absent"
    );
    let listed = store.list_user_sessions(&u, None).await.expect("list");
    assert!(
        listed.is_empty(),
        "expired session must not be listed: {listed:?}"
    );
}

pub async fn user_listing_is_newest_first_and_scoped(store: Arc<dyn Store>) {
    let (u, other) = (user(), user());
    let old = session(&u, &tenant("a"), Duration::from_secs(30), HOUR);
    let mid = session(&u, &tenant("b"), Duration::from_secs(20), HOUR);
    let new = session(&u, &tenant("a"), Duration::from_secs(10), HOUR);
    let foreign = session(&other, &tenant("a"), Duration::ZERO, HOUR);
    for r in [&old, &mid, &new, &foreign] {
        create(&store, r).await;
    }
    let all: Vec<_> = store
        .list_user_sessions(&u, None)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(all, vec![new.id, mid.id, old.id]);
    let in_a: Vec<_> = store
        .list_user_sessions(&u, Some(&tenant("a")))
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(in_a, vec![new.id, old.id]);
}

pub async fn rotation_is_compare_and_set(store: Arc<dyn Store>) {
    let r = session(&user(), &TenantId::none(), Duration::ZERO, HOUR);
    create(&store, &r).await;
    assert!(matches!(
        store
            .rotate_refresh(r.id, &step((0, hash(9)), (1, hash(2))), &[])
            .await
            .expect("cas"),
        Rotation::Lost(_)
    ));
    assert!(matches!(
        store
            .rotate_refresh(r.id, &step((1, hash(1)), (2, hash(2))), &[])
            .await
            .expect("cas"),
        Rotation::Lost(_)
    ));
    assert_eq!(
        store
            .rotate_refresh(r.id, &step((0, hash(1)), (1, hash(2))), &[])
            .await
            .expect("cas"),
        Rotation::Won
    );
    assert!(matches!(
        store
            .rotate_refresh(r.id, &step((0, hash(1)), (1, hash(3))), &[])
            .await
            .expect("cas"),
        Rotation::Lost(_)
    ));
    let got = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!((got.refresh_generation, got.refresh_hash), (1, hash(2)));
    assert_eq!(
        store
            .rotate_refresh(SessionId::new(), &step((0, hash(1)), (1, hash(2))), &[])
            .await
            .expect("cas"),
        Rotation::Gone
    );
    store
        .revoke_session(r.id, Timestamp::now(), "test")
        .await
        .expect("revoke");
    assert_eq!(
        store
            .rotate_refresh(r.id, &step((1, hash(2)), (2, hash(3))), &[])
            .await
            .expect("cas"),
        Rotation::Revoked,
        "a revoked session cannot rotate, and says why"
    );
}

pub async fn concurrent_rotations_have_one_winner(store: Arc<dyn Store>) {
    let r = session(&user(), &TenantId::none(), Duration::ZERO, HOUR);
    create(&store, &r).await;
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh(r.id, &step((0, hash(1)), (1, hash(100 + i))), &[])
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("join").expect("cas") {
            Rotation::Won => won += 1,
            Rotation::Lost(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one of 16 racing rotations must win");
}

pub async fn revoking_is_idempotent_and_reports_state(store: Arc<dyn Store>) {
    let r = session(&user(), &TenantId::none(), Duration::ZERO, HOUR);
    create(&store, &r).await;
    let at = Timestamp::from_micros(Timestamp::now().as_micros() / 1000 * 1000);
    match store
        .revoke_session(r.id, at, "because")
        .await
        .expect("revoke")
    {
        Revocation::Revoked(rec) => {
            assert_eq!(rec.revoked_at, Some(at));
            assert_eq!(rec.revoke_reason, "because");
        }
        other => panic!("expected Revoked, got {other:?}"),
    }
    assert!(matches!(
        store
            .revoke_session(r.id, at, "again")
            .await
            .expect("revoke"),
        Revocation::AlreadyRevoked(_)
    ));
    assert_eq!(
        store
            .revoke_session(SessionId::new(), at, "x")
            .await
            .expect("revoke"),
        Revocation::NotFound
    );
    let got = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.revoked_at, Some(at));
    assert_eq!(got.revoke_reason, "because", "the first reason stands");
}

pub async fn revoking_many_reports_only_active_ones(store: Arc<dyn Store>) {
    let u = user();
    let a = session(&u, &TenantId::none(), Duration::ZERO, HOUR);
    let b = session(&u, &TenantId::none(), Duration::ZERO, HOUR);
    create(&store, &a).await;
    create(&store, &b).await;
    store
        .revoke_session(a.id, Timestamp::now(), "first")
        .await
        .expect("revoke");
    let revoked = store
        .revoke_sessions(&[a.id, b.id, SessionId::new()], Timestamp::now(), "all")
        .await
        .expect("revoke");
    assert_eq!(revoked, vec![b.id]);
    let listed = store.list_user_sessions(&u, None).await.expect("list");
    assert!(
        listed.is_empty(),
        "revoked sessions are not listed: {listed:?}"
    );
}

pub async fn user_not_before_marks_never_move_back(store: Arc<dyn Store>) {
    let u = user();
    assert!(store.user_not_before(&u).await.expect("read").is_empty());
    let t1 = Timestamp::now();
    let later = t1.plus(Duration::from_millis(1500));
    let keep = t1.plus(HOUR);
    store
        .set_user_not_before(&u, &TenantId::none(), later, keep)
        .await
        .expect("set");
    store
        .set_user_not_before(&u, &TenantId::none(), t1, keep)
        .await
        .expect("set");
    store
        .set_user_not_before(&u, &tenant("acme"), t1, keep)
        .await
        .expect("set");
    let marks = store.user_not_before(&u).await.expect("read");
    assert_eq!(
        marks.get(&TenantId::none()),
        Some(&later),
        "sub-second precision, never backwards"
    );
    assert_eq!(marks.get(&tenant("acme")), Some(&t1));
    assert_eq!(marks.len(), 2);
}

pub async fn global_not_before_is_monotonic(store: Arc<dyn Store>) {
    let now = Timestamp::now();
    let set = store.set_global_not_before(now).await.expect("set");
    assert!(set >= now);
    let back = store
        .set_global_not_before(now.minus(HOUR))
        .await
        .expect("set");
    assert_eq!(back, set, "the global mark never moves back");
    assert_eq!(store.global_not_before().await.expect("read"), Some(set));
}

async fn collect_pages(
    store: &Arc<dyn Store>,
    filter: &SessionFilter,
    page_size: usize,
) -> Vec<SessionId> {
    let mut ids = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    for _ in 0..100_000 {
        let page = store
            .list_sessions(filter, cursor.as_deref(), page_size)
            .await
            .expect("page");
        assert!(page.items.len() <= page_size, "page larger than asked");
        ids.extend(page.items.iter().map(|r| r.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return ids,
        }
    }
    panic!("paging did not end");
}

pub async fn paging_all_users_returns_each_session_once(store: Arc<dyn Store>) {
    let users = [user(), user(), user()];
    let mut mine = HashSet::new();
    for (i, u) in users.iter().cycle().take(25).enumerate() {
        let r = session(u, &TenantId::none(), Duration::from_secs(i as u64), HOUR);
        create(&store, &r).await;
        mine.insert(r.id);
    }
    let revoked = *mine.iter().next().expect("one");
    store
        .revoke_session(revoked, Timestamp::now(), "x")
        .await
        .expect("revoke");
    for size in [1, 7, 1000] {
        let all = SessionFilter {
            include_revoked: true,
            ..SessionFilter::default()
        };
        let ids = collect_pages(&store, &all, size).await;
        let seen: Vec<_> = ids.iter().filter(|id| mine.contains(id)).collect();
        assert_eq!(
            seen.len(),
            25,
            "page size {size}: every session exactly once"
        );
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            25,
            "page size {size}: no duplicates"
        );
        let active = collect_pages(&store, &SessionFilter::default(), size).await;
        assert!(
            !active.contains(&revoked),
            "page size {size}: revoked session listed"
        );
        assert_eq!(active.iter().filter(|id| mine.contains(id)).count(), 24);
    }
}

pub async fn paging_one_user_and_filters(store: Arc<dyn Store>) {
    let (u, other) = (user(), user());
    let mut ids = HashSet::new();
    for i in 0..9 {
        let t = if i % 3 == 0 { tenant("x") } else { tenant("y") };
        let r = session(&u, &t, Duration::from_secs(i), HOUR);
        create(&store, &r).await;
        ids.insert(r.id);
    }
    create(&store, &session(&other, &tenant("x"), Duration::ZERO, HOUR)).await;
    for size in [1, 2, 1000] {
        let f = SessionFilter {
            scope: SessionScope::User(u.clone()),
            ..SessionFilter::default()
        };
        let got = collect_pages(&store, &f, size).await;
        assert_eq!(got.len(), 9, "page size {size}");
        assert_eq!(got.iter().copied().collect::<HashSet<_>>(), ids);
        let f = SessionFilter {
            scope: SessionScope::UserInTenant(u.clone(), tenant("x")),
            ..SessionFilter::default()
        };
        assert_eq!(
            collect_pages(&store, &f, size).await.len(),
            3,
            "page size {size}, one tenant"
        );
    }
}

pub async fn bad_cursor_is_rejected(store: Arc<dyn Store>) {
    let u = user();
    create(
        &store,
        &session(&u, &TenantId::none(), Duration::ZERO, HOUR),
    )
    .await;
    let f = SessionFilter {
        scope: SessionScope::User(u),
        ..SessionFilter::default()
    };
    let err = store
        .list_sessions(&f, Some(b"\xffnot a cursor"), 10)
        .await
        .expect_err("bad cursor");
    assert!(matches!(err, StoreError::BadCursor), "{err:?}");
}

pub async fn touches_update_only_existing_sessions(store: Arc<dyn Store>) {
    let r = session(&user(), &TenantId::none(), Duration::from_secs(60), HOUR);
    create(&store, &r).await;
    let seen = Timestamp::from_micros(Timestamp::now().as_micros() / 1000 * 1000);
    let ghost = SessionId::new();
    store
        .touch_sessions(&[(r.id, seen), (ghost, seen)])
        .await
        .expect("touch");
    let got = store
        .get_session(r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(got.last_seen_at, seen);
    assert_eq!(
        got.refresh_hash, r.refresh_hash,
        "a touch changes nothing else"
    );
    assert!(
        store.get_session(ghost).await.expect("get").is_none(),
        "a touch never creates a session"
    );
}

pub async fn audit_is_newest_first_and_paged(store: Arc<dyn Store>) {
    let u = user();
    let base = Timestamp::from_micros(Timestamp::now().as_micros() / 1000 * 1000);
    let events: Vec<AuditRecord> = (0..5)
        .map(|i| AuditRecord {
            event_id: uuid::Uuid::now_v7(),
            at: base.plus(Duration::from_millis(i)),
            kind: format!("kind_{i}"),
            actor: "test:user".into(),
            user_id: u.as_str().to_owned(),
            session_id: Some(SessionId::new()),
            ip: "192.0.2.1".into(),
            user_agent: "ua".into(),
            reason: "r".into(),
        })
        .collect();
    store.append_audit(&events).await.expect("append");
    let mut got = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = store
            .list_audit(Some(&u), cursor.as_deref(), 2)
            .await
            .expect("page");
        assert!(page.items.len() <= 2);
        got.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let kinds: Vec<_> = got.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec!["kind_4", "kind_3", "kind_2", "kind_1", "kind_0"]
    );
    assert_eq!(
        got.first().map(|e| e.session_id),
        events.last().map(|e| e.session_id)
    );
    let everyone = store.list_audit(None, None, 1000).await.expect("page");
    assert!(
        everyone
            .items
            .iter()
            .any(|e| e.event_id == events[0].event_id)
    );
}

pub async fn ping_and_sweep_answer(store: Arc<dyn Store>, clock: ManualClock) {
    store.ping().await.expect("ping");
    let u = user();
    let mut r = session(&u, &TenantId::none(), HOUR, HOUR);
    r.expires_at = clock.now().plus(HOUR);
    create(&store, &r).await;
    assert!(store.get_session(r.id).await.expect("get").is_some());
    clock.advance(HOUR);
    // Over by the store's clock: absent before any sweep (a backend with TTLs still holds
    // the cells, for the real hour of their TTL), and after one.
    assert!(store.get_session(r.id).await.expect("get").is_none());
    let swept = store.sweep(clock.now()).await.expect("sweep");
    assert!(store.get_session(r.id).await.expect("get").is_none());
    assert!(
        store
            .list_user_sessions(&u, None)
            .await
            .expect("list")
            .is_empty()
    );
    // A store that counts its rows (embedded) swept this one, the only one it held; one that
    // expires rows by itself (TTLs) sweeps nothing and cannot count cheaply.
    match store.approx_live_sessions().await.expect("count") {
        Some(left) => assert_eq!((swept, left), (1, 0), "swept, left"),
        None => assert_eq!(swept, 0),
    }
}

pub async fn capped_creation_keeps_at_most_cap_active_under_races(store: Arc<dyn Store>) {
    const CAP: usize = 3;
    const RACERS: usize = 24;
    let u = user();
    let fresh = |u: &UserId| session(u, &TenantId::none(), Duration::ZERO, HOUR);
    let first = fresh(&u);
    let second = fresh(&u);
    for r in [&first, &second] {
        let evicted = store
            .create_session_capped(r, CAP, "session_limit", &[])
            .await
            .expect("create capped");
        assert!(evicted.is_empty(), "under the cap nothing is evicted");
    }
    // A revoked session does not count against the cap.
    store
        .revoke_session(second.id, Timestamp::now(), "user")
        .await
        .expect("revoke");
    let third = fresh(&u);
    let evicted = store
        .create_session_capped(&third, CAP, "session_limit", &[])
        .await
        .expect("create capped");
    assert!(evicted.is_empty(), "a revoked session freed its slot");

    let racers: Vec<SessionRecord> = (0..RACERS).map(|_| fresh(&u)).collect();
    let tasks: Vec<_> = racers
        .iter()
        .cloned()
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_session_capped(&r, CAP, "session_limit", &[])
                    .await
            })
        })
        .collect();
    // Two racing creations may both report an eviction that both decided (ScyllaDB: one
    // evicts from the slots, the next sees it still listed active), never one that none did.
    let mut evicted = HashSet::new();
    for t in tasks {
        evicted.extend(t.await.expect("join").expect("create capped"));
    }
    let active = store.list_user_sessions(&u, None).await.expect("list");
    assert_eq!(
        active.len(),
        CAP,
        "active after {RACERS} racing creations: {active:?}"
    );
    // Everyone else (the two live before the race and all but CAP of the racers) was evicted,
    // and is revoked in the store.
    assert_eq!(evicted.len(), 2 + RACERS - CAP);
    for id in &evicted {
        let r = store.get_session(*id).await.expect("get").expect("present");
        assert_eq!(r.revoke_reason, "session_limit");
    }
    // Evicted sessions left the user's index at once: a listing with revoked sessions shows
    // the live ones and the one the user revoked, not the history of evictions.
    let filter = SessionFilter {
        scope: SessionScope::User(u.clone()),
        include_revoked: true,
    };
    let listed = store
        .list_sessions(&filter, None, 1000)
        .await
        .expect("list with revoked");
    let ids: HashSet<SessionId> = listed.items.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), CAP + 1, "{ids:?}");
    assert!(ids.contains(&second.id));
    assert!(ids.is_disjoint(&evicted));
}
