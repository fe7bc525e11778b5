//! The ScyllaDB backend's configuration, parsed from one URI.
//!
//! ```text
//! scylla://[user[:password]@]host[:port][,host[:port]...][/keyspace][?key=value&...]
//! ```
//!
//! Parsing only checks syntax and bounds; it never touches the network. Anything it does not
//! recognise is an error, so a misspelt option cannot be silently ignored.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use scylla::frame::types::{Consistency, SerialConsistency};

/// The CQL port used when a host names none.
pub const DEFAULT_PORT: u16 = 9042;
/// The keyspace used when the URI names none.
pub const DEFAULT_KEYSPACE: &str = "sessiond";
/// The replication factor used when neither `rf` nor `replication` is given and the cluster
/// has at least this many nodes in the data centre (fewer nodes: one replica per node).
pub const DEFAULT_RF: u32 = 3;
/// Client-side timeout of one request (all its retries and speculative executions included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of opening one connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a schema change may take to reach every node.
pub const DEFAULT_SCHEMA_AGREEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Delay before an idempotent request is sent again to another replica.
pub const DEFAULT_SPECULATIVE_DELAY: Duration = Duration::from_millis(50);
/// How long audit events are kept unless `audit_retention` is changed.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);
/// Longest keyspace name CQL accepts.
const MAX_KEYSPACE_LEN: usize = 48;
/// Largest replication factor accepted; far above any real cluster, it catches typos.
const MAX_RF: u32 = 32;

/// Everything needed to connect to a ScyllaDB (or Cassandra) cluster and lay out the keyspace.
///
/// `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScyllaConfig {
    /// Contact points as `host:port` (`[v6addr]:port` for IPv6 literals); at least one.
    pub hosts: Vec<String>,
    /// The keyspace holding every table; `[a-z][a-z0-9_]*`, at most 48 bytes.
    pub keyspace: String,
    /// The local data centre (`dc=`): requests are routed to it only, and it is the replication
    /// data centre when `replication` is not given. When absent, requests may go to any data
    /// centre and `migrate` requires the cluster to have exactly one.
    pub local_dc: Option<String>,
    /// How `migrate` replicates a keyspace it creates. An existing keyspace is never altered.
    pub replication: Replication,
    /// Consistency of reads and writes (`consistency=`), LOCAL_QUORUM by default.
    pub consistency: Consistency,
    /// Consistency of the Paxos phase of the refresh compare-and-set (`serial_consistency=`),
    /// LOCAL_SERIAL by default. Use SERIAL if one session may be refreshed in two data centres.
    pub serial_consistency: SerialConsistency,
    /// Client-side timeout of one request (`request_timeout=`, e.g. `2s`, `500ms`).
    pub request_timeout: Duration,
    /// Timeout of opening a connection (`connect_timeout=`).
    pub connect_timeout: Duration,
    /// How long `migrate` waits for schema agreement (`schema_agreement_timeout=`).
    pub schema_agreement_timeout: Duration,
    /// Speculative execution of idempotent statements; `None` when `speculative_retries=0`.
    pub speculative: Option<Speculative>,
    /// Username and password (URI user info, or `username=` and `password=`).
    pub credentials: Option<Credentials>,
    /// TLS settings; `None` for plain TCP.
    pub tls: Option<TlsFiles>,
    /// How long audit events are kept (each insert's TTL); 90 days unless set by the caller
    /// (the service's `--audit-retention`). Not a URI option.
    pub audit_retention: Duration,
    /// Adds `tablets = {'enabled': false}` to the keyspace (`tablets=false`): ScyllaDB versions
    /// without LWT on tablets need it. Cassandra rejects the option, so it is off by default.
    pub disable_tablets: bool,
}

/// How a keyspace created by `migrate` is replicated (always `NetworkTopologyStrategy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `rf=N` (or nothing): the local data centre (`dc=`, else the cluster's only data
    /// centre) with `N` replicas; without `rf`, `min(3, nodes in that data centre)`.
    LocalDc {
        /// The replication factor, if given.
        rf: Option<u32>,
    },
    /// `replication=dc1:3,dc2:3`: exactly these data centres and factors.
    Explicit(Vec<(String, u32)>),
}

