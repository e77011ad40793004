//! The threshold judge: one metric outcome against its range and the no-data policy.

use super::MetricOutcome;
use crate::api::spec::{NoDataPolicy, ThresholdRange};
use crate::engine::status::Verdict;

/// Judges one metric outcome against a range (`None` when the shell returned none for the
/// metric, which counts as no data). Returns the value, the verdict and, unless it passed, why.
///
/// ```
/// use canary_core::engine::machine::{judge, MetricOutcome};
/// use canary_core::api::spec::{NoDataPolicy, ThresholdRange};
/// use canary_core::Verdict;
///
/// let range = ThresholdRange { min: Some(99.0), max: None };
/// let (_, verdict, why) = judge(&range, Some(&MetricOutcome::Value(95.0)), NoDataPolicy::Fail);
/// assert_eq!(verdict, Verdict::Fail);
/// assert_eq!(why, "95 is outside >= 99");
/// ```
pub fn judge(
    range: &ThresholdRange,
    outcome: Option<&MetricOutcome>,
    no_data: NoDataPolicy,
) -> (Option<f64>, Verdict, String) {
    match outcome {
        Some(MetricOutcome::Value(value)) if value.is_finite() => {
            if range.contains(*value) {
                (Some(*value), Verdict::Pass, String::new())
            } else {
                let why = format!("{} is outside {range}", round(*value));
                (Some(*value), Verdict::Fail, why)
            }
        }
        Some(MetricOutcome::Error(message)) => (
            None,
            Verdict::Inconclusive,
            format!("query failed: {message}"),
        ),
        Some(MetricOutcome::Counts(_)) => {
            let why = "the query returned counts, not a value".to_owned();
            (None, Verdict::Inconclusive, why)
        }
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
