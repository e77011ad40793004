//! The threshold judge: one metric outcome against its range and the no-data policy.

use super::MetricOutcome;
use crate::plan::MetricPlan;
use crate::spec::NoDataPolicy;
use crate::status::Verdict;

/// Judges one metric outcome (`None` when the shell returned none for the metric, which counts
/// as no data). Returns the value, the verdict and, unless it passed, why.
///
/// ```
/// use canary_core::machine::{judge, MetricOutcome};
/// use canary_core::plan::{BuiltinMetric, MetricPlan, MetricQuery};
/// use canary_core::spec::{NoDataPolicy, ThresholdRange};
/// use canary_core::Verdict;
///
/// let metric = MetricPlan {
///     name: "request-success-rate".into(),
///     window: jiff::SignedDuration::from_mins(1),
///     range: ThresholdRange { min: Some(99.0), max: None },
///     query: MetricQuery::Builtin(BuiltinMetric::RequestSuccessRate),
/// };
/// let (_, verdict, why) = judge(&metric, Some(&MetricOutcome::Value(95.0)), NoDataPolicy::Fail);
/// assert_eq!(verdict, Verdict::Fail);
/// assert_eq!(why, "95 is outside >= 99");
/// ```
pub fn judge(
    metric: &MetricPlan,
    outcome: Option<&MetricOutcome>,
    no_data: NoDataPolicy,
) -> (Option<f64>, Verdict, String) {
    match outcome {
        Some(MetricOutcome::Value(value)) if value.is_finite() => {
            if metric.range.contains(*value) {
                (Some(*value), Verdict::Pass, String::new())
            } else {
                (
                    Some(*value),
                    Verdict::Fail,
                    format!("{} is outside {}", round(*value), metric.range),
                )
            }
        }
        Some(MetricOutcome::Error(message)) => (
            None,
            Verdict::Inconclusive,
            format!("query failed: {message}"),
        ),
        Some(MetricOutcome::Value(_) | MetricOutcome::NoData) | None => {
            let verdict = match no_data {
                NoDataPolicy::Fail => Verdict::Fail,
                NoDataPolicy::Inconclusive => Verdict::Inconclusive,
                NoDataPolicy::Pass => Verdict::Pass,
            };
            (None, verdict, "no data".to_owned())
        }
    }
}

/// Rounds to at most 3 decimals for messages.
fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
