//! The cluster under test (driven through `scripts/cql-cluster`), keyspaces on it, and
//! `sessiond serve` replicas as child processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::{Client, poll_until};

/// The tests share one cluster: one at a time.
static CLUSTER: Mutex<()> = Mutex::const_new(());

/// How long a replica may take to report SERVING (a debug build on two busy cores).
const REPLICA_START: Duration = Duration::from_secs(120);

/// Takes the cluster for one test and brings every node up (a test that failed half-way may
/// have left one down).
pub async fn exclusive() -> (MutexGuard<'static, ()>, Cluster) {
    let guard = CLUSTER.lock().await;
    let cluster = Cluster::from_env();
    cluster.script(&["start"], "").await;
    (guard, cluster)
}

/// The cluster `SESSIOND_TEST_CLUSTER` names (a `scripts/cql-cluster` state directory).
#[derive(Clone)]
pub struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn from_env() -> Self {
        let dir = std::env::var("SESSIOND_TEST_CLUSTER")
            .ok()
            .filter(|d| !d.is_empty())
            .expect(
                "SESSIOND_TEST_CLUSTER must name a scripts/cql-cluster state dir \
             (scripts/test-cluster starts a cluster and sets it)",
            );
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("nodes").is_file(),
            "SESSIOND_TEST_CLUSTER={} holds no cluster (no nodes file)",
            dir.display()
        );
        Self { dir }
    }

    fn script_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cql-cluster")
    }

    /// Runs `scripts/cql-cluster VERB DIR ARGS...`; panics with its stderr unless it
    /// succeeds; returns stdout.
    fn run(&self, verb_and_args: &[&str], settle: &str) -> String {
        let (verb, args) = verb_and_args.split_first().expect("a verb");
        let started = Instant::now();
        let mut command = Command::new(Self::script_path());
        command.arg(verb).arg(&self.dir).args(args);
        if !settle.is_empty() {
            command.env("SESSIOND_CLUSTER_SETTLE", settle);
        }
        let out = command.output().expect("run scripts/cql-cluster");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scripts/cql-cluster {verb} {} {args:?} failed:\n{stderr}",
            self.dir.display()
        );
        eprintln!("cluster: {verb} {args:?} done in {:.1?}", started.elapsed());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `run` off the runtime's threads (the script waits for the cluster, for tens of
    /// seconds, while the load keeps running).
    async fn script(&self, verb_and_args: &[&str], settle: &str) -> String {
        let cluster = self.clone();
        let args: Vec<String> = verb_and_args.iter().map(|s| (*s).to_owned()).collect();
        let settle = settle.to_owned();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cluster.run(&args, &settle)
        })
        .await
        .expect("scripts/cql-cluster call panicked")
    }

    /// The contact points of data centre `dc`, `host:port,...`.
    pub async fn hosts(&self, dc: &str) -> String {
        self.script(&["hosts", dc], "").await.trim().to_owned()
    }

    /// kill -9 the nodes of `list` ("2" or "2,3"); returns once every running node sees them
    /// down.
    pub async fn kill(&self, list: &str) {
        self.script(&["kill", list], "").await;
    }

    /// kill -9 the nodes of `list`; returns as soon as the processes are gone, before the
    /// rest of the cluster has noticed.
    pub async fn kill_now(&self, list: &str) {
        self.script(&["kill", list], "0").await;
    }

    /// Starts the nodes of `list`; returns once they serve CQL and every node sees them up.
    pub async fn start(&self, list: &str) {
        self.script(&["start", list], "").await;
    }

    /// Stops node `i` cleanly, then starts it; returns once the ring has it up again.
    pub async fn restart(&self, i: &str) {
        self.script(&["restart", i], "").await;
    }

    /// Waits until the ring agrees with which nodes run, and on one schema version.
    pub async fn settle(&self) {
        self.script(&["wait"], "").await;
    }
}

