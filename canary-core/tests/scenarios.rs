//! Whole rollouts through the real driver and engine: the seed scenarios, every strategy, every
//! user command, and the failure paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use canary_core::Phase;
use canary_core::engine::machine::{Command, MetricOutcome};
use canary_core::engine::status::StepStage;
use canary_core::traffic::RouteState;
use common::{World, rollout, success_rate};
use jiff::SignedDuration;

const MINUTE: SignedDuration = SignedDuration::from_mins(1);
const HOUR: SignedDuration = SignedDuration::from_hours(1);

fn flagger() -> World {
    World::new(&rollout(
        "kuma",
        "{canary: {stepWeight: 10, maxWeight: 50}}",
        &success_rate(2),
    ))
}

#[tokio::test]
async fn healthy_canary_goes_10_to_50_then_promotes_and_finalises() {
    let world = flagger();
    let first = world.reconcile().await;
    assert_eq!(first.status.phase, Phase::Initialized);
    assert!(
        world.traffic.route().is_stable_only(),
        "routes exist at 0% after init"
    );
    world.workload.set_desired_revision("rev-2");
    let mut phases = vec![Phase::Initialized];
    let mut end = None;
    for _ in 0..1000 {
        let pass = world.reconcile().await;
        for point in &pass.trail {
            if phases.last() != Some(&point.phase) {
                phases.push(point.phase);
            }
        }
        if pass.status.phase.is_terminal() {
            end = Some(pass.status);
            break;
        }
        world.clock.advance(
            pass.requeue_after
                .unwrap_or(MINUTE)
                .max(SignedDuration::from_secs(1)),
        );
    }
    let end = end.expect("the rollout ended");
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(
        phases,
        [
            Phase::Initialized,
            Phase::Progressing,
            Phase::Promoting,
            Phase::Finalising,
            Phase::Succeeded
        ],
        "the Kurator seed's phases"
    );
    // The Kurator seed's weights, then promotion: all traffic to the canary while stable takes
    // the new revision, and back to stable once it runs it.
    assert_eq!(world.weights(), vec![0, 10, 20, 30, 40, 50, 100, 0]);
    assert_eq!(world.workload.promotions(), vec!["rev-2".to_owned()]);
    assert!(world.workload.snapshot().canary.is_none(), "canary removed");
    assert_eq!(end.stable_revision.as_deref(), Some("rev-2"));
    assert_eq!(
        end.condition("Promoted").map(|c| c.status.as_str()),
        Some("True")
    );
}

#[tokio::test]
async fn failing_canary_rolls_back_on_the_failing_verdict() {
    let world = flagger();
    world.start().await;
    world
        .metrics
        .set("request-success-rate", MetricOutcome::Value(80.0));
    let mut failed_at = None;
    for _ in 0..200 {
        let pass = world.reconcile().await;
        if pass.status.analysis.failed_checks == 2 {
            // The pass that judged the second failed check already rolled back.
            assert_eq!(pass.status.phase, Phase::Failed);
            assert!(world.traffic.route().is_stable_only());
            assert!(world.workload.snapshot().canary.is_none());
            failed_at = Some(world.now());
            break;
        }
        world.clock.advance(
            pass.requeue_after
                .unwrap_or(MINUTE)
                .max(SignedDuration::from_secs(1)),
        );
    }
    assert!(failed_at.is_some(), "the canary was never rolled back");
    assert!(
        world.workload.promotions().is_empty(),
        "stable never changed"
    );
    let status = world.status();
    assert_eq!(
        status.condition("Promoted").map(|c| c.reason.as_str()),
        Some("AnalysisFailed")
    );
    assert_eq!(status.analysis.measurements.len(), 2);
    // Failed stays failed (no automatic retry of the same revision).
    world.clock.advance(HOUR);
    assert_eq!(world.reconcile().await.status.phase, Phase::Failed);
    assert!(world.workload.snapshot().canary.is_none());
}

#[tokio::test]
async fn consecutive_counting_forgives_a_failure_followed_by_a_pass() {
    let analysis = success_rate(2).replace(
        "failureLimit: 2",
        "failureLimit: 2\n    failureCounting: Consecutive",
    );
    let world = World::new(&rollout(
        "kuma",
        "{canary: {stepWeight: 10, maxWeight: 50}}",
        &analysis,
    ));
    world.metrics.queue(
        "request-success-rate",
        [80.0, 99.9, 80.0, 99.9].map(MetricOutcome::Value),
    );
    world.start().await;
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(end.analysis.failed_checks, 2);

    let world = World::new(&rollout(
        "kuma",
        "{canary: {stepWeight: 10, maxWeight: 50}}",
        &success_rate(2),
    ));
    world.metrics.queue(
        "request-success-rate",
        [80.0, 99.9, 80.0].map(MetricOutcome::Value),
    );
    world.start().await;
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(
        end.phase,
        Phase::Failed,
        "cumulative counting adds up failures apart"
    );
}

