//! Chooses and opens the backend the configuration names.

use std::sync::Arc;

use super::embedded::{EmbeddedOptions, EmbeddedStore};
use super::{Store, StoreError};
use crate::config::{Config, StoreKind};

/// Opens the configured store: the embedded store under the data directory, or a connection to
/// the ScyllaDB cluster of the URI (migrating its schema first when `config.migrate` is set).
pub async fn open(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    match &config.store {
        StoreKind::Embedded => {
            let dir = config.store_dir().to_owned();
            let options = EmbeddedOptions {
                audit_retention: config.audit_retention,
            };
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, options))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))??;
            tracing::info!(path = %store.path().display(), "embedded store open");
            Ok(Arc::new(store))
        }
        StoreKind::Scylla(_) => Err(StoreError::Backend(
            "the scylla backend is not wired yet".into(),
        )),
    }
}

/// Creates or upgrades the schema of the configured store; the embedded store needs none.
pub async fn migrate(config: &Config) -> Result<(), StoreError> {
    match &config.store {
        StoreKind::Embedded => Ok(()),
        StoreKind::Scylla(_) => Err(StoreError::Backend(
            "the scylla backend is not wired yet".into(),
        )),
    }
}
