//! Black-box tests of the admin JSON API on the HTTP port (`/admin/api/...`) and of how the
//! console at `/admin/` is served.
//!
//! Each test runs a real server (`serve_with_http`) on two loopback listeners bound before it
//! is spawned, over a real embedded store in a tempdir, issues sessions with the generated gRPC
//! client, and calls the HTTP surface with a plain HTTP client. Every path is checked for its
//! answer in the proto3 JSON mapping, for the state it leaves (asked over gRPC: `Validate`,
//! `AdminList`, `AdminListAuditEvents`) and for its refusals as `{"error", "message"}` with
//! 400/401/403/404/429.

use crate::support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use sessiond::Config;
use sessiond::auth::{CallerSpec, Role};
use sessiond::pb;
use support::{CHROME_ON_MAC, CallerClient, Spawned, client_as, new_caller};
use tokio::net::TcpListener;

/// One running sessiond with both surfaces and the credentials of its callers.
struct Admin {
    server: Option<Spawned>,
    http: SocketAddr,
    web: reqwest::Client,
    /// `ops`: the admin role.
    ops: String,
    /// `login`: issuer and validator, no admin.
    login: String,
    /// `slow`: admin, one request per second.
    slow: String,
    /// gRPC as `login`.
    grpc: CallerClient,
    /// gRPC as `ops`.
    grpc_admin: CallerClient,
    /// gRPC as `slow`.
    grpc_slow: CallerClient,
}

impl Admin {
    async fn start() -> Self {
        let (ops_spec, ops) = new_caller("ops", &[Role::Admin]);
        let (login_spec, login) = new_caller("login", &[Role::Issuer, Role::Validator]);
        let (mut slow_spec, slow) = new_caller("slow", &[Role::Admin]);
        slow_spec.rate_limit = NonZeroU32::new(1);
        Self::start_with(vec![ops_spec, login_spec, slow_spec], ops, login, slow).await
    }

    async fn start_with(
        callers: Vec<CallerSpec>,
        ops: String,
        login: String,
        slow: String,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::new(dir.path());
        config.callers = callers;
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let grpc_addr = grpc.local_addr().expect("grpc addr");
        let http_addr = http.local_addr().expect("http addr");
        let server = Spawned::spawn_with_http(dir, config, grpc, http);
        let channel = support::channel(grpc_addr).await;
        Self {
            server: Some(server),
            http: http_addr,
            web: reqwest::Client::builder()
                .timeout(support::DEADLINE)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            grpc: client_as(channel.clone(), credential(&login)),
            grpc_admin: client_as(channel.clone(), credential(&ops)),
            grpc_slow: client_as(channel, credential(&slow)),
            ops,
            login,
            slow,
        }
    }

