//! The one typed configuration: command-line flags, `SESSIOND_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, over built-in defaults.
//!
//! clap reads flags and variables into typed values; figment lays them over the file; one
//! parser per value type ([`SettingValue`]) reads a value whichever layer gave it, so a bad
//! value names its flag and its variable wherever it was written. Everything is validated here,
//! at start, once: the store URI is parsed into the backend's own configuration, and nothing
//! else in the crate reads the environment.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytesize::ByteSize;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::{CallerSpec, Role, hash_credential};
use crate::keystore::{KeyAlgorithm, KeySources};
use crate::store::backend::{Backend, StoreSettings};
use crate::store::embedded::EmbeddedOptions;
use crate::store::scylla::{ScyllaConfig, ScyllaConfigError};

/// Default `--store-cache-memory`, MiB.
pub const DEFAULT_STORE_CACHE_MIB: u64 = 64;

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid {flag} ({env}): {message}")]
    Invalid {
        /// The flag, e.g. `--grpc-addr`.
        flag: String,
        /// The environment variable, e.g. `SESSIOND_GRPC_ADDR`.
        env: String,
        /// What is wrong.
        message: String,
    },
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where sessions are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded store under the data directory.
    Embedded,
    /// A ScyllaDB (or Cassandra) cluster, as parsed from its `scylla://` URI.
    Scylla(Box<ScyllaConfig>),
}

impl FromStr for StoreKind {
    type Err = ConfigError;

    /// `embedded` or a `scylla://` URI. Only a plain word is ever echoed in the error: anything
    /// else may be a URI with a password.
    fn from_str(value: &str) -> Result<Self, ConfigError> {
        let bad = |message: String| invalid("--store", "SESSIOND_STORE", message);
        if value == "embedded" {
            return Ok(Self::Embedded);
        }
        match value.parse::<ScyllaConfig>() {
            Ok(scylla) => return Ok(Self::Scylla(Box::new(scylla))),
            Err(ScyllaConfigError::Scheme) => {}
            Err(e) => return Err(bad(e.to_string())),
        }
        let shown = if value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            format!("{value:?}")
        } else {
            "the value".to_owned()
        };
        Err(bad(format!(
            "{shown} is not a store: expected `embedded` or a scylla:// URI"
        )))
    }
}

impl std::fmt::Debug for StoreKind {
    /// Never prints a URI's user info or options, which may hold a password: a ScyllaDB store
    /// is shown as its parsed form, hosts and keyspace only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Embedded => f.write_str("embedded"),
            StoreKind::Scylla(scylla) => write!(f, "{scylla}"),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A PEM private key given as text (`SESSIOND_SIGNING_KEY`); `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKeyPem(String);

impl From<String> for SigningKeyPem {
    fn from(pem: String) -> Self {
        Self(pem)
    }
}

impl std::fmt::Debug for SigningKeyPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
/// The validated configuration of one sessiond process.
#[derive(Clone, Debug)]
pub struct Config {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (introspection, JWKS, metrics, health).
    pub http_addr: SocketAddr,
    /// Where the embedded store and generated keys live.
    pub data_dir: PathBuf,
    /// Where the signing key and pepper live (default `<data-dir>/keys`).
    pub key_dir: PathBuf,
    /// A PEM private key to sign with instead of a generated one.
    pub signing_key_file: Option<PathBuf>,
    /// A PEM private key given as text (`SESSIOND_SIGNING_KEY`); wins over every file.
    pub signing_key_pem: Option<SigningKeyPem>,
    /// PEM public keys of retired signing keys, still accepted.
    pub verification_key_files: Vec<PathBuf>,
    /// The algorithm of a generated signing key.
    pub key_algorithm: KeyAlgorithm,
    /// The store backend, its URI already parsed.
    pub store: StoreKind,
    /// Create or upgrade the ScyllaDB schema at start-up.
    pub migrate: bool,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Session lifetime when `Issue` gives none.
    pub session_ttl: Duration,
    /// Longest session lifetime.
    pub max_session_ttl: Duration,
    /// How often other replicas' revocations are picked up.
    pub revocation_poll: Duration,
    /// How long past the feed's staleness limit `Validate` may still answer from cached
    /// entries while the store does not answer (`0s`: fail closed).
    pub store_outage_grace: Duration,
    /// Least time between two last-seen writes of one session.
    pub last_seen_interval: Duration,
    /// How long the previous refresh token still answers the same successor (0 = strict).
    pub refresh_grace: Duration,
    /// Idle timeout of sessions whose `Issue` gives none (0 = off).
    pub idle_timeout: Duration,
    /// Most live sessions per user (0 = no limit).
    pub max_sessions_per_user: usize,
    /// A test's pauses and injected store failures; none from the command line.
    pub hooks: crate::hooks::Hooks,
    /// Where every instant the service decides by comes from: the system clock, or a test's
    /// manual clock.
    pub clock: crate::model::SharedClock,
    /// The `iss` claim of access tokens.
    pub issuer: String,
    /// The `aud` claim of access tokens; a token for another audience is not valid here.
    pub audience: String,
    /// The cookie `GET /auth/check` reads the access token from when the request has no
    /// `Authorization: Bearer` header; no cookie is read when `None`.
    pub auth_cookie: Option<String>,
    /// How long audit events are kept.
    pub audit_retention: Duration,
    /// Bytes the validation caches (verified tokens, sessions, users' marks) may hold.
    pub cache_memory: ByteSize,
    /// Bytes of the embedded store's page cache.
    pub store_cache_memory: ByteSize,
    /// Log format.
    pub log_format: LogFormat,
    /// The services allowed to call; empty means anonymous access on loopback only.
    pub callers: Vec<CallerSpec>,
    /// Most requests of callers in flight at once; more are refused with `RESOURCE_EXHAUSTED`.
    /// Open services (health, reflection) have a small budget of their own.
    pub max_in_flight: usize,
    /// Longest time one request may take, from its headers to its answer (a unary gRPC call,
    /// its request body included; an HTTP request). A gRPC call past it ends `CANCELLED`, an
    /// HTTP request `408`; a shorter client `grpc-timeout` wins.
    pub request_timeout: Duration,
    /// Most concurrent HTTP/2 streams per gRPC connection (`SETTINGS_MAX_CONCURRENT_STREAMS`);
    /// streams over it are refused by the HTTP/2 layer.
    pub max_concurrent_streams: u32,
    /// How long an HTTP client may take to send a request's headers, and may leave a
    /// keep-alive connection idle before its next request; then the connection is closed.
    pub http_header_read_timeout: Duration,
    /// Most HTTP connections open at once; a connection over it is closed as soon as it is
    /// accepted, so stalled clients hold at most this many file descriptors.
    pub http_max_connections: usize,
    /// Serve gRPC over TLS, optionally requiring client certificates (mTLS).
    pub tls: Option<TlsFiles>,
    /// Where OpenTelemetry traces are exported (OTLP over gRPC, `http://host:4317`); no
    /// traces are exported when `None`.
    pub otlp_endpoint: Option<String>,
    /// The share of traces started here that are sampled, 0.0 to 1.0; traces continued from a
    /// caller follow the caller's sampling decision.
    pub otlp_sample_ratio: f64,
}

