//! The edge proxy and VM pool of this crate, registered, validated, released through canary's
//! driver and simulated: what an embedder's own tests look like.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::collections::BTreeMap;

use canary_core::api::load::plan_from_yaml_with;
use canary_core::engine::driver::Driver;
use canary_core::engine::memory::{Faults, InMemoryMetrics, InMemoryStatusStore};
use canary_core::engine::providers::{Clock, ManualClock, MetricOutcome};
use canary_core::jiff::{SignedDuration, Timestamp};
use canary_core::sim::{SimConfig, Simulation};
use canary_core::traffic::Registry;
use canary_core::{Phase, RolloutPlan, RolloutStatus, StepStage};
use canary_embedder::{BARE_PROXY, EDGE_PROXY, EdgeRouter, VmPool};

const CANARY: &str = r#"
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: checkout, namespace: shop}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: checkout}
  service: {name: checkout, port: 80}
  trafficRouting:
    plugin: {name: edge-proxy, config: {pool: checkout}}
  strategy:
    canary: {stepWeight: 25, maxWeight: 50}
  analysis:
    interval: 1m
    failureLimit: 1
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
"#;

fn registry() -> Registry {
    Registry::builtin()
        .register(&EDGE_PROXY)
        .and_then(|registry| registry.register(&BARE_PROXY))
        .unwrap()
}

fn plan(yaml: &str) -> RolloutPlan {
    plan_from_yaml_with(yaml, &registry()).unwrap_or_else(|e| panic!("{e}"))
}

fn refusal(yaml: &str) -> String {
    match plan_from_yaml_with(yaml, &registry()) {
        Ok(_) => panic!("validated:\n{yaml}"),
        Err(error) => error.to_string(),
    }
}

fn ab_test(config: &str, header: &str) -> String {
    CANARY.replace("{pool: checkout}", config).replace(
        "canary: {stepWeight: 25, maxWeight: 50}",
        &format!("abTest: {{matches: [{{headers: {{{header}}}}}], iterations: 2}}"),
    )
}

#[test]
fn a_plugin_is_named_in_the_rollout_and_checked_by_its_own_rules() {
    let plan = plan(CANARY);
    assert_eq!(plan.provider.name, "edge-proxy");
    assert!(plan.provider.is_plugin());

    let unregistered = canary_core::api::load::plan_from_yaml(CANARY).unwrap_err();
    assert!(
        unregistered.to_string().contains(
            "spec.trafficRouting.plugin.name: `edge-proxy` is not a registered traffic provider"
        ) && unregistered.to_string().contains("istio, nginx, kuma, asm"),
        "{unregistered}"
    );

    let config = refusal(&CANARY.replace("{pool: checkout}", "{pool: '', color: blue}"));
    assert!(
        config.contains("spec.trafficRouting.plugin.config.pool: the pool to route")
            && config.contains("spec.trafficRouting.plugin.config.color: unknown setting"),
        "{config}"
    );
    let both = refusal(&CANARY.replace(
        "plugin: {name: edge-proxy",
        "kuma: {}\n    plugin: {name: edge-proxy",
    ));
    assert!(
        both.contains("exactly one of istio, nginx, kuma, asm, gatewayAPI, plugin must be set"),
        "{both}"
    );
}

#[test]
fn a_match_beyond_the_proxy_is_refused_with_its_capabilities() {
    let weights_only = refusal(&ab_test("{pool: checkout}", "x-beta: {exact: \"on\"}"));
    assert!(
        weights_only.contains("spec.strategy.abTest.matches[0].headers")
            && weights_only.contains("edge-proxy supports weights"),
        "{weights_only}"
    );
    let prefix = refusal(&ab_test(
        "{pool: checkout, headerRouting: true}",
        "x-beta: {prefix: \"on\"}",
    ));
    assert!(
        prefix.contains(
            "spec.strategy.abTest.matches[0].headers.x-beta: edge-proxy cannot route this kind \
             of header condition; edge-proxy supports weights; at most 1 match of at most 1 \
             header condition (exact)"
        ),
        "{prefix}"
    );
    let upper = refusal(&ab_test(
        "{pool: checkout, headerRouting: true}",
        "X-Beta: {exact: \"on\"}",
    ));
    assert!(upper.contains("lowercase header names only"), "{upper}");
    plan(&ab_test(
        "{pool: checkout, headerRouting: true}",
        "x-beta: {exact: \"on\"}",
    ));
}

#[test]
fn builtin_metrics_need_the_providers_metric_family() {
    let bare = refusal(&CANARY.replace(
        "{name: edge-proxy, config: {pool: checkout}}",
        "{name: bare-proxy}",
    ));
    assert!(
        bare.contains("spec.analysis.metrics[0]: `request-success-rate` is a builtin metric")
            && bare.contains("`bare-proxy` declares none"),
        "{bare}"
    );
}

/// A release through canary's driver: the proxy, the pool, metrics measuring `success`.
struct Release {
    plan: RolloutPlan,
    clock: ManualClock,
    router: EdgeRouter,
    pool: VmPool,
    metrics: InMemoryMetrics,
    store: InMemoryStatusStore,
}

impl Release {
    fn new(yaml: &str, success: f64) -> Self {
        let clock = ManualClock::new(Timestamp::UNIX_EPOCH);
        let metrics = InMemoryMetrics::default();
        metrics.set("request-success-rate", MetricOutcome::Value(success));
        Release {
            plan: plan(yaml),
            pool: VmPool::new("v1", 3, SignedDuration::from_secs(30), clock.clone()),
            clock,
            router: EdgeRouter::default(),
            metrics,
            store: InMemoryStatusStore::new(Faults::default()),
        }
    }

