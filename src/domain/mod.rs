//! The domain: sessions, tokens, validation and revocation rules.
//!
//! It decides; it never sees protobuf or tonic types, and it persists only through
//! `crate::store::Store`.

pub mod access;
pub mod audit;
pub mod background;
pub mod cache;
pub mod client;
pub mod device;
pub mod error;
pub mod jwt_crypto;
pub mod last_seen;
pub mod page_token;
pub mod refresh;
pub mod revoke;
pub mod rotation;
pub mod secrets;
pub mod sessions;
pub mod token_cache;
pub mod validate;
pub mod view;

pub use error::{DomainError, TokenProblem};
pub use sessions::{IssueRequest, Issued, Policy, Sessions, SignInRequest, TokenPair};
pub use validate::Verdict;
pub use view::{Session, ValidToken};
