//! Simulation: the synthetic traffic behaves as configured, and runs are reproducible and
//! crash-proof end to end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::Phase;
use canary_core::api::load::plan_from_yaml;
use canary_core::sim::{SimConfig, SimReport, Simulation, TrafficModel};
use canary_core::traffic::RouteState;

fn example(name: &str) -> canary_core::RolloutPlan {
    let path = format!("{}/../examples/rollouts/{name}", env!("CARGO_MANIFEST_DIR"));
    plan_from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn simulate(plan: &canary_core::RolloutPlan, config: SimConfig) -> SimReport {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(Simulation::new(plan, config).run())
        .unwrap()
}

#[test]
fn traffic_follows_the_route_and_the_error_rates() {
    let model = TrafficModel {
        seed: 3,
        rps: 1000,
        baseline_error_rate: 0.01,
        canary_error_rate: 0.2,
        baseline_latency_ms: 40.0,
        canary_latency_ms: 40.0,
        match_share: 0.1,
    };
    let mut route = RouteState::weighted(30);
    let (mut canary, mut errors, mut stable_errors, mut total) = (0, 0, 0, 0);
    for second in 0..600 {
        let counts = model.second(second, &route);
        assert_eq!(counts.canary + counts.stable, counts.total);
        canary += counts.canary;
        errors += counts.canary_errors;
        stable_errors += counts.stable_errors;
        total += counts.total;
    }
    let share = canary as f64 / total as f64;
    assert!((share - 0.3).abs() < 0.01, "canary share {share}");
    let rate = errors as f64 / canary as f64;
    assert!((rate - 0.2).abs() < 0.01, "canary error rate {rate}");
    let stable_rate = stable_errors as f64 / (total - canary) as f64;
    assert!(
        (stable_rate - 0.01).abs() < 0.002,
        "stable error rate {stable_rate}"
    );

    route = RouteState {
        mirror: Some(50),
        ..RouteState::stable()
    };
    let counts = (0..600)
        .map(|s| model.second(s, &route))
        .fold((0, 0, 0), |acc, c| {
            (acc.0 + c.canary, acc.1 + c.mirrored, acc.2 + c.total)
        });
    assert_eq!(counts.0, 0, "mirroring answers no user from the canary");
    assert!(((counts.1 as f64 / counts.2 as f64) - 0.5).abs() < 0.01);
}

#[test]
fn the_kuma_example_succeeds_healthy_and_fails_bad() {
    let plan = example("podinfo-kuma.yaml");
    let good = simulate(&plan, SimConfig::default());
    assert_eq!(good.summary.phase, Phase::Succeeded);
    let bad = simulate(
        &plan,
        SimConfig {
            canary_error_rate: Some(0.2),
            ..SimConfig::default()
        },
    );
    assert_eq!(bad.summary.phase, Phase::Failed);
    assert_eq!(bad.summary.canary_weight, 0);
    let failing = bad
        .rows
        .iter()
        .find(|row| row.verdict == Some(canary_core::Verdict::Fail))
        .unwrap();
    let rate = failing.metrics["request-success-rate"].unwrap();
    assert!(
        (rate - 80.0).abs() < 5.0,
        "a 20% error rate measures about 80% success: {rate}"
    );
}

#[test]
fn runs_are_reproducible_from_their_seed() {
    let plan = example("bookinfo-istio.yaml");
    let one = simulate(
        &plan,
        SimConfig {
            seed: 11,
            ..SimConfig::default()
        },
    );
    let two = simulate(
        &plan,
        SimConfig {
            seed: 11,
            ..SimConfig::default()
        },
    );
    let other = simulate(
        &plan,
        SimConfig {
            seed: 12,
            ..SimConfig::default()
        },
    );
    assert_eq!(one, two);
    assert_ne!(one.summary.canary_errors + one.summary.stable_errors, 0);
    assert_ne!(one.summary, other.summary);
}

#[test]
fn a_crash_anywhere_leaves_the_simulation_unchanged() {
    let plan = example("podinfo-kuma.yaml");
    for canary_error_rate in [None, Some(0.2)] {
        let clean = simulate(
            &plan,
            SimConfig {
                canary_error_rate,
                ..SimConfig::default()
            },
        );
        for crash_at_call in 1..40 {
            let crashed = simulate(
                &plan,
                SimConfig {
                    canary_error_rate,
                    crash_at_call,
                    ..SimConfig::default()
                },
            );
            assert_eq!(
                crashed.summary, clean.summary,
                "crash at call {crash_at_call}"
            );
        }
    }
}

#[test]
fn slow_canaries_fail_on_duration() {
    let plan = example("bookinfo-istio.yaml");
    let slow = simulate(
        &plan,
        SimConfig {
            canary_latency_ms: Some(400.0),
            ..SimConfig::default()
        },
    );
    assert_eq!(slow.summary.phase, Phase::Failed);
    assert!(
        slow.summary.message.contains("request-duration"),
        "{}",
        slow.summary.message
    );
    let p99 = slow
        .rows
        .iter()
        .find_map(|row| row.metrics.get("request-duration").copied().flatten())
        .unwrap();
    assert!(p99 > 500.0, "P99 of a 400 ms median is above 500 ms: {p99}");
}

#[test]
fn a_bad_mirror_fails_without_failing_users() {
    let plan = example("mirror-istio.yaml");
    let bad = simulate(
        &plan,
        SimConfig {
            canary_error_rate: Some(0.3),
            ..SimConfig::default()
        },
    );
    assert_eq!(bad.summary.phase, Phase::Failed);
    assert_eq!(bad.summary.canary_requests, 0);
    assert_eq!(bad.summary.canary_errors, 0, "mirrored answers are dropped");
    assert!(bad.summary.mirrored_requests > 0);
}

#[test]
fn ab_tests_send_only_matching_requests() {
    let plan = example("abtest-istio.yaml");
    let report = simulate(
        &plan,
        SimConfig {
            rps: 200,
            ..SimConfig::default()
        },
    );
    assert_eq!(report.summary.phase, Phase::Succeeded);
    let share = report.summary.canary_requests as f64 / report.summary.requests_total as f64;
    // About the 10% that match while the test runs (4 of its 6 minutes), then everything for
    // the 20 s that promotion hands over to the canary.
    assert!(
        share > 0.1 && share < 0.2,
        "the matching requests, then the promotion: {share}"
    );
}

#[test]
fn custom_queries_measure_no_data_in_simulation() {
    let yaml = std::fs::read_to_string(format!("{}/../examples/rollouts/podinfo-kuma.yaml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(
            "    - name: request-success-rate\n      thresholdRange: {min: 99}",
            "    - name: errors\n      prometheus: {address: 'http://prometheus:9090', query: 'sum(rate(x[{{ interval }}]))'}\n      thresholdRange: {max: 1}",
        );
    let plan = plan_from_yaml(&yaml).unwrap();
    let simulation = Simulation::new(&plan, SimConfig::default());
    assert_eq!(simulation.unsimulated_metrics(), ["errors"]);
    let report = simulate(&plan, SimConfig::default());
    assert_eq!(
        report.summary.phase,
        Phase::Failed,
        "no data is a failure by default"
    );
    assert!(
        report.summary.message.contains("no data"),
        "{}",
        report.summary.message
    );
}
