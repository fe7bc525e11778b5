//! `sessiond-load`: the end-to-end load generator behind the figures in `docs/benchmarks.md`.
//!
//! It drives a separately running sessiond (build it with `--release`) over loopback with the
//! generated gRPC client, and measures each RPC at each concurrency for a fixed time or a fixed
//! number of requests. The baseline is `empty`: `grpc.health.v1.Health/Check` on the same
//! server, i.e. an empty unary call through the same tonic stack, connection and runtime, so
//! the ratio `Validate / empty` says what `Validate` costs beyond gRPC itself.
//!
//! ```text
//! cargo build --release --locked --bin sessiond --bin sessiond-load
//! target/release/sessiond serve --data-dir "$(mktemp -d)" --grpc-addr 127.0.0.1:50051 &
//! target/release/sessiond-load --addr http://127.0.0.1:50051 \
//!     --rpcs validate,issue,refresh,empty --concurrency 1,16,64 --duration 10s --warmup 2s \
//!     --server-pid "$(pgrep -n -x sessiond)"
//! ```
//!
//! What each RPC does:
//!
//! - `validate`: a pool of sessions (`--pool`, default 1000) is issued first, then every worker
//!   validates their access tokens round-robin. After the warm-up every token has been verified
//!   once, so this is the cache-hit steady state production sees. A `valid: false` answer counts
//!   as an error.
//! - `issue`: every call uses a fresh user id (`load-<run>-issue-c<concurrency>-w<worker>-<n>`),
//!   so the per-user session limit never triggers evictions.
//! - `refresh`: each worker owns one session and rotates its refresh token in a loop (each
//!   answer carries the next token). After a failed call the worker issues itself a new session
//!   outside the timed section, since the old token may have been rotated away.
//! - `empty`: the health check, the baseline.
//!
//! Workers are spread over `--connections` HTTP/2 channels (default `min(concurrency, 4)`).
//! Every call has a deadline (`--rpc-timeout`), so a run always ends by itself. Failed calls
//! are counted, never fatal; latencies of successful calls go into an HDR histogram (µs).
//! `--json` prints one JSON document instead of the table; progress goes to stderr either way.
//! With `--server-pid` the table also gives the server's CPU time per call (user + system, from
//! `/proc`), beside the load generator's own: on a machine where both share the cores, that
//! says where the time goes better than throughput alone.
//!
//! `--before-cell CMD` runs a shell command once a cell is set up (the pool issued, the
//! connections open) and before its first call, warm-up included: `scripts/bench-instructions`
//! zeroes callgrind's counters there, so a count covers the cell's calls and not the setup.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use sessiond::pb;
use sessiond::pb::session_service_client::SessionServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Highest latency the histograms track (µs); slower calls are recorded at this value.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How many pool sessions are issued at once while setting up `validate`.
const SETUP_PARALLELISM: usize = 16;
/// Default time per cell when neither `--duration` nor `--requests` is given.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Load generator for a running sessiond.
#[derive(Debug, Parser)]
#[command(name = "sessiond-load", version, about)]
struct Args {
    /// The server to drive (a release build, started separately).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Concurrent in-flight calls (workers), one measurement cell per value.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    concurrency: Vec<usize>,
    /// Measured time per cell [default: 10s unless --requests is given].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Measured calls per cell (with --duration too, whichever ends first).
    #[arg(long)]
    requests: Option<u64>,
    /// Unmeasured calls before each cell, for the same workers and connections.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    warmup: Duration,
    /// RPCs to measure, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "validate,issue,refresh,empty"
    )]
    rpcs: Vec<Rpc>,
    /// HTTP/2 connections the workers are spread over [default: min(concurrency, 4)].
    #[arg(long)]
    connections: Option<usize>,
    /// Sessions issued up front and validated round-robin by `validate`.
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// How much of the session `validate` asks for: `full` (every field) or `basic` (ids,
    /// lifetimes and sign-in, `SESSION_VIEW_BASIC`).
    #[arg(long, value_enum, default_value_t = View::Full)]
    view: View,
    /// A file of access tokens, one per line: read as the pool when it exists (the pool
    /// then is its tokens, whatever `--pool` says), else written with the pool issued. A pool
    /// issued through one server process and validated by another, on the same store, is
    /// seen for the first time by the second: the cold path.
    #[arg(long)]
    pool_file: Option<std::path::PathBuf>,
    /// Deadline of every call.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    rpc_timeout: Duration,
    /// How long to wait for the server to accept a connection.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    wait: Duration,
    /// The server's process id, to report its CPU time per call (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// A shell command (`sh -c`) run before each cell's calls, after its setup; the run stops
    /// if it fails. For a profiler's counters, e.g. `callgrind_control --zero PID`.
    #[arg(long)]
    before_cell: Option<String>,
}

