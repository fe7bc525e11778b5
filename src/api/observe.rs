//! The outermost gRPC layer: per-RPC metrics and a trace span per RPC.
//!
//! Every request is counted by service, method and gRPC status code
//! (`sessiond_grpc_requests_total`) and timed until its response headers
//! (`sessiond_grpc_request_duration_seconds`). The code comes from the `grpc-status` response
//! header: tonic answers an error from a unary handler trailers-only, with the status in the
//! headers, and a success carries no status there, so its absence means `OK`. It runs outside
//! the caller authentication layer, so refused callers are counted too.
//!
//! Methods are known by name up front: a path no service answers is counted as `other`, so a
//! client cannot grow the metric set. Handles are registered on first use of each
//! (method, code) pair and then only incremented.
//!
//! The span (`target: sessiond::rpc`, named after the method for OpenTelemetry) continues the
//! caller's trace from the W3C `traceparent` metadata. It is at `debug` level: without trace
//! export and with the default log level nobody wants it, and it costs a callsite check.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use metrics::{Counter, Histogram};
use opentelemetry::propagation::Extractor;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::auth::Rpc;
use crate::telemetry::prometheus::{GRPC_DURATION, GRPC_REQUESTS};

/// The label of anything else.
const OTHER: &str = "other";

/// gRPC status names by code, as the gRPC specification spells them.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const CODE_UNKNOWN: usize = 2;

/// The handles of one method, registered on first use.
struct Method {
    service: &'static str,
    method: &'static str,
    /// `service/method`, the span name.
    full: String,
    duration: OnceLock<Histogram>,
    codes: [OnceLock<Counter>; 17],
}

impl Method {
    fn new(service: &'static str, method: &'static str) -> Self {
        Self {
            service,
            method,
            full: format!("{service}/{method}"),
            duration: OnceLock::new(),
            codes: Default::default(),
        }
    }

    fn record(&self, code: usize, elapsed: f64) {
        self.duration
            .get_or_init(|| {
                metrics::histogram!(GRPC_DURATION, "service" => self.service, "method" => self.method)
            })
            .record(elapsed);
        let name = CODES.get(code).copied().unwrap_or(CODES[CODE_UNKNOWN]);
        if let Some(counter) = self.codes.get(code) {
            counter
                .get_or_init(|| {
                    metrics::counter!(
                        GRPC_REQUESTS,
                        "service" => self.service,
                        "method" => self.method,
                        "code" => name
                    )
                })
                .increment(1);
        }
    }
}

struct Methods {
    by_path: HashMap<String, usize>,
    all: Vec<Method>,
    other: Method,
}

impl Methods {
    fn new() -> Self {
        let all: Vec<Method> = Rpc::ALL
            .iter()
            .map(|rpc| Method::new(rpc.service(), rpc.method()))
            .collect();
        let by_path = all
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("/{}", m.full), i))
            .collect();
        Self {
            by_path,
            all,
            other: Method::new(OTHER, OTHER),
        }
    }

    /// The index of the method at `path`; `None` for a path no service answers.
    fn index(&self, path: &str) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    fn at(&self, index: Option<usize>) -> &Method {
        index.and_then(|i| self.all.get(i)).unwrap_or(&self.other)
    }
}

/// The tower layer; see the module documentation.
#[derive(Clone)]
pub struct ObserveLayer {
    methods: Arc<Methods>,
}

impl ObserveLayer {
    /// A layer with fresh handles (registered in the recorder installed at first use).
    pub fn new() -> Self {
        Self {
            methods: Arc::new(Methods::new()),
        }
    }
}

impl Default for ObserveLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            methods: self.methods.clone(),
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Clone)]
pub struct ObserveService<S> {
    inner: S,
    methods: Arc<Methods>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for ObserveService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let index = self.methods.index(req.uri().path());
        let method = self.methods.at(index);
        let span = tracing::debug_span!(
            target: "sessiond::rpc",
            "rpc",
            otel.name = method.full.as_str(),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = method.service,
            rpc.method = method.method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if !span.is_disabled() {
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&Metadata(req.headers()))
            });
            // Fails only for a span that has already started, which this one has not.
            let _ = span.set_parent(parent);
        }
        // The clone is ready (tower's usual swap), the original stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let call = {
            let _entered = span.enter();
            inner.call(req)
        };
        let methods = self.methods.clone();
        let recorded = span.clone();
        Box::pin(
            async move {
                let response = call.await;
                let code = match &response {
                    Ok(response) => status_code(response.headers()),
                    Err(_) => CODE_UNKNOWN,
                };
                methods
                    .at(index)
                    .record(code, started.elapsed().as_secs_f64());
                recorded.record("rpc.grpc.status_code", code);
                if is_server_error(code) {
                    recorded.record("otel.status_code", "ERROR");
                }
                response
            }
            .instrument(span),
        )
    }
}

/// The gRPC status code of a response: its `grpc-status` header, `OK` when there is none (the
/// status then follows in trailers, which only a streaming failure would make non-OK).
fn status_code(headers: &http::HeaderMap) -> usize {
    match headers.get("grpc-status") {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&code| code < CODES.len())
            .unwrap_or(CODE_UNKNOWN),
    }
}

/// Codes that mean the server failed, not the caller (OpenTelemetry's rule for server spans).
fn is_server_error(code: usize) -> bool {
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Reads W3C trace context from gRPC metadata (HTTP/2 headers).
struct Metadata<'a>(&'a http::HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_grpc_status() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_code(&headers), 0);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(CODES[status_code(&headers)], "UNAUTHENTICATED");
        headers.insert("grpc-status", http::HeaderValue::from_static("99"));
        assert_eq!(CODES[status_code(&headers)], "UNKNOWN");
        headers.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(CODES[status_code(&headers)], "UNKNOWN");
    }

    #[test]
    fn unknown_paths_share_one_label() {
        let methods = Methods::new();
        let validate = methods.index("/sessiond.v1.SessionService/Validate");
        assert_eq!(methods.at(validate).method, "Validate");
        assert_eq!(
            methods.at(validate).full,
            "sessiond.v1.SessionService/Validate"
        );
        let other = methods.index("/no.such.Service/Nope");
        assert_eq!(other, None);
        assert_eq!(methods.at(other).service, OTHER);
    }
}
