//! Trace export end to end: with `otlp_endpoint` set, every RPC becomes a span named after its
//! method that continues the caller's W3C trace context, store operations are its children, and
//! the spans still queued at shutdown reach the collector.
//!
//! The collector is a real OTLP/gRPC `TraceService` on a loopback port that keeps what it
//! receives. The telemetry subscriber is process-wide, hence this suite's own test binary with
//! a single test.

// Test and benchmark code fails by panicking, and indexes what it has just built.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::{Config, ServeError};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// A trace id and a span id as a caller would send them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.spans.lock().expect("collector lock").extend(spans);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn with_trace_context<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_store_spans_reach_the_collector() {
    let collector = Collector::default();
    let otlp = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let otlp_addr = otlp.local_addr().expect("collector addr");
    let (collector_stop, collector_stopped) = tokio::sync::oneshot::channel::<()>();
    let collector_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(otlp), async move {
                let _ = collector_stopped.await;
            }),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path());
    config.otlp_endpoint = Some(format!("http://{otlp_addr}"));
    let telemetry = sessiond::telemetry::start(&config).expect("telemetry starts");
    assert!(telemetry.exports_traces());

    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let grpc_addr = grpc.local_addr().expect("grpc addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sessiond::serve(config, grpc, async move {
        let _ = stopped.await;
    }));
    let mut client = SessionServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .expect("connect");

    let issued = client
        .issue(pb::IssueRequest {
            user_id: "user-1".into(),
            ..Default::default()
        })
        .await
        .expect("issue")
        .into_inner();
    let token = issued.tokens.expect("tokens").access_token;
    let reply = client
        .validate(with_trace_context(pb::ValidateRequest {
            access_token: token.clone(),
            ..Default::default()
        }))
        .await
        .expect("validate")
        .into_inner();
    assert!(reply.valid);
    // `List` always reads the store, so its span has a store child.
    client
        .list(with_trace_context(pb::ListRequest {
            access_token: token,
        }))
        .await
        .expect("list");

    stop.send(()).ok();
    let served: Result<(), ServeError> = server.await.expect("serve task");
    served.expect("serve returns Ok");
    // Flushes what is still queued.
    telemetry.shutdown().await;
    collector_stop.send(()).ok();
    collector_task
        .await
        .expect("collector task")
        .expect("collector");

    let spans = collector.spans.lock().expect("collector lock").clone();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let trace_id = hex::decode(TRACE_ID).expect("hex");
    let parent_id = hex::decode(PARENT_ID).expect("hex");
    let rpc = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.trace_id == trace_id)
            .unwrap_or_else(|| panic!("no {name} span in the caller's trace among {names:?}"))
    };
    let validate = rpc("sessiond.v1.SessionService/Validate");
    assert_eq!(
        validate.parent_span_id, parent_id,
        "continues the caller's span"
    );
    let list = rpc("sessiond.v1.SessionService/List");
    assert_eq!(list.parent_span_id, parent_id);
    let store = spans
        .iter()
        .find(|s| s.name == "store.list_user_sessions" && s.parent_span_id == list.span_id)
        .unwrap_or_else(|| panic!("no store span under List among {names:?}"));
    assert_eq!(store.trace_id, trace_id);

    // An RPC without trace context starts a trace of its own.
    let issue = spans
        .iter()
        .find(|s| s.name == "sessiond.v1.SessionService/Issue")
        .unwrap_or_else(|| panic!("no Issue span among {names:?}"));
    assert_ne!(issue.trace_id, trace_id);
    assert!(issue.parent_span_id.is_empty());
}
