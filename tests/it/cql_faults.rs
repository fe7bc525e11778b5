//! The CQL node stops under load and comes back: calls fail `UNAVAILABLE` within their
//! deadline, nothing answers `valid=true` for a revoked session, health turns NOT_SERVING, and
//! the service serves again by itself once the node is back. Starts its own node with
//! `scripts/cql-node` (it must stop it, so it cannot borrow the shared one); `scripts/test`
//! runs it with `--include-ignored`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sessiond::pb;
use support::{Client, TestServer, issue, poll_until};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Every call in this test carries this deadline; none may take longer.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cql-node")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A CQL node of this test's own, stopped (by its PID, through the script) when dropped.
struct Node {
    dir: tempfile::TempDir,
    addr: String,
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path().join("node"))
            .env("SESSIOND_CQL_PORT", free_port().to_string())
            .output()
            .expect("run cql-node");
        assert!(
            out.status.success(),
            "cql-node start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        Node { dir, addr }
    }

    fn run(&self, verb: &str) {
        let out = Command::new(script())
            .arg(verb)
            .arg(self.dir.path().join("node"))
            .output()
            .expect("run cql-node");
        assert!(
            out.status.success(),
            "cql-node {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path().join("node"))
            .output();
    }
}

async fn health(server: &TestServer) -> Option<i32> {
    let request = HealthCheckRequest {
        service: "sessiond.v1.SessionService".into(),
    };
    let mut client = HealthClient::new(server.channel().await);
    let answer = tokio::time::timeout(CALL_DEADLINE, client.check(request)).await;
    Some(answer.ok()?.ok()?.into_inner().status)
}

/// One Validate with this suite's deadline: `Ok((valid, reason))` or the status code.
async fn validate(client: &mut Client, token: &str) -> Result<(bool, i32), Code> {
    support::validate_within(client, token, CALL_DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts and stops its own CQL node: scripts/test runs it"]
async fn the_service_fails_closed_while_the_cluster_is_down_and_recovers() {
    let node = Node::start();
    let keyspace = format!(
        "sessiond_faults_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let uri = format!(
        "scylla://{}/{keyspace}?rf=1&request_timeout=1s&connect_timeout=1s",
        node.addr
    );
    let server = TestServer::start_with(|c| {
        c.store = uri.parse().expect("store uri");
        c.migrate = true;
        c.revocation_poll = Duration::from_millis(200);
    })
    .await;
    let mut client = server.client();
    let active = issue(&mut client, "alice").await;
    let revoked = issue(&mut client, "bob").await;
    let request = pb::RevokeRequest {
        access_token: revoked.access.clone(),
        session_id: revoked.session_id.clone(),
    };
    client.revoke(request).await.expect("revoke");
    assert_eq!(validate(&mut client, &active.access).await, Ok((true, 0)));
    poll_until("health SERVING", Duration::from_secs(10), || async {
        (health(&server).await == Some(ServingStatus::Serving as i32)).then_some(())
    })
    .await;

    // Load: validate both tokens in a loop for the whole outage, recording what comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(AtomicU32::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (stop, unavailable) = (stop.clone(), unavailable.clone());
        let (mut client, active, revoked) = (
            server.client(),
            active.access.clone(),
            revoked.access.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut calls = 0u32;
            while !stop.load(Ordering::Relaxed) && calls < 100_000 {
                calls += 1;
                let started = Instant::now();
                for token in [&active, &revoked] {
                    match validate(&mut client, token).await {
                        Ok((true, _)) => {
                            assert_ne!(token, &revoked, "a revoked session was accepted")
                        }
                        Ok((false, _)) => {}
                        Err(Code::Unavailable) => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(code) => panic!("unexpected code {code:?}"),
                    }
                }
                assert!(started.elapsed() < CALL_DEADLINE * 2, "a call hung");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    node.run("stop");
    let down = Instant::now();
    poll_until("health NOT_SERVING", Duration::from_secs(30), || async {
        (health(&server).await == Some(ServingStatus::NotServing as i32)).then_some(())
    })
    .await;
    // Once cached state is too old to trust, even the active session needs the store.
    let mut probe = server.client();
    poll_until("Validate to fail UNAVAILABLE", Duration::from_secs(30), || {
        let (mut probe, token) = (probe.clone(), active.access.clone());
        async move { (validate(&mut probe, &token).await == Err(Code::Unavailable)).then_some(()) }
    })
    .await;
    let issued =
        tokio::time::timeout(CALL_DEADLINE, probe.issue(support::issue_request("carol"))).await;
    assert_eq!(
        issued
            .expect("issue within its deadline")
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(Code::Unavailable)
    );
    eprintln!("outage noticed: UNAVAILABLE after {:?}", down.elapsed());

    node.run("restart");
    let back = Instant::now();
    poll_until("health SERVING again", Duration::from_secs(90), || async {
        (health(&server).await == Some(ServingStatus::Serving as i32)).then_some(())
    })
    .await;
    poll_until("Validate to answer again", Duration::from_secs(60), || {
        let (mut probe, token) = (probe.clone(), active.access.clone());
        async move { (validate(&mut probe, &token).await == Ok((true, 0))).then_some(()) }
    })
    .await;
    assert_eq!(
        validate(&mut probe, &revoked.access).await,
        Ok((false, pb::InvalidReason::Revoked as i32)),
        "the revocation survived the outage"
    );
    issue(&mut probe, "dave").await;
    eprintln!("recovered {:?} after the node came back", back.elapsed());

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a load worker failed");
    }
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "the outage was never observed under load"
    );
    server.stop().await;
}
