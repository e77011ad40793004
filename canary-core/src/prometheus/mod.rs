//! Metrics from a Prometheus server over its HTTP API.
//!
//! Builtin metrics are the provider's PromQL from [`crate::queries`]; custom ones are the
//! user's templates. An empty result, `NaN` or an infinity is no data (never a pass by
//! accident); several series are an error naming the query; HTTP and PromQL errors carry the
//! server's own message.
//!
//! The sequential judge's counts are not PromQL arithmetic: the raw samples of both versions'
//! request counters are read over the window plus a lookback, at one instant, and each series'
//! growth is counted by [`increments::count`]. That instant trails the judge's clock by
//! [`settle`], so every scrape stamped before it has been stored when it is read, and
//! consecutive windows add up exactly.

pub mod increments;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::error::describe;
use crate::machine::{ErrorCounts, MetricOutcome};
use crate::plan::{MetricPlan, MetricQuery};
use crate::providers::{MetricProvider, QueryContext};
use crate::queries::{self, Version};
use increments::{CounterSeries, count};

/// How far before a window's start the judge looks for each series' previous sample: as far as
/// Prometheus' own instant queries look back (`--query.lookback-delta`, 5 minutes by default),
/// so missed scrapes are bridged and a series silent for longer is treated as gone.
pub const LOOKBACK: SignedDuration = SignedDuration::from_mins(5);

/// The largest answer read from Prometheus; a larger one is an error, never read whole.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How long the judge's windows trail its clock: a scrape's samples carry the time it started
/// and are stored when it ends, up to its timeout later (10 s by default, and never more than
/// the scrape interval).
pub fn settle(scrape_interval: SignedDuration) -> SignedDuration {
    scrape_interval.min(SignedDuration::from_secs(10))
}

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
/// use canary_core::prometheus::{Auth, PrometheusMetrics};
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
    /// [`client_trusting`] with the `rustls` feature). Queries time out after 10 s.
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
        let value: f64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a number: {query}"))?;
        Ok(value.is_finite().then_some(value))
    }

    /// The raw samples of the series `selector` matches over `range` up to `at`, each with its
    /// scrape target and whether its `code_label` is a server error.
    pub async fn counter_series(
        &self,
        address: &str,
        selector: &str,
        code_label: &str,
        range: SignedDuration,
        at: Timestamp,
    ) -> Result<Vec<CounterSeries>, String> {
        let query = format!("{selector}[{}s]", range.as_secs().max(1));
        let Data::Matrix(series) = self.query(address, &query, at).await? else {
            return Err(format!("the query returned no range vector: {query}"));
        };
        series
            .into_iter()
            .map(|s| {
                let target = match (s.metric.get("job"), s.metric.get("instance")) {
                    (_, None) => None,
                    (job, Some(instance)) => {
                        Some(format!("{}/{instance}", job.map_or("", String::as_str)))
                    }
                };
                let error = s
                    .metric
                    .get(code_label)
                    .is_some_and(|code| is_server_error(code));
                let samples = s
                    .values
                    .into_iter()
                    .map(|(t, v)| {
                        v.parse::<f64>()
                            .map(|v| (t, v))
                            .map_err(|_| format!("`{v}` is not a number: {query}"))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(CounterSeries {
                    target,
                    error,
                    samples,
                })
            })
            .collect()
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
        let body = read_capped(response)
            .await
            .map_err(|e| format!("Prometheus at {address}: {e}"))?;
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|_| {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            format!("Prometheus at {address} answered {status}: {excerpt}")
        })?;
        if envelope.status != "success" {
            let kind = envelope.error_type.unwrap_or_else(|| "error".to_owned());
            let message = envelope.error.unwrap_or_else(|| status.to_string());
            return Err(format!("Prometheus at {address}: {kind}: {message}"));
        }
        envelope
            .data
            .ok_or_else(|| format!("the query returned no data field: {query}"))
    }

    /// Both versions' requests and errors in the window `context` ends at, read at one
    /// instant [`settle`] before it.
    async fn counts(
        &self,
        address: &str,
        context: &QueryContext,
        vars: &BTreeMap<String, String>,
    ) -> Result<ErrorCounts, String> {
        let end = context
            .at
            .checked_sub(settle(context.scrape_interval))
            .map_err(|e| e.to_string())?;
        let end_secs = end.as_millisecond() as f64 / 1000.0;
        let start_secs = end_secs - context.window.as_millis() as f64 / 1000.0;
        let range = context.window.saturating_add(LOOKBACK);
        let mut counted = [increments::Counted::default(); 2];
        for (slot, version) in counted.iter_mut().zip([Version::Canary, Version::Stable]) {
            let series = queries::counted_series(context.provider, version);
            let selector = queries::render(&series.selector, vars)?;
            let samples = self
                .counter_series(address, &selector, series.code_label, range, end)
                .await?;
            *slot = count(&samples, start_secs, end_secs);
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

/// An HTTP status code `5xx`.
fn is_server_error(code: &str) -> bool {
    code.len() == 3 && code.starts_with('5') && code.bytes().all(|b| b.is_ascii_digit())
}

/// Reads a body of at most [`MAX_ANSWER_BYTES`], refusing a longer one before reading it.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_long = || format!("the answer is longer than {MAX_ANSWER_BYTES} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
            MetricQuery::Builtin(builtin) => (queries::builtin(context.provider, *builtin), &empty),
            MetricQuery::Custom { query, variables } => (query.clone(), variables),
        };
        let vars = queries::variables(context, extra);
        if metric.is_sequential() {
            return match self.counts(address, context, &vars).await {
                Ok(counts) => MetricOutcome::Counts(counts),
                Err(message) => MetricOutcome::Error(message),
            };
        }
        let outcome = match queries::render(&template, &vars) {
            Ok(query) => self.instant(address, &query, context.at).await,
            Err(message) => Err(message),
        };
        match outcome {
            Ok(Some(value)) => MetricOutcome::Value(value),
            Ok(None) => MetricOutcome::NoData,
            Err(message) => MetricOutcome::Error(message),
        }
    }
}

/// An HTTP client that trusts the CA certificates in `pem` besides the system's.
#[cfg(feature = "rustls")]
pub fn client_trusting(pem: &[u8]) -> Result<reqwest::Client, String> {
    let certificates = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certificates.is_empty() {
        return Err("no PEM certificate in the bundle".to_owned());
    }
    reqwest::Client::builder()
        .tls_certs_merge(certificates)
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
    value: (f64, String),
}
