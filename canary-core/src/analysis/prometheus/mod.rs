//! Metrics from a Prometheus server over its HTTP API.
//!
//! Builtin metrics are the provider's PromQL from [`crate::analysis::queries`]; custom ones are the
//! user's templates. An empty result, `NaN` or an infinity is no data (never a pass by
//! accident); several series are an error naming the query; HTTP and PromQL errors carry the
//! server's own message.
//!
//! Every query is evaluated `queryOffset` (10 s by default) behind the engine's clock, so every
//! scrape stamped before that instant has been stored when it is read: a threshold window of
//! two scrapes then holds two samples of each series, and consecutive windows of the sequential
//! judge add up exactly.
//!
//! The sequential judge's counts are not PromQL arithmetic: for both versions' request counters,
//! each series' last value before the window and its raw samples in it are read, and each
//! series' growth is counted by [`increments::count`]. A window longer than [`MAX_COUNTED`]
//! (after an outage of Prometheus or of the controller) counts only its latest part, so an
//! answer never grows without bound; what is left out is lost, never lumped.

pub mod increments;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::analysis::http::{excerpt, read_capped};
use crate::analysis::queries::{self, Version};
use crate::api::plan::{MetricPlan, MetricQuery};
use crate::engine::machine::{ErrorCounts, MetricOutcome};
use crate::engine::providers::{MetricProvider, QueryContext};
use crate::error::describe;
use increments::{CounterSeries, count};

/// How far before a window's start the judge looks for each series' previous value: as far as
/// Prometheus' own instant queries look back (`--query.lookback-delta`, 5 minutes by default),
/// and at least three scrapes, so missed scrapes are bridged and a series silent for longer is
/// treated as gone.
pub fn lookback(scrape_interval: SignedDuration) -> SignedDuration {
    SignedDuration::from_mins(5).max(scrape_interval.saturating_mul(3))
}

/// The longest window the sequential judge counts at once.
pub const MAX_COUNTED: SignedDuration = SignedDuration::from_mins(15);

/// The largest answer read from Prometheus; a larger one is an error, never read whole.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Credentials for a Prometheus server.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(…)"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, …)"),
        }
    }
}

/// A [`MetricProvider`] asking Prometheus servers.
///
/// ```no_run
/// use canary_core::analysis::prometheus::{Auth, PrometheusMetrics};
/// let metrics = PrometheusMetrics::new(reqwest::Client::new())
///     .with_default_address("http://prometheus.monitoring:9090")
///     .with_auth("http://prometheus.monitoring:9090", Auth::Bearer("token".into()))
///     .with_timeout(std::time::Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct PrometheusMetrics {
    http: reqwest::Client,
    default_address: Option<String>,
    auth: BTreeMap<String, Auth>,
    timeout: Duration,
}

