//! The shared harness of the black-box suites: a real server on `127.0.0.1:0` over a real
//! embedded store in a tempdir, reached through the generated client.
//!
//! The listener is bound before `serve` is spawned, so a client can connect at once: no sleep
//! is ever needed to wait for the server. Every wait elsewhere is a poll with a deadline, and
//! a test of lifetimes (expiry, "not before") runs the server on a [`ManualClock`] it moves
//! itself ([`TestServer::start_on_manual_clock`]) instead of waiting for time to pass.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sessiond::auth::{CallerSpec, Role, hash_credential};
use sessiond::model::{Clock, ManualClock, Timestamp};
use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::{Config, ServeError};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

/// The generated client over a plain channel.
pub type Client = SessionServiceClient<Channel>;

/// How long any poll in the suite may wait before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A Chrome-on-macOS user agent, as a browser sends it.
pub const CHROME_ON_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) \
    AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// One running sessiond (a [`Spawned`] server) and a client connected to it.
pub struct TestServer {
    server: Spawned,
    /// Where the server listens.
    pub addr: SocketAddr,
    /// A connected client.
    pub client: Client,
    /// The clock the server runs on, when the test holds it.
    clock: Option<ManualClock>,
}

/// The defaults of `Config::new` on `dir`, on the backend `SESSIOND_TEST_BACKEND` names:
/// `embedded` (the default) or `cql`, which puts each server in a fresh keyspace on the node
/// `SESSIOND_TEST_CQL` names, so the same suite runs on both backends.
pub fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    match std::env::var("SESSIOND_TEST_BACKEND").as_deref() {
        Err(_) | Ok("") | Ok("embedded") => {}
        Ok("cql") => {
            let addr = std::env::var("SESSIOND_TEST_CQL")
                .expect("SESSIOND_TEST_BACKEND=cql needs SESSIOND_TEST_CQL=host:port");
            let keyspace = format!("sessiond_bb_{}", uuid::Uuid::new_v4().simple());
            config.store = format!("scylla://{addr}/{keyspace}?rf=1")
                .parse()
                .expect("store uri");
            config.migrate = true;
        }
        Ok(other) => panic!("SESSIOND_TEST_BACKEND={other:?}: expected embedded or cql"),
    }
    config
}

impl TestServer {
    /// A server with the default configuration on a fresh tempdir.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server on a fresh tempdir, with `tweak` applied to the default configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path());
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    /// A server on `dir` (possibly used before) with `config`.
    pub async fn start_in(dir: TempDir, config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        // Bound before spawning: the client can connect immediately.
        let server = Spawned::spawn(dir, config, listener);
        let client = connect(addr).await;
        Self {
            server,
            addr,
            client,
            clock: None,
        }
    }

    /// A server on a fresh tempdir whose clock moves only when the test says so
    /// ([`advance`](Self::advance), [`clock`](Self::clock)); it starts at the wall clock's
    /// instant. Domain and store both read it, so a test decides expiry and "not before" at the
    /// microsecond it chooses.
    pub async fn start_on_manual_clock(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(&ManualClock::starting_now(), tweak).await
    }

    /// A server on a fresh tempdir running on `clock` (which other servers of the test may
    /// share), with `tweak` applied to the default configuration.
    pub async fn start_on(clock: &ManualClock, tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = config(dir.path());
        config.clock = clock.shared();
        tweak(&mut config);
        let mut server = Self::start_in(dir, config).await;
        server.clock = Some(clock.clone());
        server
    }

    /// Replicas A and B of one fresh keyspace on the CQL node `SESSIOND_TEST_CQL` names,
    /// sharing keys and `clock`, each with `tweak` applied; the returned directory holds the
    /// keys and must outlive both.
    pub async fn cql_replicas_on(
        clock: &ManualClock,
        tweak: impl Fn(&mut Config),
    ) -> (Self, Self, TempDir) {
        let node = std::env::var("SESSIOND_TEST_CQL")
            .ok()
            .filter(|a| !a.is_empty())
            .expect("SESSIOND_TEST_CQL must name a CQL node (scripts/test starts one)");
        let keys = tempfile::tempdir().expect("key dir");
        let keyspace = format!("sessiond_pair_{}", uuid::Uuid::new_v4().simple());
        let uri = format!("scylla://{node}/{keyspace}?rf=1");
        let setup = |c: &mut Config| {
            c.store = uri.parse().expect("store uri");
            c.migrate = true;
            c.key_dir = keys.path().to_owned();
            tweak(c);
        };
        let a = Self::start_on(clock, setup).await;
        let b = Self::start_on(clock, setup).await;
        (a, b, keys)
    }

