//! The model: the values every layer shares. Identifiers, instants and the clock that reads
//! them, the bounds on every input, and the records a store keeps.
//!
//! It is the floor of the crate: it imports nothing else of it, so `store` can depend on it
//! without depending on the domain, and the domain can use both. Its one error type,
//! [`FieldError`], names the field at fault; the domain wraps it as `INVALID_ARGUMENT`.

pub mod clock;
pub mod error;
pub mod ids;
pub mod limits;
pub mod records;
pub mod time;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::FieldError;
pub use ids::{SessionId, TenantId, UserId};
pub use time::Timestamp;
