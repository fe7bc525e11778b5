//! Access tokens: short-lived JWTs signed with the keyring's signing key, in the profile of
//! RFC 9068 (JWT access tokens).
//!
//! Besides the registered claims (`sub`, `iat`, `exp`, `iss`, `aud`, `jti`) a token carries
//! `client_id` (the calling service that obtained it), `sid` (its session), `tid` (its tenant,
//! when set) and `iat_us`, the issue instant in microseconds, so "not before" revocations
//! compare at sub-second precision; and the sign-in behind it (RFC 9470): `auth_time` (whole
//! seconds), with `acr` and `amr` when the login service gave them; and `sgen`, the session's
//! refresh generation it was minted at, by which a replica knows its cached copy of the
//! session predates the token. Its header says `typ` `at+jwt`, so that no other JWT signed
//! with the same key (an ID token, say) can pass for an access token (RFC 9068 §4).
//!
//! An earlier version signed tokens with `typ` `JWT` and without `aud`, `jti` and `client_id`.
//! [`verify`] still accepts those ([`AccessClaims::grant`] is then `None`) so that an upgrade
//! does not sign anyone out: they are short-lived and stop mattering once they expire. Any
//! other `typ` is refused. A token whose `aud` is not this service's audience is refused too,
//! whatever its `typ`.
//!
//! An ECDSA signature `(r, s)` has a twin `(r, n − s)` that verifies as well, so an `ES256`
//! token would have two valid strings (a cache keyed by the string, a deny-list of token
//! strings, or a log search would take them for two tokens). Only the low-S form (`s ≤ n/2`)
//! is ever issued or accepted: [`sign`] normalizes what the signer produces, and [`verify`]
//! refuses a high-S signature as a bad signature before checking it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{DomainError, TokenProblem};
use super::secrets::Keyring;
use crate::model::ids::{SessionId, TenantId, UserId};
use crate::model::limits::{MAX_ID_BYTES, MAX_TOKEN_BYTES};
use crate::model::time::Timestamp;

/// The `typ` of the tokens this version signs (RFC 9068 §2.1).
pub const TYP: &str = "at+jwt";
/// The `typ` of the tokens an earlier version signed, still accepted until they expire.
pub const LEGACY_TYP: &str = "JWT";

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    acr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sgen: Option<u32>,
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
    /// Its RFC 9068 claims. Every token this version signs has them; `None` marks a token an
    /// earlier version signed (`typ` `JWT`).
    pub grant: Option<Grant>,
    /// When the user authenticated (whole seconds, as in the token); `None` on a token an
    /// earlier version signed.
    pub auth_time: Option<Timestamp>,
    /// The sign-in's authentication context class reference, or empty.
    pub acr: String,
    /// The sign-in's authentication methods.
    pub amr: Vec<String>,
    /// `sgen`: the session's refresh generation when the token was minted, so a replica can
    /// tell its cached copy of the session is older than the token; `None` on a token an
    /// earlier version signed.
    pub refresh_generation: Option<u32>,
}

/// The RFC 9068 claims that say which token this is, who obtained it and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// `jti`: unique per token (a random UUID), so two tokens minted in the same microsecond
    /// for the same session are still told apart.
    pub token_id: Uuid,
    /// `client_id`: the name of the calling service that obtained the token through `Issue` or
    /// `Refresh` (`anonymous` when no callers are configured).
    pub client_id: String,
    /// `aud`: the audience the token is for (`--audience`).
    pub audience: String,
}

impl Grant {
    /// The claims of a new token obtained by `client_id` for `audience`, with a fresh `jti`.
    pub fn new(client_id: &str, audience: &str) -> Self {
        Self {
            token_id: Uuid::new_v4(),
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
        }
    }
}

/// Signs an RFC 9068 token for `claims`; `expires_at` is rounded down to whole seconds, so the
/// token never outlives the instant it was given. Claims without a [`Grant`] are refused: this
/// version only ever signs `at+jwt` tokens.
pub fn sign(keys: &Keyring, issuer: &str, claims: &AccessClaims) -> Result<String, DomainError> {
    let grant = claims.grant.as_ref().ok_or_else(|| {
        DomainError::Internal("refusing to sign an access token without its grant".into())
    })?;
    let body = Claims {
        sub: claims.user_id.as_str().to_owned(),
        sid: claims.session_id.to_string(),
        tid: claims.tenant_id.as_str().to_owned(),
        iat: claims.issued_at.as_secs(),
        exp: claims.expires_at.as_secs(),
        iss: issuer.to_owned(),
        iat_us: claims.issued_at.as_micros(),
        aud: Some(grant.audience.clone()),
        jti: Some(grant.token_id.to_string()),
        client_id: Some(grant.client_id.clone()),
        auth_time: claims.auth_time.map(Timestamp::as_secs),
        acr: claims.acr.clone(),
        amr: claims.amr.clone(),
        sgen: claims.refresh_generation,
    };
    let token = keys
        .signing
        .sign(&body)
        .map_err(|e| DomainError::Internal(format!("cannot sign access token: {e}")))?;
    match keys.signing.algorithm {
        Algorithm::ES256 => low_s(token),
        _ => Ok(token),
    }
}

