//! The one typed configuration: command-line flags, `SESSIOND_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, over built-in defaults.
//! Everything is validated here, at start; a bad value names its flag and variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::auth::{CallerSpec, Role, hash_credential};
use crate::keystore::{KeyAlgorithm, KeySources};

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse or is out of range.
    #[error("invalid {flag} ({env}): {message}")]
    Invalid {
        /// The flag, e.g. `--grpc-addr`.
        flag: &'static str,
        /// The environment variable, e.g. `SESSIOND_GRPC_ADDR`.
        env: &'static str,
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
    /// A ScyllaDB (or Cassandra) cluster, given as a `scylla://` URI.
    Scylla(String),
}

impl std::fmt::Debug for StoreKind {
    /// Never prints a URI's user info or options, which may hold a password: a ScyllaDB URI
    /// is shown as its parser understood it, hosts and keyspace only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Embedded => f.write_str("embedded"),
            StoreKind::Scylla(uri) => match crate::store::scylla::ScyllaConfig::from_uri(uri) {
                Ok(scylla) => write!(f, "{scylla}"),
                Err(_) => f.write_str("scylla://<invalid uri>"),
            },
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
    /// PEM public keys of retired signing keys, still accepted.
    pub verification_key_files: Vec<PathBuf>,
    /// The algorithm of a generated signing key.
    pub key_algorithm: KeyAlgorithm,
    /// The store backend.
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
    /// Least time between two last-seen writes of one session.
    pub last_seen_interval: Duration,
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
            verification_key_files: Vec::new(),
            key_algorithm: KeyAlgorithm::EdDsa,
            data_dir,
            store: StoreKind::Embedded,
            migrate: false,
            access_token_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            max_session_ttl: Duration::from_secs(90 * 24 * 3600),
            revocation_poll: Duration::from_secs(1),
            last_seen_interval: Duration::from_secs(60),
            max_sessions_per_user: 100,
            hooks: crate::hooks::Hooks::default(),
            clock: crate::model::SystemClock::shared(),
            issuer: "sessiond".to_owned(),
            audience: "sessiond".to_owned(),
            auth_cookie: None,
            audit_retention: Duration::from_secs(90 * 24 * 3600),
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

/// Every setting as given on the command line or in the environment (unparsed, so errors can
/// name the setting).
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML file with any of these settings (snake_case names).
    #[arg(long, env = "SESSIOND_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]
    #[arg(long, env = "SESSIOND_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// HTTP listen address [default: 127.0.0.1:8080]
    #[arg(long, env = "SESSIOND_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Data directory [default: ./data]
    #[arg(long, env = "SESSIOND_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key directory [default: <data-dir>/keys]
    #[arg(long, env = "SESSIOND_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// PEM (PKCS#8) private key to sign with: Ed25519, P-256 or RSA [default: generated]
    #[arg(long, env = "SESSIOND_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// PEM public keys of retired signing keys, still accepted (comma-separated or repeated)
    #[arg(long, env = "SESSIOND_VERIFICATION_KEY_FILES", value_delimiter = ',')]
    #[serde(default)]
    pub verification_key_files: Vec<PathBuf>,
    /// Algorithm of a generated signing key: eddsa, es256, rs256 [default: eddsa]
    #[arg(long, env = "SESSIOND_KEY_ALGORITHM")]
    pub key_algorithm: Option<String>,
    /// `embedded` or `scylla://host1:9042,host2:9042/keyspace` [default: embedded]
    #[arg(long, env = "SESSIOND_STORE")]
    pub store: Option<String>,
    /// Create or upgrade the ScyllaDB schema at start-up
    #[arg(long, env = "SESSIOND_MIGRATE")]
    pub migrate: Option<bool>,
    /// Access token lifetime [default: 15m]
    #[arg(long, env = "SESSIOND_ACCESS_TOKEN_TTL")]
    pub access_token_ttl: Option<String>,
    /// Session lifetime when Issue gives none [default: 30d]
    #[arg(long, env = "SESSIOND_SESSION_TTL")]
    pub session_ttl: Option<String>,
    /// Longest session lifetime [default: 90d]
    #[arg(long, env = "SESSIOND_MAX_SESSION_TTL")]
    pub max_session_ttl: Option<String>,
    /// How stale another replica's revocations may be [default: 1s]
    #[arg(long, env = "SESSIOND_REVOCATION_POLL")]
    pub revocation_poll: Option<String>,
    /// Least time between two last-seen writes of a session [default: 60s]
    #[arg(long, env = "SESSIOND_LAST_SEEN_INTERVAL")]
    pub last_seen_interval: Option<String>,
    /// Most live sessions per user, 0 for no limit [default: 100]
    #[arg(long, env = "SESSIOND_MAX_SESSIONS_PER_USER")]
    #[serde(default, deserialize_with = "number_or_string")]
    pub max_sessions_per_user: Option<String>,
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
    #[arg(long, env = "SESSIOND_AUDIT_RETENTION")]
    pub audit_retention: Option<String>,
    /// `text` or `json` [default: text]
    #[arg(long, env = "SESSIOND_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// TOML file with `[[callers]]` entries, kept apart from the main configuration
    #[arg(long, env = "SESSIOND_CALLERS_FILE")]
    pub callers_file: Option<PathBuf>,
    /// Most requests of callers in flight at once [default: 10000]
    #[arg(long, env = "SESSIOND_MAX_IN_FLIGHT")]
    #[serde(default, deserialize_with = "number_or_string")]
    pub max_in_flight: Option<String>,
    /// Longest time one gRPC or HTTP request may take, 100ms to 5m [default: 10s]
    #[arg(long, env = "SESSIOND_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Most concurrent HTTP/2 streams per gRPC connection [default: 256]
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_STREAMS")]
    #[serde(default, deserialize_with = "number_or_string")]
    pub max_concurrent_streams: Option<String>,
    /// How long an HTTP client may take to send its request headers, or stay idle between
    /// requests, 100ms to 5m [default: 10s]
    #[arg(long, env = "SESSIOND_HTTP_HEADER_READ_TIMEOUT")]
    pub http_header_read_timeout: Option<String>,
    /// Most HTTP connections open at once; more are closed at once [default: 512]
    #[arg(long, env = "SESSIOND_HTTP_MAX_CONNECTIONS")]
    #[serde(default, deserialize_with = "number_or_string")]
    pub http_max_connections: Option<String>,
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
    #[arg(long, env = "SESSIOND_OTLP_SAMPLE_RATIO")]
    pub otlp_sample_ratio: Option<String>,
    /// Callers, from the TOML file only
    #[arg(skip)]
    #[serde(default)]
    pub callers: Vec<CallerEntry>,
}