    /// The manual clock this server runs on; panics for a server on the system clock.
    pub fn clock(&self) -> &ManualClock {
        self.clock
            .as_ref()
            .expect("a server started with start_on_manual_clock or start_on")
    }

    /// Moves the server's manual clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.clock().advance(by);
    }

    /// The server's current instant, by its manual clock.
    pub fn now(&self) -> Timestamp {
        self.clock().now()
    }

    /// A new channel to this server.
    pub async fn channel(&self) -> Channel {
        channel(self.addr).await
    }

    /// A clone of the client (cheap; shares the channel).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Triggers a clean shutdown, waits for `serve` to return, checks it returned `Ok`, and
    /// hands back the data directory for a restart.
    pub async fn stop(self) -> TempDir {
        self.server.stop().await
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.server.path()
    }

    /// Issues a session for `user` with no client info.
    pub async fn issue(&self, user: &str) -> Issued {
        issue(&mut self.client(), user).await
    }

    /// Validates an access token: `(valid, reason)`.
    pub async fn validate(&self, token: &str) -> (bool, pb::InvalidReason) {
        validate(&mut self.client(), token).await
    }
}

/// A channel to `addr`; the listener is already bound, so the connect cannot race the server.
pub async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
        .expect("connect")
}

/// A session client connected to `addr`.
pub async fn connect(addr: SocketAddr) -> Client {
    SessionServiceClient::new(channel(addr).await)
}

/// What `Issue` handed out, in the shape tests use.
#[derive(Clone, Debug)]
pub struct Issued {
    pub session_id: String,
    pub user_id: String,
    pub access: String,
    pub refresh: String,
    pub session: pb::Session,
}

impl Issued {
    fn from_parts(session: Option<pb::Session>, tokens: Option<pb::TokenPair>) -> Self {
        let session = session.expect("session set");
        let tokens = tokens.expect("tokens set");
        assert!(!tokens.access_token.is_empty(), "empty access token");
        assert!(!tokens.refresh_token.is_empty(), "empty refresh token");
        Self {
            session_id: session.session_id.clone(),
            user_id: session.user_id.clone(),
            access: tokens.access_token,
            refresh: tokens.refresh_token,
            session,
        }
    }
}

impl From<pb::IssueResponse> for Issued {
    fn from(r: pb::IssueResponse) -> Self {
        Self::from_parts(r.session, r.tokens)
    }
}

impl From<pb::RefreshResponse> for Issued {
    fn from(r: pb::RefreshResponse) -> Self {
        Self::from_parts(r.session, r.tokens)
    }
}

impl From<pb::StepUpResponse> for Issued {
    fn from(r: pb::StepUpResponse) -> Self {
        Self::from_parts(r.session, r.tokens)
    }
}

/// An `Issue` request for `user` with nothing else set.
pub fn issue_request(user: &str) -> pb::IssueRequest {
    pb::IssueRequest {
        user_id: user.to_owned(),
        ..Default::default()
    }
}

/// Issues a session for `user`; panics unless OK.
pub async fn issue(client: &mut Client, user: &str) -> Issued {
    client
        .issue(issue_request(user))
        .await
        .unwrap_or_else(|s| panic!("issue for {user} failed: {s:?}"))
        .into_inner()
        .into()
}

/// Refreshes with `refresh_token`.
pub async fn refresh(client: &mut Client, refresh_token: &str) -> Result<Issued, Status> {
    client
        .refresh(pb::RefreshRequest {
            refresh_token: refresh_token.to_owned(),
            client: None,
        })
        .await
        .map(|r| r.into_inner().into())
}

