//! The DaemonSet workload provider against the strict API test server and its simulated
//! DaemonSet controller, in virtual time: the stable DaemonSet held by `OnDelete` while a
//! release is pending (by canary's webhook in the request that changes its template, or by the
//! provider on sight) keeps every stable pod; the canary DaemonSet runs on the stable one's
//! nodes, at full size or on none; promotion gives the owner's strategy back and the stable
//! pods roll node by node.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use canary_core::Phase;
use canary_core::engine::providers::WorkloadProvider;
use canary_kube::fixtures::{CanaryHold, register_rollout_crd};
use canary_kube::workload::{DaemonSetWorkload, Hold, STABLE_REVISION, UPDATE_STRATEGY};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_testserver::{ApiServer, ControllerManager};
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: agent, namespace: ops}
spec:
  workloadRef: {apiVersion: apps/v1, kind: DaemonSet, name: agent}
  service: {name: agent, port: 8080}
  trafficRouting: {istio: {}}
  strategy: {canary: {steps: [{weight: 50}]}}
";

/// A cluster of three Linux workers and a tainted control-plane node, with the DaemonSet
/// `agent` (on Linux nodes, image `agent:1`, the given update strategy) rolled out.
struct Nodes {
    server: ApiServer,
    kcm: ControllerManager,
    now: Timestamp,
}

