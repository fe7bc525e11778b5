//! The RPC behaviour of `sessiond.v1.SessionService`, through the generated client against a
//! real server on `127.0.0.1:0` over a real embedded store in a tempdir.

use crate::support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond::pb;
use sessiond::pb::InvalidReason;
use support::*;
use tonic::Code;
use tonic_types::StatusExt;

/// Microseconds since the epoch of a protobuf timestamp.
fn micros(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("timestamp set");
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
}

fn duration(secs: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: secs,
        nanos: 0,
    }
}

fn ids(sessions: &[pb::Session]) -> Vec<String> {
    sessions.iter().map(|s| s.session_id.clone()).collect()
}

fn set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

async fn list(client: &mut Client, access: &str) -> Result<Vec<pb::Session>, tonic::Status> {
    client
        .list(pb::ListRequest {
            access_token: access.to_owned(),
        })
        .await
        .map(|r| r.into_inner().sessions)
}

async fn revoke(
    client: &mut Client,
    access: &str,
    session_id: &str,
) -> Result<pb::RevokeResponse, tonic::Status> {
    client
        .revoke(pb::RevokeRequest {
            access_token: access.to_owned(),
            session_id: session_id.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn revoke_all(
    client: &mut Client,
    access: &str,
    include_current: bool,
) -> Result<u32, tonic::Status> {
    client
        .revoke_all(pb::RevokeAllRequest {
            access_token: access.to_owned(),
            include_current,
        })
        .await
        .map(|r| r.into_inner().revoked_count)
}

// ---------------------------------------------------------------------------------------------
// Happy paths, one RPC at a time.

#[tokio::test]
async fn issue_returns_a_session_and_a_token_pair() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued: Issued = client
        .issue(pb::IssueRequest {
            user_id: "alice".into(),
            tenant_id: "acme".into(),
            client: Some(pb::ClientInfo {
                ip: "2001:DB8::1".into(),
                user_agent: "curl/8.0".into(),
                device_name: "work laptop".into(),
            }),
            ttl: Some(duration(3600)),
            metadata: HashMap::from([("login".to_owned(), "password".to_owned())]),
            ..Default::default()
        })
        .await
        .expect("issue")
        .into_inner()
        .into();

    let s = &issued.session;
    uuid::Uuid::parse_str(&s.session_id).expect("session_id is a UUID");
    assert_eq!(s.user_id, "alice");
    assert_eq!(s.tenant_id, "acme");
    assert_eq!(s.ip, "2001:db8::1", "ip is kept in canonical form");
    assert_eq!(s.user_agent, "curl/8.0");
    assert_eq!(s.device_name, "work laptop", "a given device name is kept");
    assert_eq!(
        s.metadata.get("login").map(String::as_str),
        Some("password")
    );
    assert!(s.current, "the issued session is the caller's own");
    assert!(s.revoked_at.is_none());
    assert_eq!(
        micros(&s.expires_at) - micros(&s.created_at),
        3_600_000_000,
        "the requested ttl is the session's lifetime"
    );
    assert_valid(&mut client, &issued.access).await;

    // The access token is a JWT with the contracted claims.
    let payload = issued.access.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], s.session_id.as_str());
    assert_eq!(claims["tid"], "acme");
    assert_eq!(claims["iss"], "sessiond");
    let exp = claims["exp"].as_i64().expect("exp");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(
        (899..=900).contains(&(exp - iat)),
        "default access ttl is 15 min, got {}s",
        exp - iat
    );
    assert!(
        exp * 1_000_000 <= micros(&s.expires_at),
        "token outlives session"
    );
}