/// A fresh keyspace name with `prefix`.
pub fn keyspace(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// `sessiond migrate --store URI` as a child process; its output.
pub fn migrate_command(uri: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command
        .args(["migrate", "--store", uri])
        .env("RUST_LOG", "sessiond=info")
        .stdin(Stdio::null());
    command
}

/// Runs `sessiond migrate` and panics unless it succeeds.
pub fn migrate(uri: &str) {
    let out = migrate_command(uri).output().expect("run sessiond migrate");
    assert!(
        out.status.success(),
        "sessiond migrate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A `sessiond serve` child process on the cluster; killed (by its own handle) when dropped.
pub struct Replica {
    pub name: String,
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Replica {
    /// Spawns `sessiond serve` on `uri` with the shared `keys`, logging into `work`, with
    /// `extra` flags; waits until it reports SERVING.
    pub async fn start(name: &str, uri: &str, keys: &Path, work: &Path, extra: &[&str]) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let http = format!("127.0.0.1:{}", free_port());
        let log = work.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
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
            .args(["--store", uri])
            .args(extra)
            .env("RUST_LOG", "sessiond=info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn sessiond");
        let mut replica = Self {
            name: name.to_owned(),
            child,
            addr,
            log,
        };
        replica.ready().await;
        replica
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + REPLICA_START;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "replica {} exited during start-up ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if self.health().await == Some(ServingStatus::Serving) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "replica {} not SERVING after {REPLICA_START:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of the replica's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The replica's warnings and errors (the store's detail behind an UNAVAILABLE), last
    /// ones first cut, for failure messages.
    pub fn warnings(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The replica's log lines that mention any of `needles` (session ids), for failure
    /// messages.
    pub fn lines_with(&self, needles: &[&str]) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A new channel to the replica (calls carry their own deadlines).
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to replica")
    }

    /// A session client on a new channel.
    pub async fn client(&self) -> Client {
        Client::new(self.channel().await)
    }

    /// The overall health status, or `None` when the replica does not answer within 5 s.
    pub async fn health(&self) -> Option<ServingStatus> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr)).ok()?;
        let channel = tokio::time::timeout(Duration::from_secs(2), endpoint.connect())
            .await
            .ok()?
            .ok()?;
        let request = HealthCheckRequest {
            service: String::new(),
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            HealthClient::new(channel).check(request),
        )
        .await
        .ok()?
        .ok()?;
        ServingStatus::try_from(answer.into_inner().status).ok()
    }

    /// Polls until the replica reports `want`, failing after `deadline`.
    pub async fn await_health(&self, want: ServingStatus, deadline: Duration) {
        let what = format!("replica {} to report {want:?}", self.name);
        poll_until(&what, deadline, || async {
            (self.health().await == Some(want)).then_some(())
        })
        .await;
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stored refresh and revocation columns of `ids` in `ks`, one line each, read at
/// LOCAL_QUORUM with their write times: what a failure message needs to tell a lost write
/// from a later one.
pub async fn stored_sessions(hosts: &str, ks: &str, ids: &[&str]) -> Vec<String> {
    use scylla::client::session_builder::SessionBuilder;
    let nodes: Vec<&str> = hosts.split(',').collect();
    let Ok(session) = SessionBuilder::new().known_nodes(&nodes).build().await else {
        return vec!["(could not connect to read the rows)".to_owned()];
    };
    let query = format!(
        "SELECT refresh_generation, writetime(refresh_generation), revoked_at, revoke_reason \
         FROM {ks}.sessions WHERE session_id = ?"
    );
    let mut lines = Vec::new();
    for id in ids {
        let Ok(uuid) = uuid::Uuid::parse_str(id) else {
            continue;
        };
        let row = session
            .query_unpaged(query.as_str(), (uuid,))
            .await
            .ok()
            .and_then(|r| r.into_rows_result().ok())
            .and_then(|r| {
                r.maybe_first_row::<(
                    Option<i64>,
                    Option<i64>,
                    Option<scylla::value::CqlTimestamp>,
                    Option<String>,
                )>()
                .ok()
                .flatten()
            });
        lines.push(format!(
            "{id}: stored (generation, its writetime, revoked_at, reason) = {row:?}"
        ));
    }
    lines
}
