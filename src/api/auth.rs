//! Caller authentication and roles, at the one entrance every request passes.
//!
//! Callers are services. Each presents `authorization: Bearer <credential>` (a gateway calling
//! the HTTP `GET /auth/check` presents the bare credential in `X-Sessiond-Credential` instead,
//! as its `Authorization` header carries the end user's token); the credential is
//! hashed (SHA-256) and compared in constant time with every configured caller's stored hash,
//! so neither the credential nor how close a guess came leaks through timing. The caller's name
//! travels on in the request's extensions (for audit); its roles decide which RPCs it may call.
//! Health and reflection stay open. With no callers configured every request passes as
//! `anonymous` (the server then only listens on loopback).
//!
//! The same layer applies the per-caller rate limits and the concurrency limits, all answering
//! `RESOURCE_EXHAUSTED` rather than queueing without bound. A request is identified first and
//! takes an in-flight slot only once it is admitted, so requests that present no valid
//! credential can never use up the slots of callers; requests to the open services draw from
//! a small budget of their own ([`OPEN_MAX_IN_FLIGHT`]), so no one can starve callers through
//! them either. How long a slot may be held is bounded by the server's request timeout.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::status::ERROR_DOMAIN;
use crate::domain::audit::Caller;

/// Most requests to the open services (health, reflection) in flight at once, apart from the
/// callers' `--max-in-flight`. Far above what health probes and reflection clients need
/// (each call takes microseconds; 64 also lets the load generator's empty-call baseline run at
/// its highest concurrency), and small enough that holding all of it costs nothing.
pub const OPEN_MAX_IN_FLIGHT: usize = 64;

/// Which in-flight budget a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// Requests that need a role (every RPC of the service, Envoy `Check`, the HTTP routes
    /// for callers),
    /// admitted first: `--max-in-flight`.
    Callers,
    /// Requests to the open services: [`OPEN_MAX_IN_FLIGHT`].
    Open,
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `Issue`, `Refresh`.
    Issuer,
    /// `Validate`, `List`, `Revoke`, `RevokeAll`, Envoy `Check`, `/auth/check`, token
    /// introspection and revocation.
    Validator,
    /// Every `Admin*` RPC.
    Admin,
}

impl Role {
    /// Parses a role name as written in the configuration.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "issuer" => Some(Role::Issuer),
            "validator" => Some(Role::Validator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Validator => "validator",
            Role::Admin => "admin",
        }
    }
}

/// The role a gRPC method needs; `None` for open services (health, reflection) and for paths
/// no service answers (the router reports those itself).
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "sessiond.v1.SessionService" => Some(match method {
            "Issue" | "Refresh" => Role::Issuer,
            m if m.starts_with("Admin") => Role::Admin,
            _ => Role::Validator,
        }),
        "envoy.service.auth.v3.Authorization" => Some(Role::Validator),
        _ => None,
    }
}

/// A configured caller.
#[derive(Clone, Debug)]
pub struct CallerSpec {
    /// Its name, as recorded in audit events.
    pub name: String,
    /// SHA-256 of its bearer credential, if it authenticates with one.
    pub credential_sha256: Option<[u8; 32]>,
    /// The subject of its client certificate, if it authenticates with mTLS.
    pub client_cert_subject: Option<String>,
    /// What it may call.
    pub roles: Vec<Role>,
    /// Most requests per second (with an equal burst); unlimited when `None`.
    pub rate_limit: Option<NonZeroU32>,
}

/// The subject of a verified client certificate, in the forms a caller's
/// `client_cert_subject` is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSubject {
    /// The whole subject in RFC 4514 form, RDNs joined by `", "` and every value escaped
    /// (`CN=gateway, O=Example\, Inc.`), so no attribute value can pose as another attribute.
    pub full: String,
    /// `CN=<value>`, escaped alike, when the subject has exactly one common name.
    pub common_name: Option<String>,
}

impl CertSubject {
    /// Reads the subject of a DER certificate; `None` when the certificate does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let full = subject
            .iter_rdn()
            .map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut common_names = subject.iter_common_name();
        let common_name = match (common_names.next(), common_names.next()) {
            (Some(cn), None) => Some(attribute(cn)),
            _ => None,
        };
        Some(Self { full, common_name })
    }
}