/// The `view` of every `validate` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum View {
    Full,
    Basic,
}

impl View {
    fn wire(self) -> i32 {
        match self {
            View::Full => pb::SessionView::Full as i32,
            View::Basic => pb::SessionView::Basic as i32,
        }
    }
}

/// An RPC the generator can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Rpc {
    Validate,
    Issue,
    Refresh,
    /// `grpc.health.v1.Health/Check`: the empty-call baseline.
    Empty,
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rpc::Validate => "validate",
            Rpc::Issue => "issue",
            Rpc::Refresh => "refresh",
            Rpc::Empty => "empty",
        })
    }
}

/// Why a run could not be carried out (failed calls during a measurement are not errors).
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("setting up {rpc}: {reason}")]
    Setup { rpc: Rpc, reason: String },
    #[error("--before-cell command: {0}")]
    BeforeCell(String),
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("a worker task failed: {0}")]
    Worker(#[from] tokio::task::JoinError),
    #[error("cannot encode json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The result of one (rpc, concurrency) cell.
#[derive(Debug, Serialize)]
struct Cell {
    rpc: Rpc,
    concurrency: usize,
    connections: usize,
    /// Measured calls, successful or not.
    requests: u64,
    errors: u64,
    /// The first error seen, as a sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// Measured wall time: from the end of the warm-up to the last measured call's answer.
    elapsed_s: f64,
    /// Successful calls per second.
    throughput: f64,
    mean_us: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// CPU time (user + system) the server used per measured call, with `--server-pid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_us_per_call: Option<f64>,
    /// CPU time this load generator used per measured call.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_cpu_us_per_call: Option<f64>,
}

/// Validate's throughput as a share of the empty call's, at one concurrency.
#[derive(Debug, Serialize)]
struct Ratio {
    concurrency: usize,
    validate: f64,
    empty: f64,
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    addr: &'a str,
    duration_s: Option<f64>,
    requests: Option<u64>,
    warmup_s: f64,
    pool: usize,
    view: View,
    client_threads: usize,
    cells: &'a [Cell],
    validate_over_empty: &'a [Ratio],
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sessiond-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<(), LoadError> {
    check_args(args)?;
    let run_tag = run_tag();
    let mut cells = Vec::new();
    for &rpc in &args.rpcs {
        let tokens = match rpc {
            Rpc::Validate => Some(issue_pool(args, &run_tag).await?),
            _ => None,
        };
        for &concurrency in &args.concurrency {
            let connections = args.connections.unwrap_or(concurrency.min(4)).max(1);
            let channels = connect_all(args, connections).await?;
            let tag = format!("{run_tag}-{rpc}-c{concurrency}");
            if let Some(command) = &args.before_cell {
                before_cell(command).await?;
            }
            let cell = measure(args, rpc, concurrency, &channels, tokens.clone(), &tag).await?;
            eprintln!(
                "{rpc:>8} c={concurrency:<3} {:>9.0} req/s  p50 {}  p99 {}  errors {}",
                cell.throughput,
                micros(cell.p50_us),
                micros(cell.p99_us),
                cell.errors
            );
            if let Some(e) = &cell.first_error {
                eprintln!("         first error: {e}");
            }
            cells.push(cell);
        }
    }
    let ratios = ratios(&cells);
    if args.json {
        let report = Report {
            addr: &args.addr,
            duration_s: duration_of(args).map(|d| d.as_secs_f64()),
            requests: args.requests,
            warmup_s: args.warmup.as_secs_f64(),
            pool: args.pool,
            view: args.view,
            client_threads: client_threads(),
            cells: &cells,
            validate_over_empty: &ratios,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&cells, &ratios);
    }
    Ok(())
}

fn check_args(args: &Args) -> Result<(), LoadError> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err(LoadError::Usage(
            "--concurrency needs one or more values of at least 1".into(),
        ));
    }
    if args.connections == Some(0) {
        return Err(LoadError::Usage("--connections must be at least 1".into()));
    }
    if args.rpcs.contains(&Rpc::Validate) && args.pool == 0 {
        return Err(LoadError::Usage("--pool must be at least 1".into()));
    }
    if args.requests == Some(0) {
        return Err(LoadError::Usage("--requests must be at least 1".into()));
    }
    if args.duration.is_some_and(|d| d.is_zero()) {
        return Err(LoadError::Usage("--duration must be positive".into()));
    }
    Ok(())
}

