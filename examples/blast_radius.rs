//! The blast radius of a bad canary under three analysis policies: how many user requests fail
//! on the canary before it is rolled back, and how long that takes. Every policy sees the same
//! simulated traffic (the same seeds): 100 requests per second, stable failing 0.5% of them, a
//! bad canary failing 5% (ten times worse) and a healthy canary failing 0.5% (for false
//! rollbacks). Each rollout raises the canary's weight by 10% per 1m interval up to 50%.
//!
//! - sequential: the sequential judge (Wald's test every 10s, alpha 0.01, beta 0.05, catching
//!   a 2x degradation), as in `rollouts/podinfo-sequential.yaml`;
//! - Flagger default: success rate >= 99% every 1m, rolled back at the 2nd failed check, as in
//!   `rollouts/podinfo-threshold.yaml`;
//! - Argo failureLimit: an Argo Rollouts AnalysisTemplate's default `failureLimit: 0` aborts at
//!   the first failed measurement; here that is `failureLimit: 1` with `failureCounting:
//!   Consecutive` (success rate >= 99% every 1m, setWeight steps 10..50).
//!
//! Failed requests are counted over all runs of the bad canary, at the end of each run; time to
//! rollback over the runs that were rolled back. Next to them: Wald's expected number of failed
//! canary requests before the sequential test rolls back, at the first step's 10% share, for a
//! canary at the test's design degradation (2x) and for this one (10x); the target compares
//! the sequential median with the latter.
//!
//! ```text
//! cargo run --release --example blast_radius                 # 1000 seeds per canary
//! cargo run --release --example blast_radius -- --runs 200
//! ```

use std::error::Error;
use std::time::Instant;

use canary::Phase;
use canary::api::plan::{Judge, Sprt};
use canary::sim::{SimConfig, Simulation, Summary};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const RPS: u64 = 100;
const BASELINE: f64 = 0.005;
const BAD: f64 = 0.05;
/// The canary's weight at the first step, in percent.
const FIRST_WEIGHT: u64 = 10;

/// Everything the three rollouts share.
const HEAD: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
  trafficRouting: {kuma: {}}
";

const SEQUENTIAL: &str = "  strategy: {canary: {stepWeight: 10, maxWeight: 50}}
  analysis:
    interval: 1m
    scrapeInterval: 10s
    metrics:
    - name: request-success-rate
      judge: sequential
      interval: 10s
      sequential: {alpha: 0.01, beta: 0.05, degradation: 2}
";

const FLAGGER: &str = "  strategy: {canary: {stepWeight: 10, maxWeight: 50}}
  analysis:
    interval: 1m
    failureLimit: 2
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
";

const ARGO: &str = "  strategy:
    canary:
      steps: [{weight: 10}, {weight: 20}, {weight: 30}, {weight: 40}, {weight: 50}]
  analysis:
    interval: 1m
    failureLimit: 1
    failureCounting: Consecutive
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
";

/// What one policy did with the bad and the healthy canary.
struct Outcome {
    name: &'static str,
    caught: f64,
    failed: (f64, f64),
    time_s: (f64, f64),
    false_rollbacks: f64,
}

fn main() -> Result<()> {
    let runs = runs_from_args()?;
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let policies = [
        ("sequential", SEQUENTIAL),
        ("Flagger default", FLAGGER),
        ("Argo failureLimit", ARGO),
    ];
    let mut outcomes = Vec::new();
    for (name, analysis) in policies {
        let plan = canary::api::load::plan_from_yaml(&format!("{HEAD}{analysis}"))?;
        let simulate = |rate| -> Result<Vec<Summary>> {
            (0..runs)
                .map(|seed| {
                    let config = SimConfig {
                        rps: RPS,
                        baseline_error_rate: BASELINE,
                        canary_error_rate: Some(rate),
                        seed,
                        ..SimConfig::default()
                    };
                    Ok(runtime
                        .block_on(Simulation::new(&plan, config).run())?
                        .summary)
                })
                .collect()
        };
        outcomes.push(outcome(name, &simulate(BAD)?, &simulate(BASELINE)?));
    }
    let sprt = sequential_test()?;
    print_report(runs, &outcomes, &sprt);
    println!("\nwall time: {:.1?}", started.elapsed());
    Ok(())
}

/// `--runs N`, 1000 by default.
fn runs_from_args() -> Result<u64> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = match args.as_slice() {
        [] => 1000,
        [flag, n] if flag == "--runs" => n.parse()?,
        _ => 0,
    };
    match runs {
        0 => Err("usage: blast_radius [--runs N], N >= 1".into()),
        runs => Ok(runs),
    }
}

/// The sequential policy's test.
fn sequential_test() -> Result<Sprt> {
    let plan = canary::api::load::plan_from_yaml(&format!("{HEAD}{SEQUENTIAL}"))?;
    match plan.analysis.metrics.first().map(|metric| metric.judge) {
        Some(Judge::Sequential(sprt)) => Ok(sprt),
        _ => Err("the sequential policy has no sequential judge".into()),
    }
}

