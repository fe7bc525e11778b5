//! The replica that writes a session starts with it in its caches: the first check of a token
//! it just issued, refreshed or stepped up reads nothing from the store. Observed from outside
//! by failing every session read once the token is out.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sessiond::hooks::{Fault, Hooks, Op};
use sessiond::pb;
use support::*;
use tonic::Code;

/// Fails every read of a session or of a user's marks once armed.
#[derive(Clone, Default)]
struct StoreReadsFail(Arc<AtomicBool>);

impl StoreReadsFail {
    fn hooks(&self) -> Hooks {
        let armed = self.0.clone();
        Hooks::default().fail_store(move |op| {
            let read = matches!(op, Op::GetSession | Op::UserNotBefore | Op::SessionAndMarks);
            (read && armed.load(Ordering::SeqCst)).then_some(Fault::FailBefore)
        })
    }

    fn arm(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
}

/// The user signs their own session out (`Revoke` with the session's access token).
async fn revoke_own(client: &mut Client, issued: &Issued) {
    client
        .revoke(pb::RevokeRequest {
            access_token: issued.access.clone(),
            session_id: issued.session_id.clone(),
        })
        .await
        .expect("revoke");
}

async fn validate_code(client: &mut Client, token: &str) -> Result<bool, Code> {
    client
        .validate(pb::ValidateRequest {
            access_token: token.to_owned(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().valid)
        .map_err(|s| s.code())
}

#[tokio::test]
async fn tokens_this_replica_minted_are_checked_without_reading_the_store() {
    let reads = StoreReadsFail::default();
    let server = TestServer::start_with(|c| c.hooks = reads.hooks()).await;
    let mut client = server.client();

    let issued = server.issue("warm").await;
    reads.arm(true);
    assert_eq!(validate_code(&mut client, &issued.access).await, Ok(true));

    reads.arm(false);
    let refreshed = refresh(&mut client, &issued.refresh)
        .await
        .expect("refresh");
    reads.arm(true);
    assert_eq!(
        validate_code(&mut client, &refreshed.access).await,
        Ok(true)
    );

    reads.arm(false);
    let stepped: Issued = client
        .step_up(pb::StepUpRequest {
            access_token: refreshed.access.clone(),
            acr: "urn:example:mfa".into(),
            ..Default::default()
        })
        .await
        .expect("step up")
        .into_inner()
        .into();
    reads.arm(true);
    assert_eq!(validate_code(&mut client, &stepped.access).await, Ok(true));

    // A revocation here drops the kept entry: the next check must ask the store.
    reads.arm(false);
    revoke_own(&mut client, &stepped).await;
    reads.arm(true);
    assert_eq!(
        validate_code(&mut client, &stepped.access).await,
        Err(Code::Unavailable)
    );
}

#[tokio::test]
async fn without_the_kept_entry_the_first_check_reads_the_store() {
    let reads = StoreReadsFail::default();
    let server =
        TestServer::start_with(|c| c.hooks = reads.hooks().forget_written_sessions()).await;
    let mut client = server.client();
    let issued = server.issue("cold").await;
    reads.arm(true);
    assert_eq!(
        validate_code(&mut client, &issued.access).await,
        Err(Code::Unavailable)
    );
    reads.arm(false);
    assert_eq!(validate_code(&mut client, &issued.access).await, Ok(true));
}

/// A replica that has never seen a token (here: the same store after a restart) reads its
/// session and its user's marks in one store call, and the next check reads nothing.
#[tokio::test]
async fn a_first_sight_reads_its_session_and_marks_in_one_store_call() {
    let first = TestServer::start().await;
    let issued = first.issue("first-sight").await;
    let dir = first.stop().await;

    let reads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = reads.clone();
    let hooks = Hooks::default().fail_store(move |op| {
        if matches!(op, Op::GetSession | Op::UserNotBefore | Op::SessionAndMarks)
            && let Ok(mut log) = log.lock()
        {
            log.push(op);
        }
        None
    });
    let mut config = config(dir.path());
    config.hooks = hooks;
    let server = TestServer::start_in(dir, config).await;
    let mut client = server.client();
    let taken = |reads: &Arc<std::sync::Mutex<Vec<Op>>>| {
        std::mem::take(&mut *reads.lock().expect("read log"))
    };

    assert_eq!(validate_code(&mut client, &issued.access).await, Ok(true));
    assert_eq!(taken(&reads), vec![Op::SessionAndMarks]);
    assert_eq!(validate_code(&mut client, &issued.access).await, Ok(true));
    assert_eq!(taken(&reads), Vec::<Op>::new(), "the second check is a hit");
}

/// The store calls a request may make, in order; the background's own (the feed and the
/// global instant it reads, last-seen writes, the sweeper, the gauges) are not logged.
#[derive(Clone, Default)]
struct RequestCalls(Arc<std::sync::Mutex<Vec<Op>>>);

impl RequestCalls {
    fn hooks(&self) -> Hooks {
        let log = self.0.clone();
        Hooks::default().fail_store(move |op| {
            let request_path = matches!(
                op,
                Op::CreateSession
                    | Op::CreateSessionCapped
                    | Op::GetSession
                    | Op::UserNotBefore
                    | Op::SessionAndMarks
                    | Op::RotateRefresh
                    | Op::AppendAudit
            );
            if request_path && let Ok(mut log) = log.lock() {
                log.push(op);
            }
            None
        })
    }

    /// The calls logged since the last look.
    fn taken(&self) -> Vec<Op> {
        std::mem::take(&mut *self.0.lock().expect("call log"))
    }
}

/// `Issue` for a user this replica holds no marks of reads them with its write: one store call
/// on the request path, and the new token's first check reads nothing, marks included.
#[tokio::test]
async fn an_issue_brings_its_users_marks_with_its_write() {
    let calls = RequestCalls::default();
    let server = TestServer::start_with(|c| c.hooks = calls.hooks()).await;
    let mut client = server.client();

    let issued = server.issue("marks-with-the-write").await;
    assert_eq!(calls.taken(), vec![Op::CreateSessionCapped], "issue");
    assert_eq!(validate_code(&mut client, &issued.access).await, Ok(true));
    assert_eq!(calls.taken(), vec![], "the first check reads nothing");
    // The user's marks are held now: a second session's write brings none, and its first
    // check reads nothing either.
    let second = server.issue("marks-with-the-write").await;
    assert_eq!(calls.taken(), vec![Op::CreateSessionCapped], "second issue");
    assert_eq!(validate_code(&mut client, &second.access).await, Ok(true));
    assert_eq!(calls.taken(), vec![], "the second token's first check");
}

/// A `Refresh` of the current token of a session this replica holds rotates from its cached
/// copy: its one store call is the compare-and-set. A grace replay, and a replica that does not
/// hold the session (here: the same store after a restart), read the stored session first.
#[tokio::test]
async fn a_refresh_of_a_session_this_replica_holds_reads_nothing() {
    let calls = RequestCalls::default();
    let server = TestServer::start_with(|c| c.hooks = calls.hooks()).await;
    let mut client = server.client();
    let issued = server.issue("held-refresh").await;
    calls.taken();

    let refreshed = support::refresh(&mut client, &issued.refresh)
        .await
        .expect("refresh");
    assert_eq!(
        calls.taken(),
        vec![Op::RotateRefresh],
        "refresh of a held session"
    );
    let again = support::refresh(&mut client, &refreshed.refresh)
        .await
        .expect("second refresh");
    assert_eq!(
        calls.taken(),
        vec![Op::RotateRefresh],
        "and of its successor"
    );
    let replayed = support::refresh(&mut client, &refreshed.refresh)
        .await
        .expect("replay within the grace");
    assert_eq!(replayed.refresh, again.refresh);
    assert_eq!(
        calls.taken(),
        vec![Op::GetSession, Op::AppendAudit],
        "a replay is classified against the stored session"
    );

    let dir = server.stop().await;
    let calls = RequestCalls::default();
    let mut config = config(dir.path());
    config.hooks = calls.hooks();
    let server = TestServer::start_in(dir, config).await;
    let mut client = server.client();
    support::refresh(&mut client, &again.refresh)
        .await
        .expect("refresh after a restart");
    let after_restart = calls.taken();
    assert_eq!(
        after_restart.first(),
        Some(&Op::GetSession),
        "a session this replica does not hold is read first: {after_restart:?}"
    );
    assert!(
        after_restart.contains(&Op::RotateRefresh),
        "{after_restart:?}"
    );
}

async fn session_of(client: &mut Client, token: &str) -> pb::Session {
    let reply = client
        .validate(pb::ValidateRequest {
            access_token: token.to_owned(),
            ..Default::default()
        })
        .await
        .expect("validate")
        .into_inner();
    assert!(reply.valid, "{reply:?}");
    reply.session.expect("session")
}

/// A hit takes its session through the token's shortcut; once this replica rewrites the
/// session (a refresh from another client), the shortcut is not taken and the token answers
/// with the session as it is now, not as it was when the token was first checked.
#[tokio::test]
async fn a_token_checked_before_its_session_was_refreshed_answers_with_the_refreshed_session() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued = server.issue("moved").await;
    for _ in 0..3 {
        session_of(&mut client, &issued.access).await;
    }
    let moved = pb::ClientInfo {
        ip: "198.51.100.7".into(),
        user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
        device_name: "the other laptop".into(),
    };
    client
        .refresh(pb::RefreshRequest {
            refresh_token: issued.refresh.clone(),
            client: Some(moved.clone()),
        })
        .await
        .expect("refresh");
    let session = session_of(&mut client, &issued.access).await;
    assert_eq!(session.ip, moved.ip);
    assert_eq!(session.device_name, moved.device_name);
}

/// The shortcut never outlives a revocation: the token checked many times before is revoked
/// at its next check, from the caches alone (every store read fails once armed).
#[tokio::test]
async fn a_revocation_ends_a_token_that_took_the_shortcut() {
    let reads = StoreReadsFail::default();
    let server = TestServer::start_with(|c| c.hooks = reads.hooks()).await;
    let mut client = server.client();
    let issued = server.issue("short").await;
    for _ in 0..3 {
        assert_eq!(validate_code(&mut client, &issued.access).await, Ok(true));
    }
    revoke_own(&mut client, &issued).await;
    reads.arm(true);
    assert_eq!(
        validate_code(&mut client, &issued.access).await,
        Err(Code::Unavailable),
        "a revoked session's token must not be answered from a shortcut"
    );
}

/// `Issue` and `Refresh` write their audit events with their own store write, not as a write
/// of their own: one write per call, and the events are in the log all the same.
#[tokio::test]
async fn an_issue_and_a_refresh_each_make_one_store_write() {
    let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = writes.clone();
    let server = TestServer::start_with(move |c| {
        c.hooks = Hooks::default().fail_store(move |op| {
            let write = matches!(
                op,
                Op::CreateSession | Op::CreateSessionCapped | Op::RotateRefresh | Op::AppendAudit
            );
            if write && let Ok(mut log) = log.lock() {
                log.push(op);
            }
            None
        });
    })
    .await;
    let taken = || std::mem::take(&mut *writes.lock().expect("write log"));
    let mut client = server.client();

    let issued = server.issue("one-write").await;
    assert_eq!(taken(), vec![Op::CreateSessionCapped], "issue");
    let refreshed = support::refresh(&mut client, &issued.refresh)
        .await
        .expect("refresh");
    assert_eq!(taken(), vec![Op::RotateRefresh], "refresh");
    // A replay inside the grace writes nothing but its event.
    let replayed = support::refresh(&mut client, &issued.refresh)
        .await
        .expect("replay within the grace");
    assert_eq!(replayed.refresh, refreshed.refresh);
    assert_eq!(taken(), vec![Op::AppendAudit], "replay");

    let kinds: Vec<(String, String)> = support::audit_all(&mut client, "one-write", 100)
        .await
        .into_iter()
        .map(|e| (e.kind, e.reason))
        .collect();
    let expected = [
        ("session_refreshed", "grace_replay"),
        ("session_refreshed", ""),
        ("session_issued", ""),
    ];
    assert_eq!(
        kinds,
        expected.map(|(k, r)| (k.to_owned(), r.to_owned())),
        "newest first"
    );
}
