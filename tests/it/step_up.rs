//! Step-up (RFC 9470) through the public surface: the sign-in an `Issue` states (`auth_time`,
//! `acr`, `amr`) in the session, the access token's claims and introspection; `Validate`'s
//! `max_age` and `acr_values`; and `StepUp`, which continues a session with a new sign-in that
//! later refreshes carry.
//!
//! Each test runs a real server (`serve_with_http`) on two loopback listeners bound before it
//! is spawned, on the backend `SESSIOND_TEST_BACKEND` names (a tempdir's embedded store, or a
//! fresh keyspace on the CQL node), with a manual clock: "now" is exact, and the age of a
//! sign-in is made by an explicit old `auth_time` or by moving the clock, never by waiting.
//! Three callers: `login` (issuer and validator), `gate` (validator only) and `ops` (admin).

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::Config;
use sessiond::auth::{CallerSpec, Role};
use sessiond::config::StoreKind;
use sessiond::model::{Clock, ManualClock, Timestamp};
use sessiond::pb;
use sessiond::pb::InvalidReason;
use support::{CallerClient, Spawned, client_as, error_reason, new_caller};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const MFA: &str = "urn:example:mfa";
const PWD: &str = "urn:example:pwd";

/// One running sessiond with both surfaces, its callers and its clock.
struct Server {
    server: Option<Spawned>,
    http: SocketAddr,
    web: reqwest::Client,
    clock: ManualClock,
    /// The `login` caller's credential (issuer, validator), for introspection.
    login_secret: String,
    /// gRPC as `login`.
    login: CallerClient,
    /// gRPC as `gate` (validator only).
    gate: CallerClient,
    /// gRPC as `ops` (admin).
    ops: CallerClient,
}

/// What `Issue` or `StepUp` handed out.
#[derive(Clone, Debug)]
struct Pair {
    session: pb::Session,
    access: String,
    refresh: String,
}

impl Pair {
    fn from_parts(session: Option<pb::Session>, tokens: Option<pb::TokenPair>) -> Self {
        let tokens = tokens.expect("tokens set");
        Self {
            session: session.expect("session set"),
            access: tokens.access_token,
            refresh: tokens.refresh_token,
        }
    }
}

/// A sign-in as a request states it.
#[derive(Clone, Debug, Default)]
struct SignIn {
    auth_time: Option<prost_types::Timestamp>,
    acr: String,
    amr: Vec<String>,
}

impl SignIn {
    fn new(auth_time: Option<Timestamp>, acr: &str, amr: &[&str]) -> Self {
        Self {
            auth_time: auth_time.map(pb_time),
            acr: acr.to_owned(),
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
        }
    }
}

/// The three callers, the same on every replica.
struct Callers {
    specs: Vec<CallerSpec>,
    login: String,
    gate: String,
    ops: String,
}

impl Callers {
    fn new() -> Self {
        let (login_spec, login) = new_caller("login", &[Role::Issuer, Role::Validator]);
        let (gate_spec, gate) = new_caller("gate", &[Role::Validator]);
        let (ops_spec, ops) = new_caller("ops", &[Role::Admin]);
        Self {
            specs: vec![login_spec, gate_spec, ops_spec],
            login,
            gate,
            ops,
        }
    }
}

