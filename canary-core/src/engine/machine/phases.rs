//! Observations: adopting the stable workload, starting, restarting and cancelling releases,
//! and the stages of a step, promotion and finalising.

use super::{Action, Engine, EventKind, Observation, Verification};
use crate::api::plan::Finish;
use crate::api::spec::HookType;
use crate::engine::status::{AnalysisState, GateState, Phase, ReleaseState, StepStage};
use crate::traffic::RouteState;

/// The condition saying whether the route is in effect, set once a provider says why one is
/// not.
pub const ROUTE_CONDITION: &str = "RouteInEffect";

impl Engine<'_> {
    pub(super) fn observed(&mut self, seen: &Observation) {
        match self.status.phase {
            Phase::Initializing => {
                self.status.stable_revision = Some(seen.workload.stable.revision.clone());
                self.set_phase(
                    Phase::Initialized,
                    format!("stable revision {} adopted", seen.workload.stable.revision),
                );
                self.idle(seen);
            }
            Phase::Initialized | Phase::Succeeded | Phase::Failed => self.idle(seen),
            Phase::Progressing | Phase::Paused => self.active(seen),
            Phase::Promoting => self.promoting(seen),
            Phase::Finalising => self.finalising(seen),
        }
    }

    /// No release under way: keep everything on stable, and start a release when the user asks
    /// for a new revision.
    fn idle(&mut self, seen: &Observation) {
        self.keep_stable(seen);
        let stable = &seen.workload.stable.revision;
        let desired = &seen.workload.desired_revision;
        self.status.stable_revision = Some(stable.clone());
        if desired == stable {
            self.status.release.canary_revision = None;
            self.status.gate.hooks_called_at = None;
            if self.status.phase == Phase::Failed {
                self.set_phase(
                    Phase::Initialized,
                    format!("the workload was reverted to the stable revision {stable}"),
                );
            }
            return;
        }
        // A revision that already failed, or passed a release that does not promote, is not
        // released again until the user asks for another (or retries).
        let judged = matches!(self.status.phase, Phase::Failed | Phase::Succeeded)
            && self.status.release.canary_revision.as_ref() == Some(desired);
        if judged {
            return;
        }
        if self.has_hooks(HookType::ConfirmRollout) {
            let desired = desired.clone();
            self.call_gate_hooks(HookType::ConfirmRollout, &desired);
            // Until the webhooks answer, the message says what the rollout waits for; once they
            // said no, it says why (see `hooked`) until their next answer.
            if self.status.gate.hooks_called_at.is_none() {
                self.status.message =
                    format!("waiting for confirm-rollout webhooks to release {desired}");
            }
        } else {
            self.start(desired.clone());
        }
    }

    /// Repairs drift while idle: traffic only to stable, no canary.
    fn keep_stable(&mut self, seen: &Observation) {
        let shown_elsewhere = seen
            .route
            .as_ref()
            .is_some_and(|route| !route.is_stable_only());
        if !self.status.routing.route.is_stable_only()
            || shown_elsewhere
            || seen.verified == Verification::No
        {
            self.set_route(RouteState::stable(), 0);
        }
        if seen.workload.canary.is_some() {
            self.emit(Action::RemoveCanary);
        }
    }

    /// Starts (or restarts) a release of `revision` from the first step.
    pub(super) fn start(&mut self, revision: String) {
        self.status.release = ReleaseState {
            canary_revision: Some(revision.clone()),
            ..ReleaseState::default()
        };
        self.begin_attempt("a new revision is being released");
        self.set_phase(
            Phase::Progressing,
            format!("new revision {revision} detected; starting the release"),
        );
    }

    /// Starts an attempt at the current release from its first step: a new release, or a retry
    /// of a failed one. The attempt's analysis starts afresh (counts, measurements and the
    /// sequential judges measuring from now) and no user pause carries over into it.
    pub(super) fn begin_attempt(&mut self, why: &str) {
        self.status.release.started_at = Some(self.now);
        self.status.analysis = AnalysisState {
            sequential: self.fresh_sequential(),
            ..AnalysisState::default()
        };
        self.status.commands.user_paused = false;
        self.status
            .set_condition("Promoted", false, "Progressing", why, self.now);
        self.enter_step(0);
    }

    /// Enters step `index` at its first stage, with a fresh gate.
    pub(super) fn enter_step(&mut self, index: u32) {
        self.status.step = index;
        self.status.stage = StepStage::Scaling;
        self.status.waiting_since = Some(self.now);
        self.status.gate = GateState::default();
        self.again = true;
    }

    /// The release is over (succeeded, rolled back or cancelled): the answers of the webhooks
    /// it waited on are forgotten, so the next wait (`confirm-rollout` for a new revision)
    /// starts with no answer and asks at once.
    fn end_release(&mut self) {
        self.status.gate.hooks_called_at = None;
    }

    fn active(&mut self, seen: &Observation) {
        let desired = &seen.workload.desired_revision;
        if *desired == seen.workload.stable.revision {
            let message = format!(
                "the workload was reverted to the stable revision {desired}; release cancelled"
            );
            self.set_route(RouteState::stable(), 0);
            self.emit(Action::RemoveCanary);
            self.status.release.canary_revision = None;
            self.end_release();
            self.status
                .set_condition("Promoted", false, "Cancelled", &message, self.now);
            self.set_phase(Phase::Initialized, message);
            return;
        }
        if self.status.release.canary_revision.as_ref() != Some(desired) {
            self.event(
                EventKind::Normal,
                "Restarted",
                format!(
                    "new revision {desired} during the release; restarting from the first step"
                ),
            );
            if !self.status.routing.route.is_stable_only() {
                self.set_route(RouteState::stable(), 0);
            }
            self.start(desired.clone());
            return;
        }
        if self.pull_traffic_if_unready(seen) {
            return;
        }
        match self.status.stage {
            StepStage::Scaling => {
                self.repair_drift(seen);
                self.scaling(seen);
            }
            StepStage::Gating => {
                self.check_route(seen);
                self.keep_canary_scaled(seen);
                if matches!(self.status.phase, Phase::Progressing | Phase::Paused) {
                    self.gating();
                }
            }
        }
        if matches!(self.status.phase, Phase::Progressing | Phase::Paused) {
            self.measure_sequential();
        }
    }

    /// The route must stay as applied; someone or something that changed it is overruled.
    fn repair_drift(&mut self, seen: &Observation) {
        let drifted = seen
            .route
            .as_ref()
            .is_some_and(|route| !route.same_as(&self.status.routing.route));
        if drifted {
            self.event(
                EventKind::Warning,
                "RouteDrift",
                format!(
                    "the route was changed outside the rollout; applying {} again",
                    describe_route(&self.status.routing.route)
                ),
            );
            self.emit(Action::SetRoute(self.status.routing.route.clone()));
        } else if seen.verified == Verification::No {
            // The same route, but its objects are not what it renders to now: the world moved
            // under it (e.g. promotion replaces the stable pods a Service is narrowed to).
            // Applying again is idempotent and brings them up to date.
            self.emit(Action::SetRoute(self.status.routing.route.clone()));
        }
    }

    /// Traffic never goes to a canary that is not ready: when fewer canary replicas are
    /// available than the applied route relies on, all traffic goes back to stable and the step
    /// scales again.
    fn pull_traffic_if_unready(&mut self, seen: &Observation) -> bool {
        if self.status.routing.route.is_stable_only() {
            return false;
        }
        let canary = seen.workload.canary.as_ref().filter(|canary| {
            Some(&canary.revision) == self.status.release.canary_revision.as_ref()
        });
        // Counts its controller has not caught up with say nothing about the pods.
        if canary.is_some_and(|canary| canary.stale) {
            return false;
        }
        let available = canary.map_or(0, |canary| canary.available);
        if available >= self.status.routing.routed_replicas {
            return false;
        }
        self.event(
            EventKind::Warning,
            "CanaryUnready",
            format!(
                "{available} canary replicas available, the route relies on {}; all traffic back to stable",
                self.status.routing.routed_replicas
            ),
        );
        self.set_route(RouteState::stable(), 0);
        if matches!(self.status.phase, Phase::Progressing | Phase::Paused) {
            let step = self.status.step;
            self.enter_step(step);
        }
        true
    }

    /// Canary replicas for the current step, then route once enough are available.
    /// Canary replicas for the current step, then its route once enough are available. The
    /// canary is scaled for the larger of this step and the next, so that traffic can move the
    /// moment this step's gate passes.
    pub(super) fn scaling(&mut self, seen: &Observation) {
        let Some(step) = self.plan.step(self.status.step) else {
            return;
        };
        let Some(revision) = self.status.release.canary_revision.clone() else {
            return;
        };
        if !self.isolated(seen, &revision) {
            return;
        }
        let (replicas, needed) = self.step_replicas(seen);
        let current = seen
            .workload
            .canary
            .as_ref()
            .filter(|canary| canary.revision == revision);
        let available = current.map_or(0, |canary| canary.available);
        let scale = current.is_none_or(|canary| canary.desired != replicas);
        let ready = available >= needed;
        let shrinking = replicas < self.status.routing.routed_replicas;
        if !ready {
            if scale {
                if shrinking {
                    // The canary cannot take this step's route yet, and the route in effect
                    // relies on more replicas than it will have: traffic goes back first.
                    self.set_route(RouteState::stable(), 0);
                }
                self.emit(Action::EnsureCanary { revision, replicas });
            }
            self.status.message = format!(
                "step {}: waiting for the canary ({available}/{needed} available)",
                self.status.step.saturating_add(1)
            );
            self.check_deadline("the canary to become available");
            return;
        }
        if self.status.step == 0
            && !self.status.release.pre_rollout_passed
            && self.has_hooks(HookType::PreRollout)
        {
            if scale {
                self.emit(Action::EnsureCanary {
                    revision: revision.clone(),
                    replicas,
                });
            }
            self.call_gate_hooks(HookType::PreRollout, &revision);
            self.status.message = "waiting for the pre-rollout webhooks".to_owned();
            return;
        }
        // Growing: scale, then route (the new pods are not needed by this route). Shrinking:
        // route to this step's lighter weight first, then scale down.
        if scale && !shrinking {
            self.emit(Action::EnsureCanary {
                revision: revision.clone(),
                replicas,
            });
        }
        self.enter_gate(step.route.clone(), needed, seen);
        if scale && shrinking {
            self.emit(Action::EnsureCanary { revision, replicas });
        }
    }

    /// Stable traffic is kept from the canary's pods before any of them starts: the canary
    /// workload is first made with no replicas and the stable-only route applied and shown
    /// with it in place (providers that route by Service narrow the stable Service then, since
    /// canary pods carry its labels). True once that holds, or when the canary already runs.
    fn isolated(&mut self, seen: &Observation, revision: &str) -> bool {
        let Some(canary) = &seen.workload.canary else {
            self.emit(Action::EnsureCanary {
                revision: revision.to_owned(),
                replicas: 0,
            });
            self.set_route(RouteState::stable(), 0);
            self.status.message = format!(
                "step {}: keeping stable traffic from the canary before it starts",
                self.status.step.saturating_add(1)
            );
            return false;
        };
        if canary.desired > 0 {
            return true;
        }
        let shown = seen.verified != Verification::No
            && seen.route.as_ref().is_none_or(RouteState::is_stable_only);
        if shown && self.status.routing.route.is_stable_only() {
            return true;
        }
        self.set_route(RouteState::stable(), 0);
        self.check_deadline("stable traffic to be kept from the canary");
        false
    }

    /// The canary replicas the current step wants (the larger of its own and the next step's)
    /// and how many of them must be available for its route.
    fn step_replicas(&self, seen: &Observation) -> (u32, u32) {
        let stable = seen.workload.stable.desired;
        let Some(step) = self.plan.step(self.status.step) else {
            return (0, 0);
        };
        let own = step.replicas.resolve(stable);
        let next = self
            .plan
            .step(self.status.step.saturating_add(1))
            .map_or(0, |next| next.replicas.resolve(stable));
        (own.max(next), step.readiness.needed(own))
    }

    /// At the gate the canary keeps the size the step wants (a scale lost in a crash, or
    /// changed by someone else, is made again).
    fn keep_canary_scaled(&mut self, seen: &Observation) {
        let Some(revision) = self.status.release.canary_revision.clone() else {
            return;
        };
        let (replicas, _) = self.step_replicas(seen);
        let current = seen
            .workload
            .canary
            .as_ref()
            .filter(|canary| canary.revision == revision);
        if current.is_some_and(|canary| canary.desired != replicas) {
            self.emit(Action::EnsureCanary { revision, replicas });
        }
    }

    /// Applies the step's route and starts its gate; the gate passes only once the route is
    /// verified.
    fn enter_gate(&mut self, route: RouteState, needed: u32, seen: &Observation) {
        let shown = seen.verified != Verification::No
            && seen.route.as_ref().is_some_and(|seen| seen.same_as(&route));
        if self.status.routing.route != route || !shown {
            self.set_route(route.clone(), needed);
        } else {
            self.status.routing.routed_replicas = needed;
        }
        self.status.stage = StepStage::Gating;
        self.status.gate.gate_since = Some(self.now);
        self.status.waiting_since = None;
        self.event(
            EventKind::Normal,
            "StepReached",
            format!(
                "step {}/{}: {}",
                self.status.step.saturating_add(1),
                self.plan.steps.len(),
                describe_route(&route)
            ),
        );
        self.gating();
    }

    /// At the gate: the route must be (and stay) in effect; while it waits, the provider's
    /// reason (when it gives one) is the `RouteInEffect` condition. A route that is not in effect is
    /// applied again and waited for until the progress deadline; a route someone changed is
    /// overruled.
    fn check_route(&mut self, seen: &Observation) {
        let written = seen
            .route
            .as_ref()
            .is_none_or(|route| route.same_as(&self.status.routing.route));
        let shown = written && seen.verified != Verification::No;
        if shown {
            self.status.routing.route_verified = true;
            self.status.gate.route_reapplied_at = None;
            if self.status.condition(ROUTE_CONDITION).is_some() {
                self.status.set_condition(
                    ROUTE_CONDITION,
                    true,
                    "InEffect",
                    "the route is in effect",
                    self.now,
                );
            }
            return;
        }
        if let Some(why) = seen.route_pending.as_deref().filter(|_| written) {
            self.status
                .set_condition(ROUTE_CONDITION, false, "NotInEffect", why, self.now);
        }
        if !written {
            self.event(
                EventKind::Warning,
                "RouteDrift",
                format!(
                    "the route in effect is not the one applied; applying {} again",
                    describe_route(&self.status.routing.route)
                ),
            );
            // A new wait only once the last re-applied route was seen in effect (which clears
            // it): a route changed again before it ever took effect (someone fighting canary
            // faster than it looks) runs out of time from the first re-apply.
            if self.status.gate.route_reapplied_at.is_none() {
                self.status.gate.route_reapplied_at = Some(self.now);
            }
            self.status.routing.route_verified = false;
            self.emit(Action::SetRoute(self.status.routing.route.clone()));
        } else if seen.verified == Verification::No {
            // Written as asked but not in effect (a provider's objects only partly right, such
            // as a stale subset): applying again is idempotent and repairs what is missing.
            self.emit(Action::SetRoute(self.status.routing.route.clone()));
        }
        // The gate started when the route was applied: its deadline counts from there, or from
        // the last time it was applied again over someone's change (a GitOps tool putting its
        // own version back late in a step is no reason to give up at once).
        let applied = self
            .status
            .gate
            .gate_since
            .max(self.status.gate.route_reapplied_at)
            .unwrap_or(self.now);
        if !self.status.routing.route_verified
            && self.now.duration_since(applied) >= self.plan.progress_deadline
        {
            self.rollback(
                "ProgressDeadlineExceeded",
                format!(
                    "waited {} for the route to take effect, longer than the progress deadline; rolled back",
                    crate::api::duration::format_duration(self.plan.progress_deadline)
                ),
            );
        }
    }

    /// Every step passed: promote, or discard a mirror that does not promote.
    pub(super) fn finish_steps(&mut self) {
        match self.plan.finish {
            Finish::Promote => self.begin_promotion(),
            Finish::Discard => self.begin_finalising(
                "the analysis passed; the new version is not promoted (promote: false)",
            ),
        }
    }

    pub(super) fn begin_promotion(&mut self) {
        let Some(revision) = self.status.release.canary_revision.clone() else {
            return;
        };
        self.status.waiting_since = Some(self.now);
        // Look again at once: promotion goes on from what the world shows.
        self.again = true;
        self.set_phase(
            Phase::Promoting,
            format!("promoting revision {revision} to stable"),
        );
    }

    fn promoting(&mut self, seen: &Observation) {
        let Some(revision) = self.status.release.canary_revision.clone() else {
            return;
        };
        if !self.pull_traffic_if_unready(seen) {
            self.repair_drift(seen);
        }
        let stable = &seen.workload.stable;
        if stable.revision != revision {
            if self.handed_to_canary(seen, &revision) {
                self.emit(Action::PromoteStable { revision });
            }
            return;
        }
        if stable.available >= stable.desired {
            self.begin_finalising("stable runs the new revision; routing all traffic to stable");
        } else {
            self.status.message = format!(
                "waiting for stable to run {revision} ({}/{} available)",
                stable.available, stable.desired
            );
        }
    }

    /// Before the stable workload takes the new revision (and replaces its pods), the canary
    /// takes all traffic at full size, when the provider splits by weight: stable pods can then
    /// come and go without a request depending on them, and traffic only ever moves towards
    /// the new version. True once that route is shown (or the provider cannot weigh).
    fn handed_to_canary(&mut self, seen: &Observation, revision: &str) -> bool {
        if !self.plan.capabilities().weights {
            return true;
        }
        let all = RouteState::weighted(RouteState::stable().total);
        let shown = seen.verified != Verification::No
            && seen.route.as_ref().is_none_or(|route| route.same_as(&all));
        if self.status.routing.route == all && shown {
            return true;
        }
        let full = seen.workload.stable.desired.max(1);
        let canary = seen
            .workload
            .canary
            .as_ref()
            .filter(|canary| canary.revision == revision);
        let available = canary.map_or(0, |canary| canary.available);
        if canary.is_none_or(|canary| canary.desired < full) {
            self.emit(Action::EnsureCanary {
                revision: revision.to_owned(),
                replicas: full,
            });
        }
        if available < full {
            self.status.message = format!(
                "promoting {revision}: waiting for the canary at full size ({available}/{full} available)"
            );
        } else {
            self.set_route(all, full);
            self.status.message =
                format!("promoting {revision}: all traffic to the canary while stable takes it");
        }
        self.check_deadline("the canary to take all traffic");
        false
    }

    fn begin_finalising(&mut self, message: &str) {
        self.set_route(RouteState::stable(), 0);
        self.status.waiting_since = Some(self.now);
        self.set_phase(Phase::Finalising, message);
    }

    fn finalising(&mut self, seen: &Observation) {
        let shown = seen.verified != Verification::No
            && seen.route.as_ref().is_none_or(RouteState::is_stable_only);
        if !self.status.routing.route.is_stable_only() || !shown {
            self.set_route(RouteState::stable(), 0);
            return;
        }
        if seen.workload.canary.is_some() {
            self.emit(Action::RemoveCanary);
            return;
        }
        self.succeed();
    }

    fn succeed(&mut self) {
        let revision = self.canary_revision();
        let message = match self.plan.finish {
            Finish::Promote => {
                self.status.release.canary_revision = None;
                self.status.stable_revision = Some(revision.clone());
                format!("revision {revision} promoted; the release succeeded")
            }
            Finish::Discard => {
                format!("revision {revision} passed its analysis and was removed without promotion")
            }
        };
        self.status.waiting_since = None;
        self.end_release();
        self.status
            .set_condition("Promoted", true, "Succeeded", &message, self.now);
        self.inform_hooks(HookType::PostRollout, &revision);
        self.set_phase(Phase::Succeeded, message);
    }

    /// Rolls back at once: all traffic to stable, canary removed, stable untouched.
    pub(super) fn rollback(&mut self, reason: &str, message: String) {
        self.set_route(RouteState::stable(), 0);
        self.emit(Action::RemoveCanary);
        self.status.waiting_since = None;
        self.end_release();
        self.status
            .set_condition("Promoted", false, reason, &message, self.now);
        if let Some(revision) = self.status.release.canary_revision.clone() {
            self.inform_hooks(HookType::PostRollout, &revision);
        }
        self.set_phase(Phase::Failed, message);
    }

    /// Fails the release when waiting for `what` has taken longer than the progress deadline.
    fn check_deadline(&mut self, what: &str) {
        let since = *self.status.waiting_since.get_or_insert(self.now);
        let deadline = self.plan.progress_deadline;
        if self.now.duration_since(since) >= deadline {
            self.rollback(
                "ProgressDeadlineExceeded",
                format!(
                    "waited {} for {what}, longer than the progress deadline; rolled back",
                    crate::api::duration::format_duration(deadline)
                ),
            );
        }
    }
}

/// `weight 20%`, `weight 0% + 1 match`, `mirror 50%`.
pub(crate) fn describe_route(route: &RouteState) -> String {
    let mut text = format!("weight {}%", route.weight_percent());
    if !route.matches.is_empty() {
        text.push_str(&format!(" + {} match(es)", route.matches.len()));
    }
    if let Some(mirror) = route.mirror {
        text.push_str(&format!(", mirror {mirror}%"));
    }
    text
}
