//! `POST /oauth2/introspect`: RFC 7662 token introspection of sessiond's access tokens.
//!
//! The caller authenticates like a gRPC caller (`Authorization: Bearer <credential>`, role
//! `validator`). The body is a form with `token` (required) and `token_type_hint` (accepted and
//! ignored, as RFC 7662 §2.1 allows: only access tokens are known here). The token goes through
//! `Sessions::validate`, the hot path of `Validate`; every unusable token, whatever the reason,
//! is `{"active": false}`, so the answer tells a token scanner nothing more.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::HttpState;
use super::error::HttpError;
use crate::api::auth::{Budget, Role};
use crate::domain::Verdict;
use crate::domain::access::AccessClaims;

/// The media type RFC 7662 §2.1 prescribes for the request.
const FORM: &str = "application/x-www-form-urlencoded";

/// What the caller asked about.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    token: String,
}

/// The answer for a usable token (RFC 7662 §2.2).
#[derive(Serialize)]
struct Active<'a> {
    active: bool,
    sub: &'a str,
    sid: String,
    #[serde(skip_serializing_if = "is_empty")]
    tid: &'a str,
    exp: i64,
    iat: i64,
    iss: &'a str,
    token_type: &'static str,
}

fn is_empty(s: &&str) -> bool {
    s.is_empty()
}

/// Handles `POST /oauth2/introspect`.
pub async fn introspect(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    state
        .auth
        .admit_role(Role::Validator, authorization, None)
        .map_err(HttpError::Caller)?;
    // After authentication, as on gRPC: a request without credentials holds no slot.
    let _slot = state
        .auth
        .slot(Budget::Callers)
        .map_err(HttpError::Caller)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::TooLarge
        } else {
            HttpError::InvalidRequest("cannot read the request body".into())
        }
    })?;
    check_content_type(&headers)?;
    let query = parse(&body)?;

    let sessions = state.sessions()?;
    let body = match sessions.validate(&query.token).await? {
        Verdict::Valid(claims, _) => active(&claims, &sessions.policy().issuer),
        Verdict::Invalid(_) => serde_json::json!({ "active": false }),
    };
    let mut response = Json(body).into_response();
    // The answer describes a credential: no cache may keep it (RFC 7662 §4).
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn active(claims: &AccessClaims, issuer: &str) -> serde_json::Value {
    let answer = Active {
        active: true,
        sub: claims.user_id.as_str(),
        sid: claims.session_id.to_string(),
        tid: claims.tenant_id.as_str(),
        exp: claims.expires_at.as_secs(),
        iat: claims.issued_at.as_secs(),
        iss: issuer,
        token_type: "access_token",
    };
    // Serialising plain strings and integers cannot fail; an empty answer would be inactive.
    serde_json::to_value(answer).unwrap_or_else(|_| serde_json::json!({ "active": false }))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match essence {
        Some(media) if media.eq_ignore_ascii_case(FORM) => Ok(()),
        _ => Err(HttpError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        )),
    }
}

/// Reads the form. A parameter given twice is an error (RFC 6749 §3.2); unknown parameters are
/// ignored, as RFC 7662 allows extensions.
fn parse(body: &[u8]) -> Result<Query, HttpError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| HttpError::InvalidRequest("the body is not a valid form".into()))?;
    let mut token = None;
    let mut hints = 0;
    for (name, value) in pairs {
        match name.as_str() {
            "token" if token.is_some() => {
                return Err(HttpError::InvalidRequest(
                    "token is given more than once".into(),
                ));
            }
            "token" => token = Some(value),
            "token_type_hint" => hints += 1,
            _ => {}
        }
    }
    if hints > 1 {
        return Err(HttpError::InvalidRequest(
            "token_type_hint is given more than once".into(),
        ));
    }
    let token = token.ok_or(HttpError::InvalidRequest("token is required".into()))?;
    Ok(Query { token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn form_parameters() {
        assert_eq!(
            parse(b"token=abc&token_type_hint=access_token")
                .ok()
                .map(|q| q.token),
            Some("abc".to_owned())
        );
        assert_eq!(parse(b"token=").ok().map(|q| q.token), Some(String::new()));
        assert_eq!(
            parse(b"token=a%2Bb+c").ok().map(|q| q.token),
            Some("a+b c".to_owned())
        );
        assert!(parse(b"").is_err());
        assert!(parse(b"token_type_hint=access_token").is_err());
        assert!(parse(b"token=a&token=b").is_err());
        assert!(parse(b"token=a&token_type_hint=x&token_type_hint=y").is_err());
        assert!(parse(b"token=a&extension=1").is_ok());
    }

    #[test]
    fn content_type_must_be_a_form() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(check_content_type(&headers).is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
        );
        assert!(check_content_type(&headers).is_ok());
    }

    proptest! {
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body);
        }
    }
}
