//! Whole rollouts through the controller, against the in-memory Kubernetes API test server:
//! the Deployment provider, the Rollout resource and its status, events, restarts, injected
//! faults, and the API writes each step costs.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_core::engine::machine::MetricOutcome;
use canary_core::engine::memory::{InMemoryMetrics, InMemoryWebhooks};
use canary_core::engine::providers::SystemClock;
use canary_core::{Phase, RolloutStatus};
use canary_kube::controller::{Context, reconcile, run};
use canary_kube::crd::Rollout;
use canary_kube::metrics::Metrics;
use canary_kube::retry::Backoff;
use canary_kube::traffic::MemoryTraffic;
use canary_kube::workload::STABLE_REVISION;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use kube_testserver::{ApiServer, ResourceType, Verb};
use prometheus_client::registry::Registry;

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
  newVersion:
    containers: [{name: podinfo, image: 'ghcr.io/stefanprodan/podinfo:6.1.0'}]
  trafficRouting: {kuma: {}}
  strategy: {canary: {steps: [{weight: 25}, {weight: 50}, {weight: 75}]}}
  analysis:
    interval: 1s
    scrapeInterval: 1s
    failureLimit: 2
    metrics:
    - {name: request-success-rate, interval: 2s, thresholdRange: {min: 99}}
  progressDeadline: 30s
";

struct Cluster {
    server: ApiServer,
    client: Client,
    traffic: Arc<MemoryTraffic>,
    metrics: InMemoryMetrics,
}

impl Cluster {
    /// A cluster with canary's hold webhook installed.
    async fn new() -> Self {
        Self::start(true).await
    }