#[tokio::test]
async fn no_data_is_a_failure_unless_the_policy_says_otherwise() {
    for (policy, expected) in [("Fail", Phase::Failed), ("Pass", Phase::Succeeded)] {
        let analysis = format!("{}    noData: {policy}\n", success_rate(1));
        let world = World::new(&rollout(
            "kuma",
            "{canary: {stepWeight: 50, maxWeight: 50}}",
            &analysis,
        ));
        world
            .metrics
            .set("request-success-rate", MetricOutcome::NoData);
        world.start().await;
        assert_eq!(
            world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
            expected,
            "{policy}"
        );
    }
    let analysis = format!("{}    noData: Inconclusive\n", success_rate(1));
    let world = World::new(&rollout(
        "kuma",
        "{canary: {stepWeight: 50, maxWeight: 50}}",
        &analysis,
    ));
    world
        .metrics
        .set("request-success-rate", MetricOutcome::NoData);
    world.start().await;
    let held = world
        .run_until(SignedDuration::from_mins(30), |s| s.phase.is_terminal())
        .await;
    assert_eq!(
        held.phase,
        Phase::Progressing,
        "inconclusive never promotes"
    );
    assert!(held.analysis.inconclusive >= 20);
    assert_eq!(
        held.condition("Analysis").map(|c| c.reason.as_str()),
        Some("Inconclusive")
    );
    world
        .metrics
        .set("request-success-rate", MetricOutcome::Value(99.95));
    assert_eq!(
        world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
        Phase::Succeeded
    );
}

#[tokio::test]
async fn a_metric_error_holds_the_rollout_and_says_why() {
    let world = flagger();
    world.start().await;
    world.metrics.set(
        "request-success-rate",
        MetricOutcome::Error("connection refused".into()),
    );
    let held = world
        .run_until(SignedDuration::from_mins(20), |s| s.phase.is_terminal())
        .await;
    assert_eq!(held.phase, Phase::Progressing);
    assert!(world.workload.promotions().is_empty());
    let condition = held.condition("Analysis").expect("an Analysis condition");
    assert!(
        condition.message.contains("connection refused"),
        "{}",
        condition.message
    );
}

#[tokio::test]
async fn manual_pause_waits_until_promote() {
    let yaml = rollout(
        "nginx",
        "{canary: {steps: [{weight: 20, replicas: 20%, pause: {}}]}}",
        "",
    )
    .replace("nginx: {}", "nginx: {ingress: podinfo}");
    let world = World::new(&yaml);
    world.start().await;
    let waiting = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(waiting.phase, Phase::Paused);
    assert_eq!(waiting.stage, StepStage::Gating);
    assert_eq!(world.traffic.route().weight, 20);
    assert_eq!(
        world.workload.snapshot().canary.map(|c| c.desired),
        Some(1),
        "20% of 5 stable replicas"
    );
    assert!(world.workload.promotions().is_empty());
    let after = world.command(Command::Promote).await;
    assert_eq!(after.status.phase, Phase::Promoting);
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert!(world.traffic.route().is_stable_only());
}

#[tokio::test]
async fn a_revert_to_the_stable_revision_cancels_and_cleans_up() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| s.routing.route.weight == 30)
        .await;
    world.workload.set_desired_revision("rev-1");
    let pass = world.reconcile().await;
    assert_eq!(pass.status.phase, Phase::Initialized);
    assert!(world.traffic.route().is_stable_only());
    assert!(world.workload.snapshot().canary.is_none());
    assert!(world.workload.promotions().is_empty());
    assert_eq!(
        pass.status.condition("Promoted").map(|c| c.reason.as_str()),
        Some("Cancelled")
    );
}

#[tokio::test]
async fn a_new_revision_mid_rollout_restarts_from_the_first_step() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| s.routing.route.weight == 30)
        .await;
    world
        .metrics
        .set("request-success-rate", MetricOutcome::Value(90.0));
    world
        .run_until(HOUR, |s| s.analysis.failed_checks == 1)
        .await;
    world.workload.set_desired_revision("rev-3");
    let pass = world.reconcile().await;
    assert_eq!(
        pass.status.release.canary_revision.as_deref(),
        Some("rev-3")
    );
    assert_eq!(pass.status.step, 0);
    assert_eq!(
        pass.status.analysis.failed_checks, 0,
        "the analysis restarts"
    );
    assert!(
        world.traffic.route().is_stable_only(),
        "no traffic to pods being replaced"
    );
    assert_eq!(
        world.workload.snapshot().canary.map(|c| c.revision),
        Some("rev-3".to_owned())
    );
    world
        .metrics
        .set("request-success-rate", MetricOutcome::Value(99.9));
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(world.workload.promotions(), vec!["rev-3".to_owned()]);
}

