//! How fast the engine decides: one `transition` of a realistic rollout (Flagger-style canary,
//! +10% up to 50%, success-rate analysis every minute) observed mid-step, with its canary
//! scaled, its route verified and nothing to change: the pass a controller makes most often.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)] // bench code

use std::hint::black_box;

use canary_core::engine::machine::{
    Action, AnalysisResults, Input, MetricOutcome, MetricResult, Observation, Verification,
    WorkloadObservation, WorkloadState,
};
use canary_core::{Phase, RolloutPlan, RolloutStatus, transition};
use criterion::{Criterion, criterion_group, criterion_main};
use jiff::{SignedDuration, Timestamp};

const ROLLOUT: &str = include_str!("../../examples/rollouts/podinfo-threshold.yaml");

/// What the providers would report for `status`: the canary at the size last asked for, all
/// available, the route in effect.
fn observation(status: &RolloutStatus, canary_replicas: u32) -> Input {
    let pods = |revision: &str, n: u32| WorkloadState {
        revision: revision.to_owned(),
        desired: n,
        ready: n,
        available: n,
        stale: false,
    };
    Input::Observed(Observation {
        workload: WorkloadObservation {
            desired_revision: "rev-2".to_owned(),
            stable_reported_as: None,
            stable: pods("rev-1", 5),
            canary: (canary_replicas > 0).then(|| pods("rev-2", canary_replicas)),
        },
        route: Some(status.routing.route.clone()),
        verified: Verification::Yes,
        route_pending: None,
    })
}

/// The rollout driven through the engine until it waits at step `step` (0-based) with its
/// route verified: the status, the steady observation and the time.
fn at_step(plan: &RolloutPlan, step: u32) -> (RolloutStatus, Input, Timestamp) {
    let mut status = RolloutStatus::default();
    let mut now = Timestamp::from_second(1_800_000_000).unwrap();
    let mut canary = 0;
    for _ in 0..500 {
        let input = observation(&status, canary);
        let result = transition(plan, status, &input, now);
        status = result.status;
        for action in &result.actions {
            match action {
                Action::EnsureCanary { replicas, .. } => canary = *replicas,
                Action::RunAnalysis { metrics, gate } => {
                    let results = AnalysisResults {
                        metrics: metrics
                            .iter()
                            .map(|m| MetricResult {
                                metric: m.metric.clone(),
                                outcome: MetricOutcome::Value(99.9),
                            })
                            .collect(),
                        hooks: Vec::new(),
                        gate: *gate,
                    };
                    status = transition(plan, status, &Input::Analysed(results), now).status;
                }
                _ => {}
            }
        }
        if status.phase == Phase::Progressing
            && status.step == step
            && status.routing.route_verified
        {
            return (status.clone(), observation(&status, canary), now);
        }
        now = now.checked_add(SignedDuration::from_secs(5)).unwrap();
    }
    panic!("never reached step {step}: {status:?}");
}

fn transitions(c: &mut Criterion) {
    let plan = canary_core::api::load::plan_from_yaml(ROLLOUT).unwrap();
    let (status, input, now) = at_step(&plan, 2);
    c.bench_function("transition/steady gating pass", |b| {
        b.iter(|| {
            transition(
                black_box(&plan),
                black_box(status.clone()),
                black_box(&input),
                now,
            )
        })
    });
    c.bench_function("transition/status clone alone", |b| {
        b.iter(|| black_box(status.clone()))
    });
}

criterion_group!(benches, transitions);
criterion_main!(benches);