/// Speculative execution: after `delay` without an answer, try another replica, at most
/// `max_retries` times. Only statements marked idempotent are ever speculated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Speculative {
    /// Extra executions per request (`speculative_retries=`, default 1).
    pub max_retries: usize,
    /// Delay before each (`speculative_delay=`, default 50ms).
    pub delay: Duration,
}

/// Plain-text authentication credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The role name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// TLS settings: the nodes' certificates must chain to `ca` and name the node's IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of the CA certificates to trust (`tls_ca=`); required with TLS.
    pub ca: PathBuf,
    /// PEM client certificate chain for mutual TLS (`tls_cert=`, with `tls_key=`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate (`tls_key=`).
    pub client_key: Option<PathBuf>,
}

/// Why a `scylla://` URI was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScyllaConfigError {
    /// The URI does not start with `scylla://`.
    #[error("store uri must start with scylla://")]
    Scheme,
    /// No host was given, or a host is empty.
    #[error("store uri names no host (or an empty one)")]
    NoHost,
    /// A host's port is not a number in 1..=65535.
    #[error("bad port in store uri host {0:?}")]
    BadPort(String),
    /// The keyspace name is not a lowercase CQL identifier of at most 48 bytes.
    #[error("bad keyspace name {0:?}: use [a-z][a-z0-9_]*, at most 48 bytes")]
    BadKeyspace(String),
    /// An option is unknown.
    #[error("unknown store uri option {0:?}")]
    UnknownOption(String),
    /// An option appears twice.
    #[error("store uri option {0:?} given twice")]
    DuplicateOption(String),
    /// An option's value is invalid.
    #[error("bad value for store uri option {option}: {message}")]
    BadValue {
        /// The option.
        option: &'static str,
        /// What is wrong, lowercase.
        message: String,
    },
    /// Percent-encoding in the URI is malformed or not UTF-8.
    #[error("bad percent-encoding in store uri")]
    BadEncoding,
}

impl ScyllaConfig {
    /// Parses a `scylla://` URI; see the module documentation for its shape.
    ///
    /// Options: `dc`, `rf`, `replication`, `consistency`, `serial_consistency`,
    /// `request_timeout`, `connect_timeout`, `schema_agreement_timeout`, `speculative_retries`,
    /// `speculative_delay`, `username`, `password`, `tls`, `tls_ca`, `tls_cert`, `tls_key`,
    /// `tablets`. Durations use humantime syntax (`2s`, `250ms`). Values are percent-decoded.
    pub fn from_uri(uri: &str) -> Result<Self, ScyllaConfigError> {
        let rest = uri
            .strip_prefix("scylla://")
            .ok_or(ScyllaConfigError::Scheme)?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        // The password may contain '@' only percent-encoded, so the last '@' ends user info.
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut cfg = ScyllaConfig {
            hosts: parse_hosts(hosts)?,
            keyspace: parse_keyspace(&percent_decode(path)?)?,
            local_dc: None,
            replication: Replication::LocalDc { rf: None },
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            schema_agreement_timeout: DEFAULT_SCHEMA_AGREEMENT_TIMEOUT,
            speculative: Some(Speculative {
                max_retries: 1,
                delay: DEFAULT_SPECULATIVE_DELAY,
            }),
            credentials: None,
            tls: None,
            audit_retention: DEFAULT_AUDIT_RETENTION,
            disable_tablets: false,
        };
        if let Some(info) = userinfo {
            cfg.credentials = Some(parse_userinfo(info)?);
        }
        if let Some(query) = query {
            Options::parse(query)?.apply(&mut cfg)?;
        }
        Ok(cfg)
    }
}

impl FromStr for ScyllaConfig {
    type Err = ScyllaConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_uri(s)
    }
}

impl fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("hosts", &self.hosts)
            .field("keyspace", &self.keyspace)
            .field("local_dc", &self.local_dc)
            .field("replication", &self.replication)
            .field("consistency", &self.consistency)
            .field("serial_consistency", &self.serial_consistency)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("schema_agreement_timeout", &self.schema_agreement_timeout)
            .field("speculative", &self.speculative)
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .field("audit_retention", &self.audit_retention)
            .field("disable_tablets", &self.disable_tablets)
            .finish()
    }
}

