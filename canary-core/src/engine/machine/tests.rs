//! The engine's own state: what a retry starts afresh, what a resume may set going, and how the
//! `confirm-rollout` wait is told from its refusal without reading the message.

use jiff::{SignedDuration, Timestamp};

use super::{
    Action, Command, HookResult, Input, Observation, Transition, Verification, WorkloadObservation,
    WorkloadState, transition,
};
use crate::api::plan::RolloutPlan;
use crate::api::spec::HookType;
use crate::engine::providers::HookOutcome;
use crate::engine::status::{
    GateState, Phase, ReleaseState, RolloutStatus, SequentialState, StepStage, Verdict,
};

const T0: Timestamp = Timestamp::constant(1_767_225_600, 0);

fn at(seconds: i64) -> Timestamp {
    T0.checked_add(SignedDuration::from_secs(seconds)).unwrap()
}

fn plan(analysis: &str) -> RolloutPlan {
    crate::api::load::plan_from_yaml(&format!(
        "apiVersion: canary.rs/v1alpha1\nkind: Rollout\nmetadata: {{name: podinfo, namespace: test}}\nspec:\n  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}\n  service: {{name: podinfo, port: 9898}}\n  trafficRouting: {{istio: {{}}}}\n  strategy: {{canary: {{stepWeight: 25, maxWeight: 50}}}}\n  analysis:\n    interval: 1m\n{analysis}"
    ))
    .unwrap()
}

fn threshold() -> RolloutPlan {
    plan("    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n")
}

fn hooks(kinds: &[&str]) -> RolloutPlan {
    let list: String = kinds
        .iter()
        .map(|kind| {
            format!("    - {{name: {kind}, type: {kind}, url: 'http://hooks.test/{kind}'}}\n")
        })
        .collect();
    plan(&format!("    webhooks:\n{list}"))
}

/// A release of `rev-2` that failed at its second step's gate.
fn failed() -> RolloutStatus {
    RolloutStatus {
        phase: Phase::Failed,
        stable_revision: Some("rev-1".to_owned()),
        release: ReleaseState {
            canary_revision: Some("rev-2".to_owned()),
            started_at: Some(T0),
            pre_rollout_passed: true,
        },
        step: 1,
        stage: StepStage::Gating,
        ..RolloutStatus::default()
    }
}

fn command(
    plan: &RolloutPlan,
    status: RolloutStatus,
    command: Command,
    now: Timestamp,
) -> Transition {
    let id = status.commands.last_command.saturating_add(1);
    transition(plan, status, &Input::Command { id, command }, now)
}

/// Stable runs `rev-1` with 4 replicas, the user asks for `desired`, no canary.
fn observe(plan: &RolloutPlan, status: RolloutStatus, desired: &str, now: Timestamp) -> Transition {
    let stable = WorkloadState {
        revision: "rev-1".to_owned(),
        desired: 4,
        ready: 4,
        available: 4,
        stale: false,
    };
    let seen = Observation {
        workload: WorkloadObservation {
            desired_revision: desired.to_owned(),
            stable,
            canary: None,
            stable_reported_as: None,
        },
        route: None,
        verified: Verification::Unknown,
        route_pending: None,
    };
    transition(plan, status, &Input::Observed(seen), now)
}

fn hooks_called(actions: &[Action], kind: HookType) -> Vec<String> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::CallHooks {
                hook_type,
                revision,
            } if *hook_type == kind => Some(revision.clone()),
            _ => None,
        })
        .collect()
}

fn refused(events: &[Action]) -> bool {
    events
        .iter()
        .any(|action| matches!(action, Action::Event(event) if event.reason == "CommandRefused"))
}

#[test]
fn a_retry_keeps_the_release_and_starts_a_fresh_attempt() {
    let plan = threshold();
    let mut status = failed();
    status.analysis.failed_checks = 2;
    status.gate.iterations = 3;
    status.set_condition("Promoted", false, "AnalysisFailed", "rolled back", T0);
    let retried = command(&plan, status, Command::Retry, at(60)).status;
    assert_eq!(retried.phase, Phase::Progressing);
    assert_eq!((retried.step, retried.stage), (0, StepStage::Scaling));
    assert_eq!(
        retried.release,
        ReleaseState {
            canary_revision: Some("rev-2".to_owned()),
            started_at: Some(at(60)),
            pre_rollout_passed: true,
        },
        "the same release: its pre-rollout webhooks are not asked again"
    );
    assert_eq!(retried.analysis.failed_checks, 0);
    assert_eq!(retried.gate, GateState::default());
    let promoted = retried.condition("Promoted").unwrap();
    assert_eq!(
        (promoted.status.as_str(), promoted.reason.as_str()),
        ("False", "Progressing"),
        "a retried release is progressing, not failed"
    );
}

/// A pause set before the release failed would hold the retried release at its first gate,
/// with nothing in the retry saying so.
#[test]
fn a_retry_does_not_carry_over_a_user_pause() {
    let plan = threshold();
    let mut status = failed();
    status.commands.user_paused = true;
    let retried = command(&plan, status, Command::Retry, at(60)).status;
    assert_eq!(retried.phase, Phase::Progressing);
    assert!(!retried.commands.user_paused);
}

/// `resume` undoes a pause of a release under way; a pause left in a release that failed holds
/// nothing, and resuming it must not set the failed release going again from its gate.
#[test]
fn resume_does_not_set_a_failed_release_going_again() {
    let plan = threshold();
    let mut status = failed();
    status.commands.user_paused = true;
    let resumed = command(&plan, status, Command::Resume, at(60));
    assert_eq!(resumed.status.phase, Phase::Failed);
    assert!(refused(&resumed.actions), "{:?}", resumed.actions);
}

