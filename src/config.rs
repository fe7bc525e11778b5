//! The one typed configuration: command-line flags, `SESSIOND_*` environment variables and an
//! optional TOML file (`--config`), in that order of precedence, over built-in defaults.
//! Everything is validated here, at start; a bad value names its flag and variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded store under the data directory.
    Embedded,
    /// A ScyllaDB (or Cassandra) cluster, given as a `scylla://` URI.
    Scylla(String),
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
    /// The `iss` claim of access tokens.
    pub issuer: String,
    /// How long audit events are kept.
    pub audit_retention: Duration,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults of API.md, with the data directory given.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            key_dir: data_dir.join("keys"),
            data_dir,
            store: StoreKind::Embedded,
            migrate: false,
            access_token_ttl: Duration::from_secs(15 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            max_session_ttl: Duration::from_secs(90 * 24 * 3600),
            revocation_poll: Duration::from_secs(1),
            last_seen_interval: Duration::from_secs(60),
            max_sessions_per_user: 100,
            issuer: "sessiond".to_owned(),
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            log_format: LogFormat::Text,
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
    pub max_sessions_per_user: Option<String>,
    /// The `iss` claim of access tokens [default: sessiond]
    #[arg(long, env = "SESSIOND_ISSUER")]
    pub issuer: Option<String>,
    /// How long audit events are kept [default: 90d]
    #[arg(long, env = "SESSIOND_AUDIT_RETENTION")]
    pub audit_retention: Option<String>,
    /// `text` or `json` [default: text]
    #[arg(long, env = "SESSIOND_LOG_FORMAT")]
    pub log_format: Option<String>,
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
            store: self.store.or(file.store),
            migrate: self.migrate.or(file.migrate),
            access_token_ttl: self.access_token_ttl.or(file.access_token_ttl),
            session_ttl: self.session_ttl.or(file.session_ttl),
            max_session_ttl: self.max_session_ttl.or(file.max_session_ttl),
            revocation_poll: self.revocation_poll.or(file.revocation_poll),
            last_seen_interval: self.last_seen_interval.or(file.last_seen_interval),
            max_sessions_per_user: self.max_sessions_per_user.or(file.max_sessions_per_user),
            issuer: self.issuer.or(file.issuer),
            audit_retention: self.audit_retention.or(file.audit_retention),
            log_format: self.log_format.or(file.log_format),
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
            Some(uri) if uri.starts_with("scylla://") => StoreKind::Scylla(uri.to_owned()),
            Some(other) => {
                return Err(invalid(
                    "--store",
                    "SESSIOND_STORE",
                    format!("{other:?}: expected `embedded` or a scylla:// URI"),
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
        let config = Config {
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
        Ok(())
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
        std::fs::write(&path, "grpc_addr = \"127.0.0.1:1\"\nsession_ttl = \"1h\"\n")
            .expect("write");
        let s = Settings {
            config: Some(path),
            grpc_addr: Some("127.0.0.1:2".into()),
            ..Settings::default()
        };
        let c = s.resolve().expect("valid");
        assert_eq!(c.grpc_addr.port(), 2);
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
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