/// PEM files for serving TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to; set to require mTLS.
    pub client_ca: Option<PathBuf>,
}

/// A caller as written in the configuration (`[[callers]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerEntry {
    /// Its name, recorded in audit events.
    pub name: String,
    /// Hex SHA-256 of its bearer credential (`sessiond credential` makes both).
    #[serde(default)]
    pub credential_sha256: Option<String>,
    /// The subject of its client certificate, e.g. `CN=gateway,O=example`.
    #[serde(default)]
    pub client_cert_subject: Option<String>,
    /// Any of `issuer`, `validator`, `admin`.
    pub roles: Vec<String>,
    /// Most requests per second; unlimited when absent.
    #[serde(default)]
    pub rate_limit: Option<u32>,
}

/// The separate secrets file named by `--callers-file`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallersFile {
    #[serde(default)]
    callers: Vec<CallerEntry>,
}

impl Config {
    /// The defaults of API.md, with the data directory given.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            key_dir: data_dir.join("keys"),
            signing_key_file: None,
            signing_key_pem: None,
            verification_key_files: Vec::new(),
            key_algorithm: KeyAlgorithm::EdDsa,
            data_dir,
            store: StoreKind::Embedded,
            migrate: false,
            access_token_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            max_session_ttl: Duration::from_secs(90 * 24 * 3600),
            revocation_poll: Duration::from_secs(1),
            store_outage_grace: Duration::ZERO,
            last_seen_interval: Duration::from_secs(60),
            refresh_grace: Duration::from_secs(10),
            idle_timeout: Duration::ZERO,
            max_sessions_per_user: 100,
            hooks: crate::hooks::Hooks::default(),
            clock: crate::model::SystemClock::shared(),
            issuer: "sessiond".to_owned(),
            audience: "sessiond".to_owned(),
            auth_cookie: None,
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            cache_memory: ByteSize::b(crate::domain::cache::DEFAULT_CACHE_BYTES),
            store_cache_memory: ByteSize::mib(DEFAULT_STORE_CACHE_MIB),
            log_format: LogFormat::Text,
            callers: Vec::new(),
            max_in_flight: 10_000,
            request_timeout: Duration::from_secs(10),
            max_concurrent_streams: 256,
            http_header_read_timeout: Duration::from_secs(10),
            http_max_connections: 512,
            tls: None,
            otlp_endpoint: None,
            otlp_sample_ratio: 1.0,
        }
    }
}

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "sessiond", version, about = "The session authority")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(Settings),
    /// Create or upgrade the ScyllaDB keyspace and tables, then exit.
    Migrate(Settings),
    /// Print a new caller credential and the `[[callers]]` entry that admits it.
    Credential(CredentialArgs),
    /// Make signing keys and print their public halves (for key rotation).
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `sessiond key …`: what key rotation needs, without any other tool.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new signing key into a file (PEM, PKCS#8, mode 0600) and print its kid.
    Generate(KeyGenerateArgs),
    /// Print the public half (PEM `PUBLIC KEY`) of a private key on stdout, its kid on stderr.
    Public(KeyPublicArgs),
}

/// Arguments of `sessiond key generate`.
#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// The file to create; an existing file is never replaced.
    #[arg(long)]
    pub key_file: PathBuf,
    /// eddsa, es256 or rs256.
    #[arg(long, default_value = "eddsa")]
    pub key_algorithm: String,
}

/// Arguments of `sessiond key public`.
#[derive(Debug, Args)]
pub struct KeyPublicArgs {
    /// A PEM private key (PKCS#8: Ed25519, P-256 or RSA), such as `<key-dir>/signing-ed25519.pem`.
    #[arg(long)]
    pub key_file: PathBuf,
}

/// Arguments of `sessiond credential`.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    /// The caller's name.
    #[arg(long)]
    pub name: String,
    /// Comma-separated roles: issuer, validator, admin.
    #[arg(long, value_delimiter = ',', default_value = "validator")]
    pub roles: Vec<String>,
}

