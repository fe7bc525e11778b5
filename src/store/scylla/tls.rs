//! The rustls client configuration for TLS connections to the cluster.
//!
//! The crypto provider is passed explicitly (aws-lc-rs, rustls' default) instead of relying on
//! a process-wide default, which rustls refuses to pick when more than one provider is
//! compiled in. Certificates and keys are read once, at connect time.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::StoreError;
use super::config::TlsFiles;

/// Builds the client configuration: trust exactly the CAs in `files.ca`, and present the
/// client certificate when one is configured. Unreadable or malformed files are `Backend`.
pub(super) async fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, StoreError> {
    let ca_pem = read(&files.ca).await?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca_pem) {
        let cert = cert.map_err(|e| bad_file(&files.ca, e))?;
        roots.add(cert).map_err(|e| bad_file(&files.ca, e))?;
    }
    if roots.is_empty() {
        return Err(bad_file(&files.ca, "no certificate in file"));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("tls: {e}")))?
        .with_root_certificates(roots);
    let config = match (&files.client_cert, &files.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let cert_pem = read(cert_path).await?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad_file(cert_path, e))?;
            let key_pem = read(key_path).await?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_file(key_path, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| StoreError::Backend(format!("tls client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

async fn read(path: &Path) -> Result<Vec<u8>, StoreError> {
    tokio::fs::read(path).await.map_err(|e| bad_file(path, e))
}

fn bad_file(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("tls file {}: {e}", path.display()))
}