/// Accepts `100` as well as `"100"` in the TOML file; the value is checked with the flag's.
fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Number(i64),
        Text(String),
    }
    Ok(Option::<Value>::deserialize(d)?.map(|v| match v {
        Value::Number(n) => n.to_string(),
        Value::Text(t) => t,
    }))
}

fn invalid(flag: &'static str, env: &'static str, message: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        flag,
        env,
        message: message.to_string(),
    }
}

fn duration(
    value: Option<String>,
    default: Duration,
    flag: &'static str,
    env: &'static str,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => {
            humantime::parse_duration(&v).map_err(|e| invalid(flag, env, format!("{v:?}: {e}")))
        }
    }
}

/// A count that must be at least 1.
fn positive<T>(
    value: Option<String>,
    default: T,
    flag: &'static str,
    env: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + Default + PartialEq,
{
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n != T::default() => Ok(n),
            _ => Err(invalid(
                flag,
                env,
                format!("{v:?}: expected a positive number"),
            )),
        },
    }
}

fn addr(
    value: Option<String>,
    default: SocketAddr,
    flag: &'static str,
    env: &'static str,
) -> Result<SocketAddr, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|e| invalid(flag, env, format!("{v:?}: {e}"))),
    }
}

impl Settings {
    /// Fills what flags and environment left unset from `file`.
    fn or_file(self, file: Settings) -> Settings {
        Settings {
            config: self.config,
            grpc_addr: self.grpc_addr.or(file.grpc_addr),
            http_addr: self.http_addr.or(file.http_addr),
            data_dir: self.data_dir.or(file.data_dir),
            key_dir: self.key_dir.or(file.key_dir),
            signing_key_file: self.signing_key_file.or(file.signing_key_file),
            verification_key_files: if self.verification_key_files.is_empty() {
                file.verification_key_files
            } else {
                self.verification_key_files
            },
            key_algorithm: self.key_algorithm.or(file.key_algorithm),
            store: self.store.or(file.store),
            migrate: self.migrate.or(file.migrate),
            access_token_ttl: self.access_token_ttl.or(file.access_token_ttl),
            session_ttl: self.session_ttl.or(file.session_ttl),
            max_session_ttl: self.max_session_ttl.or(file.max_session_ttl),
            revocation_poll: self.revocation_poll.or(file.revocation_poll),
            last_seen_interval: self.last_seen_interval.or(file.last_seen_interval),
            max_sessions_per_user: self.max_sessions_per_user.or(file.max_sessions_per_user),
            issuer: self.issuer.or(file.issuer),
            audience: self.audience.or(file.audience),
            auth_cookie: self.auth_cookie.or(file.auth_cookie),
            audit_retention: self.audit_retention.or(file.audit_retention),
            log_format: self.log_format.or(file.log_format),
            callers_file: self.callers_file.or(file.callers_file),
            max_in_flight: self.max_in_flight.or(file.max_in_flight),
            request_timeout: self.request_timeout.or(file.request_timeout),
            max_concurrent_streams: self.max_concurrent_streams.or(file.max_concurrent_streams),
            http_header_read_timeout: self
                .http_header_read_timeout
                .or(file.http_header_read_timeout),
            http_max_connections: self.http_max_connections.or(file.http_max_connections),
            tls_cert_file: self.tls_cert_file.or(file.tls_cert_file),
            tls_key_file: self.tls_key_file.or(file.tls_key_file),
            tls_client_ca_file: self.tls_client_ca_file.or(file.tls_client_ca_file),
            otlp_endpoint: self.otlp_endpoint.or(file.otlp_endpoint),
            otlp_sample_ratio: self.otlp_sample_ratio.or(file.otlp_sample_ratio),
            callers: file.callers,
        }
    }