impl Nodes {
    async fn start(strategy: Value) -> Self {
        let server = ApiServer::start().await.unwrap();
        register_rollout_crd(&server);
        server.add_mutating_hook(Arc::new(CanaryHold));
        let kcm = server.controllers(Duration::from_secs(10));
        for (name, taints) in [
            (
                "control-plane",
                json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            ),
            ("worker-1", json!([])),
            ("worker-2", json!([])),
            ("worker-3", json!([])),
        ] {
            server.put(json!({"apiVersion": "v1", "kind": "Node",
                              "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}},
                              "spec": {"taints": taints}}));
        }
        let mut daemonset = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ops"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                           "containers": [{"name": "agent", "image": "agent:1"}]}}}
        });
        if !strategy.is_null() {
            daemonset["spec"]["updateStrategy"] = strategy;
        }
        server.put(daemonset);
        let mut nodes = Nodes {
            server,
            kcm,
            now: Timestamp::from_second(1_767_225_600).unwrap(),
        };
        nodes.settle();
        nodes
    }

    /// Runs the controllers until nothing more happens by itself.
    fn settle(&mut self) {
        self.kcm.step(self.now);
        while let Some(at) = self.kcm.next_event() {
            self.now = at;
            self.kcm.step(self.now);
        }
    }

    /// Moves virtual time on by `secs` seconds.
    fn wait(&mut self, secs: i64) {
        self.now = self
            .now
            .checked_add(SignedDuration::from_secs(secs))
            .unwrap();
        self.kcm.step(self.now);
    }

    /// The pods of the DaemonSet `name`: (uid, node, image).
    fn pods(&self, name: &str) -> Vec<(String, String, String)> {
        let mut pods: Vec<(String, String, String)> = self
            .server
            .list("v1", "Pod")
            .into_iter()
            .filter(|pod| {
                pod["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| {
                        owners
                            .iter()
                            .any(|o| o["kind"] == "DaemonSet" && o["name"] == name)
                    })
            })
            .map(|pod| {
                (
                    pod["metadata"]["uid"].as_str().unwrap().to_owned(),
                    pod["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    pod["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        pods.sort_by(|a, b| a.1.cmp(&b.1));
        pods
    }

    fn uids(&self, name: &str) -> BTreeSet<String> {
        self.pods(name).into_iter().map(|(uid, _, _)| uid).collect()
    }

    fn daemonset(&self, name: &str) -> Value {
        self.server
            .get("apps/v1", "DaemonSet", Some("ops"), name)
            .unwrap()
    }

    /// The Rollout targeting `agent`, its status recording `stable` as the revision stable runs.
    async fn rollout(&self, stable: &str) {
        let mut rollout: Value = serde_saphyr::from_str(ROLLOUT).unwrap();
        rollout["status"] = json!({"stableRevision": stable});
        self.server.put(rollout);
    }

    /// The user (or a GitOps tool) writes a new image into the stable DaemonSet's template.
    async fn edit(&self, image: &str) {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}});
        Api::<DaemonSet>::namespaced(self.server.client(), "ops")
            .patch("agent", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
}

fn plan() -> canary_core::RolloutPlan {
    canary_core::api::load::plan_from_yaml(ROLLOUT).unwrap()
}

/// A whole release of a new template: held in the request that changes it, no stable pod
/// restarted while the canary runs beside it on the same nodes, then promoted: the owner's
/// strategy back, the stable pods replaced one node at a time, and the hold let go.
#[tokio::test]
async fn a_new_template_waits_for_the_release_and_rolls_node_by_node_at_promotion() {
    let owners = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    let mut nodes = Nodes::start(owners.clone()).await;
    let stable_pods = nodes.uids("agent");
    assert_eq!(
        stable_pods.len(),
        3,
        "one pod per Linux worker: {:?}",
        nodes.pods("agent")
    );

    let adopting = DaemonSetWorkload::new(nodes.server.client(), &plan());
    let adopted = adopting.observe().await.unwrap();
    assert_eq!((adopted.stable.desired, adopted.stable.available), (3, 3));
    assert_eq!(adopted.desired_revision, adopted.stable.revision);
    nodes.rollout(&adopted.stable.revision).await;

    // The template changes: canary's webhook holds the DaemonSet in the same request.
    nodes.edit("agent:2").await;
    let held = nodes.daemonset("agent");
    assert_eq!(held["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(
        held["metadata"]["annotations"][STABLE_REVISION],
        adopted.stable.revision.as_str()
    );
    nodes.settle();
    nodes.wait(600);
    assert_eq!(
        nodes.uids("agent"),
        stable_pods,
        "no stable pod restarted by the new template"
    );

    let workload = DaemonSetWorkload::new(nodes.server.client(), &plan())
        .with_known_stable(Some(adopted.stable.revision.clone()));
    assert_eq!(workload.hold().await.unwrap(), Hold::Unchanged);
    let seen = workload.observe().await.unwrap();
    assert_ne!(seen.desired_revision, adopted.stable.revision);
    assert_eq!(
        seen.stable.revision, adopted.stable.revision,
        "stable runs what it ran"
    );

    // The canary: first on no node, then on every node the stable one runs on.
    assert!(
        workload
            .ensure_canary(&seen.desired_revision, 0)
            .await
            .unwrap()
    );
    nodes.settle();
    let canary = workload.observe().await.unwrap().canary.unwrap();
    assert_eq!((canary.desired, canary.available), (0, 0));
    assert!(nodes.pods("agent-canary").is_empty());
    assert!(
        !workload
            .ensure_canary(&seen.desired_revision, 0)
            .await
            .unwrap(),
        "idempotent"
    );
    assert!(
        workload
            .ensure_canary(&seen.desired_revision, 3)
            .await
            .unwrap()
    );
    nodes.settle();
    let canary = workload.observe().await.unwrap().canary.unwrap();
    assert_eq!((canary.desired, canary.available), (3, 3));
    let canary_nodes: Vec<String> = nodes
        .pods("agent-canary")
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(canary_nodes, ["worker-1", "worker-2", "worker-3"]);
    assert!(nodes.pods("agent-canary").iter().all(|p| p.2 == "agent:2"));
    assert_eq!(nodes.uids("agent"), stable_pods);

    // Promotion: the owner's strategy back, and the stable pods roll one node at a time.
    assert!(workload.promote(&seen.desired_revision).await.unwrap());
    let promoted = nodes.daemonset("agent");
    assert_eq!(promoted["spec"]["updateStrategy"], owners);
    assert!(
        promoted["metadata"]["annotations"]
            .get(UPDATE_STRATEGY)
            .is_none()
    );
    let mut most_unavailable = 0;
    for _ in 0..20 {
        nodes.wait(5);
        let state = workload.observe().await.unwrap().stable;
        assert_eq!(state.revision, seen.desired_revision);
        let running = nodes
            .pods("agent")
            .iter()
            .filter(|p| p.2 == "agent:1")
            .count();
        most_unavailable = most_unavailable.max(3 - running - state.available.min(3) as usize);
        if state.available == 3 && !state.stale {
            break;
        }
    }
    let state = workload.observe().await.unwrap().stable;
    assert_eq!(
        (state.desired, state.available),
        (3, 3),
        "{:?}",
        nodes.pods("agent")
    );
    assert!(nodes.pods("agent").iter().all(|p| p.2 == "agent:2"));
    assert!(
        most_unavailable <= 1,
        "one node at a time: {most_unavailable}"
    );

    // The status records the promoted revision: the hold ends.
    let done = DaemonSetWorkload::new(nodes.server.client(), &plan())
        .with_known_stable(Some(seen.desired_revision.clone()));
    assert_eq!(done.hold().await.unwrap(), Hold::Released);
    let released = nodes.daemonset("agent");
    assert!(
        released["metadata"]["annotations"]
            .get(STABLE_REVISION)
            .is_none()
    );
    assert_eq!(released["spec"]["updateStrategy"], owners);
    assert!(done.remove_canary().await.unwrap());
    nodes.settle();
    assert!(done.canary_gone().await.unwrap());
}

/// Without the webhook the provider holds on sight: before the DaemonSet controller has seen
/// the new template nothing rolled ([`Hold::Held`]); a GitOps tool applying a rolling strategy
/// over the hold is held again by the webhook, its strategy kept as the owner's.
#[tokio::test]
async fn without_the_webhook_the_provider_holds_and_a_gitops_strategy_is_held_again() {
    let mut nodes = Nodes::start(Value::Null).await;
    let stable_pods = nodes.uids("agent");
    let adopted = DaemonSetWorkload::new(nodes.server.client(), &plan())
        .observe()
        .await
        .unwrap();
    // No Rollout yet: the webhook holds nothing.
    nodes.edit("agent:2").await;
    assert!(nodes.daemonset("agent")["spec"]["updateStrategy"].is_null());
    nodes.rollout(&adopted.stable.revision).await;
    let workload = DaemonSetWorkload::new(nodes.server.client(), &plan())
        .with_known_stable(Some(adopted.stable.revision.clone()));
    assert_eq!(workload.hold().await.unwrap(), Hold::Held);
    nodes.settle();
    nodes.wait(600);
    assert_eq!(nodes.uids("agent"), stable_pods);

    // Argo CD applies Git's strategy (surge one node at a time) over the hold.
    let git = json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}});
    Api::<DaemonSet>::namespaced(nodes.server.client(), "ops")
        .patch("agent", &PatchParams::default(), &Patch::Merge(&git))
        .await
        .unwrap();
    let held = nodes.daemonset("agent");
    assert_eq!(held["spec"]["updateStrategy"]["type"], "OnDelete");
    nodes.settle();
    nodes.wait(600);
    assert_eq!(
        nodes.uids("agent"),
        stable_pods,
        "held again in the same request"
    );
    let kept: Value = serde_json::from_str(
        held["metadata"]["annotations"][UPDATE_STRATEGY]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        kept, git["spec"]["updateStrategy"],
        "Git's strategy is the owner's now"
    );
}

