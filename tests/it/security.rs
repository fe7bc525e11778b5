//! The promises of README "Security" and "Limits", through the public surface: every RPC
//! admits exactly its role, mTLS subjects map to callers, an open server refuses a
//! non-loopback listener, every bound holds at its edge, overload is refused rather than
//! queued, audit events name the acting caller and never hold a secret, and no string posing
//! as a token is ever taken for one.
//!
//! Each test runs a real server on a bound listener over a real embedded store in a tempdir
//! and talks to it through the generated clients. Waits are polls with a deadline.

use crate::support;

use std::collections::HashMap;
use std::future::pending;
use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use pki::{Ca, Leaf};
use prost::Message;
use rcgen::DnType;
use sessiond::auth::{CallerSpec, Role};
use sessiond::config::TlsFiles;
use sessiond::pb;
use sessiond::pb::InvalidReason;
use sessiond::pb::session_service_client::SessionServiceClient;
use support::*;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_types::StatusExt;

/// The `ErrorInfo` reasons of the authentication layer.
const AUTH_REASONS: [&str; 5] = [
    "CREDENTIAL_MISSING",
    "CREDENTIAL_UNKNOWN",
    "CREDENTIAL_MALFORMED",
    "CERTIFICATE_UNKNOWN",
    "PERMISSION_DENIED",
];

/// `(code, ErrorInfo reason)` of a failed call; panics on OK.
#[track_caller]
fn code_and_reason<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) -> (Code, String) {
    match result {
        Ok(v) => panic!("{what}: expected an error, got OK: {v:?}"),
        Err(status) => (status.code(), error_reason(&status)),
    }
}

/// The `field` that an `INVALID_ARGUMENT` names, in its `ErrorInfo` metadata.
fn error_field(status: &Status) -> String {
    let info = status.get_details_error_info().expect("ErrorInfo");
    info.metadata.get("field").cloned().unwrap_or_default()
}

/// Issues a session for `user` as `client`; panics unless OK.
async fn issue_as(client: &mut CallerClient, user: &str) -> Issued {
    client
        .issue(issue_request(user))
        .await
        .unwrap_or_else(|s| panic!("issue for {user} failed: {s:?}"))
        .into_inner()
        .into()
}