    /// Reads the TOML file (if any), applies defaults and validates everything.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let s = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                let file: Settings = toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                self.or_file(file)
            }
            None => self,
        };
        let data_dir = s.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
        let d = Config::new(&data_dir);
        let store = match s.store.as_deref() {
            None | Some("embedded") => StoreKind::Embedded,
            Some(uri) if uri.starts_with("scylla://") => {
                crate::store::scylla::ScyllaConfig::from_uri(uri)
                    .map_err(|e| invalid("--store", "SESSIOND_STORE", e))?;
                StoreKind::Scylla(uri.to_owned())
            }
            Some(other) => {
                // Only a plain word is echoed: anything else may be a URI with a password.
                let shown = if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("{other:?}")
                } else {
                    "the value".to_owned()
                };
                return Err(invalid(
                    "--store",
                    "SESSIOND_STORE",
                    format!("{shown} is not a store: expected `embedded` or a scylla:// URI"),
                ));
            }
        };
        let max_sessions_per_user = match s.max_sessions_per_user {
            None => d.max_sessions_per_user,
            Some(v) => v.parse().map_err(|e| {
                invalid(
                    "--max-sessions-per-user",
                    "SESSIOND_MAX_SESSIONS_PER_USER",
                    format!("{v:?}: {e}"),
                )
            })?,
        };
        let log_format = match s.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "--log-format",
                    "SESSIOND_LOG_FORMAT",
                    format!("{other:?}: expected text or json"),
                ));
            }
        };
        let mut entries = s.callers;
        if let Some(path) = &s.callers_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let file: CallersFile = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
            entries.extend(file.callers);
        }
        let callers = callers(entries)?;
        let max_in_flight = positive(
            s.max_in_flight,
            d.max_in_flight,
            "--max-in-flight",
            "SESSIOND_MAX_IN_FLIGHT",
        )?;
        let max_concurrent_streams = positive(
            s.max_concurrent_streams,
            d.max_concurrent_streams,
            "--max-concurrent-streams",
            "SESSIOND_MAX_CONCURRENT_STREAMS",
        )?;
        let http_max_connections = positive(
            s.http_max_connections,
            d.http_max_connections,
            "--http-max-connections",
            "SESSIOND_HTTP_MAX_CONNECTIONS",
        )?;
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
        let key_algorithm = match s.key_algorithm.as_deref() {
            None => KeyAlgorithm::EdDsa,
            Some(a) => KeyAlgorithm::parse(a).ok_or_else(|| {
                invalid(
                    "--key-algorithm",
                    "SESSIOND_KEY_ALGORITHM",
                    format!("{a:?}: expected eddsa, es256 or rs256"),
                )
            })?,
        };
        let otlp_endpoint = match s.otlp_endpoint {
            None => None,
            Some(v) if v.is_empty() => None,
            Some(v) => Some(otlp_endpoint(v)?),
        };
        let otlp_sample_ratio = match s.otlp_sample_ratio {
            None => d.otlp_sample_ratio,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(invalid(
                        "--otlp-sample-ratio",
                        "SESSIOND_OTLP_SAMPLE_RATIO",
                        format!("{v:?}: expected a number from 0.0 to 1.0"),
                    ));
                }
            },
        };
        let config = Config {
            hooks: crate::hooks::Hooks::default(),
            clock: crate::model::SystemClock::shared(),
            otlp_endpoint,
            otlp_sample_ratio,
            signing_key_file: s.signing_key_file,
            verification_key_files: s.verification_key_files,
            key_algorithm,
            callers,
            max_in_flight,
            request_timeout: duration(
                s.request_timeout,
                d.request_timeout,
                "--request-timeout",
                "SESSIOND_REQUEST_TIMEOUT",
            )?,
            max_concurrent_streams,
            http_header_read_timeout: duration(
                s.http_header_read_timeout,
                d.http_header_read_timeout,
                "--http-header-read-timeout",
                "SESSIOND_HTTP_HEADER_READ_TIMEOUT",
            )?,
            http_max_connections,
            tls,
            grpc_addr: addr(
                s.grpc_addr,
                d.grpc_addr,
                "--grpc-addr",
                "SESSIOND_GRPC_ADDR",
            )?,
            http_addr: addr(
                s.http_addr,
                d.http_addr,
                "--http-addr",
                "SESSIOND_HTTP_ADDR",
            )?,
            key_dir: s.key_dir.unwrap_or_else(|| data_dir.join("keys")),
            data_dir,
            store,
            migrate: s.migrate.unwrap_or(false),
            access_token_ttl: duration(
                s.access_token_ttl,
                d.access_token_ttl,
                "--access-token-ttl",
                "SESSIOND_ACCESS_TOKEN_TTL",
            )?,
            session_ttl: duration(
                s.session_ttl,
                d.session_ttl,
                "--session-ttl",
                "SESSIOND_SESSION_TTL",
            )?,
            max_session_ttl: duration(
                s.max_session_ttl,
                d.max_session_ttl,
                "--max-session-ttl",
                "SESSIOND_MAX_SESSION_TTL",
            )?,
            revocation_poll: duration(
                s.revocation_poll,
                d.revocation_poll,
                "--revocation-poll",
                "SESSIOND_REVOCATION_POLL",
            )?,
            last_seen_interval: duration(
                s.last_seen_interval,
                d.last_seen_interval,
                "--last-seen-interval",
                "SESSIOND_LAST_SEEN_INTERVAL",
            )?,
            max_sessions_per_user,
            issuer: s.issuer.unwrap_or(d.issuer),
            audience: s.audience.unwrap_or(d.audience),
            auth_cookie: s.auth_cookie.filter(|name| !name.is_empty()),
            audit_retention: duration(
                s.audit_retention,
                d.audit_retention,
                "--audit-retention",
                "SESSIOND_AUDIT_RETENTION",
            )?,
            log_format,
        };
        config.validate()?;
        Ok(config)
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
        if self.last_seen_interval < second {
            return Err(invalid(
                "--last-seen-interval",
                "SESSIOND_LAST_SEEN_INTERVAL",
                "must be at least 1s",
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

    /// Where the keys come from; `SESSIOND_SIGNING_KEY` (PEM text) wins over every file.
    pub fn key_sources(&self) -> KeySources {
        KeySources {
            dir: self.key_dir.clone(),
            signing_key_file: self.signing_key_file.clone(),
            signing_key_pem: std::env::var("SESSIOND_SIGNING_KEY")
                .ok()
                .filter(|v| !v.is_empty()),
            verification_key_files: self.verification_key_files.clone(),
            algorithm: self.key_algorithm,
        }
    }

    /// The embedded store's directory.
    pub fn store_dir(&self) -> &Path {
        &self.data_dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn bad_value_names_the_setting() {
        let s = Settings {
            access_token_ttl: Some("soon".into()),
            ..Settings::default()
        };
        let err = s.resolve().expect_err("must fail").to_string();
        assert!(
            err.contains("--access-token-ttl") && err.contains("SESSIOND_ACCESS_TOKEN_TTL"),
            "{err}"
        );
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        let file = "grpc_addr = \"127.0.0.1:1\"\nsession_ttl = \"1h\"\nmax_sessions_per_user = 7\n";
        std::fs::write(&path, file).expect("write");
        let s = Settings {
            config: Some(path),
            grpc_addr: Some("127.0.0.1:2".into()),
            ..Settings::default()
        };
        let c = s.resolve().expect("valid");
        assert_eq!(c.grpc_addr.port(), 2);
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
        assert_eq!(c.max_sessions_per_user, 7);
    }

    #[test]
    fn otlp_is_off_by_default_and_validated() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.otlp_endpoint, None);
        assert_eq!(c.otlp_sample_ratio, 1.0);

        let s = Settings {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            otlp_sample_ratio: Some("0.25".into()),
            ..Settings::default()
        };
        let c = s.resolve().expect("valid");
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(c.otlp_sample_ratio, 0.25);

        for endpoint in [
            "127.0.0.1:4317",
            "https://collector:4317",
            "not a uri",
            "http://",
        ] {
            let s = Settings {
                otlp_endpoint: Some(endpoint.into()),
                ..Settings::default()
            };
            let err = s.resolve().expect_err(endpoint).to_string();
            assert!(
                err.contains("--otlp-endpoint") && err.contains("SESSIOND_OTLP_ENDPOINT"),
                "{err}"
            );
        }
        for ratio in ["1.5", "-0.1", "half", "NaN"] {
            let s = Settings {
                otlp_sample_ratio: Some(ratio.into()),
                ..Settings::default()
            };
            let err = s.resolve().expect_err(ratio).to_string();
            assert!(err.contains("--otlp-sample-ratio"), "{err}");
        }
    }

    #[test]
    fn otlp_settings_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "otlp_endpoint = \"http://collector:4317\"\notlp_sample_ratio = \"0.5\"\nhttp_addr = \"127.0.0.1:9090\"\n",
        )
        .expect("write");
        let s = Settings {
            config: Some(path),
            ..Settings::default()
        };
        let c = s.resolve().expect("valid");
        assert_eq!(c.otlp_endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(c.otlp_sample_ratio, 0.5);
        assert_eq!(c.http_addr.port(), 9090);
    }

    #[test]
    fn store_uri_is_checked_and_its_password_never_printed() {
        let bad = Settings {
            store: Some("scylla://".into()),
            ..Settings::default()
        };
        assert!(bad.resolve().is_err());
        let uri = "scylla://app:hunter2@10.0.0.1:9042/sessiond?dc=dc1";
        let good = Settings {
            store: Some(uri.into()),
            ..Settings::default()
        };
        let config = good.resolve().expect("valid uri");
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
            let config = Settings {
                store: Some(uri.into()),
                ..Settings::default()
            }
            .resolve()
            .expect("valid uri");
            assert_eq!(format!("{:?}", config.store), want, "{uri}");
            assert!(!format!("{config:?}").contains("cret"), "{uri}");
        }
        // A value that is not a store is not echoed either: it may be a URI with a password.
        let err = Settings {
            store: Some("cassandra://app:s3cret@h1/ks".into()),
            ..Settings::default()
        }
        .resolve()
        .expect_err("not a store")
        .to_string();
        assert!(err.contains("--store") && !err.contains("s3cret"), "{err}");
    }

    #[test]
    fn admission_settings_have_defaults_and_are_checked() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.max_concurrent_streams, 256);
        assert_eq!(c.http_header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http_max_connections, 512);

        let c = Settings {
            request_timeout: Some("2s".into()),
            max_concurrent_streams: Some("64".into()),
            http_header_read_timeout: Some("500ms".into()),
            http_max_connections: Some("100".into()),
            ..Settings::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.max_concurrent_streams, 64);
        assert_eq!(c.http_header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.http_max_connections, 100);

        let bad: [(Settings, &str); 6] = [
            (
                Settings {
                    request_timeout: Some("10ms".into()),
                    ..Settings::default()
                },
                "--request-timeout",
            ),
            (
                Settings {
                    request_timeout: Some("1h".into()),
                    ..Settings::default()
                },
                "--request-timeout",
            ),
            (
                Settings {
                    max_concurrent_streams: Some("0".into()),
                    ..Settings::default()
                },
                "--max-concurrent-streams",
            ),
            (
                Settings {
                    max_concurrent_streams: Some("5000000000".into()),
                    ..Settings::default()
                },
                "--max-concurrent-streams",
            ),
            (
                Settings {
                    http_header_read_timeout: Some("0s".into()),
                    ..Settings::default()
                },
                "--http-header-read-timeout",
            ),
            (
                Settings {
                    http_max_connections: Some("none".into()),
                    ..Settings::default()
                },
                "--http-max-connections",
            ),
        ];
        for (settings, flag) in bad {
            let err = settings.resolve().expect_err(flag).to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn admission_settings_come_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "request_timeout = \"3s\"\nmax_concurrent_streams = 32\nhttp_header_read_timeout = \"2s\"\nhttp_max_connections = 64\n",
        )
        .expect("write");
        let c = Settings {
            config: Some(path),
            ..Settings::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.max_concurrent_streams, 32);
        assert_eq!(c.http_header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.http_max_connections, 64);
    }

    #[test]
    fn audience_and_auth_cookie() {
        let c = Settings::default().resolve().expect("defaults are valid");
        assert_eq!(c.audience, "sessiond");
        assert_eq!(c.auth_cookie, None);

        let c = Settings {
            audience: Some("api.example.com".into()),
            auth_cookie: Some("__Host-session".into()),
            ..Settings::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.audience, "api.example.com");
        assert_eq!(c.auth_cookie.as_deref(), Some("__Host-session"));

        // An empty value leaves the cookie off, as an unset variable does.
        let c = Settings {
            auth_cookie: Some(String::new()),
            ..Settings::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.auth_cookie, None);

        for (settings, flag) in [
            (
                Settings {
                    audience: Some(String::new()),
                    ..Settings::default()
                },
                "--audience",
            ),
            (
                Settings {
                    auth_cookie: Some("a=b".into()),
                    ..Settings::default()
                },
                "--auth-cookie",
            ),
            (
                Settings {
                    auth_cookie: Some("two words".into()),
                    ..Settings::default()
                },
                "--auth-cookie",
            ),
            (
                Settings {
                    auth_cookie: Some("semi;colon".into()),
                    ..Settings::default()
                },
                "--auth-cookie",
            ),
        ] {
            let err = settings.resolve().expect_err(flag).to_string();
            assert!(err.contains(flag), "{err}");
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "audience = \"orders\"\nauth_cookie = \"sid\"\n").expect("write");
        let c = Settings {
            config: Some(path),
            ..Settings::default()
        }
        .resolve()
        .expect("valid");
        assert_eq!(c.audience, "orders");
        assert_eq!(c.auth_cookie.as_deref(), Some("sid"));
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "grpc_adr = \"x\"\n").expect("write");
        let s = Settings {
            config: Some(path),
            ..Settings::default()
        };
        assert!(s.resolve().is_err());
    }
}