impl PrometheusMetrics {
    /// Queries through `http` (configure TLS, proxies and CAs there; see
    /// [`client_trusting`] with the `rustls` feature). Build it with
    /// `redirect(reqwest::redirect::Policy::none())`: a followed redirect would reach an address
    /// the controller never checked. Queries time out after 10 s.
    pub fn new(http: reqwest::Client) -> Self {
        PrometheusMetrics {
            http,
            default_address: None,
            auth: BTreeMap::new(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The server for metrics whose spec names none.
    pub fn with_default_address(mut self, address: impl Into<String>) -> Self {
        self.default_address = Some(address.into());
        self
    }

    /// Credentials for the server at `address`.
    pub fn with_auth(mut self, address: impl Into<String>, auth: Auth) -> Self {
        self.auth.insert(address.into(), auth);
        self
    }

    /// How long one query may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs an instant query at `at`: `Ok(None)` for no data (empty, `NaN`, infinite).
    pub async fn instant(
        &self,
        address: &str,
        query: &str,
        at: Timestamp,
    ) -> Result<Option<f64>, String> {
        let value = match self.query(address, query, at).await? {
            Data::Vector(samples) => match samples.as_slice() {
                [] => return Ok(None),
                [sample] => sample.value.1.clone(),
                many => {
                    return Err(format!(
                        "the query returned {} series, not one: {query}",
                        many.len()
                    ));
                }
            },
            Data::Scalar((_, value)) => value,
            Data::Matrix(_) => {
                return Err(format!(
                    "the query returned a range vector, not one value: {query}"
                ));
            }
            Data::String(_) => return Err(format!("the query returned no number: {query}")),
        };
        let value = number(&value, query)?;
        Ok(value.is_finite().then_some(value))
    }

    /// Each series `selector` matches: its last value at or before `start` (within the lookback)
    /// and its samples in `(start, end]`, with its scrape target and whether its `code_label` is
    /// a server error.
    pub async fn counter_series(
        &self,
        address: &str,
        selector: &str,
        code_label: &str,
        lookback: SignedDuration,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<CounterSeries>, String> {
        let before_query = format!("last_over_time({selector}[{}s])", lookback.as_secs().max(1));
        let Data::Vector(before) = self.query(address, &before_query, start).await? else {
            return Err(format!(
                "the query returned no instant vector: {before_query}"
            ));
        };
        let before = before
            .into_iter()
            .map(|sample| {
                let value = number(&sample.value.1, &before_query)?;
                Ok((identity(sample.metric), value))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let window_ms = end.as_millisecond() - start.as_millisecond();
        let window_query = format!("{selector}[{}ms]", window_ms.max(1));
        let Data::Matrix(window) = self.query(address, &window_query, end).await? else {
            return Err(format!(
                "the query returned no range vector: {window_query}"
            ));
        };
        let start_ms = start.as_millisecond();
        let window = window
            .into_iter()
            .map(|series| {
                let samples = series
                    .values
                    .iter()
                    .map(|(t, v)| Ok(((t * 1000.0).round() as i64, number(v, &window_query)?)))
                    // A sample at the start itself is the last one before the window.
                    .filter(|sample| sample.as_ref().map_or(true, |(t, _)| *t > start_ms))
                    .collect::<Result<Vec<_>, String>>()?;
                Ok((identity(series.metric), samples))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(increments::join(before, window, |labels| {
            let target = labels.get("instance").map(|instance| {
                format!(
                    "{}/{instance}",
                    labels.get("job").map_or("", String::as_str)
                )
            });
            let error = labels
                .get(code_label)
                .is_some_and(|code| is_server_error(code));
            (target, error)
        }))
    }

    /// Asks `address` for `query` at `at`.
    async fn query(&self, address: &str, query: &str, at: Timestamp) -> Result<Data, String> {
        let url = format!("{}/api/v1/query", address.trim_end_matches('/'));
        let time = format!("{}.{:03}", at.as_second(), at.subsec_millisecond());
        let mut request = self
            .http
            .get(&url)
            .query(&[("query", query), ("time", time.as_str())])
            .timeout(self.timeout);
        match self.auth.get(address) {
            Some(Auth::Bearer(token)) => request = request.bearer_auth(token),
            Some(Auth::Basic { username, password }) => {
                request = request.basic_auth(username, Some(password))
            }
            None => {}
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                format!(
                    "Prometheus at {address} did not answer within {:?}",
                    self.timeout
                )
            } else {
                format!("cannot reach Prometheus at {address}: {}", describe(&error))
            }
        })?;
        let status = response.status();
        let body = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| format!("Prometheus at {address}: {e}"))?;
        // The body is never quoted: whatever answers at an address (a metadata service, an
        // internal API) must not see its answer copied into a Rollout's status and events.
        // Only Prometheus' own error fields are, shortened.
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|_| {
            format!(
                "Prometheus at {address} answered {status} with {} bytes that are not a \
                 Prometheus API answer",
                body.len()
            )
        })?;
        if envelope.status != "success" {
            let kind = envelope.error_type.unwrap_or_else(|| "error".to_owned());
            let message = envelope.error.unwrap_or_else(|| status.to_string());
            return Err(format!(
                "Prometheus at {address}: {}: {}",
                excerpt(&kind, 40),
                excerpt(&message, 300)
            ));
        }
        envelope
            .data
            .ok_or_else(|| format!("the query returned no data field: {query}"))
    }

    /// Both versions' requests and errors in the window `context` ends at, read
    /// `queryOffset` behind it.
    async fn counts(
        &self,
        address: &str,
        context: &QueryContext,
        vars: &BTreeMap<String, String>,
    ) -> Result<ErrorCounts, String> {
        let end = context.read_at()?;
        let start = end
            .checked_sub(context.window.min(MAX_COUNTED))
            .map_err(|e| e.to_string())?;
        let lookback = lookback(context.scrape_interval);
        let mut counted = [increments::Counted::default(); 2];
        let mut newest = None;
        let mut any = false;
        for (slot, version) in counted.iter_mut().zip([Version::Canary, Version::Stable]) {
            let series = queries::counted_series(family(context)?, version);
            let selector = queries::render(&series.selector, vars)?;
            let found = self
                .counter_series(address, &selector, series.code_label, lookback, start, end)
                .await?;
            any |= !found.is_empty();
            newest = newest.max(increments::newest(&found));
            *slot = count(&found);
        }
        // Every live target is scraped once a scrape interval: nothing newer than that means
        // Prometheus has not stored the window yet (or no target could be scraped). Counting it
        // as nothing would lose it for good; an error keeps the window for the next try.
        let fresh = end
            .as_millisecond()
            .saturating_sub(context.scrape_interval.as_millis() as i64)
            .saturating_sub(FRESHNESS_SLACK_MS);
        if any && newest.is_none_or(|newest| newest < fresh) {
            return Err(format!(
                "Prometheus has no request counts newer than {}s before {end}: its targets are \
                 not being scraped, or it stores samples late (remote write, a query-side \
                 delay): raise spec.analysis.queryOffset",
                (end.as_millisecond() - newest.unwrap_or(start.as_millisecond())) / 1000
            ));
        }
        let [canary, stable] = counted;
        Ok(ErrorCounts {
            canary_requests: canary.requests,
            canary_errors: canary.errors,
            stable_requests: stable.requests,
            stable_errors: stable.errors,
        })
    }
}

/// Scrape jitter allowed before a window counts as not yet stored.
const FRESHNESS_SLACK_MS: i64 = 2_000;

/// A sample's value.
fn number(text: &str, query: &str) -> Result<f64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number: {query}"))
}

/// A series' labels without its metric name (which Prometheus' functions drop).
fn identity(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.remove("__name__");
    labels
}

/// An HTTP status code `5xx`.
fn is_server_error(code: &str) -> bool {
    code.len() == 3 && code.starts_with('5') && code.bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl MetricProvider for PrometheusMetrics {
    async fn measure(&self, metric: &MetricPlan, context: &QueryContext) -> MetricOutcome {
        let Some(address) = metric
            .address
            .as_deref()
            .or(self.default_address.as_deref())
        else {
            return MetricOutcome::Error(format!(
                "no Prometheus server for `{}`: set prometheus.address or a default server",
                metric.name
            ));
        };
        let empty = BTreeMap::new();
        let (template, extra) = match &metric.query {
            MetricQuery::Builtin(builtin) => match family(context) {
                Ok(family) => (queries::builtin(family, *builtin), &empty),
                Err(message) => return MetricOutcome::Error(message),
            },
            MetricQuery::Custom { query, variables } => (query.clone(), variables),
        };
        let vars = queries::variables(context, extra);
        if metric.is_sequential() {
            return match self.counts(address, context, &vars).await {
                Ok(counts) => MetricOutcome::Counts(counts),
                Err(message) => MetricOutcome::Error(message),
            };
        }
        let outcome = match (queries::render(&template, &vars), context.read_at()) {
            (Ok(query), Ok(at)) => self.instant(address, &query, at).await,
            (Err(message), _) | (_, Err(message)) => Err(message),
        };
        match outcome {
            Ok(Some(value)) => MetricOutcome::Value(value),
            Ok(None) => MetricOutcome::NoData,
            Err(message) => MetricOutcome::Error(message),
        }
    }
}

/// An HTTP client that trusts the CA certificates in `pem` besides the system's, and never
/// follows a redirect (an allowed address must not send a request elsewhere; see
/// [`crate::analysis::destinations`]).
#[cfg(feature = "rustls")]
pub fn client_trusting(pem: &[u8]) -> Result<reqwest::Client, String> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certificates.is_empty() {
        return Err("no PEM certificate in the bundle".to_owned());
    }
    reqwest::Client::builder()
        .tls_certs_merge(certificates)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(Vec<RangeSeries>),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct RangeSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The traffic provider's metric family, which builtin metrics and request counts need.
fn family(context: &QueryContext) -> Result<&queries::MetricFamily, String> {
    context.metrics.as_ref().ok_or_else(|| {
        "the traffic provider has no metric family: builtin metrics and sequential judges \
         need one (use a custom query)"
            .to_owned()
    })
}
