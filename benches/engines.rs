//! Engine choice for the embedded store, measured: redb against fjall on sessiond's own access
//! pattern, with every write durable before it is acknowledged.
//!
//! ```text
//! cargo bench --bench engines                      # about a minute; 2 s per case
//! ENGINES_BENCH_SECS=5 cargo bench --bench engines # longer cases
//! ENGINES_BENCH_FILTER="redb Immediate issue" cargo bench --bench engines # matching cases only
//! ```
//!
//! The cases mirror what the embedded store does (`src/store/embedded/`):
//!
//! - `issue xN`: one commit writes N sessions, each a ~600-byte row under a time-ordered
//!   (UUIDv7) key plus two index rows (`user 0 tenant 0 created id` and `expires id`).
//!   N = 1 is a lone `Issue`; N = 16 and 64 are the writer thread's group commit, where N
//!   concurrent calls share one durable commit.
//! - `refresh xN`: one commit reads N existing sessions, rewrites their refresh generation and
//!   hash, and writes them back (the compare-and-set of `Refresh`).
//! - `validate-miss`: a point read of an existing session by id, what `Validate` does on a cache
//!   miss (in its own read transaction, as the store does).
//!
//! Every store is pre-filled with `PREFILL` sessions first, so reads and rewrites hit a tree of
//! realistic depth. Each engine runs in its own temporary directory under `$TMPDIR` (so put
//! that on the disk you mean to measure, not on tmpfs). redb commits with
//! `Durability::Immediate` (it syncs with `fdatasync`); fjall commits single-writer
//! transactions persisted with `PersistMode::SyncAll` (`fsync`), and once more with
//! `PersistMode::SyncData` (`fdatasync`) for a like-for-like comparison.

// Test and benchmark code fails by panicking, and indexes what it has just built.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::error::Error;
use std::path::Path;
use std::time::{Duration, Instant};

use fjall::{KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase};
use hdrhistogram::Histogram;
use rand::{Rng, RngCore, SeedableRng};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

type BoxError = Box<dyn Error + Send + Sync>;

const SESSIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("sessions");
const BY_USER: TableDefinition<&[u8], ()> = TableDefinition::new("sessions_by_user");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("session_expiry");

/// Sessions written before any case runs.
const PREFILL: usize = 50_000;
/// Rows per transaction while pre-filling.
const PREFILL_CHUNK: usize = 5_000;
/// Size of one encoded session row, about what `codec::encode_session` writes for a browser
/// session with a few metadata entries.
const ROW_BYTES: usize = 600;
/// Unmeasured time before each case.
const WARMUP: Duration = Duration::from_millis(300);
/// Most operations one case runs, whatever its time budget.
const MAX_OPS: u64 = 2_000_000;

/// One session as the store writes it.
struct Row {
    id: u128,
    by_user: Vec<u8>,
    expiry: Vec<u8>,
    value: Vec<u8>,
}

/// What the benchmark asks of an engine; each call is one transaction.
trait Engine {
    /// Writes `rows` (sessions and both index rows) in one durable commit.
    fn issue(&self, rows: &[Row]) -> Result<(), BoxError>;
    /// Reads each session in `ids`, changes its refresh state and writes it back, in one
    /// durable commit.
    fn refresh(&self, ids: &[u128], generation: u64) -> Result<(), BoxError>;
    /// Reads one session in its own read transaction; false when it is missing.
    fn read(&self, id: u128) -> Result<bool, BoxError>;
    /// Writes `rows` quickly (not durable per commit), then makes everything durable.
    fn prefill(&self, rows: &[Row]) -> Result<(), BoxError>;
}

struct Redb {
    db: Database,
}

impl Redb {
    fn open(dir: &Path) -> Result<Self, BoxError> {
        let db = Database::create(dir.join("sessiond.redb"))?;
        let txn = db.begin_write()?;
        txn.open_table(SESSIONS)?;
        txn.open_table(BY_USER)?;
        txn.open_table(EXPIRY)?;
        txn.commit()?;
        Ok(Self { db })
    }