/// Every setting as given on the command line or in the environment, typed; the same struct
/// reads the TOML file, so its keys are these fields' names. `None` is "not given here".
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of these settings (snake_case names).
    #[arg(long, env = "SESSIOND_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]
    #[arg(long, env = "SESSIOND_GRPC_ADDR", value_parser = parsed::<SocketAddr>())]
    #[serde(with = "text")]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "SESSIOND_HTTP_ADDR", value_parser = parsed::<SocketAddr>())]
    #[serde(with = "text")]
    pub http_addr: Option<SocketAddr>,
    /// Data directory [default: ./data]
    #[arg(long, env = "SESSIOND_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key directory [default: <data-dir>/keys]
    #[arg(long, env = "SESSIOND_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// PEM (PKCS#8) private key to sign with: Ed25519, P-256 or RSA [default: generated]
    #[arg(long, env = "SESSIOND_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// The PEM text of the key to sign with, which wins over every file. Read from the
    /// environment: a flag would show the key to every user of `ps`, so it is hidden.
    #[arg(
        long,
        env = "SESSIOND_SIGNING_KEY",
        hide = true,
        hide_env_values = true,
        value_parser = |pem: &str| Ok::<_, std::convert::Infallible>(SigningKeyPem::from(pem.to_owned()))
    )]
    #[serde(skip)]
    pub signing_key: Option<SigningKeyPem>,
    /// PEM public keys of retired signing keys, still accepted (comma-separated or repeated)
    #[arg(long, env = "SESSIOND_VERIFICATION_KEY_FILES", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verification_key_files: Vec<PathBuf>,
    /// Algorithm of a generated signing key: eddsa, es256, rs256 [default: eddsa]
    #[arg(long, env = "SESSIOND_KEY_ALGORITHM", value_parser = parsed::<KeyAlgorithm>())]
    #[serde(with = "text")]
    pub key_algorithm: Option<KeyAlgorithm>,
    /// `embedded` or `scylla://host1:9042,host2:9042/keyspace` [default: embedded]
    // Text until `resolve`: clap's errors echo the value, and a URI may hold a password.
    #[arg(long, env = "SESSIOND_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Create or upgrade the ScyllaDB schema at start-up
    #[arg(long, env = "SESSIOND_MIGRATE", value_parser = parsed::<bool>())]
    #[serde(with = "text")]
    pub migrate: Option<bool>,
    /// Access token lifetime [default: 15m]
    #[arg(long, env = "SESSIOND_ACCESS_TOKEN_TTL", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub access_token_ttl: Option<Duration>,
    /// Session lifetime when Issue gives none [default: 30d]
    #[arg(long, env = "SESSIOND_SESSION_TTL", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub session_ttl: Option<Duration>,
    /// Longest session lifetime [default: 90d]
    #[arg(long, env = "SESSIOND_MAX_SESSION_TTL", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub max_session_ttl: Option<Duration>,
    /// How stale another replica's revocations may be [default: 1s]
    #[arg(long, env = "SESSIOND_REVOCATION_POLL", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub revocation_poll: Option<Duration>,
    /// How long Validate may answer from cache while the store is down, 0s to fail closed
    /// [default: 0s]
    #[arg(long, env = "SESSIOND_STORE_OUTAGE_GRACE", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub store_outage_grace: Option<Duration>,
    /// Least time between two last-seen writes of a session [default: 60s]
    #[arg(long, env = "SESSIOND_LAST_SEEN_INTERVAL", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub last_seen_interval: Option<Duration>,
    /// How long a rotated-away refresh token still answers the same successor, 0s for strict
    /// rotation [default: 10s]
    #[arg(long, env = "SESSIOND_REFRESH_GRACE", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub refresh_grace: Option<Duration>,
    /// Idle timeout of sessions whose Issue gives none, 0s for none [default: 0s]
    #[arg(long, env = "SESSIOND_IDLE_TIMEOUT", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub idle_timeout: Option<Duration>,
    /// Most live sessions per user, 0 for no limit [default: 100]
    #[arg(long, env = "SESSIOND_MAX_SESSIONS_PER_USER", value_parser = parsed::<usize>())]
    #[serde(with = "text")]
    pub max_sessions_per_user: Option<usize>,
    /// The `iss` claim of access tokens [default: sessiond]
    #[arg(long, env = "SESSIOND_ISSUER")]
    pub issuer: Option<String>,
    /// The `aud` claim of access tokens, and the only one accepted [default: sessiond]
    #[arg(long, env = "SESSIOND_AUDIENCE")]
    pub audience: Option<String>,
    /// Cookie that GET /auth/check reads the access token from, when the request has no
    /// bearer token [default: none]
    #[arg(long, env = "SESSIOND_AUTH_COOKIE")]
    pub auth_cookie: Option<String>,
    /// How long audit events are kept [default: 90d]
    #[arg(long, env = "SESSIOND_AUDIT_RETENTION", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub audit_retention: Option<Duration>,
    /// Memory for the validation caches (verified tokens, sessions, users' sign-out marks),
    /// by their entries' estimated heap bytes; more keeps more sessions warm [default: 192MiB]
    #[arg(long, env = "SESSIOND_CACHE_MEMORY", value_parser = parsed::<ByteSize>())]
    #[serde(with = "text")]
    pub cache_memory: Option<ByteSize>,
    /// Memory for the embedded store's page cache; reads past it come from the file (the
    /// kernel's page cache) [default: 64MiB]
    #[arg(long, env = "SESSIOND_STORE_CACHE_MEMORY", value_parser = parsed::<ByteSize>())]
    #[serde(with = "text")]
    pub store_cache_memory: Option<ByteSize>,
    /// `text` or `json` [default: text]
    #[arg(long, env = "SESSIOND_LOG_FORMAT", value_parser = parsed::<LogFormat>())]
    #[serde(with = "text")]
    pub log_format: Option<LogFormat>,
    /// TOML file with `[[callers]]` entries, kept apart from the main configuration
    #[arg(long, env = "SESSIOND_CALLERS_FILE")]
    pub callers_file: Option<PathBuf>,
    /// Most requests of callers in flight at once [default: 10000]
    #[arg(long, env = "SESSIOND_MAX_IN_FLIGHT", value_parser = parsed::<NonZeroUsize>())]
    #[serde(with = "text")]
    pub max_in_flight: Option<NonZeroUsize>,
    /// Longest time one gRPC or HTTP request may take, 100ms to 5m [default: 10s]
    #[arg(long, env = "SESSIOND_REQUEST_TIMEOUT", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub request_timeout: Option<Duration>,
    /// Most concurrent HTTP/2 streams per gRPC connection [default: 256]
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_STREAMS", value_parser = parsed::<NonZeroU32>())]
    #[serde(with = "text")]
    pub max_concurrent_streams: Option<NonZeroU32>,
    /// How long an HTTP client may take to send its request headers, or stay idle between
    /// requests, 100ms to 5m [default: 10s]
    #[arg(long, env = "SESSIOND_HTTP_HEADER_READ_TIMEOUT", value_parser = parsed::<Duration>())]
    #[serde(with = "text")]
    pub http_header_read_timeout: Option<Duration>,
    /// Most HTTP connections open at once; more are closed at once [default: 512]
    #[arg(long, env = "SESSIOND_HTTP_MAX_CONNECTIONS", value_parser = parsed::<NonZeroUsize>())]
    #[serde(with = "text")]
    pub http_max_connections: Option<NonZeroUsize>,
    /// PEM certificate chain to serve gRPC over TLS
    #[arg(long, env = "SESSIOND_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key to serve gRPC over TLS
    #[arg(long, env = "SESSIOND_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, callers must present a client certificate (mTLS)
    #[arg(long, env = "SESSIOND_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// OTLP/gRPC collector to export traces to, e.g. http://127.0.0.1:4317 [default: none]
    #[arg(long, env = "SESSIOND_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of traces started here that are exported, 0.0 to 1.0 [default: 1.0]
    #[arg(long, env = "SESSIOND_OTLP_SAMPLE_RATIO", value_parser = parsed::<f64>())]
    #[serde(with = "text")]
    pub otlp_sample_ratio: Option<f64>,
    /// Callers, from the TOML file only
    #[arg(skip)]
    #[serde(skip_serializing)]
    pub callers: Vec<CallerEntry>,
}

