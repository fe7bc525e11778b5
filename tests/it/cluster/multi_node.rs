//! The cases: node failures under load, quorum loss, a rolling restart, refresh races and the
//! revocation bound across replicas, concurrent migrations.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sessiond::pb;
use tempfile::TempDir;
use tokio::sync::{Barrier, MutexGuard};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use super::harness::{
    Cluster, Replica, exclusive, keyspace, migrate, migrate_command, stored_sessions,
};
use super::load::{CALL_DEADLINE, Load, Outcome, read_back};
use crate::support::{Client, issue, issue_request, refresh};

/// The replicas' `--revocation-poll` (sessiond's default).
const POLL: Duration = Duration::from_secs(1);
/// The README's bound for a revocation made through one replica to be honoured by another
/// while the feed reads succeed: one poll interval plus one feed read, which the driver's
/// request timeout (2 s) bounds.
const REVOCATION_BOUND: Duration = Duration::from_secs(POLL.as_secs() + 2);
/// The replicas' own deadline for every call (`--request-timeout`, sessiond's default).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One test's cluster, keyspace (RF 3 in dc1) and two replicas A and B sharing keys.
struct Setup {
    cluster: Cluster,
    hosts: String,
    ks: String,
    work: TempDir,
    keys: PathBuf,
    uri: String,
    a: Replica,
    b: Replica,
    _turn: MutexGuard<'static, ()>,
}

impl Setup {
    async fn new(prefix: &str) -> Self {
        Self::with_flags(prefix, &[], &[]).await
    }

    /// Like `new`, with extra `sessiond serve` flags for A and for B.
    async fn with_flags(prefix: &str, a_flags: &[&str], b_flags: &[&str]) -> Self {
        let (turn, cluster) = exclusive().await;
        let hosts = cluster.hosts("dc1").await;
        let ks = keyspace(prefix);
        migrate(&format!("scylla://{hosts}/{ks}?dc=dc1&rf=3"));
        let uri = format!("scylla://{hosts}/{ks}?dc=dc1");
        let work = tempfile::tempdir().expect("tempdir");
        let keys = work.path().join("keys");
        // A first creates the shared keys before B reads them.
        let a = Replica::start("a", &uri, &keys, work.path(), a_flags).await;
        let b = Replica::start("b", &uri, &keys, work.path(), b_flags).await;
        Self {
            cluster,
            hosts,
            ks,
            work,
            keys,
            uri,
            a,
            b,
            _turn: turn,
        }
    }

    /// A third replica with empty caches, for reading everything back from the store.
    async fn fresh(&self, name: &str) -> Replica {
        Replica::start(name, &self.uri, &self.keys, self.work.path(), &[]).await
    }

    /// Asserts the load saw no failure and that everything it was acknowledged reads back.
    async fn assert_nothing_lost(&self, outcome: &Outcome, what: &str) {
        assert!(
            outcome.failures.is_empty(),
            "{what}: {} of {} calls failed; first ones: {:#?}\nreplica a:\n{}\nreplica b:\n{}",
            outcome.failures.len(),
            outcome.calls,
            &outcome.failures[..outcome.failures.len().min(10)],
            self.a.warnings(),
            self.b.warnings()
        );
        let revoked = outcome.sessions.iter().filter(|t| t.revoked).count();
        assert!(
            outcome.sessions.len() >= 50 && revoked >= 10,
            "{what}: the load did too little to prove anything ({} sessions, {revoked} revoked)",
            outcome.sessions.len()
        );
        let fresh = self.fresh("fresh").await;
        let lost = read_back(&fresh, &outcome.sessions).await;
        if !lost.is_empty() {
            let ids: Vec<&str> = lost
                .iter()
                .filter_map(|l| l.split(':').next())
                .take(10)
                .collect();
            let rows = stored_sessions(&self.hosts, &self.ks, &ids).await;
            panic!(
                "{what}: {} acknowledged writes did not read back: {:#?}\nstored: {rows:#?}\n\
                 replica a:\n{}\nreplica b:\n{}\nfresh:\n{}",
                lost.len(),
                &lost[..lost.len().min(10)],
                self.a.lines_with(&ids),
                self.b.lines_with(&ids),
                fresh.lines_with(&ids)
            );
        }
        eprintln!(
            "{what}: {} calls, no failure; {} sessions ({revoked} revoked) read back at LOCAL_QUORUM; \
             health not SERVING in {} checks",
            outcome.calls,
            outcome.sessions.len(),
            outcome.not_serving
        );
    }
}

