//! The request of the OAuth endpoints: an `application/x-www-form-urlencoded` body with
//! `token` (required) and `token_type_hint` (optional), as RFC 7662 §2.1 (introspection) and
//! RFC 7009 §2.1 (revocation) both define it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};

use super::error::HttpError;

/// The media type both RFCs prescribe for the request.
const FORM: &str = "application/x-www-form-urlencoded";

/// What the caller asked about.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenForm {
    /// The token, as sent (possibly empty).
    pub token: String,
    /// The `token_type_hint`, when given.
    pub hint: Option<String>,
}

impl TokenForm {
    /// Reads the form from a request's headers and body: a body over the size limit is
    /// [`HttpError::TooLarge`], anything else amiss (the content type, the encoding, a
    /// missing or repeated parameter) [`HttpError::InvalidRequest`].
    pub fn read(
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<TokenForm, HttpError> {
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                HttpError::TooLarge
            } else {
                HttpError::InvalidRequest("cannot read the request body".into())
            }
        })?;
        check_content_type(headers)?;
        parse(&body)
    }
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
/// ignored, as both RFCs allow extensions.
fn parse(body: &[u8]) -> Result<TokenForm, HttpError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| HttpError::InvalidRequest("the body is not a valid form".into()))?;
    let mut token = None;
    let mut hint = None;
    for (name, value) in pairs {
        match name.as_str() {
            "token" if token.is_some() => {
                return Err(HttpError::InvalidRequest(
                    "token is given more than once".into(),
                ));
            }
            "token" => token = Some(value),
            "token_type_hint" if hint.is_some() => {
                return Err(HttpError::InvalidRequest(
                    "token_type_hint is given more than once".into(),
                ));
            }
            "token_type_hint" => hint = Some(value),
            _ => {}
        }
    }
    let token = token.ok_or(HttpError::InvalidRequest("token is required".into()))?;
    Ok(TokenForm { token, hint })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    #[test]
    fn form_parameters() {
        assert_eq!(
            parse(b"token=abc&token_type_hint=access_token").ok(),
            Some(TokenForm {
                token: "abc".into(),
                hint: Some("access_token".into())
            })
        );
        assert_eq!(parse(b"token=").ok().map(|q| q.token), Some(String::new()));
        assert_eq!(
            parse(b"token=a%2Bb+c").ok().map(|q| q.token),
            Some("a+b c".to_owned())
        );
        assert_eq!(parse(b"token=a").ok().and_then(|q| q.hint), None);
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