#[tokio::test]
async fn an_unready_canary_gets_no_traffic_and_fails_at_the_deadline() {
    let yaml = format!("{}  progressDeadline: 3m\n", success_rate(2));
    let world = World::new(&rollout(
        "kuma",
        "{canary: {stepWeight: 10, maxWeight: 50}}",
        &yaml,
    ));
    world.workload.set_canary_healthy(false);
    world.start().await;
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Failed);
    assert_eq!(
        world.weights(),
        vec![0],
        "traffic never reached the unready canary"
    );
    assert_eq!(
        end.condition("Promoted").map(|c| c.reason.as_str()),
        Some("ProgressDeadlineExceeded")
    );
    let waited = end
        .last_transition
        .unwrap()
        .duration_since(end.release.started_at.unwrap());
    assert!(
        waited >= SignedDuration::from_mins(3) && waited < SignedDuration::from_mins(4),
        "{waited}"
    );
}

#[tokio::test]
async fn traffic_is_pulled_when_the_canary_loses_readiness() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.routing.route.weight == 20 && s.stage == StepStage::Gating
        })
        .await;
    world.workload.break_canary();
    let pass = world.reconcile().await;
    assert!(
        world.traffic.route().is_stable_only(),
        "all traffic back to stable at once"
    );
    assert_eq!(pass.status.stage, StepStage::Scaling);
    assert!(pass.events.iter().any(|e| e.reason == "CanaryUnready"));
}

#[tokio::test]
async fn a_canary_whose_controller_lags_behind_its_spec_keeps_its_traffic() {
    use canary_core::engine::machine::{
        Input, Observation, Verification, WorkloadObservation, WorkloadState, transition,
    };
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.routing.route.weight == 20 && s.stage == StepStage::Gating
        })
        .await;
    let status = world.status();
    let revision = status.release.canary_revision.clone().unwrap_or_default();
    // A Deployment just scaled: its controller has not seen the new generation, so its counts
    // say nothing (0); the pods that serve the route still run.
    let seen = |stale| {
        Input::Observed(Observation {
            workload: WorkloadObservation {
                desired_revision: revision.clone(),
                stable_reported_as: None,
                stable: WorkloadState {
                    revision: "rev-1".into(),
                    desired: 5,
                    ready: 5,
                    available: 5,
                    stale: false,
                },
                canary: Some(WorkloadState {
                    revision: revision.clone(),
                    desired: 2,
                    ready: 0,
                    available: 0,
                    stale,
                }),
            },
            route: Some(status.routing.route.clone()),
            verified: Verification::Yes,
            route_pending: None,
        })
    };
    let lagging = transition(&world.plan, status.clone(), &seen(true), world.now());
    assert_eq!(
        lagging.status.routing.route, status.routing.route,
        "the route stays"
    );
    let pulled = |t: &canary_core::Transition| {
        t.actions.iter().any(|a| {
            matches!(a, canary_core::engine::machine::Action::SetRoute(route) if route.is_stable_only())
        })
    };
    assert!(!pulled(&lagging), "{:?}", lagging.actions);
    // The same counts once its controller caught up mean the pods are gone.
    let unready = transition(&world.plan, status.clone(), &seen(false), world.now());
    assert!(unready.status.routing.route.is_stable_only());
    assert!(pulled(&unready), "{:?}", unready.actions);
}

#[tokio::test]
async fn route_drift_at_the_gate_is_overruled() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.routing.route.weight == 20 && s.stage == StepStage::Gating
        })
        .await;
    world.traffic.tamper(RouteState::weighted(90));
    let pass = world.reconcile().await;
    assert_eq!(world.traffic.route().weight, 20);
    assert!(pass.events.iter().any(|e| e.reason == "RouteDrift"));
}

#[tokio::test]
async fn drift_late_in_a_long_step_is_repaired_not_a_missed_deadline() {
    // A GitOps tool putting its own route back nine minutes into a ten-minute pause: the
    // deadline for the route to take effect again counts from the re-apply.
    let yaml = format!("{}  progressDeadline: 3m\n", success_rate(2));
    let world = World::new(&rollout(
        "kuma",
        "{canary: {steps: [{weight: 30, pause: {duration: 10m}}]}}",
        &yaml,
    ));
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.stage == StepStage::Gating && s.routing.route_verified
        })
        .await;
    world.clock.advance(SignedDuration::from_mins(9));
    world.traffic.tamper(RouteState::stable());
    let pass = world.reconcile().await;
    assert!(pass.events.iter().any(|e| e.reason == "RouteDrift"));
    assert_eq!(
        pass.status.phase,
        Phase::Progressing,
        "{}",
        pass.status.message
    );
    assert_eq!(world.traffic.route().weight, 30, "applied again");
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
}

