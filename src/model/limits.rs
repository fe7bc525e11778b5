//! The bounds on every input. Each is enforced before anything is written, so an oversize
//! request is rejected whole with `INVALID_ARGUMENT` and leaves no partial write.

use super::error::FieldError;

/// Longest user id, tenant id or session id text, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest user agent kept with a session, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 1024;
/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME_BYTES: usize = 128;
/// Longest IP address text (the longest IPv6 text with a zone fits), in bytes.
pub const MAX_IP_BYTES: usize = 64;
/// Most metadata entries on one session.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;
/// Most bytes of metadata on one session, keys and values together.
pub const MAX_METADATA_TOTAL_BYTES: usize = 8192;
/// Longest `acr` (authentication context class reference), in bytes.
pub const MAX_ACR_BYTES: usize = 64;
/// Most `amr` (authentication method) entries.
pub const MAX_AMR_ENTRIES: usize = 8;
/// Longest `amr` entry, in bytes.
pub const MAX_AMR_BYTES: usize = 32;
/// Longest revocation reason, in bytes.
pub const MAX_REASON_BYTES: usize = 256;
/// Longest token accepted for parsing, in bytes; real tokens are far shorter.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest page token, in bytes.
pub const MAX_PAGE_TOKEN_BYTES: usize = 2048;
/// Page size used when a request gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page a request may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Largest page of sessions: a session with every field at its bound encodes to about
/// 10.6 KB, so 300 of them stay under 3.2 MB, within the 4 MB message limit that gRPC
/// clients apply by default.
pub const MAX_SESSION_PAGE_SIZE: u32 = 300;

/// Checks a free-text field: at most `max` bytes and no control characters, so the text is
/// safe to log and to use inside the stores' composite keys.
pub fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max {
        return Err(FieldError::owned(
            field,
            format!("is {} bytes, at most {max} are allowed", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Clamps a requested page size of sessions into `1..=MAX_SESSION_PAGE_SIZE`, with 0 meaning
/// the default.
pub fn session_page_size(requested: u32) -> usize {
    page_size(requested).min(MAX_SESSION_PAGE_SIZE as usize)
}

/// Clamps a requested page size into `1..=MAX_PAGE_SIZE`, with 0 meaning the default.
pub fn page_size(requested: u32) -> usize {
    let size = if requested == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        requested.min(MAX_PAGE_SIZE)
    };
    size as usize
}