    fn write(&self, rows: &[Row], durability: Durability) -> Result<(), BoxError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut by_user = txn.open_table(BY_USER)?;
            let mut expiry = txn.open_table(EXPIRY)?;
            for row in rows {
                sessions.insert(row.id, row.value.as_slice())?;
                by_user.insert(row.by_user.as_slice(), ())?;
                expiry.insert(row.expiry.as_slice(), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn issue(&self, rows: &[Row]) -> Result<(), BoxError> {
        self.write(rows, Durability::Immediate)
    }

    fn refresh(&self, ids: &[u128], generation: u64) -> Result<(), BoxError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            for &id in ids {
                let current = sessions.get(id)?.map(|guard| guard.value().to_vec());
                let Some(mut value) = current else {
                    return Err("refresh of a missing session".into());
                };
                rotate(&mut value, generation);
                sessions.insert(id, value.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn read(&self, id: u128) -> Result<bool, BoxError> {
        let txn = self.db.begin_read()?;
        let sessions = txn.open_table(SESSIONS)?;
        Ok(sessions
            .get(id)?
            .is_some_and(|v| v.value().len() == ROW_BYTES))
    }

    fn prefill(&self, rows: &[Row]) -> Result<(), BoxError> {
        for chunk in rows.chunks(PREFILL_CHUNK) {
            self.write(chunk, Durability::None)?;
        }
        // An immediate commit makes the preceding non-durable ones durable too.
        self.write(&[], Durability::Immediate)
    }
}

struct Fjall {
    db: SingleWriterTxDatabase,
    sessions: fjall::SingleWriterTxKeyspace,
    by_user: fjall::SingleWriterTxKeyspace,
    expiry: fjall::SingleWriterTxKeyspace,
    mode: PersistMode,
}

impl Fjall {
    fn open(dir: &Path, mode: PersistMode) -> Result<Self, BoxError> {
        let db = SingleWriterTxDatabase::builder(dir).open()?;
        let sessions = db.keyspace("sessions", KeyspaceCreateOptions::default)?;
        let by_user = db.keyspace("sessions_by_user", KeyspaceCreateOptions::default)?;
        let expiry = db.keyspace("session_expiry", KeyspaceCreateOptions::default)?;
        Ok(Self {
            db,
            sessions,
            by_user,
            expiry,
            mode,
        })
    }

    fn write(&self, rows: &[Row], mode: Option<PersistMode>) -> Result<(), BoxError> {
        let mut tx = self.db.write_tx().durability(mode);
        for row in rows {
            tx.insert(&self.sessions, row.id.to_be_bytes(), row.value.as_slice());
            tx.insert(&self.by_user, row.by_user.as_slice(), []);
            tx.insert(&self.expiry, row.expiry.as_slice(), []);
        }
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Fjall {
    fn issue(&self, rows: &[Row]) -> Result<(), BoxError> {
        self.write(rows, Some(self.mode))
    }

    fn refresh(&self, ids: &[u128], generation: u64) -> Result<(), BoxError> {
        let mut tx = self.db.write_tx().durability(Some(self.mode));
        for &id in ids {
            let key = id.to_be_bytes();
            let Some(current) = tx.get(&self.sessions, key)? else {
                return Err("refresh of a missing session".into());
            };
            let mut value = current.to_vec();
            rotate(&mut value, generation);
            tx.insert(&self.sessions, key, value);
        }
        tx.commit()?;
        Ok(())
    }

    fn read(&self, id: u128) -> Result<bool, BoxError> {
        let value = self.sessions.get(id.to_be_bytes())?;
        Ok(value.is_some_and(|v| v.len() == ROW_BYTES))
    }

    fn prefill(&self, rows: &[Row]) -> Result<(), BoxError> {
        for chunk in rows.chunks(PREFILL_CHUNK) {
            self.write(chunk, Some(PersistMode::Buffer))?;
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// Overwrites the refresh generation and hash at the front of a row.
fn rotate(value: &mut [u8], generation: u64) {
    for (byte, new) in value.iter_mut().zip(generation.to_be_bytes()) {
        *byte = new;
    }
    for byte in value.iter_mut().skip(8).take(32) {
        *byte = byte.wrapping_add(1);
    }
}

/// Makes sessions that look like the store's: time-ordered ids, a user id per session, and a
/// row of text (compressible, like user agents and ids) and random bytes (hashes).
struct Rows {
    rng: rand::rngs::StdRng,
    n: u64,
}

impl Rows {
    fn new(seed: u64) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            n: 0,
        }
    }

    fn next_row(&mut self) -> Row {
        self.n += 1;
        let id = uuid::Uuid::now_v7().as_u128();
        let created = now_micros();
        let user = format!("user-{:08}", self.rng.gen_range(0..1_000_000u32));
        let mut by_user = Vec::with_capacity(user.len() + 26);
        by_user.extend_from_slice(user.as_bytes());
        by_user.extend_from_slice(&[0, 0]);
        by_user.extend_from_slice(&created.to_be_bytes());
        by_user.extend_from_slice(&id.to_be_bytes());
        let mut expiry = Vec::with_capacity(24);
        expiry.extend_from_slice(&(created + 30 * 86_400_000_000).to_be_bytes());
        expiry.extend_from_slice(&id.to_be_bytes());
        let mut value = vec![0u8; ROW_BYTES];
        self.rng.fill_bytes(&mut value[..64]);
        let text = format!(
            "{user}|192.0.2.{}|Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like \
             Gecko) Chrome/124.0 Safari/537.36|Chrome on Linux|",
            self.n % 250
        );
        for (byte, t) in value[64..].iter_mut().zip(text.bytes().cycle()) {
            *byte = t;
        }
        Row {
            id,
            by_user,
            expiry,
            value,
        }
    }

    fn batch(&mut self, n: usize) -> Vec<Row> {
        (0..n).map(|_| self.next_row()).collect()
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The outcome of one case.
struct Measured {
    /// Transactions (commits, or reads) completed.
    txns: u64,
    /// Sessions written, rewritten or read.
    rows: u64,
    /// Time spent inside the measured calls (input preparation excluded).
    elapsed: Duration,
    histogram: Histogram<u64>,
}

/// Runs `op` back to back for the warm-up, then for `budget`, timing each call in µs. The input
/// of each call is made by `prepare`, outside the timed section.
fn run_case<T>(
    budget: Duration,
    rows_per_op: usize,
    mut prepare: impl FnMut(u64) -> T,
    mut op: impl FnMut(T) -> Result<(), BoxError>,
) -> Result<Measured, BoxError> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut i = 0u64;
    let warm_until = Instant::now() + WARMUP;
    while Instant::now() < warm_until && i < MAX_OPS {
        op(prepare(i))?;
        i += 1;
    }
    let mut txns = 0u64;
    let mut busy = Duration::ZERO;
    let end = Instant::now() + budget;
    while Instant::now() < end && txns < MAX_OPS {
        let input = prepare(i);
        let t = Instant::now();
        op(input)?;
        let took = t.elapsed();
        busy += took;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        histogram.saturating_record(us.max(1));
        i += 1;
        txns += 1;
    }
    Ok(Measured {
        txns,
        rows: txns * rows_per_op as u64,
        elapsed: busy,
        histogram,
    })
}

fn print_row(engine: &str, case: &str, m: &Measured) {
    let secs = m.elapsed.as_secs_f64();
    let h = &m.histogram;
    println!(
        "| {engine:<16} | {case:<14} | {:>9.0} | {:>10.0} | {:>8.1} | {:>8} | {:>8} | {:>8} |",
        m.txns as f64 / secs,
        m.rows as f64 / secs,
        h.mean(),
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.max(),
    );
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// How long each case runs, and which cases run.
struct Settings {
    budget: Duration,
    /// Runs only the cases whose "engine case" name contains this text.
    filter: Option<String>,
}

impl Settings {
    fn wants(&self, engine: &str, case: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| format!("{engine} {case}").contains(f))
    }
}

fn bench_engine(
    name: &str,
    engine: &dyn Engine,
    dir: &Path,
    settings: &Settings,
) -> Result<(), BoxError> {
    let budget = settings.budget;
    let mut rows = Rows::new(7);
    let prefilled: Vec<u128> = {
        let start = Instant::now();
        let batch = rows.batch(PREFILL);
        engine.prefill(&batch)?;
        eprintln!(
            "{name}: prefilled {PREFILL} sessions in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        batch.iter().map(|r| r.id).collect()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut pick = move || {
        let i = rng.gen_range(0..prefilled.len());
        prefilled.get(i).copied().unwrap_or_default()
    };

    for n in [1usize, 16, 64] {
        let case = format!("issue x{n}");
        if !settings.wants(name, &case) {
            continue;
        }
        let m = run_case(budget, n, |_| rows.batch(n), |batch| engine.issue(&batch))?;
        print_row(name, &case, &m);
    }
    for n in [1usize, 16, 64] {
        let case = format!("refresh x{n}");
        if !settings.wants(name, &case) {
            continue;
        }
        let m = run_case(
            budget,
            n,
            |i| ((0..n).map(|_| pick()).collect::<Vec<u128>>(), i),
            |(ids, generation)| engine.refresh(&ids, generation),
        )?;
        print_row(name, &case, &m);
    }
    if settings.wants(name, "validate-miss") {
        validate_miss(name, engine, budget, &mut pick)?;
    }
    eprintln!(
        "{name}: {:.1} MiB on disk after the run",
        dir_bytes(dir) as f64 / 1_048_576.0
    );
    Ok(())
}

/// Point reads of existing sessions, each in its own read transaction.
fn validate_miss(
    name: &str,
    engine: &dyn Engine,
    budget: Duration,
    pick: &mut impl FnMut() -> u128,
) -> Result<(), BoxError> {
    let mut missing = 0u64;
    let m = run_case(
        budget,
        1,
        |_| pick(),
        |id| {
            if !engine.read(id)? {
                missing += 1;
            }
            Ok(())
        },
    )?;
    if missing > 0 {
        return Err(format!("{name}: {missing} prefilled sessions were not found").into());
    }
    print_row(name, "validate-miss", &m);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; a plain test run (`cargo test --benches`) does not, and
    // then only checks that the bench starts.
    let benching = std::env::args().any(|a| a == "--bench");
    let secs: f64 = match std::env::var("ENGINES_BENCH_SECS") {
        Ok(s) => s.parse()?,
        Err(_) => 2.0,
    };
    if !benching {
        eprintln!("engines: not run as a benchmark (use `cargo bench --bench engines`)");
        return Ok(());
    }
    let settings = Settings {
        budget: Duration::from_secs_f64(secs),
        filter: std::env::var("ENGINES_BENCH_FILTER").ok(),
    };
    eprintln!(
        "engines: {PREFILL} sessions prefilled, {secs}s per case after {}ms warm-up, temp dirs under {}",
        WARMUP.as_millis(),
        std::env::temp_dir().display()
    );
    println!(
        "| engine           | case           |    txn/s  |  rows/s    | mean µs  |  p50 µs  |  p99 µs  |  max µs  |"
    );
    println!(
        "|------------------|----------------|----------:|-----------:|---------:|---------:|---------:|---------:|"
    );
    {
        let dir = tempfile::tempdir()?;
        let engine = Redb::open(dir.path())?;
        bench_engine("redb Immediate", &engine, dir.path(), &settings)?;
    }
    for (name, mode) in [
        ("fjall SyncAll", PersistMode::SyncAll),
        ("fjall SyncData", PersistMode::SyncData),
    ] {
        let dir = tempfile::tempdir()?;
        let engine = Fjall::open(dir.path(), mode)?;
        bench_engine(name, &engine, dir.path(), &settings)?;
    }
    Ok(())
}
