//! What the engine asks the shell to do.

use serde::{Deserialize, Serialize};

use crate::api::spec::HookType;
use crate::traffic::RouteState;

/// One thing for the shell to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make the canary workload run `revision` at `replicas` (create it if missing).
    EnsureCanary {
        /// The revision to run.
        revision: String,
        /// How many replicas.
        replicas: u32,
    },
    /// Apply this route.
    SetRoute(RouteState),
    /// Measure these metrics now and report with [`crate::Input::Analysed`]; a gate run also
    /// calls the `rollout` and `rollback` webhooks.
    RunAnalysis {
        /// The metrics and their windows (ending now).
        metrics: Vec<MetricRequest>,
        /// A gate run (threshold metrics and webhooks), or a sequential measurement.
        gate: bool,
    },
    /// Make the stable workload run `revision` (it takes the canary's template).
    PromoteStable {
        /// The revision to run.
        revision: String,
    },
    /// Scale the canary down and remove it.
    RemoveCanary,
    /// Call every webhook of `hook_type` for `revision`. Gate types (`confirm-*`,
    /// `pre-rollout`) report back with [`crate::Input::Hooked`]; the others are informational.
    CallHooks {
        /// Which webhooks.
        hook_type: HookType,
        /// The revision being released.
        revision: String,
    },
    /// Tell people (a Kubernetes event, a log line, a timeline row).
    Event(Event),
}

/// One metric to measure, over the window that ends now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRequest {
    /// The metric's name, as in the plan.
    pub metric: String,
    /// The window's length.
    pub window: jiff::SignedDuration,
}

/// An event for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Normal or warning.
    pub kind: EventKind,
    /// A CamelCase reason, e.g. `Progressing`, `FailedCheck`.
    pub reason: String,
    /// What happened.
    pub message: String,
}

/// Kubernetes' two kinds of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// Things going as planned.
    Normal,
    /// Something needs attention.
    Warning,
}
