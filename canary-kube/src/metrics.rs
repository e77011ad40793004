//! The controller's Prometheus metrics, registered into the caller's registry.

use canary_core::{Phase, RolloutStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one rollout.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Labels of one rollout in one phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The phase.
    pub phase: String,
}

impl RolloutLabels {
    fn phase(&self, phase: Phase) -> PhaseLabels {
        PhaseLabels {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            phase: phase.to_string(),
        }
    }
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The error's class ([`canary_core::ErrorClass::label`]).
    pub class: String,
}

/// The controller's metrics.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Counter,
    failures: Family<FailureLabels, Counter>,
    phase: Family<PhaseLabels, Gauge>,
    weight: Family<RolloutLabels, Gauge>,
    step: Family<RolloutLabels, Gauge>,
    reconcile_seconds: Histogram,
    step_seconds: Histogram,
}

const PHASES: [Phase; 8] = [
    Phase::Initializing,
    Phase::Initialized,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoting,
    Phase::Finalising,
    Phase::Succeeded,
    Phase::Failed,
];

impl Metrics {
    /// Creates the metrics and registers them under the `canary` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            reconciles: Counter::default(),
            failures: Family::default(),
            phase: Family::default(),
            weight: Family::default(),
            step: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            step_seconds: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        let registry = registry.sub_registry_with_prefix("canary");
        registry.register("reconciles", "Reconcile passes", metrics.reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Failed reconcile passes, by the class of their error (transient, conflict, invalid, fatal)",
            metrics.failures.clone(),
        );
        registry.register(
            "rollout_phase",
            "1 for the phase each rollout is in",
            metrics.phase.clone(),
        );
        registry.register(
            "rollout_weight",
            "Canary weight, percent",
            metrics.weight.clone(),
        );
        registry.register(
            "rollout_step",
            "Current step (1-based), 0 when idle",
            metrics.step.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile pass",
            metrics.reconcile_seconds.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time a step spent at its gate",
            metrics.step_seconds.clone(),
        );
        metrics
    }

    /// Counts a pass and how long it took.
    pub fn reconciled(&self, seconds: f64) {
        self.reconciles.inc();
        self.reconcile_seconds.observe(seconds);
    }

    /// Counts a failed pass.
    pub fn failed(&self, class: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                class: class.to_owned(),
            })
            .inc();
    }

    /// Records where a rollout is; `step_seconds` when a step just ended.
    pub fn rollout(
        &self,
        namespace: &str,
        name: &str,
        status: &RolloutStatus,
        step_seconds: Option<f64>,
    ) {
        let labels = RolloutLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        for phase in PHASES {
            let value = i64::from(phase == status.phase);
            self.phase.get_or_create(&labels.phase(phase)).set(value);
        }
        self.weight
            .get_or_create(&labels)
            .set(i64::from(status.routing.route.weight));
        let stepping = matches!(status.phase, Phase::Progressing | Phase::Paused);
        self.step.get_or_create(&labels).set(if stepping {
            i64::from(status.step) + 1
        } else {
            0
        });
        if let Some(seconds) = step_seconds {
            self.step_seconds.observe(seconds);
        }
    }

    /// Forgets a deleted rollout.
    pub fn forget(&self, namespace: &str, name: &str) {
        let labels = RolloutLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.weight.remove(&labels);
        self.step.remove(&labels);
        for phase in PHASES {
            self.phase.remove(&labels.phase(phase));
        }
    }
}