/// Signs like [`sign`], and also returns the claims exactly as [`verify`] reads them back
/// from the token (whole-second expiry), so the replica that mints a token can start with it
/// verified; `None` for a token [`verify`] would refuse (longer than it accepts).
pub fn sign_verified(
    keys: &Keyring,
    issuer: &str,
    claims: &AccessClaims,
) -> Result<(String, Option<AccessClaims>), DomainError> {
    let token = sign(keys, issuer, claims)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Ok((token, None));
    }
    let read_back = AccessClaims {
        expires_at: Timestamp::from_micros(claims.expires_at.as_secs().saturating_mul(1_000_000)),
        auth_time: claims
            .auth_time
            .map(|at| Timestamp::from_micros(at.as_secs().saturating_mul(1_000_000))),
        ..claims.clone()
    };
    Ok((token, Some(read_back)))
}

/// Which profile a token's `typ` header says it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// `at+jwt` (or its full media type `application/at+jwt`): `aud`, `jti` and `client_id`
    /// are required.
    Rfc9068,
    /// `JWT`, from an earlier version: none of them is.
    Legacy,
}

fn profile(typ: Option<&str>) -> Result<Profile, TokenProblem> {
    match typ {
        Some(t) if t.eq_ignore_ascii_case(TYP) || t.eq_ignore_ascii_case("application/at+jwt") => {
            Ok(Profile::Rfc9068)
        }
        Some(t) if t.eq_ignore_ascii_case(LEGACY_TYP) => Ok(Profile::Legacy),
        _ => Err(TokenProblem::Malformed),
    }
}

/// Verifies a token's signature, `typ`, issuer and audience and decodes its claims. Expiry is
/// not checked here: callers compare `expires_at` with the clock, so a cached result stays
/// correct. A token signed for another audience is `Malformed`: it is not a token for us.
pub fn verify(
    keys: &Keyring,
    issuer: &str,
    audience: &str,
    token: &str,
) -> Result<AccessClaims, TokenProblem> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(TokenProblem::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::Malformed)?;
    let profile = profile(header.typ.as_deref())?;
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
    // Checked whenever the claim is present, so a legacy token that names another audience
    // is refused as well.
    validation.set_audience(&[audience]);
    match profile {
        Profile::Rfc9068 => {
            validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"])
        }
        Profile::Legacy => validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]),
    }
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
    let grant = match profile {
        Profile::Rfc9068 => Some(grant(c.jti, c.client_id, c.aud)?),
        Profile::Legacy => None,
    };
    Ok(AccessClaims {
        session_id,
        user_id,
        tenant_id,
        issued_at: Timestamp::from_micros(c.iat_us),
        expires_at: Timestamp::from_micros(c.exp.saturating_mul(1_000_000)),
        grant,
        auth_time: c
            .auth_time
            .map(|secs| Timestamp::from_micros(secs.saturating_mul(1_000_000))),
        acr: c.acr,
        amr: c.amr,
        refresh_generation: c.sgen,
    })
}

