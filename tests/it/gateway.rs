//! Black-box tests of the gateway and operator surface: Envoy external authorization on the
//! gRPC port, and the HTTP surface (forward auth at `/auth/check`, RFC 7662 introspection,
//! RFC 7009 revocation, JWKS, Prometheus metrics, health), and the RFC 9068 claims of the
//! access tokens they all read.
//!
//! Each test runs a real server (`serve_with_http`) on two loopback listeners bound before the
//! server is spawned, over a real embedded store in a tempdir, and talks to it through the
//! generated gRPC clients (sessiond's and Envoy's) and a plain HTTP client. Waits are polls
//! with a deadline, never sleeps as synchronisation; expiry is reached by moving a manual
//! clock the server runs on, never by waiting.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::{HeaderMap as EnvoyHeaders, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as CheckedRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use reqwest::StatusCode;
use sessiond::auth::{CallerSpec, Role, hash_credential};
use sessiond::model::ManualClock;
use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::{Config, ServeError};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

/// How long any poll may wait before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
/// The credential of the all-roles caller in tests that configure callers.
const GATEWAY_SECRET: &str = "gateway-secret-credential";
/// The credential of a caller with the issuer role only.
const LOGIN_SECRET: &str = "login-secret-credential";

/// Adds the caller's `authorization` metadata to every gRPC call, when it has one.
#[derive(Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

type Sessions = SessionServiceClient<InterceptedService<Channel, Bearer>>;
type Authz = AuthorizationClient<InterceptedService<Channel, Bearer>>;

/// One running sessiond with both surfaces.
struct Gateway {
    server: support::Spawned,
    http_addr: SocketAddr,
    channel: Channel,
    bearer: Bearer,
    web: reqwest::Client,
}