#[tokio::test]
async fn a_route_changed_again_before_it_ever_takes_effect_runs_out_of_time() {
    use canary_core::engine::machine::{
        Input, Observation, Verification, WorkloadObservation, WorkloadState, transition,
    };
    let yaml = format!("{}  progressDeadline: 3m\n", success_rate(2));
    let world = World::new(&rollout(
        "kuma",
        "{canary: {steps: [{weight: 30, pause: {duration: 10m}}]}}",
        &yaml,
    ));
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.stage == StepStage::Gating && s.routing.route_verified
        })
        .await;
    let status = world.status();
    let revision = status.release.canary_revision.clone().unwrap_or_default();
    let ready = |revision: &str, n| WorkloadState {
        revision: revision.into(),
        desired: n,
        ready: n,
        available: n,
        stale: false,
    };
    // Every look finds someone else's route in place: canary's re-applied one never shows.
    let changed = Input::Observed(Observation {
        workload: WorkloadObservation {
            desired_revision: revision.clone(),
            stable_reported_as: None,
            stable: ready("rev-1", 5),
            canary: Some(ready(&revision, 2)),
        },
        route: Some(RouteState::stable()),
        verified: Verification::Yes,
        route_pending: None,
    });
    let mut now = world
        .now()
        .checked_add(SignedDuration::from_mins(9))
        .unwrap();
    let first = transition(&world.plan, status, &changed, now);
    assert_eq!(
        first.status.phase,
        Phase::Progressing,
        "a late change is repaired"
    );
    now = now.checked_add(SignedDuration::from_mins(2)).unwrap();
    let again = transition(&world.plan, first.status, &changed, now);
    assert_eq!(
        again.status.phase,
        Phase::Progressing,
        "still within the deadline"
    );
    now = now.checked_add(SignedDuration::from_mins(2)).unwrap();
    let out = transition(&world.plan, again.status, &changed, now);
    assert_eq!(out.status.phase, Phase::Failed, "{}", out.status.message);
    assert_eq!(
        out.status.condition("Promoted").map(|c| c.reason.as_str()),
        Some("ProgressDeadlineExceeded")
    );
}

#[tokio::test]
async fn a_route_waiting_to_take_effect_says_why_in_a_condition() {
    use canary_core::engine::machine::{
        Input, Observation, Verification, WorkloadObservation, WorkloadState, transition,
    };
    let world = World::new(&rollout(
        "kuma",
        "{canary: {steps: [{weight: 30, pause: {duration: 10m}}]}}",
        &success_rate(2),
    ));
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.stage == StepStage::Gating && s.routing.route_verified
        })
        .await;
    let mut status = world.status();
    assert!(
        status.condition("RouteInEffect").is_none(),
        "no reason given: no condition"
    );
    status.routing.route_verified = false;
    let revision = status.release.canary_revision.clone().unwrap_or_default();
    let ready = |revision: &str, n| WorkloadState {
        revision: revision.into(),
        desired: n,
        ready: n,
        available: n,
        stale: false,
    };
    let seen = |verified, pending: Option<&str>| {
        Input::Observed(Observation {
            workload: WorkloadObservation {
                desired_revision: revision.clone(),
                stable_reported_as: None,
                stable: ready("rev-1", 5),
                canary: Some(ready(&revision, 2)),
            },
            route: Some(status.routing.route.clone()),
            verified,
            route_pending: pending.map(str::to_owned),
        })
    };
    let why = "HTTPRoute web: parent infra/public: Accepted=False (NotAllowedByListeners): no";
    let waiting = transition(
        &world.plan,
        status.clone(),
        &seen(Verification::No, Some(why)),
        world.now(),
    );
    let condition = waiting.status.condition("RouteInEffect").unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.message.as_str()),
        ("False", why)
    );
    assert!(!waiting.status.routing.route_verified);
    let taken = transition(
        &world.plan,
        waiting.status,
        &seen(Verification::Yes, None),
        world.now(),
    );
    let condition = taken.status.condition("RouteInEffect").unwrap();
    assert_eq!(condition.status, "True");
    assert!(taken.status.routing.route_verified);
}

#[tokio::test]
async fn abort_rolls_back_and_retry_starts_again() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| s.routing.route.weight == 30)
        .await;
    let aborted = world.command(Command::Abort).await;
    assert_eq!(aborted.status.phase, Phase::Failed);
    assert!(world.traffic.route().is_stable_only());
    assert!(world.workload.snapshot().canary.is_none());
    assert_eq!(
        aborted
            .status
            .condition("Promoted")
            .map(|c| c.reason.as_str()),
        Some("Aborted")
    );
    let retried = world.command(Command::Retry).await;
    assert_eq!(retried.status.phase, Phase::Progressing);
    assert_eq!(retried.status.step, 0);
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
}

#[tokio::test]
async fn pause_holds_and_resume_continues() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| s.routing.route.weight == 20)
        .await;
    assert_eq!(
        world.command(Command::Pause).await.status.phase,
        Phase::Paused
    );
    let held = world
        .run_until(SignedDuration::from_mins(30), |s| s.phase.is_terminal())
        .await;
    assert_eq!(held.phase, Phase::Paused);
    assert_eq!(world.traffic.route().weight, 20);
    world.command(Command::Resume).await;
    assert_eq!(
        world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
        Phase::Succeeded
    );
}