/// The grant of an `at+jwt` token: all three claims are required and well-formed.
fn grant(
    jti: Option<String>,
    client_id: Option<String>,
    aud: Option<String>,
) -> Result<Grant, TokenProblem> {
    let token_id = jti
        .and_then(|j| Uuid::parse_str(&j).ok())
        .ok_or(TokenProblem::Malformed)?;
    let client_id = client_id
        .filter(|c| !c.is_empty() && c.len() <= MAX_ID_BYTES)
        .ok_or(TokenProblem::Malformed)?;
    let audience = aud.ok_or(TokenProblem::Malformed)?;
    Ok(Grant {
        token_id,
        client_id,
        audience,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::Header;

    /// A keyring of a fresh key directory (also for the token tests of `jwt_crypto`).
    pub(crate) fn keys() -> Keyring {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::keystore::load_or_create(dir.path()).expect("keys")
    }

    /// Claims at a fixed instant long past, with `grant`.
    pub(crate) fn claims(grant: Option<Grant>) -> AccessClaims {
        // A fixed instant long past: `verify` leaves expiry to its callers' clock, so a token
        // whose `exp` has long gone by still verifies, and no test here depends on the time.
        let now = Timestamp::from_micros(1_700_000_000_123_456);
        AccessClaims {
            session_id: SessionId::new(),
            user_id: UserId::parse("sub", "user-1").expect("user"),
            tenant_id: TenantId::parse("tid", "tenant-1").expect("tenant"),
            issued_at: now,
            // Whole seconds, as a token carries them.
            expires_at: Timestamp::from_micros((now.as_secs() + 60) * 1_000_000),
            grant,
            auth_time: None,
            acr: String::new(),
            amr: Vec::new(),
            refresh_generation: None,
        }
    }

    /// Signs `body` under the keyring's signing key with the header `typ` given, as an
    /// earlier version (or a confused signer) would have.
    fn hand_signed(keys: &Keyring, typ: Option<&str>, body: &serde_json::Value) -> String {
        let mut header = Header::new(keys.signing.algorithm);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(keys.signing.kid.clone());
        jsonwebtoken::encode(&header, body, &keys.signing.encoding).expect("sign")
    }

    fn legacy_body(c: &AccessClaims) -> serde_json::Value {
        serde_json::json!({
            "sub": c.user_id.as_str(),
            "sid": c.session_id.to_string(),
            "tid": c.tenant_id.as_str(),
            "iat": c.issued_at.as_secs(),
            "exp": c.expires_at.as_secs(),
            "iss": "sessiond",
            "iat_us": c.issued_at.as_micros(),
        })
    }

    #[test]
    fn minted_claims_are_what_verify_reads_back() {
        let keys = keys();
        let mut c = claims(Some(Grant::new("login", "sessiond")));
        c.expires_at = c
            .issued_at
            .plus(std::time::Duration::from_micros(59_999_999));
        c.auth_time = Some(c.issued_at);
        c.acr = "urn:example:mfa".into();
        c.amr = vec!["pwd".into(), "otp".into()];
        c.refresh_generation = Some(7);
        let (token, minted) = sign_verified(&keys, "sessiond", &c).expect("sign");
        let verified = verify(&keys, "sessiond", "sessiond", &token).expect("verifies");
        assert_eq!(minted, Some(verified));

        // Past what `verify` accepts, nothing is vouched for.
        c.amr = vec!["x".repeat(64); MAX_TOKEN_BYTES / 64];
        let (token, minted) = sign_verified(&keys, "sessiond", &c).expect("sign");
        assert!(token.len() > MAX_TOKEN_BYTES);
        assert_eq!(minted, None);
        assert!(verify(&keys, "sessiond", "sessiond", &token).is_err());
    }

    #[test]
    fn tokens_follow_rfc_9068() {
        let keys = keys();
        let grant = Grant::new("login", "sessiond");
        let token = sign(&keys, "sessiond", &claims(Some(grant.clone()))).expect("sign");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        let verified = verify(&keys, "sessiond", "sessiond", &token).expect("verifies");
        assert_eq!(verified.grant, Some(grant));

        // Each token has its own jti.
        let a = Grant::new("login", "sessiond");
        let b = Grant::new("login", "sessiond");
        assert_ne!(a.token_id, b.token_id);
        // Another audience does not accept it.
        assert_eq!(
            verify(&keys, "sessiond", "billing", &token).err(),
            Some(TokenProblem::Malformed)
        );
        // Nothing without a grant is signed.
        assert!(sign(&keys, "sessiond", &claims(None)).is_err());
    }

    #[test]
    fn legacy_tokens_still_verify() {
        let keys = keys();
        let c = claims(None);
        let token = hand_signed(&keys, Some("JWT"), &legacy_body(&c));
        let verified = verify(&keys, "sessiond", "sessiond", &token).expect("verifies");
        assert_eq!(verified, c);

        // A legacy token naming another audience is refused all the same.
        let mut body = legacy_body(&c);
        body["aud"] = "billing".into();
        let token = hand_signed(&keys, Some("JWT"), &body);
        assert_eq!(
            verify(&keys, "sessiond", "sessiond", &token).err(),
            Some(TokenProblem::Malformed)
        );
    }

    #[test]
    fn other_types_and_incomplete_grants_are_refused() {
        let keys = keys();
        let c = claims(None);
        let mut full = legacy_body(&c);
        full["aud"] = "sessiond".into();
        full["jti"] = Uuid::new_v4().to_string().into();
        full["client_id"] = "login".into();
        for typ in [None, Some("id_token+jwt"), Some("JOSE")] {
            let token = hand_signed(&keys, typ, &full);
            assert_eq!(
                verify(&keys, "sessiond", "sessiond", &token).err(),
                Some(TokenProblem::Malformed),
                "{typ:?}"
            );
        }
        assert!(
            verify(
                &keys,
                "sessiond",
                "sessiond",
                &hand_signed(&keys, Some("application/AT+JWT"), &full)
            )
            .is_ok()
        );
        for missing in ["aud", "jti", "client_id"] {
            let mut body = full.clone();
            body.as_object_mut().expect("object").remove(missing);
            let token = hand_signed(&keys, Some("at+jwt"), &body);
            assert_eq!(
                verify(&keys, "sessiond", "sessiond", &token).err(),
                Some(TokenProblem::Malformed),
                "{missing}"
            );
        }
        let mut body = full.clone();
        body["jti"] = "not-a-uuid".into();
        let token = hand_signed(&keys, Some("at+jwt"), &body);
        assert_eq!(
            verify(&keys, "sessiond", "sessiond", &token).err(),
            Some(TokenProblem::Malformed)
        );
    }
}
