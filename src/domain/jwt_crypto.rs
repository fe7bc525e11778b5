//! jsonwebtoken's crypto provider for this process: Ed25519 public keys parsed once.
//!
//! jsonwebtoken's RustCrypto provider builds an `ed25519_dalek::VerifyingKey` from the key's
//! 32 bytes inside every `decode`, and that is a point decompression (a field square root):
//! ~4.7 µs of a ~40 µs token check on the benchmark machine, paid by every first-sight
//! `Validate`. The provider installed here keeps the parsed keys, a handful (the keyring's
//! current and retired ones), and hands every other algorithm and every other use to the
//! RustCrypto provider unchanged. The verification itself is the same call
//! (`VerifyingKey::verify`), so what verifies and what does not is unchanged.

use std::sync::{Once, OnceLock};

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, rust_crypto};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::{Algorithm, DecodingKey};

/// More parsed keys than any keyring holds; past it a key is parsed again, never refused.
const MAX_PARSED: usize = 256;

static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
static PARSED: OnceLock<quick_cache::sync::Cache<[u8; 32], ed25519_dalek::VerifyingKey>> =
    OnceLock::new();
static INSTALL: Once = Once::new();

/// Makes this module's provider jsonwebtoken's for the whole process. Idempotent; called
/// when a keyring is built, before any token is checked with it. If something in the
/// process picked a provider first, that one stays, and only the saving is lost.
pub fn install() {
    INSTALL.call_once(|| {
        let provider = PROVIDER.get_or_init(|| CryptoProvider {
            verifier_factory: verifier,
            ..rust_crypto::DEFAULT_PROVIDER.clone()
        });
        if provider.install_default().is_err() {
            tracing::warn!(
                "another JWT crypto provider was installed first; Ed25519 keys are parsed per check"
            );
        }
    });
}

/// Whether the Ed25519 public key `bytes` is held parsed.
#[cfg(test)]
fn is_parsed(bytes: &[u8; 32]) -> bool {
    PARSED.get().is_some_and(|cache| cache.get(bytes).is_some())
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if *algorithm != Algorithm::EdDSA {
        return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key);
    }
    let bytes: [u8; 32] = key
        .try_get_as_bytes()?
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or(ErrorKind::InvalidEddsaKey)?;
    let parsed = PARSED.get_or_init(|| quick_cache::sync::Cache::new(MAX_PARSED));
    let key = match parsed.get(&bytes) {
        Some(key) => key,
        None => {
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| ErrorKind::InvalidEddsaKey)?;
            parsed.insert(bytes, key);
            key
        }
    };
    Ok(Box::new(Ed25519Verifier(key)))
}

/// An Ed25519 verifier over an already parsed key.
struct Ed25519Verifier(ed25519_dalek::VerifyingKey);

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Ed25519Verifier {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        let signature = ed25519_dalek::Signature::from_slice(signature)?;
        ed25519_dalek::Verifier::verify(&self.0, msg, &signature)
    }
}

impl JwtVerifier for Ed25519Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::access::tests::{claims, keys};
    use crate::domain::access::{self, Grant};
    use crate::domain::error::TokenProblem;

    #[test]
    fn a_keyrings_ed25519_key_is_parsed_once_and_checks_as_before() {
        let keys = keys();
        let kid = &keys.signing.kid;
        let public: [u8; 32] = keys.verifying[kid]
            .decoding
            .try_get_as_bytes()
            .expect("raw key")
            .try_into()
            .expect("32 bytes");
        let grant = Some(Grant::new("client-1", "sessiond"));
        let token = access::sign(&keys, "sessiond", &claims(grant)).expect("sign");
        assert!(!is_parsed(&public), "parsed before any check");

        let verified = access::verify(&keys, "sessiond", "sessiond", &token).expect("verifies");
        assert_eq!(verified.user_id.as_str(), "user-1");
        assert!(
            is_parsed(&public),
            "the check did not go through this provider"
        );

        // A flipped bit in the signature, and one in the signed claims: both refused.
        let (input, signature) = token.rsplit_once('.').expect("jws");
        let mut forged = signature.as_bytes().to_vec();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        let forged = format!("{input}.{}", String::from_utf8(forged).expect("ascii"));
        assert!(matches!(
            access::verify(&keys, "sessiond", "sessiond", &forged),
            Err(TokenProblem::BadSignature)
        ));
        let (header, body) = input.split_once('.').expect("jws");
        let mut altered = body.as_bytes().to_vec();
        altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
        let altered = format!(
            "{header}.{}.{signature}",
            String::from_utf8(altered).expect("ascii")
        );
        assert!(access::verify(&keys, "sessiond", "sessiond", &altered).is_err());
    }

    #[test]
    fn bytes_that_are_no_ed25519_key_are_refused_not_kept() {
        install();
        // The y coordinate 2 has no x on the curve: decompression fails.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert!(ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_err());
        let refused = verifier(&Algorithm::EdDSA, &DecodingKey::from_ed_der(&bytes));
        assert!(refused.is_err());
        assert!(!is_parsed(&bytes));
    }
}
