//! `spec.analysis`: metrics, judges and webhooks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the canary is judged at each analysis interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    /// Time between analysis runs, and each step's minimum time; `1m` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Failed checks that roll the canary back (Flagger's `threshold`); 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    /// Whether failed checks add up over the whole rollout or only in a row; `Cumulative`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_counting: Option<FailureCounting>,
    /// How often Prometheus scrapes the proxies' metrics; `30s` when absent. Query windows must
    /// cover at least two scrapes (`rate()` needs two samples) and the sequential judge measures
    /// at most once per scrape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
    /// How far behind the clock metrics are read; when absent `10s`, or the scrape interval
    /// when shorter. Prometheus stores a scrape's samples when the scrape ends, up to its
    /// timeout (10 s by default, never more than the interval) after the time they carry; remote storage (Thanos Receive, Mimir, Cortex) and query-side delays
    /// (VictoriaMetrics' `-search.latencyOffset`, 30 s) add theirs. At most `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_offset: Option<String>,
    /// What a metric with no data counts as; `Fail` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_data: Option<NoDataPolicy>,
    /// Inconclusive analysis runs in a row (no data under `noData: Inconclusive`, or a metric
    /// that cannot be queried) that roll the canary back; when absent the rollout holds at its
    /// step, never promoting without evidence, for as long as the evidence is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<i64>,
    /// The metrics checked at each run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Webhooks called at points of the rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
}

/// How failed checks are counted against `failureLimit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailureCounting {
    /// Every failed check counts, for the whole rollout.
    #[default]
    Cumulative,
    /// Only failed checks in a row count; a passed check resets the count.
    Consecutive,
}

/// What a metric that returns no data counts as. Never a pass unless it says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NoDataPolicy {
    /// A failed check.
    #[default]
    Fail,
    /// Neither pass nor fail: the step waits for the next run.
    Inconclusive,
    /// A passed check.
    Pass,
}

/// One metric: a builtin name (`request-success-rate`, `request-duration`) or a Prometheus
/// query, judged by a threshold range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metric {
    /// The metric's name; a builtin name when `prometheus` is absent.
    pub name: String,
    /// How the metric is judged; `threshold` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeKind>,
    /// The range a good value lies in (inclusive), for the threshold judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    /// Settings of the sequential judge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialSettings>,
    /// The query window (`{{ interval }}`); the analysis interval when absent; at least two
    /// scrapes. For the sequential judge: how often it measures, at least one scrape (the
    /// scrape interval when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// A custom Prometheus query instead of the builtin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQuery>,
}

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    /// The value must lie in `thresholdRange` at every analysis run.
    Threshold,
    /// The canary's error rate is compared with stable's as requests arrive (Wald's sequential
    /// probability ratio test), rolling back as soon as the evidence is strong enough.
    /// Only for `request-success-rate`.
    Sequential,
}

/// The sequential judge's error probabilities and the degradation it must catch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SequentialSettings {
    /// The probability of rolling back a canary that is no worse than stable; `0.01` when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    /// The probability of missing a canary that is `degradation` times worse; `0.05` when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// The smallest degradation worth catching: the canary's error rate as a multiple of
    /// stable's; `2` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degradation: Option<f64>,
}

/// An inclusive range; either bound may be absent, not both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThresholdRange {
    /// The smallest good value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest good value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

impl ThresholdRange {
    /// True when `value` lies within the range.
    pub fn contains(&self, value: f64) -> bool {
        self.min.is_none_or(|min| value >= min) && self.max.is_none_or(|max| value <= max)
    }
}

impl std::fmt::Display for ThresholdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(min), Some(max)) => write!(f, "[{min}, {max}]"),
            (Some(min), None) => write!(f, ">= {min}"),
            (None, Some(max)) => write!(f, "<= {max}"),
            (None, None) => write!(f, "any value"),
        }
    }
}

/// Where a metric is queried: a Prometheus server, and a custom query (a builtin metric needs
/// none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusQuery {
    /// The server, e.g. `http://prometheus:9090`; the controller's default server when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// PromQL, with `{{ namespace }}`, `{{ target }}` (the canary workload), `{{ stable }}`,
    /// `{{ service }}`, `{{ ingress }}`, `{{ route }}` (the Gateway API route),
    /// `{{ interval }}` and the `variables` filled in. Absent
    /// for a builtin metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Your own variables for the query, used as `{{ name }}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// A webhook: an HTTP POST at a point of the rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// A name for events and status.
    pub name: String,
    /// When it is called and what its answer means.
    #[serde(rename = "type")]
    pub hook_type: HookType,
    /// An `http` or `https` URL.
    pub url: String,
    /// How long one call may take; `60s` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Sent as `metadata` in the payload.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl HookType {
    /// The name as the spec writes it, e.g. `confirm-rollout`.
    pub fn name(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }

    /// True for the webhooks whose answers hold or fail the rollout outside analysis runs.
    pub fn is_gate(self) -> bool {
        matches!(
            self,
            HookType::ConfirmRollout
                | HookType::PreRollout
                | HookType::ConfirmTrafficIncrease
                | HookType::ConfirmPromotion
        )
    }
}

/// When a webhook is called, with Flagger's meanings.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum HookType {
    /// Before the rollout starts; it waits until the hook passes.
    ConfirmRollout,
    /// Before traffic reaches the canary; a failure is a failed check.
    PreRollout,
    /// At every analysis run; a failure is a failed check.
    Rollout,
    /// Before each weight increase; it waits until the hook passes.
    ConfirmTrafficIncrease,
    /// Before promotion; it waits until the hook passes.
    ConfirmPromotion,
    /// After the rollout ends, succeeded or failed; informational.
    PostRollout,
    /// At every analysis run; a pass rolls the canary back.
    Rollback,
    /// On every event; informational.
    Event,
}
