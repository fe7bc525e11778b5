//! Lifetimes through the public surface, on a manual clock the test moves: a session and its
//! tokens end at the microsecond their instants say, each surface gives exactly one reason,
//! and "not before" marks compare at sub-second precision. Nothing here waits for time to
//! pass. Runs on the backend `SESSIOND_TEST_BACKEND` names (`scripts/test` runs it on both):
//! on ScyllaDB an ended session's cells outlive it by real time, and the store's reads, on
//! the same clock as the domain, treat it as absent all the same.

use crate::support;

use std::time::Duration;

use sessiond::pb;
use sessiond::pb::InvalidReason;
use support::*;
use tonic::Code;

const MICRO: Duration = Duration::from_micros(1);

fn with_ttl(user: &str, secs: i64) -> pb::IssueRequest {
    pb::IssueRequest {
        ttl: Some(prost_types::Duration {
            seconds: secs,
            nanos: 0,
        }),
        ..issue_request(user)
    }
}

async fn issue_with_ttl(client: &mut Client, user: &str, secs: i64) -> Issued {
    client
        .issue(with_ttl(user, secs))
        .await
        .expect("issue")
        .into_inner()
        .into()
}

async fn list(client: &mut Client, access: &str) -> Result<Vec<String>, tonic::Status> {
    client
        .list(pb::ListRequest {
            access_token: access.to_owned(),
        })
        .await
        .map(|r| {
            r.into_inner()
                .sessions
                .into_iter()
                .map(|s| s.session_id)
                .collect()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_its_expires_at_on_every_surface() {
    let server = TestServer::start_on_manual_clock(|_| {}).await;
    let mut client = server.client();
    // Two sessions of one user: one of an hour, one of two.
    let short = issue_with_ttl(&mut client, "carol", 3600).await;
    let long = issue_with_ttl(&mut client, "carol", 7200).await;

    // The access token: valid when issued and until just before its `exp`, EXPIRED from then.
    assert_valid(&mut client, &short.access).await;
    let exp = access_expiry(&short.access);
    server.clock().set(exp.minus(MICRO));
    assert_valid(&mut client, &short.access).await;
    server.advance(MICRO);
    assert_invalid(&mut client, &short.access, InvalidReason::Expired).await;
    assert_error(
        list(&mut client, &short.access).await,
        Code::Unauthenticated,
        "TOKEN_EXPIRED",
    );
    // The session outlives it: a refresh gives a token that stands.
    let renewed = refresh(&mut client, &short.refresh)
        .await
        .expect("refresh after the access token's exp");
    assert_valid(&mut client, &renewed.access).await;

    // The session's last microsecond: it still refreshes, and is listed.
    let end = instant(&short.session.expires_at);
    server.clock().set(end.minus(MICRO));
    let last = refresh(&mut client, &renewed.refresh)
        .await
        .expect("refresh in the last microsecond");
    let newer = refresh(&mut client, &long.refresh)
        .await
        .expect("the longer session refreshes");
    let mut listed = list(&mut client, &newer.access).await.expect("list");
    listed.sort();
    let mut both = vec![short.session_id.clone(), long.session_id.clone()];
    both.sort();
    assert_eq!(listed, both);

    // Its end: over everywhere, each surface with its one reason.
    server.advance(MICRO);
    assert_invalid(&mut client, &last.access, InvalidReason::Expired).await;
    assert_error(
        refresh(&mut client, &last.refresh).await,
        Code::Unauthenticated,
        "SESSION_UNKNOWN",
    );
    assert_eq!(
        list(&mut client, &newer.access).await.expect("list"),
        vec![long.session_id.clone()],
        "List shows only the session that stands"
    );
    let carols = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            user_id: "carol".into(),
            include_revoked: true,
            ..Default::default()
        },
    )
    .await;
    let ids: Vec<_> = carols.iter().map(|s| s.session_id.clone()).collect();
    assert_eq!(ids, vec![long.session_id.clone()]);
    assert_error(
        client
            .admin_revoke_session(pb::AdminRevokeSessionRequest {
                session_id: short.session_id.clone(),
                reason: String::new(),
            })
            .await,
        Code::NotFound,
        "SESSION_NOT_FOUND",
    );
    // The other session of the same user is untouched.
    assert_valid(&mut client, &newer.access).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_before_marks_hold_to_the_microsecond_within_one_second() {
    let server = TestServer::start_on_manual_clock(|_| {}).await;
    let start = half_past_next_second(server.now());
    server.clock().set(start);
    let mut client = server.client();

    let before_mark = server.issue("dave").await;
    server.advance(MICRO);
    let r = client
        .admin_revoke_user(pb::AdminRevokeUserRequest {
            user_id: "dave".into(),
            tenant_id: String::new(),
            reason: "signed out everywhere".into(),
        })
        .await
        .expect("admin revoke user")
        .into_inner();
    assert_eq!(r.revoked_count, 1);
    // A session made at the mark's own instant is not before it.
    let at_mark = server.issue("dave").await;
    server.advance(MICRO);
    let after_mark = server.issue("dave").await;
    assert_invalid(&mut client, &before_mark.access, InvalidReason::Revoked).await;
    assert_error(
        refresh(&mut client, &before_mark.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_valid(&mut client, &at_mark.access).await;
    assert_valid(&mut client, &after_mark.access).await;

    // The emergency switch, one microsecond later: everything issued up to the microsecond
    // before it ends, whoever it belongs to; a session made at its instant stands.
    let erin = server.issue("erin").await;
    server.advance(MICRO);
    let switch = client
        .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
            reason: "incident".into(),
            confirm: true,
        })
        .await
        .expect("global revoke")
        .into_inner();
    assert_eq!(instant(&switch.not_before), start.plus(3 * MICRO));
    let at_switch = server.issue("erin").await;
    for token in [&at_mark.access, &after_mark.access, &erin.access] {
        assert_invalid(&mut client, token, InvalidReason::Revoked).await;
    }
    assert_error(
        refresh(&mut client, &after_mark.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_valid(&mut client, &at_switch.access).await;
    let refreshed = refresh(&mut client, &at_switch.refresh)
        .await
        .expect("a session made at the switch refreshes");
    assert_valid(&mut client, &refreshed.access).await;

    // All of it happened within one second: only sub-second precision tells them apart.
    for issued in [&before_mark, &at_mark, &after_mark, &erin, &at_switch] {
        assert_eq!(
            instant(&issued.session.created_at).as_secs(),
            start.as_secs(),
            "{issued:?}"
        );
    }
}
