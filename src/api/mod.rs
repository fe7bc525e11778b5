//! The gRPC edge: decodes and checks requests, calls the domain, encodes answers, and maps
//! domain errors to statuses (in `status`, and nowhere else).

pub mod admission;
pub mod codec;
pub mod convert;
pub mod envoy;
pub mod observe;
pub mod service;
pub mod status;

pub use service::SessionApi;
