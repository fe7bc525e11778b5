//! `GET /admin/api/stats`: what `/metrics` knows, as a small JSON document a console can poll
//! and chart: gRPC calls per second by RPC, live sessions, the validation caches' hit ratios and
//! the revocation feed's lag.
//!
//! Counts are read from the same Prometheus recorder that `/metrics` renders (its text, for the
//! recorder offers no other read), so the two never disagree. The recorder is one per process:
//! several servers in one process (a test binary) share its counts. Rates need two readings;
//! [`Sampler`] keeps a few timed readings of the call counters, taken as stats are asked for
//! (no task of its own), and answers the rate since the newest reading at least
//! [`MIN_WINDOW`] old, so a console polling every second or two sees current rates and the
//! answer says over which window it was taken.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::telemetry::prometheus::{CACHE_REQUESTS, GRPC_REQUESTS};

/// The shortest window a rate is taken over.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);

/// Most readings kept; with one reading a second at most, a few seconds of history.
const MAX_SAMPLES: usize = 8;

/// Call counts by `service/method`.
type Calls = BTreeMap<String, u64>;

/// The answer of `GET /admin/api/stats`, in the lowerCamelCase of the rest of the API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// When it was taken (RFC 3339, UTC).
    pub at: String,
    /// The window the rates were taken over, in seconds (0 on a server's first answer).
    pub window_seconds: f64,
    /// gRPC calls per second by `service/method`, every status code counted; RPCs with no
    /// call in the window are left out.
    pub calls_per_second: BTreeMap<String, f64>,
    /// The sum of `calls_per_second`.
    pub total_calls_per_second: f64,
    /// Sessions the store holds (approximate: revoked and expired ones count until swept);
    /// left out for a backend that cannot count them cheaply or when the store did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_sessions: Option<u64>,
    /// Hits over lookups since the process started, by cache (`tokens`, `sessions`,
    /// `users`); a cache without lookups is left out.
    pub cache_hit_ratio: BTreeMap<String, f64>,
    /// Seconds since the revocation feed was last read.
    pub revocation_feed_lag_seconds: f64,
}

/// Timed readings of the call counters, for rates.
pub struct Sampler {
    samples: Mutex<VecDeque<(Instant, Calls)>>,
}

impl Sampler {
    /// A sampler whose first reading is taken now, so the first answer has a window.
    pub fn new(metrics: Option<&PrometheusHandle>) -> Self {
        let calls = metrics.map(|m| read(&m.render()).0).unwrap_or_default();
        Self {
            samples: Mutex::new(VecDeque::from([(Instant::now(), calls)])),
        }
    }

    /// Rates of `calls` (read at `now`) per second since the newest reading at least
    /// [`MIN_WINDOW`] old (or the oldest kept), and that window; keeps `calls` as a reading
    /// when the newest is [`MIN_WINDOW`] old.
    fn rates(&self, now: Instant, calls: &Calls) -> (Duration, BTreeMap<String, f64>) {
        let Ok(mut samples) = self.samples.lock() else {
            // Poisoned only by a panic inside this function, which has none; no rates then.
            return (Duration::ZERO, BTreeMap::new());
        };
        let reference = samples
            .iter()
            .rev()
            .find(|(at, _)| now.saturating_duration_since(*at) >= MIN_WINDOW)
            .or_else(|| samples.front());
        let (window, rates) = match reference {
            Some((at, before)) => {
                let window = now.saturating_duration_since(*at);
                (window, per_second(before, calls, window))
            }
            None => (Duration::ZERO, BTreeMap::new()),
        };
        let newest_age = samples
            .back()
            .map(|(at, _)| now.saturating_duration_since(*at));
        if newest_age.is_none_or(|age| age >= MIN_WINDOW) {
            samples.push_back((now, calls.clone()));
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
        }
        (window, rates)
    }

    /// Everything `/metrics` says that the stats show, taken now.
    pub fn take(
        &self,
        metrics: Option<&PrometheusHandle>,
        live_sessions: Option<u64>,
        revocation_feed_lag: Duration,
    ) -> Stats {
        let (calls, cache_hit_ratio) = metrics.map(|m| read(&m.render())).unwrap_or_default();
        let (window, calls_per_second) = self.rates(Instant::now(), &calls);
        let at = prost_types::Timestamp::from(std::time::SystemTime::now()).to_string();
        Stats {
            at,
            window_seconds: window.as_secs_f64(),
            total_calls_per_second: calls_per_second.values().fold(0.0, |sum, rate| sum + rate),
            calls_per_second,
            live_sessions,
            cache_hit_ratio,
            revocation_feed_lag_seconds: revocation_feed_lag.as_secs_f64(),
        }
    }
}

fn per_second(before: &Calls, now: &Calls, window: Duration) -> BTreeMap<String, f64> {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        return BTreeMap::new();
    }
    now.iter()
        .filter_map(|(rpc, &count)| {
            let delta = count.saturating_sub(before.get(rpc).copied().unwrap_or(0));
            (delta > 0).then(|| (rpc.clone(), delta as f64 / secs))
        })
        .collect()
}