/// One Validate with this suite's deadline: `Ok((valid, reason))` or the status code.
async fn validate(client: &mut Client, token: &str) -> Result<(bool, i32), Code> {
    crate::support::validate_within(client, token, CALL_DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn one_node_killed_and_back_under_load_fails_no_call_and_loses_nothing() {
    let s = Setup::new("kill_one").await;
    let load = Load::start(&s.a, &s.b, 3, "kill-one").await;
    load.progress(150, "before the kill").await;
    // Returns once nodes 1 and 3 have convicted node 2 (about 20 s of load with a dead,
    // unconvicted node: the window in which logged batches cannot reach their batchlog).
    s.cluster.kill("2").await;
    load.progress(150, "with node 2 down").await;
    s.cluster.start("2").await;
    load.progress(150, "after node 2 came back").await;
    let outcome = load.finish().await;
    s.assert_nothing_lost(&outcome, "one node killed -9 and back")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn rolling_restart_of_every_node_under_load_fails_no_call_and_loses_nothing() {
    let s = Setup::new("rolling").await;
    let load = Load::start(&s.a, &s.b, 3, "rolling").await;
    load.progress(100, "before the restarts").await;
    for node in ["1", "2", "3"] {
        // Returns once the restarted node serves CQL and every node sees it up again.
        s.cluster.restart(node).await;
        load.progress(100, "after a restart").await;
    }
    let outcome = load.finish().await;
    s.assert_nothing_lost(&outcome, "rolling restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn two_nodes_down_fail_closed_within_the_deadline_and_service_returns_by_itself() {
    let s = Setup::new("two_down").await;
    let mut via_a = s.a.client().await;
    let mut via_b = s.b.client().await;
    let active = issue(&mut via_a, "alice").await;
    let revoked = issue(&mut via_a, "bob").await;
    let request = pb::RevokeRequest {
        access_token: revoked.access.clone(),
        session_id: revoked.session_id.clone(),
    };
    via_a.revoke(request).await.expect("revoke");
    for client in [&mut via_a, &mut via_b] {
        // Both replicas now hold both sessions in their caches.
        assert_eq!(validate(client, &active.access).await, Ok((true, 0)));
        assert_eq!(
            validate(client, &revoked.access).await,
            Ok((false, pb::InvalidReason::Revoked as i32))
        );
    }

    // Two of three replicas of every partition gone at once; the processes are dead, the
    // surviving node has not noticed yet.
    s.cluster.kill_now("2,3").await;
    let started = Instant::now();
    let issued = tokio::time::timeout(CALL_DEADLINE, via_a.clone().issue(issue_request("carol")))
        .await
        .expect("Issue answered within the load's deadline");
    let took = started.elapsed();
    assert_eq!(
        issued.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unavailable),
        "a write without a quorum"
    );
    assert!(
        took <= REQUEST_TIMEOUT + Duration::from_secs(1),
        "Issue took {took:?}, past the {REQUEST_TIMEOUT:?} request deadline"
    );
    eprintln!("two nodes down: Issue UNAVAILABLE after {took:.1?} (nodes not yet convicted)");

    // Until the nodes return, nothing says valid=true for the revoked session, and health
    // turns NOT_SERVING on both replicas.
    let watch_revoked = |client: Client| {
        let token = revoked.access.clone();
        async move {
            let mut client = client;
            let mut answers = 0u32;
            loop {
                match validate(&mut client, &token).await {
                    Ok((true, _)) => panic!("a session revoked before the outage validated"),
                    Ok(_) | Err(Code::Unavailable) => answers += 1,
                    Err(code) => panic!("Validate answered {code:?}"),
                }
                if answers >= 20 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::join!(
        watch_revoked(via_a.clone()),
        watch_revoked(via_b.clone()),
        s.a.await_health(ServingStatus::NotServing, Duration::from_secs(60)),
        s.b.await_health(ServingStatus::NotServing, Duration::from_secs(60)),
    );

    // Convicted now: a write fails fast, still UNAVAILABLE.
    s.cluster.settle().await;
    let started = Instant::now();
    let issued = tokio::time::timeout(CALL_DEADLINE, via_b.clone().issue(issue_request("dave")))
        .await
        .expect("Issue answered within the load's deadline");
    assert_eq!(
        issued.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unavailable)
    );
    eprintln!(
        "two nodes down and convicted: Issue UNAVAILABLE after {:.1?}",
        started.elapsed()
    );

    s.cluster.start("2,3").await;
    s.a.await_health(ServingStatus::Serving, Duration::from_secs(90))
        .await;
    s.b.await_health(ServingStatus::Serving, Duration::from_secs(90))
        .await;
    for client in [&mut via_a, &mut via_b] {
        let deadline = Duration::from_secs(60);
        crate::support::poll_until("Validate to answer again", deadline, || {
            let (mut client, token) = (client.clone(), active.access.clone());
            async move { (validate(&mut client, &token).await == Ok((true, 0))).then_some(()) }
        })
        .await;
        assert_eq!(
            validate(client, &revoked.access).await,
            Ok((false, pb::InvalidReason::Revoked as i32)),
            "the revocation survived the outage"
        );
        issue(client, "erin").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn store_outage_grace_answers_from_cache_for_its_bound_and_local_revocations_win() {
    const GRACE: Duration = Duration::from_secs(10);
    let s = Setup::with_flags("grace", &["--store-outage-grace", "10s"], &[]).await;
    let (mut via_a, mut via_b) = (s.a.client().await, s.b.client().await);
    let alice = issue(&mut via_a, "alice").await;
    let bob = issue(&mut via_a, "bob").await;
    for client in [&mut via_a, &mut via_b] {
        for token in [&alice.access, &bob.access] {
            assert_eq!(
                validate(client, token).await,
                Ok((true, 0)),
                "cached before the outage"
            );
        }
    }

    // The store is gone: two of three replicas of everything.
    s.cluster.kill_now("2,3").await;
    let down = Instant::now();
    // B (the default, 0s) fails closed once its feed is 3 x poll + 2s stale.
    crate::support::poll_until("B (no grace) to fail closed", Duration::from_secs(60), || {
        let (mut client, token) = (via_b.clone(), alice.access.clone());
        async move { (validate(&mut client, &token).await == Err(Code::Unavailable)).then_some(()) }
    })
    .await;
    let b_closed = down.elapsed();
    // A still answers from its cache.
    assert_eq!(
        validate(&mut via_a, &alice.access).await,
        Ok((true, 0)),
        "A, within its grace, answers from the cache"
    );
    // Bob signs out through A: the store cannot take it, but A honours it from now on.
    let request = pb::RevokeRequest {
        access_token: bob.access.clone(),
        session_id: bob.session_id.clone(),
    };
    let revoked = tokio::time::timeout(CALL_DEADLINE, via_a.revoke(request))
        .await
        .expect("Revoke answered within the deadline");
    assert_eq!(
        revoked.map(|_| ()).map_err(|s| s.code()),
        Err(Code::Unavailable)
    );
    // A fails closed once the grace is over too; bob is never valid again on A meanwhile.
    let a_closed = loop {
        match validate(&mut via_a, &bob.access).await {
            Ok((true, _)) => panic!("A answered valid=true for a session revoked through it"),
            Ok(_) | Err(Code::Unavailable) => {}
            Err(code) => panic!("Validate answered {code:?}"),
        }
        if validate(&mut via_a, &alice.access).await == Err(Code::Unavailable) {
            break down.elapsed();
        }
        assert!(
            down.elapsed() < Duration::from_secs(90),
            "A never failed closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "store down: B (grace 0s) fails closed after {b_closed:.1?}, A (grace {GRACE:?}) after \
         {a_closed:.1?}"
    );
    let extra = a_closed.saturating_sub(b_closed);
    assert!(
        extra + POLL + Duration::from_secs(1) >= GRACE && extra <= GRACE + POLL * 3,
        "A answered from its cache {extra:?} longer than B, not about the {GRACE:?} grace"
    );
    s.cluster.start("2,3").await;
    s.a.await_health(ServingStatus::Serving, Duration::from_secs(90))
        .await;
    crate::support::poll_until("A to answer again", Duration::from_secs(60), || {
        let (mut client, token) = (via_a.clone(), alice.access.clone());
        async move { (validate(&mut client, &token).await == Ok((true, 0))).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn sixty_four_refreshes_of_one_token_over_two_replicas_end_in_one_successor() {
    // The default refresh grace: every racer is answered, all with the one successor.
    let s = Setup::new("refresh_grace_race").await;
    for round in 0..5 {
        let answers = race_refreshes(&s, round).await;
        let successors: std::collections::HashSet<&str> = answers
            .iter()
            .map(|answer| match answer {
                Ok(refresh) => refresh.as_str(),
                Err((code, message)) => {
                    panic!(
                        "round {round}: a refresh inside the grace answered {code:?} ({message})"
                    )
                }
            })
            .collect();
        assert_eq!(
            successors.len(),
            1,
            "round {round}: 64 refreshes of one token across two replicas must end in one chain"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn sixty_four_refreshes_of_one_token_without_grace_have_exactly_one_winner() {
    let flags = ["--refresh-grace", "0s"];
    let s = Setup::with_flags("refresh_race", &flags, &flags).await;
    for round in 0..5 {
        let answers = race_refreshes(&s, round).await;
        let mut winners = 0;
        for answer in answers {
            match answer {
                Ok(_) => winners += 1,
                Err((Code::Unauthenticated, _)) => {}
                Err((code, message)) => {
                    panic!("round {round}: a losing refresh answered {code:?} ({message})")
                }
            }
        }
        assert_eq!(
            winners,
            1,
            "round {round}: exactly one of 64 refreshes across two replicas must win\n\
             A's warnings:\n{}\nB's warnings:\n{}",
            s.a.warnings(),
            s.b.warnings(),
        );
    }
}

/// 64 `Refresh` calls of one new session's refresh token, released at once, half through
/// each replica: the refresh token each was answered, or its code and message. A code other
/// than OK or UNAUTHENTICATED fails the test here, with both replicas' warnings and their
/// lines on the session.
async fn race_refreshes(s: &Setup, round: usize) -> Vec<Result<String, (Code, String)>> {
    let channels = [s.a.channel().await, s.b.channel().await];
    let session = issue(&mut s.a.client().await, &format!("racer-{round}")).await;
    let start = Arc::new(Barrier::new(64));
    let mut racers = Vec::new();
    for i in 0..64usize {
        let mut client = Client::new(channels[i % 2].clone());
        let (token, start) = (session.refresh.clone(), start.clone());
        racers.push(tokio::spawn(async move {
            start.wait().await;
            tokio::time::timeout(CALL_DEADLINE, refresh(&mut client, &token))
                .await
                .map_err(|_| (Code::DeadlineExceeded, String::new()))
                .and_then(|r| {
                    r.map(|issued| issued.refresh)
                        .map_err(|s| (s.code(), s.message().to_owned()))
                })
        }));
    }
    let mut answers = Vec::new();
    for racer in racers {
        let answer = racer.await.expect("racer panicked");
        if let Err((code, message)) = &answer
            && *code != Code::Unauthenticated
        {
            let id = session.session_id.as_str();
            panic!(
                "round {round}: a refresh answered {code:?} ({message})\n\
                 A's warnings:\n{}\nB's warnings:\n{}\nA on {id}:\n{}\nB on {id}:\n{}",
                s.a.warnings(),
                s.b.warnings(),
                s.a.lines_with(&[id]),
                s.b.lines_with(&[id]),
            )
        }
        answers.push(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn a_thousand_revocations_through_one_replica_reach_the_other_within_the_bound() {
    const N: usize = 1000;
    let s = Setup::new("bound").await;
    let (via_a, via_b) = (s.a.client().await, s.b.client().await);
    let replicas = (&s.a, &s.b);
    // Issued through A, cached by B.
    let sessions: Vec<_> = futures::stream::iter(0..N)
        .map(|i| {
            let (mut a, mut b) = (via_a.clone(), via_b.clone());
            async move {
                let user = format!("bound-{i}");
                let session: crate::support::Issued = match a.issue(issue_request(&user)).await {
                    Ok(issued) => issued.into_inner().into(),
                    Err(status) => panic!(
                        "issue for {user} through a failed: {status:?}\nA's warnings:\n{}",
                        replicas.0.warnings()
                    ),
                };
                let seen = validate(&mut b, &session.access).await;
                assert_eq!(
                    seen,
                    Ok((true, 0)),
                    "b on a session just issued through a\nB's warnings:\n{}",
                    replicas.1.warnings()
                );
                session
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let delays: Vec<Duration> = futures::stream::iter(sessions)
        .map(|session| {
            let (mut a, mut b) = (via_a.clone(), via_b.clone());
            async move {
                let request = pb::RevokeRequest {
                    access_token: session.access.clone(),
                    session_id: session.session_id.clone(),
                };
                a.revoke(request).await.expect("revoke through a");
                let acked = Instant::now();
                loop {
                    match validate(&mut b, &session.access).await {
                        Ok((false, r)) if r == pb::InvalidReason::Revoked as i32 => {
                            return acked.elapsed();
                        }
                        Ok((true, _)) => {}
                        other => panic!("Validate on b answered {other:?}"),
                    }
                    assert!(
                        acked.elapsed() < Duration::from_secs(30),
                        "b still accepts a session revoked through a 30 s ago"
                    );
                    // The test's own polling period: the measured delay is up to this late.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut sorted = delays;
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    let (p50, p99, max) = (at(0.50), at(0.99), sorted[sorted.len() - 1]);
    eprintln!(
        "revocation through a seen by b: {N} revocations, p50 {p50:.0?}, p99 {p99:.0?}, \
         max {max:.0?} (poll {POLL:?}, bound {REVOCATION_BOUND:?}, probe every 20ms)"
    );
    assert!(
        max <= REVOCATION_BOUND,
        "a revocation took {max:?} to reach the other replica, past the {REVOCATION_BOUND:?} bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a CQL cluster: scripts/test-cluster"]
async fn two_migrations_at_once_leave_one_schema_that_every_node_agrees_on() {
    let (_turn, cluster) = exclusive().await;
    let hosts = cluster.hosts("dc1").await;
    let ks = keyspace("migrate_race");
    // Each process talks to a different first contact point, so their DDL reaches different
    // coordinators.
    let contact: Vec<&str> = hosts.split(',').collect();
    let uris = [
        format!("scylla://{hosts}/{ks}?dc=dc1&rf=3"),
        format!("scylla://{},{}/{ks}?dc=dc1&rf=3", contact[2], contact[1]),
    ];
    let children: Vec<_> = uris
        .iter()
        .map(|uri| {
            migrate_command(uri)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn sessiond migrate")
        })
        .collect();
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait for sessiond migrate");
        assert!(
            out.status.success(),
            "a concurrent sessiond migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every node on one schema version.
    cluster.settle().await;
    // Every node lists each table once, under the same id.
    let mut views = Vec::new();
    for node in &contact {
        views.push(tables_seen_by(node, &ks).await);
    }
    assert!(!views[0].is_empty(), "no table in {ks}");
    for (node, view) in contact.iter().zip(&views) {
        assert_eq!(
            view, &views[0],
            "node {node} sees other tables than {}",
            contact[0]
        );
    }
    eprintln!(
        "two concurrent migrations: {} tables, one id each, the same on all {} nodes",
        views[0].len(),
        contact.len()
    );
    // And the schema works: a replica on it serves.
    let work = tempfile::tempdir().expect("tempdir");
    let uri = format!("scylla://{hosts}/{ks}?dc=dc1");
    let r = Replica::start("m", &uri, &work.path().join("keys"), work.path(), &[]).await;
    issue(&mut r.client().await, "after-migrate").await;
}

/// `(table, id)` of every table of `ks` as node `addr` itself sees them (a driver session
/// that may only talk to that node).
async fn tables_seen_by(addr: &str, ks: &str) -> Vec<(String, uuid::Uuid)> {
    use scylla::client::session_builder::SessionBuilder;
    use scylla::policies::host_filter::AllowListHostFilter;
    let filter = AllowListHostFilter::new([addr]).expect("host filter");
    let session = SessionBuilder::new()
        .known_node(addr)
        .host_filter(Arc::new(filter))
        .build()
        .await
        .expect("connect to one node");
    let mut rows: Vec<(String, uuid::Uuid)> = session
        .query_unpaged(
            "SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = ?",
            (ks,),
        )
        .await
        .expect("read system_schema.tables")
        .into_rows_result()
        .expect("rows")
        .rows::<(String, uuid::Uuid)>()
        .expect("typed rows")
        .collect::<Result<_, _>>()
        .expect("decode rows");
    rows.sort();
    rows
}
