//! What the engine is told: observations of the world, analysis results, user commands.

use serde::{Deserialize, Serialize};

use crate::api::spec::HookType;
use crate::engine::providers::HookOutcome;
use crate::traffic::RouteState;

/// One input to [`crate::engine::machine::transition`].
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The world as the providers see it now (also serves as a tick).
    Observed(Observation),
    /// The results of an analysis run the engine asked for.
    Analysed(AnalysisResults),
    /// The answers of the webhooks of one type the engine asked to call for `revision`.
    Hooked {
        /// Which webhooks.
        hook_type: HookType,
        /// The revision they were called for.
        revision: String,
        /// One answer per webhook of that type.
        results: Vec<HookResult>,
    },
    /// A user command. `id` increases from one command to the next; a command whose id is not
    /// above the last one applied is ignored, so a shell may deliver it again after a crash.
    Command {
        /// Increases with every new command (a timestamp, a counter, a generation).
        id: u64,
        /// The command.
        command: Command,
    },
}

/// The world as the providers report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The workloads.
    pub workload: WorkloadObservation,
    /// The route as the traffic provider reports it; `None` when it cannot read routes back.
    pub route: Option<RouteState>,
    /// Whether the route last applied is in effect.
    pub verified: Verification,
    /// Why it is not, when the traffic provider says
    /// ([`TrafficObservation::pending`](crate::engine::providers::TrafficObservation::pending)).
    pub route_pending: Option<String>,
}

/// The stable and canary workloads, and the revision the user wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadObservation {
    /// The revision the user asks for (the stable template with `newVersion` applied, or the
    /// stable workload's changed template).
    pub desired_revision: String,
    /// The stable workload.
    pub stable: WorkloadState,
    /// The canary workload, when one exists.
    pub canary: Option<WorkloadState>,
    /// The name the mesh reports stable's pods by in its metrics, when the pods name themselves
    /// rather than taking their workload's (Istio's `service.istio.io/workload-name` pod label):
    /// the builtin queries' `{{ stable }}`.
    pub stable_reported_as: Option<String>,
}

/// One workload's revision and replica counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadState {
    /// The revision of its pod template.
    pub revision: String,
    /// Replicas it asks for.
    pub desired: u32,
    /// Replicas of `revision` that are ready.
    pub ready: u32,
    /// Replicas of `revision` that are available (ready long enough to take traffic).
    pub available: u32,
    /// Its controller has not yet caught up with its latest spec (e.g. a Deployment whose
    /// `observedGeneration` lags): `ready` and `available` are unknown and say 0. Nothing is
    /// concluded from them: a scaled canary is not unready for that.
    pub stale: bool,
}

/// Whether a route is in effect, as far as the provider can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verification {
    /// It is.
    Yes,
    /// It is not (yet).
    No,
    /// The provider cannot tell.
    Unknown,
}

/// The results of one analysis run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AnalysisResults {
    /// One outcome per metric of the plan.
    pub metrics: Vec<MetricResult>,
    /// The answers of the `rollout` and `rollback` webhooks, called with the metrics.
    pub hooks: Vec<HookResult>,
    /// Whether this was a gate run (threshold metrics and webhooks) rather than a sequential
    /// measurement.
    pub gate: bool,
}

/// A webhook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResult {
    /// The webhook's name.
    pub name: String,
    /// Its type.
    pub hook_type: HookType,
    /// What it answered.
    pub outcome: HookOutcome,
}

/// A metric's outcome in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult {
    /// The metric's name, as in the plan.
    pub metric: String,
    /// What the query returned.
    pub outcome: MetricOutcome,
}

/// What a metric query returned.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricOutcome {
    /// A value.
    Value(f64),
    /// No data: an empty result, NaN or infinity.
    NoData,
    /// The query failed; the message says why.
    Error(String),
    /// Requests and errors of each version in the window (for the sequential judge).
    Counts(ErrorCounts),
}

/// Requests and errors of the canary and of stable in one window.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCounts {
    /// Requests the canary answered.
    pub canary_requests: u64,
    /// Of those, errors.
    pub canary_errors: u64,
    /// Requests stable answered.
    pub stable_requests: u64,
    /// Of those, errors.
    pub stable_errors: u64,
}

impl ErrorCounts {
    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == ErrorCounts::default()
    }

    /// The counts of both windows together.
    pub fn plus(self, other: ErrorCounts) -> ErrorCounts {
        ErrorCounts {
            canary_requests: self.canary_requests.saturating_add(other.canary_requests),
            canary_errors: self.canary_errors.saturating_add(other.canary_errors),
            stable_requests: self.stable_requests.saturating_add(other.stable_requests),
            stable_errors: self.stable_errors.saturating_add(other.stable_errors),
        }
    }
}

/// A user command. Commands are inputs, never status edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Complete the current step now (approve a manual pause, end a timed one, waive the
    /// remaining analysis of the step).
    Promote,
    /// Skip every remaining step and promote.
    PromoteFull,
    /// Roll back: all traffic to stable, canary removed.
    Abort,
    /// Start a failed release again from the first step.
    Retry,
    /// Hold the rollout at its current step.
    Pause,
    /// Undo `pause`.
    Resume,
    /// Move to the next step at once, whatever the current one was waiting for.
    Skip,
}

impl Command {
    /// The command's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Command::Promote => "promote",
            Command::PromoteFull => "promote-full",
            Command::Abort => "abort",
            Command::Retry => "retry",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Skip => "skip",
        }
    }
}