impl Settings {
    /// Lays these settings over the TOML file (if any) and the defaults, and validates
    /// everything: the one place a `Config` is made from outside input.
    pub fn resolve(mut self) -> Result<Config, ConfigError> {
        let signing_key_pem = self.signing_key.take().filter(|pem| !pem.0.is_empty());
        let s = match self.config.take() {
            None => self,
            // Merged last, the flags and variables win; unset ones are not serialized, so
            // they leave the file's values.
            Some(path) => Figment::from(Toml::file_exact(&path))
                .merge(Serialized::defaults(self))
                .extract()
                .map_err(|e| file_error(&path, e))?,
        };
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let store = match s.store.as_deref() {
            None => StoreKind::Embedded,
            Some(value) => value.parse()?,
        };
        let mut entries = s.callers;
        if let Some(path) = &s.callers_file {
            let file: CallersFile = Figment::from(Toml::file_exact(path))
                .extract()
                .map_err(|e| file_problem(path, &e))?;
            entries.extend(file.callers);
        }
        let tls = match (s.tls_cert_file, s.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: s.tls_client_ca_file,
            }),
            (None, None) if s.tls_client_ca_file.is_none() => None,
            _ => {
                return Err(invalid(
                    "--tls-cert-file",
                    "SESSIOND_TLS_CERT_FILE",
                    "--tls-cert-file and --tls-key-file go together (and --tls-client-ca-file needs both)",
                ));
            }
        };
        let otlp_endpoint = match s.otlp_endpoint {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(otlp_endpoint(v)?),
        };
        let d = Config::new(&data_dir);
        let config = Config {
            grpc_addr: s.grpc_addr.unwrap_or(d.grpc_addr),
            http_addr: s.http_addr.unwrap_or(d.http_addr),
            key_dir: s.key_dir.unwrap_or(d.key_dir),
            signing_key_file: s.signing_key_file,
            signing_key_pem,
            verification_key_files: s.verification_key_files,
            key_algorithm: s.key_algorithm.unwrap_or(d.key_algorithm),
            store,
            migrate: s.migrate.unwrap_or(d.migrate),
            access_token_ttl: s.access_token_ttl.unwrap_or(d.access_token_ttl),
            session_ttl: s.session_ttl.unwrap_or(d.session_ttl),
            max_session_ttl: s.max_session_ttl.unwrap_or(d.max_session_ttl),
            revocation_poll: s.revocation_poll.unwrap_or(d.revocation_poll),
            store_outage_grace: s.store_outage_grace.unwrap_or(d.store_outage_grace),
            last_seen_interval: s.last_seen_interval.unwrap_or(d.last_seen_interval),
            refresh_grace: s.refresh_grace.unwrap_or(d.refresh_grace),
            idle_timeout: s.idle_timeout.unwrap_or(d.idle_timeout),
            max_sessions_per_user: s.max_sessions_per_user.unwrap_or(d.max_sessions_per_user),
            issuer: s.issuer.unwrap_or(d.issuer),
            audience: s.audience.unwrap_or(d.audience),
            auth_cookie: s.auth_cookie.filter(|name| !name.is_empty()),
            audit_retention: s.audit_retention.unwrap_or(d.audit_retention),
            cache_memory: s.cache_memory.unwrap_or(d.cache_memory),
            store_cache_memory: s.store_cache_memory.unwrap_or(d.store_cache_memory),
            log_format: s.log_format.unwrap_or(d.log_format),
            callers: callers(entries)?,
            max_in_flight: s.max_in_flight.map_or(d.max_in_flight, NonZeroUsize::get),
            request_timeout: s.request_timeout.unwrap_or(d.request_timeout),
            max_concurrent_streams: s
                .max_concurrent_streams
                .map_or(d.max_concurrent_streams, NonZeroU32::get),
            http_header_read_timeout: s
                .http_header_read_timeout
                .unwrap_or(d.http_header_read_timeout),
            http_max_connections: s
                .http_max_connections
                .map_or(d.http_max_connections, NonZeroUsize::get),
            tls,
            otlp_endpoint,
            otlp_sample_ratio: s.otlp_sample_ratio.unwrap_or(d.otlp_sample_ratio),
            ..d
        };
        config.validate()?;
        Ok(config)
    }
}

/// A file error as the setting it is about, when it is about one: the same message a bad flag
/// or variable gets.
fn file_error(path: &Path, error: figment::Error) -> ConfigError {
    let settings = Settings::augment_args(clap::Command::new("sessiond"));
    // An unknown key may share a name with a flag the file cannot set (`config`).
    let unknown = matches!(error.kind, figment::error::Kind::UnknownField(..));
    let arg = error
        .path
        .first()
        .filter(|_| !unknown)
        .and_then(|key| settings.get_arguments().find(|arg| arg.get_id() == key));
    match arg {
        Some(arg) => named(arg, error.kind.to_string()),
        None => file_problem(path, &error),
    }
}

/// A file error that is not about one setting's value (unreadable, not TOML, an unknown key,
/// a bad caller entry): the key it is about, if any, and what is wrong.
fn file_problem(path: &Path, error: &figment::Error) -> ConfigError {
    let what = error.kind.to_string();
    ConfigError::File {
        path: path.to_owned(),
        message: match error.path.is_empty() {
            true => what.trim_end().to_owned(),
            false => format!("{}: {}", error.path.join("."), what.trim_end()),
        },
    }
}

/// The error of a bad value for `arg`, naming its flag and its variable.
fn named(arg: &clap::Arg, message: String) -> ConfigError {
    ConfigError::Invalid {
        flag: format!("--{}", arg.get_long().unwrap_or(arg.get_id().as_str())),
        env: arg
            .get_env()
            .map(|env| env.to_string_lossy().into_owned())
            .unwrap_or_default(),
        message,
    }
}

fn invalid(flag: &str, env: &str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        flag: flag.to_owned(),
        env: env.to_owned(),
        message: message.to_string(),
    }
}

/// A typed setting's value: one parser for the flag, the variable and the file.
trait SettingValue: Sized + Clone + Send + Sync + 'static {
    /// Parses `text`; the message says what is wrong, the caller adds which setting.
    fn parse(text: &str) -> Result<Self, String>;
    /// The text that parses back to this value (how a flag's value is laid over the file).
    fn text(&self) -> String;
}

