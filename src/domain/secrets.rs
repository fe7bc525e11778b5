//! Server-side secrets: the signing keys and the pepper, and the keys derived from it.
//!
//! The pepper never leaves the process. Separate keys are derived from it for each use, so a
//! value computed for one purpose (a refresh token's tag) is useless for another (the stored
//! hash, a page token).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;
use sha2::Sha256;

/// HMAC-SHA256, keyed once and cloned per use.
pub type HmacKey = Hmac<Sha256>;

/// A key that signs new access tokens, with the token header it writes.
pub struct SigningKey {
    /// The key id carried in every token's header.
    pub kid: String,
    /// The algorithm of this key.
    pub algorithm: Algorithm,
    /// The private key.
    pub encoding: EncodingKey,
    /// An Ed25519 key parsed once: `jsonwebtoken::encode` parses the PKCS#8 document and
    /// derives the public point again on every call, a sixth of an `Issue`.
    ed25519: Option<ed25519_dalek::SigningKey>,
    /// The base64url JOSE header of every token this key signs.
    header: String,
}

impl SigningKey {
    /// A signing key for tokens of type `typ`; `ed25519` is the parsed key when `algorithm`
    /// is EdDSA.
    pub fn new(
        kid: String,
        algorithm: Algorithm,
        encoding: EncodingKey,
        ed25519: Option<ed25519_dalek::SigningKey>,
        typ: &str,
    ) -> Result<Self, String> {
        if ed25519.is_some() != (algorithm == Algorithm::EdDSA) {
            return Err("an Ed25519 key must come parsed, and only an Ed25519 key".into());
        }
        let mut header = Header::new(algorithm);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.clone());
        let json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        Ok(Self {
            kid,
            algorithm,
            encoding,
            ed25519,
            header: URL_SAFE_NO_PAD.encode(json),
        })
    }

    /// `claims` as a signed JWS in compact form, as `jsonwebtoken::encode` writes it with
    /// this key's header (byte for byte: Ed25519 signatures are deterministic).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let body = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let mut jws = String::with_capacity(self.header.len() + body.len() * 4 / 3 + 92);
        jws.push_str(&self.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&body, &mut jws);
        let signature = match &self.ed25519 {
            Some(key) => URL_SAFE_NO_PAD.encode(key.sign(jws.as_bytes()).to_bytes()),
            None => jsonwebtoken::crypto::sign(jws.as_bytes(), &self.encoding, self.algorithm)
                .map_err(|e| e.to_string())?,
        };
        jws.push('.');
        jws.push_str(&signature);
        Ok(jws)
    }
}

/// A key that verifies access tokens, current or retired.
pub struct VerifyingKey {
    /// The algorithm of this key; a token claiming another is rejected.
    pub algorithm: Algorithm,
    /// The public key.
    pub decoding: DecodingKey,
    /// The public key as a JWK, for the JWKS endpoint.
    pub jwk: serde_json::Value,
}

/// Every key the service holds.
pub struct Keyring {
    /// The key new tokens are signed with.
    pub signing: SigningKey,
    /// Every key tokens may be verified with, by `kid` (the signing key's included).
    pub verifying: HashMap<String, Arc<VerifyingKey>>,
    refresh_tag: HmacKey,
    refresh_store: HmacKey,
    refresh_chain: HmacKey,
    page_token: HmacKey,
}

impl Keyring {
    /// Builds a keyring; the derived keys come from `pepper` (at least 32 bytes).
    pub fn new(
        signing: SigningKey,
        verifying: HashMap<String, Arc<VerifyingKey>>,
        pepper: &[u8],
    ) -> Result<Self, String> {
        // Before any token is checked with these keys: see `jwt_crypto`.
        super::jwt_crypto::install();
        if pepper.len() < 32 {
            return Err("the pepper must be at least 32 bytes".into());
        }
        if !verifying.contains_key(&signing.kid) {
            return Err(format!(
                "no verifying key for the signing key {}",
                signing.kid
            ));
        }
        Ok(Self {
            signing,
            verifying,
            refresh_tag: derive(pepper, b"sessiond refresh-token tag v1")?,
            refresh_store: derive(pepper, b"sessiond refresh-token store v1")?,
            refresh_chain: derive(pepper, b"sessiond refresh-token chain v1")?,
            page_token: derive(pepper, b"sessiond page-token v1")?,
        })
    }

    /// The key that tags refresh tokens.
    pub fn refresh_tag(&self) -> HmacKey {
        self.refresh_tag.clone()
    }

    /// The key that hashes refresh tokens for storage.
    pub fn refresh_store(&self) -> HmacKey {
        self.refresh_store.clone()
    }

    /// The key a session's refresh tokens are derived under, from its stored salt.
    pub fn refresh_chain(&self) -> HmacKey {
        self.refresh_chain.clone()
    }

    /// The key that authenticates page tokens.
    pub fn page_token(&self) -> HmacKey {
        self.page_token.clone()
    }
}

fn derive(pepper: &[u8], label: &[u8]) -> Result<HmacKey, String> {
    let mut mac = HmacKey::new_from_slice(pepper).map_err(|e| e.to_string())?;
    mac.update(label);
    let derived = mac.finalize().into_bytes();
    HmacKey::new_from_slice(&derived).map_err(|e| e.to_string())
}
