//! The standard services on the gRPC port: health checking and server reflection (v1 and
//! v1alpha), so `grpcurl -plaintext HOST:PORT list` works with no proto files.

use crate::support;

use prost::Message;
use support::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SERVICE: &str = "sessiond.v1.SessionService";
const HEALTH: &str = "grpc.health.v1.Health";

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    for service in ["", SERVICE] {
        // The store is pinged in the background; SERVING follows its first answer (until then
        // the service may not be registered yet: NOT_FOUND).
        poll_until(&format!("{service:?} to be SERVING"), DEADLINE, || {
            let mut health = health.clone();
            async move {
                let reply = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await;
                match reply {
                    Ok(r) => (r.into_inner().status == ServingStatus::Serving as i32).then_some(()),
                    Err(s) if s.code() == Code::NotFound => None,
                    Err(s) => panic!("health check of {service:?}: {s:?}"),
                }
            }
        })
        .await;
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
}

/// The names ListServices returns, and the file that defines `SERVICE`, through reflection v1.
async fn reflect_v1(server: &TestServer) -> (Vec<String>, Vec<prost_types::FileDescriptorProto>) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut client = ServerReflectionClient::new(server.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(SERVICE.into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection v1")
        .into_inner();
    let mut names = Vec::new();
    let mut files = Vec::new();
    while let Some(reply) = replies.message().await.expect("reflection reply") {
        match reply.message_response.expect("a response") {
            MessageResponse::ListServicesResponse(list) => {
                names.extend(list.service.into_iter().map(|s| s.name))
            }
            MessageResponse::FileDescriptorResponse(fd) => files.extend(
                fd.file_descriptor_proto
                    .iter()
                    .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap()),
            ),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    (names, files)
}

/// The same through reflection v1alpha.
async fn reflect_v1alpha(
    server: &TestServer,
) -> (Vec<String>, Vec<prost_types::FileDescriptorProto>) {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let mut client = ServerReflectionClient::new(server.channel().await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol(SERVICE.into()),
    ]
    .map(|m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    });
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let mut names = Vec::new();
    let mut files = Vec::new();
    while let Some(reply) = replies.message().await.expect("reflection reply") {
        match reply.message_response.expect("a response") {
            MessageResponse::ListServicesResponse(list) => {
                names.extend(list.service.into_iter().map(|s| s.name))
            }
            MessageResponse::FileDescriptorResponse(fd) => files.extend(
                fd.file_descriptor_proto
                    .iter()
                    .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap()),
            ),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    (names, files)
}

/// The listed services include ours and health, and the file behind ours defines every RPC.
fn check_reflection(names: &[String], files: &[prost_types::FileDescriptorProto]) {
    assert!(names.iter().any(|n| n == SERVICE), "{names:?}");
    assert!(names.iter().any(|n| n == HEALTH), "{names:?}");
    let file = files
        .iter()
        .find(|f| f.package() == "sessiond.v1")
        .unwrap_or_else(|| panic!("no sessiond.v1 file among {files:?}"));
    assert_eq!(file.name(), "sessiond/v1/session.proto");
    let service = file
        .service
        .iter()
        .find(|s| s.name() == "SessionService")
        .expect("SessionService in its file");
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    for rpc in [
        "Issue",
        "Refresh",
        "Validate",
        "List",
        "Revoke",
        "RevokeAll",
        "AdminList",
        "AdminRevokeUser",
        "AdminRevokeSession",
        "AdminRevokeAllSessions",
        "AdminListAuditEvents",
    ] {
        assert!(methods.contains(&rpc), "{rpc} missing from {methods:?}");
    }
}

#[tokio::test]
async fn reflection_v1_lists_and_describes_the_service() {
    let server = TestServer::start().await;
    let (names, files) = reflect_v1(&server).await;
    check_reflection(&names, &files);
}

#[tokio::test]
async fn reflection_v1alpha_lists_and_describes_the_service() {
    let server = TestServer::start().await;
    let (names, files) = reflect_v1alpha(&server).await;
    check_reflection(&names, &files);
}