impl Gateway {
    /// Defaults, no callers configured.
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// No callers configured, `tweak` applied to the defaults.
    async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::new(dir.path());
        tweak(&mut config);
        Self::start_in(dir, config, None).await
    }

    /// Two callers configured: `gateway` (every role) and `login` (issuer only); the gRPC
    /// clients present the gateway's credential.
    async fn start_with_callers() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::new(dir.path());
        config.callers = vec![
            caller(
                "gateway",
                GATEWAY_SECRET,
                &[Role::Issuer, Role::Validator, Role::Admin],
            ),
            caller("login", LOGIN_SECRET, &[Role::Issuer]),
        ];
        Self::start_in(dir, config, Some(GATEWAY_SECRET)).await
    }

    async fn start_in(dir: TempDir, config: Config, credential: Option<&str>) -> Self {
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let grpc_addr = grpc.local_addr().expect("grpc addr");
        let http_addr = http.local_addr().expect("http addr");
        // Both listeners are bound before spawning: clients can connect at once.
        let server = support::Spawned::spawn_with_http(dir, config, grpc, http);
        let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let bearer =
            Bearer(credential.map(|c| format!("Bearer {c}").parse().expect("credential is ascii")));
        Self {
            server,
            http_addr,
            channel,
            bearer,
            web: reqwest::Client::new(),
        }
    }

    fn sessions(&self) -> Sessions {
        SessionServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    fn authz(&self) -> Authz {
        AuthorizationClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.web.get(self.url(path)).send().await.expect("GET")
    }

    /// Introspects `token` as the caller with `credential` (none: no `Authorization`).
    async fn introspect(&self, token: &str, credential: Option<&str>) -> reqwest::Response {
        let mut req = self
            .web
            .post(self.url("/oauth2/introspect"))
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        if let Some(credential) = credential {
            req = req.bearer_auth(credential);
        }
        req.send().await.expect("POST introspect")
    }

    /// `GET /auth/check` with the request headers `headers`.
    async fn auth_check(&self, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.web.get(self.url("/auth/check"));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("GET /auth/check")
    }

    /// `POST /oauth2/revoke` of `token` (with `hint`, if any) as the caller with `credential`.
    async fn revoke_token(
        &self,
        token: &str,
        hint: Option<&str>,
        credential: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("token", token)];
        form.extend(hint.map(|h| ("token_type_hint", h)));
        let mut req = self.web.post(self.url("/oauth2/revoke")).form(&form);
        if let Some(credential) = credential {
            req = req.bearer_auth(credential);
        }
        req.send().await.expect("POST revoke")
    }

    fn path(&self) -> &std::path::Path {
        self.server.path()
    }

    async fn issue(&self, user: &str, tenant: &str, ttl: Option<Duration>) -> pb::IssueResponse {
        self.sessions()
            .issue(pb::IssueRequest {
                user_id: user.into(),
                tenant_id: tenant.into(),
                ttl: ttl.map(|d| prost_types::Duration {
                    seconds: i64::try_from(d.as_secs()).expect("small ttl"),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .expect("issue")
            .into_inner()
    }

    /// Stops the server, checks `serve_with_http` returned `Ok`, and hands back the data dir.
    async fn stop(self) -> TempDir {
        self.server.stop().await
    }
}

fn caller(name: &str, credential: &str, roles: &[Role]) -> CallerSpec {
    CallerSpec {
        name: name.into(),
        credential_sha256: Some(hash_credential(credential)),
        client_cert_subject: None,
        roles: roles.to_vec(),
        rate_limit: None,
    }
}

fn access_token(issued: &pb::IssueResponse) -> String {
    issued.tokens.as_ref().expect("tokens").access_token.clone()
}

fn session_id(issued: &pb::IssueResponse) -> String {
    issued.session.as_ref().expect("session").session_id.clone()
}

/// A `CheckRequest` for an HTTP request with `headers` (as Envoy sends them: in `headers`).
fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
    let headers = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    checked(HttpRequest {
        method: "GET".into(),
        path: "/api/orders".into(),
        headers,
        ..Default::default()
    })
}

fn checked(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(CheckedRequest {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(gateway: &Gateway, request: CheckRequest) -> CheckResponse {
    gateway
        .authz()
        .check(request)
        .await
        .expect("check answers")
        .into_inner()
}

/// The headers an allowed check sets upstream; fails the test on a denial.
fn allowed_headers(answer: &CheckResponse) -> HashMap<String, String> {
    allowed(answer).0
}

/// The headers an allowed check sets and those it removes upstream.
fn allowed(answer: &CheckResponse) -> (HashMap<String, String>, Vec<String>) {
    assert_eq!(
        answer.status.as_ref().map(|s| s.code),
        Some(0),
        "{answer:?}"
    );
    let Some(HttpResponse::OkResponse(ok)) = &answer.http_response else {
        panic!("not an OK response: {answer:?}");
    };
    let set = ok
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| (h.key.clone(), h.value.clone()))
        .collect();
    (set, ok.headers_to_remove.clone())
}

/// The body and `www-authenticate` of a denial; fails the test unless it is a 401 denial.
fn denial(answer: &CheckResponse) -> (String, String) {
    assert_eq!(
        answer.status.as_ref().map(|s| s.code),
        Some(Code::Unauthenticated as i32),
        "{answer:?}"
    );
    let Some(HttpResponse::DeniedResponse(denied)) = &answer.http_response else {
        panic!("not a denial: {answer:?}");
    };
    assert_eq!(denied.status.as_ref().map(|s| s.code), Some(401));
    let challenge = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone())
        .expect("a www-authenticate challenge");
    (denied.body.clone(), challenge)
}

/// Replaces one character in the middle of the token's signature: still base64url, no longer
/// the signature of the token.
fn forge(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').expect("a JWT");
    let mut chars: Vec<char> = signature.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", chars.into_iter().collect::<String>())
}

/// The sum of the samples of `name` whose labels include all of `labels` (0 when none).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            if matches {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// A cache budget far below the working set: entries are pushed out (and counted), and
/// every token still validates, through the store.
#[tokio::test]
async fn a_small_cache_budget_evicts_and_every_token_still_validates() {
    use futures::StreamExt;
    const SESSIONS: usize = 2_000;
    let gateway = Gateway::start_with(|c| c.cache_memory = bytesize::ByteSize::mib(1)).await;
    let before = gateway.get("/metrics").await.text().await.expect("text");
    let tokens: Vec<String> = futures::stream::iter(0..SESSIONS)
        .map(|n| {
            let gateway = &gateway;
            async move { access_token(&gateway.issue(&format!("small-{n}"), "", None).await) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut sessions = gateway.sessions();
    for token in &tokens {
        let reply = sessions
            .validate(pb::ValidateRequest {
                access_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("validate")
            .into_inner();
        assert!(reply.valid, "a token evicted from the cache is still valid");
    }
    let after = gateway.get("/metrics").await.text().await.expect("text");
    let grew = |labels: &[(&str, &str)]| {
        sample(&after, "sessiond_cache_evictions_total", labels)
            - sample(&before, "sessiond_cache_evictions_total", labels)
    };
    // 384 KiB of tokens at about 650 bytes each, 512 KiB of sessions at about 1,000: well
    // under the 2,000 issued.
    let pushed_out = grew(&[("cache", "tokens"), ("cause", "size")]);
    assert!(pushed_out >= 500.0, "token evictions: {pushed_out}");
    assert!(grew(&[("cache", "sessions"), ("cause", "size")]) >= 500.0);
}

#[tokio::test]
async fn ext_authz_allows_a_valid_token_with_identity_headers() {
    let gateway = Gateway::start().await;
    let issued = gateway.issue("user-1", "tenant-1", None).await;
    let bearer = format!("Bearer {}", access_token(&issued));

    let answer = check(&gateway, check_request(&[("authorization", &bearer)])).await;
    let headers = allowed_headers(&answer);
    assert_eq!(headers.get("x-session-id"), Some(&session_id(&issued)));
    assert_eq!(headers.get("x-user-id").map(String::as_str), Some("user-1"));
    assert_eq!(
        headers.get("x-tenant-id").map(String::as_str),
        Some("tenant-1")
    );

    // Raw headers (`header_map`, Envoy's `encode_raw_headers`) carry the value as bytes.
    let raw = checked(HttpRequest {
        header_map: Some(EnvoyHeaders {
            headers: vec![HeaderValue {
                key: "authorization".into(),
                value: String::new(),
                raw_value: bearer.clone().into_bytes(),
            }],
        }),
        ..Default::default()
    });
    let headers = allowed_headers(&check(&gateway, raw).await);
    assert_eq!(headers.get("x-user-id").map(String::as_str), Some("user-1"));

    // A session without a tenant removes x-tenant-id, so a client-sent value cannot reach
    // the upstream.
    let issued = gateway.issue("user-2", "", None).await;
    let bearer = format!("Bearer {}", access_token(&issued));
    let answer = check(
        &gateway,
        check_request(&[("authorization", &bearer), ("x-tenant-id", "forged")]),
    )
    .await;
    let (headers, removed) = allowed(&answer);
    assert_eq!(headers.get("x-tenant-id"), None);
    assert_eq!(removed, ["x-tenant-id"]);
    assert_eq!(headers.get("x-user-id").map(String::as_str), Some("user-2"));
}

#[tokio::test]
async fn ext_authz_denies_missing_malformed_and_forged_tokens() {
    let gateway = Gateway::start().await;

    for headers in [vec![], vec![("authorization", "Basic dXNlcjpwYXNz")]] {
        let answer = check(&gateway, check_request(&headers)).await;
        let (body, challenge) = denial(&answer);
        assert_eq!(body, "missing bearer token");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // No attributes at all is a request without a token too.
    let answer = check(&gateway, CheckRequest::default()).await;
    assert_eq!(denial(&answer).0, "missing bearer token");

    let answer = check(
        &gateway,
        check_request(&[("authorization", "Bearer not-a-jwt")]),
    )
    .await;
    let (body, challenge) = denial(&answer);
    assert!(body.contains("malformed"), "{body}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    let issued = gateway.issue("user-1", "", None).await;
    let forged = format!("Bearer {}", forge(&access_token(&issued)));
    let answer = check(&gateway, check_request(&[("authorization", &forged)])).await;
    let (body, _) = denial(&answer);
    assert!(body.contains("signature"), "{body}");
}

#[tokio::test]
async fn ext_authz_denies_an_expired_token() {
    let clock = ManualClock::starting_now();
    let gateway = Gateway::start_with(|c| c.clock = clock.shared()).await;
    let issued = gateway
        .issue("user-1", "", Some(Duration::from_secs(1)))
        .await;
    let bearer = format!("Bearer {}", access_token(&issued));
    let answer = check(&gateway, check_request(&[("authorization", &bearer)])).await;
    assert_eq!(
        answer.status.as_ref().map(|s| s.code),
        Some(0),
        "allowed first"
    );
    // Past the one-second session, and so past its token.
    clock.advance(Duration::from_secs(1));
    let answer = check(&gateway, check_request(&[("authorization", &bearer)])).await;
    assert_ne!(
        answer.status.as_ref().map(|s| s.code),
        Some(0),
        "denied once expired"
    );
    let (body, _) = denial(&answer);
    assert!(body.contains("expired"), "{body}");
}

#[tokio::test]
async fn ext_authz_denies_a_revoked_session() {
    let gateway = Gateway::start().await;
    let issued = gateway.issue("user-1", "", None).await;
    let token = access_token(&issued);
    let bearer = format!("Bearer {token}");
    allowed_headers(&check(&gateway, check_request(&[("authorization", &bearer)])).await);

    gateway
        .sessions()
        .revoke(pb::RevokeRequest {
            access_token: token,
            session_id: session_id(&issued),
        })
        .await
        .expect("revoke");
    let answer = check(&gateway, check_request(&[("authorization", &bearer)])).await;
    let (body, _) = denial(&answer);
    assert!(body.contains("revoked"), "{body}");
}

#[tokio::test]
async fn ext_authz_requires_a_validator_caller_when_callers_are_configured() {
    let gateway = Gateway::start_with_callers().await;
    let issued = gateway.issue("user-1", "", None).await;
    let bearer = format!("Bearer {}", access_token(&issued));
    allowed_headers(&check(&gateway, check_request(&[("authorization", &bearer)])).await);

    // The end user's token in the checked request does not authenticate the gateway itself.
    let mut anonymous = AuthorizationClient::new(gateway.channel.clone());
    let refused = anonymous
        .check(check_request(&[("authorization", &bearer)]))
        .await
        .expect_err("an unauthenticated caller is refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn introspection_answers_active_and_inactive() {
    let gateway = Gateway::start().await;
    let issued = gateway.issue("user-1", "tenant-1", None).await;
    let token = access_token(&issued);

    let response = gateway.introspect(&token, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "user-1");
    assert_eq!(body["sid"], session_id(&issued).as_str());
    assert_eq!(body["tid"], "tenant-1");
    assert_eq!(body["iss"], "sessiond");
    assert_eq!(body["token_type"], "access_token");
    let iat = body["iat"].as_i64().expect("iat");
    let exp = body["exp"].as_i64().expect("exp");
    assert!(exp > iat, "{body}");
    let expires_at = issued
        .tokens
        .as_ref()
        .and_then(|t| t.access_token_expires_at.as_ref())
        .expect("expiry");
    assert_eq!(exp, expires_at.seconds);

    // No tenant: no `tid`.
    let untenanted = gateway.issue("user-2", "", None).await;
    let body: serde_json::Value = gateway
        .introspect(&access_token(&untenanted), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["active"], true);
    assert!(body.get("tid").is_none(), "{body}");

    // Every unusable token is just inactive.
    let forged = forge(&token);
    for unusable in ["", "garbage", "a.b.c", forged.as_str()] {
        let response = gateway.introspect(unusable, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{unusable:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body, serde_json::json!({ "active": false }), "{unusable:?}");
    }
    gateway
        .sessions()
        .revoke(pb::RevokeRequest {
            access_token: token.clone(),
            session_id: session_id(&issued),
        })
        .await
        .expect("revoke");
    let body: serde_json::Value = gateway
        .introspect(&token, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body, serde_json::json!({ "active": false }));
}

#[tokio::test]
async fn introspection_authenticates_its_caller() {
    let gateway = Gateway::start_with_callers().await;
    let token = access_token(&gateway.issue("user-1", "", None).await);

    for credential in [None, Some("not-a-known-credential")] {
        let response = gateway.introspect(&token, credential).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{credential:?}"
        );
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{credential:?}"
        );
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_client");
    }

    // Known, but without the validator role.
    let response = gateway.introspect(&token, Some(LOGIN_SECRET)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized_client");

    let response = gateway.introspect(&token, Some(GATEWAY_SECRET)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "user-1");
}

#[tokio::test]
async fn introspection_refuses_bad_requests_with_json_errors() {
    let gateway = Gateway::start().await;
    let url = gateway.url("/oauth2/introspect");
    let web = &gateway.web;

    let cases = [
        // No token.
        web.post(&url).form(&[("token_type_hint", "access_token")]),
        // Twice the token.
        web.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=a&token=b"),
        // Not a form.
        web.post(&url)
            .header("content-type", "application/json")
            .body(r#"{"token":"a"}"#),
        // No content type at all.
        web.post(&url).body("token=a"),
        // Not even UTF-8.
        web.post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe, b'=', 0xfd]),
    ];
    for case in cases {
        let response = case.send().await.expect("POST");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(body["error_description"].is_string(), "{body}");
    }

    let huge = format!("token={}", "a".repeat(100 * 1024));
    let response = web
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");

    let response = gateway.get("/oauth2/introspect").await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "method_not_allowed");

    let response = gateway.get("/no/such/path").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn jwks_verifies_a_token_the_service_issued() {
    let gateway = Gateway::start().await;
    let token = access_token(&gateway.issue("user-1", "tenant-1", None).await);

    let response = gateway.get("/.well-known/jwks.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    let jwks: jsonwebtoken::jwk::JwkSet = response.json().await.expect("a JWK set");
    assert!(!jwks.keys.is_empty());

    let header = jsonwebtoken::decode_header(&token).expect("header");
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("the signing key is served");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("usable key");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&["sessiond"]);
    validation.set_audience(&["sessiond"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
        .expect("the served key verifies the token");
    assert_eq!(data.claims["sub"], "user-1");
    assert_eq!(data.claims["tid"], "tenant-1");

    // A forged signature does not verify under the served key either.
    assert!(jsonwebtoken::decode::<serde_json::Value>(&forge(&token), &key, &validation).is_err());
}

#[tokio::test]
async fn metrics_move_with_calls() {
    let gateway = Gateway::start().await;
    let before = gateway.get("/metrics").await.text().await.expect("text");

    let token = access_token(&gateway.issue("user-1", "", None).await);
    let mut sessions = gateway.sessions();
    for _ in 0..3 {
        let reply = sessions
            .validate(pb::ValidateRequest {
                access_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("validate")
            .into_inner();
        assert!(reply.valid);
    }
    sessions
        .validate(pb::ValidateRequest {
            access_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .expect("validate");
    let bearer = format!("Bearer {token}");
    allowed_headers(&check(&gateway, check_request(&[("authorization", &bearer)])).await);

    let response = gateway.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let after = response.text().await.expect("text");

    // The recorder is process-wide and tests run in parallel: counters only ever grow, by at
    // least what this test did.
    let grew = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let validate_ok = [
        ("service", "sessiond.v1.SessionService"),
        ("method", "Validate"),
        ("code", "OK"),
    ];
    assert!(
        grew("sessiond_grpc_requests_total", &validate_ok) >= 4.0,
        "{after}"
    );
    let check_ok = [
        ("service", "envoy.service.auth.v3.Authorization"),
        ("method", "Check"),
        ("code", "OK"),
    ];
    assert!(
        grew("sessiond_grpc_requests_total", &check_ok) >= 1.0,
        "{after}"
    );
    assert!(
        grew(
            "sessiond_grpc_request_duration_seconds_count",
            &[("method", "Validate")]
        ) >= 4.0,
        "{after}"
    );
    assert!(grew("sessiond_validate_total", &[("result", "valid")]) >= 4.0);
    assert!(grew("sessiond_validate_total", &[("result", "malformed")]) >= 1.0);
    let token_hits = [("cache", "tokens"), ("result", "hit")];
    assert!(grew("sessiond_cache_requests_total", &token_hits) >= 1.0);
    let session_lookups = grew("sessiond_cache_requests_total", &[("cache", "sessions")]);
    assert!(session_lookups >= 4.0, "{after}");
    assert!(
        grew(
            "sessiond_store_operation_duration_seconds_count",
            &[("op", "create_session_capped")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("sessiond_revocation_feed_lag_seconds "),
        "{after}"
    );
    // The test process logs through no writer of sessiond's, so none was dropped.
    assert!(
        after.contains("sessiond_log_lines_dropped_total 0\n"),
        "{after}"
    );
    for cache in ["tokens", "sessions", "users"] {
        for gauge in [
            "sessiond_cache_entries",
            "sessiond_cache_bytes",
            "sessiond_cache_capacity_bytes",
        ] {
            assert!(
                after.contains(&format!("{gauge}{{cache=\"{cache}\"}}")),
                "{gauge} of {cache}: {after}"
            );
        }
    }
    assert!(
        after.contains("sessiond_store_errors_total{op=\"get_session\"}"),
        "{after}"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let gateway = Gateway::start().await;
    let response = gateway.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = gateway.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ready");

    // gRPC health knows the Envoy service too (SERVING once the first store ping is back).
    let mut health = tonic_health::pb::health_client::HealthClient::new(gateway.channel.clone());
    let started = Instant::now();
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "envoy.service.auth.v3.Authorization".into(),
            })
            .await
            .map(|r| r.into_inner().status)
            .ok();
        if status == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32) {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "never SERVING: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reflection_describes_the_envoy_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let gateway = Gateway::start().await;
    let mut client = ServerReflectionClient::new(gateway.channel.clone());
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("envoy.service.auth.v3.Authorization".into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection")
        .into_inner();
    let mut names = Vec::new();
    let mut files = Vec::new();
    while let Some(reply) = replies.message().await.expect("reply") {
        match reply.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                names.extend(list.service.into_iter().map(|s| s.name));
            }
            Some(MessageResponse::FileDescriptorResponse(fd)) => {
                files.extend(fd.file_descriptor_proto.iter().map(|bytes| {
                    <prost_types::FileDescriptorProto as prost::Message>::decode(bytes.as_slice())
                        .expect("a file descriptor")
                }));
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(
        names
            .iter()
            .any(|n| n == "envoy.service.auth.v3.Authorization"),
        "{names:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.name() == "envoy/service/auth/v3/external_auth.proto"),
        "{:?}",
        files.iter().map(|f| f.name()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn http_refuses_a_non_loopback_address_without_callers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    // Bound only to be refused: nothing is ever sent to it.
    let http = TcpListener::bind("0.0.0.0:0").await.expect("bind http");
    let result = sessiond::serve_with_http(
        Config::new(dir.path()),
        grpc,
        Some(http),
        std::future::pending(),
    )
    .await;
    match result {
        Err(ServeError::Refused(message)) => assert!(message.contains("refusing"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn shutdown_stops_both_surfaces_and_releases_the_store() {
    let gateway = Gateway::start().await;
    let token = access_token(&gateway.issue("user-1", "", None).await);
    let http_url = gateway.url("/healthz");
    // Keep a pooled keep-alive connection open across the shutdown.
    let web = gateway.web.clone();
    assert_eq!(
        web.get(&http_url).send().await.expect("GET").status(),
        StatusCode::OK
    );

    let dir = gateway.stop().await;
    assert!(
        reqwest::Client::new().get(&http_url).send().await.is_err(),
        "the HTTP listener is closed"
    );

    // The store was closed: the same directory opens again, with the session in it.
    let config = Config::new(dir.path());
    let gateway = Gateway::start_in(dir, config, None).await;
    let body: serde_json::Value = gateway
        .introspect(&token, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["active"], true);
    gateway.stop().await;
}

/// The audit events of `user`, newest first (one page).
async fn audit_of(gateway: &Gateway, user: &str) -> Vec<pb::AuditEvent> {
    gateway
        .sessions()
        .admin_list_audit_events(pb::AdminListAuditEventsRequest {
            user_id: user.into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events
}

fn refresh_token(issued: &pb::IssueResponse) -> String {
    issued
        .tokens
        .as_ref()
        .expect("tokens")
        .refresh_token
        .clone()
}

/// `(valid, reason)` of `Validate` for `token`.
async fn validate(gateway: &Gateway, token: &str) -> (bool, pb::InvalidReason) {
    let reply = gateway
        .sessions()
        .validate(pb::ValidateRequest {
            access_token: token.into(),
            ..Default::default()
        })
        .await
        .expect("validate")
        .into_inner();
    (reply.valid, reply.reason())
}

/// The value of header `name` of `response`, "" when absent.
fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The claims of a JWT, decoded without verification (the server verified it).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json claims")
}

/// A token as the version before RFC 9068 signed it (`typ` `JWT`, no `aud`, `jti` or
/// `client_id`), for the session `issued`, under the server's own generated key, plus
/// `extra` claims.
fn legacy_token(gateway: &Gateway, issued: &pb::IssueResponse, extra: serde_json::Value) -> String {
    let current = jsonwebtoken::decode_header(access_token(issued)).expect("header");
    assert_eq!(current.alg, jsonwebtoken::Algorithm::EdDSA);
    let pem = std::fs::read(gateway.path().join("keys/signing-ed25519.pem")).expect("key file");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("an Ed25519 key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = current.kid;
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let session = issued.session.as_ref().expect("session");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let mut claims = serde_json::json!({
        "sub": session.user_id,
        "sid": session.session_id,
        "tid": session.tenant_id,
        "iat": now.as_secs(),
        "exp": now.as_secs() + 600,
        "iss": "sessiond",
        "iat_us": now.as_micros() as i64,
    });
    for (k, v) in extra.as_object().expect("an object") {
        claims[k] = v.clone();
    }
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test]
async fn auth_check_answers_identity_headers_for_a_valid_bearer_token() {
    let gateway = Gateway::start().await;
    let issued = gateway.issue("user-1", "tenant-1", None).await;
    let bearer = format!("Bearer {}", access_token(&issued));

    let response = gateway
        .auth_check(&[
            ("authorization", &bearer),
            // What a client sends under the identity names is never echoed back.
            ("x-user-id", "admin"),
            ("x-session-id", "forged"),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-session-id"), session_id(&issued));
    assert_eq!(header(&response, "x-user-id"), "user-1");
    assert_eq!(header(&response, "x-tenant-id"), "tenant-1");
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert!(!response.headers().contains_key("x-session-invalid-reason"));

    // No tenant: the header is there, empty, so a gateway overwrites a forged one.
    let untenanted = gateway.issue("user-2", "", None).await;
    let response = gateway
        .auth_check(&[(
            "authorization",
            &format!("bearer {}", access_token(&untenanted)),
        )])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-id"), "user-2");
    assert!(response.headers().contains_key("x-tenant-id"));
    assert_eq!(header(&response, "x-tenant-id"), "");

    // Any method and any path below /auth/check/ (Envoy's HTTP ext_authz appends the path).
    let response = gateway
        .web
        .post(gateway.url("/auth/check/api/orders?id=1"))
        .header("authorization", &bearer)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-id"), "user-1");
}

#[tokio::test]
async fn auth_check_refuses_missing_unusable_revoked_and_expired_tokens() {
    let clock = ManualClock::starting_now();
    let gateway = Gateway::start_with(|c| c.clock = clock.shared()).await;
    let issued = gateway.issue("user-1", "", None).await;
    let token = access_token(&issued);
    let forged = format!("Bearer {}", forge(&token));

    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "INVALID_REASON_MALFORMED"),
        (&[("authorization", "Bearer")], "INVALID_REASON_MALFORMED"),
        (
            &[("authorization", "Bearer a.b.c")],
            "INVALID_REASON_MALFORMED",
        ),
        (
            &[("authorization", &forged)],
            "INVALID_REASON_BAD_SIGNATURE",
        ),
        // The cookie is off by default: a token there is no token.
        (
            &[("cookie", &format!("session={token}"))],
            "INVALID_REASON_MALFORMED",
        ),
    ];
    for (headers, reason) in cases {
        let response = gateway.auth_check(headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(
            header(&response, "www-authenticate"),
            "Bearer error=\"invalid_token\"",
            "{headers:?}"
        );
        assert_eq!(header(&response, "x-session-invalid-reason"), reason);
        assert!(!response.headers().contains_key("x-user-id"), "{headers:?}");
    }

    gateway
        .sessions()
        .revoke(pb::RevokeRequest {
            access_token: token.clone(),
            session_id: session_id(&issued),
        })
        .await
        .expect("revoke");
    let response = gateway
        .auth_check(&[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "x-session-invalid-reason"),
        "INVALID_REASON_REVOKED"
    );

    let short = gateway
        .issue("user-1", "", Some(Duration::from_secs(1)))
        .await;
    let bearer = format!("Bearer {}", access_token(&short));
    let response = gateway.auth_check(&[("authorization", &bearer)]).await;
    assert_eq!(response.status(), StatusCode::OK, "valid until it expires");
    clock.advance(Duration::from_secs(1));
    let response = gateway.auth_check(&[("authorization", &bearer)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "x-session-invalid-reason"),
        "INVALID_REASON_EXPIRED"
    );
}

#[tokio::test]
async fn auth_check_reads_the_configured_cookie() {
    let gateway = Gateway::start_with(|c| c.auth_cookie = Some("__Host-session".into())).await;
    let issued = gateway.issue("user-1", "tenant-1", None).await;
    let token = access_token(&issued);

    let cookie = format!("theme=dark; __Host-session={token}; other=1");
    let response = gateway.auth_check(&[("cookie", &cookie)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-id"), "user-1");
    assert_eq!(header(&response, "x-session-id"), session_id(&issued));

    // Another cookie's value is not read, a forged token in the cookie is refused, and a
    // bearer header wins over the cookie.
    let response = gateway
        .auth_check(&[("cookie", &format!("session={token}"))])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let forged = format!("__Host-session={}", forge(&token));
    let response = gateway.auth_check(&[("cookie", &forged)]).await;
    assert_eq!(
        header(&response, "x-session-invalid-reason"),
        "INVALID_REASON_BAD_SIGNATURE"
    );
    let response = gateway
        .auth_check(&[("cookie", &cookie), ("authorization", "Bearer garbage")])
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "x-session-invalid-reason"),
        "INVALID_REASON_MALFORMED"
    );
}

#[tokio::test]
async fn auth_check_authenticates_the_gateway_by_its_own_header() {
    let gateway = Gateway::start_with_callers().await;
    let issued = gateway.issue("user-1", "", None).await;
    let bearer = format!("Bearer {}", access_token(&issued));

    // No gateway credential, an unknown one, or the credential where the user's token goes.
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![
            ("authorization", bearer.as_str()),
            ("x-sessiond-credential", "not-a-known-credential"),
        ],
        vec![("authorization", "Bearer gateway-secret-credential")],
    ] {
        let response = gateway.auth_check(&headers).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(!response.headers().contains_key("x-user-id"));
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_client", "{headers:?}");
    }
    // Known, without the validator role.
    let response = gateway
        .auth_check(&[
            ("authorization", &bearer),
            ("x-sessiond-credential", LOGIN_SECRET),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = gateway
        .auth_check(&[
            ("authorization", &bearer),
            ("x-sessiond-credential", GATEWAY_SECRET),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-id"), "user-1");
}

#[tokio::test]
async fn oauth2_revoke_ends_the_session_behind_an_access_or_a_refresh_token() {
    let gateway = Gateway::start().await;

    // By access token, with the hint that says so.
    let by_access = gateway.issue("user-1", "", None).await;
    let token = access_token(&by_access);
    assert_eq!(
        validate(&gateway, &token).await,
        (true, pb::InvalidReason::Unspecified)
    );
    let response = gateway
        .revoke_token(&token, Some("access_token"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "");
    assert_eq!(
        validate(&gateway, &token).await,
        (false, pb::InvalidReason::Revoked)
    );
    // Again: still 200, nothing more to do.
    let response = gateway.revoke_token(&token, None, None).await;
    assert_eq!(response.status(), StatusCode::OK);

    // By refresh token, with a hint that is wrong (the other kind is tried too).
    let by_refresh = gateway.issue("user-1", "", None).await;
    let access = access_token(&by_refresh);
    let response = gateway
        .revoke_token(&refresh_token(&by_refresh), Some("access_token"), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        validate(&gateway, &access).await,
        (false, pb::InvalidReason::Revoked)
    );
    let refused = gateway
        .sessions()
        .refresh(pb::RefreshRequest {
            refresh_token: refresh_token(&by_refresh),
            client: None,
        })
        .await
        .expect_err("the refresh token of a revoked session is dead");
    assert_eq!(refused.code(), Code::Unauthenticated);

    // Both are audited as oauth2 revocations.
    let events = audit_of(&gateway, "user-1").await;
    for issued in [&by_access, &by_refresh] {
        let revoked: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "session_revoked" && e.session_id == session_id(issued))
            .collect();
        assert_eq!(revoked.len(), 1, "{events:?}");
        assert_eq!(revoked[0].reason, "oauth2_revoke");
        assert_eq!(revoked[0].actor, "anonymous:user");
    }
}

#[tokio::test]
async fn oauth2_revoke_answers_200_for_unusable_tokens_and_ends_nothing() {
    let clock = ManualClock::starting_now();
    let gateway = Gateway::start_with(|c| {
        c.access_token_ttl = Duration::from_secs(1);
        c.clock = clock.shared();
    })
    .await;
    let issued = gateway.issue("user-1", "", None).await;
    let token = access_token(&issued);
    let refresh = refresh_token(&issued);

    let forged_refresh = {
        // Flip one character in the middle: still base64url, no longer tagged by the server.
        let mut chars: Vec<char> = refresh.chars().collect();
        let middle = chars.len() / 2;
        chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    for unusable in [
        "",
        "garbage",
        "a.b.c",
        forge(&token).as_str(),
        forged_refresh.as_str(),
    ] {
        for hint in [
            None,
            Some("access_token"),
            Some("refresh_token"),
            Some("id_token"),
        ] {
            let response = gateway.revoke_token(unusable, hint, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{unusable:?} {hint:?}");
            assert_eq!(response.text().await.expect("body"), "");
        }
    }

    // An expired access token ends nothing either: its authority ended with it.
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        validate(&gateway, &token).await,
        (false, pb::InvalidReason::Expired)
    );
    let response = gateway.revoke_token(&token, None, None).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The session stands: its refresh token still refreshes, and the new token is valid.
    let refreshed = gateway
        .sessions()
        .refresh(pb::RefreshRequest {
            refresh_token: refresh,
            client: None,
        })
        .await
        .expect("the session was not revoked")
        .into_inner();
    let fresh = refreshed.tokens.expect("tokens").access_token;
    assert!(validate(&gateway, &fresh).await.0);
}

/// An RFC 7009 revocation the store cannot take is still honoured by the replica asked: the
/// session's cached state goes, so the replica answers from the store again (and, the store
/// failing, refuses) instead of `valid=true` from its cache; with the store back, the store's
/// word stands, since nothing was recorded.
#[tokio::test]
async fn oauth2_revoke_the_store_cannot_take_drops_the_cached_session() {
    use sessiond::hooks::{Fault, Hooks, Op};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let reads_fail = Arc::new(AtomicBool::new(false));
    let failing = reads_fail.clone();
    let gateway = Gateway::start_with(move |c| {
        c.hooks = Hooks::default().fail_store(move |op| {
            let read = matches!(op, Op::GetSession | Op::SessionAndMarks);
            (read && failing.load(Ordering::SeqCst)).then_some(Fault::FailBefore)
        });
    })
    .await;
    let by_access = gateway.issue("user-1", "", None).await;
    let by_refresh = gateway.issue("user-1", "", None).await;
    for issued in [&by_access, &by_refresh] {
        assert!(validate(&gateway, &access_token(issued)).await.0);
    }

    reads_fail.store(true, Ordering::SeqCst);
    for (issued, token, hint) in [
        (&by_access, access_token(&by_access), "access_token"),
        (&by_refresh, refresh_token(&by_refresh), "refresh_token"),
    ] {
        let access = access_token(issued);
        // Cached: answered without the store.
        assert!(validate(&gateway, &access).await.0, "{hint}: cached before");
        let response = gateway.revoke_token(&token, Some(hint), None).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{hint}");
        let after = gateway
            .sessions()
            .validate(pb::ValidateRequest {
                access_token: access.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().valid);
        assert_eq!(
            after.map_err(|s| s.code()),
            Err(Code::Unavailable),
            "{hint}: the cached session must be gone, so Validate needs the store"
        );
    }

    reads_fail.store(false, Ordering::SeqCst);
    for issued in [&by_access, &by_refresh] {
        assert!(validate(&gateway, &access_token(issued)).await.0);
    }
}

#[tokio::test]
async fn oauth2_revoke_refuses_bad_requests_and_unauthenticated_callers() {
    let gateway = Gateway::start_with_callers().await;
    let issued = gateway.issue("user-1", "", None).await;
    let token = access_token(&issued);
    let url = gateway.url("/oauth2/revoke");

    let response = gateway
        .web
        .post(&url)
        .bearer_auth(GATEWAY_SECRET)
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");

    let response = gateway
        .web
        .post(&url)
        .bearer_auth(GATEWAY_SECRET)
        .header("content-type", "application/json")
        .body(format!(r#"{{"token":"{token}"}}"#))
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    for credential in [None, Some("not-a-known-credential")] {
        let response = gateway.revoke_token(&token, None, credential).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{credential:?}"
        );
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_client");
    }
    let response = gateway.revoke_token(&token, None, Some(LOGIN_SECRET)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // None of the refused requests ended the session.
    assert!(validate(&gateway, &token).await.0);

    let response = gateway
        .revoke_token(&token, None, Some(GATEWAY_SECRET))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        validate(&gateway, &token).await,
        (false, pb::InvalidReason::Revoked)
    );
    let events = audit_of(&gateway, "user-1").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason == "oauth2_revoke" && e.actor == "gateway:user"),
        "{events:?}"
    );
}

#[tokio::test]
async fn access_tokens_carry_rfc_9068_claims() {
    let gateway = Gateway::start_with_callers().await;
    let issued = gateway.issue("user-1", "tenant-1", None).await;
    let token = access_token(&issued);

    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let claims = claims_of(&token);
    assert_eq!(claims["aud"], "sessiond");
    // The caller that obtained it.
    assert_eq!(claims["client_id"], "gateway");
    let jti = claims["jti"].as_str().expect("jti").to_owned();
    assert!(uuid::Uuid::parse_str(&jti).is_ok(), "{jti}");

    // Every token has its own jti, a refreshed one included.
    let refreshed = gateway
        .sessions()
        .refresh(pb::RefreshRequest {
            refresh_token: refresh_token(&issued),
            client: None,
        })
        .await
        .expect("refresh")
        .into_inner();
    let next = refreshed.tokens.expect("tokens").access_token;
    let next_claims = claims_of(&next);
    assert_ne!(next_claims["jti"], claims["jti"]);
    assert_eq!(next_claims["client_id"], "gateway");
    let other = access_token(&gateway.issue("user-1", "tenant-1", None).await);
    assert_ne!(claims_of(&other)["jti"], claims["jti"]);

    // Introspection answers them.
    let body: serde_json::Value = gateway
        .introspect(&token, Some(GATEWAY_SECRET))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "gateway");
    assert_eq!(body["aud"], "sessiond");
    assert_eq!(body["jti"], jti.as_str());
}

#[tokio::test]
async fn the_audience_is_configured_and_checked() {
    let gateway = Gateway::start_with(|c| c.audience = "orders.example.com".into()).await;
    let issued = gateway.issue("user-1", "", None).await;
    let token = access_token(&issued);
    let claims = claims_of(&token);
    assert_eq!(claims["aud"], "orders.example.com");
    assert_eq!(claims["client_id"], "anonymous");
    assert!(validate(&gateway, &token).await.0);

    // A token of this server's key for another audience is not valid here, even legacy-typed.
    let elsewhere = legacy_token(&gateway, &issued, serde_json::json!({ "aud": "sessiond" }));
    assert_eq!(
        validate(&gateway, &elsewhere).await,
        (false, pb::InvalidReason::Malformed)
    );
    let matching = legacy_token(
        &gateway,
        &issued,
        serde_json::json!({ "aud": "orders.example.com" }),
    );
    assert!(validate(&gateway, &matching).await.0);
}

#[tokio::test]
async fn tokens_of_the_earlier_jwt_type_still_validate() {
    let gateway = Gateway::start().await;
    let issued = gateway.issue("user-1", "tenant-1", None).await;
    let legacy = legacy_token(&gateway, &issued, serde_json::json!({}));
    assert_eq!(
        jsonwebtoken::decode_header(&legacy)
            .expect("header")
            .typ
            .as_deref(),
        Some("JWT")
    );

    assert_eq!(
        validate(&gateway, &legacy).await,
        (true, pb::InvalidReason::Unspecified)
    );
    let response = gateway
        .auth_check(&[("authorization", &format!("Bearer {legacy}"))])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-user-id"), "user-1");
    assert_eq!(header(&response, "x-tenant-id"), "tenant-1");
    // Introspection: active, without the claims the token does not have.
    let body: serde_json::Value = gateway
        .introspect(&legacy, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "user-1");
    for absent in ["client_id", "aud", "jti"] {
        assert!(body.get(absent).is_none(), "{body}");
    }

    // Any other type is refused, even under the right key.
    let pem = std::fs::read(gateway.path().join("keys/signing-ed25519.pem")).expect("key file");
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("an Ed25519 key");
    let mut header = jsonwebtoken::decode_header(&legacy).expect("header");
    header.typ = Some("id_token+jwt".into());
    let claims = claims_of(&legacy);
    let other_type = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
    assert_eq!(
        validate(&gateway, &other_type).await,
        (false, pb::InvalidReason::Malformed)
    );

    // A legacy token revokes its session like any other, and then no longer validates.
    let response = gateway.revoke_token(&legacy, None, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        validate(&gateway, &legacy).await,
        (false, pb::InvalidReason::Revoked)
    );
    assert_eq!(
        validate(&gateway, &access_token(&issued)).await,
        (false, pb::InvalidReason::Revoked)
    );
}