impl SettingValue for Duration {
    fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))
    }
    fn text(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

/// Values that are their `FromStr` and `Display`, with what a bad one is told.
macro_rules! from_str {
    ($($t:ty => $told:expr),* $(,)?) => {$(
        impl SettingValue for $t {
            fn parse(text: &str) -> Result<Self, String> {
                let told: fn(<$t as FromStr>::Err) -> String = $told;
                text.parse().map_err(|e| format!("{text:?}: {}", told(e)))
            }
            fn text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
from_str!(
    ByteSize => |e: String| format!("{e} (e.g. 192MiB)"),
    SocketAddr => |e| e.to_string(),
    usize => |e| e.to_string(),
    NonZeroUsize => |_| "expected a positive number".to_owned(),
    NonZeroU32 => |_| "expected a positive number".to_owned(),
    f64 => |_| "expected a number from 0.0 to 1.0".to_owned(),
    bool => |_| "expected true or false".to_owned(),
);

impl SettingValue for LogFormat {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?}: expected text or json")),
        }
    }
    fn text(&self) -> String {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
        .to_owned()
    }
}

impl SettingValue for KeyAlgorithm {
    fn parse(text: &str) -> Result<Self, String> {
        KeyAlgorithm::parse(text).ok_or_else(|| format!("{text:?}: expected eddsa, es256 or rs256"))
    }
    fn text(&self) -> String {
        match self {
            Self::EdDsa => "eddsa",
            Self::Es256 => "es256",
            Self::Rs256 => "rs256",
        }
        .to_owned()
    }
}

/// The clap side of a [`SettingValue`]. clap's own errors name the flag only; these name the
/// variable too, as the file's do.
struct Parsed<T>(PhantomData<fn() -> T>);

impl<T> Clone for Parsed<T> {
    fn clone(&self) -> Self {
        Self(PhantomData)
    }
}

fn parsed<T: SettingValue>() -> Parsed<T> {
    Parsed(PhantomData)
}

impl<T: SettingValue> TypedValueParser for Parsed<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let parsed = match value.to_str() {
            Some(text) => T::parse(text),
            None => Err("not UTF-8".to_owned()),
        };
        parsed.map_err(|message| {
            let message = match arg {
                Some(arg) => named(arg, message).to_string(),
                None => message,
            };
            clap::Error::raw(ErrorKind::ValueValidation, format!("{message}\n")).with_cmd(cmd)
        })
    }
}

/// Serde for an optional [`SettingValue`]: written as its text, read from text or from a TOML
/// number or boolean (`max_in_flight = 100` and `max_in_flight = "100"` both work).
mod text {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::SettingValue;

    pub fn serialize<T: SettingValue, S: Serializer>(
        value: &Option<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_str(&value.text()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: SettingValue, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<T>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bool(bool),
            Integer(i64),
            Float(f64),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Bool(b) => b.to_string(),
            Raw::Integer(n) => n.to_string(),
            Raw::Float(x) => x.to_string(),
        };
        T::parse(&text).map(Some).map_err(D::Error::custom)
    }
}

/// An OTLP/gRPC endpoint: an `http://host:port` URI. TLS to the collector is not offered;
/// export to a collector or agent on the same host or network instead.
fn otlp_endpoint(value: String) -> Result<String, ConfigError> {
    let bad = |message: &str| {
        invalid(
            "--otlp-endpoint",
            "SESSIOND_OTLP_ENDPOINT",
            format!("{value:?}: {message}"),
        )
    };
    let uri: http::Uri = value
        .parse()
        .map_err(|_| bad("not a URI such as http://127.0.0.1:4317"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported; export to a local collector over http",
            ));
        }
        _ => return Err(bad("expected http://host:port")),
    }
    if uri.authority().is_none() {
        return Err(bad("expected http://host:port"));
    }
    Ok(value)
}

fn callers(entries: Vec<CallerEntry>) -> Result<Vec<CallerSpec>, ConfigError> {
    let bad = |message: String| invalid("callers", "SESSIOND_CALLERS_FILE", message);
    let mut names = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if e.name.is_empty() || !names.insert(e.name.clone()) {
            return Err(bad(format!(
                "caller name {:?} is empty or repeated",
                e.name
            )));
        }
        let credential_sha256 = match &e.credential_sha256 {
            None => None,
            Some(h) => {
                let bytes = hex::decode(h.trim_start_matches("sha256:"))
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "caller {}: credential_sha256 must be 64 hex digits",
                            e.name
                        ))
                    })?;
                Some(bytes)
            }
        };
        if credential_sha256.is_none() && e.client_cert_subject.is_none() {
            return Err(bad(format!(
                "caller {}: needs credential_sha256 or client_cert_subject",
                e.name
            )));
        }
        let mut roles = Vec::new();
        for r in &e.roles {
            roles.push(Role::parse(r).ok_or_else(|| {
                bad(format!(
                    "caller {}: unknown role {r:?} (issuer, validator, admin)",
                    e.name
                ))
            })?);
        }
        let rate_limit =
            match e.rate_limit {
                None => None,
                Some(n) => Some(std::num::NonZeroU32::new(n).ok_or_else(|| {
                    bad(format!("caller {}: rate_limit must be positive", e.name))
                })?),
            };
        out.push(CallerSpec {
            name: e.name,
            credential_sha256,
            client_cert_subject: e.client_cert_subject,
            roles,
            rate_limit,
        });
    }
    Ok(out)
}