    async fn start(hold_webhook: bool) -> Self {
        let server = ApiServer::start().await.unwrap();
        server.register(ResourceType::new(
            "canary.rs",
            "v1alpha1",
            "Rollout",
            "rollouts",
            true,
            true,
        ));
        if hold_webhook {
            server.add_mutating_hook(Arc::new(canary_kube::fixtures::CanaryHold));
        }
        server.simulate_deployments(Duration::from_millis(300));
        let client = server.client();
        let stable: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "podinfo"}},
                "template": {
                    "metadata": {"labels": {"app": "podinfo"}},
                    "spec": {"containers": [{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:6.0.0"}]}
                }
            }
        }))
        .unwrap();
        Api::<Deployment>::namespaced(client.clone(), "test")
            .create(&PostParams::default(), &stable)
            .await
            .unwrap();
        let service: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "podinfo", "namespace": "test"},
                "spec": {"selector": {"app": "podinfo"}, "ports": [{"port": 9898}]}
            }))
            .unwrap();
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "test")
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
        let metrics = InMemoryMetrics::default();
        metrics.set("request-success-rate", MetricOutcome::Value(99.9));
        Cluster {
            server,
            client,
            traffic: Arc::new(MemoryTraffic::new(Arc::new(SystemClock))),
            metrics,
        }
    }

    /// A fresh controller context: what a restarted controller process would have.
    fn context(&self) -> Arc<Context> {
        self.context_with(Metrics::register(&mut Registry::default()))
    }

    /// A fresh controller context reporting into `metrics`.
    fn context_with(&self, metrics: Metrics) -> Arc<Context> {
        Arc::new(Context::new(
            self.client.clone(),
            self.traffic.clone(),
            Arc::new(self.metrics.clone()),
            Arc::new(InMemoryWebhooks::default()),
            Arc::new(SystemClock),
            metrics,
            "canary-test",
        ))
    }

    fn rollouts(&self) -> Api<Rollout> {
        Api::namespaced(self.client.clone(), "test")
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), "test")
    }

    async fn create_rollout(&self, yaml: &str) {
        let rollout: Rollout = serde_saphyr::from_str(yaml).unwrap();
        self.rollouts()
            .create(&PostParams::default(), &rollout)
            .await
            .unwrap();
    }

    /// Waits until the namespace's pods are `count` ready pods of `image`, none of them a
    /// canary's (the simulated controllers roll Deployments and collect what the canary
    /// Deployment owned).
    async fn wait_for_pods(&self, image: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let pods: Vec<serde_json::Value> = self
                .server
                .list("v1", "Pod")
                .into_iter()
                .filter(|p| p["metadata"]["namespace"] == "test")
                .collect();
            let ok = |p: &serde_json::Value| {
                p["spec"]["containers"][0]["image"] == image
                    && p["metadata"]["labels"].get("canary.rs/role").is_none()
                    && p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            };
            if pods.len() == count && pods.iter().all(ok) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pods: {:?}",
                pods.iter()
                    .map(|p| (
                        p["metadata"]["name"].clone(),
                        p["spec"]["containers"][0]["image"].clone()
                    ))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn status(&self) -> RolloutStatus {
        self.rollouts()
            .get("podinfo")
            .await
            .unwrap()
            .status
            .map(|status| status.engine)
            .unwrap_or_default()
    }

    /// Calls the controller's reconcile directly, as its runtime would, until `done`.
    async fn reconcile_until(
        &self,
        context: &Arc<Context>,
        limit: Duration,
        done: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        let deadline = Instant::now() + limit;
        loop {
            let rollout = self.rollouts().get("podinfo").await.unwrap();
            let status = rollout.status.clone().map(|s| s.engine).unwrap_or_default();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out in {:?}: {}",
                status.phase,
                status.message
            );
            match reconcile(Arc::new(rollout), context.clone()).await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                // Writes to the stable Deployment and the status carry the resourceVersion
                // read, and the Deployment controller writes its status meanwhile: a conflict
                // is expected, and the runtime runs the reconcile again, as here.
                Err(error) if error.class() == canary_core::ErrorClass::Conflict => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("reconcile failed: {error}"),
            }
        }
    }

    /// Waits (the controller running on its own) until `done`.
    async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(rollout) = self.rollouts().get("podinfo").await {
                let status = rollout.status.map(|s| s.engine).unwrap_or_default();
                if done(&status) {
                    return status;
                }
                assert!(
                    Instant::now() < deadline,
                    "timed out in {:?}: {}",
                    status.phase,
                    status.message
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stable_image(&self) -> String {
        let stable = self.deployments().get("podinfo").await.unwrap();
        stable.spec.template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    async fn canary_exists(&self) -> bool {
        self.deployments()
            .get_opt("podinfo-canary")
            .await
            .unwrap()
            .is_some()
    }
}

fn terminal(status: &RolloutStatus) -> bool {
    status.phase.is_terminal()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_runs_a_healthy_rollout_to_promotion() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(cluster.context(), vec!["test".to_owned()], async {
        let _ = stopped.await;
    }));
    let progressing = cluster
        .wait_until(Duration::from_secs(20), |s| s.routing.route.weight == 25)
        .await;
    assert_eq!(progressing.phase, Phase::Progressing);
    let canary = cluster.deployments().get("podinfo-canary").await.unwrap();
    let template = canary.spec.template.clone();
    assert_eq!(
        template.spec.unwrap().containers[0].image.as_deref(),
        Some("ghcr.io/stefanprodan/podinfo:6.1.0")
    );
    assert_eq!(
        template.metadata.unwrap().labels.unwrap()["canary.rs/role"],
        "canary"
    );
    // Named by label, not owned: the garbage collector must never remove a canary that
    // still has traffic (a Rollout deleted in the foreground would take it at once).
    assert!(canary.owner_references().is_empty());
    assert_eq!(canary.labels()["canary.rs/rollout"], "podinfo");
    let canary_pods = cluster
        .server
        .list("v1", "Pod")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["canary.rs/role"] == "canary")
        .count();
    assert!(canary_pods > 0, "the canary Deployment has pods");
    // `newVersion` leaves the stable template, which its pods run, as it is: nothing would
    // roll, so nothing is held.
    assert_eq!(
        cluster
            .deployments()
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .paused,
        None,
        "stable adopted as it is"
    );
    let end = cluster.wait_until(Duration::from_secs(30), terminal).await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    assert_eq!(
        cluster.stable_image().await,
        "ghcr.io/stefanprodan/podinfo:6.1.0"
    );
    assert!(!cluster.canary_exists().await, "canary removed");
    cluster
        .wait_for_pods("ghcr.io/stefanprodan/podinfo:6.1.0", 4)
        .await;
    let weights: Vec<u32> = cluster
        .traffic
        .routes("test", "podinfo")
        .unwrap()
        .history()
        .into_iter()
        .map(|(_, r)| r.weight)
        .collect();
    assert!(weights.windows(3).any(|w| w == [25, 50, 75]), "{weights:?}");
    let events = cluster.server.list("events.k8s.io/v1", "Event");
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    for reason in ["Progressing", "StepReached", "Promoting", "Succeeded"] {
        assert!(reasons.contains(&reason), "no {reason} event: {reasons:?}");
    }
    let _ = stop.send(());
    controller.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_rolls_a_failing_canary_back() {
    let cluster = Cluster::new().await;
    cluster
        .metrics
        .set("request-success-rate", MetricOutcome::Value(80.0));
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    let end = cluster
        .reconcile_until(&context, Duration::from_secs(30), terminal)
        .await;
    assert_eq!(end.phase, Phase::Failed, "{}", end.message);
    assert_eq!(
        cluster.stable_image().await,
        "ghcr.io/stefanprodan/podinfo:6.0.0",
        "stable untouched"
    );
    assert!(!cluster.canary_exists().await);
    cluster
        .wait_for_pods("ghcr.io/stefanprodan/podinfo:6.0.0", 4)
        .await;
    assert!(
        cluster
            .traffic
            .routes("test", "podinfo")
            .unwrap()
            .route()
            .is_stable_only()
    );
    let events = cluster.server.list("events.k8s.io/v1", "Event");
    let failed_check = events
        .iter()
        .find(|e| e["reason"] == "FailedCheck")
        .expect("a FailedCheck event");
    assert!(
        failed_check["note"]
            .as_str()
            .unwrap()
            .contains("80 is outside >= 99"),
        "{failed_check}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_controller_resumes_in_every_phase() {
    type Point = fn(&RolloutStatus) -> bool;
    let phases: [(&str, Point); 5] = [
        ("initialized", |s| s.phase != Phase::Initializing),
        ("first step", |s| s.routing.route.weight == 25),
        ("at a gate", |s| {
            s.routing.route.weight == 50
                && s.stage == canary_core::engine::status::StepStage::Gating
        }),
        ("last step", |s| s.routing.route.weight == 75),
        ("promoting", |s| s.phase == Phase::Promoting),
    ];
    for (name, point) in phases {
        let cluster = Cluster::new().await;
        cluster.create_rollout(ROLLOUT).await;
        let first = cluster.context();
        cluster
            .reconcile_until(&first, Duration::from_secs(20), point)
            .await;
        drop(first);
        let second = cluster.context();
        let end = cluster
            .reconcile_until(&second, Duration::from_secs(30), terminal)
            .await;
        assert_eq!(
            end.phase,
            Phase::Succeeded,
            "restarted at {name}: {}",
            end.message
        );
        assert_eq!(
            cluster.stable_image().await,
            "ghcr.io/stefanprodan/podinfo:6.1.0",
            "restarted at {name}"
        );
        assert!(!cluster.canary_exists().await, "restarted at {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollouts_complete_through_conflicts_errors_and_dropped_watches() {
    let mut injected = 0;
    for seed in [1, 2, 3] {
        let cluster = Cluster::new().await;
        cluster.create_rollout(ROLLOUT).await;
        let faults = cluster.server.faults();
        faults.set_seed(seed);
        faults.set_conflict_rate(0.1);
        faults.set_error_rate(0.1);
        faults.set_drop_watch_rate(0.2);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Retries back off from 100 ms, not 5 s: a write that meets several injected faults
        // in a row (one in a few hundred does, at these rates) is tried again within the
        // test's wait, as it would be within minutes in a cluster (`retry` tests the delays).
        let mut context = Arc::try_unwrap(cluster.context())
            .ok()
            .expect("a fresh context is not shared");
        context.retries = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let controller = tokio::spawn(run(Arc::new(context), Vec::new(), async {
            let _ = stopped.await;
        }));
        let end = cluster.wait_until(Duration::from_secs(60), terminal).await;
        faults.clear();
        assert_eq!(end.phase, Phase::Succeeded, "seed {seed}: {}", end.message);
        assert_eq!(
            cluster.stable_image().await,
            "ghcr.io/stefanprodan/podinfo:6.1.0"
        );
        assert!(!cluster.canary_exists().await, "no canary left behind");
        let canaries = cluster
            .server
            .list("apps/v1", "Deployment")
            .iter()
            .filter(|d| d["metadata"]["name"] != "podinfo")
            .count();
        assert_eq!(canaries, 0, "no duplicate canary");
        assert!(
            end.analysis.measurements.len() >= 3,
            "the analysis history survived: {:?}",
            end.analysis.measurements.len()
        );
        let failures = cluster
            .server
            .requests()
            .iter()
            .filter(|r| r.status >= 409)
            .count();
        injected += failures;
        let _ = stop.send(());
        controller.await.unwrap();
    }
    assert!(injected >= 3, "faults were injected: {injected}");
}

/// Writes to the API, without events (which are notices, not state).
fn writes(server: &ApiServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.verb.is_write() && !r.path.contains("/events"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_weight_step_costs_at_most_three_writes_and_an_idle_pass_none() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 25
                && s.stage == canary_core::engine::status::StepStage::Gating
        })
        .await;
    // From the first gate to the second, and from the second to the third.
    for (from, to) in [(25, 50), (50, 75)] {
        cluster.server.clear_requests();
        cluster
            .reconcile_until(&context, Duration::from_secs(20), |s| {
                s.routing.route.weight == to
                    && s.stage == canary_core::engine::status::StepStage::Gating
            })
            .await;
        let writes = writes(&cluster.server);
        assert!(
            writes.len() <= 3,
            "step {from} -> {to}: {} writes: {writes:#?}",
            writes.len()
        );
        let _ = from;
    }
    // Between analysis runs nothing changes: a pass reads, and writes nothing.
    cluster.server.clear_requests();
    for _ in 0..3 {
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        reconcile(Arc::new(rollout), context.clone()).await.unwrap();
    }
    let idle = cluster.server.requests();
    let idle_writes: Vec<_> = idle
        .iter()
        .filter(|r| r.verb.is_write())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        idle_writes.is_empty() || cluster.status().await.gate.last_analysis.is_some(),
        "{idle_writes:#?}"
    );
    let end = cluster
        .reconcile_until(&context, Duration::from_secs(30), terminal)
        .await;
    assert_eq!(end.phase, Phase::Succeeded);
    // The pass after the status records the promoted revision lets the stable Deployment go
    // (one write); after that a finished rollout writes nothing.
    let rollout = cluster.rollouts().get("podinfo").await.unwrap();
    reconcile(Arc::new(rollout), context.clone()).await.unwrap();
    let released = cluster.deployments().get("podinfo").await.unwrap();
    assert!(!released.annotations().contains_key(STABLE_REVISION));
    cluster.server.clear_requests();
    for _ in 0..3 {
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        reconcile(Arc::new(rollout), context.clone()).await.unwrap();
    }
    let after: Vec<_> = cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| r.verb.is_write())
        .collect();
    assert!(
        after.is_empty(),
        "a finished rollout writes nothing: {after:?}"
    );
    // Nor does it read: every object a pass needs comes from the watch caches, so the only
    // requests are this test's own three reads of the Rollout (and no watch restarted).
    let requests: Vec<String> = cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.verb != Verb::Watch)
        .map(|r| format!("{:?} {}", r.verb, r.path))
        .collect();
    assert_eq!(
        requests,
        vec!["Get /apis/canary.rs/v1alpha1/namespaces/test/rollouts/podinfo".to_owned(); 3],
        "an idle pass makes no request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_rollout_resets_routes_removes_the_canary_and_releases_stable() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    cluster
        .rollouts()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    let rollout = cluster.rollouts().get("podinfo").await.unwrap();
    assert!(
        rollout.metadata.deletion_timestamp.is_some(),
        "held by the finalizer"
    );
    // The cleanup takes passes: the canary Deployment is deleted in the foreground, and the
    // stable Deployment is let go only once the canary's pods are gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut passes = 0;
    while let Some(rollout) = cluster.rollouts().get_opt("podinfo").await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "finalizer not removed"
        );
        let stable = cluster.deployments().get("podinfo").await.unwrap();
        if stable.spec.paused == Some(false) {
            assert!(
                !cluster.canary_exists().await,
                "let go before the canary went"
            );
        }
        reconcile(Arc::new(rollout), context.clone()).await.unwrap();
        passes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(passes >= 1);
    assert!(!cluster.canary_exists().await);
    assert!(
        cluster
            .traffic
            .routes("test", "podinfo")
            .unwrap()
            .route()
            .is_stable_only()
    );
    let stable = cluster.deployments().get("podinfo").await.unwrap();
    assert_ne!(
        stable.spec.paused,
        Some(true),
        "the stable Deployment is let go"
    );
    assert!(
        !stable
            .annotations()
            .contains_key("canary.rs/stable-revision")
    );
}

