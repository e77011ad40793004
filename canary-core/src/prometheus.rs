//! Metrics from a Prometheus server: instant queries over its HTTP API.
//!
//! Builtin metrics are the provider's PromQL from [`crate::queries`]; custom ones are the
//! user's templates. An empty result, `NaN` or an infinity is no data (never a pass by
//! accident); several series are an error naming the query; HTTP and PromQL errors carry the
//! server's own message.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::Deserialize;

use crate::error::describe;
use crate::machine::{ErrorCounts, MetricOutcome};
use crate::plan::{MetricPlan, MetricQuery};
use crate::providers::{MetricProvider, QueryContext};
use crate::queries::{self, Version};

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
        let body = response
            .text()
            .await
            .map_err(|e| format!("Prometheus at {address}: {}", describe(&e)))?;
        let envelope: Envelope = serde_json::from_str(&body).map_err(|_| {
            let excerpt: String = body.chars().take(200).collect();
            format!("Prometheus at {address} answered {status}: {excerpt}")
        })?;
        if envelope.status != "success" {
            let kind = envelope.error_type.unwrap_or_else(|| "error".to_owned());
            let message = envelope.error.unwrap_or_else(|| status.to_string());
            return Err(format!("Prometheus at {address}: {kind}: {message}"));
        }
        let value = match envelope.data {
            Some(Data::Vector(samples)) => match samples.as_slice() {
                [] => return Ok(None),
                [sample] => sample.value.1.clone(),
                many => {
                    return Err(format!(
                        "the query returned {} series, not one: {query}",
                        many.len()
                    ));
                }
            },
            Some(Data::Scalar((_, value))) => value,
            Some(Data::Matrix(_)) => {
                return Err(format!(
                    "the query returned a range vector, not one value: {query}"
                ));
            }
            Some(Data::String(_)) | None => {
                return Err(format!("the query returned no number: {query}"));
            }
        };
        let value: f64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a number: {query}"))?;
        Ok(value.is_finite().then_some(value))
    }

    /// How much a cumulative counter grew in the window `context` ends at. A counter that went
    /// down (pods restarted) counts nothing for that window.
    async fn count(
        &self,
        address: &str,
        template: &str,
        vars: &BTreeMap<String, String>,
        context: &QueryContext,
    ) -> Result<u64, String> {
        let query = queries::render(template, vars)?;
        let start = context
            .at
            .checked_sub(context.window)
            .map_err(|e| e.to_string())?;
        let before = self.instant(address, &query, start).await?.unwrap_or(0.0);
        let after = self
            .instant(address, &query, context.at)
            .await?
            .unwrap_or(0.0);
        Ok((after - before).max(0.0).round() as u64)
    }

    async fn counts(
        &self,
        address: &str,
        context: &QueryContext,
        vars: &BTreeMap<String, String>,
    ) -> Result<ErrorCounts, String> {
        let (canary_requests, canary_errors) = queries::counts(context.provider, Version::Canary);
        let (stable_requests, stable_errors) = queries::counts(context.provider, Version::Stable);
        Ok(ErrorCounts {
            canary_requests: self.count(address, &canary_requests, vars, context).await?,
            canary_errors: self.count(address, &canary_errors, vars, context).await?,
            stable_requests: self.count(address, &stable_requests, vars, context).await?,
            stable_errors: self.count(address, &stable_errors, vars, context).await?,
        })
    }
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
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}