/// The cluster as a URI safe for logs: hosts and keyspace, never credentials or options
/// (`scylla://h1:9042,h2:9042/sessiond`).
impl fmt::Display for ScyllaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scylla://{}/{}", self.hosts.join(","), self.keyspace)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn parse_hosts(s: &str) -> Result<Vec<String>, ScyllaConfigError> {
    let hosts = s
        .split(',')
        .map(|h| parse_host(h.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if hosts.is_empty() {
        return Err(ScyllaConfigError::NoHost);
    }
    Ok(hosts)
}

/// Normalises one host to `host:port`, keeping IPv6 literals bracketed.
fn parse_host(h: &str) -> Result<String, ScyllaConfigError> {
    if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ScyllaConfigError::NoHost);
    }
    let (name, port) = if let Some(v6) = h.strip_prefix('[') {
        let (addr, tail) = v6
            .split_once(']')
            .ok_or_else(|| ScyllaConfigError::BadPort(h.to_owned()))?;
        if addr.is_empty() {
            return Err(ScyllaConfigError::NoHost);
        }
        let port = match tail {
            "" => None,
            t => Some(
                t.strip_prefix(':')
                    .ok_or_else(|| ScyllaConfigError::BadPort(h.to_owned()))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match h.split_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (h.to_owned(), None),
        }
    };
    if name.is_empty() {
        return Err(ScyllaConfigError::NoHost);
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(ScyllaConfigError::BadPort(h.to_owned())),
        },
    };
    Ok(format!("{name}:{port}"))
}

/// Checks a keyspace name; the name is spliced into CQL text, so nothing but a plain
/// lowercase identifier is accepted.
fn parse_keyspace(s: &str) -> Result<String, ScyllaConfigError> {
    if s.is_empty() {
        return Ok(DEFAULT_KEYSPACE.to_owned());
    }
    let mut chars = s.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !starts_with_letter || !rest_ok || s.len() > MAX_KEYSPACE_LEN {
        return Err(ScyllaConfigError::BadKeyspace(s.to_owned()));
    }
    Ok(s.to_owned())
}

fn parse_userinfo(info: &str) -> Result<Credentials, ScyllaConfigError> {
    let (user, password) = info.split_once(':').unwrap_or((info, ""));
    let username = percent_decode(user)?;
    if username.is_empty() {
        return Err(ScyllaConfigError::BadValue {
            option: "username",
            message: "must not be empty".to_owned(),
        });
    }
    Ok(Credentials {
        username,
        password: percent_decode(password)?,
    })
}

/// The decoded `key=value` pairs of the query string, each key at most once.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(query: &str) -> Result<Self, ScyllaConfigError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = percent_decode(k)?;
            if pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(ScyllaConfigError::DuplicateOption(key));
            }
            pairs.push((key, percent_decode(v)?));
        }
        Ok(Self(pairs))
    }

    fn apply(self, cfg: &mut ScyllaConfig) -> Result<(), ScyllaConfigError> {
        let mut rf = None;
        let mut explicit = None;
        let mut spec_retries = 1usize;
        let mut spec_delay = DEFAULT_SPECULATIVE_DELAY;
        let mut username = None;
        let mut password = None;
        let mut tls_on = None;
        let (mut ca, mut cert, mut key) = (None, None, None);
        for (k, v) in self.0 {
            match k.as_str() {
                "dc" => cfg.local_dc = Some(parse_dc_name("dc", &v)?),
                "rf" => rf = Some(parse_rf("rf", &v)?),
                "replication" => explicit = Some(parse_replication(&v)?),
                "consistency" => cfg.consistency = parse_consistency(&v)?,
                "serial_consistency" => cfg.serial_consistency = parse_serial(&v)?,
                "request_timeout" => cfg.request_timeout = parse_duration("request_timeout", &v)?,
                "connect_timeout" => cfg.connect_timeout = parse_duration("connect_timeout", &v)?,
                "schema_agreement_timeout" => {
                    cfg.schema_agreement_timeout = parse_duration("schema_agreement_timeout", &v)?
                }
                "speculative_retries" => {
                    spec_retries = v.parse::<usize>().ok().filter(|n| *n <= 8).ok_or_else(|| {
                        bad("speculative_retries", "must be a whole number from 0 to 8")
                    })?
                }
                "speculative_delay" => spec_delay = parse_duration("speculative_delay", &v)?,
                "username" | "user" => username = Some(v),
                "password" => password = Some(v),
                "tls" => tls_on = Some(parse_bool("tls", &v)?),
                "tls_ca" => ca = Some(parse_path("tls_ca", v)?),
                "tls_cert" => cert = Some(parse_path("tls_cert", v)?),
                "tls_key" => key = Some(parse_path("tls_key", v)?),
                "tablets" => cfg.disable_tablets = !parse_bool("tablets", &v)?,
                _ => return Err(ScyllaConfigError::UnknownOption(k)),
            }
        }
        cfg.replication = match (explicit, rf) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "replication",
                    "give either replication or rf, not both",
                ));
            }
            (Some(list), None) => Replication::Explicit(list),
            (None, rf) => Replication::LocalDc { rf },
        };
        cfg.speculative = (spec_retries > 0).then_some(Speculative {
            max_retries: spec_retries,
            delay: spec_delay,
        });
        match (username, password, cfg.credentials.take()) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(bad(
                    "username",
                    "give credentials either as user info or as options",
                ));
            }
            (Some(username), password, None) if !username.is_empty() => {
                cfg.credentials = Some(Credentials {
                    username,
                    password: password.unwrap_or_default(),
                });
            }
            (Some(_), _, None) => return Err(bad("username", "must not be empty")),
            (None, Some(_), None) => return Err(bad("password", "needs a username")),
            (None, None, from_userinfo) => cfg.credentials = from_userinfo,
        }
        cfg.tls = tls_files(tls_on, ca, cert, key)?;
        Ok(())
    }
}

