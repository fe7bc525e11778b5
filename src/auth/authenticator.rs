//! Who a request comes from, whether it may proceed, and the in-flight budgets.
//!
//! Callers are services. Each presents a bearer credential (or a client certificate under
//! mTLS); the credential is hashed (SHA-256) and compared in constant time with every
//! configured caller's stored hash, so neither the credential nor how close a guess came
//! leaks through timing. Its roles decide what it may call, its rate limit how often. With no
//! callers configured every request passes as `anonymous` (the server then only listens on
//! loopback). A request is identified first and takes an in-flight slot only once it is
//! admitted, so requests that present no valid credential can never use up the slots of
//! callers; requests to the open services draw from a small budget of their own
//! ([`OPEN_MAX_IN_FLIGHT`]).

use std::collections::HashMap;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::subject::normalize_subject;
use super::{CallerSpec, CertSubject, Refusal, Role, Rpc};
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

    /// Identifies the caller of a gRPC request to `path` and checks its role and rate limit;
    /// `None` for the open services and for paths no service answers (the router answers
    /// those itself).
    /// `cert_subject` is the verified client certificate's subject, when mTLS is on.
    pub fn admit(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        cert_subject: Option<&CertSubject>,
    ) -> Result<Option<Caller>, Refusal> {
        match Rpc::from_path(path).and_then(Rpc::role) {
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
    ) -> Result<Caller, Refusal> {
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
    ) -> Result<Caller, Refusal> {
        if self.is_open() {
            return Ok(Caller::anonymous());
        }
        let credential = credential.ok_or(Refusal::CredentialMissing)?;
        Self::authorize(self.by_credential(credential)?, role)
    }

    /// Checks an identified caller's role and rate limit.
    fn authorize(known: &Known, role: Role) -> Result<Caller, Refusal> {
        if !known.spec.roles.contains(&role) {
            return Err(Refusal::PermissionDenied {
                caller: known.spec.name.clone(),
                role,
            });
        }
        if let Some(limiter) = &known.limiter
            && limiter.check().is_err()
        {
            return Err(Refusal::RateLimited {
                caller: known.spec.name.clone(),
            });
        }
        Ok(known.caller.clone())
    }

    fn identify(
        &self,
        authorization: Option<&[u8]>,
        cert_subject: Option<&CertSubject>,
    ) -> Result<&Known, Refusal> {
        if let Some(header) = authorization {
            let credential = header
                .strip_prefix(b"Bearer ")
                .or_else(|| header.strip_prefix(b"bearer "))
                .ok_or(Refusal::CredentialMalformed)?;
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
                .ok_or(Refusal::CertificateUnknown);
        }
        Err(Refusal::CredentialMissing)
    }

    /// The caller whose credential this is.
    fn by_credential(&self, credential: &[u8]) -> Result<&Known, Refusal> {
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
        found
            .and_then(|i| self.callers.get(i))
            .ok_or(Refusal::CredentialUnknown)
    }

    /// Takes a slot of `budget` for one in-flight request, or refuses when all are taken.
    /// Take it only once the request is admitted, so that a request without credentials
    /// never holds a caller's slot.
    pub fn slot(&self, budget: Budget) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        let slots = match budget {
            Budget::Callers => &self.in_flight,
            Budget::Open => &self.open_in_flight,
        };
        slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Overloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{RefusalKind, hash_credential};

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
    fn the_open_services_have_a_budget_of_their_own() {
        let auth = Authenticator::new(Vec::new(), 1);
        let caller = auth.slot(Budget::Callers).expect("the callers' one slot");
        let refused = auth
            .slot(Budget::Callers)
            .expect_err("the callers' budget is spent");
        assert_eq!(refused, Refusal::Overloaded);
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
    fn credentials_and_roles() {
        let auth = Authenticator::new(vec![spec("login", "s3cret", &[Role::Issuer])], 10);
        let issue = "/sessiond.v1.SessionService/Issue";
        let admin = "/sessiond.v1.SessionService/AdminList";
        let ok = auth
            .admit(issue, Some(b"Bearer s3cret"), None)
            .expect("admitted");
        assert_eq!(ok.map(|c| c.name().to_owned()), Some("login".into()));
        assert_eq!(
            auth.admit(issue, None, None).map_err(|r| r.kind()).err(),
            Some(RefusalKind::Unauthenticated)
        );
        assert_eq!(
            auth.admit(issue, Some(b"Bearer nope"), None)
                .map_err(|r| r.kind())
                .err(),
            Some(RefusalKind::Unauthenticated)
        );
        assert_eq!(
            auth.admit(admin, Some(b"Bearer s3cret"), None)
                .map_err(|r| r.kind())
                .err(),
            Some(RefusalKind::Forbidden)
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
        let code = |r: Result<Caller, Refusal>| r.map_err(|r| r.kind()).err();
        assert_eq!(
            code(auth.admit_credential(Role::Validator, None)),
            Some(RefusalKind::Unauthenticated)
        );
        // The header holds the credential itself, not an authorization value.
        assert_eq!(
            code(auth.admit_credential(Role::Validator, Some(b"Bearer g4te"))),
            Some(RefusalKind::Unauthenticated)
        );
        assert_eq!(
            code(auth.admit_credential(Role::Validator, Some(b"s3cret"))),
            Some(RefusalKind::Forbidden)
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
