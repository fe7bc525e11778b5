//! A mixed load over two replicas (Issue, Validate, Refresh, Revoke), a ledger of everything
//! acknowledged, and the read-back that proves none of it was lost.
//!
//! Each worker writes through its own replica and validates through the other, so every
//! iteration also crosses replicas through the store: Issue, Validate (other replica), Refresh,
//! Validate of the new token (other replica), and every third session Revoke followed by a
//! Validate on the revoking replica, which must say REVOKED at once. Any call that is not OK
//! (or a Validate that does not say what it must) is a failure with its RPC, code and message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sessiond::pb;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;

use super::harness::Replica;
use crate::support::{Client, issue_request, poll_until};

/// The deadline of every call the load makes: above the server's own (`--request-timeout`,
/// 10 s), so a slow call is the server's failure to report, not the client's impatience.
pub const CALL_DEADLINE: Duration = Duration::from_secs(15);
/// Iterations per worker at most, so a load always ends.
const MAX_ITERATIONS: u64 = 100_000;

/// One acknowledged session and the last tokens it was handed.
#[derive(Clone, Debug)]
pub struct Tracked {
    pub session_id: String,
    pub access: String,
    pub refresh: String,
    /// A Revoke of it was acknowledged.
    pub revoked: bool,
}

/// Calls made, failures seen, and the slowest successful call per RPC.
#[derive(Default)]
struct Tally {
    failures: Vec<String>,
    slowest: [(Duration, &'static str); 4],
}

/// The load while it runs.
pub struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
    not_serving: Arc<AtomicU64>,
    workers: Vec<JoinHandle<Vec<Tracked>>>,
    watcher: JoinHandle<()>,
    started: Instant,
}

/// What a finished load did.
pub struct Outcome {
    pub sessions: Vec<Tracked>,
    pub failures: Vec<String>,
    pub calls: u64,
    /// Health checks of either replica that answered anything but SERVING.
    pub not_serving: u64,
}

impl Load {
    /// Starts `per_replica` workers on each of `a` and `b`; user ids start with `tag`.
    pub async fn start(a: &Replica, b: &Replica, per_replica: usize, tag: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut workers = Vec::new();
        for w in 0..per_replica * 2 {
            let (own, other) = if w % 2 == 0 { (a, b) } else { (b, a) };
            let worker = Worker {
                own: own.client().await,
                other: other.client().await,
                user: format!("{tag}-w{w}"),
                calls: calls.clone(),
                tally: tally.clone(),
            };
            let stop = stop.clone();
            workers.push(tokio::spawn(async move { worker.run(&stop).await }));
        }
        let not_serving = Arc::new(AtomicU64::new(0));
        let watcher = {
            let (stop, not_serving) = (stop.clone(), not_serving.clone());
            let addrs = [a.addr, b.addr];
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for addr in addrs {
                        if health_of(addr).await != Some(ServingStatus::Serving) {
                            not_serving.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // A pause between bounded checks, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
        };
        Self {
            stop,
            calls,
            tally,
            not_serving,
            workers,
            watcher,
            started: Instant::now(),
        }
    }

    /// Returns once the load has made `n` more calls (successful or not) than now.
    pub async fn progress(&self, n: u64, what: &str) {
        let target = self.calls.load(Ordering::Relaxed) + n;
        let calls = self.calls.clone();
        poll_until(
            &format!("{n} more calls of the load ({what})"),
            Duration::from_secs(300),
            || {
                let calls = calls.clone();
                async move { (calls.load(Ordering::Relaxed) >= target).then_some(()) }
            },
        )
        .await;
    }

    /// Stops the workers and hands back what they did.
    pub async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut sessions = Vec::new();
        for worker in self.workers {
            sessions.extend(worker.await.expect("a load worker panicked"));
        }
        self.watcher.await.expect("the health watcher panicked");
        let tally = std::mem::take(&mut *self.tally.lock().await);
        let calls = self.calls.load(Ordering::Relaxed);
        eprintln!(
            "load: {calls} calls in {:.1?}, {} sessions, failures: {}; slowest: {}",
            self.started.elapsed(),
            sessions.len(),
            tally.failures.len(),
            tally
                .slowest
                .iter()
                .map(|(d, rpc)| format!("{rpc} {d:.0?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Outcome {
            sessions,
            failures: tally.failures,
            calls,
            not_serving: self.not_serving.load(Ordering::Relaxed),
        }
    }
}

async fn health_of(addr: std::net::SocketAddr) -> Option<ServingStatus> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
    let channel = tokio::time::timeout(Duration::from_secs(2), endpoint.connect())
        .await
        .ok()?
        .ok()?;
    let request = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = tokio::time::timeout(Duration::from_secs(5), client.check(request))
        .await
        .ok()?
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

struct Worker {
    own: Client,
    other: Client,
    user: String,
    calls: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
}

/// Indices into `Tally::slowest`.
const ISSUE: usize = 0;
const VALIDATE: usize = 1;
const REFRESH: usize = 2;
const REVOKE: usize = 3;
const NAMES: [&str; 4] = ["Issue", "Validate", "Refresh", "Revoke"];

impl Worker {
    async fn run(mut self, stop: &AtomicBool) -> Vec<Tracked> {
        let mut sessions = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && n < MAX_ITERATIONS {
            n += 1;
            if let Some(t) = self.iteration(n).await {
                sessions.push(t);
            }
        }
        sessions
    }

    /// One iteration; the session it issued, if Issue was acknowledged. A session whose fate
    /// became uncertain (a failed Refresh or Revoke) is not tracked: the failure is reported.
    async fn iteration(&mut self, n: u64) -> Option<Tracked> {
        let user = format!("{}-{n}", self.user);
        let issued = self
            .call(ISSUE, self.own.clone().issue(issue_request(&user)))
            .await?;
        let (session, tokens) = (issued.session?, issued.tokens?);
        let mut tracked = Tracked {
            session_id: session.session_id,
            access: tokens.access_token,
            refresh: tokens.refresh_token,
            revoked: false,
        };
        let token = tracked.access.clone();
        self.expect_valid(&token, "issued on the other replica")
            .await;
        let refreshed = self
            .call(
                REFRESH,
                self.own.clone().refresh(pb::RefreshRequest {
                    refresh_token: tracked.refresh.clone(),
                    client: None,
                }),
            )
            .await?;
        let tokens = refreshed.tokens?;
        tracked.access = tokens.access_token;
        tracked.refresh = tokens.refresh_token;
        let token = tracked.access.clone();
        self.expect_valid(&token, "refreshed on the other replica")
            .await;
        if n.is_multiple_of(3) {
            let request = pb::RevokeRequest {
                access_token: tracked.access.clone(),
                session_id: tracked.session_id.clone(),
            };
            self.call(REVOKE, self.own.clone().revoke(request)).await?;
            tracked.revoked = true;
            let request = pb::ValidateRequest {
                access_token: tracked.access.clone(),
                ..Default::default()
            };
            if let Some(r) = self
                .call(VALIDATE, self.own.clone().validate(request))
                .await
                && (r.valid || r.reason != pb::InvalidReason::Revoked as i32)
            {
                self.fail(format!(
                    "Validate on the revoking replica right after Revoke: valid={} reason={}",
                    r.valid, r.reason
                ))
                .await;
            }
        }
        Some(tracked)
    }

    async fn expect_valid(&mut self, token: &str, what: &str) {
        let request = pb::ValidateRequest {
            access_token: token.to_owned(),
            ..Default::default()
        };
        if let Some(r) = self
            .call(VALIDATE, self.other.clone().validate(request))
            .await
            && !r.valid
        {
            self.fail(format!(
                "Validate of a session {what}: valid=false reason={}",
                r.reason
            ))
            .await;
        }
    }

    /// Runs one call with the load's deadline; `None` (and a recorded failure) unless OK.
    async fn call<T>(
        &self,
        rpc: usize,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Option<T> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let name = NAMES[rpc];
        match tokio::time::timeout(CALL_DEADLINE, call).await {
            Ok(Ok(r)) => {
                let took = started.elapsed();
                let mut tally = self.tally.lock().await;
                if took > tally.slowest[rpc].0 {
                    tally.slowest[rpc] = (took, name);
                }
                Some(r.into_inner())
            }
            Ok(Err(status)) => {
                self.fail(format!(
                    "{name} failed after {:.1?}: {:?} {}",
                    started.elapsed(),
                    status.code(),
                    status.message()
                ))
                .await;
                None
            }
            Err(_) => {
                self.fail(format!("{name} exceeded the {CALL_DEADLINE:?} deadline"))
                    .await;
                None
            }
        }
    }

    async fn fail(&self, what: String) {
        eprintln!("load failure: {what}");
        self.tally.lock().await.failures.push(what);
    }
}

/// Reads every acknowledged session back through `fresh`, a replica whose caches are empty
/// (so every answer comes from a LOCAL_QUORUM read): a session not revoked validates and its
/// last refresh token still rotates; a revoked one is REVOKED. Returns the mismatches.
pub async fn read_back(fresh: &Replica, sessions: &[Tracked]) -> Vec<String> {
    let client = fresh.client().await;
    let checks = futures::stream::iter(sessions.iter().cloned())
        .map(|t| {
            let mut client = client.clone();
            async move { check_one(&mut client, &t).await }
        })
        .buffer_unordered(8)
        .filter_map(|mismatch| async move { mismatch })
        .collect::<Vec<String>>();
    tokio::time::timeout(Duration::from_secs(600), checks)
        .await
        .expect("the read-back did not finish within 10 minutes")
}

async fn check_one(client: &mut Client, t: &Tracked) -> Option<String> {
    let request = pb::ValidateRequest {
        access_token: t.access.clone(),
        ..Default::default()
    };
    let answer = match tokio::time::timeout(CALL_DEADLINE, client.validate(request)).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return Some(format!("{}: Validate failed: {s:?}", t.session_id)),
        Err(_) => return Some(format!("{}: Validate timed out", t.session_id)),
    };
    if t.revoked {
        return (answer.valid || answer.reason != pb::InvalidReason::Revoked as i32).then(|| {
            format!(
                "{}: an acknowledged revocation was lost: valid={} reason={}",
                t.session_id, answer.valid, answer.reason
            )
        });
    }
    if !answer.valid {
        return Some(format!(
            "{}: an acknowledged session was lost: reason={}",
            t.session_id, answer.reason
        ));
    }
    let request = pb::RefreshRequest {
        refresh_token: t.refresh.clone(),
        client: None,
    };
    match tokio::time::timeout(CALL_DEADLINE, client.refresh(request)).await {
        Ok(Ok(_)) => None,
        Ok(Err(s)) => Some(format!(
            "{}: the last acknowledged refresh token no longer rotates: {:?} {}",
            t.session_id,
            s.code(),
            s.message()
        )),
        Err(_) => Some(format!("{}: Refresh timed out", t.session_id)),
    }
}
