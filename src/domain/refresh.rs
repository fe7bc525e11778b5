//! Refresh tokens: opaque to clients, self-authenticating to the service.
//!
//! Layout before base64url: version (1) ‖ session id (16) ‖ generation (4, big-endian) ‖
//! secret (32 random bytes) ‖ tag (32, HMAC-SHA256 of all before it under a pepper-derived key).
//! A token whose tag fails is rejected before any store access, so forged tokens can neither
//! probe nor revoke sessions. The store keeps only a keyed hash of the current token.
//!
//! The secret is derived: HMAC-SHA256 over session id ‖ generation ‖ the session's stored salt,
//! under a key derived from the pepper. So the service can compute a generation's token again
//! (a replay inside the refresh grace gets the very same successor, whichever replica answers
//! and whichever racer won the compare-and-set), while a reader of the store, who has the salt
//! and the hashes but not the pepper, can compute no token at all.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use rand::RngCore;

use super::error::TokenProblem;
use super::secrets::Keyring;
use crate::model::ids::SessionId;
use crate::model::limits::MAX_TOKEN_BYTES;
use crate::model::records::{RefreshHash, RefreshSalt};

const VERSION: u8 = 1;
const BODY_LEN: usize = 1 + 16 + 4 + 32;
const TOKEN_LEN: usize = BODY_LEN + 32;

/// A parsed, authenticated refresh token.
#[derive(Clone)]
pub struct RefreshToken {
    /// The session it refreshes.
    pub session_id: SessionId,
    /// Its rotation generation; only the current one is usable.
    pub generation: u32,
    body: [u8; BODY_LEN],
}

impl RefreshToken {
    /// A fresh random salt for a session's token chain.
    pub fn new_salt() -> RefreshSalt {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        RefreshSalt(salt)
    }

    /// The token of `generation` of session `session_id`, whose chain is salted with `salt`:
    /// the same inputs give the same token, on every replica.
    pub fn derive(
        keys: &Keyring,
        session_id: SessionId,
        generation: u32,
        salt: &RefreshSalt,
    ) -> Self {
        let mut body = [0u8; BODY_LEN];
        body[0] = VERSION;
        body[1..17].copy_from_slice(session_id.as_bytes());
        body[17..21].copy_from_slice(&generation.to_be_bytes());
        let mut mac = keys.refresh_chain();
        mac.update(&body[..21]);
        mac.update(&salt.0);
        body[21..].copy_from_slice(&mac.finalize().into_bytes());
        Self {
            session_id,
            generation,
            body,
        }
    }

    /// The text handed to the client.
    pub fn encode(&self, keys: &Keyring) -> String {
        let mut mac = keys.refresh_tag();
        mac.update(&self.body);
        let tag = mac.finalize().into_bytes();
        let mut raw = [0u8; TOKEN_LEN];
        raw[..BODY_LEN].copy_from_slice(&self.body);
        raw[BODY_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Parses and authenticates client text. Anything that is not a token this service made
    /// is `Malformed` or `BadSignature`; the tag is compared in constant time.
    pub fn parse(keys: &Keyring, text: &str) -> Result<Self, TokenProblem> {
        if text.is_empty() || text.len() > MAX_TOKEN_BYTES {
            return Err(TokenProblem::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| TokenProblem::Malformed)?;
        let raw: [u8; TOKEN_LEN] = raw.try_into().map_err(|_| TokenProblem::Malformed)?;
        let (body, tag) = raw.split_at(BODY_LEN);
        if body.first() != Some(&VERSION) {
            return Err(TokenProblem::Malformed);
        }
        let mut mac = keys.refresh_tag();
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| TokenProblem::BadSignature)?;
        let body: [u8; BODY_LEN] = body.try_into().map_err(|_| TokenProblem::Malformed)?;
        let sid: [u8; 16] = body[1..17]
            .try_into()
            .map_err(|_| TokenProblem::Malformed)?;
        let generation: [u8; 4] = body[17..21]
            .try_into()
            .map_err(|_| TokenProblem::Malformed)?;
        Ok(Self {
            session_id: SessionId::from_uuid(uuid::Uuid::from_bytes(sid)),
            generation: u32::from_be_bytes(generation),
            body,
        })
    }

    /// The keyed hash the store keeps in place of the token.
    pub fn hash(&self, keys: &Keyring) -> RefreshHash {
        let mut mac = keys.refresh_store();
        mac.update(&self.body);
        RefreshHash(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys() -> Keyring {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::keystore::load_or_create(dir.path()).expect("keys")
    }

    #[test]
    fn derived_tokens_repeat_only_for_the_same_inputs() {
        let keys = keys();
        let id = SessionId::new();
        let salt = RefreshToken::new_salt();
        let a = RefreshToken::derive(&keys, id, 3, &salt).encode(&keys);
        assert_eq!(a, RefreshToken::derive(&keys, id, 3, &salt).encode(&keys));
        assert_ne!(a, RefreshToken::derive(&keys, id, 4, &salt).encode(&keys));
        let other_salt = RefreshToken::new_salt();
        assert_ne!(
            a,
            RefreshToken::derive(&keys, id, 3, &other_salt).encode(&keys)
        );
        assert_ne!(
            a,
            RefreshToken::derive(&keys, SessionId::new(), 3, &salt).encode(&keys)
        );
        // Another pepper, the same stored salt: nothing in common.
        let elsewhere = self::keys();
        assert_ne!(
            a,
            RefreshToken::derive(&elsewhere, id, 3, &salt).encode(&elsewhere)
        );
    }

    #[test]
    fn round_trip_and_tamper() {
        let keys = keys();
        let id = SessionId::new();
        let token = RefreshToken::derive(&keys, id, 7, &RefreshToken::new_salt());
        let text = token.encode(&keys);
        let parsed = RefreshToken::parse(&keys, &text).expect("parses");
        assert_eq!((parsed.session_id, parsed.generation), (id, 7));
        assert_eq!(parsed.hash(&keys), token.hash(&keys));

        let mut raw = URL_SAFE_NO_PAD.decode(&text).expect("b64");
        raw[20] ^= 1; // the generation's last byte
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            RefreshToken::parse(&keys, &forged).err(),
            Some(TokenProblem::BadSignature)
        );
        assert_eq!(
            RefreshToken::parse(&keys, "").err(),
            Some(TokenProblem::Malformed)
        );
        assert_eq!(
            RefreshToken::parse(&keys, &text[1..]).err(),
            Some(TokenProblem::Malformed)
        );
        // Another server's pepper does not verify.
        assert_eq!(
            RefreshToken::parse(&self::keys(), &text).err(),
            Some(TokenProblem::BadSignature)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let keys = keys();
            prop_assert!(RefreshToken::parse(&keys, &s).is_err());
            prop_assert!(crate::domain::access::verify(&keys, "sessiond", "sessiond", &s).is_err());
        }
    }
}
