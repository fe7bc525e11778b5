//! Durability across restarts: a clean in-process restart on the same data directory, a
//! SIGKILL of the real binary under load, and SIGTERM draining an in-flight call.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessiond::pb;
use sessiond::pb::InvalidReason;
use support::*;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const SERVICE: &str = "sessiond.v1.SessionService";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_tokens_refresh_tokens_and_revocations() {
    // Strict rotation, so a rotated-away token is reuse however soon it comes back.
    let first = TestServer::start_with(|c| c.refresh_grace = Duration::ZERO).await;
    let mut client = first.client();
    let kept = first.issue("alice").await;
    let revoked = first.issue("alice").await;
    client
        .revoke(pb::RevokeRequest {
            access_token: kept.access.clone(),
            session_id: revoked.session_id.clone(),
        })
        .await
        .expect("revoke");
    let rotated = first.issue("bob").await;
    let rotated_next = refresh(&mut client, &rotated.refresh)
        .await
        .expect("refresh before restart");
    let carol = first.issue("carol").await;
    client
        .admin_revoke_user(pb::AdminRevokeUserRequest {
            user_id: "carol".into(),
            tenant_id: String::new(),
            reason: "offboarded".into(),
        })
        .await
        .expect("revoke user");
    drop(client);

    let dir = first.stop().await;
    let mut config = config(dir.path());
    config.refresh_grace = Duration::ZERO;
    let second = TestServer::start_in(dir, config).await;
    let mut client = second.client();

    assert_valid(&mut client, &kept.access).await;
    assert_invalid(&mut client, &revoked.access, InvalidReason::Revoked).await;
    assert_invalid(&mut client, &carol.access, InvalidReason::Revoked).await;
    assert_valid(&mut client, &rotated_next.access).await;

    // Refresh tokens stay usable, and rotated-away ones stay dead.
    let renewed = refresh(&mut client, &kept.refresh)
        .await
        .expect("a refresh token from before the restart");
    assert_valid(&mut client, &renewed.access).await;
    assert_error(
        refresh(&mut client, &revoked.refresh).await,
        Code::Unauthenticated,
        "SESSION_REVOKED",
    );
    assert_error(
        refresh(&mut client, &rotated.refresh).await,
        Code::Unauthenticated,
        "REFRESH_TOKEN_REUSE",
    );

    // Audit events survived too.
    let events = audit_all(&mut client, "", 100).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == "user_revoked" && e.user_id == "carol"),
        "{events:?}"
    );
    second.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary.

/// Two distinct ports that were free a moment ago (bound together, read, released).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port();
    (port(&a), port(&b))
}