    fn driver(&self) -> Driver<'_> {
        Driver::new(&self.plan, &self.router, &self.pool, &self.store).metrics(&self.metrics)
    }

    /// Runs passes whenever the engine asks (at least every 10 s) until the release ends,
    /// calling `during` on each status.
    async fn run(&self, mut during: impl FnMut(&RolloutStatus, &EdgeRouter)) -> RolloutStatus {
        let driver = self.driver();
        let mut now = self.clock.now();
        driver.reconcile(now).await.unwrap();
        canary_core::sim::SimWorkload::release(&self.pool, "v2");
        for _ in 0..500 {
            let pass = driver.reconcile(now).await.unwrap();
            during(&pass.status, &self.router);
            if pass.status.phase.is_terminal() {
                return pass.status;
            }
            let wait = pass
                .requeue_after
                .unwrap_or(SignedDuration::from_secs(10))
                .min(SignedDuration::from_secs(10));
            now = now.checked_add(wait).unwrap();
            self.clock.set(now);
        }
        panic!("the release did not end");
    }
}

#[tokio::test]
async fn a_healthy_release_moves_the_proxys_requests_step_by_step_then_promotes() {
    let release = Release::new(CANARY, 99.9);
    let mut shares = Vec::new();
    let status = release
        .run(|status, router| {
            let share = router.canary_share(&BTreeMap::new());
            if status.stage == StepStage::Gating && shares.last() != Some(&share) {
                shares.push(share);
            }
        })
        .await;
    assert_eq!(status.phase, Phase::Succeeded, "{}", status.message);
    // What requests got at each gate: a quarter, then half, of 1000 on the canary.
    assert_eq!(shares[..2], [250, 500], "{shares:?}");
    assert_eq!(release.pool.stable_revision(), "v2");
    assert!(!release.pool.has_canary());
    assert_eq!(release.router.canary_share(&BTreeMap::new()), 0);
    // The proxy's own units (thousandths) read back as the same route: nothing is rewritten
    // as drift. Each route is written once: 25%, 50%, 100% (promotion), back to stable.
    assert_eq!(release.router.writes(), 4);
}

#[tokio::test]
async fn a_failing_release_rolls_back_and_leaves_stable_alone() {
    let release = Release::new(CANARY, 80.0);
    let status = release.run(|_, _| {}).await;
    assert_eq!(status.phase, Phase::Failed);
    assert_eq!(release.pool.stable_revision(), "v1");
    assert!(!release.pool.has_canary());
    assert_eq!(release.router.canary_share(&BTreeMap::new()), 0);
}

#[tokio::test]
async fn an_ab_test_sends_only_the_matching_requests_to_the_canary() {
    let yaml = ab_test(
        "{pool: checkout, headerRouting: true}",
        "x-beta: {exact: \"on\"}",
    );
    let release = Release::new(&yaml, 99.9);
    let beta = BTreeMap::from([("x-beta".to_owned(), "on".to_owned())]);
    let other = BTreeMap::from([("x-beta".to_owned(), "off".to_owned())]);
    let mut seen_at_gate = None;
    let status = release
        .run(|status, router| {
            if status.stage == StepStage::Gating && seen_at_gate.is_none() {
                seen_at_gate = Some((router.canary_share(&beta), router.canary_share(&other)));
            }
        })
        .await;
    assert_eq!(status.phase, Phase::Succeeded, "{}", status.message);
    assert_eq!(seen_at_gate, Some((1000, 0)));
}

#[tokio::test]
async fn drift_at_the_proxy_is_overruled() {
    let release = Release::new(CANARY, 99.9);
    let mut tampered = false;
    let mut repaired = None;
    release
        .run(|status, router| {
            let share = router.canary_share(&BTreeMap::new());
            if status.stage == StepStage::Gating && share == 250 && !tampered {
                router.tamper(900);
                tampered = true;
            } else if tampered && repaired.is_none() {
                repaired = Some(share);
            }
        })
        .await;
    assert_eq!(repaired, Some(250));
}

#[tokio::test]
async fn the_simulation_runs_the_proxy_and_the_pool_under_synthetic_traffic() {
    let plan = plan(CANARY);
    let healthy = Simulation::new(&plan, SimConfig::default());
    let router = EdgeRouter::default();
    let pool = VmPool::new("rev-1", 3, SignedDuration::from_secs(20), healthy.clock());
    let report = healthy
        .with_traffic(&router)
        .with_workload(&pool)
        .run()
        .await
        .unwrap();
    assert_eq!(report.summary.phase, Phase::Succeeded);
    assert!(report.summary.canary_requests > 0);
    assert_eq!(pool.stable_revision(), "rev-2");

    let bad = SimConfig {
        canary_error_rate: Some(0.3),
        ..SimConfig::default()
    };
    let simulation = Simulation::new(&plan, bad);
    let router = EdgeRouter::default();
    let pool = VmPool::new(
        "rev-1",
        3,
        SignedDuration::from_secs(20),
        simulation.clock(),
    );
    let report = simulation
        .with_traffic(&router)
        .with_workload(&pool)
        .run()
        .await
        .unwrap();
    assert_eq!(report.summary.phase, Phase::Failed);
    assert_eq!(pool.stable_revision(), "rev-1");
    assert_eq!(router.canary_share(&BTreeMap::new()), 0);
    // The canary's errors were seen only while the proxy sent it requests.
    assert!(report.summary.canary_errors > 0);
}