impl Cluster {
    /// Reconciles the deleted Rollout until its finalizer is gone (at most 10 s).
    async fn reconcile_until_gone(&self, context: &Arc<Context>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(rollout) = self.rollouts().get_opt("podinfo").await.unwrap() {
            assert!(Instant::now() < deadline, "finalizer not removed");
            reconcile(Arc::new(rollout), context.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_deleted_with_the_users_objects_is_cleaned_up() {
    // An Argo CD Application deleted whole: the Rollout, its stable Deployment and its Service
    // go together, mid-release. Nothing is left to route; the canary must not leak, nor the
    // finalizer hold the Rollout forever.
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    cluster
        .deployments()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(cluster.client.clone(), "test")
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    cluster
        .rollouts()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    cluster.reconcile_until_gone(&context).await;
    assert!(!cluster.canary_exists().await, "the canary leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_whose_spec_became_invalid_still_removes_its_canary_when_deleted() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    assert!(cluster.canary_exists().await);
    let invalid =
        serde_json::json!({"spec": {"strategy": {"canary": {"steps": [{"weight": 175}]}}}});
    cluster
        .rollouts()
        .patch("podinfo", &PatchParams::default(), &Patch::Merge(&invalid))
        .await
        .unwrap();
    cluster
        .rollouts()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    cluster.reconcile_until_gone(&context).await;
    assert!(!cluster.canary_exists().await, "the canary leaked");
    // Cleaned up from the last valid spec: the route went back to stable first.
    let route = cluster.traffic.routes("test", "podinfo").unwrap().route();
    assert!(route.is_stable_only(), "{route:?}");
    let stable = cluster.deployments().get("podinfo").await.unwrap();
    assert_ne!(
        stable.spec.paused,
        Some(true),
        "the stable Deployment is let go"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_reach_the_rollout_through_canaryctl() {
    let cluster = Cluster::new().await;
    cluster
        .create_rollout(&ROLLOUT.replace(
            "[{weight: 25}, {weight: 50}, {weight: 75}]",
            "[{weight: 25, pause: {}}, {weight: 50}]",
        ))
        .await;
    let context = cluster.context();
    let paused = cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.phase == Phase::Paused
        })
        .await;
    assert_eq!(paused.routing.route.weight, 25);
    canary_kube::ctl::send(
        &cluster.rollouts(),
        "podinfo",
        canary_core::Command::Promote,
        1,
    )
    .await
    .unwrap();
    let end = cluster
        .reconcile_until(&context, Duration::from_secs(30), terminal)
        .await;
    assert_eq!(end.phase, Phase::Succeeded);
    assert_eq!(end.commands.last_command, 1);
    let rows = canary_kube::ctl::row(&cluster.rollouts().get("podinfo").await.unwrap());
    assert!(
        rows.starts_with("podinfo") && rows.contains("Succeeded"),
        "{rows}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_rollout_is_refused_in_its_status() {
    let cluster = Cluster::new().await;
    cluster
        .create_rollout(&ROLLOUT.replace("{weight: 75}", "{weight: 175}"))
        .await;
    let context = cluster.context();
    let status = cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.condition("Valid").is_some()
        })
        .await;
    let condition = status.condition("Valid").unwrap();
    assert_eq!(condition.reason, "InvalidSpec");
    let refused = cluster.rollouts().get("podinfo").await.unwrap();
    assert!(
        refused.finalizers().is_empty(),
        "{:?}",
        refused.finalizers()
    );
    assert!(
        condition
            .message
            .contains("spec.strategy.canary.steps[2].weight: 175 is not within 0..=100"),
        "{}",
        condition.message
    );
    assert!(!cluster.canary_exists().await, "nothing was touched");
    assert_eq!(
        cluster
            .deployments()
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .paused,
        None
    );
    let _ = cluster.status().await;
}

const TEMPLATE_ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
  trafficRouting: {kuma: {}}
  strategy: {canary: {steps: [{weight: 50}]}}
  analysis:
    interval: 1s
    scrapeInterval: 1s
    metrics:
    - {name: request-success-rate, interval: 2s, thresholdRange: {min: 99}}
";

#[tokio::test(flavor = "multi_thread")]
async fn a_first_deploy_does_no_rollout_and_a_template_change_does() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(TEMPLATE_ROLLOUT).await;
    let context = cluster.context();
    let adopted = cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Initialized && s.stable_revision.is_some()
        })
        .await;
    for _ in 0..5 {
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        reconcile(Arc::new(rollout), context.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster.status().await.phase,
        Phase::Initialized,
        "the first deploy is adopted, not released"
    );
    assert!(!cluster.canary_exists().await);
    let idle = cluster.deployments().get("podinfo").await.unwrap();
    assert_eq!(idle.spec.paused, None, "adopted as its owner made it");
    assert!(!idle.annotations().contains_key(STABLE_REVISION));
    // canary's webhook holds the Deployment in the request that changes its template, so the
    // new template waits for the release instead of rolling at once.
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:7.0.0"}]}}}});
    let edited = cluster
        .deployments()
        .patch(
            "podinfo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    assert_eq!(edited.spec.paused, Some(true));
    assert_eq!(
        edited.annotations().get(STABLE_REVISION),
        adopted.stable_revision.as_ref(),
        "held at the revision its pods run"
    );
    let held_by = edited
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|f| f.0["f:spec"].get("f:paused").is_some())
        })
        .count();
    assert_eq!(held_by, 0, "what the webhook set is no field manager's");
    let released = cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Progressing
        })
        .await;
    assert_ne!(released.release.canary_revision, adopted.stable_revision);
    let end = cluster
        .reconcile_until(&context, Duration::from_secs(30), terminal)
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    assert_eq!(
        cluster.stable_image().await,
        "ghcr.io/stefanprodan/podinfo:7.0.0"
    );
    // The pass after the status records the promoted revision lets the Deployment go.
    for _ in 0..3 {
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        reconcile(Arc::new(rollout), context.clone()).await.unwrap();
    }
    let after = cluster.deployments().get("podinfo").await.unwrap();
    assert_eq!(after.spec.paused, Some(false), "no longer held");
    assert!(
        !after.annotations().contains_key(STABLE_REVISION),
        "nothing of canary's is left on it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_config_map_is_a_new_revision() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let cluster = Cluster::new().await;
    let configs: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "test");
    let map: ConfigMap = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "podinfo-config"}, "data": {"level": "info"}}),
    )
    .unwrap();
    configs.create(&PostParams::default(), &map).await.unwrap();
    let mount = serde_json::json!({"spec": {"template": {"spec": {"volumes": [{"name": "config", "configMap": {"name": "podinfo-config"}}]}}}});
    cluster
        .deployments()
        .patch(
            "podinfo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&mount),
        )
        .await
        .unwrap();
    cluster.create_rollout(TEMPLATE_ROLLOUT).await;
    let context = cluster.context();
    cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Initialized && s.stable_revision.is_some()
        })
        .await;
    let stable = cluster.deployments().get("podinfo").await.unwrap();
    assert!(
        !stable.annotations().contains_key(STABLE_REVISION) && stable.spec.paused.is_none(),
        "adopted without a write: the revision is in the Rollout's status"
    );
    let change = serde_json::json!({"data": {"level": "debug"}});
    configs
        .patch(
            "podinfo-config",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&change),
        )
        .await
        .unwrap();
    cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Progressing
        })
        .await;
    let canary = cluster.deployments().get("podinfo-canary").await.unwrap();
    let annotations = canary.spec.template.metadata.unwrap().annotations.unwrap();
    assert!(
        annotations.contains_key("canary.rs/config-hash"),
        "the canary's pods start with the new config"
    );
    let end = cluster
        .reconcile_until(&context, Duration::from_secs(30), terminal)
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_secret_is_a_new_revision_and_its_data_is_never_read() {
    use k8s_openapi::api::core::v1::Secret;
    let cluster = Cluster::new().await;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "test");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "podinfo-token"},
        "stringData": {"token": "hunter2"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mount = serde_json::json!({"spec": {"template": {"spec": {"volumes": [{"name": "token", "secret": {"secretName": "podinfo-token"}}]}}}});
    cluster
        .deployments()
        .patch("podinfo", &PatchParams::default(), &Patch::Merge(&mount))
        .await
        .unwrap();
    cluster.create_rollout(TEMPLATE_ROLLOUT).await;
    let context = cluster.context();
    let adopted = cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Initialized && s.stable_revision.is_some()
        })
        .await;
    let change = serde_json::json!({"stringData": {"token": "correct horse"}});
    secrets
        .patch(
            "podinfo-token",
            &PatchParams::default(),
            &Patch::Merge(&change),
        )
        .await
        .unwrap();
    let releasing = cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Progressing
        })
        .await;
    assert_ne!(releasing.release.canary_revision, adopted.stable_revision);
    let reads: Vec<_> = cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets") && matches!(r.verb, Verb::Get | Verb::List))
        .collect();
    assert!(!reads.is_empty());
    assert!(
        reads.iter().all(|r| r.metadata_only),
        "a Secret was read whole: {reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_controller_leads_and_another_takes_over_an_expired_lease() {
    use canary_core::engine::providers::{Clock, ManualClock};
    use canary_kube::leader::LeaderElection;
    let cluster = Cluster::new().await;
    let clock = ManualClock::new(jiff::Timestamp::now());
    let lease = |who| {
        LeaderElection::new(
            cluster.client.clone(),
            "test",
            "canary-controller",
            who,
            Duration::from_secs(15),
        )
    };
    let (a, b) = (lease("a"), lease("b"));
    assert!(a.try_lead(&clock).await.unwrap());
    assert!(!b.try_lead(&clock).await.unwrap(), "held by a");
    clock.advance(jiff::SignedDuration::from_secs(10));
    assert!(a.try_lead(&clock).await.unwrap(), "a renews");
    clock.advance(jiff::SignedDuration::from_secs(10));
    assert!(
        !b.try_lead(&clock).await.unwrap(),
        "renewed 10s ago: still a's"
    );
    clock.advance(jiff::SignedDuration::from_secs(20));
    assert!(
        b.try_lead(&clock).await.unwrap(),
        "a stopped renewing: b takes over"
    );
    assert!(!a.try_lead(&clock).await.unwrap(), "a lost it");
    b.step_down().await.unwrap();
    assert!(a.try_lead(&clock).await.unwrap(), "released: free to take");
    let _ = clock.now();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_reports_its_metrics() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let context = cluster.context_with(metrics);
    cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"canary_rollout_weight{namespace="test",name="podinfo"} 50"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"canary_rollout_phase{namespace="test",name="podinfo",phase="Progressing"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"canary_rollout_step{namespace="test",name="podinfo"} 2"#),
        "{text}"
    );
    assert!(text.contains("canary_reconciles_total"), "{text}");
    assert!(
        text.contains("canary_step_duration_seconds_count"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_webhook_the_controller_holds_on_sight_and_says_when_it_was_late() {
    let cluster = Cluster::start(false).await;
    cluster.create_rollout(TEMPLATE_ROLLOUT).await;
    let context = cluster.context();
    let adopted = cluster
        .reconcile_until(&context, Duration::from_secs(10), |s| {
            s.phase == Phase::Initialized && s.stable_revision.is_some()
        })
        .await;
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "podinfo", "image": "ghcr.io/stefanprodan/podinfo:7.0.0"}]}}}});
    let edited = cluster
        .deployments()
        .patch("podinfo", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        edited.spec.paused, None,
        "no webhook: nothing holds it in the request"
    );
    // The Deployment controller acts on the new template before the controller's next pass.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stable = cluster.deployments().get("podinfo").await.unwrap();
        let status = stable.status.unwrap_or_default();
        if status.observed_generation >= stable.metadata.generation
            && status.updated_replicas.unwrap_or(0) > 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Deployment controller did not act"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rollout = cluster.rollouts().get("podinfo").await.unwrap();
    reconcile(Arc::new(rollout), context.clone()).await.unwrap();
    let held = cluster.deployments().get("podinfo").await.unwrap();
    assert_eq!(held.spec.paused, Some(true), "held on sight");
    assert_eq!(
        held.annotations().get(STABLE_REVISION),
        adopted.stable_revision.as_ref()
    );
    let events = cluster.server.list("events.k8s.io/v1", "Event");
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains(&"StableRolledBeforeHold"), "{reasons:?}");
}