#[tokio::test]
async fn a_paused_rollout_still_rolls_back_a_failing_canary() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.routing.route.weight == 20 && s.stage == StepStage::Gating
        })
        .await;
    world.command(Command::Pause).await;
    world
        .metrics
        .set("request-success-rate", MetricOutcome::Value(50.0));
    assert_eq!(
        world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
        Phase::Failed
    );
}

#[tokio::test]
async fn skip_and_promote_full_move_on() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.routing.route.weight == 10 && s.stage == StepStage::Gating
        })
        .await;
    world.command(Command::Skip).await;
    world
        .run_until(HOUR, |s| s.stage == StepStage::Gating)
        .await;
    assert_eq!(world.traffic.route().weight, 20);
    let full = world.command(Command::PromoteFull).await;
    assert!(matches!(
        full.status.phase,
        Phase::Promoting | Phase::Finalising
    ));
    assert_eq!(
        world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
        Phase::Succeeded
    );
    assert_eq!(world.weights(), vec![0, 10, 20, 100, 0]);
}

#[tokio::test]
async fn commands_that_do_not_apply_are_refused_with_a_reason() {
    let world = flagger();
    world.reconcile().await;
    for command in [
        Command::Promote,
        Command::Abort,
        Command::Retry,
        Command::Resume,
    ] {
        let pass = world.command(command).await;
        assert_eq!(pass.status.phase, Phase::Initialized);
        assert!(
            pass.events
                .iter()
                .any(|e| e.reason == "CommandRefused" && e.message.starts_with(command.name())),
            "{command:?}: {:?}",
            pass.events
        );
    }
}

#[tokio::test]
async fn blue_green_switches_all_traffic_once_ready() {
    let world = World::new(&rollout(
        "kuma",
        "{blueGreen: {switch: AfterReady}}",
        &success_rate(1),
    ));
    world.start().await;
    assert_eq!(
        world.workload.snapshot().canary.map(|c| c.desired),
        Some(5),
        "full size"
    );
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(world.weights(), vec![0, 100, 0]);
}

#[tokio::test]
async fn blue_green_immediate_switches_on_the_first_available_pod() {
    let world = World::new(&rollout("kuma", "{blueGreen: {switch: Immediate}}", ""));
    world.start().await;
    world
        .run_until(HOUR, |s| s.routing.route.weight == 100)
        .await;
    assert!(
        world
            .workload
            .snapshot()
            .canary
            .is_some_and(|c| c.available >= 1)
    );
}

#[tokio::test]
async fn blue_green_manual_waits_for_approval_before_switching() {
    let world = World::new(&rollout("kuma", "{blueGreen: {switch: Manual}}", ""));
    world.start().await;
    let waiting = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(waiting.phase, Phase::Paused);
    assert_eq!(
        world.traffic.route().weight,
        0,
        "no switch without approval"
    );
    assert_eq!(
        world.workload.snapshot().canary.map(|c| c.available),
        Some(5)
    );
    world.command(Command::Promote).await;
    assert_eq!(
        world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
        Phase::Succeeded
    );
    assert_eq!(world.weights(), vec![0, 100, 0]);
}

#[tokio::test]
async fn ab_test_routes_matching_requests_for_its_iterations() {
    let strategy = "{abTest: {matches: [{headers: {x-canary: {exact: insider}}}], iterations: 3}}";
    let world = World::new(&rollout("istio", strategy, &success_rate(1)));
    world.start().await;
    let at_gate = world
        .run_until(HOUR, |s| s.stage == StepStage::Gating)
        .await;
    assert_eq!(at_gate.routing.route.weight, 0);
    assert_eq!(world.traffic.route().matches.len(), 1);
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
    let analysed = end
        .release
        .started_at
        .map(|s| end.last_transition.unwrap().duration_since(s))
        .unwrap();
    assert!(
        analysed >= SignedDuration::from_mins(3),
        "three analysis intervals: {analysed}"
    );
}

#[tokio::test]
async fn mirror_without_promotion_keeps_stable_and_is_not_released_again() {
    let strategy = "{mirror: {percent: 50, iterations: 2}}";
    let world = World::new(&rollout("istio", strategy, &success_rate(1)));
    world.start().await;
    world
        .run_until(HOUR, |s| s.stage == StepStage::Gating)
        .await;
    assert_eq!(world.traffic.route().mirror, Some(50));
    assert_eq!(world.traffic.route().weight, 0);
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert!(world.workload.promotions().is_empty(), "promote: false");
    assert!(world.workload.snapshot().canary.is_none());
    world.clock.advance(HOUR);
    let later = world.reconcile().await;
    assert_eq!(
        later.status.phase,
        Phase::Succeeded,
        "the judged revision is not released again"
    );
    assert!(world.workload.snapshot().canary.is_none());
}