/// A DaemonSet its owner updates `OnDelete` never takes a new template by itself: the release
/// is refused before a canary is made, saying why.
#[tokio::test]
async fn a_daemonset_its_owner_updates_on_delete_is_not_released() {
    let nodes = Nodes::start(json!({"type": "OnDelete"})).await;
    let workload = DaemonSetWorkload::new(nodes.server.client(), &plan());
    let seen = workload.observe().await.unwrap();
    let refused = workload
        .ensure_canary(&seen.desired_revision, 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("OnDelete") && refused.contains("RollingUpdate"),
        "{refused}"
    );
    assert!(
        nodes
            .server
            .get("apps/v1", "DaemonSet", Some("ops"), "agent-canary")
            .is_none()
    );
}

/// A real-time cluster of three nodes with the DaemonSet `agent` (its owner's strategy a surge
/// of one node), its Service, canary's webhook, and the controller running on namespace `ops`
/// with a resync an hour away (only watches wake it).
struct Live {
    server: ApiServer,
    rollouts: Api<canary_kube::crd::Rollout>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    controller: Option<tokio::task::JoinHandle<()>>,
}

/// The owner's strategy of [`Live`]'s DaemonSet.
fn surge() -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
}

impl Live {
    async fn start() -> Self {
        use canary_core::engine::machine::MetricOutcome;
        use canary_core::engine::memory::{InMemoryMetrics, InMemoryWebhooks};
        use canary_core::engine::providers::SystemClock;
        use canary_kube::controller::{Context, run};
        use canary_kube::crd::Rollout;
        use canary_kube::metrics::Metrics;
        use canary_kube::traffic::MemoryTraffic;

        let server = ApiServer::start().await.unwrap();
        register_rollout_crd(&server);
        server.add_mutating_hook(Arc::new(CanaryHold));
        server.simulate_deployments(Duration::from_millis(200));
        for name in ["node-a", "node-b", "node-c"] {
            server.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}));
        }
        server.put(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ops"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": surge(),
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}}
        }));
        server.put(json!({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": "agent", "namespace": "ops"},
                          "spec": {"selector": {"app": "agent"}, "ports": [{"port": 8080}]}}));
        let client = server.client();
        let metrics = InMemoryMetrics::default();
        metrics.set("request-success-rate", MetricOutcome::Value(99.9));
        let context = Arc::new(
            Context::new(
                client.clone(),
                Arc::new(MemoryTraffic::new(Arc::new(SystemClock))),
                Arc::new(metrics),
                Arc::new(InMemoryWebhooks::default()),
                Arc::new(SystemClock),
                Metrics::register(&mut prometheus_client::registry::Registry::default()),
                "canary-test",
            )
            .with_resync(Duration::from_secs(3600)),
        );
        let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "ops");
        let rollout: Rollout = serde_saphyr::from_str(&format!(
            "{}  analysis: {{interval: 1s, scrapeInterval: 1s, metrics: [{{name: request-success-rate, interval: 2s, thresholdRange: {{min: 99}}}}]}}\n",
            ROLLOUT.replace("[{weight: 50}]", "[{weight: 30}, {weight: 60}]")
        ))
        .unwrap();
        rollouts
            .create(&kube::api::PostParams::default(), &rollout)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(run(context, vec!["ops".to_owned()], async {
            let _ = stopped.await;
        }));
        Live {
            server,
            rollouts,
            stop: Some(stop),
            controller: Some(controller),
        }
    }

    async fn status(&self) -> canary_core::RolloutStatus {
        self.rollouts
            .get("agent")
            .await
            .ok()
            .and_then(|r| r.status)
            .map(|s| s.engine)
            .unwrap_or_default()
    }

    /// Waits (at most 30 s) until the Rollout's status is `done`.
    async fn wait(
        &self,
        what: &str,
        done: impl Fn(&canary_core::RolloutStatus) -> bool,
    ) -> canary_core::RolloutStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.status().await;
            if done(&now) {
                return now;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {:?} {}",
                now.phase,
                now.message
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 20 s) until `done` holds of the cluster.
    async fn wait_for(&self, what: &str, done: impl Fn(&ApiServer) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !done(&self.server) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {}",
                self.daemonset()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The uids of the ready pods of `agent` and `agent-canary` running `image`.
    fn pods(&self, image: &str) -> BTreeSet<String> {
        ready_pods(&self.server, image)
    }

    fn daemonset(&self) -> Value {
        self.server
            .get("apps/v1", "DaemonSet", Some("ops"), "agent")
            .unwrap()
    }

    /// Writes `image` into the stable DaemonSet's template; returns it as stored.
    async fn edit(&self, image: &str) -> DaemonSet {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}});
        Api::<DaemonSet>::namespaced(self.server.client(), "ops")
            .patch("agent", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(controller) = self.controller.take() {
            controller.await.unwrap();
        }
    }
}

