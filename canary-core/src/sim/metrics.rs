//! The simulated metric provider: builtin metrics computed from the synthetic traffic that
//! reached the canary in the query window.

use async_trait::async_trait;

use super::traffic::TrafficModel;
use crate::machine::MetricOutcome;
use crate::memory::InMemoryTraffic;
use crate::plan::{BuiltinMetric, MetricPlan, MetricQuery};
use crate::providers::{MetricProvider, QueryContext};

/// Computes `request-success-rate` and `request-duration` of the canary from the traffic the
/// routes in effect sent it. Custom Prometheus queries measure no data.
#[derive(Clone)]
pub struct SimMetrics {
    model: TrafficModel,
    traffic: InMemoryTraffic,
}

impl SimMetrics {
    /// Metrics of `model`'s traffic under the routes `traffic` applied.
    pub fn new(model: TrafficModel, traffic: InMemoryTraffic) -> Self {
        SimMetrics { model, traffic }
    }
}

#[async_trait]
impl MetricProvider for SimMetrics {
    async fn measure(&self, metric: &MetricPlan, context: &QueryContext) -> MetricOutcome {
        let MetricQuery::Builtin(builtin) = metric.query else {
            return MetricOutcome::NoData;
        };
        let end = context.at.as_second();
        let start = end - metric.window.as_secs().max(1);
        let mut requests = 0;
        let mut errors = 0;
        let mut latencies = Vec::new();
        for second in (start + 1)..=end {
            let route = self
                .traffic
                .route_at(jiff::Timestamp::from_second(second).unwrap_or(context.at));
            let counts = self.model.second(second, &route);
            let seen = counts.canary + counts.mirrored;
            requests += seen;
            errors += counts.canary_errors + counts.mirrored_errors;
            if builtin == BuiltinMetric::RequestDuration {
                self.model.canary_latencies(second, seen, &mut latencies);
            }
        }
        if requests == 0 {
            return MetricOutcome::NoData;
        }
        match builtin {
            BuiltinMetric::RequestSuccessRate => {
                MetricOutcome::Value(100.0 * (1.0 - errors as f64 / requests as f64))
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
