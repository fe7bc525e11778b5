//! Access tokens: short-lived JWTs signed with the keyring's signing key.
//!
//! Besides the registered claims (`sub`, `iat`, `exp`, `iss`) a token carries `sid` (its
//! session), `tid` (its tenant, when set) and `iat_us`, the issue instant in microseconds,
//! so "not before" revocations compare at sub-second precision.
//!
//! An ECDSA signature `(r, s)` has a twin `(r, n − s)` that verifies as well, so an `ES256`
//! token would have two valid strings (a cache keyed by the string, a deny-list of token
//! strings, or a log search would take them for two tokens). Only the low-S form (`s ≤ n/2`)
//! is ever issued or accepted: [`sign`] normalizes what the signer produces, and [`verify`]
//! refuses a high-S signature as a bad signature before checking it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::{DomainError, TokenProblem};
use super::ids::{SessionId, TenantId, UserId};
use super::limits::MAX_TOKEN_BYTES;
use super::secrets::Keyring;
use super::time::Timestamp;

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    tid: String,
    iat: i64,
    exp: i64,
    iss: String,
    iat_us: i64,
}

/// What a verified access token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessClaims {
    /// The session it belongs to.
    pub session_id: SessionId,
    /// The user it was issued to.
    pub user_id: UserId,
    /// The tenant, or empty.
    pub tenant_id: TenantId,
    /// When it was issued, to the microsecond.
    pub issued_at: Timestamp,
    /// When it expires (whole seconds, as in the token).
    pub expires_at: Timestamp,
}

/// Signs a token for `claims`; `expires_at` is rounded down to whole seconds, so the token
/// never outlives the instant it was given.
pub fn sign(keys: &Keyring, issuer: &str, claims: &AccessClaims) -> Result<String, DomainError> {
    let mut header = Header::new(keys.signing.algorithm);
    header.kid = Some(keys.signing.kid.clone());
    let body = Claims {
        sub: claims.user_id.as_str().to_owned(),
        sid: claims.session_id.to_string(),
        tid: claims.tenant_id.as_str().to_owned(),
        iat: claims.issued_at.as_secs(),
        exp: claims.expires_at.as_secs(),
        iss: issuer.to_owned(),
        iat_us: claims.issued_at.as_micros(),
    };
    let token = jsonwebtoken::encode(&header, &body, &keys.signing.encoding)
        .map_err(|e| DomainError::Internal(format!("cannot sign access token: {e}")))?;
    match keys.signing.algorithm {
        Algorithm::ES256 => low_s(token),
        _ => Ok(token),
    }
}

/// Verifies a token's signature and issuer and decodes its claims. Expiry is not checked
/// here: callers compare `expires_at` with the clock, so a cached result stays correct.
pub fn verify(keys: &Keyring, issuer: &str, token: &str) -> Result<AccessClaims, TokenProblem> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(TokenProblem::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Malformed)?;
    let kid = header.kid.ok_or(TokenProblem::Malformed)?;
    // A kid we do not hold is a signature we cannot check: the token is not ours.
    let key = keys.verifying.get(&kid).ok_or(TokenProblem::BadSignature)?;
    if header.alg != key.algorithm {
        return Err(TokenProblem::BadSignature);
    }
    if key.algorithm == Algorithm::ES256 {
        check_low_s(token)?;
    }
    let mut validation = Validation::new(key.algorithm);
    validation.validate_exp = false;
    validation.leeway = 0;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(|e| {
        match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenProblem::BadSignature,
            _ => TokenProblem::Malformed,
        }
    })?;
    let c = data.claims;
    let session_id = c
        .sid
        .parse::<SessionId>()
        .map_err(|_| TokenProblem::Malformed)?;
    let user_id = UserId::parse("sub", &c.sub).map_err(|_| TokenProblem::Malformed)?;
    let tenant_id = TenantId::parse("tid", &c.tid).map_err(|_| TokenProblem::Malformed)?;
    Ok(AccessClaims {
        session_id,
        user_id,
        tenant_id,
        issued_at: Timestamp::from_micros(c.iat_us),
        expires_at: Timestamp::from_micros(c.exp.saturating_mul(1_000_000)),
    })
}

/// The ES256 signature of a JWS, decoded (`r ‖ s`, 32 bytes each).
fn es256_signature(token: &str) -> Result<(&str, p256::ecdsa::Signature), TokenProblem> {
    let (signing_input, encoded) = token.rsplit_once('.').ok_or(TokenProblem::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenProblem::Malformed)?;
    let signature =
        p256::ecdsa::Signature::from_slice(&bytes).map_err(|_| TokenProblem::BadSignature)?;
    Ok((signing_input, signature))
}

/// Replaces a high-S signature of a freshly signed ES256 token by its low-S twin.
fn low_s(token: String) -> Result<String, DomainError> {
    let (signing_input, signature) = es256_signature(&token)
        .map_err(|_| DomainError::Internal("the signer produced no ES256 signature".into()))?;
    Ok(match signature.normalize_s() {
        Some(low) => format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(low.to_bytes())),
        None => token,
    })
}

/// Refuses an ES256 signature whose `s` is in the upper half of the group order.
fn check_low_s(token: &str) -> Result<(), TokenProblem> {
    let (_, signature) = es256_signature(token)?;
    match signature.normalize_s() {
        Some(_) => Err(TokenProblem::BadSignature),
        None => Ok(()),
    }
}