impl Server {
    /// One server on the backend under test, with a clock of its own.
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = support::config(dir.path());
        Self::start_in(dir, config, ManualClock::starting_now(), &Callers::new()).await
    }

    /// Two replicas on one fresh keyspace of the CQL node `SESSIOND_TEST_CQL` names, with the
    /// same keys, callers and clock. The second starts once the first answers, so that it
    /// reads the keys the first made.
    async fn start_replicas() -> (Self, Self, TempDir) {
        let node = std::env::var("SESSIOND_TEST_CQL")
            .ok()
            .filter(|a| !a.is_empty())
            .expect("SESSIOND_TEST_CQL must name a CQL node (scripts/test starts one)");
        let keyspace = format!("sessiond_su_{}", uuid::Uuid::new_v4().simple());
        let store: StoreKind = format!("scylla://{node}/{keyspace}?rf=1")
            .parse()
            .expect("store uri");
        let keys = tempfile::tempdir().expect("key dir");
        let clock = ManualClock::starting_now();
        let callers = Callers::new();
        let replica = |dir: &TempDir| {
            let mut config = Config::new(dir.path());
            config.store = store.clone();
            config.migrate = true;
            config.key_dir = keys.path().to_owned();
            config
        };
        let dir_a = tempfile::tempdir().expect("tempdir");
        let config_a = replica(&dir_a);
        let a = Self::start_in(dir_a, config_a, clock.clone(), &callers).await;
        // Any answer means the first replica is serving, its keys written.
        a.issue("warm-up", SignIn::default()).await;
        let dir_b = tempfile::tempdir().expect("tempdir");
        let config_b = replica(&dir_b);
        let b = Self::start_in(dir_b, config_b, clock, &callers).await;
        (a, b, keys)
    }

    async fn start_in(
        dir: TempDir,
        mut config: Config,
        clock: ManualClock,
        callers: &Callers,
    ) -> Self {
        config.clock = clock.shared();
        config.callers = callers.specs.clone();
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let grpc_addr = grpc.local_addr().expect("grpc addr");
        let http_addr = http.local_addr().expect("http addr");
        // Both listeners are bound before spawning: clients can connect at once.
        let server = Spawned::spawn_with_http(dir, config, grpc, http);
        let channel = support::channel(grpc_addr).await;
        Self {
            server: Some(server),
            http: http_addr,
            web: reqwest::Client::builder()
                .timeout(support::DEADLINE)
                .build()
                .expect("http client"),
            clock,
            login: client_as(channel.clone(), Some(&callers.login)),
            gate: client_as(channel.clone(), Some(&callers.gate)),
            ops: client_as(channel, Some(&callers.ops)),
            login_secret: callers.login.clone(),
        }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn issue(&self, user: &str, sign_in: SignIn) -> Pair {
        let r = self
            .login
            .clone()
            .issue(pb::IssueRequest {
                user_id: user.to_owned(),
                auth_time: sign_in.auth_time,
                acr: sign_in.acr,
                amr: sign_in.amr,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("issue for {user}: {s:?}"))
            .into_inner();
        Pair::from_parts(r.session, r.tokens)
    }

    async fn step_up_as(
        &self,
        client: &CallerClient,
        access: &str,
        sign_in: SignIn,
        from: Option<pb::ClientInfo>,
    ) -> Result<Pair, Status> {
        client
            .clone()
            .step_up(pb::StepUpRequest {
                access_token: access.to_owned(),
                auth_time: sign_in.auth_time,
                acr: sign_in.acr,
                amr: sign_in.amr,
                client: from,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                Pair::from_parts(r.session, r.tokens)
            })
    }

    async fn step_up(&self, access: &str, sign_in: SignIn) -> Result<Pair, Status> {
        self.step_up_as(&self.login, access, sign_in, None).await
    }

    async fn refresh(&self, refresh: &str) -> Result<Pair, Status> {
        self.login
            .clone()
            .refresh(pb::RefreshRequest {
                refresh_token: refresh.to_owned(),
                client: None,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                Pair::from_parts(r.session, r.tokens)
            })
    }

    /// `Validate` with a demand: the verdict and, when valid, the session.
    async fn validate_for(
        &self,
        token: &str,
        max_age: Option<i64>,
        acr_values: &[&str],
    ) -> (InvalidReason, Option<pb::Session>) {
        let r = self
            .validate_request(pb::ValidateRequest {
                access_token: token.to_owned(),
                max_age: max_age.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
                acr_values: acr_values.iter().map(|v| (*v).to_owned()).collect(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("validate must answer OK, got {s:?}"));
        let reason = InvalidReason::try_from(r.reason).expect("a known reason");
        assert_eq!(r.valid, reason == InvalidReason::Unspecified, "{r:?}");
        assert_eq!(r.valid, r.session.is_some(), "{r:?}");
        (reason, r.session)
    }

    /// The verdict of `Validate` with a demand, `Unspecified` meaning valid.
    async fn verdict(&self, token: &str, max_age: Option<i64>, acr: &[&str]) -> InvalidReason {
        self.validate_for(token, max_age, acr).await.0
    }

    async fn validate_request(
        &self,
        request: pb::ValidateRequest,
    ) -> Result<pb::ValidateResponse, Status> {
        self.login
            .clone()
            .validate(request)
            .await
            .map(|r| r.into_inner())
    }

    /// `POST /oauth2/introspect` as `login`.
    async fn introspect(&self, token: &str) -> Value {
        let response = self
            .web
            .post(format!("http://{}/oauth2/introspect", self.http))
            .bearer_auth(&self.login_secret)
            .form(&[("token", token)])
            .send()
            .await
            .expect("POST introspect");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("introspection JSON")
    }

    async fn audit(&self, user: &str) -> Vec<pb::AuditEvent> {
        self.ops
            .clone()
            .admin_list_audit_events(pb::AdminListAuditEventsRequest {
                user_id: user.to_owned(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .expect("audit")
            .into_inner()
            .events
    }

    async fn stepped_up_events(&self, user: &str) -> Vec<pb::AuditEvent> {
        self.audit(user)
            .await
            .into_iter()
            .filter(|e| e.kind == "session_stepped_up")
            .collect()
    }

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

fn pb_time(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_secs(),
        nanos: t.subsec_nanos(),
    }
}

/// `secs` before `t`. The manual clock starts at the wall clock's instant, microseconds and
/// all, so the session's microseconds and the token's whole seconds tell each other apart.
fn before(t: Timestamp, secs: u64) -> Timestamp {
    t.minus(Duration::from_secs(secs))
}

/// The claims of a JWT, decoded without verifying (the server verified it).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// The sign-in a session reports: `(auth_time, acr, amr)`.
fn sign_in_of(s: &pb::Session) -> (prost_types::Timestamp, String, Vec<String>) {
    (
        s.auth_time.expect("auth_time is always set"),
        s.acr.clone(),
        s.amr.clone(),
    )
}

fn field_of(status: &Status) -> String {
    let info = status.get_details_error_info().expect("ErrorInfo");
    info.metadata.get("field").cloned().unwrap_or_default()
}

#[tokio::test]
async fn issue_records_the_sign_in_in_the_session_the_token_and_introspection() {
    let server = Server::start().await;
    let at = before(server.now(), 120);
    let strong = server
        .issue("alice", SignIn::new(Some(at), MFA, &["pwd", "otp"]))
        .await;
    let stated = (pb_time(at), MFA.to_owned(), strings(&["pwd", "otp"]));
    assert_eq!(sign_in_of(&strong.session), stated, "as Issue answers it");
    let (verdict, session) = server.validate_for(&strong.access, None, &[]).await;
    assert_eq!(verdict, InvalidReason::Unspecified);
    assert_eq!(
        sign_in_of(&session.expect("session")),
        stated,
        "as Validate answers it"
    );

    let token = claims(&strong.access);
    assert_eq!(token["auth_time"], at.as_secs(), "whole seconds: {token}");
    assert_eq!(token["acr"], MFA);
    assert_eq!(token["amr"], json!(["pwd", "otp"]));
    let answer = server.introspect(&strong.access).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["auth_time"], at.as_secs(), "{answer}");
    assert_eq!(answer["acr"], MFA);
    assert_eq!(answer["amr"], json!(["pwd", "otp"]));

    // Nothing stated: signed in now, with no acr or amr anywhere.
    let now = server.now();
    let plain = server.issue("bob", SignIn::default()).await;
    assert_eq!(
        sign_in_of(&plain.session),
        (pb_time(now), String::new(), Vec::new())
    );
    assert_eq!(plain.session.created_at, Some(pb_time(now)));
    let token = claims(&plain.access);
    assert_eq!(token["auth_time"], now.as_secs(), "{token}");
    assert!(
        token.get("acr").is_none() && token.get("amr").is_none(),
        "{token}"
    );
    let answer = server.introspect(&plain.access).await;
    assert_eq!(answer["auth_time"], now.as_secs(), "{answer}");
    assert!(
        answer.get("acr").is_none() && answer.get("amr").is_none(),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn max_age_asks_for_a_recent_sign_in() {
    let server = Server::start().await;
    let fresh = server.issue("alice", SignIn::default()).await;
    let old = server
        .issue(
            "alice",
            SignIn::new(Some(before(server.now(), 600)), "", &[]),
        )
        .await;
    let ok = InvalidReason::Unspecified;
    let step_up = InvalidReason::StepUpRequired;

    assert_eq!(server.verdict(&fresh.access, Some(300), &[]).await, ok);
    assert_eq!(server.verdict(&old.access, Some(300), &[]).await, step_up);
    assert_eq!(server.verdict(&old.access, Some(599), &[]).await, step_up);
    assert_eq!(server.verdict(&old.access, Some(601), &[]).await, ok);
    assert_eq!(
        server.verdict(&old.access, None, &[]).await,
        ok,
        "no demand"
    );
    // Step-up is the caller's demand, not the session's state: the session stands.
    let (verdict, session) = server.validate_for(&old.access, None, &[]).await;
    assert_eq!(verdict, ok);
    assert_eq!(session.expect("session").session_id, old.session.session_id);

    // Time passes: the same token, once fresh, is now too old for 300s but not for 900s.
    server.clock.advance(Duration::from_secs(301));
    assert_eq!(server.verdict(&fresh.access, Some(300), &[]).await, step_up);
    assert_eq!(server.verdict(&fresh.access, Some(900), &[]).await, ok);
    assert_eq!(server.verdict(&fresh.access, None, &[]).await, ok);

    let negative = server
        .validate_request(pb::ValidateRequest {
            access_token: fresh.access.clone(),
            max_age: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            acr_values: Vec::new(),
            ..Default::default()
        })
        .await
        .expect_err("a negative max_age is refused");
    assert_eq!(negative.code(), Code::InvalidArgument, "{negative:?}");
    assert_eq!(field_of(&negative), "max_age");
    server.stop().await;
}

#[tokio::test]
async fn acr_values_ask_for_a_strong_sign_in() {
    let server = Server::start().await;
    let password = server
        .issue("alice", SignIn::new(None, PWD, &["pwd"]))
        .await;
    let none = server.issue("alice", SignIn::default()).await;
    let ok = InvalidReason::Unspecified;
    let step_up = InvalidReason::StepUpRequired;

    assert_eq!(
        server.verdict(&password.access, None, &[MFA]).await,
        step_up
    );
    assert_eq!(server.verdict(&password.access, None, &[PWD]).await, ok);
    assert_eq!(
        server.verdict(&password.access, None, &[MFA, PWD]).await,
        ok
    );
    assert_eq!(server.verdict(&password.access, None, &[]).await, ok);
    // A case or prefix variant is another acr.
    let upper = PWD.to_uppercase();
    assert_eq!(
        server.verdict(&password.access, None, &[&upper]).await,
        step_up
    );
    assert_eq!(
        server
            .verdict(&password.access, None, &["urn:example"])
            .await,
        step_up
    );
    // No acr meets no acr_values.
    assert_eq!(server.verdict(&none.access, None, &[PWD]).await, step_up);
    assert_eq!(server.verdict(&none.access, None, &[""]).await, step_up);
    // Both demands: each must be met.
    assert_eq!(server.verdict(&password.access, Some(60), &[PWD]).await, ok);
    server.clock.advance(Duration::from_secs(120));
    assert_eq!(
        server.verdict(&password.access, Some(60), &[PWD]).await,
        step_up
    );
    assert_eq!(
        server.verdict(&password.access, Some(600), &[MFA]).await,
        step_up
    );
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_session_is_revoked_whatever_the_demand() {
    let server = Server::start().await;
    let old = server
        .issue(
            "alice",
            SignIn::new(Some(before(server.now(), 3600)), PWD, &[]),
        )
        .await;
    assert_eq!(
        server.verdict(&old.access, Some(60), &[MFA]).await,
        InvalidReason::StepUpRequired
    );
    let revoked = server
        .ops
        .clone()
        .admin_revoke_session(pb::AdminRevokeSessionRequest {
            session_id: old.session.session_id.clone(),
            reason: "support".into(),
        })
        .await
        .expect("admin revoke")
        .into_inner();
    assert!(revoked.revoked);
    for (max_age, acr) in [(Some(60), vec![MFA]), (Some(60), vec![]), (None, vec![MFA])] {
        assert_eq!(
            server.verdict(&old.access, max_age, &acr).await,
            InvalidReason::Revoked,
            "max_age {max_age:?}, acr_values {acr:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn step_up_continues_the_session_with_a_new_sign_in() {
    let server = Server::start().await;
    let signed_in = before(server.now(), 3600);
    let first = server
        .issue("alice", SignIn::new(Some(signed_in), PWD, &["pwd"]))
        .await;
    let id = first.session.session_id.clone();

    server.clock.advance(Duration::from_secs(1));
    let now = server.now();
    let from = pb::ClientInfo {
        ip: "198.51.100.20".into(),
        user_agent: support::CHROME_ON_MAC.into(),
        device_name: "work laptop".into(),
    };
    let stepped = server
        .step_up_as(
            &server.login,
            &first.access,
            SignIn::new(None, MFA, &["pwd", "otp"]),
            Some(from.clone()),
        )
        .await
        .expect("step up");
    let new_sign_in = (pb_time(now), MFA.to_owned(), strings(&["pwd", "otp"]));
    assert_eq!(stepped.session.session_id, id, "the same session");
    assert_eq!(sign_in_of(&stepped.session), new_sign_in);
    assert_eq!(stepped.session.created_at, first.session.created_at);
    assert_eq!(stepped.session.ip, from.ip);
    assert_eq!(stepped.session.device_name, from.device_name);
    assert_ne!(stepped.access, first.access, "a new access token");
    assert_ne!(stepped.refresh, first.refresh, "a new refresh token");
    let token = claims(&stepped.access);
    assert_eq!(token["sid"], id.as_str());
    assert_eq!(token["auth_time"], now.as_secs(), "{token}");
    assert_eq!(token["acr"], MFA);
    assert_eq!(token["amr"], json!(["pwd", "otp"]));
    let answer = server.introspect(&stepped.access).await;
    assert_eq!(answer["auth_time"], now.as_secs(), "{answer}");
    assert_eq!(answer["acr"], MFA);
    assert_eq!(answer["amr"], json!(["pwd", "otp"]));

    // The old access token still stands but says the old sign-in; the new one passes.
    let ok = InvalidReason::Unspecified;
    let step_up = InvalidReason::StepUpRequired;
    assert_eq!(server.verdict(&first.access, None, &[]).await, ok);
    assert_eq!(server.verdict(&first.access, Some(600), &[]).await, step_up);
    assert_eq!(server.verdict(&first.access, None, &[MFA]).await, step_up);
    assert_eq!(claims(&first.access)["auth_time"], signed_in.as_secs());
    let (verdict, session) = server
        .validate_for(&stepped.access, Some(600), &[MFA])
        .await;
    assert_eq!(verdict, ok);
    let session = session.expect("session");
    assert_eq!(sign_in_of(&session), new_sign_in, "the session as stored");
    assert_eq!(session.user_agent, from.user_agent);

    // A tab that still holds the replaced refresh token, within the grace: the StepUp's
    // refresh token, byte for byte, and an access token that carries the new sign-in.
    let replay = server
        .refresh(&first.refresh)
        .await
        .expect("the replaced refresh token within the grace");
    assert_eq!(replay.refresh, stepped.refresh, "the same successor");
    assert_eq!(replay.session.session_id, id);
    assert_eq!(claims(&replay.access)["acr"], MFA);
    assert_eq!(server.verdict(&replay.access, Some(600), &[MFA]).await, ok);

    // A later refresh carries the new sign-in: the session's, not the caller's clock.
    server.clock.advance(Duration::from_secs(5));
    let later = server
        .refresh(&stepped.refresh)
        .await
        .expect("refresh after step-up");
    assert_eq!(later.session.session_id, id);
    assert_eq!(sign_in_of(&later.session), new_sign_in);
    let token = claims(&later.access);
    assert_eq!(token["auth_time"], now.as_secs(), "{token}");
    assert_eq!(token["acr"], MFA);
    assert_eq!(token["amr"], json!(["pwd", "otp"]));
    assert_ne!(later.refresh, stepped.refresh, "rotated");
    assert_eq!(server.verdict(&later.access, Some(600), &[MFA]).await, ok);

    // Audited once, for this session, from where the step-up came.
    let events = server.stepped_up_events("alice").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.session_id, id);
    assert_eq!(event.user_id, "alice");
    assert_eq!(event.actor, "login:user");
    assert_eq!(event.ip, from.ip);
    assert_eq!(event.user_agent, from.user_agent);
    assert_eq!(event.at, Some(pb_time(now)));
    server.stop().await;
}

#[tokio::test]
async fn step_up_of_a_stepped_up_session_and_an_explicit_auth_time() {
    let server = Server::start().await;
    let first = server.issue("alice", SignIn::default()).await;
    let second = server
        .step_up(&first.access, SignIn::new(None, MFA, &["otp"]))
        .await
        .expect("first step up");
    // The login service says when the user authenticated; less strong this time, and no amr.
    let at = before(server.now(), 30);
    let third = server
        .step_up(&second.access, SignIn::new(Some(at), PWD, &[]))
        .await
        .expect("second step up");
    assert_eq!(third.session.session_id, first.session.session_id);
    assert_eq!(
        sign_in_of(&third.session),
        (pb_time(at), PWD.to_owned(), Vec::new()),
        "the new sign-in replaces the old one entirely"
    );
    let token = claims(&third.access);
    assert_eq!(token["auth_time"], at.as_secs());
    assert_eq!(token["acr"], PWD);
    assert!(token.get("amr").is_none(), "{token}");
    assert_eq!(
        server.verdict(&third.access, None, &[MFA]).await,
        InvalidReason::StepUpRequired
    );
    let later = server.refresh(&third.refresh).await.expect("refresh");
    assert_eq!(
        sign_in_of(&later.session),
        (pb_time(at), PWD.to_owned(), Vec::new())
    );
    // Any access token of the session may ask, the first one too.
    let fourth = server
        .step_up(&first.access, SignIn::new(None, MFA, &["hwk"]))
        .await
        .expect("step up with the first access token");
    assert_eq!(fourth.session.session_id, first.session.session_id);
    assert_eq!(fourth.session.acr, MFA);
    assert_eq!(server.stepped_up_events("alice").await.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn step_up_needs_a_usable_access_token() {
    let server = Server::start().await;
    let live = server.issue("alice", SignIn::default()).await;
    let revoked = server.issue("alice", SignIn::default()).await;
    server
        .ops
        .clone()
        .admin_revoke_session(pb::AdminRevokeSessionRequest {
            session_id: revoked.session.session_id.clone(),
            reason: "support".into(),
        })
        .await
        .expect("admin revoke");

    // One character in the middle of the signature (the last one may only carry padding bits).
    let mut tampered = live.access.clone().into_bytes();
    let middle = tampered.len() - 20;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let cases = [
        ("empty", String::new(), "TOKEN_MALFORMED"),
        ("garbage", "garbage".to_owned(), "TOKEN_MALFORMED"),
        ("a refresh token", live.refresh.clone(), "TOKEN_MALFORMED"),
        ("a bad signature", tampered, "TOKEN_BAD_SIGNATURE"),
        ("revoked", revoked.access.clone(), "SESSION_REVOKED"),
    ];
    for (what, token, reason) in cases {
        let refused = server
            .step_up(&token, SignIn::new(None, MFA, &["otp"]))
            .await
            .expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        assert_eq!(error_reason(&refused), reason, "{what}");
    }
    // Past the access token's lifetime (15 minutes by default); the session itself lasts.
    server.clock.advance(Duration::from_secs(16 * 60));
    let expired = server
        .step_up(&live.access, SignIn::new(None, MFA, &["otp"]))
        .await
        .expect_err("an expired access token");
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert_eq!(error_reason(&expired), "TOKEN_EXPIRED");
    assert_eq!(server.stepped_up_events("alice").await, Vec::new());
    // The session is as it was: its refresh token still rotates with the first sign-in.
    let refreshed = server.refresh(&live.refresh).await.expect("refresh");
    assert_eq!(refreshed.session.acr, "");
    assert_eq!(
        refreshed.session.auth_time, live.session.auth_time,
        "the first sign-in"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_sign_in_is_refused_and_changes_nothing() {
    let server = Server::start().await;
    let signed_in = before(server.now(), 60);
    let first = server
        .issue("alice", SignIn::new(Some(signed_in), PWD, &["pwd"]))
        .await;
    let future = server.now().plus(Duration::from_secs(60));
    let nine: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    let cases = [
        ("acr", SignIn::new(None, &"a".repeat(65), &[])),
        ("acr", SignIn::new(None, "bell\u{7}", &[])),
        (
            "amr",
            SignIn {
                amr: nine,
                ..SignIn::default()
            },
        ),
        ("amr", SignIn::new(None, MFA, &[&"m".repeat(33)])),
        ("amr", SignIn::new(None, MFA, &["otp", ""])),
        ("auth_time", SignIn::new(Some(future), MFA, &["otp"])),
        (
            "auth_time",
            SignIn {
                auth_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..SignIn::default()
            },
        ),
    ];
    for (field, sign_in) in cases {
        let what = format!("{field}: {sign_in:?}");
        let refused = server
            .step_up(&first.access, sign_in)
            .await
            .expect_err(&what);
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
        assert_eq!(error_reason(&refused), "INVALID_ARGUMENT", "{what}");
        assert_eq!(field_of(&refused), field, "{what}");
    }
    // The bounds themselves are accepted: 64 bytes of acr, 8 entries of 32 bytes.
    let widest: Vec<String> = (0..8).map(|i| format!("{i}{}", "m".repeat(31))).collect();
    let issued_widest = server
        .issue(
            "carol",
            SignIn {
                acr: "a".repeat(64),
                amr: widest.clone(),
                ..SignIn::default()
            },
        )
        .await;
    assert_eq!(issued_widest.session.amr, widest);

    // Nothing changed: no event, the session's sign-in as issued, its refresh token current.
    assert_eq!(server.stepped_up_events("alice").await, Vec::new());
    let stated = (pb_time(signed_in), PWD.to_owned(), strings(&["pwd"]));
    let (verdict, session) = server.validate_for(&first.access, None, &[PWD]).await;
    assert_eq!(verdict, InvalidReason::Unspecified);
    assert_eq!(sign_in_of(&session.expect("session")), stated);
    let refreshed = server.refresh(&first.refresh).await.expect("refresh");
    assert_eq!(sign_in_of(&refreshed.session), stated);
    let kinds: Vec<String> = server
        .audit("alice")
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["session_refreshed", "session_issued"],
        "newest first"
    );
    server.stop().await;
}

#[tokio::test]
async fn step_up_needs_the_issuer_role() {
    let server = Server::start().await;
    let first = server
        .issue("alice", SignIn::new(None, PWD, &["pwd"]))
        .await;
    let refused = server
        .step_up_as(
            &server.gate,
            &first.access,
            SignIn::new(None, MFA, &["otp"]),
            None,
        )
        .await
        .expect_err("a validator-only caller");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(error_reason(&refused), "PERMISSION_DENIED");
    // The same caller may validate, and the session is unchanged.
    let (verdict, session) = {
        let r = server
            .gate
            .clone()
            .validate(pb::ValidateRequest {
                access_token: first.access.clone(),
                max_age: None,
                acr_values: strings(&[PWD]),
                ..Default::default()
            })
            .await
            .expect("validate as gate")
            .into_inner();
        (r.valid, r.session)
    };
    assert!(verdict);
    assert_eq!(session.expect("session").acr, PWD);
    assert_eq!(server.stepped_up_events("alice").await, Vec::new());
    server.stop().await;
}

/// A `StepUp` through `a` and a `Refresh` of the same session's current refresh token through
/// `b`, at the same moment, `rounds` times. Whichever the store lets rotate first, both
/// succeed, the session stands, and the refreshing tab's next refresh joins the step-up's chain
/// and carries its sign-in.
async fn step_up_races_refresh(a: &Server, b: &Server, rounds: usize) {
    let mut pair = a.issue("racer", SignIn::new(None, PWD, &["pwd"])).await;
    let id = pair.session.session_id.clone();
    let mut step_up_first = 0;
    for round in 0..rounds {
        let acr = format!("urn:example:round:{round}");
        let (stepped, refreshed) = tokio::join!(
            a.step_up(&pair.access, SignIn::new(None, &acr, &["otp"])),
            b.refresh(&pair.refresh),
        );
        let stepped = stepped.unwrap_or_else(|s| panic!("round {round}: step up: {s:?}"));
        let refreshed = refreshed.unwrap_or_else(|s| panic!("round {round}: refresh: {s:?}"));
        assert_eq!(stepped.session.session_id, id, "round {round}");
        assert_eq!(refreshed.session.session_id, id, "round {round}");
        assert_eq!(stepped.session.acr, acr, "round {round}");
        // The tab refreshes again, on the other replica: the step-up's chain, whatever order
        // the two rotations took.
        let next = a
            .refresh(&refreshed.refresh)
            .await
            .unwrap_or_else(|s| panic!("round {round}: the tab's next refresh: {s:?}"));
        assert_eq!(next.session.acr, acr, "round {round}");
        assert_eq!(claims(&next.access)["acr"], acr.as_str(), "round {round}");
        assert_eq!(
            b.verdict(&next.access, None, &[&acr]).await,
            InvalidReason::Unspecified,
            "round {round}"
        );
        // Either the step-up's own successor came back (a replay within the grace) or the
        // tab's token was current and rotated once more; both are the step-up's chain.
        if next.refresh != stepped.refresh {
            step_up_first += 1;
            assert_eq!(
                b.refresh(&stepped.refresh).await.map(|p| p.refresh).ok(),
                Some(next.refresh.clone()),
                "round {round}: the step-up's token, one generation back, answers the same successor"
            );
        }
        pair = next;
    }
    eprintln!("step-up rotated first in {step_up_first} of {rounds} rounds");
    let events = a.stepped_up_events("racer").await;
    assert_eq!(events.len(), rounds, "one event per step-up");
    assert!(
        a.audit("racer")
            .await
            .iter()
            .all(|e| e.kind != "refresh_token_reuse" && e.kind != "session_revoked"),
        "no reuse detected, nothing revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_and_refresh_at_the_same_moment_both_succeed() {
    let server = Server::start().await;
    step_up_races_refresh(&server, &server, 8).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
async fn step_up_on_one_replica_is_the_session_on_the_other() {
    let (a, b, _keys) = Server::start_replicas().await;
    let first = a
        .issue(
            "alice",
            SignIn::new(Some(before(a.now(), 3600)), PWD, &["pwd"]),
        )
        .await;
    // B caches the session with the old sign-in.
    assert_eq!(
        b.verdict(&first.access, None, &[PWD]).await,
        InvalidReason::Unspecified
    );
    let now = a.now();
    let stepped = a
        .step_up(&first.access, SignIn::new(None, MFA, &["pwd", "otp"]))
        .await
        .expect("step up through a");
    // B judges each token by its own claims, and answers with the session as it now is:
    // the stepped-up token is newer than B's cached copy, so B reads the session again.
    let (verdict, session) = b.validate_for(&stepped.access, Some(600), &[MFA]).await;
    assert_eq!(verdict, InvalidReason::Unspecified);
    assert_eq!(
        sign_in_of(&session.expect("a session when valid")),
        (pb_time(now), MFA.to_owned(), strings(&["pwd", "otp"])),
        "B shows the sign-in A recorded"
    );
    assert_eq!(
        b.verdict(&first.access, Some(600), &[]).await,
        InvalidReason::StepUpRequired
    );
    // The replaced refresh token, through B within the grace: A's successor, byte for byte.
    let replay = b.refresh(&first.refresh).await.expect("replay through b");
    assert_eq!(replay.refresh, stepped.refresh);
    assert_eq!(claims(&replay.access)["acr"], MFA);
    // A later refresh through B carries the sign-in A recorded.
    let later = b
        .refresh(&stepped.refresh)
        .await
        .expect("refresh through b");
    assert_eq!(
        sign_in_of(&later.session),
        (pb_time(now), MFA.to_owned(), strings(&["pwd", "otp"]))
    );
    assert_eq!(claims(&later.access)["auth_time"], now.as_secs());

    step_up_races_refresh(&a, &b, 8).await;
    a.stop().await;
    b.stop().await;
}
