//! Chooses and opens the backend the configuration names, from the store's own settings (never
//! the whole configuration: the store sees no callers, TTLs or issuer).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::embedded::{EmbeddedOptions, EmbeddedStore};
use super::scylla::{ScyllaConfig, ScyllaStore};
use super::{Store, StoreError};
use crate::model::clock::SharedClock;

/// How long start-up keeps retrying a cluster that does not answer.
const CONNECT_PATIENCE: Duration = Duration::from_secs(120);
/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Everything opening the store needs (`Config::store_settings` makes it).
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Which backend, with its own settings.
    pub backend: Backend,
    /// Create or upgrade the ScyllaDB schema before serving (`--migrate`).
    pub migrate: bool,
    /// The clock the service runs on (the domain's own): the store judges expiry, computes
    /// time-to-live and stamps its sweeps by it, so that store and domain never disagree on
    /// whether a session is over.
    pub clock: SharedClock,
}

/// A backend and the settings it is opened with.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The embedded store in `dir`.
    Embedded {
        /// The data directory.
        dir: PathBuf,
        /// Its tunables (audit retention).
        options: EmbeddedOptions,
    },
    /// A ScyllaDB (or Cassandra) cluster; `Debug` never prints its password.
    Scylla(Box<ScyllaConfig>),
}

/// Opens the store: the embedded store under its directory, or a connection to the cluster.
/// With `migrate` the schema is created or upgraded first; without it a missing schema stops
/// start-up with a message saying how to create it. Either backend reads time from
/// `settings.clock`.
pub async fn open(settings: &StoreSettings) -> Result<Arc<dyn Store>, StoreError> {
    match &settings.backend {
        Backend::Embedded { dir, options } => {
            let (dir, options, clock) = (dir.clone(), options.clone(), settings.clock.clone());
            let store =
                tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, options, clock))
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))??;
            tracing::info!(path = %store.path().display(), "embedded store open");
            Ok(Arc::new(store))
        }
        Backend::Scylla(scylla) => {
            let store = connect(scylla, &settings.clock).await?;
            if settings.migrate {
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

/// Creates or upgrades the schema of the store; the embedded store needs none.
pub async fn migrate(settings: &StoreSettings) -> Result<(), StoreError> {
    match &settings.backend {
        Backend::Embedded { .. } => Ok(()),
        Backend::Scylla(scylla) => connect(scylla, &settings.clock).await?.migrate().await,
    }
}

/// Connects to the cluster, retrying with exponential backoff while it does not answer, so a
/// replica started before its cluster comes up by itself once the cluster does.
async fn connect(scylla: &ScyllaConfig, clock: &SharedClock) -> Result<ScyllaStore, StoreError> {
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 1u32;
    loop {
        match ScyllaStore::connect(scylla.clone(), clock.clone()).await {
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
