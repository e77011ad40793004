//! A Rollout deleted mid-release (20% of traffic on the canary) with each propagation policy,
//! on the API test server with the simulated kube-controller-manager stepped by hand between
//! the controller's passes, so that the garbage collector can act at the worst moment: right
//! after the delete, and between any two passes. At every step users' requests are checked
//! (`TestCluster::check_traffic`): none reaches a backend that is gone, no canary pod answers
//! through a route that sends it nothing, and the stable Service always has a selector.
//!
//! Argo CD deletes the resources of an application in the foreground, both when it prunes them
//! (sync option `PrunePropagationPolicy`, `foreground` by default: docs/user-guide/
//! sync-options.md) and when the application is deleted with its
//! `resources-finalizer.argocd.argoproj.io` (docs/user-guide/app_deletion.md); `kubectl
//! delete` and most clients delete in the background.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_core::engine::machine::MetricOutcome;
use canary_core::engine::memory::InMemoryMetrics;
use canary_core::engine::providers::{Clock, SystemClock};
use canary_core::{Phase, RolloutPlan, RolloutStatus};
use canary_kube::controller::{Context, reconcile};
use canary_kube::crd::Rollout;
use canary_kube::fixtures::{TestCluster, register_rollout_crd, register_upstream_crds};
use canary_kube::traffic::{Backends, ClusterBackend};
use kube::Api;
use kube::api::DeleteParams;
use kube_testserver::{ApiServer, ControllerManager};
use serde_json::{Value, json};

const NAMESPACE: &str = "shop";
const POD_STARTUP: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(20);

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: web, namespace: shop}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {name: web, port: 8080}
  trafficRouting: {nginx: {ingress: web}}
  strategy: {canary: {steps: [{weight: 20, pause: {}}]}}
  progressDeadline: 30s
";

/// GitOps tracking labels and annotations the stable Ingress carries (Argo CD's, Flux's,
/// Helm's); the canary Ingress must carry none.
fn tracking_labels() -> Value {
    json!({"app.kubernetes.io/instance": "shop",
           "argocd.argoproj.io/instance": "shop",
           "app.kubernetes.io/managed-by": "Helm",
           "kustomize.toolkit.fluxcd.io/name": "shop",
           "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
}

fn tracking_annotations() -> Value {
    json!({"argocd.argoproj.io/tracking-id": "shop:networking.k8s.io/Ingress:shop/web",
           "meta.helm.sh/release-name": "shop",
           "meta.helm.sh/release-namespace": "shop",
           "kubernetes.io/ingress.class": "nginx"})
}

fn objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": "web:1",
                                                              "ports": [{"containerPort": 8080}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": NAMESPACE},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "web", "namespace": NAMESPACE,
                            "labels": tracking_labels(), "annotations": tracking_annotations()},
               "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}}]}}),
    ]
}

/// A cluster whose controllers run only when [`Run::step`] says.
struct Run {
    cluster: TestCluster,
    kcm: ControllerManager,
    plan: RolloutPlan,
    context: Arc<Context>,
    label: String,
    checks: usize,
}

impl Run {
    async fn start(label: &str) -> Self {
        let server = ApiServer::start().await.unwrap();
        register_rollout_crd(&server);
        register_upstream_crds(&server);
        server.admit_like_upstream();
        let kcm = server.controllers(POD_STARTUP);
        let metrics = InMemoryMetrics::default();
        metrics.set("request-success-rate", MetricOutcome::Value(99.9));
        let cluster = TestCluster {
            client: server.client(),
            server,
            metrics,
        };
        for object in objects() {
            cluster.put(object);
        }
        let plan = canary_core::api::load::plan_from_yaml(ROLLOUT).unwrap();
        let context = cluster.context(Arc::new(Backends::new([
            &canary_nginx::Nginx as &dyn ClusterBackend
        ])));
        let mut run = Run {
            cluster,
            kcm,
            plan,
            context,
            label: label.to_owned(),
            checks: 0,
        };
        // Before the stable pods are ready nothing serves: no check yet.
        let deadline = Instant::now() + LIMIT;
        loop {
            run.kcm.step(SystemClock.now());
            let d = run.get("apps/v1", "Deployment", "web").unwrap();
            if d["status"]["availableReplicas"] == 3 && d["status"]["updatedReplicas"] == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stable Deployment did not roll out"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        run.check("the stable Deployment rolled out");
        let rollout: Rollout = serde_saphyr::from_str(ROLLOUT).unwrap();
        run.cluster.create_rollout(&rollout).await;
        run
    }

    fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        self.cluster
            .server
            .get(api_version, kind, Some(NAMESPACE), name)
    }

    fn status(&self) -> Option<RolloutStatus> {
        self.cluster
            .rollout(NAMESPACE, "web")
            .map(|r| r.status.map(|s| s.engine).unwrap_or_default())
    }

    /// What users' requests get holds every rule, and the stable Service has a selector.
    fn check(&mut self, when: &str) {
        let found = self.cluster.check_traffic(&self.plan);
        assert!(
            found.is_empty(),
            "{}: {when}:\n{}",
            self.label,
            found.join("\n")
        );
        let service = self.get("v1", "Service", "web").unwrap();
        assert!(
            service["spec"]["selector"]
                .as_object()
                .is_some_and(|s| !s.is_empty()),
            "{}: {when}: the stable Service has no selector: {service}",
            self.label
        );
        self.checks += 1;
    }

