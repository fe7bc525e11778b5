//! The model's one error: a value that does not fit its field.

use std::borrow::Cow;

/// A request field that is missing or out of bounds, named as the proto names it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct FieldError {
    /// The proto field name.
    pub field: &'static str,
    /// What is wrong with it, lowercase.
    pub message: Cow<'static, str>,
}

impl FieldError {
    /// A refusal with a fixed message.
    pub fn new(field: &'static str, message: &'static str) -> Self {
        Self {
            field,
            message: Cow::Borrowed(message),
        }
    }

    /// A refusal with a formatted message.
    pub fn owned(field: &'static str, message: String) -> Self {
        Self {
            field,
            message: Cow::Owned(message),
        }
    }
}