#[tokio::test]
async fn a_timed_pause_waits_its_duration() {
    let world = World::new(&rollout(
        "kuma",
        "{canary: {steps: [{weight: 30, pause: {duration: 10m}}]}}",
        "",
    ));
    world.start().await;
    let gate = world
        .run_until(HOUR, |s| s.stage == StepStage::Gating)
        .await;
    let gate_since = gate.gate.gate_since.unwrap();
    let end = world
        .run_until(HOUR, |s| s.phase != Phase::Progressing)
        .await;
    assert_eq!(end.phase, Phase::Promoting);
    let waited = end.last_transition.unwrap().duration_since(gate_since);
    assert_eq!(waited, SignedDuration::from_mins(10));
}

#[tokio::test]
async fn an_idle_reconcile_writes_nothing() {
    let world = flagger();
    world.start().await;
    world
        .run_until(HOUR, |s| {
            s.routing.route.weight == 20 && s.stage == StepStage::Gating
        })
        .await;
    let saves = world.store.saves();
    let routes = world.traffic.history().len();
    for _ in 0..5 {
        world.clock.advance(SignedDuration::from_secs(5));
        world.reconcile().await;
    }
    assert_eq!(
        world.store.saves(),
        saves,
        "no status write between analysis runs"
    );
    assert_eq!(world.traffic.history().len(), routes, "no route write");
}

mod webhooks {
    use super::*;
    use canary_core::engine::providers::HookOutcome;

    fn with_hooks(hooks: &[(&str, &str)]) -> World {
        let list: String = hooks
            .iter()
            .map(|(name, kind)| {
                format!("    - {{name: {name}, type: {kind}, url: 'http://hooks.test/{name}'}}\n")
            })
            .collect();
        let analysis = format!("{}    webhooks:\n{list}", success_rate(2));
        World::new(&rollout(
            "kuma",
            "{canary: {stepWeight: 25, maxWeight: 50}}",
            &analysis,
        ))
    }

    fn no(reason: &str) -> HookOutcome {
        HookOutcome::Fail(format!("403: {reason}"))
    }

    #[tokio::test]
    async fn confirm_rollout_holds_the_release_until_it_passes() {
        let world = with_hooks(&[("gate", "confirm-rollout")]);
        world.webhooks.set("gate", no("change freeze"));
        world.start().await;
        let held = world
            .run_until(SignedDuration::from_mins(10), |s| s.phase.is_terminal())
            .await;
        assert_eq!(held.phase, Phase::Initialized);
        assert!(held.message.contains("change freeze"), "{}", held.message);
        assert!(world.workload.snapshot().canary.is_none());
        let asked = world.webhooks.calls().len();
        assert!(
            (9..=12).contains(&asked),
            "asked once per interval, not per poll: {asked}"
        );
        world.webhooks.set("gate", HookOutcome::Pass);
        assert_eq!(
            world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
            Phase::Succeeded
        );
        let (_, payload) = world.webhooks.calls().pop().unwrap();
        assert_eq!(
            (
                payload.name.as_str(),
                payload.namespace.as_str(),
                payload.revision.as_str()
            ),
            ("podinfo", "test", "rev-2")
        );
    }

    #[tokio::test]
    async fn failing_pre_rollout_hooks_are_failed_checks() {
        let world = with_hooks(&[("smoke", "pre-rollout")]);
        world
            .webhooks
            .set("smoke", HookOutcome::Error("timed out after 60s".into()));
        world.start().await;
        let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
        assert_eq!(end.phase, Phase::Failed);
        assert_eq!(end.analysis.failed_checks, 2);
        assert_eq!(
            world.weights(),
            vec![0],
            "no traffic before pre-rollout passes"
        );
        assert!(end.message.contains("timed out"), "{}", end.message);
    }

    #[tokio::test]
    async fn a_failing_rollout_hook_fails_the_check_and_a_passing_rollback_hook_rolls_back() {
        let world = with_hooks(&[("load", "rollout")]);
        world.webhooks.set("load", no("load test failed"));
        world.start().await;
        let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
        assert_eq!(end.phase, Phase::Failed);
        assert!(end.message.contains("load test failed"), "{}", end.message);

        let world = with_hooks(&[("stop", "rollback")]);
        world.webhooks.set("stop", no("not now"));
        world.start().await;
        world
            .run_until(HOUR, |s| s.routing.route.weight == 50)
            .await;
        world.webhooks.set("stop", HookOutcome::Pass);
        let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
        assert_eq!(end.phase, Phase::Failed);
        assert_eq!(
            end.condition("Promoted").map(|c| c.reason.as_str()),
            Some("RollbackRequested")
        );
        assert_eq!(end.analysis.failed_checks, 0);
    }