/// One Validate that must answer within `deadline`: `Ok((valid, reason))`, or the status code
/// (`DEADLINE_EXCEEDED` when no answer came in time), for tests where the store may be down.
pub async fn validate_within(
    client: &mut Client,
    token: &str,
    deadline: Duration,
) -> Result<(bool, i32), tonic::Code> {
    let request = pb::ValidateRequest {
        access_token: token.to_owned(),
        ..Default::default()
    };
    match tokio::time::timeout(deadline, client.validate(request)).await {
        Ok(Ok(r)) => Ok((r.get_ref().valid, r.get_ref().reason)),
        Ok(Err(status)) => Err(status.code()),
        Err(_) => Err(tonic::Code::DeadlineExceeded),
    }
}

/// Validates `token`: `(valid, reason)`. Validate never fails for a well-formed request.
pub async fn validate(client: &mut Client, token: &str) -> (bool, pb::InvalidReason) {
    let r = client
        .validate(pb::ValidateRequest {
            access_token: token.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("validate must answer OK, got {s:?}"))
        .into_inner();
    let reason = pb::InvalidReason::try_from(r.reason).expect("a known reason");
    assert_eq!(
        r.session.is_some(),
        r.valid,
        "session is set exactly when valid"
    );
    assert_eq!(
        reason == pb::InvalidReason::Unspecified,
        r.valid,
        "reason is UNSPECIFIED exactly when valid"
    );
    (r.valid, reason)
}

/// Asserts `token` validates.
pub async fn assert_valid(client: &mut Client, token: &str) {
    assert_eq!(
        validate(client, token).await,
        (true, pb::InvalidReason::Unspecified)
    );
}

/// Asserts `token` is invalid for `reason`.
pub async fn assert_invalid(client: &mut Client, token: &str, reason: pb::InvalidReason) {
    assert_eq!(validate(client, token).await, (false, reason));
}

/// The `reason` of the `google.rpc.ErrorInfo` every sessiond error carries; panics when the
/// status has none.
pub fn error_reason(status: &Status) -> String {
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("status without ErrorInfo: {status:?}"));
    assert_eq!(info.domain, "sessiond", "ErrorInfo domain of {status:?}");
    info.reason
}

/// Asserts `result` failed with `code` and an ErrorInfo of `reason`; returns the status.
#[track_caller]
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    let status = match result {
        Ok(v) => panic!("expected {code:?}/{reason}, got OK: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "code of {status:?}");
    assert_eq!(error_reason(&status), reason, "reason of {status:?}");
    status
}

/// The instant of a protobuf timestamp.
pub fn instant(t: &Option<prost_types::Timestamp>) -> Timestamp {
    let t = t.as_ref().expect("timestamp set");
    Timestamp::from_micros(t.seconds * 1_000_000 + i64::from(t.nanos) / 1000)
}

/// The claims of an access token, read without verification.
pub fn access_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("json claims")
}

/// The `exp` of an access token (whole seconds), read without verification: the instant
/// from which the server answers `EXPIRED` for it.
pub fn access_expiry(token: &str) -> Timestamp {
    let exp = access_claims(token)["exp"].as_i64().expect("an exp claim");
    Timestamp::from_micros(exp * 1_000_000)
}

