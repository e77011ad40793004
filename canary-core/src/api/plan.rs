//! The validated plan the engine runs on: every strategy compiled to a list of steps, durations
//! parsed, defaults filled in. Built only by [`crate::api::validate::validate`].

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::api::spec::{
    FailureCounting, HookType, NoDataPolicy, Rollout, SwitchMode, ThresholdRange,
};
use crate::traffic::{Capabilities, ProviderDescriptor, RouteState};
use crate::workload::WorkloadDescriptor;

/// A Rollout that passed validation, ready for [`crate::engine::machine::transition`].
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// The Rollout's name.
    pub name: String,
    /// The Rollout's namespace (`default` when the file gives none).
    pub namespace: String,
    /// The traffic provider, as registered.
    pub provider: &'static ProviderDescriptor,
    /// The kind of workload released.
    pub workload: &'static WorkloadDescriptor,
    /// Which strategy the steps came from.
    pub strategy: StrategyKind,
    /// The steps, in order; never empty.
    pub steps: Vec<PlanStep>,
    /// What happens after the last step.
    pub finish: Finish,
    /// Analysis settings; always present (no metrics means steps advance on time alone).
    pub analysis: AnalysisPlan,
    /// How long waiting for the world may take before the rollout fails.
    pub progress_deadline: SignedDuration,
    /// The validated source, for providers and workloads that need its details.
    pub rollout: Rollout,
}

impl RolloutPlan {
    /// What the plan's traffic provider can route.
    pub fn capabilities(&self) -> Capabilities {
        (self.provider.capabilities)(&self.rollout.spec.traffic_routing)
    }

    /// The name of the canary workload: the stable workload's name with `-canary`.
    pub fn canary_workload(&self) -> String {
        format!("{}-canary", self.rollout.spec.workload_ref.name)
    }

    /// The step at `index`, if any.
    pub fn step(&self, index: u32) -> Option<&PlanStep> {
        self.steps.get(index as usize)
    }
}

/// Which strategy a plan was compiled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// Canary steps.
    Canary,
    /// Blue-green, with its switch mode.
    BlueGreen(SwitchMode),
    /// A/B test by request matches.
    AbTest,
    /// Traffic mirroring.
    Mirror,
}

/// What happens when the last step's gate passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The stable workload takes the new version.
    Promote,
    /// The new version is removed and the stable one kept (mirror with `promote: false`).
    Discard,
}

/// One step: scale the canary, wait until it is ready, route, then wait at the gate.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStep {
    /// The route this step applies.
    pub route: RouteState,
    /// How many canary replicas the step needs.
    pub replicas: ReplicaTarget,
    /// How many of them must be available before traffic is routed.
    pub readiness: Readiness,
    /// A pause at the gate.
    pub pause: Option<PlanPause>,
    /// Analysis runs that must pass at the gate (each one analysis interval apart).
    pub iterations: u32,
}

/// A canary replica count: fixed, or a percent of the stable replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaTarget {
    /// A fixed count.
    Count(u32),
    /// A percent of the stable workload's desired replicas, rounded up, at least 1.
    Percent(u32),
}

impl ReplicaTarget {
    /// The count for a stable workload of `stable` desired replicas.
    pub fn resolve(self, stable: u32) -> u32 {
        match self {
            ReplicaTarget::Count(count) => count,
            ReplicaTarget::Percent(percent) => {
                let exact = u64::from(stable) * u64::from(percent);
                let count = exact.div_ceil(100).max(1);
                u32::try_from(count).unwrap_or(u32::MAX)
            }
        }
    }
}

/// How many canary replicas must be available before the step routes traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// All of them.
    All,
    /// At least one (blue-green `Immediate`).
    AnyOne,
}

impl Readiness {
    /// The number of available replicas needed out of `replicas`.
    pub fn needed(self, replicas: u32) -> u32 {
        match self {
            Readiness::All => replicas,
            Readiness::AnyOne => replicas.min(1),
        }
    }
}

/// A pause at a step's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanPause {
    /// Until a user promotes.
    Manual,
    /// For a time.
    For(SignedDuration),
}

/// Analysis settings with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisPlan {
    /// Time between analysis runs.
    pub interval: SignedDuration,
    /// How often Prometheus scrapes the metrics.
    pub scrape_interval: SignedDuration,
    /// How far behind the clock metrics are read.
    pub query_offset: SignedDuration,
    /// Failed checks that roll the canary back.
    pub failure_limit: u32,
    /// How failed checks are counted.
    pub counting: FailureCounting,
    /// What no data counts as.
    pub no_data: NoDataPolicy,
    /// Inconclusive runs in a row that roll back; `None` holds instead.
    pub inconclusive_limit: Option<u32>,
    /// The metrics.
    pub metrics: Vec<MetricPlan>,
    /// The webhooks.
    pub webhooks: Vec<WebhookPlan>,
}

/// A metric with its window, judge and query.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    /// The metric's name.
    pub name: String,
    /// The query window (threshold judge), or the measuring period (sequential judge).
    pub window: SignedDuration,
    /// How its measurements are judged.
    pub judge: Judge,
    /// What is asked.
    pub query: MetricQuery,
    /// The Prometheus server asked; the metric provider's default when `None`.
    pub address: Option<String>,
}

impl MetricPlan {
    /// True for a metric judged by the sequential test.
    pub fn is_sequential(&self) -> bool {
        matches!(self.judge, Judge::Sequential(_))
    }
}

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judge {
    /// At each analysis run, the value must lie in the range.
    Threshold(ThresholdRange),
    /// Wald's sequential probability ratio test on the canary's errors against stable's.
    Sequential(Sprt),
}