    #[tokio::test]
    async fn confirm_hooks_hold_weight_increases_and_promotion() {
        let world = with_hooks(&[
            ("more", "confirm-traffic-increase"),
            ("ship", "confirm-promotion"),
        ]);
        world.webhooks.set("more", no("wait"));
        world.webhooks.set("ship", no("wait"));
        world.start().await;
        let held = world
            .run_until(SignedDuration::from_mins(20), |s| s.phase.is_terminal())
            .await;
        assert_eq!(held.routing.route.weight, 25, "held before the increase");
        assert!(
            held.message.contains("confirm-traffic-increase"),
            "{}",
            held.message
        );
        world.webhooks.set("more", HookOutcome::Pass);
        let held = world
            .run_until(SignedDuration::from_mins(20), |s| s.phase.is_terminal())
            .await;
        assert_eq!(
            (held.phase, held.routing.route.weight),
            (Phase::Progressing, 50),
            "held before promotion"
        );
        assert!(world.workload.promotions().is_empty());
        world.webhooks.set("ship", HookOutcome::Pass);
        assert_eq!(
            world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
            Phase::Succeeded
        );
    }

    #[tokio::test]
    async fn post_rollout_and_event_hooks_inform() {
        let world = with_hooks(&[("done", "post-rollout"), ("chat", "event")]);
        world.webhooks.set("done", no("ignored"));
        world.start().await;
        assert_eq!(
            world.run_until(HOUR, |s| s.phase.is_terminal()).await.phase,
            Phase::Succeeded
        );
        let calls = world.webhooks.calls();
        assert_eq!(calls.iter().filter(|(name, _)| name == "done").count(), 1);
        let events: Vec<_> = calls.iter().filter(|(name, _)| name == "chat").collect();
        assert!(
            events.iter().any(
                |(_, p)| p.metadata.get("eventReason").map(String::as_str) == Some("Succeeded")
            )
        );
        assert!(events.len() >= 5);
    }
}

#[tokio::test]
async fn the_inconclusive_limit_rolls_back_after_runs_in_a_row_without_evidence() {
    let analysis = format!(
        "{}    noData: Inconclusive\n    inconclusiveLimit: 3\n",
        success_rate(2)
    );
    let world = World::new(&rollout(
        "kuma",
        "{canary: {stepWeight: 10, maxWeight: 50}}",
        &analysis,
    ));
    world.metrics.set(
        "request-success-rate",
        MetricOutcome::Error("connection refused".into()),
    );
    world.metrics.queue(
        "request-success-rate",
        [
            MetricOutcome::NoData,
            MetricOutcome::NoData,
            MetricOutcome::Value(99.9),
        ],
    );
    world.start().await;
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(
        end.phase,
        Phase::Failed,
        "two, then a pass resets the count, then three in a row"
    );
    assert_eq!(
        end.condition("Promoted").map(|c| c.reason.as_str()),
        Some("AnalysisInconclusive")
    );
    assert_eq!(
        end.analysis
            .measurements
            .iter()
            .filter(|m| m.verdict == canary_core::Verdict::Inconclusive)
            .count(),
        5
    );
}

#[tokio::test]
async fn stable_traffic_is_isolated_before_any_canary_pod_starts() {
    use canary_core::engine::machine::{
        Action, Input, Observation, Verification, WorkloadObservation, WorkloadState, transition,
    };
    let world = flagger();
    world.reconcile().await;
    let state = |revision: &str, desired| WorkloadState {
        revision: revision.into(),
        desired,
        ready: desired,
        available: desired,
        stale: false,
    };
    let seen = |canary: Option<WorkloadState>, verified| {
        Input::Observed(Observation {
            workload: WorkloadObservation {
                desired_revision: "rev-2".into(),
                stable_reported_as: None,
                stable: state("rev-1", 5),
                canary,
            },
            route: Some(canary_core::RouteState::stable()),
            verified,
            route_pending: None,
        })
    };
    let now = world.now();
    let progressing = transition(
        &world.plan,
        world.status(),
        &seen(None, Verification::Yes),
        now,
    );
    assert_eq!(progressing.status.phase, Phase::Progressing);
    let started = transition(
        &world.plan,
        progressing.status,
        &seen(None, Verification::Yes),
        now,
    );
    let ensured: Vec<u32> = started
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::EnsureCanary { replicas, .. } => Some(*replicas),
            _ => None,
        })
        .collect();
    assert_eq!(
        ensured,
        [0],
        "the canary workload is made without pods first"
    );
    let routed = started
        .actions
        .iter()
        .position(|a| matches!(a, Action::SetRoute(route) if route.is_stable_only()));
    assert!(
        routed.is_some(),
        "the stable-only route is applied with it: {:?}",
        started.actions
    );
    // Not shown yet: no pod starts.
    let waiting = transition(
        &world.plan,
        started.status.clone(),
        &seen(Some(state("rev-2", 0)), Verification::No),
        now,
    );
    assert!(
        !waiting
            .actions
            .iter()
            .any(|a| matches!(a, Action::EnsureCanary { replicas, .. } if *replicas > 0)),
        "{:?}",
        waiting.actions
    );
    // Shown: the step's pods start.
    let shown = transition(
        &world.plan,
        started.status,
        &seen(Some(state("rev-2", 0)), Verification::Yes),
        now,
    );
    assert!(
        shown
            .actions
            .iter()
            .any(|a| matches!(a, Action::EnsureCanary { replicas, .. } if *replicas > 0)),
        "{:?}",
        shown.actions
    );
}