/// Whether `name` is a cookie name: an RFC 7230 token (visible ASCII without separators),
/// at most 128 bytes.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A new random caller credential and the configuration line that admits it.
pub fn new_credential() -> (String, String) {
    use base64::Engine;
    use rand::RngCore;
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let credential = format!(
        "sdc_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let hash = hex::encode(hash_credential(&credential));
    (credential, hash)
}

impl Config {
    /// Checks ranges that no single value's parser can.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let second = Duration::from_secs(1);
        if self.access_token_ttl < second {
            return Err(invalid(
                "--access-token-ttl",
                "SESSIOND_ACCESS_TOKEN_TTL",
                "must be at least 1s",
            ));
        }
        if self.max_session_ttl < second {
            return Err(invalid(
                "--max-session-ttl",
                "SESSIOND_MAX_SESSION_TTL",
                "must be at least 1s",
            ));
        }
        if self.session_ttl < second || self.session_ttl > self.max_session_ttl {
            return Err(invalid(
                "--session-ttl",
                "SESSIOND_SESSION_TTL",
                "must be between 1s and --max-session-ttl",
            ));
        }
        if self.revocation_poll < Duration::from_millis(100)
            || self.revocation_poll > Duration::from_secs(60)
        {
            return Err(invalid(
                "--revocation-poll",
                "SESSIOND_REVOCATION_POLL",
                "must be between 100ms and 60s",
            ));
        }
        if self.store_outage_grace > Duration::from_secs(3600) {
            return Err(invalid(
                "--store-outage-grace",
                "SESSIOND_STORE_OUTAGE_GRACE",
                "must be at most 1h",
            ));
        }
        if self.last_seen_interval < second {
            return Err(invalid(
                "--last-seen-interval",
                "SESSIOND_LAST_SEEN_INTERVAL",
                "must be at least 1s",
            ));
        }
        if !(ByteSize::mib(1)..=ByteSize::gib(1024)).contains(&self.cache_memory) {
            return Err(invalid(
                "--cache-memory",
                "SESSIOND_CACHE_MEMORY",
                "must be between 1MiB and 1TiB",
            ));
        }
        if !(ByteSize::mib(1)..=ByteSize::gib(1024)).contains(&self.store_cache_memory) {
            return Err(invalid(
                "--store-cache-memory",
                "SESSIOND_STORE_CACHE_MEMORY",
                "must be between 1MiB and 1TiB",
            ));
        }
        if self.refresh_grace > Duration::from_secs(300) {
            return Err(invalid(
                "--refresh-grace",
                "SESSIOND_REFRESH_GRACE",
                "must be between 0s and 5m",
            ));
        }
        // Activity reaches the store once per last-seen interval: a shorter timeout would
        // end sessions that are in use.
        if !self.idle_timeout.is_zero() && self.idle_timeout < self.last_seen_interval * 2 {
            return Err(invalid(
                "--idle-timeout",
                "SESSIOND_IDLE_TIMEOUT",
                "must be 0s or at least twice --last-seen-interval",
            ));
        }
        if self.issuer.is_empty() {
            return Err(invalid("--issuer", "SESSIOND_ISSUER", "must not be empty"));
        }
        if self.audience.is_empty() || self.audience.chars().any(char::is_control) {
            return Err(invalid(
                "--audience",
                "SESSIOND_AUDIENCE",
                "must be non-empty text without control characters",
            ));
        }
        if let Some(name) = &self.auth_cookie
            && !is_cookie_name(name)
        {
            return Err(invalid(
                "--auth-cookie",
                "SESSIOND_AUTH_COOKIE",
                format!("{name:?} is not a cookie name (RFC 6265: a token, no separators)"),
            ));
        }
        if !(0.0..=1.0).contains(&self.otlp_sample_ratio) {
            return Err(invalid(
                "--otlp-sample-ratio",
                "SESSIOND_OTLP_SAMPLE_RATIO",
                format!(
                    "{}: expected a number from 0.0 to 1.0",
                    self.otlp_sample_ratio
                ),
            ));
        }
        let timeouts = Duration::from_millis(100)..=Duration::from_secs(300);
        if !timeouts.contains(&self.request_timeout) {
            return Err(invalid(
                "--request-timeout",
                "SESSIOND_REQUEST_TIMEOUT",
                "must be between 100ms and 5m",
            ));
        }
        if !timeouts.contains(&self.http_header_read_timeout) {
            return Err(invalid(
                "--http-header-read-timeout",
                "SESSIOND_HTTP_HEADER_READ_TIMEOUT",
                "must be between 100ms and 5m",
            ));
        }
        Ok(())
    }

    /// Where the keys come from; the PEM text (`SESSIOND_SIGNING_KEY`) wins over every file.
    pub fn key_sources(&self) -> KeySources {
        KeySources {
            dir: self.key_dir.clone(),
            signing_key_file: self.signing_key_file.clone(),
            signing_key_pem: self.signing_key_pem.as_ref().map(|pem| pem.0.clone()),
            verification_key_files: self.verification_key_files.clone(),
            algorithm: self.key_algorithm,
        }
    }

    /// What opening the store needs, and no more of the configuration: the backend with its
    /// directory or cluster, the audit retention, whether to migrate first, and the clock.
    pub fn store_settings(&self) -> StoreSettings {
        let backend = match &self.store {
            StoreKind::Embedded => Backend::Embedded {
                dir: self.data_dir.clone(),
                options: EmbeddedOptions {
                    audit_retention: self.audit_retention,
                    cache_bytes: usize::try_from(self.store_cache_memory.as_u64())
                        .unwrap_or(usize::MAX),
                },
            },
            StoreKind::Scylla(scylla) => {
                let mut scylla = scylla.clone();
                scylla.audit_retention = self.audit_retention;
                Backend::Scylla(scylla)
            }
        };
        StoreSettings {
            backend,
            migrate: self.migrate,
            clock: self.clock.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sessiond serve ARGS` resolved as `main` does: a clap error and a resolve error both
    /// come back as their text.
    fn serve(args: &[&str]) -> Result<Config, String> {
        let argv = ["sessiond", "serve"].iter().chain(args);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Serve(settings) => settings.resolve().map_err(|e| e.to_string()),
            other => Err(format!("not serve: {other:?}")),
        }
    }

    /// A TOML file holding `text`, and its path as an argument.
    fn file(dir: &tempfile::TempDir, text: &str) -> String {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8 tempdir").to_owned()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.store, StoreKind::Embedded);
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.session_ttl, Duration::from_secs(30 * 86400));
        assert_eq!(c.max_session_ttl, Duration::from_secs(90 * 86400));
        assert_eq!(c.revocation_poll, Duration::from_secs(1));
        assert_eq!(c.store_outage_grace, Duration::ZERO);
    }

    #[test]
    fn bad_value_names_the_setting() {
        let err = serve(&["--access-token-ttl", "soon"]).expect_err("must fail");
        assert!(
            err.contains("--access-token-ttl") && err.contains("SESSIOND_ACCESS_TOKEN_TTL"),
            "{err}"
        );
    }

    /// The error the parser of `id` gives for `value`, called as clap calls it for a flag's
    /// or a variable's value, without touching this process's environment.
    fn rejection<T: SettingValue + std::fmt::Debug>(id: &str, value: &str) -> (String, String) {
        let cmd = Settings::augment_args(clap::Command::new("sessiond"));
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == id)
            .expect("an argument");
        let env = arg.get_env().expect("a variable").to_string_lossy();
        let err = parsed::<T>()
            .parse_ref(&cmd, Some(arg), OsStr::new(value))
            .expect_err(id)
            .to_string();
        (err, env.into_owned())
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_variable() {
        for (id, (err, env)) in [
            (
                "access_token_ttl",
                rejection::<Duration>("access_token_ttl", "soon"),
            ),
            ("grpc_addr", rejection::<SocketAddr>("grpc_addr", "nowhere")),
            (
                "max_in_flight",
                rejection::<NonZeroUsize>("max_in_flight", "0"),
            ),
            ("log_format", rejection::<LogFormat>("log_format", "xml")),
            (
                "key_algorithm",
                rejection::<KeyAlgorithm>("key_algorithm", "md5"),
            ),
            ("migrate", rejection::<bool>("migrate", "yes")),
        ] {
            let flag = format!("--{}", id.replace('_', "-"));
            assert!(err.contains(&flag) && err.contains(&env), "{err}");
            assert_eq!(env, format!("SESSIOND_{}", id.to_uppercase()));
        }
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_flag_and_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, flag, env) in [
            (
                "session_ttl = \"soon\"\n",
                "--session-ttl",
                "SESSIOND_SESSION_TTL",
            ),
            (
                "max_in_flight = 0\n",
                "--max-in-flight",
                "SESSIOND_MAX_IN_FLIGHT",
            ),
            ("issuer = 5\n", "--issuer", "SESSIOND_ISSUER"),
            (
                "log_format = \"xml\"\n",
                "--log-format",
                "SESSIOND_LOG_FORMAT",
            ),
        ] {
            let err = serve(&["--config", &file(&dir, text)]).expect_err(text);
            assert!(err.contains(flag) && err.contains(env), "{text}: {err}");
        }
    }

    #[test]
    fn flag_values_survive_being_laid_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "issuer = \"from-file\"\n");
        let c = serve(&[
            "--config",
            &path,
            "--session-ttl",
            "89d 3h 7ms",
            "--otlp-sample-ratio",
            "0.3",
            "--migrate",
            "true",
            "--key-algorithm",
            "es256",
            "--log-format",
            "json",
        ])
        .expect("valid");
        assert_eq!(
            c.session_ttl,
            Duration::from_secs(89 * 86400 + 3 * 3600) + Duration::from_millis(7)
        );
        assert_eq!(c.otlp_sample_ratio, 0.3);
        assert!(c.migrate);
        assert_eq!(c.key_algorithm, KeyAlgorithm::Es256);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.issuer, "from-file");
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "grpc_addr = \"127.0.0.1:1\"\nsession_ttl = \"1h\"\nmax_sessions_per_user = 7\n",
        );
        let c = serve(&["--config", &path, "--grpc-addr", "127.0.0.1:2"]).expect("valid");
        assert_eq!(c.grpc_addr.port(), 2);
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
        assert_eq!(c.max_sessions_per_user, 7);
    }

    #[test]
    fn otlp_is_off_by_default_and_validated() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.otlp_endpoint, None);
        assert_eq!(c.otlp_sample_ratio, 1.0);

        let c = serve(&[
            "--otlp-endpoint",
            "http://127.0.0.1:4317",
            "--otlp-sample-ratio",
            "0.25",
        ])
        .expect("valid");
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(c.otlp_sample_ratio, 0.25);

        for endpoint in [
            "127.0.0.1:4317",
            "https://collector:4317",
            "not a uri",
            "http://",
        ] {
            let err = serve(&["--otlp-endpoint", endpoint]).expect_err(endpoint);
            assert!(
                err.contains("--otlp-endpoint") && err.contains("SESSIOND_OTLP_ENDPOINT"),
                "{err}"
            );
        }
        for ratio in ["1.5", "-0.1", "half", "NaN"] {
            let err = serve(&[&format!("--otlp-sample-ratio={ratio}")]).expect_err(ratio);
            assert!(err.contains("--otlp-sample-ratio"), "{err}");
        }
    }

    #[test]
    fn otlp_settings_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "otlp_endpoint = \"http://collector:4317\"\notlp_sample_ratio = \"0.5\"\nhttp_addr = \"127.0.0.1:9090\"\n",
        );
        let c = serve(&["--config", &path]).expect("valid");
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(c.otlp_sample_ratio, 0.5);
        assert_eq!(c.http_addr.port(), 9090);
    }

    #[test]
    fn store_uri_is_checked_and_its_password_never_printed() {
        assert!(serve(&["--store", "scylla://"]).is_err());
        let uri = "scylla://app:hunter2@10.0.0.1:9042/sessiond?dc=dc1";
        let config = serve(&["--store", uri]).expect("valid uri");
        let shown = format!("{:?}", config.store);
        assert_eq!(shown, "scylla://10.0.0.1:9042/sessiond");
        assert!(!format!("{config:?}").contains("hunter2"));

        // Credentials in the query, as the README documents them, and an '@' or a '/' in a
        // password there: the rendering is the parser's, not a guess at where the secret ends.
        for (uri, want) in [
            (
                "scylla://h1:9042,h2:9042/sessiond?tls_ca=/etc/ca.pem&username=app&password=s3cret",
                "scylla://h1:9042,h2:9042/sessiond",
            ),
            (
                "scylla://h1/ks?username=app&password=s3@cret",
                "scylla://h1:9042/ks",
            ),
            (
                "scylla://h1/ks?username=app&password=s3/cret",
                "scylla://h1:9042/ks",
            ),
        ] {
            let config = serve(&["--store", uri]).expect("valid uri");
            assert_eq!(format!("{:?}", config.store), want, "{uri}");
            assert!(!format!("{config:?}").contains("cret"), "{uri}");
        }
        // A value that is not a store is not echoed either: it may be a URI with a password.
        let err = serve(&["--store", "cassandra://app:s3cret@h1/ks"]).expect_err("not a store");
        assert!(err.contains("--store") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn the_store_uri_is_parsed_once_into_the_backend_settings() {
        let c = serve(&[
            "--store",
            "scylla://app:pw@h1:9042/ks?rf=1",
            "--audit-retention",
            "7d",
            "--migrate",
            "true",
        ])
        .expect("valid uri");
        let settings = c.store_settings();
        assert!(settings.migrate);
        match settings.backend {
            Backend::Scylla(scylla) => {
                assert_eq!(scylla.hosts, ["h1:9042"]);
                assert_eq!(scylla.keyspace, "ks");
                assert_eq!(scylla.audit_retention, Duration::from_secs(7 * 86400));
            }
            other => panic!("not scylla: {other:?}"),
        }
        match serve(&[]).expect("defaults").store_settings().backend {
            Backend::Embedded { dir, options } => {
                assert_eq!(dir, PathBuf::from("./data"));
                assert_eq!(options.audit_retention, Duration::from_secs(90 * 86400));
            }
            other => panic!("not embedded: {other:?}"),
        }
    }

    #[test]
    fn the_signing_key_text_is_part_of_the_config_and_never_printed() {
        let pem = "-----BEGIN PRIVATE KEY-----\nsecretbytes\n-----END PRIVATE KEY-----\n";
        let c = serve(&[&format!("--signing-key={pem}")]).expect("valid");
        assert_eq!(c.key_sources().signing_key_pem.as_deref(), Some(pem));
        assert!(!format!("{c:?}").contains("secretbytes"));
        let c = serve(&["--signing-key", ""]).expect("valid");
        assert_eq!(c.key_sources().signing_key_pem, None);
    }

    #[test]
    fn admission_settings_have_defaults_and_are_checked() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.max_concurrent_streams, 256);
        assert_eq!(c.http_header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http_max_connections, 512);

        let c = serve(&[
            "--request-timeout",
            "2s",
            "--max-concurrent-streams",
            "64",
            "--http-header-read-timeout",
            "500ms",
            "--http-max-connections",
            "100",
        ])
        .expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.max_concurrent_streams, 64);
        assert_eq!(c.http_header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.http_max_connections, 100);

        let bad: [(&str, &str); 6] = [
            ("--request-timeout", "10ms"),
            ("--request-timeout", "1h"),
            ("--max-concurrent-streams", "0"),
            ("--max-concurrent-streams", "5000000000"),
            ("--http-header-read-timeout", "0s"),
            ("--http-max-connections", "none"),
        ];
        for (flag, value) in bad {
            let err = serve(&[flag, value]).expect_err(flag);
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn refresh_grace_and_idle_timeout_have_defaults_and_are_checked() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.refresh_grace, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::ZERO);

        let c = serve(&["--refresh-grace", "0s", "--idle-timeout", "15m"]).expect("valid");
        assert_eq!(c.refresh_grace, Duration::ZERO);
        assert_eq!(c.idle_timeout, Duration::from_secs(900));
        let c = serve(&[
            "--idle-timeout",
            "2s",
            "--last-seen-interval",
            "1s",
            "--refresh-grace",
            "5m",
        ])
        .expect("twice the interval is enough");
        assert_eq!(c.idle_timeout, Duration::from_secs(2));

        let bad: [(&[&str], &str); 4] = [
            (&["--refresh-grace", "301s"], "--refresh-grace"),
            (&["--refresh-grace", "later"], "--refresh-grace"),
            // Under twice the default last-seen interval (60s).
            (&["--idle-timeout", "119s"], "--idle-timeout"),
            (
                &["--idle-timeout", "3s", "--last-seen-interval", "2s"],
                "--idle-timeout",
            ),
        ];
        for (args, flag) in bad {
            let err = serve(args).expect_err(flag);
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn admission_settings_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(
            &dir,
            "request_timeout = \"3s\"\nmax_concurrent_streams = 32\nhttp_header_read_timeout = \"2s\"\nhttp_max_connections = 64\n",
        );
        let c = serve(&["--config", &path]).expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.max_concurrent_streams, 32);
        assert_eq!(c.http_header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.http_max_connections, 64);
    }

    #[test]
    fn store_outage_grace_comes_from_flag_or_file_and_is_bounded() {
        let c = serve(&["--store-outage-grace", "10s"]).expect("valid");
        assert_eq!(c.store_outage_grace, Duration::from_secs(10));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "store_outage_grace = \"30s\"\n");
        let c = serve(&["--config", &path]).expect("valid");
        assert_eq!(c.store_outage_grace, Duration::from_secs(30));
        let err = serve(&["--store-outage-grace", "2h"]).expect_err("over 1h");
        assert!(
            err.contains("--store-outage-grace")
                && err.contains("SESSIOND_STORE_OUTAGE_GRACE")
                && err.contains("at most 1h"),
            "{err}"
        );
    }

    #[test]
    fn cache_budgets_have_defaults_take_units_and_are_bounded() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.cache_memory, ByteSize::mib(192));
        assert_eq!(c.store_cache_memory, ByteSize::mib(64));
        let c =
            serve(&["--cache-memory", "2GiB", "--store-cache-memory", "256MiB"]).expect("valid");
        assert_eq!(c.cache_memory, ByteSize::gib(2));
        assert_eq!(c.store_cache_memory, ByteSize::mib(256));
        match c.store_settings().backend {
            Backend::Embedded { options, .. } => assert_eq!(options.cache_bytes, 256 << 20),
            other => panic!("embedded expected, got {other:?}"),
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "cache_memory = \"512 MiB\"\n");
        let c = serve(&["--config", &path]).expect("valid");
        assert_eq!(c.cache_memory, ByteSize::mib(512));
        let err = serve(&["--cache-memory", "100KiB"]).expect_err("too small");
        assert!(
            err.contains("--cache-memory") && err.contains("SESSIOND_CACHE_MEMORY"),
            "{err}"
        );
        let err = serve(&["--cache-memory", "lots"]).expect_err("not a size");
        assert!(err.contains("lots"), "{err}");
    }

    #[test]
    fn audience_and_auth_cookie() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.audience, "sessiond");
        assert_eq!(c.auth_cookie, None);

        let c = serve(&[
            "--audience",
            "api.example.com",
            "--auth-cookie",
            "__Host-session",
        ])
        .expect("valid");
        assert_eq!(c.audience, "api.example.com");
        assert_eq!(c.auth_cookie.as_deref(), Some("__Host-session"));

        // An empty value leaves the cookie off, as an unset variable does.
        let c = serve(&["--auth-cookie", ""]).expect("valid");
        assert_eq!(c.auth_cookie, None);

        for (flag, value) in [
            ("--audience", ""),
            ("--auth-cookie", "a=b"),
            ("--auth-cookie", "two words"),
            ("--auth-cookie", "semi;colon"),
        ] {
            let err = serve(&[flag, value]).expect_err(flag);
            assert!(err.contains(flag), "{err}");
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "audience = \"orders\"\nauth_cookie = \"sid\"\n");
        let c = serve(&["--config", &path]).expect("valid");
        assert_eq!(c.audience, "orders");
        assert_eq!(c.auth_cookie.as_deref(), Some("sid"));
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = file(&dir, "grpc_adr = \"x\"\n");
        assert!(serve(&["--config", &path]).is_err());
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.toml");
        let err = serve(&["--config", path.to_str().expect("utf-8")]).expect_err("absent");
        assert!(err.contains("absent.toml"), "{err}");
    }

    #[test]
    fn callers_come_from_the_file_and_the_callers_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = "ab".repeat(32);
        let main = file(
            &dir,
            &format!(
                "[[callers]]\nname = \"a\"\ncredential_sha256 = \"{hash}\"\nroles = [\"issuer\"]\n"
            ),
        );
        let extra = dir.path().join("callers.toml");
        std::fs::write(
            &extra,
            format!("[[callers]]\nname = \"b\"\ncredential_sha256 = \"{hash}\"\nroles = [\"admin\"]\nrate_limit = 5\n"),
        )
        .expect("write");
        let extra = extra.to_str().expect("utf-8");
        let c = serve(&["--config", &main, "--callers-file", extra]).expect("valid");
        let names: Vec<&str> = c.callers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        std::fs::write(
            dir.path().join("callers.toml"),
            "[[callers]]\nnme = \"b\"\n",
        )
        .expect("write");
        let err = serve(&["--callers-file", extra]).expect_err("unknown key");
        assert!(err.contains("callers.toml"), "{err}");
    }
}