#[tokio::test]
async fn issue_caps_ttl_and_never_lets_a_token_outlive_its_session() {
    let server = TestServer::start().await;
    let mut client = server.client();
    // Far above the 90-day maximum: capped.
    let long: Issued = client
        .issue(pb::IssueRequest {
            ttl: Some(duration(365 * 86400)),
            ..issue_request("alice")
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    let life = micros(&long.session.expires_at) - micros(&long.session.created_at);
    assert_eq!(
        life,
        90 * 86400 * 1_000_000,
        "ttl capped at max_session_ttl"
    );

    // Shorter than the access token ttl: the token ends with the session.
    let short = client
        .issue(pb::IssueRequest {
            ttl: Some(duration(60)),
            ..issue_request("alice")
        })
        .await
        .expect("issue")
        .into_inner();
    let tokens = short.tokens.expect("tokens");
    let session = short.session.expect("session");
    assert!(micros(&tokens.access_token_expires_at) <= micros(&session.expires_at));
    assert_eq!(
        micros(&tokens.refresh_token_expires_at),
        micros(&session.expires_at)
    );
}

#[tokio::test]
async fn issue_derives_device_name_from_user_agent() {
    let server = TestServer::start().await;
    let issued: Issued = server
        .client()
        .issue(pb::IssueRequest {
            client: Some(pb::ClientInfo {
                user_agent: CHROME_ON_MAC.into(),
                ..Default::default()
            }),
            ..issue_request("alice")
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    assert_eq!(issued.session.device_name, "Chrome on macOS");
}

#[tokio::test]
async fn refresh_rotates_the_token_pair() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let first = server.issue("alice").await;
    let second = refresh(&mut client, &first.refresh).await.expect("refresh");
    assert_eq!(second.session_id, first.session_id, "same session");
    assert_ne!(second.refresh, first.refresh, "refresh token rotated");
    assert_ne!(second.access, first.access, "new access token");
    assert_valid(&mut client, &second.access).await;
    // And again with the newest token: rotation keeps working.
    let third = refresh(&mut client, &second.refresh)
        .await
        .expect("refresh");
    assert_eq!(third.session_id, first.session_id);
    assert_valid(&mut client, &third.access).await;
}

#[tokio::test]
async fn validate_answers_valid_with_the_session() {
    let server = TestServer::start().await;
    let issued = server.issue("alice").await;
    let reply = server
        .client()
        .validate(pb::ValidateRequest {
            access_token: issued.access.clone(),
            ..Default::default()
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(reply.valid);
    assert_eq!(reply.reason, InvalidReason::Unspecified as i32);
    let session = reply.session.expect("session set when valid");
    assert_eq!(session.session_id, issued.session_id);
    assert_eq!(session.user_id, "alice");
}

#[tokio::test]
async fn validate_with_the_basic_view_answers_ids_lifetimes_and_sign_in_only() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued: Issued = client
        .issue(pb::IssueRequest {
            user_id: "alice".into(),
            tenant_id: "acme".into(),
            client: Some(pb::ClientInfo {
                ip: "203.0.113.7".into(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0".into(),
                device_name: String::new(),
            }),
            metadata: HashMap::from([("plan".to_owned(), "pro".to_owned())]),
            idle_timeout: Some(duration(900)),
            acr: "urn:example:mfa".into(),
            amr: vec!["pwd".into(), "otp".into()],
            ..Default::default()
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    let answer = |view: pb::SessionView| {
        let mut client = client.clone();
        let token = issued.access.clone();
        async move {
            let reply = client
                .validate(pb::ValidateRequest {
                    access_token: token,
                    view: view as i32,
                    ..Default::default()
                })
                .await
                .expect("validate")
                .into_inner();
            assert!(reply.valid, "{view:?}");
            reply.session.expect("session set when valid")
        }
    };
    let full = answer(pb::SessionView::Full).await;
    assert_eq!(answer(pb::SessionView::Unspecified).await, full);
    assert_eq!(full.ip, "203.0.113.7");
    assert!(!full.device_name.is_empty());
    let basic = answer(pb::SessionView::Basic).await;
    assert_eq!(
        basic,
        pb::Session {
            session_id: full.session_id.clone(),
            user_id: "alice".into(),
            tenant_id: "acme".into(),
            expires_at: full.expires_at,
            current: true,
            idle_timeout: Some(duration(900)),
            auth_time: full.auth_time,
            acr: "urn:example:mfa".into(),
            amr: vec!["pwd".into(), "otp".into()],
            ..Default::default()
        },
        "the basic view carries exactly the ids, lifetimes and sign-in"
    );
    assert_eq!(basic.session_id, issued.session_id);

    // An unknown view is refused, not answered in full.
    let status = client
        .validate(pb::ValidateRequest {
            access_token: issued.access.clone(),
            view: 7,
            ..Default::default()
        })
        .await
        .expect_err("unknown view");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("view"), "{}", status.message());
}

#[tokio::test]
async fn list_shows_own_active_sessions_and_marks_the_current_one() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let a1 = server.issue("alice").await;
    let a2 = server.issue("alice").await;
    let a3 = server.issue("alice").await;
    let b1 = server.issue("bob").await;
    revoke(&mut client, &a1.access, &a3.session_id)
        .await
        .expect("revoke");

    let sessions = list(&mut client, &a1.access).await.expect("list");
    assert_eq!(
        set(&ids(&sessions)),
        set(&[a1.session_id.clone(), a2.session_id.clone()]),
        "alice sees her active sessions only: not a revoked one, not bob's"
    );
    for s in &sessions {
        assert_eq!(s.user_id, "alice");
        assert_eq!(
            s.current,
            s.session_id == a1.session_id,
            "current flag of {s:?}"
        );
    }
    let bobs = list(&mut client, &b1.access).await.expect("list");
    assert_eq!(ids(&bobs), vec![b1.session_id.clone()]);
    assert!(bobs[0].current);
}

#[tokio::test]
async fn list_is_scoped_to_the_tokens_tenant() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issue_in = |tenant: &'static str| pb::IssueRequest {
        tenant_id: tenant.into(),
        ..issue_request("alice")
    };
    let t1: Issued = client
        .issue(issue_in("t1"))
        .await
        .unwrap()
        .into_inner()
        .into();
    let t2: Issued = client
        .issue(issue_in("t2"))
        .await
        .unwrap()
        .into_inner()
        .into();
    let sessions = list(&mut client, &t1.access).await.expect("list");
    assert_eq!(ids(&sessions), vec![t1.session_id.clone()]);
    // Another tenant's session of the same user is not the caller's to revoke.
    assert_error(
        revoke(&mut client, &t1.access, &t2.session_id).await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    assert_valid(&mut client, &t2.access).await;
}

#[tokio::test]
async fn revoke_ends_own_sessions_reports_was_current_and_is_idempotent() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let a1 = server.issue("alice").await;
    let a2 = server.issue("alice").await;

    let r = revoke(&mut client, &a1.access, &a2.session_id)
        .await
        .expect("revoke other own session");
    assert!(!r.was_current);
    assert_invalid(&mut client, &a2.access, InvalidReason::Revoked).await;
    assert_valid(&mut client, &a1.access).await;

    // Revoking an own, already revoked session is fine.
    let again = revoke(&mut client, &a1.access, &a2.session_id)
        .await
        .expect("idempotent");
    assert!(!again.was_current);

    let current = revoke(&mut client, &a1.access, &a1.session_id)
        .await
        .expect("revoke current session");
    assert!(current.was_current);
    assert_invalid(&mut client, &a1.access, InvalidReason::Revoked).await;
    // The session's refresh token dies with it.
    assert_error(
        refresh(&mut client, &a1.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
}

#[tokio::test]
async fn a_user_never_revokes_another_users_session() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let alice = server.issue("alice").await;
    let bob = server.issue("bob").await;

    let foreign = assert_error(
        revoke(&mut client, &alice.access, &bob.session_id).await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    let unknown = assert_error(
        revoke(
            &mut client,
            &alice.access,
            &uuid::Uuid::new_v4().to_string(),
        )
        .await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    assert_eq!(
        foreign.message(),
        unknown.message(),
        "another user's session answers exactly like an unknown id"
    );
    assert_valid(&mut client, &bob.access).await;
}

#[tokio::test]
async fn revoke_all_keeps_the_current_session_unless_asked() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let a1 = server.issue("alice").await;
    let a2 = server.issue("alice").await;
    let a3 = server.issue("alice").await;
    let bob = server.issue("bob").await;

    let count = revoke_all(&mut client, &a1.access, false)
        .await
        .expect("revoke all");
    assert_eq!(count, 2);
    assert_valid(&mut client, &a1.access).await;
    assert_invalid(&mut client, &a2.access, InvalidReason::Revoked).await;
    assert_invalid(&mut client, &a3.access, InvalidReason::Revoked).await;

    let a4 = server.issue("alice").await;
    let count = revoke_all(&mut client, &a1.access, true)
        .await
        .expect("revoke all including current");
    assert_eq!(count, 2, "a1 and a4; a2 and a3 were already revoked");
    assert_invalid(&mut client, &a1.access, InvalidReason::Revoked).await;
    assert_invalid(&mut client, &a4.access, InvalidReason::Revoked).await;
    assert_valid(&mut client, &bob.access).await;
}

#[tokio::test]
async fn admin_list_pages_return_every_session_exactly_once() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let users = [("alice", 10), ("bob", 7), ("carol", 5), ("dave", 3)];
    let mut by_user: HashMap<&str, Vec<Issued>> = HashMap::new();
    for (user, n) in users {
        for _ in 0..n {
            by_user
                .entry(user)
                .or_default()
                .push(server.issue(user).await);
        }
    }
    let every: HashSet<String> = by_user
        .values()
        .flatten()
        .map(|i| i.session_id.clone())
        .collect();
    assert_eq!(every.len(), 25);

    for page_size in [1, 7, 1000, 0] {
        let all = admin_list_all(
            &mut client,
            pb::AdminListRequest {
                page_size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(all.len(), 25, "page size {page_size}: count");
        assert_eq!(set(&ids(&all)), every, "page size {page_size}: ids");
        assert!(all.iter().all(|s| !s.current && s.revoked_at.is_none()));

        let alices = admin_list_all(
            &mut client,
            pb::AdminListRequest {
                user_id: "alice".into(),
                page_size,
                ..Default::default()
            },
        )
        .await;
        let expected: Vec<String> = by_user["alice"]
            .iter()
            .map(|i| i.session_id.clone())
            .collect();
        assert_eq!(alices.len(), 10, "page size {page_size}: alice's count");
        assert_eq!(set(&ids(&alices)), set(&expected));
        assert!(alices.iter().all(|s| s.user_id == "alice"));
    }

    // Revoked sessions are hidden unless asked for.
    let revoked = [
        by_user["alice"][0].session_id.clone(),
        by_user["alice"][5].session_id.clone(),
        by_user["bob"][2].session_id.clone(),
    ];
    for id in &revoked {
        let r = client
            .admin_revoke_session(pb::AdminRevokeSessionRequest {
                session_id: id.clone(),
                reason: "test".into(),
            })
            .await
            .expect("admin revoke")
            .into_inner();
        assert!(r.revoked);
    }
    for page_size in [1, 7, 1000] {
        let active = admin_list_all(
            &mut client,
            pb::AdminListRequest {
                page_size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(active.len(), 22, "page size {page_size}");
        assert!(set(&ids(&active)).is_disjoint(&set(&revoked)));

        let with_revoked = admin_list_all(
            &mut client,
            pb::AdminListRequest {
                include_revoked: true,
                page_size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(with_revoked.len(), 25, "page size {page_size}");
        assert_eq!(set(&ids(&with_revoked)), every);
        for s in &with_revoked {
            let is_revoked = revoked.contains(&s.session_id);
            assert_eq!(s.revoked_at.is_some(), is_revoked, "{s:?}");
            if is_revoked {
                assert_eq!(s.revoke_reason, "test");
            }
        }

        let alices = admin_list_all(
            &mut client,
            pb::AdminListRequest {
                user_id: "alice".into(),
                include_revoked: true,
                page_size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(alices.len(), 10);
        let active_alices = admin_list_all(
            &mut client,
            pb::AdminListRequest {
                user_id: "alice".into(),
                page_size,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(active_alices.len(), 8);
    }
}

#[tokio::test]
async fn admin_list_filters_by_tenant() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for tenant in ["t1", "t1", "t2"] {
        client
            .issue(pb::IssueRequest {
                tenant_id: tenant.into(),
                ..issue_request("alice")
            })
            .await
            .expect("issue");
    }
    let t1 = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            user_id: "alice".into(),
            tenant_id: "t1".into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(t1.len(), 2);
    assert!(t1.iter().all(|s| s.tenant_id == "t1"));
}

#[tokio::test]
async fn admin_revoke_user_rejects_older_tokens_but_not_newer_ones() {
    // On a manual clock, so "right after, within the same second" is exactly that.
    let server = TestServer::start_on_manual_clock(|_| {}).await;
    server.clock().set(half_past_next_second(server.now()));
    let mut client = server.client();
    let a1 = server.issue("alice").await;
    let a2 = server.issue("alice").await;
    let bob = server.issue("bob").await;
    server.advance(Duration::from_micros(1));

    let r = client
        .admin_revoke_user(pb::AdminRevokeUserRequest {
            user_id: "alice".into(),
            tenant_id: String::new(),
            reason: "offboarded".into(),
        })
        .await
        .expect("admin revoke user")
        .into_inner();
    assert_eq!(r.revoked_count, 2);
    // Issued at the mark's own instant, a microsecond after the others, within the same
    // second: not before the mark, so valid.
    let a3 = server.issue("alice").await;
    assert_eq!(
        instant(&a3.session.created_at).as_secs(),
        instant(&a1.session.created_at).as_secs()
    );

    assert_invalid(&mut client, &a1.access, InvalidReason::Revoked).await;
    assert_invalid(&mut client, &a2.access, InvalidReason::Revoked).await;
    assert_error(
        refresh(&mut client, &a1.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_valid(&mut client, &a3.access).await;
    assert_valid(&mut client, &bob.access).await;
    let fresh = refresh(&mut client, &a3.refresh).await.expect("refresh");
    assert_valid(&mut client, &fresh.access).await;
}

#[tokio::test]
async fn admin_revoke_session_ends_any_users_session_once() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let alice = server.issue("alice").await;
    let request = pb::AdminRevokeSessionRequest {
        session_id: alice.session_id.clone(),
        reason: "support".into(),
    };
    let first = client
        .admin_revoke_session(request.clone())
        .await
        .expect("revoke")
        .into_inner();
    assert!(first.revoked);
    assert_invalid(&mut client, &alice.access, InvalidReason::Revoked).await;
    let second = client
        .admin_revoke_session(request)
        .await
        .expect("revoke again")
        .into_inner();
    assert!(!second.revoked, "false when it was already revoked");

    assert_error(
        client
            .admin_revoke_session(pb::AdminRevokeSessionRequest {
                session_id: uuid::Uuid::new_v4().to_string(),
                reason: String::new(),
            })
            .await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
}

#[tokio::test]
async fn admin_revoke_all_sessions_needs_confirmation_and_rejects_earlier_tokens() {
    // On a manual clock: the switch lands one microsecond after the last token before it.
    let server = TestServer::start_on_manual_clock(|_| {}).await;
    let mut client = server.client();
    let a = server.issue("alice").await;
    let b = server.issue("bob").await;
    let refreshed = refresh(&mut client, &b.refresh).await.expect("refresh");
    server.advance(Duration::from_micros(1));

    assert_error(
        client
            .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
                reason: "oops".into(),
                confirm: false,
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_valid(&mut client, &a.access).await;

    let r = client
        .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
            reason: "incident".into(),
            confirm: true,
        })
        .await
        .expect("global revoke")
        .into_inner();
    assert_eq!(
        instant(&r.not_before),
        server.now(),
        "the switch is now, to the microsecond"
    );
    // Issued at the switch's own instant: not before it, so valid.
    let later = server.issue("alice").await;

    for token in [&a.access, &b.access, &refreshed.access] {
        assert_invalid(&mut client, token, InvalidReason::Revoked).await;
    }
    assert_error(
        refresh(&mut client, &refreshed.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_valid(&mut client, &later.access).await;
    let sessions = list(&mut client, &later.access).await.expect("list");
    assert_eq!(ids(&sessions), vec![later.session_id.clone()]);
}

/// The emergency switch, when the store cannot take it, is still honoured by the replica
/// asked: its cached sessions go, so it answers from the store again (and, the store failing,
/// refuses) instead of `valid=true` from its cache.
#[tokio::test]
async fn admin_revoke_all_sessions_the_store_cannot_take_drops_the_cached_state() {
    use sessiond::hooks::{Fault, Hooks, Op};
    use std::sync::atomic::{AtomicBool, Ordering};

    let down = Arc::new(AtomicBool::new(false));
    let failing = down.clone();
    let server = TestServer::start_with(move |c| {
        c.hooks = Hooks::default().fail_store(move |op| {
            let hit = matches!(
                op,
                Op::SetGlobalNotBefore | Op::GetSession | Op::SessionAndMarks
            );
            (hit && failing.load(Ordering::SeqCst)).then_some(Fault::FailBefore)
        });
    })
    .await;
    let mut client = server.client();
    let a = server.issue("alice").await;
    assert_valid(&mut client, &a.access).await;

    down.store(true, Ordering::SeqCst);
    // Cached: answered without the store.
    assert_valid(&mut client, &a.access).await;
    let switched = client
        .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
            reason: "incident".into(),
            confirm: true,
        })
        .await;
    assert_eq!(
        switched.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unavailable)
    );
    let after = client
        .validate(pb::ValidateRequest {
            access_token: a.access.clone(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().valid);
    assert_eq!(
        after.map_err(|s| s.code()),
        Err(Code::Unavailable),
        "the cached session must be gone, so Validate needs the store"
    );

    down.store(false, Ordering::SeqCst);
    assert_valid(&mut client, &a.access).await;
}

// ---------------------------------------------------------------------------------------------
// Validate's reasons.

#[tokio::test]
async fn validate_reports_malformed_tokens() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued = server.issue("alice").await;
    for token in [
        "",
        "garbage",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9.e30.AAAA",
        &"x".repeat(10_000),
        &issued.refresh,
    ] {
        assert_invalid(&mut client, token, InvalidReason::Malformed).await;
    }
}

/// `token` with the first character of its signature changed.
fn tamper_signature(token: &str) -> String {
    let (body, sig) = token.rsplit_once('.').expect("a JWT");
    let mut sig: Vec<char> = sig.chars().collect();
    sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
    format!("{body}.{}", sig.into_iter().collect::<String>())
}

/// `token` claiming another subject, with its original signature.
fn tamper_subject(token: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "mallory".into();
    let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    parts[1] = &forged;
    parts.join(".")
}

#[tokio::test]
async fn validate_reports_bad_signatures() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let mut client = server.client();
    let issued = server.issue("alice").await;
    let foreign = other.issue("alice").await;

    assert_invalid(
        &mut client,
        &tamper_signature(&issued.access),
        InvalidReason::BadSignature,
    )
    .await;
    assert_invalid(
        &mut client,
        &tamper_subject(&issued.access),
        InvalidReason::BadSignature,
    )
    .await;
    // Signed by another server's key.
    assert_invalid(&mut client, &foreign.access, InvalidReason::BadSignature).await;
    // The untouched token is still fine, so the failures above are the tampering's.
    assert_valid(&mut client, &issued.access).await;

    // Such tokens are unusable for the RPCs that need one.
    let status = assert_error(
        list(&mut client, &foreign.access).await,
        Code::Unauthenticated,
        "TOKEN_BAD_SIGNATURE",
    );
    assert!(!status.message().contains(&foreign.access));
    assert_error(
        refresh(&mut client, &foreign.refresh).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_INVALID",
    );
}

#[tokio::test]
async fn validate_reports_unknown_session_for_a_token_of_another_store() {
    // Two servers sharing their keys (`--key-dir`, as replicas do) but not their store: the
    // second verifies the first one's tokens, and knows nothing of their sessions.
    let keys = tempfile::tempdir().expect("tempdir");
    let key_dir = keys.path().to_owned();
    let first = TestServer::start_with(|c| c.key_dir = key_dir.clone()).await;
    let issued = first.issue("alice").await;
    let second = TestServer::start_with(|c| c.key_dir = key_dir.clone()).await;
    let mut client = second.client();

    assert_invalid(&mut client, &issued.access, InvalidReason::UnknownSession).await;
    assert_error(
        list(&mut client, &issued.access).await,
        Code::Unauthenticated,
        "SESSION_UNKNOWN",
    );
    assert_error(
        refresh(&mut client, &issued.refresh).await,
        Code::Unauthenticated,
        "SESSION_UNKNOWN",
    );
    // The first server still knows it.
    assert_valid(&mut first.client(), &issued.access).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire() {
    // On a manual clock: each lifetime ends at the microsecond the test moves the clock to.
    let server = TestServer::start_on_manual_clock(|_| {}).await;
    let mut client = server.client();
    // A token of the default 15 minutes in a session of 30 days, and a session of one hour
    // whose token lives 15 minutes too.
    let long_session = server.issue("alice").await;
    let short_session: Issued = client
        .issue(pb::IssueRequest {
            ttl: Some(duration(3600)),
            ..issue_request("bob")
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    let exp = access_expiry(&long_session.access);
    assert_eq!(exp, access_expiry(&short_session.access));
    assert_eq!(
        exp.as_secs(),
        server.now().plus(Duration::from_secs(900)).as_secs()
    );

    // Valid until the last microsecond before `exp`, EXPIRED from `exp` on, on every surface.
    server.clock().set(exp.minus(Duration::from_micros(1)));
    for token in [&long_session.access, &short_session.access] {
        assert_valid(&mut client, token).await;
    }
    server.advance(Duration::from_micros(1));
    for token in [&long_session.access, &short_session.access] {
        assert_invalid(&mut client, token, InvalidReason::Expired).await;
        assert_error(
            list(&mut client, token).await,
            Code::Unauthenticated,
            "TOKEN_EXPIRED",
        );
    }

    // The session outlives its access token: refresh gives a new, valid one.
    let renewed = refresh(&mut client, &long_session.refresh)
        .await
        .expect("refresh after access token expiry");
    assert_valid(&mut client, &renewed.access).await;
    assert_eq!(
        renewed.session.expires_at, long_session.session.expires_at,
        "refreshing does not extend a session"
    );

    // The short session refreshes until its last microsecond, and not from its end on: the
    // store no longer has it, whatever its tokens say.
    let end = instant(&short_session.session.expires_at);
    server.clock().set(end.minus(Duration::from_micros(1)));
    let last = refresh(&mut client, &short_session.refresh)
        .await
        .expect("refresh in the session's last microsecond");
    assert!(
        access_expiry(&last.access) <= end,
        "no token outlives its session"
    );
    server.advance(Duration::from_micros(1));
    assert_error(
        refresh(&mut client, &last.refresh).await,
        Code::Unauthenticated,
        "SESSION_UNKNOWN",
    );
    assert_invalid(&mut client, &last.access, InvalidReason::Expired).await;
    let bobs = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            user_id: "bob".into(),
            include_revoked: true,
            ..Default::default()
        },
    )
    .await;
    assert!(bobs.is_empty(), "an ended session is not listed: {bobs:?}");
    // Alice's session stands: her token has expired by now, her refresh token still works.
    assert_invalid(&mut client, &renewed.access, InvalidReason::Expired).await;
    let again = refresh(&mut client, &renewed.refresh)
        .await
        .expect("alice refreshes");
    assert_valid(&mut client, &again.access).await;
}

#[tokio::test]
async fn validate_reports_revoked_sessions() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued = server.issue("alice").await;
    assert_valid(&mut client, &issued.access).await; // cached as valid first
    revoke(&mut client, &issued.access, &issued.session_id)
        .await
        .expect("revoke");
    assert_invalid(&mut client, &issued.access, InvalidReason::Revoked).await;
}

// ---------------------------------------------------------------------------------------------
// Refresh token theft.

#[tokio::test]
async fn reused_refresh_token_revokes_the_session() {
    let server = TestServer::start_with(|c| c.refresh_grace = Duration::ZERO).await;
    let mut client = server.client();
    let first = server.issue("alice").await;
    let second = refresh(&mut client, &first.refresh).await.expect("refresh");
    assert_valid(&mut client, &second.access).await;

    assert_error(
        refresh(&mut client, &first.refresh).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_REUSE",
    );
    assert_invalid(&mut client, &second.access, InvalidReason::Revoked).await;
    assert_invalid(&mut client, &first.access, InvalidReason::Revoked).await;
    let status = refresh(&mut client, &second.refresh)
        .await
        .expect_err("the newest refresh token dies too");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(error_reason(&status), "SESSION_REVOKED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_with_one_token_let_exactly_one_win() {
    let server = TestServer::start_with(|c| c.refresh_grace = Duration::ZERO).await;
    let issued = server.issue("alice").await;
    let start = Arc::new(tokio::sync::Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        // Separate connections, so the calls really race.
        let mut client = connect(server.addr).await;
        let token = issued.refresh.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            refresh(&mut client, &token).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(won) => winners.push(won),
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                let reason = error_reason(&status);
                assert!(
                    ["REFRESH_TOKEN_REUSE", "SESSION_REVOKED"].contains(&reason.as_str()),
                    "loser's reason {reason}"
                );
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh succeeds");
    // The losers presented a no longer current token: reuse, so the session is revoked.
    let mut client = server.client();
    assert_invalid(&mut client, &winners[0].access, InvalidReason::Revoked).await;
}

// ---------------------------------------------------------------------------------------------
// Limits and audit.

#[tokio::test]
async fn per_user_session_limit_evicts_the_oldest() {
    let server = TestServer::start_with(|c| c.max_sessions_per_user = 3).await;
    let mut client = server.client();
    let mut alice = Vec::new();
    for _ in 0..3 {
        alice.push(server.issue("alice").await);
    }
    let bob = server.issue("bob").await;
    for s in &alice {
        assert_valid(&mut client, &s.access).await;
    }
    alice.push(server.issue("alice").await);

    assert_invalid(&mut client, &alice[0].access, InvalidReason::Revoked).await;
    for s in &alice[1..] {
        assert_valid(&mut client, &s.access).await;
    }
    assert_valid(&mut client, &bob.access).await;
    let live = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            user_id: "alice".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(live.len(), 3);

    let events = audit_all(&mut client, "alice", 100).await;
    let evicted: Vec<&pb::AuditEvent> = events
        .iter()
        .filter(|e| e.kind == "session_limit_evicted")
        .collect();
    assert_eq!(evicted.len(), 1, "{events:?}");
    assert_eq!(evicted[0].session_id, alice[0].session_id);
    assert_eq!(evicted[0].user_id, "alice");
}

#[tokio::test]
async fn audit_events_record_who_did_what_newest_first() {
    // Strict rotation: presenting the rotated-away token at once is reuse.
    let server = TestServer::start_with(|c| c.refresh_grace = Duration::ZERO).await;
    let mut client = server.client();
    let s1: Issued = client
        .issue(pb::IssueRequest {
            client: Some(pb::ClientInfo {
                ip: "203.0.113.7".into(),
                user_agent: CHROME_ON_MAC.into(),
                device_name: String::new(),
            }),
            ..issue_request("alice")
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    let s1b = refresh(&mut client, &s1.refresh).await.expect("refresh");
    let s2 = server.issue("alice").await;
    revoke(&mut client, &s1b.access, &s2.session_id)
        .await
        .expect("revoke");
    refresh(&mut client, &s1.refresh).await.expect_err("reuse");
    let s3 = server.issue("alice").await;
    client
        .admin_revoke_user(pb::AdminRevokeUserRequest {
            user_id: "alice".into(),
            tenant_id: String::new(),
            reason: "offboarded".into(),
        })
        .await
        .expect("revoke user");
    let b1 = server.issue("bob").await;
    let b2 = server.issue("bob").await;
    client
        .admin_revoke_session(pb::AdminRevokeSessionRequest {
            session_id: b1.session_id.clone(),
            reason: "support".into(),
        })
        .await
        .expect("admin revoke session");
    revoke_all(&mut client, &b2.access, true)
        .await
        .expect("revoke all");
    client
        .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
            reason: "incident".into(),
            confirm: true,
        })
        .await
        .expect("global revoke");

    // (kind, actor, user_id, session_id, reason), oldest first.
    let user = "anonymous:user";
    let admin = "anonymous:admin";
    let expected: Vec<(&str, &str, &str, &str, &str)> = vec![
        ("session_issued", user, "alice", &s1.session_id, ""),
        ("session_refreshed", user, "alice", &s1.session_id, ""),
        ("session_issued", user, "alice", &s2.session_id, ""),
        (
            "session_revoked",
            user,
            "alice",
            &s2.session_id,
            "user_revoked",
        ),
        (
            "refresh_token_reuse",
            user,
            "alice",
            &s1.session_id,
            "replay_after_grace",
        ),
        ("session_issued", user, "alice", &s3.session_id, ""),
        ("user_revoked", admin, "alice", "", "offboarded"),
        ("session_issued", user, "bob", &b1.session_id, ""),
        ("session_issued", user, "bob", &b2.session_id, ""),
        ("session_revoked", admin, "bob", &b1.session_id, "support"),
        (
            "sessions_revoked_all",
            user,
            "bob",
            &b2.session_id,
            "include_current",
        ),
        ("global_revoke", admin, "", "", "incident"),
    ];
    let shape = |e: &pb::AuditEvent| {
        (
            e.kind.clone(),
            e.actor.clone(),
            e.user_id.clone(),
            e.session_id.clone(),
            e.reason.clone(),
        )
    };
    let owned = |v: &[(&str, &str, &str, &str, &str)]| -> Vec<_> {
        v.iter()
            .rev()
            .map(|(k, a, u, s, r)| {
                (
                    k.to_string(),
                    a.to_string(),
                    u.to_string(),
                    s.to_string(),
                    r.to_string(),
                )
            })
            .collect()
    };

    let all = audit_all(&mut client, "", 1000).await;
    assert_eq!(all.iter().map(shape).collect::<Vec<_>>(), owned(&expected));
    for pair in all.windows(2) {
        assert!(micros(&pair[0].at) >= micros(&pair[1].at), "newest first");
    }
    let event_ids: HashSet<&str> = all.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(event_ids.len(), all.len(), "event ids are unique");
    // The first event kept where the session was issued from.
    let first = all.last().expect("events");
    assert_eq!(first.ip, "203.0.113.7");
    assert_eq!(first.user_agent, CHROME_ON_MAC);

    // Paging yields the same sequence.
    for page_size in [1, 5] {
        let paged = audit_all(&mut client, "", page_size).await;
        assert_eq!(
            paged.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
            all.iter().map(|e| &e.event_id).collect::<Vec<_>>(),
            "page size {page_size}"
        );
    }
    // Per user, also paged.
    for (who, page_size) in [("alice", 1), ("alice", 1000), ("bob", 3)] {
        let mine = audit_all(&mut client, who, page_size).await;
        let want: Vec<_> = expected
            .iter()
            .filter(|e| e.2 == who)
            .copied()
            .collect::<Vec<_>>();
        assert_eq!(
            mine.iter().map(shape).collect::<Vec<_>>(),
            owned(&want),
            "{who}, page size {page_size}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Status codes.

#[tokio::test]
async fn ill_formed_arguments_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let alice = server.issue("alice").await;
    let invalid = |r| assert_error(r, Code::InvalidArgument, "INVALID_ARGUMENT");
    let field = |s: &tonic::Status| {
        s.get_details_error_info()
            .and_then(|i| i.metadata.get("field").cloned())
            .unwrap_or_default()
    };

    let s = invalid(client.issue(issue_request("")).await.map(|_| ()));
    assert_eq!(field(&s), "user_id");
    invalid(client.issue(issue_request("a\nb")).await.map(|_| ()));
    invalid(
        client
            .admin_revoke_user(pb::AdminRevokeUserRequest::default())
            .await
            .map(|_| ()),
    );
    for ttl in [
        prost_types::Duration {
            seconds: 0,
            nanos: 500_000_000,
        },
        duration(0),
        duration(-5),
    ] {
        let s = invalid(
            client
                .issue(pb::IssueRequest {
                    ttl: Some(ttl),
                    ..issue_request("alice")
                })
                .await
                .map(|_| ()),
        );
        assert_eq!(field(&s), "ttl");
    }
    for ip in ["not-an-ip", "300.1.1.1", "1.2.3.4:80"] {
        let s = invalid(
            client
                .issue(pb::IssueRequest {
                    client: Some(pb::ClientInfo {
                        ip: ip.into(),
                        ..Default::default()
                    }),
                    ..issue_request("alice")
                })
                .await
                .map(|_| ()),
        );
        assert_eq!(field(&s), "client.ip");
    }
    for id in ["", "not-a-uuid", "1234"] {
        let s = invalid(revoke(&mut client, &alice.access, id).await.map(|_| ()));
        assert_eq!(field(&s), "session_id");
        invalid(
            client
                .admin_revoke_session(pb::AdminRevokeSessionRequest {
                    session_id: id.into(),
                    reason: String::new(),
                })
                .await
                .map(|_| ()),
        );
    }
    invalid(
        client
            .admin_list(pb::AdminListRequest {
                tenant_id: "t1".into(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
    );
    invalid(
        client
            .admin_revoke_session(pb::AdminRevokeSessionRequest {
                session_id: alice.session_id.clone(),
                reason: "r".repeat(10_000),
            })
            .await
            .map(|_| ()),
    );
    // A refused Refresh does not consume the refresh token.
    invalid(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: alice.refresh.clone(),
                client: Some(pb::ClientInfo {
                    ip: "not-an-ip".into(),
                    ..Default::default()
                }),
            })
            .await
            .map(|_| ()),
    );
    // The session was not touched by the refused calls.
    assert_valid(&mut client, &alice.access).await;
    refresh(&mut client, &alice.refresh)
        .await
        .expect("the refresh token survived the refused calls");
}

#[tokio::test]
async fn bad_page_tokens_are_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for _ in 0..3 {
        server.issue("alice").await;
        server.issue("bob").await;
    }
    let page = client
        .admin_list(pb::AdminListRequest {
            user_id: "alice".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let token = page.next_page_token;
    assert!(!token.is_empty());
    let mut tampered: Vec<char> = token.chars().collect();
    let last = tampered.len() - 1;
    tampered[last / 2] = if tampered[last / 2] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();

    let bad_lists = [
        ("alice", "garbage!"),
        ("alice", "AAAA"),
        ("alice", tampered.as_str()),
        ("bob", token.as_str()), // another listing's token
        ("", token.as_str()),
    ];
    for (user, page_token) in bad_lists {
        let s = assert_error(
            client
                .admin_list(pb::AdminListRequest {
                    user_id: user.into(),
                    page_size: 1,
                    page_token: page_token.into(),
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(
            s.get_details_error_info().unwrap().metadata["field"],
            "page_token"
        );
    }
    // The genuine token works.
    client
        .admin_list(pb::AdminListRequest {
            user_id: "alice".into(),
            page_size: 1,
            page_token: token.clone(),
            ..Default::default()
        })
        .await
        .expect("the genuine token");

    let audit_page = client
        .admin_list_audit_events(pb::AdminListAuditEventsRequest {
            user_id: String::new(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("audit")
        .into_inner();
    assert!(!audit_page.next_page_token.is_empty());
    for page_token in ["garbage!", token.as_str()] {
        assert_error(
            client
                .admin_list_audit_events(pb::AdminListAuditEventsRequest {
                    user_id: String::new(),
                    page_size: 1,
                    page_token: page_token.into(),
                })
                .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
    }
    // An audit token is not a session listing's token either.
    assert_error(
        client
            .admin_list(pb::AdminListRequest {
                page_token: audit_page.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn oversize_fields_are_refused_and_nothing_is_written() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let big = "x".repeat(100 * 1024);
    let requests = [
        ("user_id", issue_request(&big)),
        (
            "tenant_id",
            pb::IssueRequest {
                tenant_id: big.clone(),
                ..issue_request("alice")
            },
        ),
        (
            "client.user_agent",
            pb::IssueRequest {
                client: Some(pb::ClientInfo {
                    user_agent: big.clone(),
                    ..Default::default()
                }),
                ..issue_request("alice")
            },
        ),
        (
            "client.device_name",
            pb::IssueRequest {
                client: Some(pb::ClientInfo {
                    device_name: big.clone(),
                    ..Default::default()
                }),
                ..issue_request("alice")
            },
        ),
        (
            "metadata value",
            pb::IssueRequest {
                metadata: HashMap::from([("k".to_owned(), big.clone())]),
                ..issue_request("alice")
            },
        ),
        (
            "metadata key",
            pb::IssueRequest {
                metadata: HashMap::from([(big.clone(), "v".to_owned())]),
                ..issue_request("alice")
            },
        ),
        (
            "metadata",
            pb::IssueRequest {
                metadata: (0..100).map(|i| (i.to_string(), String::new())).collect(),
                ..issue_request("alice")
            },
        ),
    ];
    for (name, request) in requests {
        let s = assert_error(
            client.issue(request).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        let field = s.get_details_error_info().unwrap().metadata["field"].clone();
        assert_eq!(field, name);
    }
    // Oversize tokens are merely unusable.
    assert_invalid(&mut client, &big, InvalidReason::Malformed).await;
    assert_error(
        refresh(&mut client, &big).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_MALFORMED",
    );

    // Nothing was written: no session, revoked or not, and no audit event.
    let sessions = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            include_revoked: true,
            ..Default::default()
        },
    )
    .await;
    assert!(sessions.is_empty(), "{sessions:?}");
    assert!(audit_all(&mut client, "", 100).await.is_empty());
    // The server still works: one ordinary Issue is the only session.
    server.issue("alice").await;
    let sessions = admin_list_all(&mut client, pb::AdminListRequest::default()).await;
    assert_eq!(sessions.len(), 1);
}

#[tokio::test]
async fn unusable_tokens_are_unauthenticated() {
    let server = TestServer::start().await;
    let other = TestServer::start().await;
    let mut client = server.client();
    let revoked = server.issue("alice").await;
    revoke(&mut client, &revoked.access, &revoked.session_id)
        .await
        .expect("revoke");
    let foreign = other.issue("alice").await;
    let target = server.issue("alice").await;

    let access_cases = [
        ("", "TOKEN_MALFORMED"),
        ("garbage", "TOKEN_MALFORMED"),
        (revoked.refresh.as_str(), "TOKEN_MALFORMED"),
        (foreign.access.as_str(), "TOKEN_BAD_SIGNATURE"),
        (revoked.access.as_str(), "SESSION_REVOKED"),
    ];
    for (token, reason) in access_cases {
        assert_error(
            list(&mut client, token).await,
            Code::Unauthenticated,
            reason,
        );
        assert_error(
            revoke(&mut client, token, &target.session_id).await,
            Code::Unauthenticated,
            reason,
        );
        for include_current in [false, true] {
            assert_error(
                revoke_all(&mut client, token, include_current).await,
                Code::Unauthenticated,
                reason,
            );
        }
    }
    let tampered = tamper_signature(&target.access);
    assert_error(
        list(&mut client, &tampered).await,
        Code::Unauthenticated,
        "TOKEN_BAD_SIGNATURE",
    );

    let refresh_cases = [
        ("", "REFRESH_TOKEN_MALFORMED"),
        ("garbage", "REFRESH_TOKEN_MALFORMED"),
        (target.access.as_str(), "REFRESH_TOKEN_MALFORMED"),
        (foreign.refresh.as_str(), "REFRESH_TOKEN_INVALID"),
        (revoked.refresh.as_str(), "SESSION_REVOKED"),
    ];
    for (token, reason) in refresh_cases {
        assert_error(
            refresh(&mut client, token).await,
            Code::Unauthenticated,
            reason,
        );
    }
    // A refresh token with one flipped byte fails its tag.
    let mut raw = URL_SAFE_NO_PAD.decode(&target.refresh).unwrap();
    raw[30] ^= 1;
    assert_error(
        refresh(&mut client, &URL_SAFE_NO_PAD.encode(raw)).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_INVALID",
    );
    // None of the refused calls touched the target.
    assert_valid(&mut client, &target.access).await;
    refresh(&mut client, &target.refresh)
        .await
        .expect("the target's own refresh token still works");
}

#[tokio::test]
async fn unknown_sessions_are_not_found() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let alice = server.issue("alice").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_error(
        revoke(&mut client, &alice.access, &unknown).await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    assert_error(
        client
            .admin_revoke_session(pb::AdminRevokeSessionRequest {
                session_id: unknown,
                reason: String::new(),
            })
            .await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
}