#[tokio::test]
async fn promotion_hands_all_traffic_to_a_full_canary_before_stable_changes() {
    let world = flagger();
    world.start().await;
    world.run_until(HOUR, |s| s.phase == Phase::Promoting).await;
    let mut promoted_at_weight = None;
    let mut canary_at_promotion = None;
    for _ in 0..200 {
        let before = world.workload.promotions().len();
        let pass = world.reconcile().await;
        if before == 0 && world.workload.promotions().len() == 1 {
            promoted_at_weight = Some(world.traffic.route().weight);
            canary_at_promotion = world.workload.snapshot().canary;
        }
        if pass.status.phase.is_terminal() {
            break;
        }
        world.clock.advance(SignedDuration::from_secs(1));
    }
    assert_eq!(
        promoted_at_weight,
        Some(100),
        "stable changes only behind a full route"
    );
    let canary = canary_at_promotion.expect("the canary ran when stable was promoted");
    assert_eq!(canary.desired, 5, "the canary runs at the stable size");
    assert_eq!(canary.available, 5);
    assert_eq!(world.status().phase, Phase::Succeeded);
}

/// Canary and stable pods are different scrape targets, scraped at different moments: one
/// window may see only the canary's counters move, the next only stable's. Evidence needs both,
/// so such windows wait for each other instead of being dropped while the judge moves on.
#[tokio::test]
async fn the_sequential_judge_weighs_windows_where_one_version_moved_together() {
    let world = World::new(&rollout(
        "istio",
        "{canary: {steps: [{weight: 50, pause: {duration: 30m}}]}}",
        "  analysis:\n    scrapeInterval: 10s\n    metrics:\n    - {name: request-success-rate, judge: sequential}\n",
    ));
    let canary_only = canary_core::engine::machine::ErrorCounts {
        canary_requests: 300,
        canary_errors: 15,
        ..Default::default()
    };
    let stable_only = canary_core::engine::machine::ErrorCounts {
        stable_requests: 300,
        stable_errors: 1,
        ..Default::default()
    };
    world.metrics.queue(
        "request-success-rate",
        [canary_only, stable_only]
            .into_iter()
            .cycle()
            .take(40)
            .map(MetricOutcome::Counts),
    );
    world.start().await;
    let end = world.run_until(HOUR, |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Failed, "{}", end.message);
    assert!(end.message.contains("sequential judge"), "{}", end.message);
    let judge = &end.analysis.sequential[0];
    assert!(
        judge.stable_requests > 0 && judge.pending.is_empty(),
        "{judge:?}"
    );
}

/// Pods that name themselves in the mesh's metrics (Istio's `service.istio.io/workload-name`)
/// are queried by that name: the workload says so, and the builtin queries' `{{ stable }}` is
/// it.
#[tokio::test]
async fn metrics_query_stable_by_the_name_its_pods_report() {
    use canary_core::api::plan::MetricPlan;
    use canary_core::engine::machine::WorkloadObservation;
    use canary_core::engine::providers::{MetricProvider, QueryContext, WorkloadProvider};

    struct Named(canary_core::engine::memory::InMemoryWorkload);
    #[async_trait::async_trait]
    impl WorkloadProvider for Named {
        async fn observe(&self) -> canary_core::Result<WorkloadObservation> {
            let mut seen = self.0.observe().await?;
            seen.stable_reported_as = Some("podinfo-prod".into());
            Ok(seen)
        }
        async fn ensure_canary(&self, revision: &str, replicas: u32) -> canary_core::Result<bool> {
            self.0.ensure_canary(revision, replicas).await
        }
        async fn promote(&self, revision: &str) -> canary_core::Result<bool> {
            self.0.promote(revision).await
        }
        async fn remove_canary(&self) -> canary_core::Result<bool> {
            self.0.remove_canary().await
        }
    }
    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<String>>);
    #[async_trait::async_trait]
    impl MetricProvider for Seen {
        async fn measure(&self, _: &MetricPlan, context: &QueryContext) -> MetricOutcome {
            self.0.lock().unwrap().push(context.stable.clone());
            MetricOutcome::Value(100.0)
        }
    }

    let world = World::new(&rollout(
        "istio",
        "{canary: {steps: [{weight: 50}]}}",
        &success_rate(1),
    ));
    let named = Named(world.workload.clone());
    let seen = Seen::default();
    let driver =
        canary_core::engine::driver::Driver::new(&world.plan, &world.traffic, &named, &world.store)
            .metrics(&seen)
            .webhooks(&world.webhooks);
    driver.reconcile(world.now()).await.unwrap();
    world.workload.set_desired_revision("rev-2");
    for _ in 0..200 {
        let pass = driver.reconcile(world.now()).await.unwrap();
        if pass.status.phase.is_terminal() {
            break;
        }
        world.clock.advance(SignedDuration::from_secs(10));
    }
    let seen = seen.0.lock().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(|stable| stable == "podinfo-prod"),
        "{seen:?}"
    );
}