/// A `sessiond serve` child process, killed on drop if still running.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Daemon {
    /// Starts the binary on `data_dir` with its log in `log_dir`, and waits until it is ready.
    async fn start(data_dir: &Path, log_dir: &Path, name: &str) -> Self {
        Self::start_as(
            Command::new(env!("CARGO_BIN_EXE_sessiond")),
            data_dir,
            log_dir,
            name,
        )
        .await
    }

    /// As [`start`](Self::start), with the process file-mode creation mask set to `umask`
    /// (through `sh`, which then execs the binary: the child is sessiond itself).
    async fn start_with_umask(data_dir: &Path, log_dir: &Path, name: &str, umask: &str) -> Self {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_sessiond"));
        Self::start_as(command, data_dir, log_dir, name).await
    }

    async fn start_as(mut command: Command, data_dir: &Path, log_dir: &Path, name: &str) -> Self {
        let (grpc_port, http_port) = free_ports();
        let addr = SocketAddr::from(([127, 0, 0, 1], grpc_port));
        let http = format!("127.0.0.1:{http_port}");
        let log = log_dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-addr")
            .arg(addr.to_string())
            .arg("--http-addr")
            .arg(&http)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            // Logs go to stdout, errors to stderr: both into the log.
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("spawn sessiond");
        let mut daemon = Self { child, addr, log };
        daemon.wait_ready().await;
        daemon
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls connect + Health until the service reports SERVING.
    async fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("sessiond exited early with {status}:\n{}", self.log());
            }
            if self.serving().await {
                return;
            }
            assert!(
                Instant::now() < end,
                "sessiond not ready within 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn serving(&self) -> bool {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(1));
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: SERVICE.into(),
            })
            .await;
        matches!(reply, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32)
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    fn kill(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM through the `kill` command.
    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Polls for the exit, failing after `deadline`.
    async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < end,
                "sessiond did not exit within {deadline:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data, dir.path(), "first").await;

    let acked: Arc<Mutex<Vec<Issued>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let mut client = connect(daemon.addr).await;
        let (acked, count, stop) = (acked.clone(), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // Bounded: ends at the kill (calls fail), at `stop`, or after 2000 calls.
            for i in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let request = issue_request(&format!("user-{task}-{}", i % 5));
                match client.issue(request).await {
                    Ok(reply) => {
                        acked.lock().unwrap().push(reply.into_inner().into());
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill in the middle of the load: after enough acknowledgements, while calls are in flight.
    let end = Instant::now() + Duration::from_secs(30);
    while count.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < end, "load too slow:\n{}", daemon.log());
        assert!(daemon.running(), "sessiond died:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("load task");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 200);
    assert!(
        acked.len() < 8 * 2000,
        "the kill came after the load had ended"
    );

    let restarted = Daemon::start(&data, dir.path(), "second").await;
    let mut client = connect(restarted.addr).await;
    let mut lost = Vec::new();
    for issued in &acked {
        let (valid, reason) = validate(&mut client, &issued.access).await;
        if !valid {
            lost.push((issued.session_id.clone(), reason));
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged sessions lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    // Their refresh tokens work too (a sample, to stay fast).
    for issued in acked.iter().take(20) {
        let renewed = refresh(&mut client, &issued.refresh)
            .await
            .unwrap_or_else(|s| panic!("refresh of {}: {s:?}", issued.session_id));
        assert_valid(&mut client, &renewed.access).await;
    }
    let stored = admin_list_all(
        &mut client,
        pb::AdminListRequest {
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert!(stored.len() >= acked.len());
}

/// One ListServices exchange on an open reflection stream.
async fn list_services(
    requests: &tokio::sync::mpsc::Sender<ServerReflectionRequest>,
    responses: &mut tonic::Streaming<tonic_reflection::pb::v1::ServerReflectionResponse>,
) -> Vec<String> {
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .expect("send on the reflection stream");
    let reply = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("reflection reply within the deadline")
        .expect("reflection stream")
        .expect("a reply");
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_call_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data, dir.path(), "first").await;
    let mut client = connect(daemon.addr).await;
    let before = issue(&mut client, "alice").await;

    // An in-flight call: a reflection stream, open until we end it.
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    let mut reflection = ServerReflectionClient::new(channel(daemon.addr).await);
    let mut responses = reflection
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("open reflection stream")
        .into_inner();
    assert!(
        list_services(&requests, &mut responses)
            .await
            .contains(&SERVICE.to_owned())
    );

    daemon.terminate();
    // Draining: new connections are refused once the listener is closed...
    let addr = daemon.addr;
    poll_until("the listener to close", DEADLINE, || async move {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    // ...while the process waits for the call in flight.
    assert!(daemon.running(), "exited with a call in flight");
    let services = list_services(&requests, &mut responses).await;
    assert!(services.contains(&SERVICE.to_owned()), "{services:?}");

    // Ending the call lets it complete with OK, and the process exit 0.
    drop(requests);
    let end = tokio::time::timeout(DEADLINE, responses.message())
        .await
        .expect("the stream ends within the deadline");
    assert!(
        matches!(end, Ok(None)),
        "the call completes cleanly: {end:?}"
    );
    let status = daemon.wait_exit(DEADLINE).await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}:\n{}",
        daemon.log()
    );

    // What was acknowledged before SIGTERM is there after a restart.
    let restarted = Daemon::start(&data, dir.path(), "second").await;
    let mut client = connect(restarted.addr).await;
    assert_valid(&mut client, &before.access).await;
    refresh(&mut client, &before.refresh)
        .await
        .expect("refresh after a clean stop");
}

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_the_keys_are_owner_only_even_under_umask_000() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start_with_umask(&data, dir.path(), "umask", "000").await;
    let session = issue(&mut connect(daemon.addr).await, "alice").await;
    daemon.kill();
    let owner_only = [
        (data.clone(), 0o700),
        (data.join("sessiond.redb"), 0o600),
        (data.join("keys"), 0o700),
        (data.join("keys/signing-ed25519.pem"), 0o600),
        (data.join("keys/pepper"), 0o600),
    ];
    for (path, mode) in &owner_only {
        assert_eq!(mode_of(path), *mode, "{}", path.display());
    }

    // Modes the operator loosened: sessiond's own store file is narrowed again; the directory
    // is the operator's (it may be a mount) and is kept, with a warning that names it.
    let store = data.join("sessiond.redb");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut daemon = Daemon::start_with_umask(&data, dir.path(), "loosened", "000").await;
    assert_valid(&mut connect(daemon.addr).await, &session.access).await;
    let log = daemon.log();
    daemon.kill();
    assert_eq!(mode_of(&store), 0o600);
    assert_eq!(mode_of(&data), 0o777);
    let warned = |path: &Path, mode: &str| {
        log.lines().any(|line| {
            line.contains("WARN")
                && line.contains(&path.display().to_string())
                && line.contains(mode)
        })
    };
    assert!(
        warned(&data, "0777"),
        "no warning names the data directory:\n{log}"
    );
    assert!(
        warned(&store, "0666"),
        "no warning names the store file:\n{log}"
    );
}

/// Runs `sessiond serve` on `data_dir` and returns its exit status and stderr; it must stop
/// by itself (the store cannot be opened).
fn serve_expecting_refusal(data_dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run sessiond");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_corrupt_store_file_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sessiond.redb");
    std::fs::write(&file, vec![0xA5u8; 64 * 1024]).expect("write garbage");
    let (status, stderr) = serve_expecting_refusal(dir.path());
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("cannot open the store"), "stderr: {stderr}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "the message names the file: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}

#[test]
fn an_unusable_data_dir_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_dir = dir.path().join("data");
    std::fs::write(&not_a_dir, b"a file, not a directory").expect("write");
    let (status, stderr) = serve_expecting_refusal(&not_a_dir);
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&not_a_dir.display().to_string()),
        "the message names the path: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
}