fn tls_files(
    on: Option<bool>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ScyllaConfigError> {
    let any_file = ca.is_some() || client_cert.is_some() || client_key.is_some();
    if on == Some(false) {
        if any_file {
            return Err(bad("tls", "tls=false contradicts the tls_* files given"));
        }
        return Ok(None);
    }
    if on.is_none() && !any_file {
        return Ok(None);
    }
    // No system trust store is consulted: a database's certificates come from its operator's
    // CA, and trusting every public CA would accept any certificate for the node's IP.
    let ca = ca.ok_or_else(|| bad("tls_ca", "is required with tls"))?;
    if client_cert.is_some() != client_key.is_some() {
        return Err(bad("tls_cert", "tls_cert and tls_key go together"));
    }
    Ok(Some(TlsFiles {
        ca,
        client_cert,
        client_key,
    }))
}

fn bad(option: &'static str, message: &str) -> ScyllaConfigError {
    ScyllaConfigError::BadValue {
        option,
        message: message.to_owned(),
    }
}

fn parse_dc_name(option: &'static str, v: &str) -> Result<String, ScyllaConfigError> {
    if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
        return Err(bad(option, "must be a non-empty data centre name"));
    }
    Ok(v.to_owned())
}

fn parse_rf(option: &'static str, v: &str) -> Result<u32, ScyllaConfigError> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_RF).contains(n))
        .ok_or_else(|| bad(option, "must be a whole number from 1 to 32"))
}

fn parse_replication(v: &str) -> Result<Vec<(String, u32)>, ScyllaConfigError> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for entry in v.split(',') {
        let (dc, rf) = entry
            .rsplit_once(':')
            .ok_or_else(|| bad("replication", "use dc1:3,dc2:3"))?;
        let dc = parse_dc_name("replication", dc.trim())?;
        if out.iter().any(|(seen, _)| *seen == dc) {
            return Err(bad("replication", "names a data centre twice"));
        }
        out.push((dc, parse_rf("replication", rf.trim())?));
    }
    Ok(out)
}

fn parse_consistency(v: &str) -> Result<Consistency, ScyllaConfigError> {
    Ok(match v.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        _ => {
            return Err(bad(
                "consistency",
                "use local_quorum, quorum, each_quorum, all, local_one, one, two, three or any",
            ));
        }
    })
}

fn parse_serial(v: &str) -> Result<SerialConsistency, ScyllaConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "local_serial" => Ok(SerialConsistency::LocalSerial),
        "serial" => Ok(SerialConsistency::Serial),
        _ => Err(bad("serial_consistency", "use local_serial or serial")),
    }
}

fn parse_duration(option: &'static str, v: &str) -> Result<Duration, ScyllaConfigError> {
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() && d <= Duration::from_secs(3600) => Ok(d),
        Ok(_) => Err(bad(option, "must be more than 0 and at most 1h")),
        Err(e) => Err(ScyllaConfigError::BadValue {
            option,
            message: e.to_string(),
        }),
    }
}

