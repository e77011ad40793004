//! The release logic as one deterministic function:
//! `transition(plan, status, input, now) -> (status', actions, requeue)`.
//!
//! Nothing here reads a clock, draws a random number or does IO. The shell (the
//! [`crate::engine::driver`]) observes the world, feeds the observation in, carries out the actions in
//! order and saves the status. Every action is idempotent and every decision is made from the
//! status and the input alone, so a shell that crashes anywhere and restarts from the last saved
//! status reaches the same outcome.
//!
//! # Phases and stages
//!
//! A rollout is in one [`Phase`]. While it works through the steps (`Progressing` or `Paused`)
//! the current step is in one [`StepStage`](crate::engine::status::StepStage): `Scaling` (the canary is
//! brought to the step's size; the previous step's route stays in effect) or `Gating` (the
//! step's route is applied; analysis, pauses and `confirm-*` webhooks decide when to move on).
//! In the other phases the stage is not looked at.
//!
//! | Phase | Stage | What the engine does | Moves on to |
//! |---|---|---|---|
//! | `Initializing` | – | Nothing observed yet. | `Initialized` at the first observation: the stable workload is adopted. |
//! | `Initialized` | – | Idle: all traffic to stable, no canary. Waits for a new revision, then for its `confirm-rollout` webhooks. | `Progressing` (step 1, `Scaling`) when a new revision is released. |
//! | `Progressing` | `Scaling` | Makes the canary (kept from stable traffic until it runs), scales it for the step, calls the `pre-rollout` webhooks at the first step. | `Gating` once enough canary replicas are available (the step's route is applied). `Failed` at the progress deadline or when failed `pre-rollout` checks reach the limit. |
//! | `Progressing` | `Gating` | Analysis runs every interval, a timed pause runs out, the route must be shown in effect, then `confirm-*` webhooks. | The next step (`Scaling`) when the gate passes; `Promoting` after the last step (`Finalising` for a mirror that does not promote); `Paused` at a manual pause or a user pause; `Scaling` of the same step when the canary loses readiness (traffic back to stable first); `Failed` when a limit is reached (failed checks, inconclusive runs, the sequential judge, a `rollback` webhook, a route not in effect by the deadline). |
//! | `Paused` | `Gating` | As at `Progressing`: analysis still runs and can roll back, but the gate waits for `promote` (a manual pause) or `resume` (a user pause). | `Progressing` (the next step for `promote`), `Failed` as above. |
//! | `Paused` | `Scaling` | A user pause set before the gate: the step still scales and applies its route, then waits at its gate. | `Paused`/`Gating`, or `Progressing` on `resume`. |
//! | `Promoting` | – | The canary takes all traffic at full size (providers that weigh), then the stable workload takes the new revision. | `Finalising` once stable runs it with all replicas available. |
//! | `Finalising` | – | All traffic back to stable, then the canary is removed. | `Succeeded`. |
//! | `Succeeded` | – | Idle, like `Initialized`. A mirror that does not promote keeps its revision, which is not released again. | `Progressing` for another revision. |
//! | `Failed` | – | Idle: all traffic to stable, no canary, stable untouched. The failed revision is not released again. | `Progressing` (step 1) on `retry` or for another revision; `Initialized` when the workload is put back to the stable revision. |
//!
//! From `Progressing` and `Paused`, a new revision restarts the release at step 1 and a
//! workload put back to the stable revision cancels it (`Initialized`). The user's commands:
//! `promote` passes the current gate, `skip` moves to the next step from either stage,
//! `promote-full` goes to `Promoting`, `abort` to `Failed`, `pause` holds the rollout at its
//! gate and `resume` lets it go on; `retry` starts a `Failed` release again.
//!
//! # State
//!
//! The [`RolloutStatus`] is grouped by how long its parts live, and each part is started
//! afresh with its `Default`: entering a step resets the [`GateState`](crate::engine::status::GateState);
//! a release resets the [`ReleaseState`](crate::engine::status::ReleaseState); every attempt at a
//! release (a new one, or a retry) resets the [`AnalysisState`](crate::engine::status::AnalysisState)
//! and the user's pause. Decisions are made on these fields, never on the status message, which
//! is for people only.

mod action;
mod commands;
mod gate;
mod hooks;
mod input;
mod judge;
mod phases;
mod sequential;
#[cfg(test)]
mod tests;

use jiff::{SignedDuration, Timestamp};

pub use action::{Action, Event, EventKind, MetricRequest};
pub use input::{
    AnalysisResults, Command, ErrorCounts, HookResult, Input, MetricOutcome, MetricResult,
    Observation, Verification, WorkloadObservation, WorkloadState,
};
pub use judge::judge;

use crate::api::plan::RolloutPlan;
use crate::engine::status::{Phase, RolloutStatus};

/// How often the engine looks again while it waits for the world (canary ready, route shown,
/// stable promoted). Watches usually wake it sooner.
pub const POLL_INTERVAL: SignedDuration = SignedDuration::from_secs(5);

/// The result of one transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new status, to be saved.
    pub status: RolloutStatus,
    /// What the shell must do, in order.
    pub actions: Vec<Action>,
    /// When to run again; `Some(ZERO)` to observe again at once, `None` to wait for a change.
    pub requeue_after: Option<SignedDuration>,
}

