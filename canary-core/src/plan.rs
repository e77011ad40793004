//! The validated plan the engine runs on: every strategy compiled to a list of steps, durations
//! parsed, defaults filled in. Built only by [`crate::validate::validate`].

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::route::{Capabilities, ProviderKind, RouteState};
use crate::spec::{FailureCounting, HookType, NoDataPolicy, Rollout, SwitchMode, ThresholdRange};

/// A Rollout that passed validation, ready for [`crate::machine::transition`].
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPlan {
    /// The Rollout's name.
    pub name: String,
    /// The Rollout's namespace (`default` when the file gives none).
    pub namespace: String,
    /// The traffic provider.
    pub provider: ProviderKind,
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
        self.provider.capabilities()
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
    /// Failed checks that roll the canary back.
    pub failure_limit: u32,
    /// How failed checks are counted.
    pub counting: FailureCounting,
    /// What no data counts as.
    pub no_data: NoDataPolicy,
    /// The metrics.
    pub metrics: Vec<MetricPlan>,
    /// The webhooks.
    pub webhooks: Vec<WebhookPlan>,
}

/// A metric with its window, range and query.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPlan {
    /// The metric's name.
    pub name: String,
    /// The query window.
    pub window: SignedDuration,
    /// The range a good value lies in.
    pub range: ThresholdRange,
    /// Where its value comes from.
    pub query: MetricQuery,
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricQuery {
    /// A builtin metric, resolved per provider.
    Builtin(BuiltinMetric),
    /// A custom Prometheus query.
    Prometheus {
        /// The server address.
        address: String,
        /// The PromQL template.
        query: String,
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
