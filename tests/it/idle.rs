//! Idle timeout: a session unused for longer than its idle timeout is over on every surface,
//! activity seen by any replica counts, and the embedded store's sweeper removes idle
//! sessions. Time moves only when a test advances its manual clock; the one real wait is for
//! the write-behind of `last_seen_at` to reach the store, polled with a deadline.
//!
//! The two-replica case needs a CQL node (`scripts/test` starts one and runs it with
//! `--include-ignored`); the rest runs on whichever backend `SESSIOND_TEST_BACKEND` names.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sessiond::config::Config;
use sessiond::model::records::{SessionRecord, SignIn};
use sessiond::model::{Clock, ManualClock, SessionId, TenantId, Timestamp, UserId};
use sessiond::pb;
use sessiond::store::Store;
use sessiond::store::embedded::{EmbeddedOptions, EmbeddedStore};
use support::{
    Client, Issued, TestServer, assert_error, assert_invalid, assert_valid, poll_until, refresh,
};
use tonic::Code;

use pb::InvalidReason;

const INTERVAL: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(5);

fn second(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Settings for a server on `clock` that writes activity at most once a second.
fn on_clock(clock: &ManualClock) -> impl FnOnce(&mut Config) + use<> {
    let shared = clock.shared();
    move |c: &mut Config| {
        c.clock = shared;
        c.last_seen_interval = INTERVAL;
    }
}

/// Issues a session of `user` with an idle timeout of `IDLE`.
async fn issue_idle(client: &mut Client, user: &str) -> (Issued, pb::Session) {
    let reply = client
        .issue(pb::IssueRequest {
            idle_timeout: Some(prost_types::Duration {
                seconds: IDLE.as_secs() as i64,
                nanos: 0,
            }),
            ..support::issue_request(user)
        })
        .await
        .expect("issue")
        .into_inner();
    let session = reply.session.clone().expect("session");
    (reply.into(), session)
}

/// The stored session as the admin listing shows it (with ended ones).
async fn stored(client: &mut Client, user: &str, session_id: &str) -> Option<pb::Session> {
    support::admin_list_all(
        client,
        pb::AdminListRequest {
            user_id: user.into(),
            include_revoked: true,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .find(|s| s.session_id == session_id)
}

/// Waits (a bounded poll) until the store's `last_seen_at` of the session is `at`.
async fn last_seen_reaches(client: &mut Client, user: &str, session_id: &str, at: Timestamp) {
    poll_until("the last-seen write to reach the store", second(10), || {
        let mut client = client.clone();
        async move {
            let s = stored(&mut client, user, session_id).await?;
            (s.last_seen_at.map(|t| t.seconds) == Some(at.as_secs())).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_session_left_unused_is_over_everywhere_and_activity_keeps_it() {
    let clock = ManualClock::starting_now();
    let server = TestServer::start_with(on_clock(&clock)).await;
    let mut client = server.client();
    let (idle, session) = issue_idle(&mut client, "idler").await;
    assert_eq!(
        session.idle_timeout,
        Some(prost_types::Duration {
            seconds: 5,
            nanos: 0
        })
    );

    // Used every few seconds, it stays: each use is written behind once per interval.
    for _ in 0..3 {
        clock.advance(second(4));
        assert_valid(&mut client, &idle.access).await;
        last_seen_reaches(&mut client, "idler", &idle.session_id, clock.now()).await;
    }

    // Then left alone just past its idle timeout.
    clock.advance(IDLE + Duration::from_millis(1));
    assert_invalid(&mut client, &idle.access, InvalidReason::IdleTimeout).await;
    assert_error(
        refresh(&mut client, &idle.refresh).await,
        Code::Unauthenticated,
        "SESSION_IDLE",
    );
    // A new session of the same user lists without it; the admin listing shows it only
    // with ended sessions.
    let fresh = server.issue("idler").await;
    let listed = client
        .list(pb::ListRequest {
            access_token: fresh.access.clone(),
        })
        .await
        .expect("list")
        .into_inner()
        .sessions;
    let ids: Vec<&str> = listed.iter().map(|s| s.session_id.as_str()).collect();
    assert_eq!(ids, vec![fresh.session_id.as_str()]);
    let active = support::admin_list_all(
        &mut client,
        pb::AdminListRequest {
            user_id: "idler".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(active.iter().all(|s| s.session_id != idle.session_id));
    assert!(
        stored(&mut client, "idler", &idle.session_id)
            .await
            .is_some()
    );
    // Activity of another session does not revive it.
    assert_valid(&mut client, &fresh.access).await;
    assert_invalid(&mut client, &idle.access, InvalidReason::IdleTimeout).await;
}

#[tokio::test]
async fn refresh_is_activity_and_the_default_comes_from_the_flag() {
    let clock = ManualClock::starting_now();
    let setup = on_clock(&clock);
    let server = TestServer::start_with(move |c| {
        setup(c);
        c.idle_timeout = IDLE;
    })
    .await;
    let mut client = server.client();
    let issued = server.issue("refresher").await;
    let listed = stored(&mut client, "refresher", &issued.session_id)
        .await
        .expect("stored");
    assert_eq!(
        listed.idle_timeout.map(|d| d.seconds),
        Some(5),
        "--idle-timeout applies"
    );

    // Refreshing every 4s keeps it, with no Validate at all.
    let mut token = issued.refresh.clone();
    for _ in 0..3 {
        clock.advance(second(4));
        token = refresh(&mut client, &token).await.expect("refresh").refresh;
    }
    clock.advance(IDLE + Duration::from_millis(1));
    assert_error(
        refresh(&mut client, &token).await,
        Code::Unauthenticated,
        "SESSION_IDLE",
    );

    // `idle_timeout: 0s` on Issue turns it off for that session.
    let unbounded: Issued = client
        .issue(pb::IssueRequest {
            idle_timeout: Some(prost_types::Duration::default()),
            ..support::issue_request("refresher")
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    clock.advance(second(3600));
    // Its first access token expired long ago; a refresh shows the session itself stands.
    let renewed = refresh(&mut client, &unbounded.refresh)
        .await
        .expect("a session without an idle timeout");
    assert_valid(&mut client, &renewed.access).await;
}

#[tokio::test]
async fn a_too_short_idle_timeout_is_refused() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let status = client
        .issue(pb::IssueRequest {
            // Under twice the default last-seen interval (60s).
            idle_timeout: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..support::issue_request("short")
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("idle_timeout"), "{status:?}");
}

/// Replicas A and B on one fresh keyspace of the CQL node, sharing keys and `clock`.
async fn two_replicas(clock: &ManualClock) -> (TestServer, TestServer, tempfile::TempDir) {
    TestServer::cql_replicas_on(clock, |c| {
        c.last_seen_interval = INTERVAL;
        // Cached state counts as fresh for 3 × poll + 2s of the manual clock: a long poll
        // keeps the replicas answering from their caches across the test's jumps, which is
        // the path under test (a stale-looking feed would send every check to the store).
        c.revocation_poll = Duration::from_secs(60);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
async fn activity_on_another_replica_counts() {
    let clock = ManualClock::starting_now();
    let (a, b, _keys) = two_replicas(&clock).await;
    let mut on_a = a.client();
    let mut on_b = b.client();
    let (issued, _) = issue_idle(&mut on_a, "roamer").await;
    // A caches the session with its activity at t+1.
    clock.advance(second(1));
    assert_valid(&mut on_a, &issued.access).await;
    last_seen_reaches(&mut on_a, "roamer", &issued.session_id, clock.now()).await;
    // The user moves to B, which sees activity at t+4; A hears nothing of it.
    clock.advance(second(3));
    assert_valid(&mut on_b, &issued.access).await;
    last_seen_reaches(&mut on_b, "roamer", &issued.session_id, clock.now()).await;
    // At t+7 A's own entry says 6s without use, past the timeout; the store says 3s.
    clock.advance(second(3));
    assert_valid(&mut on_a, &issued.access).await;
    // And once the user really stops, both replicas agree.
    last_seen_reaches(&mut on_a, "roamer", &issued.session_id, clock.now()).await;
    clock.advance(IDLE + Duration::from_millis(1));
    assert_invalid(&mut on_a, &issued.access, InvalidReason::IdleTimeout).await;
    assert_invalid(&mut on_b, &issued.access, InvalidReason::IdleTimeout).await;
}

fn record(idle: Option<Duration>, last_seen: Timestamp) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(),
        user_id: UserId::parse("user_id", "swept").expect("user"),
        tenant_id: TenantId::none(),
        created_at: last_seen,
        last_seen_at: last_seen,
        expires_at: last_seen.plus(second(86_400)),
        ip: String::new(),
        user_agent: String::new(),
        device_name: String::new(),
        metadata: BTreeMap::new(),
        refresh_generation: 0,
        refresh_hash: sessiond::model::records::RefreshHash([1; 32]),
        refresh_salt: None,
        previous_refresh: None,
        idle_timeout: idle,
        sign_in: SignIn {
            auth_time: last_seen,
            acr: String::new(),
            amr: Vec::new(),
        },
        revoked_at: None,
        revoke_reason: String::new(),
    }
}

#[tokio::test]
async fn the_embedded_sweeper_removes_idle_sessions_and_keeps_used_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::starting_now();
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default(), clock.shared()).expect("open"),
    );
    let t0 = clock.now();
    let idle = record(Some(IDLE), t0);
    let used = record(Some(IDLE), t0);
    let unbounded = record(None, t0);
    for r in [&idle, &used, &unbounded] {
        store
            .create_session_capped(r, 100, "cap", &[])
            .await
            .expect("create");
    }
    // `used` is seen at t0+4: its deadline moves to t0+9.
    store
        .touch_sessions(&[(used.id, t0.plus(second(4)))])
        .await
        .expect("touch");
    // At the deadline itself nothing is idle yet.
    assert_eq!(store.sweep(t0.plus(IDLE)).await.expect("sweep"), 0);
    let swept = store
        .sweep(t0.plus(IDLE).plus(Duration::from_micros(1)))
        .await
        .expect("sweep");
    assert_eq!(swept, 1);
    assert!(store.get_session(idle.id).await.expect("get").is_none());
    assert!(store.get_session(used.id).await.expect("get").is_some());
    let listed = store
        .list_user_sessions(&idle.user_id, None)
        .await
        .expect("list");
    assert_eq!(
        listed.len(),
        2,
        "the per-user listing lost the idle one too"
    );
    // Past `used`'s moved deadline it goes as well; the one without a timeout stays.
    let swept = store
        .sweep(t0.plus(second(9)).plus(Duration::from_micros(1)))
        .await
        .expect("sweep");
    assert_eq!(swept, 1);
    assert!(store.get_session(used.id).await.expect("get").is_none());
    assert!(
        store
            .get_session(unbounded.id)
            .await
            .expect("get")
            .is_some()
    );
}
