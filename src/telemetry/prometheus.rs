//! The process-wide Prometheus recorder behind `GET /metrics`, and the names of every metric
//! sessiond records.
//!
//! The `metrics` facade has one global recorder per process. It is installed on first use and
//! shared by every server started in the process (several, in a test binary), so a counter
//! handle registered by any of them lands in the one registry that `/metrics` renders. Handles
//! registered before the recorder exists would be no-ops forever, which is why `serve` installs
//! it before building anything that registers handles.
//!
//! This module only knows names and the recorder; it decides nothing about what is counted.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// gRPC requests by `service`, `method` and `code` (the gRPC status name, e.g. `OK`).
pub const GRPC_REQUESTS: &str = "sessiond_grpc_requests_total";
/// gRPC request latency until the response headers, by `service` and `method`.
pub const GRPC_DURATION: &str = "sessiond_grpc_request_duration_seconds";
/// Access-token checks by `result`: `valid`, `malformed`, `bad_signature`, `expired`,
/// `revoked`, `unknown_session`, `idle_timeout`, `step_up_required` or `error` (the store
/// could not answer).
pub const VALIDATE: &str = "sessiond_validate_total";
/// Refresh tokens presented, by `result`: `rotated`, `grace_replay` (the previous generation
/// inside the grace, answered with the same successor), or the reuse that revoked the
/// session, `replay_after_grace` or `stale_generation`.
pub const REFRESH: &str = "sessiond_refresh_total";
/// Cache lookups on the validation path by `cache` (`tokens`, `sessions`, `users`) and
/// `result` (`hit`, `miss`).
pub const CACHE_REQUESTS: &str = "sessiond_cache_requests_total";
/// Gauge: entries in each validation cache, by `cache`.
pub const CACHE_ENTRIES: &str = "sessiond_cache_entries";
/// Gauge: estimated heap bytes held by each validation cache, by `cache`.
pub const CACHE_BYTES: &str = "sessiond_cache_bytes";
/// Gauge: the byte budget of each validation cache, by `cache`.
pub const CACHE_CAPACITY: &str = "sessiond_cache_capacity_bytes";
/// Counter: entries leaving a validation cache by themselves, by `cache` and `cause`
/// (`size`: pushed out by the byte budget; `expired`: token or entry lifetime over).
pub const CACHE_EVICTIONS: &str = "sessiond_cache_evictions_total";
/// Histogram: store operation latency by `op`.
pub const STORE_DURATION: &str = "sessiond_store_operation_duration_seconds";
/// Failed store operations by `op`.
pub const STORE_ERRORS: &str = "sessiond_store_errors_total";
/// Sessions held by the store (approximate; see the description).
pub const LIVE_SESSIONS: &str = "sessiond_live_sessions";
/// Seconds since the revocation feed was last read successfully.
pub const FEED_LAG: &str = "sessiond_revocation_feed_lag_seconds";
/// HTTP connections closed on accept because `--http-max-connections` were open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "sessiond_http_connections_refused_total";
/// Log lines dropped because standard output fell behind (see [`super::logs`]).
pub const LOG_LINES_DROPPED: &str = "sessiond_log_lines_dropped_total";

/// Upper bounds of the latency buckets: 50 µs to 10 s. A cached `Validate` takes tens of
/// microseconds and a group-committed write a few milliseconds, so both ends matter.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder on first call and returns its handle. `None` when
/// another global recorder was installed first (by an embedding program): sessiond then
/// records into that one and `/metrics` has nothing to render.
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER.get_or_init(build).as_ref()
}

fn build() -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
    {
        Ok(builder) => builder,
        Err(error) => {
            tracing::warn!(%error, "cannot configure the metrics recorder");
            return None;
        }
    };
    match builder.install_recorder() {
        Ok(handle) => {
            describe();
            Some(handle)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot install the metrics recorder; /metrics stays empty");
            None
        }
    }
}

/// The `# HELP` lines.
fn describe() {
    describe_counter!(
        GRPC_REQUESTS,
        "gRPC requests by service, method and status code"
    );
    describe_histogram!(
        GRPC_DURATION,
        Unit::Seconds,
        "gRPC request latency until the response headers, by service and method"
    );
    describe_counter!(
        VALIDATE,
        "access-token checks (Validate, Envoy Check, introspection and the token check of \
         List/Revoke/RevokeAll) by result"
    );
    describe_counter!(
        REFRESH,
        "refresh tokens presented, by result: rotated, grace_replay, or the reuse that \
         revoked the session (replay_after_grace, stale_generation)"
    );
    describe_counter!(
        CACHE_REQUESTS,
        "lookups in the validation caches (tokens, sessions, users) by result (hit, miss)"
    );
    describe_gauge!(
        CACHE_ENTRIES,
        "entries in each validation cache (tokens, sessions, users), at scrape time"
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "estimated heap bytes held by each validation cache, at scrape time"
    );
    describe_gauge!(
        CACHE_CAPACITY,
        Unit::Bytes,
        "byte budget of each validation cache (--cache-memory, split 3/8, 1/2, 1/8)"
    );
    describe_counter!(
        CACHE_EVICTIONS,
        "entries leaving a validation cache by themselves, by cause: size (the byte budget) \
         or expired"
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "store operation latency by operation"
    );
    describe_counter!(STORE_ERRORS, "failed store operations by operation");
    describe_gauge!(
        LIVE_SESSIONS,
        "sessions held by the store, refreshed periodically; approximate: may include revoked \
         and expired sessions not yet swept"
    );
    describe_gauge!(
        FEED_LAG,
        Unit::Seconds,
        "seconds since the revocation feed was last read successfully"
    );
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED,
        "HTTP connections closed on accept because --http-max-connections were open"
    );
    describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because standard output fell behind"
    );
}
