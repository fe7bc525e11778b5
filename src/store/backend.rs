//! Chooses and opens the backend the configuration names.

use std::sync::Arc;
use std::time::Duration;

use super::embedded::{EmbeddedOptions, EmbeddedStore};
use super::scylla::{ScyllaConfig, ScyllaStore};
use super::{Store, StoreError};
use crate::config::{Config, StoreKind};

/// How long start-up keeps retrying a cluster that does not answer.
const CONNECT_PATIENCE: Duration = Duration::from_secs(120);
/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Opens the configured store: the embedded store under the data directory, or a connection to
/// the ScyllaDB cluster of the URI. With `--migrate` the schema is created or upgraded first;
/// without it a missing schema stops start-up with a message saying how to create it.
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
        StoreKind::Scylla(uri) => {
            let scylla = scylla_config(uri, config)?;
            let store = connect(&scylla).await?;
            if config.migrate {
                store.migrate().await?;
            } else {
                store.check_schema().await.map_err(|e| {
                    StoreError::Backend(format!(
                        "{e}; create the schema with `sessiond migrate` or start with --migrate"
                    ))
                })?;
            }
            // The parsed form: hosts and keyspace, never the URI's credentials or options.
            tracing::info!(store = %scylla, "scylla store open");
            Ok(Arc::new(store))
        }
    }
}

/// Creates or upgrades the schema of the configured store; the embedded store needs none.
pub async fn migrate(config: &Config) -> Result<(), StoreError> {
    match &config.store {
        StoreKind::Embedded => Ok(()),
        StoreKind::Scylla(uri) => connect(&scylla_config(uri, config)?).await?.migrate().await,
    }
}

/// Connects to the cluster, retrying with exponential backoff while it does not answer, so a
/// replica started before its cluster comes up by itself once the cluster does.
async fn connect(scylla: &ScyllaConfig) -> Result<ScyllaStore, StoreError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 1u32;
    loop {
        match ScyllaStore::connect(scylla.clone()).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(reason))
                if tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(attempt, %reason, retry_in = ?backoff, "cluster not reachable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The cluster settings of a `scylla://` URI, with the service's audit retention.
fn scylla_config(uri: &str, config: &Config) -> Result<ScyllaConfig, StoreError> {
    let mut scylla =
        ScyllaConfig::from_uri(uri).map_err(|e| StoreError::Backend(format!("store uri: {e}")))?;
    scylla.audit_retention = config.audit_retention;
    Ok(scylla)
}
