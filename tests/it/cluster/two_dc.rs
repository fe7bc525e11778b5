//! Two data centres of three nodes each (`SESSIOND_CLUSTER_DC2_NODES=3`, nodes 4-6): a
//! replica in each with `dc=` set, a revocation made in dc1 honoured in dc2, and dc1 serving on
//! while dc2 is lost whole. `scripts/test-cluster --two-dc` (its own CI section) starts such a
//! cluster and runs only these; on a one-DC cluster they fail, saying so.

use std::time::{Duration, Instant};

use sessiond::pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use super::harness::{Replica, exclusive, keyspace, migrate};
use super::load::{CALL_DEADLINE, Load, read_back};
use crate::support::{Client, issue, poll_until};

/// The replicas' `--revocation-poll` (sessiond's default).
const POLL: Duration = Duration::from_secs(1);

/// One Validate with this suite's deadline: `Ok((valid, reason))` or the status code.
async fn validate(client: &mut Client, token: &str) -> Result<(bool, i32), Code> {
    crate::support::validate_within(client, token, CALL_DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a two-DC CQL cluster: scripts/test-cluster --two-dc"]
async fn a_revocation_in_dc1_holds_in_dc2_and_dc1_serves_on_without_dc2() {
    let (_turn, cluster) = exclusive().await;
    let dc1 = cluster.hosts("dc1").await;
    let dc2 = cluster.hosts("dc2").await;
    let ks = keyspace("two_dc");
    migrate(&format!(
        "scylla://{dc1}/{ks}?dc=dc1&replication=dc1:3,dc2:3"
    ));
    let work = tempfile::tempdir().expect("tempdir");
    let keys = work.path().join("keys");
    let in_dc1 = format!("scylla://{dc1}/{ks}?dc=dc1");
    let in_dc2 = format!("scylla://{dc2}/{ks}?dc=dc2");
    let a = Replica::start("dc1-a", &in_dc1, &keys, work.path(), &[]).await;
    let b = Replica::start("dc2-b", &in_dc2, &keys, work.path(), &[]).await;
    let (mut via_a, mut via_b) = (a.client().await, b.client().await);

    // Issued in dc1, cached in dc2, revoked in dc1: dc2 honours it within the poll bound plus
    // the cross-DC replication (LOCAL_QUORUM in dc1 does not wait for dc2).
    let mut delays = Vec::new();
    for i in 0..50 {
        let session = issue(&mut via_a, &format!("cross-{i}")).await;
        poll_until(
            "dc2 to see a session issued in dc1",
            Duration::from_secs(10),
            || {
                let (mut client, token) = (via_b.clone(), session.access.clone());
                async move { (validate(&mut client, &token).await == Ok((true, 0))).then_some(()) }
            },
        )
        .await;
        let request = pb::RevokeRequest {
            access_token: session.access.clone(),
            session_id: session.session_id.clone(),
        };
        via_a.revoke(request).await.expect("revoke in dc1");
        let acked = Instant::now();
        poll_until(
            "dc2 to honour a revocation made in dc1",
            Duration::from_secs(30),
            || {
                let (mut client, token) = (via_b.clone(), session.access.clone());
                async move {
                    (validate(&mut client, &token).await
                        == Ok((false, pb::InvalidReason::Revoked as i32)))
                    .then_some(())
                }
            },
        )
        .await;
        delays.push(acked.elapsed());
    }
    delays.sort();
    let max = delays[delays.len() - 1];
    eprintln!(
        "revocation in dc1 seen in dc2: 50 revocations, p50 {:.0?}, max {max:.0?}",
        delays[delays.len() / 2]
    );
    assert!(
        max <= POLL + Duration::from_secs(3),
        "a dc1 revocation took {max:?} to hold in dc2"
    );

    // dc2 lost whole: dc1 serves a mixed load with no failed call; dc2's replica fails
    // closed.
    let load = Load::start(&a, &a, 2, "dc1-alone").await;
    load.progress(100, "before dc2 goes").await;
    cluster.kill("4,5,6").await;
    load.progress(200, "without dc2").await;
    let outcome = load.finish().await;
    assert!(
        outcome.failures.is_empty(),
        "dc1 without dc2: {} of {} calls failed: {:#?}\n{}",
        outcome.failures.len(),
        outcome.calls,
        &outcome.failures[..outcome.failures.len().min(10)],
        a.warnings()
    );
    b.await_health(ServingStatus::NotServing, Duration::from_secs(60))
        .await;
    let fresh = Replica::start("dc1-fresh", &in_dc1, &keys, work.path(), &[]).await;
    let lost = read_back(&fresh, &outcome.sessions).await;
    assert!(lost.is_empty(), "dc1 lost acknowledged writes: {lost:#?}");
    eprintln!(
        "dc2 down: dc1 served {} calls with no failure; {} sessions read back",
        outcome.calls,
        outcome.sessions.len()
    );
    cluster.start("4,5,6").await;
    b.await_health(ServingStatus::Serving, Duration::from_secs(120))
        .await;
    issue(&mut via_b, "dc2-back").await;
}