    /// The simulated controllers at this instant, then a check.
    fn step(&mut self, when: &str) {
        self.kcm.step(SystemClock.now());
        self.check(&format!("{when}, after the controllers"));
    }

    /// One controller pass (while the Rollout exists), a check, the controllers, a check.
    async fn pass(&mut self, when: &str) {
        if let Some(rollout) = self.cluster.rollout(NAMESPACE, "web") {
            reconcile(Arc::new(rollout), self.context.clone())
                .await
                .unwrap_or_else(|e| panic!("{}: {when}: reconcile failed: {e}", self.label));
            self.check(&format!("{when}, after a pass"));
        }
        self.step(when);
    }

    /// Controller passes and steps until `done`.
    async fn until(&mut self, what: &str, done: impl Fn(&Run) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: {what} not reached: {:?}",
                self.label,
                self.status().map(|s| (s.phase, s.routing.route, s.message))
            );
            self.pass(what).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// A release of `web:2` up to its first step: 20% of traffic on a fully available canary,
    /// waiting for a person.
    async fn mid_release(&mut self) {
        self.until("adoption", |run| {
            run.status().is_some_and(|s| s.stable_revision.is_some())
        })
        .await;
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}});
        self.cluster
            .patch_deployment(NAMESPACE, "web", &patch)
            .await;
        self.until("the first step", |run| {
            let canary_ready = run
                .get("apps/v1", "Deployment", "web-canary")
                .is_some_and(|d| d["status"]["availableReplicas"] == 1);
            run.status()
                .is_some_and(|s| s.phase == Phase::Paused && s.routing.route.weight == 20)
                && canary_ready
        })
        .await;
        // The canary Ingress is canary's alone: no GitOps tool would take it for its own.
        let ingress = self
            .get("networking.k8s.io/v1", "Ingress", "web-canary")
            .expect("the canary Ingress routes 20%");
        let canary = self.get("apps/v1", "Deployment", "web-canary").unwrap();
        let service = self.get("v1", "Service", "web-canary").unwrap();
        for object in [&ingress, &canary, &service] {
            for (key, value) in tracking_labels().as_object().unwrap() {
                assert_ne!(
                    object["metadata"]["labels"].get(key),
                    Some(value),
                    "{}: label {key} copied: {object}",
                    self.label
                );
            }
            for (key, value) in tracking_annotations().as_object().unwrap() {
                // The ingress class is the one annotation the canary Ingress needs.
                if key != "kubernetes.io/ingress.class" {
                    assert_ne!(
                        object["metadata"]["annotations"].get(key),
                        Some(value),
                        "{}: annotation {key} copied: {object}",
                        self.label
                    );
                }
            }
        }
        // The canary Deployment has no owner reference the garbage collector could follow.
        assert!(canary["metadata"]["ownerReferences"].is_null(), "{canary}");
    }

    /// Deletes the Rollout with `params`, then checks at every step until everything canary
    /// made is gone and the stable Service selects as written.
    async fn delete(&mut self, params: &DeleteParams) {
        Api::<Rollout>::namespaced(self.cluster.client.clone(), NAMESPACE)
            .delete("web", params)
            .await
            .unwrap();
        self.check("just deleted");
        // The garbage collector acts before the controller's next pass: it must leave the
        // canary, which still gets its 20%, serving until canary's cleanup has reset the route
        // (ingress-nginx would fall back to stable for a canary without endpoints, but an
        // Istio or Kuma route to it answers 503).
        self.step("just deleted");
        let canary = self.get("apps/v1", "Deployment", "web-canary");
        assert!(
            canary
                .as_ref()
                .is_some_and(|c| c["metadata"]["deletionTimestamp"].is_null()
                    && c["status"]["availableReplicas"] == 1),
            "{}: the garbage collector took the canary while it has traffic: {canary:?}",
            self.label
        );
        self.until("the cleanup", |run| {
            let canary_pods = run
                .cluster
                .server
                .list("v1", "Pod")
                .iter()
                .any(|p| p["metadata"]["labels"]["canary.rs/role"] == "canary");
            run.status().is_none()
                && run.get("apps/v1", "Deployment", "web-canary").is_none()
                && !canary_pods
        })
        .await;
        self.step("cleaned up");
        let service = self.get("v1", "Service", "web").unwrap();
        assert_eq!(
            service["spec"]["selector"],
            json!({"app": "web"}),
            "{}",
            self.label
        );
        assert!(
            self.get("networking.k8s.io/v1", "Ingress", "web-canary")
                .is_none()
        );
        assert!(self.get("v1", "Service", "web-canary").is_none());
        assert!(self.checks > 10, "{}: {} checks", self.label, self.checks);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_deleted_in_the_foreground_mid_release_never_loses_a_request() {
    let mut run = Run::start("foreground").await;
    run.mid_release().await;
    run.delete(&DeleteParams::foreground()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_deleted_in_the_background_mid_release_never_loses_a_request() {
    let mut run = Run::start("background").await;
    run.mid_release().await;
    run.delete(&DeleteParams::background()).await;
}