/// `(valid, reason)` of `token`, as `client` sees it.
async fn validate_as(client: &mut CallerClient, token: &str) -> (bool, InvalidReason) {
    let r = client
        .validate(pb::ValidateRequest {
            access_token: token.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("validate must answer OK, got {s:?}"))
        .into_inner();
    (
        r.valid,
        InvalidReason::try_from(r.reason).expect("a known reason"),
    )
}

/// Every audit event, newest first, read as `client` (an admin).
async fn audit_as(client: &mut CallerClient) -> Vec<pb::AuditEvent> {
    let mut request = pb::AdminListAuditEventsRequest {
        page_size: 1000,
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = client
            .admin_list_audit_events(request.clone())
            .await
            .expect("audit list")
            .into_inner();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

/// The three callers of README "Security", one role each, and their credentials.
struct Callers {
    specs: Vec<CallerSpec>,
    login: String,
    gateway: String,
    ops: String,
}

fn three_callers() -> Callers {
    let (login_spec, login) = new_caller("login", &[Role::Issuer]);
    let (gateway_spec, gateway) = new_caller("gateway", &[Role::Validator]);
    let (ops_spec, ops) = new_caller("ops", &[Role::Admin]);
    Callers {
        specs: vec![login_spec, gateway_spec, ops_spec],
        login,
        gateway,
        ops,
    }
}

impl Callers {
    fn credential(&self, role: Role) -> &str {
        match role {
            Role::Issuer => &self.login,
            Role::Validator => &self.gateway,
            Role::Admin => &self.ops,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Role boundaries.

/// Every RPC of `sessiond.v1.SessionService`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    Issue,
    Refresh,
    Validate,
    List,
    Revoke,
    RevokeAll,
    AdminList,
    AdminRevokeUser,
    AdminRevokeSession,
    AdminRevokeAllSessions,
    AdminListAuditEvents,
    StepUp,
}

const EVERY_RPC: [Rpc; 12] = [
    Rpc::Issue,
    Rpc::Refresh,
    Rpc::Validate,
    Rpc::List,
    Rpc::Revoke,
    Rpc::RevokeAll,
    Rpc::AdminList,
    Rpc::AdminRevokeUser,
    Rpc::AdminRevokeSession,
    Rpc::AdminRevokeAllSessions,
    Rpc::AdminListAuditEvents,
    Rpc::StepUp,
];

impl Rpc {
    /// The method name in the proto.
    fn name(self) -> &'static str {
        match self {
            Rpc::Issue => "Issue",
            Rpc::Refresh => "Refresh",
            Rpc::Validate => "Validate",
            Rpc::List => "List",
            Rpc::Revoke => "Revoke",
            Rpc::RevokeAll => "RevokeAll",
            Rpc::AdminList => "AdminList",
            Rpc::AdminRevokeUser => "AdminRevokeUser",
            Rpc::AdminRevokeSession => "AdminRevokeSession",
            Rpc::AdminRevokeAllSessions => "AdminRevokeAllSessions",
            Rpc::AdminListAuditEvents => "AdminListAuditEvents",
            Rpc::StepUp => "StepUp",
        }
    }

    /// The role README "Security" says it needs.
    fn role(self) -> Role {
        match self {
            Rpc::Issue | Rpc::Refresh | Rpc::StepUp => Role::Issuer,
            Rpc::Validate | Rpc::List | Rpc::Revoke | Rpc::RevokeAll => Role::Validator,
            Rpc::AdminList
            | Rpc::AdminRevokeUser
            | Rpc::AdminRevokeSession
            | Rpc::AdminRevokeAllSessions
            | Rpc::AdminListAuditEvents => Role::Admin,
        }
    }

    /// Calls the RPC with a request that succeeds for a caller with its role, about the
    /// session `fx` (which it may end).
    async fn call(self, client: &mut CallerClient, fx: &Issued) -> Result<(), Status> {
        match self {
            Rpc::Issue => client.issue(issue_request("newcomer")).await.map(drop),
            Rpc::Refresh => client
                .refresh(pb::RefreshRequest {
                    refresh_token: fx.refresh.clone(),
                    client: None,
                })
                .await
                .map(drop),
            Rpc::Validate => {
                let r = client
                    .validate(pb::ValidateRequest {
                        access_token: fx.access.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                assert!(r.valid, "the fixture is valid: {r:?}");
                Ok(())
            }
            Rpc::List => client
                .list(pb::ListRequest {
                    access_token: fx.access.clone(),
                })
                .await
                .map(drop),
            Rpc::Revoke => client
                .revoke(pb::RevokeRequest {
                    access_token: fx.access.clone(),
                    session_id: fx.session_id.clone(),
                })
                .await
                .map(drop),
            Rpc::RevokeAll => client
                .revoke_all(pb::RevokeAllRequest {
                    access_token: fx.access.clone(),
                    include_current: true,
                })
                .await
                .map(drop),
            Rpc::AdminList => client
                .admin_list(pb::AdminListRequest::default())
                .await
                .map(drop),
            Rpc::AdminRevokeUser => client
                .admin_revoke_user(pb::AdminRevokeUserRequest {
                    user_id: fx.user_id.clone(),
                    tenant_id: String::new(),
                    reason: "role test".into(),
                })
                .await
                .map(drop),
            Rpc::AdminRevokeSession => client
                .admin_revoke_session(pb::AdminRevokeSessionRequest {
                    session_id: fx.session_id.clone(),
                    reason: "role test".into(),
                })
                .await
                .map(drop),
            Rpc::AdminRevokeAllSessions => client
                .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
                    reason: "role test".into(),
                    confirm: true,
                })
                .await
                .map(drop),
            Rpc::AdminListAuditEvents => client
                .admin_list_audit_events(pb::AdminListAuditEventsRequest::default())
                .await
                .map(drop),
            Rpc::StepUp => client
                .step_up(pb::StepUpRequest {
                    access_token: fx.access.clone(),
                    acr: "urn:example:mfa".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
        }
    }

    /// Calls the RPC with an all-default request (which most RPCs refuse for its content).
    async fn call_empty(self, client: &mut CallerClient) -> Result<(), Status> {
        match self {
            Rpc::Issue => client.issue(pb::IssueRequest::default()).await.map(drop),
            Rpc::Refresh => client
                .refresh(pb::RefreshRequest::default())
                .await
                .map(drop),
            Rpc::Validate => client
                .validate(pb::ValidateRequest::default())
                .await
                .map(drop),
            Rpc::List => client.list(pb::ListRequest::default()).await.map(drop),
            Rpc::Revoke => client.revoke(pb::RevokeRequest::default()).await.map(drop),
            Rpc::RevokeAll => client
                .revoke_all(pb::RevokeAllRequest::default())
                .await
                .map(drop),
            Rpc::AdminList => client
                .admin_list(pb::AdminListRequest::default())
                .await
                .map(drop),
            Rpc::AdminRevokeUser => client
                .admin_revoke_user(pb::AdminRevokeUserRequest::default())
                .await
                .map(drop),
            Rpc::AdminRevokeSession => client
                .admin_revoke_session(pb::AdminRevokeSessionRequest::default())
                .await
                .map(drop),
            Rpc::AdminRevokeAllSessions => client
                .admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest::default())
                .await
                .map(drop),
            Rpc::AdminListAuditEvents => client
                .admin_list_audit_events(pb::AdminListAuditEventsRequest::default())
                .await
                .map(drop),
            Rpc::StepUp => client.step_up(pb::StepUpRequest::default()).await.map(drop),
        }
    }
}

#[test]
fn the_role_table_covers_every_rpc_of_the_service() {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
    let mut served: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "sessiond.v1")
        .flat_map(|f| f.service.iter())
        .filter(|s| s.name() == "SessionService")
        .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
        .collect();
    let mut tested: Vec<String> = EVERY_RPC.iter().map(|r| r.name().to_owned()).collect();
    served.sort();
    tested.sort();
    assert_eq!(served, tested);
}

#[tokio::test]
async fn every_rpc_admits_exactly_its_role() {
    let callers = three_callers();
    let stored_hash = hex::encode(callers.specs[2].credential_sha256.expect("hash"));
    let server = TestServer::start_with(|c| c.callers = callers.specs.clone()).await;
    let channel = server.channel().await;
    let as_role = |role: Role| client_as(channel.clone(), Some(callers.credential(role)));
    let (unknown, _) = sessiond::config::new_credential();
    let with_header = |value: String| {
        SessionServiceClient::with_interceptor(channel.clone(), Authorization::raw(&value))
    };
    let mut issuer = as_role(Role::Issuer);
    let mut validator = as_role(Role::Validator);
    let mut admin = as_role(Role::Admin);

    for rpc in EVERY_RPC {
        let fx = issue_as(&mut issuer, &format!("user-of-{}", rpc.name())).await;
        let events_before = audit_as(&mut admin).await.len();

        let mut refusals: Vec<(String, CallerClient, Code, &str)> = vec![
            (
                "no credential".into(),
                client_as(channel.clone(), None),
                Code::Unauthenticated,
                "CREDENTIAL_MISSING",
            ),
            (
                "an unknown credential".into(),
                client_as(channel.clone(), Some(&unknown)),
                Code::Unauthenticated,
                "CREDENTIAL_UNKNOWN",
            ),
            (
                "the stored hash instead of the credential".into(),
                client_as(channel.clone(), Some(&stored_hash)),
                Code::Unauthenticated,
                "CREDENTIAL_UNKNOWN",
            ),
            (
                "a credential that is not a bearer one".into(),
                with_header(format!("Basic {}", callers.credential(rpc.role()))),
                Code::Unauthenticated,
                "CREDENTIAL_MALFORMED",
            ),
        ];
        for role in [Role::Issuer, Role::Validator, Role::Admin] {
            if role != rpc.role() {
                refusals.push((
                    format!("a caller with only the {role:?} role"),
                    as_role(role),
                    Code::PermissionDenied,
                    "PERMISSION_DENIED",
                ));
            }
        }
        for (who, mut client, code, reason) in refusals {
            let what = format!("{} by {who}", rpc.name());
            let got = code_and_reason(rpc.call(&mut client, &fx).await, &what);
            assert_eq!(got, (code, reason.to_owned()), "{what}");
        }

        // The refused calls did nothing: the session is intact and nothing was audited.
        assert_eq!(
            validate_as(&mut validator, &fx.access).await,
            (true, InvalidReason::Unspecified),
            "{}: the fixture survived the refused calls",
            rpc.name()
        );
        assert_eq!(
            audit_as(&mut admin).await.len(),
            events_before,
            "{}: refused calls are not audited actions",
            rpc.name()
        );

        // The right role passes; the request itself is fine, so the call succeeds.
        let mut right = as_role(rpc.role());
        if let Err(status) = rpc.call(&mut right, &fx).await {
            panic!("{} by its role failed: {status:?}", rpc.name());
        }
        // An empty request may fail, but for its content, never for the caller.
        if let Err(status) = rpc.call_empty(&mut right).await {
            let reason = error_reason(&status);
            assert!(
                !AUTH_REASONS.contains(&reason.as_str()) && status.code() != Code::PermissionDenied,
                "{} by its role with an empty request: {status:?}",
                rpc.name()
            );
        }
    }
}

#[tokio::test]
async fn a_caller_with_several_roles_may_call_each_of_them() {
    let (spec, credential) = new_caller("console", &[Role::Validator, Role::Admin]);
    let (login_spec, login) = new_caller("login", &[Role::Issuer]);
    let server = TestServer::start_with(|c| c.callers = vec![spec, login_spec]).await;
    let mut console = client_as(server.channel().await, Some(&credential));
    let fx = issue_as(
        &mut client_as(server.channel().await, Some(&login)),
        "alice",
    )
    .await;
    for rpc in EVERY_RPC {
        let result = rpc.call(&mut console, &fx).await;
        match rpc.role() {
            Role::Issuer => assert_eq!(
                code_and_reason(result, rpc.name()),
                (Code::PermissionDenied, "PERMISSION_DENIED".to_owned()),
                "{}",
                rpc.name()
            ),
            _ => {
                // Earlier rows may have ended the fixture; only the caller's admission matters.
                if let Err(status) = result {
                    assert!(
                        !AUTH_REASONS.contains(&error_reason(&status).as_str()),
                        "{}: {status:?}",
                        rpc.name()
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn health_and_reflection_stay_open_while_the_service_is_closed() {
    let callers = three_callers();
    let server = TestServer::start_with(|c| c.callers = callers.specs.clone()).await;
    let channel = server.channel().await;

    // The service itself is closed to a caller without a credential...
    let (code, reason) = code_and_reason(
        server
            .client()
            .validate(pb::ValidateRequest::default())
            .await,
        "validate without a credential",
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unauthenticated, "CREDENTIAL_MISSING")
    );

    // ...health answers without one, and with a credential nobody knows.
    for (label, header) in [
        ("no credential", Authorization::bearer(None)),
        (
            "an unknown credential",
            Authorization::bearer(Some("sdc_nobody")),
        ),
    ] {
        let health = HealthClient::with_interceptor(channel.clone(), header);
        poll_until(&format!("health SERVING with {label}"), DEADLINE, || {
            let mut health = health.clone();
            async move {
                let reply = health
                    .check(HealthCheckRequest {
                        service: "sessiond.v1.SessionService".into(),
                    })
                    .await
                    .unwrap_or_else(|s| panic!("health with {label} refused: {s:?}"))
                    .into_inner();
                (reply.status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
    }

    // ...and so does reflection.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection without a credential")
        .into_inner();
    let mut names = Vec::new();
    while let Some(reply) = replies.message().await.expect("reflection reply") {
        if let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response {
            names.extend(list.service.into_iter().map(|s| s.name));
        }
    }
    assert!(
        names.iter().any(|n| n == "sessiond.v1.SessionService"),
        "{names:?}"
    );
}

/// Calls `AdminList` at a raw HTTP/2 path, bypassing the generated client's fixed paths.
async fn admin_list_at(
    channel: Channel,
    credential: Option<&str>,
    path: &str,
) -> Result<pb::AdminListResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(pb::AdminListRequest::default());
    if let Some(c) = credential {
        let value = format!("Bearer {c}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", value);
    }
    let path: http::uri::PathAndQuery = path.parse().expect("a path");
    let codec = tonic_prost::ProstCodec::<pb::AdminListRequest, pb::AdminListResponse>::default();
    grpc.unary(request, path, codec)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn odd_paths_never_reach_an_rpc_past_the_role_check() {
    let callers = three_callers();
    let server = TestServer::start_with(|c| c.callers = callers.specs.clone()).await;
    let channel = server.channel().await;
    issue_as(
        &mut client_as(channel.clone(), Some(&callers.login)),
        "alice",
    )
    .await;

    // The raw call works at the real path with the admin's credential...
    let listed = admin_list_at(
        channel.clone(),
        Some(&callers.ops),
        "/sessiond.v1.SessionService/AdminList",
    )
    .await
    .expect("admin list at its own path");
    assert_eq!(listed.sessions.len(), 1);

    // ...and no spelling of the path lets a caller without one list sessions.
    for path in [
        "/sessiond.v1.SessionService/AdminList",
        "//sessiond.v1.SessionService/AdminList",
        "/sessiond.v1.SessionService//AdminList",
        "/sessiond.v1.SessionService/AdminList/",
        "/sessiond.v1.SessionService/adminlist",
        "/Sessiond.v1.SessionService/AdminList",
        "/sessiond%2Ev1.SessionService/AdminList",
        "/sessiond.v1.SessionService/Admin%4Cist",
        "/grpc.health.v1.Health/../sessiond.v1.SessionService/AdminList",
        "/grpc.health.v1.Health/%2E%2E/sessiond.v1.SessionService/AdminList",
        "/./sessiond.v1.SessionService/AdminList",
    ] {
        let result = admin_list_at(channel.clone(), None, path).await;
        assert!(
            result.is_err(),
            "{path} answered without a credential: {result:?}"
        );
        // A validator may not reach it either.
        let result = admin_list_at(channel.clone(), Some(&callers.gateway), path).await;
        assert!(result.is_err(), "{path} answered a validator: {result:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. mTLS.

mod pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    /// A certificate authority that signs leaf certificates.
    pub struct Ca {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    /// A leaf certificate and its private key, in PEM.
    pub struct Leaf {
        pub cert: String,
        pub key: String,
    }

    impl Ca {
        pub fn new(name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().expect("key");
            let cert = params.self_signed(&key).expect("self-signed CA");
            Self {
                pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        /// The server's certificate, for `localhost` and `127.0.0.1`.
        pub fn server(&self) -> Leaf {
            self.leaf(
                &[(DnType::CommonName, "sessiond")],
                &["localhost", "127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
            )
        }

        /// A client certificate with the subject `dn`, in this order.
        pub fn client(&self, dn: &[(DnType, &str)]) -> Leaf {
            self.leaf(dn, &[], ExtendedKeyUsagePurpose::ClientAuth)
        }

        fn leaf(
            &self,
            dn: &[(DnType, &str)],
            sans: &[&str],
            usage: ExtendedKeyUsagePurpose,
        ) -> Leaf {
            let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name = DistinguishedName::new();
            for (ty, value) in dn {
                params.distinguished_name.push(ty.clone(), *value);
            }
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            params.use_authority_key_identifier_extension = true;
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &self.issuer).expect("signed leaf");
            Leaf {
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        }
    }
}

/// A TLS channel to `addr` that trusts `ca`, presenting `identity` when given.
async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Leaf>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await
}

/// `rpc` over TLS with `identity`: the RPC's result, or the connection's failure as
/// `UNAVAILABLE` without an `ErrorInfo`.
async fn call_over_tls(
    addr: SocketAddr,
    ca: &str,
    identity: Option<&Leaf>,
    rpc: Rpc,
    fx: &Issued,
) -> Result<(), Status> {
    let channel = tls_channel(addr, ca, identity)
        .await
        .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    rpc.call(&mut client_as(channel, None), fx).await
}

/// A server with TLS and required client certificates, its CA and a session to look at.
struct MtlsServer {
    server: Spawned,
    addr: SocketAddr,
    ca: Ca,
    fx: Issued,
}

async fn start_mtls(callers: Vec<CallerSpec>, login: &str) -> MtlsServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("sessiond test CA");
    let server_leaf = ca.server();
    let pem = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write pem");
        path
    };
    let tls = TlsFiles {
        cert: pem("server.pem", &server_leaf.cert),
        key: pem("server.key", &server_leaf.key),
        client_ca: Some(pem("ca.pem", &ca.pem)),
    };
    let mut config = config(&dir.path().join("data"));
    config.callers = callers;
    config.tls = Some(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = Spawned::spawn(dir, config, listener);
    // The login service holds a certificate too; it issues the session the tests look at.
    let login_leaf = ca.client(&[(DnType::CommonName, login)]);
    let channel = tls_channel(addr, &ca.pem, Some(&login_leaf))
        .await
        .expect("mTLS connect as login");
    let fx = issue_as(&mut client_as(channel, None), "alice").await;
    MtlsServer {
        server,
        addr,
        ca,
        fx,
    }
}

fn cert_caller(name: &str, subject: &str, roles: &[Role]) -> CallerSpec {
    CallerSpec {
        name: name.to_owned(),
        credential_sha256: None,
        client_cert_subject: Some(subject.to_owned()),
        roles: roles.to_vec(),
        rate_limit: None,
    }
}

#[tokio::test]
async fn client_certificates_map_to_callers_by_subject() {
    let callers = vec![
        cert_caller("login", "CN=login", &[Role::Issuer]),
        cert_caller("gateway", "CN=gateway", &[Role::Validator]),
        cert_caller("console", "CN=console, O=Example Corp", &[Role::Admin]),
        // Written without the space after the comma, and with an escaped comma in a value.
        cert_caller("ops", "CN=ops,O=Example", &[Role::Admin]),
        cert_caller("billing", r"CN=billing, O=Example\, Inc.", &[Role::Admin]),
    ];
    let m = start_mtls(callers, "login").await;
    let call = |dn: &[(DnType, &str)], rpc: Rpc| {
        let leaf = m.ca.client(dn);
        let (addr, ca, fx) = (m.addr, m.ca.pem.clone(), m.fx.clone());
        async move { call_over_tls(addr, &ca, Some(&leaf), rpc, &fx).await }
    };

    // CN=gateway is the gateway: it may validate, and nothing more.
    call(&[(DnType::CommonName, "gateway")], Rpc::Validate)
        .await
        .expect("CN=gateway validates");
    assert_eq!(
        code_and_reason(
            call(&[(DnType::CommonName, "gateway")], Rpc::AdminList).await,
            "admin list as CN=gateway"
        ),
        (Code::PermissionDenied, "PERMISSION_DENIED".to_owned())
    );
    // A fuller subject still maps by its CN.
    call(
        &[
            (DnType::CommonName, "gateway"),
            (DnType::OrganizationName, "Example Corp"),
        ],
        Rpc::Validate,
    )
    .await
    .expect("CN=gateway, O=… validates");
    // A caller configured with the whole subject.
    call(
        &[
            (DnType::CommonName, "console"),
            (DnType::OrganizationName, "Example Corp"),
        ],
        Rpc::AdminList,
    )
    .await
    .expect("the console's full subject is an admin");

    for (cn, o) in [("ops", "Example"), ("billing", "Example, Inc.")] {
        call(
            &[(DnType::CommonName, cn), (DnType::OrganizationName, o)],
            Rpc::AdminList,
        )
        .await
        .unwrap_or_else(|s| panic!("CN={cn}, O={o} is an admin: {s:?}"));
    }

    // A certificate of the trusted CA that maps to no caller.
    assert_eq!(
        code_and_reason(
            call(&[(DnType::CommonName, "stranger")], Rpc::Validate).await,
            "validate as CN=stranger"
        ),
        (Code::Unauthenticated, "CERTIFICATE_UNKNOWN".to_owned())
    );
    // The console's CN alone is not its configured subject.
    assert_eq!(
        code_and_reason(
            call(&[(DnType::CommonName, "console")], Rpc::AdminList).await,
            "admin list as CN=console without O"
        ),
        (Code::Unauthenticated, "CERTIFICATE_UNKNOWN".to_owned())
    );
    m.server.stop().await;
}

#[tokio::test]
async fn a_client_without_a_trusted_certificate_gets_no_answer() {
    let callers = vec![
        cert_caller("login", "CN=login", &[Role::Issuer]),
        cert_caller("gateway", "CN=gateway", &[Role::Validator]),
    ];
    let m = start_mtls(callers, "login").await;

    // Health is open to every caller, so only the handshake can refuse these.
    let health = |identity: Option<Leaf>| {
        let (addr, ca) = (m.addr, m.ca.pem.clone());
        async move {
            let channel = tls_channel(addr, &ca, identity.as_ref())
                .await
                .map_err(|e| Status::unavailable(format!("connect: {e}")))?;
            HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .map(|r| r.into_inner())
        }
    };
    let trusted: Result<HealthCheckResponse, Status> =
        health(Some(m.ca.client(&[(DnType::CommonName, "gateway")]))).await;
    trusted.expect("a trusted certificate reaches health");

    let without = health(None).await;
    let forged = health(Some(
        Ca::new("another CA").client(&[(DnType::CommonName, "gateway")]),
    ))
    .await;
    for (label, result) in [("no certificate", without), ("a foreign CA's", forged)] {
        let status = result.expect_err(label);
        assert!(
            status.get_details_error_info().is_none(),
            "{label}: refused by the TLS handshake, not by sessiond: {status:?}"
        );
    }
    // A plaintext client is not served either.
    let plain = Endpoint::from_shared(format!("http://{}", m.addr))
        .expect("endpoint")
        .connect_timeout(DEADLINE)
        .timeout(DEADLINE)
        .connect()
        .await;
    if let Ok(channel) = plain {
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .expect_err("plaintext against a TLS port");
    }
    m.server.stop().await;
}

#[tokio::test]
async fn a_subject_attribute_cannot_smuggle_in_another_callers_cn() {
    let callers = vec![
        cert_caller("login", "CN=login", &[Role::Issuer]),
        cert_caller("gateway", "CN=gateway", &[Role::Validator]),
    ];
    let m = start_mtls(callers, "login").await;
    // The CA signed "intern", whose organisation name happens to contain ", CN=gateway".
    // Its subject renders as "O=Example, CN=gateway, CN=intern": it is not the gateway.
    let intern = m.ca.client(&[
        (DnType::OrganizationName, "Example, CN=gateway"),
        (DnType::CommonName, "intern"),
    ]);
    let result = call_over_tls(m.addr, &m.ca.pem, Some(&intern), Rpc::Validate, &m.fx).await;
    assert_eq!(
        code_and_reason(result, "validate as the intern"),
        (Code::Unauthenticated, "CERTIFICATE_UNKNOWN".to_owned())
    );
    m.server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 3. An open server stays on loopback.

#[tokio::test]
async fn an_open_server_refuses_a_non_loopback_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The unspecified address is not loopback; binding it sends no traffic anywhere.
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let local = listener.local_addr().expect("addr");
    assert!(!local.ip().is_loopback());

    let result = tokio::time::timeout(
        DEADLINE,
        sessiond::serve(config(dir.path()), listener, pending()),
    )
    .await
    .expect("serve returns at once");
    let error = result.expect_err("an open server on 0.0.0.0 is refused");
    assert!(
        matches!(error, sessiond::ServeError::Refused(_)),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("callers"),
        "names what to configure: {message}"
    );
    assert!(
        message.contains(&local.to_string()),
        "names the address: {message}"
    );
    // Refused before anything was created.
    assert!(
        std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
        "the data directory stays empty"
    );
}

#[tokio::test]
async fn with_callers_a_non_loopback_listener_serves_and_authenticates() {
    let callers = three_callers();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.callers = callers.specs.clone();
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert!(!listener.local_addr().expect("addr").ip().is_loopback());
    let server = Spawned::spawn(dir, config, listener);

    let channel = support::channel(SocketAddr::from(([127, 0, 0, 1], port))).await;
    let (code, reason) = code_and_reason(
        client_as(channel.clone(), None)
            .issue(issue_request("alice"))
            .await,
        "issue without a credential",
    );
    assert_eq!(
        (code, reason.as_str()),
        (Code::Unauthenticated, "CREDENTIAL_MISSING")
    );
    let issued = issue_as(
        &mut client_as(channel.clone(), Some(&callers.login)),
        "alice",
    )
    .await;
    assert_eq!(
        validate_as(
            &mut client_as(channel, Some(&callers.gateway)),
            &issued.access
        )
        .await,
        (true, InvalidReason::Unspecified)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Every bound, at its edge.

/// A request that exercises one bound.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a handful of fixtures, built once
enum Probe {
    Issue(pb::IssueRequest),
    RevokeUser(pb::AdminRevokeUserRequest),
    RevokeSession(pb::AdminRevokeSessionRequest),
    RevokeAllSessions(pb::AdminRevokeAllSessionsRequest),
    List(pb::AdminListRequest),
    Audit(pb::AdminListAuditEventsRequest),
}

impl Probe {
    async fn send(self, client: &mut Client) -> Result<(), Status> {
        match self {
            Probe::Issue(r) => client.issue(r).await.map(drop),
            Probe::RevokeUser(r) => client.admin_revoke_user(r).await.map(drop),
            Probe::RevokeSession(r) => client.admin_revoke_session(r).await.map(drop),
            Probe::RevokeAllSessions(r) => client.admin_revoke_all_sessions(r).await.map(drop),
            Probe::List(r) => client.admin_list(r).await.map(drop),
            Probe::Audit(r) => client.admin_list_audit_events(r).await.map(drop),
        }
    }
}

fn with_client(user: &str, client: pb::ClientInfo) -> Probe {
    Probe::Issue(pb::IssueRequest {
        client: Some(client),
        ..issue_request(user)
    })
}

fn with_metadata(user: &str, metadata: HashMap<String, String>) -> Probe {
    Probe::Issue(pb::IssueRequest {
        metadata,
        ..issue_request(user)
    })
}

fn with_ttl(user: &str, seconds: i64, nanos: i32) -> Probe {
    Probe::Issue(pb::IssueRequest {
        ttl: Some(prost_types::Duration { seconds, nanos }),
        ..issue_request(user)
    })
}

fn with_sign_in(user: &str, acr: String, amr: Vec<String>) -> Probe {
    Probe::Issue(pb::IssueRequest {
        acr,
        amr,
        ..issue_request(user)
    })
}

fn with_idle(user: &str, seconds: i64) -> Probe {
    Probe::Issue(pb::IssueRequest {
        idle_timeout: Some(prost_types::Duration { seconds, nanos: 0 }),
        ..issue_request(user)
    })
}

fn amr(entries: usize, len: usize) -> Vec<String> {
    (0..entries).map(|_| "m".repeat(len)).collect()
}

fn user_agent(n: usize) -> pb::ClientInfo {
    pb::ClientInfo {
        user_agent: "a".repeat(n),
        ..Default::default()
    }
}

fn device_name(n: usize) -> pb::ClientInfo {
    pb::ClientInfo {
        device_name: "d".repeat(n),
        ..Default::default()
    }
}

fn ip(text: &str) -> pb::ClientInfo {
    pb::ClientInfo {
        ip: text.to_owned(),
        ..Default::default()
    }
}

/// `n` metadata entries with keys of `key_len` bytes and values of `value_len` bytes.
fn metadata(n: usize, key_len: usize, value_len: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| {
            let key = format!("{i:0>width$}", width = key_len);
            assert_eq!(key.len(), key_len);
            (key, "v".repeat(value_len))
        })
        .collect()
}

fn revoke_user(user: &str, reason: usize) -> Probe {
    Probe::RevokeUser(pb::AdminRevokeUserRequest {
        user_id: user.to_owned(),
        tenant_id: String::new(),
        reason: "r".repeat(reason),
    })
}

/// One byte past each bound of README "Limits", with the field each refusal must name.
fn past_every_bound(canary: &Issued) -> Vec<(&'static str, Probe)> {
    let ids = 257;
    vec![
        ("user_id", Probe::Issue(issue_request(&"u".repeat(ids)))),
        // Bytes, not characters: 128 two-byte characters and one more byte.
        (
            "user_id",
            Probe::Issue(issue_request(&format!("{}u", "é".repeat(128)))),
        ),
        ("user_id", Probe::Issue(issue_request("line\nbreak"))),
        (
            "tenant_id",
            Probe::Issue(pb::IssueRequest {
                tenant_id: "t".repeat(ids),
                ..issue_request("alice")
            }),
        ),
        ("client.user_agent", with_client("alice", user_agent(1025))),
        ("client.device_name", with_client("alice", device_name(129))),
        ("client.ip", with_client("alice", ip("not-an-ip"))),
        ("client.ip", with_client("alice", ip("256.0.0.1"))),
        ("client.ip", with_client("alice", ip("192.0.2.1:443"))),
        ("client.ip", with_client("alice", ip("2001:db8::1::2"))),
        ("client.ip", with_client("alice", ip(&"1".repeat(65)))),
        ("metadata", with_metadata("alice", metadata(33, 2, 0))),
        ("metadata key", with_metadata("alice", metadata(1, 65, 1))),
        (
            "metadata value",
            with_metadata("alice", metadata(1, 1, 1025)),
        ),
        // Every entry within its bounds, 8 × (8 + 1017) = 8200 bytes in all.
        ("metadata", with_metadata("alice", metadata(8, 8, 1017))),
        (
            "metadata",
            with_metadata("alice", HashMap::from([(String::new(), "v".to_owned())])),
        ),
        ("ttl", with_ttl("alice", 0, 999_000_000)),
        ("ttl", with_ttl("alice", 0, 0)),
        ("ttl", with_ttl("alice", -1, 0)),
        ("acr", with_sign_in("alice", "a".repeat(65), Vec::new())),
        ("acr", with_sign_in("alice", "a\u{7}".into(), Vec::new())),
        ("amr", with_sign_in("alice", String::new(), amr(9, 3))),
        ("amr", with_sign_in("alice", String::new(), amr(1, 33))),
        ("amr", with_sign_in("alice", String::new(), amr(1, 0))),
        (
            "auth_time",
            Probe::Issue(pb::IssueRequest {
                auth_time: Some(prost_types::Timestamp {
                    seconds: 4_000_000_000,
                    nanos: 0,
                }),
                ..issue_request("alice")
            }),
        ),
        // Under twice the default last-seen interval (60s), and negative.
        ("idle_timeout", with_idle("alice", 119)),
        ("idle_timeout", with_idle("alice", -1)),
        ("reason", revoke_user(&canary.user_id, 257)),
        ("user_id", revoke_user(&"u".repeat(ids), 0)),
        (
            "tenant_id",
            Probe::RevokeUser(pb::AdminRevokeUserRequest {
                user_id: canary.user_id.clone(),
                tenant_id: "t".repeat(ids),
                reason: String::new(),
            }),
        ),
        (
            "reason",
            Probe::RevokeSession(pb::AdminRevokeSessionRequest {
                session_id: canary.session_id.clone(),
                reason: "r".repeat(257),
            }),
        ),
        (
            "reason",
            Probe::RevokeAllSessions(pb::AdminRevokeAllSessionsRequest {
                reason: "r".repeat(257),
                confirm: true,
            }),
        ),
        (
            "user_id",
            Probe::List(pb::AdminListRequest {
                user_id: "u".repeat(ids),
                ..Default::default()
            }),
        ),
        (
            "tenant_id",
            Probe::List(pb::AdminListRequest {
                tenant_id: "t".repeat(ids),
                ..Default::default()
            }),
        ),
        (
            "user_id",
            Probe::Audit(pb::AdminListAuditEventsRequest {
                user_id: "u".repeat(ids),
                ..Default::default()
            }),
        ),
    ]
}

#[tokio::test]
async fn one_past_every_bound_is_refused_naming_the_field_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut client = server.client();
    // A session the refused revocations aim at.
    let canary = server.issue("canary").await;

    for (field, probe) in past_every_bound(&canary) {
        let what = format!("{probe:?}");
        let status = probe
            .send(&mut client)
            .await
            .expect_err(&format!("past the {field} bound: {what:.200}"));
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(error_reason(&status), "INVALID_ARGUMENT", "{field}");
        assert_eq!(error_field(&status), field, "{what:.200}");
        assert!(
            status.message().contains(field),
            "the message names {field}: {:?}",
            status.message()
        );
    }

    // Nothing was written: the canary is the only session, still valid, and the only event.
    let sessions = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            include_revoked: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        sessions.iter().map(|s| &s.session_id).collect::<Vec<_>>(),
        vec![&canary.session_id]
    );
    assert!(sessions[0].revoked_at.is_none(), "{sessions:?}");
    assert_valid(&mut client, &canary.access).await;
    let events = audit_all(&mut client, "", 100).await;
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["session_issued"]
    );
}

#[tokio::test]
async fn every_bound_itself_is_accepted() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued = |r: pb::IssueResponse| -> pb::Session { r.session.expect("session") };

    let at_bound: Vec<(&str, Probe)> = vec![
        ("user_id", Probe::Issue(issue_request(&"u".repeat(256)))),
        (
            "user_id (bytes)",
            Probe::Issue(issue_request(&"é".repeat(128))),
        ),
        (
            "tenant_id",
            Probe::Issue(pb::IssueRequest {
                tenant_id: "t".repeat(256),
                ..issue_request("alice")
            }),
        ),
        ("client.user_agent", with_client("alice", user_agent(1024))),
        ("client.device_name", with_client("alice", device_name(128))),
        (
            "client.ip",
            with_client("alice", ip("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255")),
        ),
        ("client.ip", with_client("alice", ip("192.0.2.1"))),
        (
            "metadata entries",
            with_metadata("alice", metadata(32, 2, 0)),
        ),
        ("metadata key", with_metadata("alice", metadata(1, 64, 1))),
        (
            "metadata value",
            with_metadata("alice", metadata(1, 1, 1024)),
        ),
        // 8 × (8 + 1016) = 8192 bytes exactly.
        (
            "metadata total",
            with_metadata("alice", metadata(8, 8, 1016)),
        ),
        ("ttl", with_ttl("alice", 1, 0)),
        ("acr", with_sign_in("alice", "a".repeat(64), Vec::new())),
        ("amr", with_sign_in("alice", String::new(), amr(8, 32))),
        ("idle_timeout", with_idle("alice", 120)),
        ("idle_timeout off", with_idle("alice", 0)),
        ("reason", revoke_user("bob", 256)),
    ];
    for (field, probe) in at_bound {
        probe
            .send(&mut client)
            .await
            .unwrap_or_else(|s| panic!("at the {field} bound: {s:?}"));
    }

    // What was accepted is kept whole.
    let long = issued(
        client
            .issue(pb::IssueRequest {
                tenant_id: "t".repeat(256),
                client: Some(pb::ClientInfo {
                    ip: "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".into(),
                    user_agent: "a".repeat(1024),
                    device_name: "d".repeat(128),
                }),
                metadata: metadata(8, 8, 1016),
                ..issue_request(&"u".repeat(256))
            })
            .await
            .expect("every field at its bound at once")
            .into_inner(),
    );
    assert_eq!(long.user_id.len(), 256);
    assert_eq!(long.tenant_id.len(), 256);
    assert_eq!(long.user_agent.len(), 1024);
    assert_eq!(long.device_name.len(), 128);
    assert_eq!(long.metadata, metadata(8, 8, 1016));
    let short = issued(
        client
            .issue(pb::IssueRequest {
                ttl: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..issue_request("alice")
            })
            .await
            .expect("a one second session")
            .into_inner(),
    );
    let (created, expires) = (
        short.created_at.expect("created"),
        short.expires_at.expect("expires"),
    );
    let life_ns = (expires.seconds - created.seconds) * 1_000_000_000
        + i64::from(expires.nanos - created.nanos);
    assert_eq!(life_ns, 1_000_000_000, "a 1s ttl is kept as given");
    // The revocation reason was kept whole.
    let events = audit_all(&mut client, "bob", 10).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reason, "r".repeat(256));
}

#[tokio::test]
async fn a_refresh_refused_for_its_client_info_does_not_rotate() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let issued = server.issue("alice").await;
    let status = client
        .refresh(pb::RefreshRequest {
            refresh_token: issued.refresh.clone(),
            client: Some(user_agent(1025)),
        })
        .await
        .expect_err("oversize user agent");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_field(&status), "client.user_agent");
    // The token was not consumed: it refreshes once, and the session is not revoked for reuse.
    refresh(&mut client, &issued.refresh)
        .await
        .expect("the refused refresh left the token current");
    let events = audit_all(&mut client, "alice", 10).await;
    assert_eq!(
        events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["session_refreshed", "session_issued"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_is_clamped_not_refused() {
    let server = TestServer::start_with(|c| c.max_sessions_per_user = 0).await;
    let client = server.client();
    // One more session (and one more audit event) than the largest page.
    let issued: Vec<Issued> = futures::stream::iter(0..1001)
        .map(|i| {
            let mut client = client.clone();
            async move { issue(&mut client, &format!("user-{i}")).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(issued.len(), 1001);
    let mut client = client;

    // Sessions pages stop at 300 (so a page of the largest records stays under gRPC's 4 MB
    // default), audit pages at 1000.
    for page_size in [1000, 1001, u32::MAX] {
        let page = client
            .admin_list(pb::AdminListRequest {
                page_size,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("page size {page_size} is clamped, not refused: {s:?}"))
            .into_inner();
        assert_eq!(page.sessions.len(), 300, "page size {page_size}");
        assert!(!page.next_page_token.is_empty(), "a 1001st session follows");

        let events = client
            .admin_list_audit_events(pb::AdminListAuditEventsRequest {
                page_size,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("audit page size {page_size}: {s:?}"))
            .into_inner();
        assert_eq!(events.events.len(), 1000, "audit page size {page_size}");
        assert!(!events.next_page_token.is_empty());
    }
    // No page size is the default of 100.
    let page = client
        .admin_list(pb::AdminListRequest::default())
        .await
        .expect("default page")
        .into_inner();
    assert_eq!(page.sessions.len(), 100);
}

// ---------------------------------------------------------------------------------------------
// 5. Overload is refused, not queued.

#[tokio::test]
async fn a_caller_over_its_rate_limit_is_refused_and_others_are_not() {
    let (mut limited, limited_credential) = new_caller("limited", &[Role::Validator]);
    limited.rate_limit = std::num::NonZeroU32::new(1);
    let (free, free_credential) = new_caller("free", &[Role::Validator]);
    let server = TestServer::start_with(|c| c.callers = vec![limited, free]).await;
    let channel = server.channel().await;
    let limited = client_as(channel.clone(), Some(&limited_credential));
    let free = client_as(channel, Some(&free_credential));
    let validate = |client: &CallerClient| {
        let mut client = client.clone();
        async move {
            client
                .validate(pb::ValidateRequest {
                    access_token: "not-a-token".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner())
        }
    };

    validate(&limited)
        .await
        .expect("the first call is within the limit");
    let burst = futures::future::join_all((0..5).map(|_| validate(&limited))).await;
    let others = futures::future::join_all((0..5).map(|_| validate(&free))).await;

    let mut limited_count = 0;
    for result in burst {
        if let Err(status) = result {
            assert_eq!(
                (status.code(), error_reason(&status).as_str()),
                (Code::ResourceExhausted, "RATE_LIMITED"),
                "{status:?}"
            );
            limited_count += 1;
        }
    }
    assert!(
        limited_count >= 1,
        "an immediate burst of 5 over 1/s is limited"
    );
    for result in others {
        result.expect("another caller keeps its own budget");
    }
}

/// Opens a unary `Validate` whose request never completes until `release` is sent or
/// dropped (or the server's request timeout ends it): the server has admitted the call and
/// holds one of the callers' in-flight slots meanwhile.
fn hold_a_call(
    channel: Channel,
) -> (
    tokio::sync::mpsc::Sender<pb::ValidateRequest>,
    tokio::task::JoinHandle<Result<pb::ValidateResponse, Status>>,
) {
    let (release, requests) = tokio::sync::mpsc::channel::<pb::ValidateRequest>(1);
    let held = tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<pb::ValidateRequest, pb::ValidateResponse>::default();
        grpc.client_streaming(
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(requests)),
            http::uri::PathAndQuery::from_static("/sessiond.v1.SessionService/Validate"),
            codec,
        )
        .await
        .map(|r| r.into_inner())
    });
    (release, held)
}

#[tokio::test]
async fn calls_beyond_max_in_flight_are_refused_until_a_slot_frees() {
    let server = TestServer::start_with(|c| {
        c.max_in_flight = 1;
        // Far longer than the test: the held call ends when it is released, not by the deadline.
        c.request_timeout = std::time::Duration::from_secs(120);
    })
    .await;
    let mut client = server.client();
    let issued = server.issue("alice").await;

    let (release, held) = hold_a_call(server.channel().await);
    // Once the held call is admitted, every other call is refused at once.
    poll_until("a call refused as OVERLOADED", DEADLINE, || {
        let mut client = client.clone();
        let token = issued.access.clone();
        async move {
            match client
                .validate(pb::ValidateRequest {
                    access_token: token,
                    ..Default::default()
                })
                .await
            {
                Ok(_) => None,
                Err(status) => {
                    assert_eq!(
                        (status.code(), error_reason(&status).as_str()),
                        (Code::ResourceExhausted, "OVERLOADED"),
                        "{status:?}"
                    );
                    Some(())
                }
            }
        }
    })
    .await;
    // The open services have a budget of their own: health still answers.
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest::default())
        .await
        .expect("health while the callers' slot is taken");
    assert!(!held.is_finished(), "the held call is still in flight");

    // Completing the held call frees its slot.
    release
        .send(pb::ValidateRequest::default())
        .await
        .expect("send the held request");
    drop(release);
    held.await
        .expect("held task")
        .expect("the held call itself was served");
    poll_until("calls served again", DEADLINE, || {
        let mut client = client.clone();
        async move {
            client
                .validate(pb::ValidateRequest::default())
                .await
                .ok()
                .map(drop)
        }
    })
    .await;
    assert_valid(&mut client, &issued.access).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Audit: the acting caller, and never a secret.

#[tokio::test]
async fn audit_events_name_the_acting_caller_and_hold_no_secret() {
    let callers = three_callers();
    let server = TestServer::start_with(|c| {
        c.callers = callers.specs.clone();
        c.max_sessions_per_user = 2;
        // Strict rotation: presenting the rotated-away token at once is reuse.
        c.refresh_grace = std::time::Duration::ZERO;
    })
    .await;
    let channel = server.channel().await;
    let mut login = client_as(channel.clone(), Some(&callers.login));
    let mut gateway = client_as(channel.clone(), Some(&callers.gateway));
    let mut ops = client_as(channel, Some(&callers.ops));
    let mut tokens: Vec<String> = Vec::new();
    let mut keep = |i: &Issued| {
        tokens.push(i.access.clone());
        tokens.push(i.refresh.clone());
    };

    let a1: Issued = login
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
    keep(&a1);
    let a1b: Issued = login
        .refresh(pb::RefreshRequest {
            refresh_token: a1.refresh.clone(),
            client: None,
        })
        .await
        .expect("refresh")
        .into_inner()
        .into();
    keep(&a1b);
    let a2 = issue_as(&mut login, "alice").await;
    keep(&a2);
    // The third session of alice evicts the oldest (limit 2).
    let a3 = issue_as(&mut login, "alice").await;
    keep(&a3);
    // Reads are not audited.
    assert!(validate_as(&mut gateway, &a3.access).await.0);
    gateway
        .list(pb::ListRequest {
            access_token: a3.access.clone(),
        })
        .await
        .expect("list");
    gateway
        .revoke(pb::RevokeRequest {
            access_token: a3.access.clone(),
            session_id: a2.session_id.clone(),
        })
        .await
        .expect("revoke");
    gateway
        .revoke_all(pb::RevokeAllRequest {
            access_token: a3.access.clone(),
            include_current: true,
        })
        .await
        .expect("revoke all");
    let b1 = issue_as(&mut login, "bob").await;
    keep(&b1);
    let b1b: Issued = login
        .refresh(pb::RefreshRequest {
            refresh_token: b1.refresh.clone(),
            client: None,
        })
        .await
        .expect("refresh")
        .into_inner()
        .into();
    keep(&b1b);
    // Presenting the rotated-away token again is reuse.
    login
        .refresh(pb::RefreshRequest {
            refresh_token: b1.refresh.clone(),
            client: None,
        })
        .await
        .expect_err("reuse");
    let b2 = issue_as(&mut login, "bob").await;
    keep(&b2);
    operator_revokes(&mut ops, &b2.session_id).await;
    ops.admin_list(pb::AdminListRequest::default())
        .await
        .expect("admin list");

    let mut events = audit_as(&mut ops).await;
    events.reverse();
    let shape: Vec<(&str, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.actor.as_str(),
                e.user_id.as_str(),
                e.session_id.as_str(),
            )
        })
        .collect();
    let (user, admin) = ("login:user", "ops:admin");
    let expected: Vec<(&str, &str, &str, &str)> = vec![
        ("session_issued", user, "alice", &a1.session_id),
        ("session_refreshed", user, "alice", &a1.session_id),
        ("session_issued", user, "alice", &a2.session_id),
        // The eviction is decided by the same store write as the session that causes it.
        ("session_issued", user, "alice", &a3.session_id),
        ("session_limit_evicted", user, "alice", &a1.session_id),
        ("session_revoked", "gateway:user", "alice", &a2.session_id),
        (
            "sessions_revoked_all",
            "gateway:user",
            "alice",
            &a3.session_id,
        ),
        ("session_issued", user, "bob", &b1.session_id),
        ("session_refreshed", user, "bob", &b1.session_id),
        ("refresh_token_reuse", user, "bob", &b1.session_id),
        ("session_issued", user, "bob", &b2.session_id),
        ("session_revoked", admin, "bob", &b2.session_id),
        ("user_revoked", admin, "bob", ""),
        ("global_revoke", admin, "", ""),
    ];
    assert_eq!(shape, expected);

    // No field of any event holds a token, a token's signature, or a caller's credential.
    let mut secrets: Vec<String> = tokens.clone();
    for token in &tokens {
        if let Some((_, signature)) = token.rsplit_once('.') {
            secrets.push(signature.to_owned());
        }
    }
    for credential in [&callers.login, &callers.gateway, &callers.ops] {
        secrets.push(credential.clone());
        secrets.push(credential.trim_start_matches("sdc_").to_owned());
    }
    for spec in &callers.specs {
        secrets.push(hex::encode(spec.credential_sha256.expect("hash")));
    }
    for event in &events {
        let fields = [
            &event.event_id,
            &event.kind,
            &event.actor,
            &event.user_id,
            &event.session_id,
            &event.ip,
            &event.user_agent,
            &event.reason,
        ];
        for field in fields {
            for secret in &secrets {
                assert!(
                    !field.contains(secret.as_str()),
                    "audit event {} holds a secret in {field:?}",
                    event.kind
                );
            }
        }
        let encoded = event.encode_to_vec();
        for secret in &secrets {
            assert!(
                !encoded
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "audit event {} holds a secret",
                event.kind
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Nothing posing as a token is taken for one.

mod posing_tokens {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

    /// Strings that may be offered as tokens: arbitrary text, long text around the length
    /// cap, JWT and refresh-token shapes, and real tokens with one byte changed.
    fn posing(real: &Issued) -> impl Strategy<Value = String> + use<> {
        let access = real.access.clone();
        let signed_len = access.rfind('.').expect("a JWT");
        let refresh = URL_SAFE_NO_PAD
            .decode(&real.refresh)
            .expect("refresh tokens are base64url");
        let refresh_len = refresh.len();
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(any::<char>(), 0..1300)
                .prop_map(|chars| chars.into_iter().collect::<String>()),
            "[A-Za-z0-9_.-]{4000,5000}",
            "eyJ[A-Za-z0-9_-]{0,200}\\.eyJ[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_-]{0,120}",
            proptest::collection::vec(any::<u8>(), 85).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
            proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
            // The real access token with one character of its signed part changed.
            (0..signed_len, "[A-Za-z0-9_-]").prop_map(move |(i, c)| {
                let mut chars: Vec<char> = access.chars().collect();
                let c = c.chars().next().expect("one char");
                chars[i] = if chars[i] == c { '.' } else { c };
                chars.into_iter().collect::<String>()
            }),
            // The real refresh token with one byte changed.
            (0..refresh_len, 1..=255u8).prop_map(move |(i, flip)| {
                let mut bytes = refresh.clone();
                bytes[i] ^= flip;
                URL_SAFE_NO_PAD.encode(bytes)
            }),
        ]
    }

    const ACCESS_PROBLEMS: [&str; 2] = ["TOKEN_MALFORMED", "TOKEN_BAD_SIGNATURE"];
    const REFRESH_PROBLEMS: [&str; 2] = ["REFRESH_TOKEN_MALFORMED", "REFRESH_TOKEN_INVALID"];

    async fn offer(client: &mut Client, real: &Issued, token: String) -> Result<(), TestCaseError> {
        let r = client
            .validate(pb::ValidateRequest {
                access_token: token.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| TestCaseError::fail(format!("validate answered {s:?}")))?
            .into_inner();
        prop_assert!(!r.valid && r.session.is_none(), "taken as valid: {r:?}");
        let reason = InvalidReason::try_from(r.reason).ok();
        prop_assert!(
            matches!(
                reason,
                Some(InvalidReason::Malformed | InvalidReason::BadSignature)
            ),
            "validate reason {reason:?}"
        );

        let refreshed = client
            .refresh(pb::RefreshRequest {
                refresh_token: token.clone(),
                client: None,
            })
            .await;
        let status = match refreshed {
            Ok(r) => return Err(TestCaseError::fail(format!("refreshed: {r:?}"))),
            Err(s) => s,
        };
        prop_assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "refresh: {:?}",
            status
        );
        prop_assert!(
            REFRESH_PROBLEMS.contains(&error_reason(&status).as_str()),
            "refresh: {:?}",
            status
        );

        let results = [
            (
                "list",
                client
                    .list(pb::ListRequest {
                        access_token: token.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "revoke",
                client
                    .revoke(pb::RevokeRequest {
                        access_token: token.clone(),
                        session_id: real.session_id.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "revoke all",
                client
                    .revoke_all(pb::RevokeAllRequest {
                        access_token: token,
                        include_current: true,
                    })
                    .await
                    .map(drop),
            ),
        ];
        for (rpc, result) in results {
            let status = match result {
                Ok(()) => return Err(TestCaseError::fail(format!("{rpc} answered OK"))),
                Err(s) => s,
            };
            prop_assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{}: {:?}",
                rpc,
                status
            );
            prop_assert!(
                ACCESS_PROBLEMS.contains(&error_reason(&status).as_str()),
                "{}: {:?}",
                rpc,
                status
            );
        }
        Ok(())
    }

    #[test]
    fn strings_posing_as_tokens_are_never_taken_for_one() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (server, real) = runtime.block_on(async {
            let server = TestServer::start().await;
            let real = server.issue("alice").await;
            (server, real)
        });
        let client = server.client();
        let mut runner = TestRunner::new(ProptestConfig {
            cases: 96,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let outcome = runner.run(&posing(&real), |token| {
            let mut client = client.clone();
            runtime.block_on(offer(&mut client, &real, token))
        });
        if let Err(failure) = outcome {
            panic!("{failure}");
        }

        // All that left the real session alone: it validates and refreshes.
        runtime.block_on(async {
            let mut client = server.client();
            assert_valid(&mut client, &real.access).await;
            refresh(&mut client, &real.refresh)
                .await
                .expect("the real refresh token is still current");
        });
        drop(server);
    }
}

#[tokio::test]
async fn forged_access_tokens_are_never_valid() {
    let server = TestServer::start().await;
    let mut client = server.client();
    let real = server.issue("alice").await;
    let other = server.issue("bob").await;
    let parts: Vec<&str> = real.access.split('.').collect();
    let (header, payload, signature) = (parts[0], parts[1], parts[2]);
    let other_signature = other.access.rsplit('.').next().expect("signature");
    let b64 = |json: &str| URL_SAFE_NO_PAD.encode(json);
    let hs256 = |key: &[u8], header_json: &str| {
        use hmac::Mac;
        let signed = format!("{}.{payload}", b64(header_json));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("hmac key");
        mac.update(signed.as_bytes());
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let kid: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("header")).expect("json");
    let kid = kid["kid"].as_str().expect("kid").to_owned();

    let forged = [
        // alg none, with and without the empty signature.
        format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#)),
        format!("{}.{payload}", b64(r#"{"alg":"none","typ":"JWT"}"#)),
        format!(
            "{}.{payload}.{signature}",
            b64(&format!(r#"{{"alg":"none","kid":"{kid}"}}"#))
        ),
        // HMAC with guessable keys, claiming the real key id.
        hs256(b"", &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
        hs256(b"sessiond", &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
        hs256(
            kid.as_bytes(),
            &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
        ),
        // Another token's signature over this token's claims.
        format!("{header}.{payload}.{other_signature}"),
        // The real signature with a changed header.
        format!(
            "{}.{payload}.{signature}",
            b64(&format!(r#"{{"alg":"EdDSA","kid":"other-{kid}"}}"#))
        ),
        // Extra or missing segments.
        format!("{}.extra", real.access),
        format!("{header}.{payload}"),
        format!("{header}..{signature}"),
    ];
    for token in &forged {
        let (valid, reason) = validate(&mut client, token).await;
        assert!(!valid, "forged token validated: {token}");
        assert!(
            matches!(
                reason,
                InvalidReason::Malformed | InvalidReason::BadSignature
            ),
            "{reason:?} for {token}"
        );
    }
    // The real tokens are fine, so the refusals above are the forgeries'.
    assert_valid(&mut client, &real.access).await;
    assert_valid(&mut client, &other.access).await;
}

#[tokio::test]
async fn es256_tokens_have_one_valid_string_the_high_s_twin_is_a_bad_signature() {
    let server =
        TestServer::start_with(|c| c.key_algorithm = sessiond::keystore::KeyAlgorithm::Es256).await;
    let mut client = server.client();
    // Half of raw ECDSA signatures are high-S; 16 tokens in a row without one are not luck.
    for i in 0..16 {
        let issued = server.issue(&format!("user-{i}")).await;
        let (signed, encoded) = issued.access.rsplit_once('.').expect("three segments");
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .expect("base64url signature");
        let signature = p256::ecdsa::Signature::from_slice(&bytes).expect("r || s");
        assert!(
            signature.normalize_s().is_none(),
            "token {i} carries a high-S signature"
        );
        // (r, n - s) is a valid ECDSA signature of the same claims.
        let twin = p256::ecdsa::Signature::from_scalars(signature.r(), -*signature.s())
            .expect("the twin signature");
        let twin = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(twin.to_bytes()));
        assert_eq!(
            validate(&mut client, &twin).await,
            (false, InvalidReason::BadSignature),
            "the high-S twin of token {i}"
        );
        assert_valid(&mut client, &issued.access).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Where an operator acted from, and requests that are not protobuf.

#[tokio::test]
async fn admin_audit_events_record_the_callers_address_and_user_events_the_clients() {
    let callers = three_callers();
    let server = TestServer::start_with(|c| c.callers = callers.specs.clone()).await;
    let channel = server.channel().await;
    let mut login = client_as(channel.clone(), Some(&callers.login));
    let mut ops = client_as(channel, Some(&callers.ops));
    let from_browser = pb::ClientInfo {
        ip: "203.0.113.7".into(),
        user_agent: CHROME_ON_MAC.into(),
        device_name: String::new(),
    };
    let alice: Issued = login
        .issue(pb::IssueRequest {
            client: Some(from_browser.clone()),
            ..issue_request("alice")
        })
        .await
        .expect("issue")
        .into_inner()
        .into();
    login
        .issue(pb::IssueRequest {
            client: Some(from_browser),
            ..issue_request("bob")
        })
        .await
        .expect("issue");
    operator_revokes(&mut ops, &alice.session_id).await;

    let mut events = audit_as(&mut ops).await;
    events.reverse();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.actor.as_str(), e.ip.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            // On a user's behalf: the user's client, as the login service reported it.
            ("session_issued", "login:user", "203.0.113.7"),
            ("session_issued", "login:user", "203.0.113.7"),
            // An operator's action: where the operator's tool connected from.
            ("session_revoked", "ops:admin", "127.0.0.1"),
            ("user_revoked", "ops:admin", "127.0.0.1"),
            ("global_revoke", "ops:admin", "127.0.0.1"),
        ]
    );
}

/// A codec that sends the given bytes as the message, so a test can put anything on the wire.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, buf: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        use prost::bytes::Buf;
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Calls `method` of the session service with `body` as its message.
async fn raw_call(channel: Channel, method: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let path = http::uri::PathAndQuery::try_from(format!("/sessiond.v1.SessionService/{method}"))
        .expect("path");
    grpc.unary(tonic::Request::new(body), path, RawBytes)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn requests_that_are_not_protobuf_are_invalid_argument() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let garbage: [(&str, Vec<u8>); 4] = [
        // Field 1 (a string) claims 5 bytes and has 1.
        ("Validate", vec![0x0a, 0x05, b'a']),
        // Field 1 is not UTF-8.
        ("Validate", vec![0x0a, 0x02, 0xff, 0xfe]),
        // A varint that never ends.
        ("Issue", vec![0xff; 11]),
        // Wire type 7 does not exist.
        ("AdminList", vec![0x0f]),
    ];
    for (method, body) in garbage {
        let status = assert_error(
            raw_call(channel.clone(), method, body.clone()).await,
            Code::InvalidArgument,
            "MALFORMED_REQUEST",
        );
        assert!(
            status.message().starts_with("malformed request: "),
            "{method} {body:?}: {status:?}"
        );
    }
    // The same bytes, well-formed, reach the service: the refusals above are the decoder's.
    let valid = pb::ValidateRequest {
        access_token: "a".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let reply = raw_call(channel.clone(), "Validate", valid)
        .await
        .expect("a valid message is served");
    let reply = pb::ValidateResponse::decode(reply.as_slice()).expect("response");
    assert_eq!(reply.reason, InvalidReason::Malformed as i32);

    // Over the 1 MiB message limit, tonic refuses the frame before any codec sees it; this is
    // where INVALID_ARGUMENT cannot be had (README "Security").
    let status = raw_call(channel, "Validate", vec![0; 1024 * 1024 + 1])
        .await
        .expect_err("oversize");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}

/// The three admin revocations the audit tests record: one session (`session_id`), every
/// session of bob, and the emergency switch.
async fn operator_revokes(ops: &mut CallerClient, session_id: &str) {
    ops.admin_revoke_session(pb::AdminRevokeSessionRequest {
        session_id: session_id.to_owned(),
        reason: "support ticket".into(),
    })
    .await
    .expect("admin revoke session");
    ops.admin_revoke_user(pb::AdminRevokeUserRequest {
        user_id: "bob".into(),
        tenant_id: String::new(),
        reason: "offboarded".into(),
    })
    .await
    .expect("admin revoke user");
    ops.admin_revoke_all_sessions(pb::AdminRevokeAllSessionsRequest {
        reason: "incident".into(),
        confirm: true,
    })
    .await
    .expect("global revoke");
}