/// The measured time per cell: as given, the default when neither bound is given, or none
/// when only `--requests` bounds the cell.
fn duration_of(args: &Args) -> Option<Duration> {
    match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, None) => Some(DEFAULT_DURATION),
        (None, Some(_)) => None,
    }
}

/// Runs the `--before-cell` command to its end; a failure to start it or a non-zero exit stops
/// the run, since the figures would not cover what the caller meant them to.
async fn before_cell(command: &str) -> Result<(), LoadError> {
    let command = command.to_owned();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .status()
    })
    .await?
    .map_err(|e| LoadError::BeforeCell(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(LoadError::BeforeCell(status.to_string()))
    }
}

/// A tag unique to this run, so user ids never collide with an earlier run on the same server.
fn run_tag() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    format!("load-{micros:x}")
}

fn client_threads() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

/// Opens `n` HTTP/2 connections, retrying until the server accepts or `--wait` runs out.
async fn connect_all(args: &Args, n: usize) -> Result<Vec<Channel>, LoadError> {
    let connect_error = |reason: String| LoadError::Connect {
        addr: args.addr.clone(),
        reason,
    };
    let endpoint = Endpoint::from_shared(args.addr.clone())
        .map_err(|e| connect_error(e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(args.rpc_timeout);
    let give_up = Instant::now() + args.wait;
    let mut channels = Vec::with_capacity(n);
    while channels.len() < n {
        match endpoint.connect().await {
            Ok(channel) => channels.push(channel),
            Err(e) if Instant::now() >= give_up => return Err(connect_error(e.to_string())),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(channels)
}

/// The request every `Issue` sends; about the size of a browser login.
fn issue_request(user_id: String) -> pb::IssueRequest {
    pb::IssueRequest {
        user_id,
        tenant_id: String::new(),
        client: Some(pb::ClientInfo {
            ip: "192.0.2.10".to_owned(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/124.0 Safari/537.36 sessiond-load"
                .to_owned(),
            device_name: String::new(),
        }),
        ttl: None,
        metadata: Default::default(),
        ..Default::default()
    }
}

/// The `--pool` of access tokens: read from `--pool-file`, or issued (and written there).
async fn issue_pool(args: &Args, run_tag: &str) -> Result<Arc<[String]>, LoadError> {
    let setup_error = |reason: String| LoadError::Setup {
        rpc: Rpc::Validate,
        reason,
    };
    if let Some(path) = &args.pool_file
        && path.exists()
    {
        let text = std::fs::read_to_string(path)
            .map_err(|e| setup_error(format!("reading {}: {e}", path.display())))?;
        let tokens: Vec<String> = text.lines().map(str::to_owned).collect();
        if tokens.is_empty() {
            return Err(setup_error(format!("{} holds no tokens", path.display())));
        }
        eprintln!(
            "validate: read a pool of {} tokens from {}",
            tokens.len(),
            path.display()
        );
        return Ok(tokens.into());
    }
    let tokens = issue_new_pool(args, run_tag).await?;
    if let Some(path) = &args.pool_file {
        std::fs::write(path, tokens.join("\n"))
            .map_err(|e| setup_error(format!("writing {}: {e}", path.display())))?;
    }
    Ok(tokens)
}

/// Issues `--pool` sessions, one per user, and returns their access tokens.
async fn issue_new_pool(args: &Args, run_tag: &str) -> Result<Arc<[String]>, LoadError> {
    let setup_error = |reason: String| LoadError::Setup {
        rpc: Rpc::Validate,
        reason,
    };
    let channels = connect_all(args, SETUP_PARALLELISM.min(4)).await?;
    let next = Arc::new(AtomicU64::new(0));
    let pool = args.pool as u64;
    let mut tasks = Vec::with_capacity(SETUP_PARALLELISM);
    for worker in 0..SETUP_PARALLELISM {
        let Some(channel) = channels.get(worker % channels.len()).cloned() else {
            return Err(setup_error("no connection".into()));
        };
        let next = next.clone();
        let tag = run_tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = SessionServiceClient::new(channel);
            let mut tokens = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pool {
                    return Ok(tokens);
                }
                let request = issue_request(format!("{tag}-pool-{i}"));
                let reply = client.issue(request).await?.into_inner();
                match reply.tokens {
                    Some(pair) => tokens.push(pair.access_token),
                    None => return Err(tonic::Status::internal("issue returned no tokens")),
                }
            }
        }));
    }
    let mut tokens = Vec::with_capacity(args.pool);
    for task in tasks {
        let issued = task.await?.map_err(|s| setup_error(status_text(&s)))?;
        tokens.extend(issued);
    }
    eprintln!("validate: issued a pool of {} sessions", tokens.len());
    Ok(tokens.into())
}

/// When a cell's workers measure and when they stop.
struct Plan {
    measure_from: Instant,
    /// Stop starting calls at this instant (duration mode).
    end: Option<Instant>,
    /// Stop once this many measured calls have been started (requests mode).
    requests: Option<u64>,
    started: AtomicU64,
}

/// What one worker saw.
struct Tally {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    last_answer: Option<Instant>,
}

async fn measure(
    args: &Args,
    rpc: Rpc,
    concurrency: usize,
    channels: &[Channel],
    tokens: Option<Arc<[String]>>,
    tag: &str,
) -> Result<Cell, LoadError> {
    let measure_from = Instant::now() + args.warmup;
    let plan = Arc::new(Plan {
        measure_from,
        end: duration_of(args).map(|d| measure_from + d),
        requests: args.requests,
        started: AtomicU64::new(0),
    });
    // CPU clocks are read when the measured phase starts and once every worker has stopped.
    let server = args.server_pid.map(|pid| pid.to_string());
    let cpu_at_start = {
        let server = server.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            CpuClocks::read(server.as_deref())
        })
    };
    let mut tasks = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let Some(channel) = channels.get(worker % channels.len()).cloned() else {
            return Err(LoadError::Usage("no connection".into()));
        };
        let work =
            Work::new(rpc, channel, worker, concurrency, tokens.clone(), tag)?.viewing(args.view);
        let histogram = new_histogram()?;
        tasks.push(tokio::spawn(drive(work, plan.clone(), histogram)));
    }
    let mut total = new_histogram()?;
    let (mut requests, mut errors, mut first_error, mut last_answer) = (0, 0, None, None);
    for task in tasks {
        let tally = task.await?;
        total
            .add(&tally.histogram)
            .map_err(|e| LoadError::Histogram(e.to_string()))?;
        requests += tally.requests;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
        last_answer = last_answer.max(tally.last_answer);
    }
    let cpu = CpuClocks::read(server.as_deref()).per_call(&cpu_at_start.await?, requests);
    let elapsed = last_answer
        .map(|t| t.saturating_duration_since(measure_from))
        .unwrap_or_default()
        .as_secs_f64();
    let ok = requests.saturating_sub(errors);
    Ok(Cell {
        rpc,
        concurrency,
        connections: channels.len(),
        requests,
        errors,
        first_error,
        elapsed_s: elapsed,
        throughput: if elapsed > 0.0 {
            ok as f64 / elapsed
        } else {
            0.0
        },
        mean_us: total.mean(),
        p50_us: total.value_at_quantile(0.50),
        p90_us: total.value_at_quantile(0.90),
        p99_us: total.value_at_quantile(0.99),
        p999_us: total.value_at_quantile(0.999),
        max_us: total.max(),
        server_cpu_us_per_call: cpu.server,
        client_cpu_us_per_call: cpu.client,
    })
}