/// The call counts by `service/method` and the cache hit ratios in a Prometheus text
/// rendering.
fn read(text: &str) -> (Calls, BTreeMap<String, f64>) {
    let mut calls = Calls::new();
    let mut lookups: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (name, labels, value) in text.lines().filter_map(sample) {
        if name == GRPC_REQUESTS {
            let (Some(service), Some(method)) = (label(labels, "service"), label(labels, "method"))
            else {
                continue;
            };
            // Counters are whole numbers, rendered as such.
            *calls.entry(format!("{service}/{method}")).or_default() += value as u64;
        } else if name == CACHE_REQUESTS {
            let (Some(cache), Some(result)) = (label(labels, "cache"), label(labels, "result"))
            else {
                continue;
            };
            let entry = lookups.entry(cache.to_owned()).or_default();
            match result {
                "hit" => entry.0 += value,
                "miss" => entry.1 += value,
                _ => {}
            }
        }
    }
    let ratios = lookups
        .into_iter()
        .filter(|(_, (hits, misses))| hits + misses > 0.0)
        .map(|(cache, (hits, misses))| (cache, hits / (hits + misses)))
        .collect();
    (calls, ratios)
}

/// One sample line, `name{labels} value`, as `(name, labels, value)`; `None` for comments and
/// anything else.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.parse().ok()?;
    match series.split_once('{') {
        Some((name, labels)) => Some((name, labels.strip_suffix('}')?, value)),
        None => Some((series, "", value)),
    }
}

/// The value of label `key` in `a="x",b="y"`. sessiond's own label values are identifiers
/// (method, cache and result names), never holding quotes or commas.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP sessiond_grpc_requests_total gRPC requests\n\
# TYPE sessiond_grpc_requests_total counter\n\
sessiond_grpc_requests_total{service=\"sessiond.v1.SessionService\",method=\"Validate\",code=\"OK\"} 40\n\
sessiond_grpc_requests_total{service=\"sessiond.v1.SessionService\",method=\"Validate\",code=\"UNAUTHENTICATED\"} 2\n\
sessiond_grpc_requests_total{service=\"sessiond.v1.SessionService\",method=\"Issue\",code=\"OK\"} 5\n\
sessiond_cache_requests_total{cache=\"tokens\",result=\"hit\"} 30\n\
sessiond_cache_requests_total{cache=\"tokens\",result=\"miss\"} 10\n\
sessiond_cache_requests_total{cache=\"users\",result=\"miss\"} 0\n\
sessiond_live_sessions 7\n";

    #[test]
    fn reads_calls_and_hit_ratios() {
        let (calls, ratios) = read(TEXT);
        assert_eq!(calls.get("sessiond.v1.SessionService/Validate"), Some(&42));
        assert_eq!(calls.get("sessiond.v1.SessionService/Issue"), Some(&5));
        assert_eq!(calls.len(), 2);
        assert_eq!(ratios.get("tokens"), Some(&0.75));
        assert!(!ratios.contains_key("users"), "no lookups, no ratio");
    }

    #[test]
    fn rates_come_from_a_reading_at_least_a_window_old() {
        let sampler = Sampler::new(None);
        let start = Instant::now();
        let calls = |n: u64| Calls::from([("s/Validate".to_owned(), n)]);
        // Two seconds after the (empty) first reading: 100 calls in 2 s.
        let (window, rates) = sampler.rates(start + Duration::from_secs(2), &calls(100));
        assert!(window >= Duration::from_secs(2));
        let rate = rates.get("s/Validate").copied().unwrap_or_default();
        assert!((45.0..=50.0).contains(&rate), "{rate}");
        // Half a second later the reference stays the first reading; no new reading is kept.
        let (_, rates) = sampler.rates(start + Duration::from_millis(2500), &calls(150));
        let rate = rates.get("s/Validate").copied().unwrap_or_default();
        assert!((55.0..=60.0).contains(&rate), "{rate}");
        // A second after the second reading, the rate is over that last second.
        let (window, rates) = sampler.rates(start + Duration::from_secs(3), &calls(130));
        assert!(window <= Duration::from_millis(1001), "{window:?}");
        let rate = rates.get("s/Validate").copied().unwrap_or_default();
        assert!((29.0..=31.0).contains(&rate), "{rate}");
    }

    #[test]
    fn readings_are_bounded() {
        let sampler = Sampler::new(None);
        let start = Instant::now();
        for i in 0..100 {
            sampler.rates(start + Duration::from_secs(i + 1), &Calls::new());
        }
        assert_eq!(
            sampler.samples.lock().map(|s| s.len()).ok(),
            Some(MAX_SAMPLES)
        );
    }

    #[test]
    fn unparseable_lines_are_skipped() {
        let (calls, ratios) = read("garbage\nsessiond_grpc_requests_total{service=\"a\"} x\n");
        assert!(calls.is_empty());
        assert!(ratios.is_empty());
    }
}