/// A TCP listener counting the connections made to it (each answered `500` and closed).
async fn counting_listener() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (address, accepted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_naming_a_destination_not_allowed_is_refused_before_anything_is_sent() {
    let cluster = Cluster::new().await;
    let (address, accepted) = counting_listener().await;
    cluster
        .create_rollout(&ROLLOUT.replace(
            "    - {name: request-success-rate, interval: 2s, thresholdRange: {min: 99}}\n",
            &format!(
                "    - {{name: request-success-rate, interval: 2s, thresholdRange: {{min: 99}}}}
    - {{name: secrets, interval: 2s, thresholdRange: {{max: 1}}, prometheus: {{address: '{address}', query: 'up'}}}}
    webhooks:
    - {{name: gate, type: pre-rollout, url: '{address}/latest/meta-data/'}}
"
            ),
        ))
        .await;
    let http = reqwest::Client::new();
    let context = |destinations: canary_core::analysis::destinations::Destinations| {
        Arc::new(
            Context::new(
                cluster.client.clone(),
                cluster.traffic.clone(),
                Arc::new(canary_core::analysis::prometheus::PrometheusMetrics::new(
                    http.clone(),
                )),
                Arc::new(
                    canary_core::analysis::webhooks::HttpWebhooks::new(http.clone())
                        .with_retries(0),
                ),
                Arc::new(SystemClock),
                Metrics::register(&mut Registry::default()),
                "canary-test",
            )
            .with_destinations(destinations),
        )
    };
    // Only the webhook's host is allowed, under another path: both destinations are refused.
    let elsewhere = canary_core::analysis::destinations::Destinations::new(
        [],
        [format!("{address}/hooks").as_str()],
    )
    .unwrap();
    let status = cluster
        .reconcile_until(&context(elsewhere), Duration::from_secs(10), |s| {
            s.condition("Valid").is_some()
        })
        .await;
    let condition = status.condition("Valid").unwrap();
    assert_eq!(condition.reason, "DestinationNotAllowed");
    for field in [
        "spec.analysis.metrics[1].prometheus.address",
        "spec.analysis.webhooks[0].url",
    ] {
        assert!(condition.message.contains(field), "{}", condition.message);
    }
    for _ in 0..3 {
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        reconcile(Arc::new(rollout), context(Default::default()))
            .await
            .unwrap();
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!cluster.canary_exists().await, "nothing was touched");
    let refused = cluster.rollouts().get("podinfo").await.unwrap();
    assert!(
        refused.finalizers().is_empty(),
        "not even a finalizer: deleting it undoes nothing"
    );
    assert_eq!(
        cluster
            .deployments()
            .get("podinfo")
            .await
            .unwrap()
            .spec
            .paused,
        None
    );
    // Allowed, the same Rollout's requests go out (the pre-rollout webhook is called).
    let allowed = canary_core::analysis::destinations::Destinations::new(
        [address.as_str()],
        [address.as_str()],
    )
    .unwrap();
    let allowed = context(allowed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no request was sent");
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        let _ = reconcile(Arc::new(rollout), allowed.clone()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_rollout_after_its_stable_deployment_went_puts_routes_back_on_stable() {
    let cluster = Cluster::new().await;
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    cluster
        .deployments()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    cluster
        .rollouts()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    cluster.reconcile_until_gone(&context).await;
    assert!(!cluster.canary_exists().await, "the canary leaked");
    let route = cluster.traffic.routes("test", "podinfo").unwrap().route();
    assert!(route.is_stable_only(), "{route:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_named_as_the_canary_that_canary_did_not_make_is_never_touched() {
    let cluster = Cluster::new().await;
    let unrelated: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "podinfo-canary", "namespace": "test", "labels": {"team": "qa"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "qa-probe"}},
            "template": {
                "metadata": {"labels": {"app": "qa-probe"}},
                "spec": {"containers": [{"name": "probe", "image": "busybox:1.36"}]}
            }
        }
    }))
    .unwrap();
    let made = cluster
        .deployments()
        .create(&PostParams::default(), &unrelated)
        .await
        .unwrap();
    cluster.create_rollout(ROLLOUT).await;
    let context = cluster.context();
    let mut refused = None;
    for _ in 0..10 {
        let rollout = cluster.rollouts().get("podinfo").await.unwrap();
        if let Err(error) = reconcile(Arc::new(rollout), context.clone()).await {
            refused = Some(error.to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = refused.expect("the release says what is in its way");
    assert!(
        refused.contains("podinfo-canary is in the way"),
        "{refused}"
    );
    let status = cluster.rollouts().get("podinfo").await.unwrap().status;
    let route = status.map(|s| s.engine.routing.route).unwrap_or_default();
    assert!(
        route.is_stable_only(),
        "no traffic to what canary did not make: {route:?}"
    );
    cluster
        .rollouts()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    cluster.reconcile_until_gone(&context).await;
    let after = cluster.deployments().get("podinfo-canary").await.unwrap();
    assert_eq!(after.metadata.uid, made.metadata.uid);
    assert_eq!(after.spec, made.spec, "its spec is as its owner made it");
    assert_eq!(after.labels(), made.labels());
    assert!(after.metadata.deletion_timestamp.is_none());
}

/// A router that cannot read back whether a route is in effect (`Verification::Unknown`), with
/// weights in thousandths: a plugin a program registers with the controller.
mod blind_router {
    use std::sync::{Arc, Mutex, PoisonError};

    use canary_core::engine::providers::{TrafficObservation, TrafficProvider, Verification};
    use canary_core::traffic::{Capabilities, ProviderDescriptor, Registry};
    use canary_core::{RolloutPlan, RouteState, async_trait};
    use canary_kube::controller::TrafficFactory;

    pub static DESCRIPTOR: ProviderDescriptor =
        ProviderDescriptor::plugin("blind-router", |_| Capabilities::weights_only()).with_metrics(
            canary_core::analysis::queries::MetricFamily {
                requests: "blind_requests_total",
                duration_bucket: "blind_request_duration_seconds_bucket",
                to_millis: " * 1000",
                canary: r#"pool="{{ service }}-canary""#,
                stable: r#"pool="{{ service }}""#,
                code: "code",
            },
        );

    /// The canary's share, in thousandths, shared by every provider it makes.
    #[derive(Clone, Default)]
    pub struct Factory(pub Arc<Mutex<u32>>);

    impl Factory {
        pub fn share(&self) -> u32 {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    struct Router(Arc<Mutex<u32>>);

    #[async_trait]
    impl TrafficProvider for Router {
        async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
            let share = route.weight * 1000 / route.total.max(1);
            let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = *held != share;
            *held = share;
            Ok(changed)
        }

        async fn observe(&self, _: &RouteState) -> canary_core::Result<TrafficObservation> {
            let share = *self.0.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(TrafficObservation {
                route: Some(RouteState {
                    weight: share,
                    total: 1000,
                    ..RouteState::stable()
                }),
                verified: Verification::Unknown,
                pending: None,
            })
        }

        async fn finalize(&self) -> canary_core::Result<()> {
            Ok(())
        }
    }

    impl TrafficFactory for Factory {
        fn provider(
            &self,
            _: &kube::Client,
            plan: &RolloutPlan,
        ) -> canary_kube::Result<Arc<dyn TrafficProvider>> {
            assert_eq!(plan.provider, &DESCRIPTOR);
            Ok(Arc::new(Router(self.0.clone())))
        }

        fn registry(&self) -> Registry {
            Registry::builtin().register(&DESCRIPTOR).unwrap()
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_router_that_cannot_verify_is_released_and_deleted() {
    let cluster = Cluster::new().await;
    let factory = blind_router::Factory::default();
    let context = Arc::new(Context::new(
        cluster.client.clone(),
        Arc::new(factory.clone()),
        Arc::new(cluster.metrics.clone()),
        Arc::new(InMemoryWebhooks::default()),
        Arc::new(SystemClock),
        Metrics::register(&mut Registry::default()),
        "canary-test",
    ));
    cluster
        .create_rollout(&ROLLOUT.replace(
            "trafficRouting: {kuma: {}}",
            "trafficRouting: {plugin: {name: blind-router}}",
        ))
        .await;
    let mid = cluster
        .reconcile_until(&context, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    assert_eq!(mid.phase, Phase::Progressing, "{}", mid.message);
    assert_eq!(factory.share(), 500, "the router holds the step's share");
    cluster
        .rollouts()
        .delete("podinfo", &Default::default())
        .await
        .unwrap();
    // A router that cannot tell counts as having taken the route back to stable: the
    // finalizer goes.
    cluster.reconcile_until_gone(&context).await;
    assert_eq!(factory.share(), 0);
    assert!(!cluster.canary_exists().await);
}