fn outcome(name: &'static str, bad: &[Summary], healthy: &[Summary]) -> Outcome {
    let rolled_back = |s: &&Summary| s.phase == Phase::Failed;
    let failed: Vec<f64> = bad.iter().map(|s| s.canary_errors as f64).collect();
    let times: Vec<f64> = bad
        .iter()
        .filter(rolled_back)
        .map(|s| s.duration_s as f64)
        .collect();
    Outcome {
        name,
        caught: share(bad.iter().filter(rolled_back).count(), bad.len()),
        failed: median_p95(failed),
        time_s: median_p95(times),
        false_rollbacks: share(healthy.iter().filter(rolled_back).count(), healthy.len()),
    }
}

fn share(count: usize, of: usize) -> f64 {
    count as f64 / of.max(1) as f64
}

/// The median and the 95th percentile (nearest rank); NaN when there are no values.
fn median_p95(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let index = (p * values.len() as f64).ceil() as usize;
        values
            .get(index.saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (rank(0.5), rank(0.95))
}

/// Wald's expected number of failed canary requests before `sprt` rolls back a canary
/// `ratio` times worse than stable at `weight`% of the traffic:
/// `((1−β)·ln A + β·ln B) / E[z]` errors, of which the canary's share. With `ratio` equal to
/// the test's degradation this is [`Sprt::expected_canary_errors`].
fn wald_failed_requests(sprt: &Sprt, weight: u64, ratio: f64) -> f64 {
    let (canary, stable) = (weight, 100 - weight);
    let q = weight as f64 / 100.0;
    let canary_share = ratio * q / (ratio * q + 1.0 - q);
    let drift = canary_share * sprt.evidence((canary, 1), (stable, 0))
        + (1.0 - canary_share) * sprt.evidence((canary, 0), (stable, 1));
    let errors = ((1.0 - sprt.beta) * sprt.upper() + sprt.beta * sprt.lower()) / drift;
    errors * canary_share
}

fn print_report(runs: u64, outcomes: &[Outcome], sprt: &Sprt) {
    println!(
        "{runs} seeds per canary, {RPS} rps, stable {:.1}% errors; bad canary {:.0}%, healthy {:.1}%",
        BASELINE * 100.0,
        BAD * 100.0,
        BASELINE * 100.0
    );
    println!(
        "Argo failureLimit: Argo's default `failureLimit: 0` is `failureLimit: 1, Consecutive` here\n\
         failed: failed canary requests per run of the bad canary; rollback: its time to rollback\n\
         from the start of the rollout (the canary pod starts in 20s); false: healthy rolled back\n"
    );
    println!(
        "{:<18} {:>7} {:>11} {:>11} {:>13} {:>13} {:>7}",
        "policy", "caught", "failed med", "failed p95", "rollback med", "rollback p95", "false"
    );
    for o in outcomes {
        println!(
            "{:<18} {:>6.1}% {:>11.0} {:>11.0} {:>12.0}s {:>12.0}s {:>6.1}%",
            o.name,
            o.caught * 100.0,
            o.failed.0,
            o.failed.1,
            o.time_s.0,
            o.time_s.1,
            o.false_rollbacks * 100.0
        );
    }
    if let [sequential, flagger, ..] = outcomes {
        print_targets(sequential, flagger, sprt);
    }
}

/// Wald's expected counts, the ratios, and the targets.
fn print_targets(sequential: &Outcome, flagger: &Outcome, sprt: &Sprt) {
    let design = sprt.expected_canary_errors(FIRST_WEIGHT as f64 / 100.0);
    let wald = wald_failed_requests(sprt, FIRST_WEIGHT, BAD / BASELINE);
    println!(
        "\nWald's expected failed canary requests before the sequential test rolls back\n\
         (alpha {}, beta {}, the canary at {FIRST_WEIGHT}% of the traffic):",
        sprt.alpha, sprt.beta
    );
    let design_label = format!("a canary at the design degradation, {}x", sprt.degradation);
    let wald_label = format!("this bad canary, {}x", BAD / BASELINE);
    println!("  {design_label:<42} {design:>5.1}\n  {wald_label:<42} {wald:>5.1}");
    let to_wald = sequential.failed.0 / wald;
    let fewer = flagger.failed.0 / sequential.failed.0;
    println!(
        "sequential median / Wald: {to_wald:.2} ({:.2} against the design degradation)",
        sequential.failed.0 / design
    );
    println!("Flagger default median / sequential median: {fewer:.1}x fewer failed requests\n");
    target(
        "sequential median <= 1.5x Wald (this canary)",
        to_wald <= 1.5,
    );
    target(
        "sequential >= 5x fewer failed requests than Flagger",
        fewer >= 5.0,
    );
    target(
        "sequential false rollbacks <= 1%",
        sequential.false_rollbacks <= 0.01,
    );
}

fn target(name: &str, met: bool) {
    println!("{name:<54} {}", if met { "PASS" } else { "FAIL" });
}