/// Computes the next status and actions for one input.
///
/// ```
/// use canary_core::engine::machine::{transition, Input, Observation, Verification, WorkloadObservation, WorkloadState};
/// use canary_core::{RolloutStatus, Phase};
///
/// let plan = canary_core::api::load::plan_from_yaml(r#"
/// apiVersion: canary.rs/v1alpha1
/// kind: Rollout
/// metadata: {name: podinfo}
/// spec:
///   workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
///   service: {name: podinfo, port: 9898}
///   trafficRouting: {kuma: {}}
///   strategy: {canary: {stepWeight: 10, maxWeight: 50}}
/// "#).unwrap();
/// let stable = WorkloadState {
///     revision: "r1".into(), desired: 5, ready: 5, available: 5, stale: false,
/// };
/// let seen = Observation {
///     workload: WorkloadObservation {
///         desired_revision: "r1".into(), stable, canary: None, stable_reported_as: None,
///     },
///     route: None,
///     verified: Verification::Unknown,
///     route_pending: None,
/// };
/// let now = jiff::Timestamp::UNIX_EPOCH;
/// let next = transition(&plan, RolloutStatus::default(), &Input::Observed(seen), now);
/// assert_eq!(next.status.phase, Phase::Initialized);
/// ```
pub fn transition(
    plan: &RolloutPlan,
    status: RolloutStatus,
    input: &Input,
    now: Timestamp,
) -> Transition {
    let mut engine = Engine {
        plan,
        now,
        status,
        actions: Vec::new(),
        again: false,
    };
    match input {
        Input::Observed(observation) => engine.observed(observation),
        Input::Analysed(results) => engine.analysed(results),
        Input::Hooked {
            hook_type,
            revision,
            results,
        } => engine.hooked(*hook_type, revision, results),
        Input::Command { id, command } => {
            if *id > engine.status.commands.last_command {
                engine.status.commands.last_command = *id;
                engine.command(*command);
            }
        }
    }
    let requeue_after = engine.requeue_after();
    Transition {
        status: engine.status,
        actions: engine.actions,
        requeue_after,
    }
}

/// One transition in progress.
pub(crate) struct Engine<'p> {
    plan: &'p RolloutPlan,
    now: Timestamp,
    status: RolloutStatus,
    actions: Vec<Action>,
    /// The status moved on in a way that needs a fresh observation at once.
    again: bool,
}

impl Engine<'_> {
    fn emit(&mut self, action: Action) {
        // A change to the world is looked at again in the same pass, so a pass goes as far as
        // the world lets it (the driver bounds the rounds).
        if !matches!(
            action,
            Action::Event(_) | Action::RunAnalysis { .. } | Action::CallHooks { .. }
        ) {
            self.again = true;
        }
        if matches!(action, Action::SetRoute(_)) {
            // One route per transition, the one it leaves in the status. A route decided
            // earlier in the same transition (a drift repair, then the step's route once the
            // canary is ready, a rollback or the promotion's hand-over) would be in effect for
            // no time at all, and a pass resumed after a crash past the save could not know of
            // it, so it is never written. What can come between the two only makes or grows
            // the canary, which hurts no route in effect.
            self.actions
                .retain(|earlier| !matches!(earlier, Action::SetRoute(_)));
        }
        self.actions.push(action);
    }

    fn event(&mut self, kind: EventKind, reason: &str, message: impl Into<String>) {
        self.emit(Action::Event(Event {
            kind,
            reason: reason.to_owned(),
            message: message.into(),
        }));
    }

    /// Moves to `phase` with a message, recording the transition time and an event.
    fn set_phase(&mut self, phase: Phase, message: impl Into<String>) {
        let message = message.into();
        if self.status.phase != phase {
            self.status.phase = phase;
            self.status.last_transition = Some(self.now);
            let kind = if phase == Phase::Failed {
                EventKind::Warning
            } else {
                EventKind::Normal
            };
            self.event(kind, &phase.to_string(), message.clone());
            self.again = true;
        }
        self.status.message = message;
    }

    /// The revision being released (empty when none is).
    fn canary_revision(&self) -> String {
        self.status
            .release
            .canary_revision
            .clone()
            .unwrap_or_default()
    }

    /// Applies `route`, which relies on `replicas` available canary replicas.
    fn set_route(&mut self, route: crate::traffic::RouteState, replicas: u32) {
        if self.status.routing.route != route {
            self.status.routing.route_verified = false;
        }
        self.status.routing.route = route.clone();
        self.status.routing.routed_replicas = if route.is_stable_only() { 0 } else { replicas };
        self.emit(Action::SetRoute(route));
    }

    /// When the shell should run again.
    fn requeue_after(&self) -> Option<SignedDuration> {
        if self.again {
            return Some(SignedDuration::ZERO);
        }
        let status = &self.status;
        match status.phase {
            Phase::Initializing => Some(SignedDuration::ZERO),
            Phase::Initialized | Phase::Succeeded | Phase::Failed => self
                .hooks_wakeup()
                .map(|at| at.duration_since(self.now).max(SignedDuration::ZERO)),
            Phase::Promoting | Phase::Finalising => Some(POLL_INTERVAL),
            Phase::Progressing | Phase::Paused => {
                let stage = match status.stage {
                    crate::engine::status::StepStage::Gating => self.next_gate_wakeup(),
                    _ => self.now.checked_add(POLL_INTERVAL).ok(),
                };
                [stage, self.sequential_wakeup()]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.duration_since(self.now).max(SignedDuration::ZERO))
            }
        }
    }
}