/// CPU time used so far by the server (when its pid is known) and by this process.
#[derive(Clone, Copy, Debug, Default)]
struct CpuClocks {
    server: Option<f64>,
    client: Option<f64>,
}

impl CpuClocks {
    fn read(server_pid: Option<&str>) -> Self {
        Self {
            server: server_pid.and_then(cpu_seconds),
            client: cpu_seconds("self"),
        }
    }

    /// The CPU µs per call used since `start`, for each clock read both times.
    fn per_call(self, start: &Self, calls: u64) -> Self {
        let per_call = |end: Option<f64>, start: Option<f64>| match (end, start) {
            (Some(end), Some(start)) if calls > 0 => Some((end - start) * 1e6 / calls as f64),
            _ => None,
        };
        Self {
            server: per_call(self.server, start.server),
            client: per_call(self.client, start.client),
        }
    }
}

/// User plus system CPU seconds of a process, from `/proc/<pid>/stat` (fields 14 and 15, in
/// USER_HZ ticks, which Linux fixes at 100 per second for /proc). None where /proc is absent.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, may hold spaces and parentheses: split after its last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn new_histogram() -> Result<Histogram<u64>, LoadError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .map_err(|e| LoadError::Histogram(e.to_string()))
}

/// One worker: calls back to back until the plan says stop, timing the measured calls.
async fn drive(mut work: Work, plan: Arc<Plan>, histogram: Histogram<u64>) -> Tally {
    let mut tally = Tally {
        histogram,
        requests: 0,
        errors: 0,
        first_error: None,
        last_answer: None,
    };
    loop {
        let now = Instant::now();
        if plan.end.is_some_and(|end| now >= end) {
            break;
        }
        let measured = now >= plan.measure_from;
        if measured
            && let Some(limit) = plan.requests
            && plan.started.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        // Untimed preparation (a refresh worker re-issuing its session) still counts a failure.
        let outcome = match work.prepare().await {
            Ok(()) => {
                let start = Instant::now();
                work.call().await.map(|()| start.elapsed())
            }
            Err(e) => Err(e),
        };
        if !measured {
            continue;
        }
        tally.requests += 1;
        tally.last_answer = Some(Instant::now());
        match outcome {
            Ok(took) => {
                let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                tally.histogram.saturating_record(us.max(1));
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
            }
        }
    }
    tally
}

