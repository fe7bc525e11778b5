//! Page tokens: opaque, versioned, URL-safe wrappers around a store's cursor.
//!
//! Layout before base64url: version (1) ‖ tag (16) ‖ cursor. The tag is an HMAC over the
//! version, the listing's scope (which filter produced the cursor) and the cursor, so a token
//! cannot be forged, edited, or replayed against a different listing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use super::error::DomainError;
use super::secrets::Keyring;
use crate::model::limits::MAX_PAGE_TOKEN_BYTES;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

fn tag(keys: &Keyring, scope: &str, cursor: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = keys.page_token();
    mac.update(&[VERSION]);
    mac.update(&(scope.len() as u64).to_be_bytes());
    mac.update(scope.as_bytes());
    mac.update(cursor);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    // A SHA-256 MAC is 32 bytes, longer than the tag: the zip fills all of `out`.
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    out
}

/// Wraps a cursor; `None` (the last page) becomes the empty string.
pub fn encode(keys: &Keyring, scope: &str, cursor: Option<&[u8]>) -> String {
    let Some(cursor) = cursor else {
        return String::new();
    };
    let mut raw = Vec::with_capacity(1 + TAG_LEN + cursor.len());
    raw.push(VERSION);
    raw.extend_from_slice(&tag(keys, scope, cursor));
    raw.extend_from_slice(cursor);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Unwraps a page token of the same scope; the empty string is the first page.
pub fn decode(keys: &Keyring, scope: &str, token: &str) -> Result<Option<Vec<u8>>, DomainError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || DomainError::invalid("page_token", "is not a page token of this listing");
    if token.len() > MAX_PAGE_TOKEN_BYTES {
        return Err(bad());
    }
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let (version, rest) = raw.split_first().ok_or_else(bad)?;
    if *version != VERSION || rest.len() < TAG_LEN {
        return Err(bad());
    }
    let (given, cursor) = rest.split_at(TAG_LEN);
    let expected = tag(keys, scope, cursor);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(given, &expected[..])) {
        return Err(bad());
    }
    Ok(Some(cursor.to_vec()))
}
