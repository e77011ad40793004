//! The simulated metric provider: builtin metrics computed from the synthetic traffic that
//! reached the canary in the query window.

use std::sync::Arc;

use async_trait::async_trait;

use super::traffic::{Splits, TrafficModel};
use crate::api::plan::{BuiltinMetric, MetricPlan, MetricQuery};
use crate::engine::machine::{ErrorCounts, MetricOutcome};
use crate::engine::providers::{MetricProvider, QueryContext};

/// Computes `request-success-rate` and `request-duration` of the canary from the traffic it
/// answered (and was mirrored), and the error counts of both versions for the sequential
/// judge. Custom Prometheus queries measure no data.
#[derive(Clone)]
pub struct SimMetrics {
    model: TrafficModel,
    splits: Arc<dyn Splits>,
}

impl SimMetrics {
    /// Metrics of `model`'s traffic, answered second by second as `splits` says.
    pub fn new(model: TrafficModel, splits: Arc<dyn Splits>) -> Self {
        SimMetrics { model, splits }
    }
}

#[async_trait]
impl MetricProvider for SimMetrics {
    async fn measure(&self, metric: &MetricPlan, context: &QueryContext) -> MetricOutcome {
        let MetricQuery::Builtin(builtin) = metric.query else {
            return MetricOutcome::NoData;
        };
        let end = context.at.as_second();
        let start = end.saturating_sub(context.window.as_secs().max(1));
        let mut counts = ErrorCounts::default();
        let mut latencies = Vec::new();
        for second in (start + 1)..=end {
            let traffic = self
                .model
                .split_second(second, &self.splits.split_for_second(second));
            let seen = traffic.canary.saturating_add(traffic.mirrored);
            counts = counts.plus(ErrorCounts {
                canary_requests: seen,
                canary_errors: traffic
                    .canary_errors
                    .saturating_add(traffic.mirrored_errors),
                stable_requests: traffic.stable,
                stable_errors: traffic.stable_errors,
            });
            if builtin == BuiltinMetric::RequestDuration {
                self.model.canary_latencies(second, seen, &mut latencies);
            }
        }
        if metric.is_sequential() {
            return MetricOutcome::Counts(counts);
        }
        if counts.canary_requests == 0 {
            return MetricOutcome::NoData;
        }
        match builtin {
            BuiltinMetric::RequestSuccessRate => {
                let errors = counts.canary_errors as f64 / counts.canary_requests as f64;
                MetricOutcome::Value(100.0 * (1.0 - errors))
            }
            BuiltinMetric::RequestDuration => {
                latencies.sort_by(f64::total_cmp);
                let rank = ((latencies.len() as f64) * 0.99).ceil() as usize;
                match latencies.get(rank.saturating_sub(1)) {
                    Some(p99) => MetricOutcome::Value(*p99),
                    None => MetricOutcome::NoData,
                }
            }
        }
    }
}