/// SHA-256 of a credential, as stored in the configuration.
pub fn hash_credential(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

struct Known {
    spec: CallerSpec,
    caller: Caller,
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Decides who a request comes from and whether it may proceed.
pub struct Authenticator {
    callers: Vec<Known>,
    by_subject: HashMap<String, usize>,
    in_flight: Arc<Semaphore>,
    open_in_flight: Arc<Semaphore>,
}

/// Why a request is turned away.
fn reject(code: Code, reason: &'static str, message: String) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

impl Authenticator {
    /// An authenticator over `callers`, admitting at most `max_in_flight` concurrent requests
    /// of callers (and [`OPEN_MAX_IN_FLIGHT`] to the open services).
    pub fn new(callers: Vec<CallerSpec>, max_in_flight: usize) -> Self {
        let mut by_subject = HashMap::new();
        let callers: Vec<Known> = callers
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                if let Some(subject) = &spec.client_cert_subject {
                    by_subject.insert(normalize_subject(subject), i);
                }
                let limiter = spec
                    .rate_limit
                    .map(|n| RateLimiter::direct(Quota::per_second(n)));
                Known {
                    caller: Caller::new(spec.name.clone()),
                    spec,
                    limiter,
                }
            })
            .collect();
        Self {
            callers,
            by_subject,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            open_in_flight: Arc::new(Semaphore::new(OPEN_MAX_IN_FLIGHT)),
        }
    }

    /// True when no callers are configured: every request is anonymous.
    pub fn is_open(&self) -> bool {
        self.callers.is_empty()
    }

    /// Identifies the caller of a request to `path` and checks its role and rate limit.
    /// `cert_subject` is the verified client certificate's subject, when mTLS is on.
    pub fn admit(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        cert_subject: Option<&CertSubject>,
    ) -> Result<Option<Caller>, Status> {
        match required_role(path) {
            Some(role) => self.admit_role(role, authorization, cert_subject).map(Some),
            None => Ok(None),
        }
    }

    /// Identifies a caller that needs `role` (for surfaces other than gRPC, such as HTTP
    /// token introspection) and checks its rate limit.
    pub fn admit_role(
        &self,
        role: Role,
        authorization: Option<&[u8]>,
        cert_subject: Option<&CertSubject>,
    ) -> Result<Caller, Status> {
        if self.is_open() {
            return Ok(Caller::anonymous());
        }
        let known = self.identify(authorization, cert_subject)?;
        Self::authorize(known, role)
    }

    /// Identifies a caller that needs `role` by its bare credential, for surfaces where the
    /// `Authorization` header carries someone else's token (`GET /auth/check`, whose gateway
    /// sends its own credential in `X-Sessiond-Credential`), and checks its rate limit.
    pub fn admit_credential(
        &self,
        role: Role,
        credential: Option<&[u8]>,
    ) -> Result<Caller, Status> {
        if self.is_open() {
            return Ok(Caller::anonymous());
        }
        let credential = credential.ok_or_else(|| {
            reject(
                Code::Unauthenticated,
                "CREDENTIAL_MISSING",
                "missing caller credential".into(),
            )
        })?;
        Self::authorize(self.by_credential(credential)?, role)
    }

    /// Checks an identified caller's role and rate limit.
    fn authorize(known: &Known, role: Role) -> Result<Caller, Status> {
        if !known.spec.roles.contains(&role) {
            return Err(reject(
                Code::PermissionDenied,
                "PERMISSION_DENIED",
                format!("caller {} lacks the {} role", known.spec.name, role.name()),
            ));
        }
        if let Some(limiter) = &known.limiter
            && limiter.check().is_err()
        {
            return Err(reject(
                Code::ResourceExhausted,
                "RATE_LIMITED",
                format!("caller {} is over its rate limit", known.spec.name),
            ));
        }
        Ok(known.caller.clone())
    }

    fn identify(
        &self,
        authorization: Option<&[u8]>,
        cert_subject: Option<&CertSubject>,
    ) -> Result<&Known, Status> {
        if let Some(header) = authorization {
            let credential = header
                .strip_prefix(b"Bearer ")
                .or_else(|| header.strip_prefix(b"bearer "))
                .ok_or_else(|| {
                    reject(
                        Code::Unauthenticated,
                        "CREDENTIAL_MALFORMED",
                        "authorization must be `Bearer <credential>`".into(),
                    )
                })?;
            return self.by_credential(credential);
        }
        if let Some(subject) = cert_subject {
            return self
                .by_subject
                .get(&subject.full)
                .or_else(|| {
                    let cn = subject.common_name.as_ref()?;
                    self.by_subject.get(cn)
                })
                .and_then(|&i| self.callers.get(i))
                .ok_or_else(|| {
                    reject(
                        Code::Unauthenticated,
                        "CERTIFICATE_UNKNOWN",
                        "client certificate maps to no caller".into(),
                    )
                });
        }
        Err(reject(
            Code::Unauthenticated,
            "CREDENTIAL_MISSING",
            "missing caller credential".into(),
        ))
    }

    /// The caller whose credential this is.
    fn by_credential(&self, credential: &[u8]) -> Result<&Known, Status> {
        let presented: [u8; 32] = Sha256::digest(credential).into();
        // Compare against every caller, so the time taken does not depend on which matched.
        let mut found = None;
        for (i, known) in self.callers.iter().enumerate() {
            if let Some(stored) = &known.spec.credential_sha256
                && bool::from(stored.ct_eq(&presented))
            {
                found = Some(i);
            }
        }
        found.and_then(|i| self.callers.get(i)).ok_or_else(|| {
            reject(
                Code::Unauthenticated,
                "CREDENTIAL_UNKNOWN",
                "unknown caller credential".into(),
            )
        })
    }

    /// Takes a slot of `budget` for one in-flight request, or refuses when all are taken.
    /// Take it only once the request is admitted, so that a request without credentials
    /// never holds a caller's slot.
    pub fn slot(&self, budget: Budget) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        let slots = match budget {
            Budget::Callers => &self.in_flight,
            Budget::Open => &self.open_in_flight,
        };
        slots.clone().try_acquire_owned().map_err(|_| {
            reject(
                Code::ResourceExhausted,
                "OVERLOADED",
                "too many requests in flight".into(),
            )
        })
    }
}