/// A worker's state for one RPC.
enum Work {
    Validate {
        client: SessionServiceClient<Channel>,
        tokens: Arc<[String]>,
        next: usize,
        view: i32,
    },
    Issue {
        client: SessionServiceClient<Channel>,
        prefix: String,
        n: u64,
    },
    Refresh {
        client: SessionServiceClient<Channel>,
        user_id: String,
        /// The current refresh token; `None` until issued, or after a failure.
        token: Option<String>,
    },
    Empty {
        client: HealthClient<Channel>,
    },
}

impl Work {
    fn new(
        rpc: Rpc,
        channel: Channel,
        worker: usize,
        concurrency: usize,
        tokens: Option<Arc<[String]>>,
        tag: &str,
    ) -> Result<Self, LoadError> {
        Ok(match rpc {
            Rpc::Validate => {
                let tokens = tokens.ok_or(LoadError::Setup {
                    rpc,
                    reason: "no token pool".into(),
                })?;
                // Workers start spread over the pool and walk it round-robin.
                let next = worker * tokens.len() / concurrency;
                Work::Validate {
                    client: SessionServiceClient::new(channel),
                    tokens,
                    next,
                    view: View::Full.wire(),
                }
            }
            Rpc::Issue => Work::Issue {
                client: SessionServiceClient::new(channel),
                prefix: format!("{tag}-w{worker}"),
                n: 0,
            },
            Rpc::Refresh => Work::Refresh {
                client: SessionServiceClient::new(channel),
                user_id: format!("{tag}-w{worker}"),
                token: None,
            },
            Rpc::Empty => Work::Empty {
                client: HealthClient::new(channel),
            },
        })
    }

    /// Work that must precede a timed call but is not part of it.
    async fn prepare(&mut self) -> Result<(), String> {
        if let Work::Refresh {
            client,
            user_id,
            token: token @ None,
        } = self
        {
            let reply = client
                .issue(issue_request(user_id.clone()))
                .await
                .map_err(|s| format!("issue before refresh: {}", status_text(&s)))?;
            let pair = reply
                .into_inner()
                .tokens
                .ok_or("issue returned no tokens")?;
            *token = Some(pair.refresh_token);
        }
        Ok(())
    }

    /// The same work, with `validate` asking for `wanted`.
    fn viewing(mut self, wanted: View) -> Self {
        if let Work::Validate { view, .. } = &mut self {
            *view = wanted.wire();
        }
        self
    }