/// The uids of the ready `app: agent` pods running `image`.
fn ready_pods(server: &ApiServer, image: &str) -> BTreeSet<String> {
    server
        .list("v1", "Pod")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "agent")
        .filter(|p| p["spec"]["containers"][0]["image"] == image)
        .filter(canary_core::sim::dataplane::World::ready)
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_owned())
        .collect()
}

/// The controller, running on its own against the real-time simulated cluster, releases a
/// DaemonSet's new template: adopted as it runs, woken by the edit through its DaemonSet watch
/// (the resync is an hour away), the stable DaemonSet held in the request, the canary DaemonSet
/// stepped through the weights, then promoted and let go, its strategy its owner's again and
/// every node running the new image.
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_releases_a_new_daemonset_template_woken_by_its_watch() {
    let live = Live::start().await;
    let adopted = live.wait("adoption", |s| s.stable_revision.is_some()).await;
    live.wait_for("the stable pods", |server| {
        ready_pods(server, "agent:1").len() == 3
    })
    .await;
    let stable_pods = live.pods("agent:1");

    let edited = live.edit("agent:2").await;
    assert_eq!(
        edited.spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    let stepped = live
        .wait("the canary's second step", |s| s.routing.route.weight == 60)
        .await;
    assert_ne!(stepped.release.canary_revision, adopted.stable_revision);
    let canary: DaemonSet = Api::namespaced(live.server.client(), "ops")
        .get("agent-canary")
        .await
        .unwrap();
    assert_eq!(canary.status.unwrap().number_available, Some(3));
    assert!(
        stable_pods.is_subset(&live.pods("agent:1")),
        "no stable pod restarted while the canary ran"
    );

    let end = live.wait("the end", |s| s.phase.is_terminal()).await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    live.wait_for(
        "the stable DaemonSet let go, rolled, the canary gone",
        |server| {
            let stable = server
                .get("apps/v1", "DaemonSet", Some("ops"), "agent")
                .unwrap();
            let pods_of_ops = server
                .list("v1", "Pod")
                .into_iter()
                .filter(|p| p["metadata"]["namespace"] == "ops")
                .count();
            stable["metadata"]["annotations"]
                .get(STABLE_REVISION)
                .is_none()
                && stable["spec"]["updateStrategy"] == surge()
                && server
                    .get("apps/v1", "DaemonSet", Some("ops"), "agent-canary")
                    .is_none()
                && pods_of_ops == 3
                && ready_pods(server, "agent:2").len() == 3
        },
    )
    .await;
    live.stop().await;
}

/// A Rollout deleted mid-release (the stable DaemonSet held, the canary taking traffic): the
/// canary DaemonSet and its pods go, then the stable DaemonSet is let go with its owner's
/// strategy and nothing of canary's on it, and rolls the template its owner gave it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_deleted_mid_release_removes_the_canary_and_gives_the_strategy_back() {
    let live = Live::start().await;
    live.wait("adoption", |s| s.stable_revision.is_some()).await;
    live.edit("agent:2").await;
    live.wait("the canary's first step", |s| s.routing.route.weight == 30)
        .await;
    assert_eq!(
        live.daemonset()["spec"]["updateStrategy"]["type"],
        "OnDelete"
    );
    live.rollouts
        .delete("agent", &Default::default())
        .await
        .unwrap();
    live.wait_for("the Rollout's finalizer", |server| {
        server
            .get("canary.rs/v1alpha1", "Rollout", Some("ops"), "agent")
            .is_none()
    })
    .await;
    assert!(
        live.server
            .get("apps/v1", "DaemonSet", Some("ops"), "agent-canary")
            .is_none(),
        "the canary DaemonSet is gone"
    );
    let stable = live.daemonset();
    assert_eq!(stable["spec"]["updateStrategy"], surge());
    let annotations = stable["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        !annotations.keys().any(|key| key.starts_with("canary.rs/")),
        "{annotations:?}"
    );
    live.wait_for("the owner's template rolled", |server| {
        ready_pods(server, "agent:2").len() == 3 && ready_pods(server, "agent:1").is_empty()
    })
    .await;
    live.stop().await;
}
