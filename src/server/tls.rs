//! The gRPC port's TLS settings and its reflection service.

use super::ServeError;
use crate::config::TlsFiles;
use crate::pb;

/// The server's TLS settings from PEM files; with a client CA, client certificates are required.
pub(super) async fn server_config(
    files: &TlsFiles,
) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    // tonic builds its rustls server config on the process-wide crypto provider. Two are
    // compiled in (ring through tonic's `tls-ring`, aws-lc-rs through the ScyllaDB driver), so
    // rustls cannot choose one by itself and would panic on the first TLS connection. Choose
    // ring, as the gRPC client side does; an error only means one was installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |path: std::path::PathBuf| async move {
        tokio::fs::read(&path)
            .await
            .map_err(|e| ServeError::Refused(format!("cannot read {}: {e}", path.display())))
    };
    let identity = tonic::transport::Identity::from_pem(
        read(files.cert.clone()).await?,
        read(files.key.clone()).await?,
    );
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(
            read(ca.clone()).await?,
        ));
    }
    Ok(tls)
}

/// Reflection over every service served here, plus `google.rpc` so that tools such as grpcurl
/// can decode the `ErrorInfo` detail of an error.
pub(super) fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(crate::api::envoy::FILE_DESCRIPTOR_SET)
}
