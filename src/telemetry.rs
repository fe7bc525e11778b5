//! Telemetry set-up: structured `tracing` logs filtered by `RUST_LOG` (default `info`),
//! OpenTelemetry traces exported over OTLP/gRPC when `--otlp-endpoint` is set, and the
//! Prometheus recorder ([`prometheus`]).
//!
//! Logs and traces are filtered apart: `RUST_LOG` decides what is logged, while the trace
//! exporter takes sessiond's own spans (per RPC, per store operation) whatever the log level.
//! With no endpoint those spans are at `debug` level and nobody is interested in them, so they
//! cost a cached callsite check per RPC and nothing more.

pub mod logs;
pub mod prometheus;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Level;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

/// How long one export to the collector may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the configured endpoint.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The running telemetry. Keep it until the service has stopped, then call
/// [`Telemetry::shutdown`] so spans still queued reach the collector.
#[must_use = "dropping it without `shutdown` may lose the last spans"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    /// Flushes the log lines still queued when dropped, after the last span's export.
    _logs: Option<tracing_appender::non_blocking::WorkerGuard>,
}

impl Telemetry {
    /// True when traces are exported.
    pub fn exports_traces(&self) -> bool {
        self.tracer.is_some()
    }

    /// Flushes queued spans and stops the exporter. The flush blocks on the export, so it runs
    /// on the blocking pool: the runtime keeps driving the exporter's connection meanwhile.
    pub async fn shutdown(self) {
        let Some(provider) = self.tracer else {
            return;
        };
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "trace exporter did not shut down cleanly"),
            Err(error) => tracing::warn!(%error, "trace exporter shutdown task failed"),
        }
    }
}

/// Installs the global subscriber: logs, plus trace export when `config.otlp_endpoint` is set.
/// Must be called inside the Tokio runtime, which then carries the exporter's connection. If a
/// global subscriber already exists, it stays, and spans are not exported through it.
pub fn start(config: &Config) -> Result<Telemetry, TelemetryError> {
    let tracer = match &config.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, config.otlp_sample_ratio)?),
        None => None,
    };
    if tracer.is_some() {
        // Incoming `traceparent` metadata continues the caller's trace.
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    let logs = install(config.log_format, tracer.as_ref());
    if let Some(endpoint) = &config.otlp_endpoint {
        if logs.is_some() {
            tracing::info!(%endpoint, ratio = config.otlp_sample_ratio, "exporting traces over otlp");
        } else {
            tracing::warn!(%endpoint, "a log subscriber was already installed; traces are not exported");
        }
    }
    Ok(Telemetry {
        tracer,
        _logs: logs,
    })
}

/// Installs the global subscriber; `None` when one was already installed (the writer made
/// for it is then dropped at once).
fn install(format: LogFormat, tracer: Option<&SdkTracerProvider>) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (out, guard) = logs::writer(std::io::stdout());
    // Colours only for a person at a terminal: a file or a log shipper gets plain text.
    let ansi = std::io::stdout().is_terminal();
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(out)
            .with_ansi(ansi)
            .with_target(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(out)
            .json()
            .flatten_event(true)
            .with_target(true)
            .with_filter(filter)
            .boxed(),
    };
    // Only sessiond's own spans go to the collector: the exporter's own gRPC client (tonic,
    // hyper, h2) must never trace itself.
    let traces = tracer.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("sessiond"))
            .with_filter(Targets::new().with_target("sessiond", Level::DEBUG))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .try_init()
        .ok()
        .map(|()| guard)
}

fn tracer_provider(endpoint: &str, ratio: f64) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = Resource::builder_empty()
        .with_service_name("sessiond")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    // A sampled caller's trace is always continued; only traces that start here are sampled.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(resource)
        .build())
}
