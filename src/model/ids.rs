//! Identifiers, parsed once at the edge and typed everywhere after.
//!
//! Each constructor enforces the bounds of `limits`, so a value of these types is always
//! small, printable and free of the separator byte the stores use in composite keys.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::error::FieldError;
use super::limits::{MAX_ID_BYTES, check_text};

/// A session's identity: a random (v4) or time-ordered (v7) UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Uuid);

impl SessionId {
    /// A new time-ordered id, so ids created close together sort together in the store.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an id read back from a store or a verified token.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The 16 raw bytes, big-endian, so byte order is UUID order.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for SessionId {
    type Err = FieldError;

    /// Parses UUID text; anything else is `InvalidArgument` naming the field.
    fn from_str(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() {
            return Err(FieldError::new("session_id", "must not be empty"));
        }
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| FieldError::new("session_id", "must be a UUID"))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A user's identity as the login service knows it: non-empty, bounded, printable text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Checks the text: required, at most `MAX_ID_BYTES`, no control characters.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, FieldError> {
        if s.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        check_text(field, s, MAX_ID_BYTES)?;
        Ok(Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant; the empty tenant is a valid value meaning "no tenant".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Checks the text: optional (empty is allowed), at most `MAX_ID_BYTES`, no control characters.
    pub fn parse(field: &'static str, s: &str) -> Result<Self, FieldError> {
        check_text(field, s, MAX_ID_BYTES)?;
        Ok(Self(s.to_owned()))
    }

    /// The empty tenant: "no tenant" on a session, "every tenant" on a revocation.
    pub fn none() -> Self {
        Self(String::new())
    }

    /// True for the empty tenant.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tenant as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_and_rejects_junk() {
        let id = SessionId::new();
        assert_eq!(id.to_string().parse::<SessionId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<SessionId>().is_err());
        assert!("".parse::<SessionId>().is_err());
    }

    #[test]
    fn user_id_bounds() {
        assert!(UserId::parse("user_id", "").is_err());
        assert!(UserId::parse("user_id", "alice").is_ok());
        assert!(UserId::parse("user_id", &"x".repeat(MAX_ID_BYTES)).is_ok());
        assert!(UserId::parse("user_id", &"x".repeat(MAX_ID_BYTES + 1)).is_err());
        assert!(UserId::parse("user_id", "a\u{0}b").is_err());
        assert!(UserId::parse("user_id", "a\nb").is_err());
    }
}
