//! The callers a configuration admits.

use std::num::NonZeroU32;

use sha2::{Digest, Sha256};

use super::Role;

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

/// SHA-256 of a credential, as stored in the configuration.
pub fn hash_credential(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}