    /// A server without callers: everyone on loopback is admin.
    async fn start_open() -> Self {
        Self::start_with(Vec::new(), String::new(), String::new(), String::new()).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// A request as `ops`.
    fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.web
            .request(method, self.url(path))
            .bearer_auth(&self.ops)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.admin(reqwest::Method::GET, path)).await
    }

    async fn delete(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = self.admin(reqwest::Method::DELETE, path);
        send(match body {
            Some(body) => request.json(&body),
            None => request,
        })
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.admin(reqwest::Method::POST, path).json(&body)).await
    }

    /// Issues a session for `user` in `tenant` from a Chrome on macOS.
    async fn issue(&self, user: &str, tenant: &str) -> support::Issued {
        self.issue_from(user, tenant, CHROME_ON_MAC).await
    }

    async fn issue_from(&self, user: &str, tenant: &str, user_agent: &str) -> support::Issued {
        self.grpc
            .clone()
            .issue(pb::IssueRequest {
                user_id: user.to_owned(),
                tenant_id: tenant.to_owned(),
                client: Some(pb::ClientInfo {
                    ip: "203.0.113.7".into(),
                    user_agent: user_agent.to_owned(),
                    device_name: String::new(),
                }),
                metadata: [("login_method".to_owned(), "password".to_owned())].into(),
                ..Default::default()
            })
            .await
            .expect("issue")
            .into_inner()
            .into()
    }

    async fn validate(&self, token: &str) -> (bool, pb::InvalidReason) {
        let r = self
            .grpc
            .clone()
            .validate(pb::ValidateRequest {
                access_token: token.to_owned(),
                ..Default::default()
            })
            .await
            .expect("validate answers OK")
            .into_inner();
        (
            r.valid,
            pb::InvalidReason::try_from(r.reason).expect("known reason"),
        )
    }

    async fn audit(&self, user: &str) -> Vec<pb::AuditEvent> {
        self.grpc_admin
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

    async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// `Some(credential)`, or `None` for the empty credential of a server without callers.
fn credential(c: &str) -> Option<&str> {
    (!c.is_empty()).then_some(c)
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("http request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

/// Asserts an error answer: the status, the `error` reason and a non-empty `message`, and
/// nothing else in the body.
#[track_caller]
fn assert_refused((status, body): &(StatusCode, Value), expected: StatusCode, reason: &str) {
    assert_eq!(*status, expected, "status of {body}");
    assert_eq!(body["error"], reason, "reason of {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message in {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "only error and message: {body}"
    );
}

fn session_ids(body: &Value) -> BTreeSet<String> {
    body["sessions"]
        .as_array()
        .map(|sessions| {
            sessions
                .iter()
                .map(|s| s["sessionId"].as_str().expect("sessionId").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn rfc3339(value: &Value) -> std::time::SystemTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert!(text.ends_with('Z'), "UTC: {text}");
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("not RFC 3339 ({e}): {text}"))
}

#[tokio::test]
async fn sessions_are_listed_in_the_proto3_json_mapping() {
    let admin = Admin::start().await;
    let a1 = admin.issue("alice", "").await;
    let a2 = admin.issue("alice", "t1").await;
    admin.issue("bob", "").await;

    let (status, body) = admin.get("/admin/api/sessions?user_id=alice").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        session_ids(&body),
        BTreeSet::from([a1.session_id.clone(), a2.session_id.clone()])
    );
    assert!(body.get("nextPageToken").is_none(), "last page: {body}");
    let first = body["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sessionId"] == a1.session_id.as_str()))
        .expect("alice's first session")
        .clone();
    assert_eq!(first["userId"], "alice");
    assert!(
        first.get("tenantId").is_none(),
        "empty tenant left out: {first}"
    );
    assert_eq!(first["deviceName"], "Chrome on macOS");
    assert_eq!(first["userAgent"], CHROME_ON_MAC);
    assert_eq!(first["ip"], "203.0.113.7");
    assert_eq!(first["metadata"], json!({"login_method": "password"}));
    assert!(first.get("revokedAt").is_none(), "active: {first}");
    assert!(first.get("current").is_none(), "false left out: {first}");
    let created = rfc3339(&first["createdAt"]);
    assert!(rfc3339(&first["lastSeenAt"]) >= created);
    assert!(rfc3339(&first["expiresAt"]) > created);
    // The same session as gRPC shows it, to the microsecond.
    let created_grpc = a1.session.created_at.expect("created_at");
    let since_epoch = created
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    assert_eq!(since_epoch.as_secs() as i64, created_grpc.seconds);
    assert_eq!(since_epoch.subsec_nanos() as i32, created_grpc.nanos);

    // Everyone, the tenant filter, and no one.
    let (_, all) = admin.get("/admin/api/sessions").await;
    assert_eq!(session_ids(&all).len(), 3);
    let (_, tenant) = admin
        .get("/admin/api/sessions?user_id=alice&tenant_id=t1")
        .await;
    assert_eq!(
        session_ids(&tenant),
        BTreeSet::from([a2.session_id.clone()])
    );
    assert_eq!(tenant["sessions"][0]["tenantId"], "t1");
    let (status, nobody) = admin.get("/admin/api/sessions?user_id=nobody").await;
    assert_eq!((status, nobody), (StatusCode::OK, json!({})));
    admin.stop().await;
}

#[tokio::test]
async fn sessions_show_the_sign_in_and_the_idle_timeout() {
    let admin = Admin::start().await;
    let plain = admin.issue("frank", "").await;
    // Whole seconds, a while ago, so the rendering is known exactly.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64;
    let signed_in = now - 600;
    let strong = admin
        .grpc
        .clone()
        .issue(pb::IssueRequest {
            user_id: "frank".into(),
            idle_timeout: Some(prost_types::Duration {
                seconds: 900,
                nanos: 0,
            }),
            auth_time: Some(prost_types::Timestamp {
                seconds: signed_in,
                nanos: 0,
            }),
            acr: "urn:example:mfa".into(),
            amr: vec!["pwd".into(), "otp".into()],
            ..Default::default()
        })
        .await
        .expect("issue")
        .into_inner();
    let strong_id = strong.session.expect("session").session_id;

    let (status, body) = admin.get("/admin/api/sessions?user_id=frank").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shown = |id: &str| {
        body["sessions"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["sessionId"] == id))
            .unwrap_or_else(|| panic!("session {id} in {body}"))
            .clone()
    };
    let strong = shown(&strong_id);
    assert_eq!(strong["idleTimeout"], "900s", "{strong}");
    let at = rfc3339(&strong["authTime"])
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    assert_eq!(at, std::time::Duration::from_secs(signed_in as u64));
    assert_eq!(strong["acr"], "urn:example:mfa");
    assert_eq!(strong["amr"], json!(["pwd", "otp"]));

    // Without them: auth_time is the issue instant, the rest left out as defaults are.
    let plain_json = shown(&plain.session_id);
    assert_eq!(
        plain_json["authTime"], plain_json["createdAt"],
        "auth_time defaults to the issue instant: {plain_json}"
    );
    for absent in ["idleTimeout", "acr", "amr"] {
        assert!(
            plain_json.get(absent).is_none(),
            "{absent} left out: {plain_json}"
        );
    }
    admin.stop().await;
}

#[tokio::test]
async fn sessions_page_and_include_revoked() {
    let admin = Admin::start().await;
    let mut issued = BTreeSet::new();
    for _ in 0..5 {
        issued.insert(admin.issue("carol", "").await.session_id);
    }
    let mut seen = BTreeSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let path = format!("/admin/api/sessions?user_id=carol&page_size=2&page_token={token}");
        let (status, body) = admin.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids = session_ids(&body);
        assert!(ids.len() <= 2, "page of {}", ids.len());
        assert!(seen.is_disjoint(&ids), "a session on two pages");
        seen.extend(ids);
        pages += 1;
        assert!(pages <= 5, "paging does not end");
        match body["nextPageToken"].as_str() {
            Some(next) => token = urlencode(next),
            None => break,
        }
    }
    assert_eq!(seen, issued);
    assert!(pages >= 3, "5 sessions in pages of 2: {pages} pages");

    let revoked = issued.iter().next().expect("one").clone();
    let (status, _) = admin
        .delete(&format!("/admin/api/sessions/{revoked}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, active) = admin.get("/admin/api/sessions?user_id=carol").await;
    assert_eq!(session_ids(&active).len(), 4);
    assert!(!session_ids(&active).contains(&revoked));
    let (_, with_revoked) = admin
        .get("/admin/api/sessions?user_id=carol&include_revoked=true")
        .await;
    assert_eq!(session_ids(&with_revoked), issued);
    let shown = with_revoked["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["sessionId"] == revoked.as_str()))
        .expect("the revoked one is listed");
    rfc3339(&shown["revokedAt"]);
    assert_eq!(shown["revokeReason"], "admin_revoked");
    admin.stop().await;
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .expect("encodes")
        .trim_start_matches('=')
        .to_owned()
}

#[tokio::test]
async fn callers_are_admitted_as_on_grpc() {
    let admin = Admin::start().await;
    let path = admin.url("/admin/api/sessions");

    let missing = send(admin.web.get(&path)).await;
    assert_refused(&missing, StatusCode::UNAUTHORIZED, "CREDENTIAL_MISSING");
    let unknown = send(admin.web.get(&path).bearer_auth("not-a-credential")).await;
    assert_refused(&unknown, StatusCode::UNAUTHORIZED, "CREDENTIAL_UNKNOWN");
    let malformed = send(
        admin
            .web
            .get(&path)
            .header("authorization", "Basic b3BzOng="),
    )
    .await;
    assert_refused(&malformed, StatusCode::UNAUTHORIZED, "CREDENTIAL_MALFORMED");
    let response = admin.web.get(&path).send().await.expect("request");
    assert!(
        response.headers().contains_key("www-authenticate"),
        "a 401 says how to authenticate"
    );

    // The login service may issue and validate, not administer: on both surfaces alike.
    let denied = send(admin.web.get(&path).bearer_auth(&admin.login)).await;
    assert_refused(&denied, StatusCode::FORBIDDEN, "PERMISSION_DENIED");
    for (method, path, body) in [
        (
            reqwest::Method::DELETE,
            "/admin/api/sessions/0190d1c0-0000-7000-8000-000000000001",
            None,
        ),
        (
            reqwest::Method::DELETE,
            "/admin/api/users/alice/sessions",
            None,
        ),
        (
            reqwest::Method::POST,
            "/admin/api/revoke-all",
            Some(json!({"confirm": true})),
        ),
        (reqwest::Method::GET, "/admin/api/audit", None),
        (reqwest::Method::GET, "/admin/api/stats", None),
    ] {
        let mut request = admin
            .web
            .request(method, admin.url(path))
            .bearer_auth(&admin.login);
        if let Some(body) = body {
            request = request.json(&body);
        }
        assert_refused(
            &send(request).await,
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
        );
    }
    // Nothing was revoked by the refused calls.
    let a = admin.issue("alice", "").await;
    assert!(admin.validate(&a.access).await.0);
    let status = admin
        .grpc
        .clone()
        .admin_list(pb::AdminListRequest::default())
        .await
        .expect_err("login is no admin over gRPC either");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    admin.stop().await;
}

#[tokio::test]
async fn the_rate_limit_is_shared_with_grpc() {
    let admin = Admin::start().await;
    // `slow` may make one request a second: a gRPC call spends it, so HTTP is refused at once.
    admin
        .grpc_slow
        .clone()
        .admin_list(pb::AdminListRequest::default())
        .await
        .expect("the first request of the second");
    let refused = send(
        admin
            .web
            .get(admin.url("/admin/api/stats"))
            .bearer_auth(&admin.slow),
    )
    .await;
    assert_refused(&refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    // Other callers are not limited by it.
    assert_eq!(admin.get("/admin/api/stats").await.0, StatusCode::OK);
    admin.stop().await;
}

#[tokio::test]
async fn listing_arguments_are_checked() {
    let admin = Admin::start().await;
    let cases = [
        ("/admin/api/sessions?tenant_id=t1", "INVALID_ARGUMENT"),
        ("/admin/api/sessions?page_token=garbage", "INVALID_ARGUMENT"),
        ("/admin/api/sessions?page_size=many", "INVALID_ARGUMENT"),
        ("/admin/api/sessions?page_size=-1", "INVALID_ARGUMENT"),
        (
            "/admin/api/sessions?include_revoked=maybe",
            "INVALID_ARGUMENT",
        ),
        ("/admin/api/sessions?user=alice", "MALFORMED_REQUEST"),
        (
            "/admin/api/sessions?user_id=a&user_id=b",
            "MALFORMED_REQUEST",
        ),
        ("/admin/api/audit?page_token=garbage", "INVALID_ARGUMENT"),
        ("/admin/api/audit?page_size=1.5", "INVALID_ARGUMENT"),
        ("/admin/api/audit?tenant_id=t1", "MALFORMED_REQUEST"),
        ("/admin/api/stats?x=1", "MALFORMED_REQUEST"),
    ];
    for (path, reason) in cases {
        let answer = admin.get(path).await;
        assert_refused(&answer, StatusCode::BAD_REQUEST, reason);
    }
    let long = "x".repeat(257);
    let answer = admin
        .get(&format!("/admin/api/sessions?user_id={long}"))
        .await;
    assert_refused(&answer, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    assert!(
        answer.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("user_id"))
    );
    let control = admin.get("/admin/api/audit?user_id=a%0Ab").await;
    assert_refused(&control, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    // A page token of one listing is no token of another.
    for _ in 0..3 {
        admin.issue("dave", "").await;
    }
    let (_, page) = admin
        .get("/admin/api/sessions?user_id=dave&page_size=1")
        .await;
    let token = urlencode(page["nextPageToken"].as_str().expect("a next page"));
    let other = admin
        .get(&format!(
            "/admin/api/sessions?user_id=erin&page_size=1&page_token={token}"
        ))
        .await;
    assert_refused(&other, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    admin.stop().await;
}

#[tokio::test]
async fn one_session_is_revoked_and_audited() {
    let admin = Admin::start().await;
    let target = admin.issue("alice", "").await;
    let other = admin.issue("alice", "").await;
    let path = format!("/admin/api/sessions/{}", target.session_id);

    let (status, body) = admin
        .delete(&path, Some(json!({"reason": "stolen laptop"})))
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revoked": true})));
    assert_eq!(
        admin.validate(&target.access).await,
        (false, pb::InvalidReason::Revoked)
    );
    assert!(admin.validate(&other.access).await.0, "only that one");
    // Again: already revoked, answered OK with the default `false` left out.
    let (status, body) = admin.delete(&path, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    let events = admin.audit("alice").await;
    let event = events
        .iter()
        .find(|e| e.kind == "session_revoked" && e.session_id == target.session_id)
        .expect("the revocation is audited");
    assert_eq!(event.actor, "ops:admin");
    assert_eq!(event.ip, "127.0.0.1", "from the admin caller's address");
    assert_eq!(event.reason, "stolen laptop");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "session_revoked")
            .count(),
        1,
        "the second call changed nothing"
    );

    let unknown = admin
        .delete(
            "/admin/api/sessions/0190d1c0-0000-7000-8000-000000000001",
            None,
        )
        .await;
    assert_refused(&unknown, StatusCode::NOT_FOUND, "SESSION_NOT_FOUND");
    let not_uuid = admin.delete("/admin/api/sessions/not-a-uuid", None).await;
    assert_refused(&not_uuid, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let long = admin
        .delete(&path, Some(json!({"reason": "r".repeat(257)})))
        .await;
    assert_refused(&long, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let typo = admin.delete(&path, Some(json!({"reasons": "x"}))).await;
    assert_refused(&typo, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    let not_json = send(
        admin
            .admin(reqwest::Method::DELETE, &path)
            .header("content-type", "application/json")
            .body("{reason"),
    )
    .await;
    assert_refused(&not_json, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    let text = send(
        admin
            .admin(reqwest::Method::DELETE, &path)
            .header("content-type", "text/plain")
            .body(r#"{"reason":"x"}"#),
    )
    .await;
    assert_refused(&text, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    admin.stop().await;
}

#[tokio::test]
async fn a_user_is_logged_out_by_tenant_or_everywhere() {
    let admin = Admin::start().await;
    let plain = admin.issue("alice", "").await;
    let in_t1 = admin.issue("alice", "t1").await;
    let in_t2 = admin.issue("alice", "t2").await;
    let bob = admin.issue("bob", "t1").await;

    let (status, body) = admin
        .delete(
            "/admin/api/users/alice/sessions?tenant_id=t1",
            Some(json!({"reason": "hr"})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revokedCount": 1})));
    assert_eq!(
        admin.validate(&in_t1.access).await,
        (false, pb::InvalidReason::Revoked)
    );
    assert!(admin.validate(&in_t2.access).await.0);
    assert!(admin.validate(&bob.access).await.0);

    let (status, body) = admin.delete("/admin/api/users/alice/sessions", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revokedCount": 2})));
    for token in [&plain.access, &in_t2.access] {
        assert_eq!(
            admin.validate(token).await,
            (false, pb::InvalidReason::Revoked)
        );
    }
    assert!(admin.validate(&bob.access).await.0, "bob stays");
    // Nothing left: zero, left out.
    let (status, body) = admin.delete("/admin/api/users/alice/sessions", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    let events = admin.audit("alice").await;
    let revoked: Vec<_> = events.iter().filter(|e| e.kind == "user_revoked").collect();
    assert_eq!(revoked.len(), 3);
    assert!(
        revoked
            .iter()
            .all(|e| e.actor == "ops:admin" && e.ip == "127.0.0.1")
    );
    assert!(revoked.iter().any(|e| e.reason == "hr"));

    // An id that needs escaping in a path reaches the domain intact.
    let odd = admin.issue("a/b c", "").await;
    let (status, body) = admin
        .delete("/admin/api/users/a%2Fb%20c/sessions", None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revokedCount": 1})));
    assert_eq!(
        admin.validate(&odd.access).await,
        (false, pb::InvalidReason::Revoked)
    );

    let long = admin
        .delete(
            &format!("/admin/api/users/{}/sessions", "u".repeat(257)),
            None,
        )
        .await;
    assert_refused(&long, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let bad_tenant = admin
        .delete(
            &format!(
                "/admin/api/users/alice/sessions?tenant_id={}",
                "t".repeat(257)
            ),
            None,
        )
        .await;
    assert_refused(&bad_tenant, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let unknown = admin
        .delete("/admin/api/users/alice/sessions?user_id=x", None)
        .await;
    assert_refused(&unknown, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    let empty = admin.delete("/admin/api/users//sessions", None).await;
    assert_refused(&empty, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    admin.stop().await;
}

#[tokio::test]
async fn the_emergency_switch_needs_its_confirmation() {
    let admin = Admin::start().await;
    let before: Vec<_> = [
        admin.issue("alice", "").await,
        admin.issue("bob", "t1").await,
    ]
    .into();

    let unconfirmed = admin
        .post("/admin/api/revoke-all", json!({"reason": "oops"}))
        .await;
    assert_refused(&unconfirmed, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let declined = admin
        .post("/admin/api/revoke-all", json!({"confirm": false}))
        .await;
    assert_refused(&declined, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let empty = send(admin.admin(reqwest::Method::POST, "/admin/api/revoke-all")).await;
    assert_refused(&empty, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");
    let typo = admin
        .post("/admin/api/revoke-all", json!({"confirmed": true}))
        .await;
    assert_refused(&typo, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    let wrong_type = admin
        .post("/admin/api/revoke-all", json!({"confirm": "yes"}))
        .await;
    assert_refused(&wrong_type, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    // What an HTML form on another site could send: not JSON, refused.
    let form = send(
        admin
            .admin(reqwest::Method::POST, "/admin/api/revoke-all")
            .header("content-type", "text/plain")
            .body(r#"{"confirm": true}"#),
    )
    .await;
    assert_refused(&form, StatusCode::BAD_REQUEST, "MALFORMED_REQUEST");
    for s in &before {
        assert!(admin.validate(&s.access).await.0, "nothing was thrown yet");
    }

    let (status, body) = admin
        .post(
            "/admin/api/revoke-all",
            json!({"confirm": true, "reason": "drill"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let not_before = rfc3339(&body["notBefore"]);
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    for s in &before {
        assert_eq!(
            admin.validate(&s.access).await,
            (false, pb::InvalidReason::Revoked)
        );
    }
    let after = admin.issue("alice", "").await;
    assert!(
        admin.validate(&after.access).await.0,
        "issued after the switch"
    );
    let created = after.session.created_at.expect("created_at");
    let not_before_secs = not_before
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64;
    assert!(created.seconds >= not_before_secs);

    let events = admin.audit("").await;
    let global = events
        .iter()
        .find(|e| e.kind == "global_revoke")
        .expect("audited");
    assert_eq!(
        (
            global.actor.as_str(),
            global.ip.as_str(),
            global.reason.as_str()
        ),
        ("ops:admin", "127.0.0.1", "drill")
    );
    admin.stop().await;
}

#[tokio::test]
async fn the_audit_log_pages_per_user() {
    let admin = Admin::start().await;
    let first = admin.issue("alice", "").await;
    admin.issue("alice", "").await;
    admin.issue("bob", "").await;
    admin
        .delete(&format!("/admin/api/sessions/{}", first.session_id), None)
        .await;

    let grpc: Vec<String> = admin
        .audit("alice")
        .await
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(grpc.len(), 3, "two issued, one revoked");
    let mut seen = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        assert!(page < 5, "paging does not end");
        let (status, body) = admin
            .get(&format!(
                "/admin/api/audit?user_id=alice&page_size=2&page_token={token}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["events"].as_array().cloned().unwrap_or_default();
        assert!(events.len() <= 2);
        for e in &events {
            assert_eq!(e["userId"], "alice");
            rfc3339(&e["at"]);
            seen.push(e["eventId"].as_str().expect("eventId").to_owned());
        }
        match body["nextPageToken"].as_str() {
            Some(next) => token = urlencode(next),
            None => break,
        }
    }
    assert_eq!(
        seen, grpc,
        "the same events, newest first, as gRPC lists them"
    );

    let (_, newest) = admin
        .get("/admin/api/audit?user_id=alice&page_size=1")
        .await;
    let event = &newest["events"][0];
    assert_eq!(event["kind"], "session_revoked");
    assert_eq!(event["actor"], "ops:admin");
    assert_eq!(event["ip"], "127.0.0.1");
    assert_eq!(event["sessionId"], first.session_id.as_str());
    let (_, everyone) = admin.get("/admin/api/audit").await;
    assert_eq!(everyone["events"].as_array().map(Vec::len), Some(4));
    admin.stop().await;
}

#[tokio::test]
async fn stats_say_what_metrics_know() {
    let admin = Admin::start().await;
    for i in 0..4 {
        let s = admin.issue(&format!("user-{i}"), "").await;
        admin.validate(&s.access).await;
    }
    let (status, stats) = admin.get("/admin/api/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    rfc3339(&stats["at"]);
    assert!(
        stats["windowSeconds"].as_f64().is_some_and(|w| w > 0.0),
        "{stats}"
    );
    // The recorder is one per process, shared with the other tests' servers: at least ours.
    let rates = &stats["callsPerSecond"];
    for rpc in ["Issue", "Validate"] {
        let rate = rates[format!("sessiond.v1.SessionService/{rpc}")].as_f64();
        assert!(rate.is_some_and(|r| r > 0.0), "{rpc} in {stats}");
    }
    let total = stats["totalCallsPerSecond"].as_f64().expect("a total");
    let sum: f64 = rates
        .as_object()
        .expect("an object")
        .values()
        .filter_map(Value::as_f64)
        .sum();
    assert!((total - sum).abs() < 1e-6, "{stats}");
    assert_eq!(
        stats["liveSessions"], 4,
        "this server's store holds four sessions"
    );
    let tokens = stats["cacheHitRatio"]["tokens"]
        .as_f64()
        .expect("token cache looked up");
    assert!((0.0..=1.0).contains(&tokens));
    assert!(
        stats["revocationFeedLagSeconds"]
            .as_f64()
            .is_some_and(|l| l >= 0.0)
    );
    admin.stop().await;
}

#[tokio::test]
async fn browsers_on_other_origins_are_refused() {
    let admin = Admin::start().await;
    let s = admin.issue("alice", "").await;
    let path = format!("/admin/api/sessions/{}", s.session_id);
    let cross = send(
        admin
            .admin(reqwest::Method::DELETE, &path)
            .header("origin", "https://evil.example"),
    )
    .await;
    assert_refused(&cross, StatusCode::FORBIDDEN, "FORBIDDEN_ORIGIN");
    assert!(admin.validate(&s.access).await.0, "nothing revoked");
    let same = send(
        admin
            .admin(reqwest::Method::DELETE, &path)
            .header("origin", format!("http://{}", admin.http)),
    )
    .await;
    assert_eq!(same, (StatusCode::OK, json!({"revoked": true})));
    admin.stop().await;
}

#[tokio::test]
async fn without_callers_loopback_is_admin_but_only_by_a_loopback_name() {
    let admin = Admin::start_open().await;
    admin.issue("alice", "").await;
    let (status, body) = send(admin.web.get(admin.url("/admin/api/sessions"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session_ids(&body).len(), 1);
    let localhost = format!("localhost:{}", admin.http.port());
    let (status, _) = send(
        admin
            .web
            .get(admin.url("/admin/api/sessions"))
            .header("host", localhost),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A page of another name that resolves to 127.0.0.1 (DNS rebinding).
    let rebound = send(
        admin
            .web
            .get(admin.url("/admin/api/sessions"))
            .header("host", format!("rebind.example:{}", admin.http.port())),
    )
    .await;
    assert_refused(&rebound, StatusCode::FORBIDDEN, "FORBIDDEN_ORIGIN");
    let events = admin.audit("alice").await;
    assert!(!events.is_empty());
    let (_, revoke) = send(
        admin
            .web
            .delete(admin.url("/admin/api/users/alice/sessions")),
    )
    .await;
    assert_eq!(revoke, json!({"revokedCount": 1}));
    let events = admin.audit("alice").await;
    let event = events
        .iter()
        .find(|e| e.kind == "user_revoked")
        .expect("audited");
    assert_eq!(event.actor, "anonymous:admin");
    admin.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let admin = Admin::start().await;
    assert_refused(
        &admin.get("/admin/api/nothing").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    assert_refused(
        &admin.get("/admin/api/").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let post = admin.post("/admin/api/sessions", json!({})).await;
    assert_refused(&post, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    let get = admin.get("/admin/api/revoke-all").await;
    assert_refused(&get, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    admin.stop().await;
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_strict_headers() {
    let admin = Admin::start().await;
    let page = admin
        .web
        .get(admin.url("/admin/"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(header(&headers, "content-type").starts_with("text/html"));
    let csp = header(&headers, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&headers, "x-frame-options"), "DENY");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"<script type="module" src="/admin/console.js">"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside fetch"
    );

    for (path, kind) in [
        ("/admin/console.js", "text/javascript"),
        ("/admin/console.css", "text/css"),
    ] {
        let asset = admin.web.get(admin.url(path)).send().await.expect("asset");
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert!(
            header(asset.headers(), "content-type").starts_with(kind),
            "{path}"
        );
        assert_eq!(header(asset.headers(), "x-frame-options"), "DENY");
    }
    // The page needs no credential; the API it calls does, and carries the same headers.
    let api = admin
        .web
        .get(admin.url("/admin/api/stats"))
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(api.headers(), "x-frame-options"), "DENY");
    assert_eq!(header(api.headers(), "cache-control"), "no-store");
    let bare = admin
        .web
        .get(admin.url("/admin"))
        .send()
        .await
        .expect("redirect");
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header(bare.headers(), "location"), "/admin/");
    admin.stop().await;
}