/// Half a second past the whole second after `t`: an instant from which a test can step
/// microseconds forward and stay within one second.
pub fn half_past_next_second(t: Timestamp) -> Timestamp {
    Timestamp::from_micros((t.as_secs() + 1) * 1_000_000 + 500_000)
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn poll_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every session `AdminList` returns under `request`, following page tokens to the end.
pub async fn admin_list_all(
    client: &mut Client,
    request: pb::AdminListRequest,
) -> Vec<pb::Session> {
    let mut request = request;
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let page = client
            .admin_list(request.clone())
            .await
            .expect("admin list")
            .into_inner();
        let page_size = request.page_size;
        assert!(
            page_size == 0 || page.sessions.len() <= page_size as usize,
            "page of {} exceeds page size {page_size}",
            page.sessions.len()
        );
        all.extend(page.sessions);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
    panic!("admin list did not end within 10000 pages");
}

/// Every audit event `AdminListAuditEvents` returns for `user` (empty: all) with `page_size`.
pub async fn audit_all(client: &mut Client, user: &str, page_size: u32) -> Vec<pb::AuditEvent> {
    let mut request = pb::AdminListAuditEventsRequest {
        user_id: user.to_owned(),
        page_size,
        page_token: String::new(),
    };
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let page = client
            .admin_list_audit_events(request.clone())
            .await
            .expect("audit list")
            .into_inner();
        assert!(page.events.len() <= page_size.max(1) as usize || page_size == 0);
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
    panic!("audit list did not end within 10000 pages");
}

// ---------------------------------------------------------------------------------------------
// Callers: credentials, and servers that are not reached through `TestServer`'s plain client.

/// Sends an `authorization` header with every call, when it has one.
#[derive(Clone)]
pub struct Authorization(Option<MetadataValue<Ascii>>);

impl Authorization {
    /// `authorization: Bearer <credential>`, or no header at all for `None`.
    pub fn bearer(credential: Option<&str>) -> Self {
        Self(credential.map(|c| format!("Bearer {c}").parse().expect("ascii credential")))
    }

    /// The header exactly as given (e.g. a malformed one).
    pub fn raw(value: &str) -> Self {
        Self(Some(value.parse().expect("ascii header value")))
    }
}

impl Interceptor for Authorization {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// The generated client, sending a caller's `authorization` header.
pub type CallerClient = SessionServiceClient<InterceptedService<Channel, Authorization>>;

/// A session client on `channel` that authenticates with `credential` (none for `None`).
pub fn client_as(channel: Channel, credential: Option<&str>) -> CallerClient {
    SessionServiceClient::with_interceptor(channel, Authorization::bearer(credential))
}

/// A caller named `name` with `roles` and a fresh credential, as `sessiond credential` makes
/// them: the spec to configure and the credential to present.
pub fn new_caller(name: &str, roles: &[Role]) -> (CallerSpec, String) {
    let (credential, _) = sessiond::config::new_credential();
    let spec = CallerSpec {
        name: name.to_owned(),
        credential_sha256: Some(hash_credential(&credential)),
        client_cert_subject: None,
        roles: roles.to_vec(),
        rate_limit: None,
    };
    (spec, credential)
}

/// A sessiond serving on listeners the test bound itself, with no client attached: the one
/// spawned-server helper every suite builds on (for TLS, a listener on another address than
/// `127.0.0.1`, or the HTTP surface beside gRPC). Dropped without `stop`, it still shuts the
/// server down.
pub struct Spawned {
    dir: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    exit: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Spawned {
    /// Spawns `serve(config, listener)`; the listener is bound, so clients may connect at once.
    pub fn spawn(dir: TempDir, config: Config, listener: TcpListener) -> Self {
        Self::spawn_serving(dir, config, listener, None)
    }

    /// Spawns `serve_with_http(config, grpc, http)`: gRPC and the HTTP surface, both bound.
    pub fn spawn_with_http(
        dir: TempDir,
        config: Config,
        grpc: TcpListener,
        http: TcpListener,
    ) -> Self {
        Self::spawn_serving(dir, config, grpc, Some(http))
    }

    fn spawn_serving(
        dir: TempDir,
        config: Config,
        listener: TcpListener,
        http: Option<TcpListener>,
    ) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let exit = tokio::spawn(async move {
            let result = sessiond::serve_with_http(config, listener, http, shutdown).await;
            if let Err(error) = &result {
                eprintln!("sessiond::serve failed: {error}");
            }
            result
        });
        Self {
            dir: Some(dir),
            shutdown: Some(tx),
            exit: Some(exit),
        }
    }

    /// Triggers a clean shutdown and checks that `serve` returned `Ok`.
    pub async fn stop(mut self) -> TempDir {
        self.shutdown.take().expect("not stopped yet").send(()).ok();
        let exit = self.exit.take().expect("not stopped yet");
        tokio::time::timeout(DEADLINE, exit)
            .await
            .expect("serve did not return within the deadline")
            .expect("serve task panicked")
            .expect("serve returned an error");
        self.dir.take().expect("dir is kept until stop")
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("dir is kept until stop").path()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