/// Wald's sequential probability ratio test comparing the canary's error rate with stable's.
///
/// Given the requests each version answered in a window, under H0 (the canary is no worse) an
/// error comes from the canary with probability `π0 = n_c / (n_c + n_s)`; under H1 (the
/// canary's error rate is `degradation` times stable's) with `π1 = r·n_c / (r·n_c + n_s)`.
/// Each error adds its log-likelihood ratio; stable's own error rate cancels out, and the split
/// may change from window to window (from step to step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sprt {
    /// The probability of rolling back a canary that is no worse than stable.
    pub alpha: f64,
    /// The probability of missing a canary that is `degradation` times worse.
    pub beta: f64,
    /// The error-rate ratio, canary to stable, worth catching.
    pub degradation: f64,
}

impl Sprt {
    /// The log-likelihood ratio at or above which the canary is judged worse (H1).
    pub fn upper(&self) -> f64 {
        ((1.0 - self.beta) / self.alpha).ln()
    }

    /// The log-likelihood ratio at or below which the canary is judged no worse (H0).
    pub fn lower(&self) -> f64 {
        (self.beta / (1.0 - self.alpha)).ln()
    }

    /// The evidence a window adds: `canary` and `stable` are (requests, errors).
    pub fn evidence(&self, canary: (u64, u64), stable: (u64, u64)) -> f64 {
        let (n_c, e_c) = (canary.0 as f64, canary.1 as f64);
        let (n_s, e_s) = (stable.0 as f64, stable.1 as f64);
        if n_c <= 0.0 || n_s <= 0.0 {
            return 0.0;
        }
        // ln(π1/π0) and ln((1−π1)/(1−π0)) written without the differences `1 − π`, which
        // round to 0 (and the evidence to NaN) when one version's count dwarfs the other's.
        let r = self.degradation;
        let stable_ratio = (n_c + n_s).ln() - (r * n_c + n_s).ln();
        let evidence = e_c * (r.ln() + stable_ratio) + e_s * stable_ratio;
        // Never a non-finite number in the status: it would not read back.
        if evidence.is_finite() { evidence } else { 0.0 }
    }

    /// Wald's approximate expected number of canary errors before H1 is accepted, when the
    /// canary is exactly `degradation` times worse and answers the share `canary_share` of
    /// requests: `E[N] ≈ ((1−β)·ln A + β·ln B) / E[z]` per error, counted over canary errors.
    pub fn expected_canary_errors(&self, canary_share: f64) -> f64 {
        let (r, q) = (self.degradation, canary_share.clamp(1e-9, 1.0 - 1e-9));
        let p0 = q;
        let p1 = r * q / (r * q + 1.0 - q);
        // Per error under H1: it is the canary's with probability p1.
        let drift = p1 * (p1 / p0).ln() + (1.0 - p1) * ((1.0 - p1) / (1.0 - p0)).ln();
        let steps = ((1.0 - self.beta) * self.upper() + self.beta * self.lower()) / drift;
        steps * p1
    }
}

/// What a metric asks.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricQuery {
    /// A builtin metric, resolved per traffic provider (see [`crate::analysis::queries`]).
    Builtin(BuiltinMetric),
    /// A custom PromQL template.
    Custom {
        /// The PromQL template.
        query: String,
        /// The user's template variables.
        variables: BTreeMap<String, String>,
    },
}

/// The builtin metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinMetric {
    /// `request-success-rate`: percent of canary requests that did not fail (non-5xx).
    RequestSuccessRate,
    /// `request-duration`: P99 canary request duration, in milliseconds.
    RequestDuration,
}

impl BuiltinMetric {
    /// The builtin with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "request-success-rate" => Some(BuiltinMetric::RequestSuccessRate),
            "request-duration" => Some(BuiltinMetric::RequestDuration),
            _ => None,
        }
    }
}

/// A webhook with its timeout parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookPlan {
    /// Its name.
    pub name: String,
    /// When it is called.
    pub hook_type: HookType,
    /// Where.
    pub url: String,
    /// How long one call may take.
    pub timeout: SignedDuration,
    /// Sent in the payload.
    pub metadata: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::Sprt;

    const SPRT: Sprt = Sprt {
        alpha: 0.01,
        beta: 0.05,
        degradation: 2.0,
    };

    #[test]
    fn evidence_matches_the_textbook_form() {
        let (canary, stable) = ((300u64, 12u64), (2700u64, 20u64));
        let (n_c, n_s) = (300.0, 2700.0);
        let p0: f64 = n_c / (n_c + n_s);
        let p1: f64 = 2.0 * n_c / (2.0 * n_c + n_s);
        let textbook = 12.0 * (p1 / p0).ln() + 20.0 * ((1.0 - p1) / (1.0 - p0)).ln();
        assert!((SPRT.evidence(canary, stable) - textbook).abs() < 1e-9);
    }

    #[test]
    fn lopsided_counts_give_finite_evidence() {
        for (canary, stable) in [
            ((u64::MAX / 2, 0), (1, 0)),
            ((u64::MAX / 2, 5), (1, 1)),
            ((1, 1), (u64::MAX / 2, u64::MAX / 4)),
            ((u64::MAX, u64::MAX), (u64::MAX, u64::MAX)),
        ] {
            let evidence = SPRT.evidence(canary, stable);
            assert!(evidence.is_finite(), "{canary:?} {stable:?}: {evidence}");
        }
    }
}