/// The tower layer that puts an [`Authenticator`] in front of every gRPC service.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer over `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

/// `TYPE=value` with the value escaped as RFC 4514 asks; a value that is not a string is
/// written `#<hex>`.
fn attribute(attr: &x509_parser::x509::AttributeTypeAndValue<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let name = x509_parser::objects::oid2abbrev(attr.attr_type(), registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| attr.attr_type().to_id_string());
    let value = match attr.as_str() {
        Ok(text) => escape_value(text),
        Err(_) => format!("#{}", hex::encode(attr.as_slice())),
    };
    format!("{name}={value}")
}

/// Escapes an attribute value (RFC 4514, section 2.4), control characters included.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A configured subject in the form [`CertSubject::full`] takes: RDNs separated by `", "`,
/// however many spaces the configuration put after each unescaped comma.
fn normalize_subject(configured: &str) -> String {
    let mut out = String::with_capacity(configured.len() + 8);
    let mut chars = configured.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            ',' => {
                out.push(' ');
                while chars.next_if_eq(&' ').is_some() {}
            }
            _ => {}
        }
    }
    out
}

/// The subject of the verified client certificate of a TLS connection, when the client
/// presented one.
fn client_cert_subject(extensions: &http::Extensions) -> Option<CertSubject> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    CertSubject::from_der(certs.first()?.as_ref())
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let subject = client_cert_subject(req.extensions());
        let admitted = self.auth.admit(
            req.uri().path(),
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
            subject.as_ref(),
        );
        // Who the caller is decides the budget: the slot comes after authentication.
        let budget = match admitted {
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
                Budget::Callers
            }
            Ok(None) => Budget::Open,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        let permit = match self.auth.slot(budget) {
            Ok(permit) => permit,
            Err(status) => return Box::pin(async move { Ok(status.into_http()) }),
        };
        // The clone is ready (tower's usual swap), the original stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(req).await;
            drop(permit);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, credential: &str, roles: &[Role]) -> CallerSpec {
        CallerSpec {
            name: name.into(),
            credential_sha256: Some(hash_credential(credential)),
            client_cert_subject: None,
            roles: roles.to_vec(),
            rate_limit: None,
        }
    }

    #[test]
    fn configured_subjects_take_the_rendered_form() {
        assert_eq!(normalize_subject("CN=gateway"), "CN=gateway");
        assert_eq!(
            normalize_subject("CN=gateway,O=example"),
            "CN=gateway, O=example"
        );
        assert_eq!(
            normalize_subject("CN=gateway,  O=example"),
            "CN=gateway, O=example"
        );
        assert_eq!(
            normalize_subject(r"CN=gateway, O=Example\, Inc."),
            r"CN=gateway, O=Example\, Inc."
        );
        assert_eq!(escape_value("Example, Inc."), r"Example\, Inc.");
        assert_eq!(escape_value(r#" #a+b;"<c>\ "#), r#"\ #a\+b\;\"\<c\>\\\ "#);
        assert_eq!(escape_value("a\nb"), r"a\0Ab");
    }

    #[test]
    fn an_attribute_value_cannot_pose_as_another_attribute() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, CN=gateway");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "intern");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("certificate");
        let subject = CertSubject::from_der(cert.der()).expect("parses");
        assert_eq!(subject.full, r"O=Example\, CN=gateway, CN=intern");
        assert_eq!(subject.common_name.as_deref(), Some("CN=intern"));

        let mut gateway = spec("gateway", "unused", &[Role::Validator]);
        gateway.client_cert_subject = Some("CN=gateway".into());
        let auth = Authenticator::new(vec![gateway], 10);
        let status = auth
            .admit_role(Role::Validator, None, Some(&subject))
            .expect_err("the intern is not the gateway");
        assert_eq!(status.code(), Code::Unauthenticated);
    }

    #[test]
    fn the_open_services_have_a_budget_of_their_own() {
        let auth = Authenticator::new(Vec::new(), 1);
        let caller = auth.slot(Budget::Callers).expect("the callers' one slot");
        let refused = auth
            .slot(Budget::Callers)
            .expect_err("the callers' budget is spent");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let open: Vec<_> = (0..OPEN_MAX_IN_FLIGHT)
            .map(|_| auth.slot(Budget::Open).expect("an open slot"))
            .collect();
        assert!(
            auth.slot(Budget::Open).is_err(),
            "the open budget is bounded"
        );
        drop(open);
        drop(caller);
        assert!(auth.slot(Budget::Callers).is_ok(), "a freed slot is reused");
        assert!(
            auth.slot(Budget::Open).is_ok(),
            "a freed open slot is reused"
        );
    }

    #[test]
    fn roles_by_method() {
        assert_eq!(
            required_role("/sessiond.v1.SessionService/Issue"),
            Some(Role::Issuer)
        );
        assert_eq!(
            required_role("/sessiond.v1.SessionService/Validate"),
            Some(Role::Validator)
        );
        assert_eq!(
            required_role("/sessiond.v1.SessionService/AdminList"),
            Some(Role::Admin)
        );
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn credentials_and_roles() {
        let auth = Authenticator::new(vec![spec("login", "s3cret", &[Role::Issuer])], 10);
        let issue = "/sessiond.v1.SessionService/Issue";
        let admin = "/sessiond.v1.SessionService/AdminList";
        let ok = auth
            .admit(issue, Some(b"Bearer s3cret"), None)
            .expect("admitted");
        assert_eq!(ok.map(|c| c.name().to_owned()), Some("login".into()));
        assert_eq!(
            auth.admit(issue, None, None).map_err(|s| s.code()).err(),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            auth.admit(issue, Some(b"Bearer nope"), None)
                .map_err(|s| s.code())
                .err(),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            auth.admit(admin, Some(b"Bearer s3cret"), None)
                .map_err(|s| s.code())
                .err(),
            Some(Code::PermissionDenied)
        );
        assert!(
            auth.admit("/grpc.health.v1.Health/Check", None, None)
                .expect("open")
                .is_none()
        );
    }

    #[test]
    fn bare_credentials_for_the_gateway_header() {
        let auth = Authenticator::new(
            vec![
                spec("gateway", "g4te", &[Role::Validator]),
                spec("login", "s3cret", &[Role::Issuer]),
            ],
            10,
        );
        let ok = auth
            .admit_credential(Role::Validator, Some(b"g4te"))
            .expect("admitted");
        assert_eq!(ok.name(), "gateway");
        let code = |r: Result<Caller, Status>| r.map_err(|s| s.code()).err();
        assert_eq!(
            code(auth.admit_credential(Role::Validator, None)),
            Some(Code::Unauthenticated)
        );
        // The header holds the credential itself, not an authorization value.
        assert_eq!(
            code(auth.admit_credential(Role::Validator, Some(b"Bearer g4te"))),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code(auth.admit_credential(Role::Validator, Some(b"s3cret"))),
            Some(Code::PermissionDenied)
        );
        let open = Authenticator::new(Vec::new(), 10);
        assert_eq!(
            open.admit_credential(Role::Validator, None)
                .expect("open")
                .name(),
            "anonymous"
        );
    }
}
