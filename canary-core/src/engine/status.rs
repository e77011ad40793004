//! The durable status of a rollout: the engine's only memory.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::traffic::RouteState;

/// The phases of a rollout (DESIGN §4), named as Flagger prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Nothing observed yet.
    #[default]
    Initializing,
    /// The stable workload is adopted and routes exist at 0%; waiting for a new revision.
    Initialized,
    /// Working through the steps.
    Progressing,
    /// Waiting for a user: a manual step, or a user pause.
    Paused,
    /// The stable workload is taking the new version.
    Promoting,
    /// All traffic back to stable, the canary being removed.
    Finalising,
    /// The new version is stable (or, for a mirror that does not promote, passed its analysis).
    Succeeded,
    /// Rolled back: all traffic to stable, canary removed, stable untouched.
    Failed,
}

impl Phase {
    /// True for `Succeeded` and `Failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Where the current step is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepStage {
    /// Canary replicas being brought to the step's count and readiness (the previous step's
    /// route stays in effect).
    #[default]
    Scaling,
    /// The step's route applied; at the gate: analysis runs and pauses, and the route must be
    /// verified before the gate passes.
    Gating,
}

/// Everything the engine remembers about one rollout. A driver that restarts from the last
/// saved status reaches the same outcome. A field missing from a saved status is its default
/// (a status written in parts, or by an older version).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStatus {
    /// The phase.
    pub phase: Phase,
    /// The revision the stable workload runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The revision being released, while a release is under way or after it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// The current step (0-based).
    #[serde(default)]
    pub step: u32,
    /// Where the current step is.
    #[serde(default)]
    pub stage: StepStage,
    /// The route last applied.
    #[serde(default)]
    pub route: RouteState,
    /// The provider has shown the route in the status to be in effect.
    #[serde(default)]
    pub route_verified: bool,
    /// Available canary replicas the applied route relies on; traffic is pulled from the canary
    /// when fewer are available.
    #[serde(default)]
    pub routed_replicas: u32,
    /// When the current step reached its gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub gate_since: Option<Timestamp>,
    /// When the route was applied again because someone changed it, until it is seen in
    /// effect: the wait for it to take effect counts from there, not from the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub route_reapplied_at: Option<Timestamp>,
    /// Analysis runs passed at the current gate.
    #[serde(default)]
    pub iterations: u32,
    /// When the last analysis run was judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_analysis: Option<Timestamp>,
    /// The current manual gate has been approved.
    #[serde(default)]
    pub approved: bool,
    /// When gate webhooks (`confirm-*`, `pre-rollout`) were last called at the current point;
    /// they are called again one analysis interval later while they say no.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub hooks_called_at: Option<Timestamp>,
    /// The `confirm-*` webhooks of the current gate passed.
    #[serde(default)]
    pub hooks_confirmed: bool,
    /// The `pre-rollout` webhooks of this release passed.
    #[serde(default)]
    pub pre_rollout_passed: bool,
    /// The id of the last user command applied.
    #[serde(default)]
    pub last_command: u64,
    /// A user paused the rollout.
    #[serde(default)]
    pub user_paused: bool,
    /// Failed checks in this release.
    #[serde(default)]
    pub failed_checks: u32,
    /// Failed checks in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Analysis runs in a row that were inconclusive (no data, or a metric error).
    #[serde(default)]
    pub inconclusive: u32,
    /// The sequential judges of this release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequential: Vec<SequentialState>,
    /// Since when the rollout waits for the world (canary ready, route shown, stable promoted);
    /// checked against the progress deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub waiting_since: Option<Timestamp>,
    /// When the current release started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<Timestamp>,
    /// When the phase last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_transition: Option<Timestamp>,
    /// Why the rollout is where it is, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Conditions, one per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The most recent measurements, at most [`MEASUREMENTS_KEPT`] per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
}

/// How many recent measurements the status keeps per metric.
pub const MEASUREMENTS_KEPT: usize = 10;

/// Where one sequential judge stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SequentialState {
    /// The metric's name.
    pub metric: String,
    /// The log-likelihood ratio of "the canary is worse" against "it is not".
    pub llr: f64,
    /// The start of the next window to measure.
    #[schemars(with = "String")]
    pub since: Timestamp,
    /// Requests the canary answered so far.
    pub canary_requests: u64,
    /// Of those, errors.
    pub canary_errors: u64,
    /// Requests stable answered so far.
    pub stable_requests: u64,
    /// Of those, errors.
    pub stable_errors: u64,
    /// Counts not yet weighed: evidence needs requests of both versions, and with their own
    /// scrape targets one version's counters may move a window before the other's.
    #[serde(
        default,
        skip_serializing_if = "crate::engine::machine::ErrorCounts::is_empty"
    )]
    pub pending: crate::engine::machine::ErrorCounts,
    /// `pass` once the canary is judged no worse (the test then stops), `fail` when it is
    /// judged worse; absent while the evidence is not strong enough either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Promoted`, `Analysis`, `Progressing`…
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
    /// When the status last changed.
    #[schemars(with = "String")]
    pub last_transition_time: Timestamp,
}

/// One metric measurement and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// The metric's name.
    pub metric: String,
    /// The value, or `None` for no data or an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, for a failure, no data or an error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When it was taken.
    #[schemars(with = "String")]
    pub at: Timestamp,
}

/// The verdict on a measurement or an analysis run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Good.
    Pass,
    /// Bad: counts against the failure limit.
    Fail,
    /// Neither: no data under `noData: Inconclusive`, or a metric error.
    Inconclusive,
    /// The sequential judge needs more evidence.
    Continue,
}

impl RolloutStatus {
    /// Sets or replaces the condition of `kind`, keeping its transition time when its status
    /// does not change.
    pub fn set_condition(
        &mut self,
        kind: &str,
        status: bool,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let status = if status { "True" } else { "False" }.to_owned();
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(existing) => {
                if existing.status != status {
                    existing.last_transition_time = now;
                }
                existing.status = status;
                existing.reason = reason.to_owned();
                existing.message = message.to_owned();
            }
            None => self.conditions.push(Condition {
                kind: kind.to_owned(),
                status,
                reason: reason.to_owned(),
                message: message.to_owned(),
                last_transition_time: now,
            }),
        }
    }

    /// The condition of `kind`, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// Records a measurement, dropping the oldest of its metric past [`MEASUREMENTS_KEPT`].
    pub fn record(&mut self, measurement: Measurement) {
        let same = self
            .measurements
            .iter()
            .filter(|m| m.metric == measurement.metric)
            .count();
        if same >= MEASUREMENTS_KEPT
            && let Some(oldest) = self
                .measurements
                .iter()
                .position(|m| m.metric == measurement.metric)
        {
            self.measurements.remove(oldest);
        }
        self.measurements.push(measurement);
    }
}
