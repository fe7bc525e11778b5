//! Caller authentication, for every surface: who a request comes from, which roles it holds,
//! whether its rate limit and the in-flight budgets let it through.
//!
//! It knows neither gRPC nor HTTP: it reads credentials as bytes and answers a typed
//! [`Refusal`], which `api::status` renders as a `Status` and `http::error` as an HTTP
//! answer. The role of every RPC is one exhaustive match in [`rpc`].

pub mod authenticator;
pub mod caller;
pub mod refusal;
pub mod role;
pub mod rpc;
pub mod subject;

pub use authenticator::{Authenticator, Budget, OPEN_MAX_IN_FLIGHT};
pub use caller::{CallerSpec, hash_credential};
pub use refusal::{Refusal, RefusalKind};
pub use role::Role;
pub use rpc::Rpc;
pub use subject::CertSubject;