fn parse_bool(option: &'static str, v: &str) -> Result<bool, ScyllaConfigError> {
    match v {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" => Ok(false),
        _ => Err(bad(option, "use true or false")),
    }
}

fn parse_path(option: &'static str, v: String) -> Result<PathBuf, ScyllaConfigError> {
    if v.is_empty() {
        return Err(bad(option, "must be a file path"));
    }
    Ok(PathBuf::from(v))
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`, as in a URI path).
fn percent_decode(s: &str) -> Result<String, ScyllaConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(ScyllaConfigError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| ScyllaConfigError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ScyllaConfigError::BadEncoding)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ScyllaConfigError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), ScyllaConfigError>;

    fn parse(uri: &str) -> Result<ScyllaConfig, ScyllaConfigError> {
        ScyllaConfig::from_uri(uri)
    }

    #[test]
    fn minimal_uri_gets_the_documented_defaults() -> TestResult {
        let cfg = parse("scylla://db1")?;
        assert_eq!(cfg.hosts, vec!["db1:9042"]);
        assert_eq!(cfg.keyspace, "sessiond");
        assert_eq!(cfg.local_dc, None);
        assert_eq!(cfg.replication, Replication::LocalDc { rf: None });
        assert_eq!(cfg.consistency, Consistency::LocalQuorum);
        assert_eq!(cfg.serial_consistency, SerialConsistency::LocalSerial);
        assert_eq!(cfg.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(
            cfg.speculative,
            Some(Speculative {
                max_retries: 1,
                delay: DEFAULT_SPECULATIVE_DELAY
            })
        );
        assert_eq!(cfg.credentials, None);
        assert_eq!(cfg.tls, None);
        assert!(!cfg.disable_tablets);

        Ok(())
    }

    #[test]
    fn full_uri() -> TestResult {
        let cfg = parse(
            "scylla://app:p%40ss%3Aword@10.0.0.1:19042,db2,[::1]:9043,[fe80::2]/auth_ks?\
             dc=eu-west&rf=3&consistency=QUORUM&serial_consistency=serial&request_timeout=750ms&\
             connect_timeout=3s&speculative_retries=2&speculative_delay=20ms&\
             tls_ca=/etc/ca.pem&tls_cert=/etc/c.pem&tls_key=/etc/k.pem&tablets=false",
        )?;
        assert_eq!(
            cfg.hosts,
            vec!["10.0.0.1:19042", "db2:9042", "[::1]:9043", "[fe80::2]:9042"]
        );
        assert_eq!(cfg.keyspace, "auth_ks");
        assert_eq!(cfg.local_dc.as_deref(), Some("eu-west"));
        assert_eq!(cfg.replication, Replication::LocalDc { rf: Some(3) });
        assert_eq!(cfg.consistency, Consistency::Quorum);
        assert_eq!(cfg.serial_consistency, SerialConsistency::Serial);
        assert_eq!(cfg.request_timeout, Duration::from_millis(750));
        assert_eq!(cfg.connect_timeout, Duration::from_secs(3));
        assert_eq!(
            cfg.speculative,
            Some(Speculative {
                max_retries: 2,
                delay: Duration::from_millis(20)
            })
        );
        assert_eq!(
            cfg.credentials,
            Some(Credentials {
                username: "app".into(),
                password: "p@ss:word".into()
            })
        );
        assert_eq!(
            cfg.tls,
            Some(TlsFiles {
                ca: "/etc/ca.pem".into(),
                client_cert: Some("/etc/c.pem".into()),
                client_key: Some("/etc/k.pem".into()),
            })
        );
        assert!(cfg.disable_tablets);

        Ok(())
    }

    #[test]
    fn explicit_replication_and_option_credentials() -> TestResult {
        let cfg = parse(
            "scylla://h/?replication=dc1:3,dc2:5&username=u&password=%26x&speculative_retries=0",
        )?;
        assert_eq!(
            cfg.replication,
            Replication::Explicit(vec![("dc1".into(), 3), ("dc2".into(), 5)])
        );
        assert_eq!(
            cfg.credentials,
            Some(Credentials {
                username: "u".into(),
                password: "&x".into()
            })
        );
        assert_eq!(cfg.speculative, None);
        assert_eq!(cfg.keyspace, "sessiond");

        Ok(())
    }

    #[test]
    fn display_shows_hosts_and_keyspace_only() -> TestResult {
        for (uri, want) in [
            (
                "scylla://h1:9042,h2:9042/sessiond?tls_ca=/etc/ca.pem&username=app&password=s3cret",
                "scylla://h1:9042,h2:9042/sessiond",
            ),
            ("scylla://app:s3cret@h1/ks?dc=dc1", "scylla://h1:9042/ks"),
            (
                "scylla://h1?username=app&password=s3@cret/x?y",
                "scylla://h1:9042/sessiond",
            ),
            (
                "scylla://h1?username=app&password=s3%40cret",
                "scylla://h1:9042/sessiond",
            ),
        ] {
            let shown = parse(uri)?.to_string();
            assert_eq!(shown, want, "{uri}");
            assert!(!shown.contains("cret"), "{shown}");
        }
        Ok(())
    }

    #[test]
    fn debug_redacts_the_password() -> TestResult {
        let cfg = parse("scylla://u:hunter2@h")?;
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));

        Ok(())
    }

    #[test]
    fn rejects_bad_uris() {
        let cases = [
            ("http://h", ScyllaConfigError::Scheme),
            ("scylla://", ScyllaConfigError::NoHost),
            ("scylla://h1,,h2", ScyllaConfigError::NoHost),
            ("scylla://:9042", ScyllaConfigError::NoHost),
            ("scylla://h:0", ScyllaConfigError::BadPort("h:0".into())),
            (
                "scylla://h:99999",
                ScyllaConfigError::BadPort("h:99999".into()),
            ),
            ("scylla://[::1", ScyllaConfigError::BadPort("[::1".into())),
            (
                "scylla://h/Bad",
                ScyllaConfigError::BadKeyspace("Bad".into()),
            ),
            (
                "scylla://h/ks;drop",
                ScyllaConfigError::BadKeyspace("ks;drop".into()),
            ),
            (
                "scylla://h/1ks",
                ScyllaConfigError::BadKeyspace("1ks".into()),
            ),
            (
                "scylla://h?colour=red",
                ScyllaConfigError::UnknownOption("colour".into()),
            ),
            (
                "scylla://h?dc=a&dc=b",
                ScyllaConfigError::DuplicateOption("dc".into()),
            ),
            ("scylla://h?password=%zz", ScyllaConfigError::BadEncoding),
            ("scylla://h?password=%e2%28", ScyllaConfigError::BadEncoding),
        ];
        for (uri, want) in cases {
            assert_eq!(ScyllaConfig::from_uri(uri).err(), Some(want), "{uri}");
        }
        let bad_values = [
            "scylla://h?rf=0",
            "scylla://h?rf=x",
            "scylla://h?rf=2&replication=dc1:3",
            "scylla://h?replication=dc1",
            "scylla://h?replication=dc1:3,dc1:2",
            "scylla://h?consistency=most",
            "scylla://h?serial_consistency=quorum",
            "scylla://h?request_timeout=soon",
            "scylla://h?request_timeout=0s",
            "scylla://h?tls=true",
            "scylla://h?tls=false&tls_ca=/x",
            "scylla://h?tls_ca=/x&tls_cert=/c",
            "scylla://h?password=x",
            "scylla://u:p@h?username=v",
            "scylla://h?speculative_retries=100",
            "scylla://h?dc=",
        ];
        for uri in bad_values {
            assert!(
                matches!(
                    ScyllaConfig::from_uri(uri),
                    Err(ScyllaConfigError::BadValue { .. })
                ),
                "{uri}"
            );
        }
        assert!(ScyllaConfig::from_uri(&format!("scylla://h/{}", "k".repeat(49))).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = ScyllaConfig::from_uri(&s);
            let _ = ScyllaConfig::from_uri(&format!("scylla://{s}"));
        }

        #[test]
        fn hosts_round_trip(name in "[a-z][a-z0-9.-]{0,20}", port in 1u16..) {
            let cfg = ScyllaConfig::from_uri(&format!("scylla://{name}:{port}/ks"));
            proptest::prop_assert_eq!(cfg.map(|c| c.hosts), Ok(vec![format!("{name}:{port}")]));
        }
    }
}
