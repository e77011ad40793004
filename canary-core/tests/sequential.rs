//! The sequential judge's error rates, over thousands of seeded simulations: a healthy canary
//! is rolled back with probability at most alpha, a canary `degradation` times worse is caught
//! with probability at least 1 - beta, and it is caught after about as many failed requests as
//! Wald's approximation predicts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::Phase;
use canary_core::api::load::plan_from_yaml;
use canary_core::api::plan::{Judge, RolloutPlan, Sprt};
use canary_core::sim::{SimConfig, SimReport, Simulation};

const RUNS: u64 = 1000;

/// A rollout at `steps`, judged by the sequential test only.
fn plan(strategy: &str) -> RolloutPlan {
    plan_from_yaml(&format!(
        "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {{name: podinfo}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{name: podinfo, port: 9898}}
  trafficRouting: {{kuma: {{}}}}
  strategy: {strategy}
  analysis:
    interval: 1m
    scrapeInterval: 10s
    metrics:
    - {{name: request-success-rate, judge: sequential, interval: 10s}}
"
    ))
    .unwrap()
}

fn sprt(plan: &RolloutPlan) -> Sprt {
    match plan.analysis.metrics[0].judge {
        Judge::Sequential(sprt) => sprt,
        Judge::Threshold(_) => unreachable!(),
    }
}

fn runs(plan: &RolloutPlan, baseline: f64, canary: f64) -> Vec<SimReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    (0..RUNS)
        .map(|seed| {
            let config = SimConfig {
                seed,
                baseline_error_rate: baseline,
                canary_error_rate: Some(canary),
                ..SimConfig::default()
            };
            runtime
                .block_on(Simulation::new(plan, config).run())
                .unwrap()
        })
        .collect()
}

fn rolled_back(reports: &[SimReport]) -> f64 {
    let failed = reports
        .iter()
        .filter(|r| r.summary.phase == Phase::Failed)
        .count();
    failed as f64 / reports.len() as f64
}

/// Three standard errors of a proportion `p` estimated from `RUNS` runs.
fn tolerance(p: f64) -> f64 {
    3.0 * (p * (1.0 - p) / RUNS as f64).sqrt()
}

#[test]
fn a_healthy_canary_is_rarely_rolled_back() {
    // A long step, so that every test runs to a decision.
    let plan = plan("{canary: {steps: [{weight: 50, pause: {duration: 2h}}]}}");
    let sprt = sprt(&plan);
    let reports = runs(&plan, 0.01, 0.01);
    let bound = sprt.alpha / (1.0 - sprt.beta);
    let rate = rolled_back(&reports);
    assert!(
        rate <= bound + tolerance(bound),
        "false rollbacks {rate} above {bound}"
    );
    assert!(
        reports
            .iter()
            .all(|r| r.summary.phase != Phase::Progressing),
        "every run decided"
    );
}

#[test]
fn a_canary_at_the_design_degradation_is_caught() {
    let plan = plan("{canary: {steps: [{weight: 50, pause: {duration: 2h}}]}}");
    let sprt = sprt(&plan);
    let reports = runs(&plan, 0.01, 0.02);
    let power = rolled_back(&reports);
    let wanted = 1.0 - sprt.beta;
    assert!(
        power >= wanted - tolerance(wanted),
        "caught {power}, wanted {wanted}"
    );

    // Failed requests before the rollback, against Wald's expected sample size.
    let caught: Vec<f64> = reports
        .iter()
        .filter(|r| r.summary.phase == Phase::Failed)
        .map(|r| r.summary.canary_errors as f64)
        .collect();
    let mean = caught.iter().sum::<f64>() / caught.len() as f64;
    let wald = sprt.expected_canary_errors(0.5);
    assert!(
        mean <= 1.5 * wald,
        "{mean} failed requests on average, Wald expects {wald}"
    );
    assert!(
        mean >= 0.5 * wald,
        "{mean} is implausibly below Wald's {wald}"
    );
}

#[test]
fn the_issue_s_bad_canary_is_caught_early_in_a_normal_rollout() {
    let plan = plan("{canary: {stepWeight: 10, maxWeight: 50}}");
    let reports = runs(&plan, 0.005, 0.05);
    let power = rolled_back(&reports);
    assert!(power >= 0.99, "a 10x worse canary is caught: {power}");
    let mut errors: Vec<u64> = reports.iter().map(|r| r.summary.canary_errors).collect();
    errors.sort_unstable();
    let median = errors[errors.len() / 2];
    assert!(
        median <= 15,
        "median failed requests before rollback: {median}"
    );
    let healthy = runs(&plan, 0.005, 0.005);
    let rate = rolled_back(&healthy);
    assert!(
        rate <= 0.01 + tolerance(0.01),
        "false rollbacks in a normal rollout: {rate}"
    );
}
