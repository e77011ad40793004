//! The durable status of a rollout: the engine's only memory.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::traffic::RouteState;

/// The phases of a rollout, named as Flagger prints them; [`crate::engine::machine`] shows what moves
/// a rollout from one to another.
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
    /// All traffic back to stable (by applying the all-stable route), the canary being
    /// removed. Not the traffic provider's `finalize`, which is for removing the rollout.
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
///
/// The fields are grouped by how long they live, and each group is reset as a whole with its
/// `Default`: [`ReleaseState`] for one release of one revision, [`GateState`] for the point the
/// rollout waits at (the current step's gate), [`Routing`] for the route last applied,
/// [`AnalysisState`] for one attempt at a release (a retry starts a new one), and
/// [`CommandState`] for the user's commands. The groups are flattened: the saved status is one
/// flat object, with the same field names as when it was one struct.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutStatus {
    /// The phase.
    pub phase: Phase,
    /// The revision the stable workload runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The release under way, or the last one.
    #[serde(flatten)]
    pub release: ReleaseState,
    /// The current step (0-based).
    #[serde(default)]
    pub step: u32,
    /// Where the current step is.
    #[serde(default)]
    pub stage: StepStage,
    /// The route last applied.
    #[serde(flatten)]
    pub routing: Routing,
    /// The current step's gate.
    #[serde(flatten)]
    pub gate: GateState,
    /// The user's commands.
    #[serde(flatten)]
    pub commands: CommandState,
    /// What the analysis of the current attempt found.
    #[serde(flatten)]
    pub analysis: AnalysisState,
    /// Since when the rollout waits for the world (canary ready, route shown, stable promoted);
    /// checked against the progress deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub waiting_since: Option<Timestamp>,
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
}

/// One release: a revision from its start until the next release starts. A retry of a failed
/// release is the same release (`startedAt` then says when the retry started).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ReleaseState {
    /// The revision being released, while a release is under way or after it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_revision: Option<String>,
    /// When the current release started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub started_at: Option<Timestamp>,
    /// The `pre-rollout` webhooks of this release passed.
    #[serde(default)]
    pub pre_rollout_passed: bool,
}

/// The route last applied, and what is known of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Routing {
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
}

/// The point the rollout waits at: the current step's gate (its analysis runs, its pause, its
/// webhooks), or, between releases, the `confirm-rollout` webhooks of a new revision. Entering a
/// step starts a fresh one; when a release ends, its webhooks' answers are forgotten.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct GateState {
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
}

/// What the user's commands left. The last command's id is never reset, so each command is
/// applied once; a user pause holds one attempt at a release, and is cleared by `resume` and
/// by every start of a release (a retry included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CommandState {
    /// The id of the last user command applied.
    #[serde(default)]
    pub last_command: u64,
    /// A user paused the rollout.
    #[serde(default)]
    pub user_paused: bool,
}

/// What the analysis found in one attempt at a release: started afresh by a new release and
/// by a retry, whose verdict must not rest on the failed attempt's evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct AnalysisState {
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
}

impl AnalysisState {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A status as saved when it was one flat struct, with every field set.
    fn flat() -> Value {
        json!({
            "phase": "Paused",
            "stableRevision": "rev-1",
            "canaryRevision": "rev-2",
            "step": 2,
            "stage": "Gating",
            "route": {"weight": 30, "total": 100, "mirror": 5},
            "routeVerified": true,
            "routedReplicas": 3,
            "gateSince": "2026-01-01T00:10:00Z",
            "routeReappliedAt": "2026-01-01T00:11:00Z",
            "iterations": 4,
            "lastAnalysis": "2026-01-01T00:12:00Z",
            "approved": true,
            "hooksCalledAt": "2026-01-01T00:13:00Z",
            "hooksConfirmed": true,
            "preRolloutPassed": true,
            "lastCommand": 7,
            "userPaused": true,
            "failedChecks": 2,
            "consecutiveFailures": 1,
            "inconclusive": 3,
            "sequential": [{
                "metric": "errors",
                "llr": -1.25,
                "since": "2026-01-01T00:14:00Z",
                "canaryRequests": 100,
                "canaryErrors": 2,
                "stableRequests": 900,
                "stableErrors": 9,
                "pending": {"canaryRequests": 5, "canaryErrors": 0, "stableRequests": 0, "stableErrors": 0},
                "verdict": "continue"
            }],
            "waitingSince": "2026-01-01T00:15:00Z",
            "startedAt": "2026-01-01T00:00:00Z",
            "lastTransition": "2026-01-01T00:16:00Z",
            "message": "paused by a user; resume to continue",
            "conditions": [{
                "type": "Promoted",
                "status": "False",
                "reason": "Progressing",
                "message": "a new revision is being released",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }],
            "measurements": [{
                "metric": "request-success-rate",
                "value": 99.5,
                "verdict": "pass",
                "at": "2026-01-01T00:12:00Z"
            }]
        })
    }

    #[test]
    fn a_status_saved_flat_reads_into_its_parts_and_writes_back_the_same() {
        let saved = flat();
        let status: RolloutStatus = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(status.phase, Phase::Paused);
        assert_eq!(status.release.canary_revision.as_deref(), Some("rev-2"));
        assert!(status.release.pre_rollout_passed);
        assert_eq!(status.routing.route.weight, 30);
        assert_eq!(status.routing.routed_replicas, 3);
        assert_eq!(status.gate.iterations, 4);
        assert!(status.gate.approved && status.gate.hooks_confirmed);
        assert_eq!(status.commands.last_command, 7);
        assert!(status.commands.user_paused);
        assert_eq!(status.analysis.failed_checks, 2);
        assert_eq!(status.analysis.sequential[0].pending.canary_requests, 5);
        assert_eq!(status.analysis.measurements.len(), 1);
        assert_eq!(serde_json::to_value(&status).unwrap(), saved);
    }

    #[test]
    fn a_status_with_fields_missing_reads_with_their_defaults() {
        let status: RolloutStatus =
            serde_json::from_value(json!({"phase": "Initialized", "iterations": 2})).unwrap();
        assert_eq!(
            status,
            RolloutStatus {
                phase: Phase::Initialized,
                gate: GateState {
                    iterations: 2,
                    ..GateState::default()
                },
                ..RolloutStatus::default()
            }
        );
        let empty: RolloutStatus = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, RolloutStatus::default());
    }

    #[test]
    fn the_schema_lists_the_flat_fields() {
        let schema = serde_json::to_value(schemars::schema_for!(RolloutStatus)).unwrap();
        let mut properties: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        properties.sort_unstable();
        let mut saved: Vec<String> = flat().as_object().unwrap().keys().cloned().collect();
        saved.sort_unstable();
        assert_eq!(properties, saved);
    }
}
