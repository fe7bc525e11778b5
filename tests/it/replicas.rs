//! Two sessiond processes, one CQL cluster: the same sessions, the same revocations, one
//! successor for racing refreshes. Needs a CQL node (`SESSIOND_TEST_CQL`); `scripts/test` runs
//! it with `--include-ignored`.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::pb;
use support::{Client, assert_valid, channel, issue, poll_until, refresh, validate};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How often each replica reads the revocation feed in this test.
const POLL: Duration = Duration::from_millis(200);

fn cql_node() -> String {
    std::env::var("SESSIOND_TEST_CQL")
        .ok()
        .filter(|a| !a.is_empty())
        .expect("SESSIOND_TEST_CQL must name a CQL node (scripts/test starts one)")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A `sessiond serve` child process; killed when dropped.
struct Replica {
    child: Child,
    addr: SocketAddr,
}

impl Replica {
    fn spawn(name: &str, uri: &str, keys: &Path, work: &Path) -> Replica {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let http = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(work.join(format!("{name}.log"))).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args([
                "serve",
                "--grpc-addr",
                &addr.to_string(),
                "--http-addr",
                &http,
            ])
            .arg("--data-dir")
            .arg(work.join(name))
            .arg("--key-dir")
            .arg(keys)
            .args(["--store", uri, "--revocation-poll", "200ms"])
            .env("RUST_LOG", "sessiond=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn sessiond");
        Replica { child, addr }
    }

    /// Waits until the replica answers health checks with SERVING.
    async fn ready(&mut self) -> Client {
        let addr = self.addr;
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "replica exited during start-up"
        );
        poll_until(
            "the replica to report SERVING",
            Duration::from_secs(60),
            || async move {
                let endpoint =
                    tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
                let channel = tokio::time::timeout(Duration::from_secs(2), endpoint.connect())
                    .await
                    .ok()?
                    .ok()?;
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                let status = HealthClient::new(channel)
                    .check(request)
                    .await
                    .ok()?
                    .into_inner()
                    .status;
                (status == ServingStatus::Serving as i32).then_some(())
            },
        )
        .await;
        support::connect(addr).await
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL node: scripts/test starts one (or set SESSIOND_TEST_CQL)"]
async fn two_replicas_share_sessions_revocations_and_refresh_races() {
    let node = cql_node();
    let work = tempfile::tempdir().expect("tempdir");
    let keys = work.path().join("keys");
    let keyspace = format!(
        "sessiond_rep_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let uri = format!("scylla://{node}/{keyspace}?rf=1");
    let migrated = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["migrate", "--store", &uri])
        .output()
        .expect("run migrate");
    assert!(
        migrated.status.success(),
        "migrate failed: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    // A first replica creates the shared keys before the second reads them.
    let mut a = Replica::spawn("a", &uri, &keys, work.path());
    let mut via_a = a.ready().await;
    let mut b = Replica::spawn("b", &uri, &keys, work.path());
    let mut via_b = b.ready().await;

    // Issued through A, valid through B (which now caches the session).
    let alice = issue(&mut via_a, "alice").await;
    assert_valid(&mut via_b, &alice.access).await;

    // Revoked through A: REVOKED through B within the poll bound.
    let revoke = pb::RevokeRequest {
        access_token: alice.access.clone(),
        session_id: alice.session_id.clone(),
    };
    via_a.revoke(revoke).await.expect("revoke through a");
    let revoked_at = Instant::now();
    let bound = POLL * 3 + Duration::from_secs(2);
    poll_until("b to see the revocation made through a", bound, || {
        let mut client = via_b.clone();
        let token = alice.access.clone();
        async move {
            (validate(&mut client, &token).await == (false, pb::InvalidReason::Revoked))
                .then_some(())
        }
    })
    .await;
    eprintln!(
        "revocation through a seen by b after {:?} (poll {POLL:?})",
        revoked_at.elapsed()
    );

    // AdminRevokeUser through B: A rejects the user's older tokens, even cached ones.
    let bob = issue(&mut via_a, "bob").await;
    assert_valid(&mut via_a, &bob.access).await;
    let request = pb::AdminRevokeUserRequest {
        user_id: "bob".into(),
        ..Default::default()
    };
    via_b
        .admin_revoke_user(request)
        .await
        .expect("admin revoke through b");
    poll_until("a to reject a user revoked through b", bound, || {
        let mut client = via_a.clone();
        let token = bob.access.clone();
        async move {
            (validate(&mut client, &token).await == (false, pb::InvalidReason::Revoked))
                .then_some(())
        }
    })
    .await;

    // Sixteen refreshes of one token, spread over both replicas, inside the default grace:
    // every one succeeds with the one successor the store decided.
    let carol = issue(&mut via_a, "carol").await;
    let mut racers = Vec::new();
    for i in 0..16 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let token = carol.refresh.clone();
        racers.push(tokio::spawn(async move {
            let mut client = Client::new(channel(addr).await);
            refresh(&mut client, &token).await.map(|i| i.refresh)
        }));
    }
    let mut successors = std::collections::BTreeSet::new();
    for racer in racers {
        let successor = racer
            .await
            .expect("join")
            .unwrap_or_else(|s| panic!("a refresh inside the grace failed: {s:?}"));
        successors.insert(successor);
    }
    assert_eq!(
        successors.len(),
        1,
        "16 refreshes across two replicas must share one successor"
    );
}
