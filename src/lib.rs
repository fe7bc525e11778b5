//! sessiond: the session authority.
//!
//! [`serve`] runs the whole service on a bound listener until a shutdown signal; `main` and the
//! black-box tests both call it ([`serve_with_http`] adds the HTTP surface on a second
//! listener). Layers: `api` (gRPC edge) and `http` (HTTP edge), both admitting callers through
//! `auth` → `domain` (decisions) → `store` (persistence) → `model` (ids, time, records: the
//! floor every layer shares, importing nothing of the crate). Lints are set in `Cargo.toml`.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod hooks;
pub mod http;
pub mod keystore;
pub mod model;
pub mod permissions;
pub mod server;
pub mod store;
pub mod telemetry;

/// Generated protobuf types and gRPC stubs of `sessiond.v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("sessiond.v1");

    /// The encoded descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("sessiond_descriptor");
}

pub use config::Config;
pub use server::{ServeError, serve, serve_with_http};