/// A pause left when `promote-full` took the release to promotion must not put it back to
/// stepping.
#[test]
fn resume_does_not_interrupt_a_promotion() {
    let plan = threshold();
    let mut status = failed();
    status.phase = Phase::Promoting;
    status.commands.user_paused = true;
    let resumed = command(&plan, status, Command::Resume, at(60));
    assert_eq!(resumed.status.phase, Phase::Promoting);
    assert!(refused(&resumed.actions), "{:?}", resumed.actions);
}

/// The sequential judges' evidence belongs to an attempt: kept across a retry, a `fail` verdict
/// would stop them measuring the retried release at all.
#[test]
fn a_retry_starts_the_sequential_judges_afresh() {
    let plan = plan("    metrics:\n    - {name: request-success-rate, judge: sequential}\n");
    let mut status = failed();
    status.analysis.sequential = vec![SequentialState {
        metric: "request-success-rate".to_owned(),
        llr: 4.0,
        since: T0,
        canary_requests: 1000,
        canary_errors: 80,
        stable_requests: 1000,
        stable_errors: 1,
        pending: crate::engine::machine::ErrorCounts::default(),
        verdict: Some(Verdict::Fail),
    }];
    let retried = command(&plan, status, Command::Retry, at(600)).status;
    let judge = &retried.analysis.sequential[0];
    assert_eq!(
        (judge.llr, judge.since, judge.verdict, judge.canary_requests),
        (0.0, at(600), None, 0)
    );
    let later = observe(&plan, retried, "rev-2", at(660));
    assert!(
        later
            .actions
            .iter()
            .any(|action| matches!(action, Action::RunAnalysis { gate: false, .. })),
        "the judge measures the retried release: {:?}",
        later.actions
    );
}

#[test]
fn the_confirm_rollout_wait_says_why_it_holds_until_the_next_answer() {
    let plan = hooks(&["confirm-rollout"]);
    let status = observe(&plan, RolloutStatus::default(), "rev-1", T0).status;
    assert_eq!(status.phase, Phase::Initialized);
    let waiting = observe(&plan, status, "rev-2", at(10));
    assert_eq!(
        hooks_called(&waiting.actions, HookType::ConfirmRollout),
        ["rev-2"]
    );
    assert_eq!(
        waiting.status.message,
        "waiting for confirm-rollout webhooks to release rev-2"
    );
    let no = Input::Hooked {
        hook_type: HookType::ConfirmRollout,
        revision: "rev-2".to_owned(),
        results: vec![HookResult {
            name: "freeze".to_owned(),
            hook_type: HookType::ConfirmRollout,
            outcome: HookOutcome::Fail("change freeze".to_owned()),
        }],
    };
    let refused = transition(&plan, waiting.status, &no, at(10)).status;
    assert_eq!(refused.gate.hooks_called_at, Some(at(10)));
    let why = "waiting for confirm-rollout: webhook freeze: change freeze";
    assert_eq!(refused.message, why);
    let still = observe(&plan, refused, "rev-2", at(30));
    assert!(hooks_called(&still.actions, HookType::ConfirmRollout).is_empty());
    assert_eq!(
        still.status.message, why,
        "the refusal stays until the next answer"
    );
    let again = observe(&plan, still.status, "rev-2", at(70));
    assert_eq!(
        hooks_called(&again.actions, HookType::ConfirmRollout),
        ["rev-2"],
        "asked again one interval after the refusal"
    );
}

/// The webhooks' answers belong to the point the rollout waited at: once the release ends, a
/// new revision's `confirm-rollout` webhooks are asked at once (not an interval after the last
/// gate's webhooks answered), and the message says what the rollout waits for.
#[test]
fn a_release_that_ends_at_a_webhook_gate_leaves_no_answer_to_the_next_wait() {
    let plan = hooks(&["confirm-rollout", "confirm-promotion"]);
    let mut status = failed();
    status.phase = Phase::Progressing;
    status.gate.hooks_called_at = Some(at(0));
    let aborted = command(&plan, status, Command::Abort, at(10)).status;
    assert_eq!(aborted.phase, Phase::Failed);
    assert_eq!(aborted.gate.hooks_called_at, None);
    let next = observe(&plan, aborted, "rev-3", at(20));
    assert_eq!(
        hooks_called(&next.actions, HookType::ConfirmRollout),
        ["rev-3"]
    );
    assert_eq!(
        next.status.message,
        "waiting for confirm-rollout webhooks to release rev-3"
    );
}

/// An answer that arrives after the rollout moved on is not taken for an answer at the point it
/// waits at now.
#[test]
fn a_late_answer_does_not_hold_back_the_current_gate_webhooks() {
    let plan = hooks(&["confirm-rollout", "pre-rollout"]);
    let status = observe(&plan, RolloutStatus::default(), "rev-1", T0).status;
    let late = Input::Hooked {
        hook_type: HookType::PreRollout,
        revision: "rev-0".to_owned(),
        results: Vec::new(),
    };
    let after = transition(&plan, status, &late, at(5)).status;
    assert_eq!(after.gate.hooks_called_at, None);
    let next = observe(&plan, after, "rev-2", at(10));
    assert_eq!(
        hooks_called(&next.actions, HookType::ConfirmRollout),
        ["rev-2"]
    );
}