    /// One timed call; a failure is described, not raised.
    async fn call(&mut self) -> Result<(), String> {
        match self {
            Work::Validate {
                client,
                tokens,
                next,
                view,
            } => {
                let token = tokens.get(*next).ok_or("empty token pool")?.clone();
                *next = (*next + 1) % tokens.len();
                let reply = client
                    .validate(pb::ValidateRequest {
                        access_token: token,
                        view: *view,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| status_text(&s))?
                    .into_inner();
                if reply.valid {
                    Ok(())
                } else {
                    Err(format!("token not valid: reason {}", reply.reason))
                }
            }
            Work::Issue { client, prefix, n } => {
                let user_id = format!("{prefix}-{n}");
                *n += 1;
                client
                    .issue(issue_request(user_id))
                    .await
                    .map(drop)
                    .map_err(|s| status_text(&s))
            }
            Work::Refresh { client, token, .. } => {
                // Taken out first: after a failure it may have been rotated away already.
                let refresh_token = token.take().ok_or("no session to refresh")?;
                let reply = client
                    .refresh(pb::RefreshRequest {
                        refresh_token,
                        client: None,
                    })
                    .await
                    .map_err(|s| status_text(&s))?;
                let pair = reply
                    .into_inner()
                    .tokens
                    .ok_or("refresh returned no tokens")?;
                *token = Some(pair.refresh_token);
                Ok(())
            }
            Work::Empty { client } => {
                let reply = client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map_err(|s| status_text(&s))?
                    .into_inner();
                if reply.status == ServingStatus::Serving as i32 {
                    Ok(())
                } else {
                    Err(format!("health status {}", reply.status))
                }
            }
        }
    }
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn ratios(cells: &[Cell]) -> Vec<Ratio> {
    let throughput = |rpc: Rpc, concurrency: usize| {
        cells
            .iter()
            .find(|c| c.rpc == rpc && c.concurrency == concurrency)
            .map(|c| c.throughput)
    };
    let mut out = Vec::new();
    for cell in cells.iter().filter(|c| c.rpc == Rpc::Validate) {
        if let Some(empty) = throughput(Rpc::Empty, cell.concurrency)
            && empty > 0.0
        {
            out.push(Ratio {
                concurrency: cell.concurrency,
                validate: cell.throughput,
                empty,
                ratio: cell.throughput / empty,
            });
        }
    }
    out
}

/// A latency in µs, shown in µs below 10 ms and in ms above.
fn micros(us: u64) -> String {
    if us < 10_000 {
        format!("{us}µs")
    } else {
        format!("{:.1}ms", us as f64 / 1000.0)
    }
}

fn cpu_text(us: Option<f64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{us:.1}µs"))
}

fn print_table(cells: &[Cell], ratios: &[Ratio]) {
    println!(
        "| {:<8} | {:>11} | {:>8} | {:>6} | {:>10} | {:>8} | {:>8} | {:>8} | {:>14} | {:>14} |",
        "rpc",
        "concurrency",
        "requests",
        "errors",
        "req/s",
        "p50",
        "p99",
        "p99.9",
        "server CPU/call",
        "client CPU/call"
    );
    println!(
        "|{:-<10}|{:->13}|{:->10}|{:->8}|{:->12}|{:->10}|{:->10}|{:->10}|{:->17}|{:->17}|",
        "", "", "", "", "", "", "", "", "", ""
    );
    for c in cells {
        println!(
            "| {:<8} | {:>11} | {:>8} | {:>6} | {:>10.0} | {:>8} | {:>8} | {:>8} | {:>15} | {:>15} |",
            c.rpc.to_string(),
            c.concurrency,
            c.requests,
            c.errors,
            c.throughput,
            micros(c.p50_us),
            micros(c.p99_us),
            micros(c.p999_us),
            cpu_text(c.server_cpu_us_per_call),
            cpu_text(c.client_cpu_us_per_call)
        );
    }
    if !ratios.is_empty() {
        println!();
        println!("| concurrency | validate req/s | empty req/s | validate / empty |");
        println!("|------------:|---------------:|------------:|-----------------:|");
        for r in ratios {
            println!(
                "| {:>11} | {:>14.0} | {:>11.0} | {:>15.1}% |",
                r.concurrency,
                r.validate,
                r.empty,
                r.ratio * 100.0
            );
        }
    }
}
