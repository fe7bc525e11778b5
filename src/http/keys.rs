//! `GET /.well-known/jwks.json`: the public keys that verify sessiond's access tokens (RFC 7517),
//! so a gateway can check signatures locally and ask sessiond only about session state.
//!
//! Retired keys are served for as long as they verify (their tokens may still be alive). The
//! key set is fixed for the life of the process, so the document is rendered once, at start.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use crate::domain::secrets::Keyring;

/// How long a client may cache the key set. Short, so that a key added by a restart with a
/// new signing key is picked up soon even by clients that do not refetch on an unknown `kid`.
const CACHE_CONTROL: &str = "public, max-age=300";

/// The JWK Set document of every verification key, ordered by `kid` so that the document is
/// stable across restarts with the same keys.
pub fn jwks(keys: &Keyring) -> Bytes {
    let mut verifying: Vec<_> = keys.verifying.iter().collect();
    verifying.sort_by(|a, b| a.0.cmp(b.0));
    let keys: Vec<&serde_json::Value> = verifying.iter().map(|(_, key)| &key.jwk).collect();
    Bytes::from(serde_json::json!({ "keys": keys }).to_string())
}

/// Handles `GET /.well-known/jwks.json`.
pub async fn serve_jwks(State(state): State<HttpState>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_CONTROL),
            ),
        ],
        state.jwks.clone(),
    )
        .into_response()
}
