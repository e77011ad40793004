//! The Deployment workload provider against the strict API test server: the canary Deployment
//! it makes is one a real API server accepts, whatever `newVersion` changes.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::engine::providers::WorkloadProvider;
use canary_kube::fixtures::TestCluster;
use canary_kube::workload::{DeploymentWorkload, Hold};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

/// The KubeSphere Bookinfo seed: the stable selector names `version: v1`, the new version is
/// `v2`.
const BOOKINFO: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: demo}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: reviews-v1}
  service: {name: reviews, port: 9080}
  newVersion:
    version: v2
    containers: [{name: reviews, image: 'kubesphere/examples-bookinfo-reviews-v2:1.16.2'}]
  trafficRouting: {istio: {}}
  strategy: {canary: {steps: [{weight: 50}]}}
";

#[tokio::test]
async fn a_new_version_label_the_stable_selector_uses_makes_a_valid_canary() {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    let labels = json!({"app": "reviews", "version": "v1"});
    // Istio (1.25+) reports pods as the workload this label names: the stable pods as
    // `reviews-v1`, so the canary's must not say the same.
    let pod_labels = json!({"app": "reviews", "version": "v1",
                            "service.istio.io/workload-name": "reviews-v1"});
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": pod_labels},
                              "spec": {"containers": [{"name": "reviews", "image": "kubesphere/examples-bookinfo-reviews-v1:1.16.2"}]}}}
    }));
    let plan = canary_core::api::load::plan_from_yaml(BOOKINFO).unwrap();
    let workload = DeploymentWorkload::new(cluster.client.clone(), &plan);
    let seen = workload.observe().await.unwrap();
    assert_eq!(
        seen.stable_reported_as, None,
        "the pods' own name is their Deployment's"
    );
    // The real API server refuses a Deployment whose selector does not match its template.
    workload
        .ensure_canary(&seen.desired_revision, 1)
        .await
        .unwrap_or_else(|e| panic!("the canary Deployment is refused: {e}"));
    let canary = Api::<Deployment>::namespaced(cluster.client.clone(), "demo")
        .get("reviews-v1-canary")
        .await
        .unwrap();
    let selector = canary.spec.selector.match_labels.clone().unwrap();
    let template = canary.spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(selector["version"], "v2");
    assert_eq!(template["version"], "v2");
    assert!(selector.iter().all(|(k, v)| template.get(k) == Some(v)));
    assert_eq!(selector["canary.rs/rollout"], "reviews");
    assert_eq!(
        template["service.istio.io/workload-name"], "reviews-v1-canary",
        "Istio reports the canary's requests as the canary's"
    );
}

/// While a Deployment rolls, the pods of its older template are not the new revision's: the
/// workload counts only as many available replicas as the new ReplicaSet really has ready,
/// and the whole count once the roll is over (the stable Deployment during promotion).
#[tokio::test]
async fn a_rolling_deployment_counts_only_the_new_templates_pods() {
    use jiff::{SignedDuration, Timestamp};
    use kube::api::{Patch, PatchParams};
    use kube_testserver::ApiServer;

    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(Duration::from_secs(10));
    let labels = json!({"app": "reviews", "version": "v1"});
    server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]}}}
    }));
    let mut now = Timestamp::from_second(1_767_225_600).unwrap();
    kcm.step(now);
    while let Some(at) = kcm.next_event() {
        now = at;
        kcm.step(now);
    }
    let plan = canary_core::api::load::plan_from_yaml(BOOKINFO).unwrap();
    let workload = DeploymentWorkload::new(server.client(), &plan);
    assert_eq!(workload.observe().await.unwrap().stable.available, 3);

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "reviews", "image": "reviews:2"}]}}}});
    Api::<Deployment>::namespaced(server.client(), "demo")
        .patch("reviews-v1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    now = now.checked_add(SignedDuration::from_secs(1)).unwrap();
    kcm.step(now);
    let mut steps = 0;
    loop {
        let d = server
            .get("apps/v1", "Deployment", Some("demo"), "reviews-v1")
            .unwrap();
        let objects = canary_core::k8s::objects::Objects::new(server.list("apps/v1", "ReplicaSet"));
        let hash = objects.pod_template_hash(&d, "demo").unwrap();
        let pods = server.list("v1", "Pod");
        let new_ready = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
            .filter(|p| canary_core::sim::dataplane::World::ready(p))
            .count();
        let old_left = pods
            .iter()
            .any(|p| p["metadata"]["labels"]["pod-template-hash"] != hash.as_str());
        let seen = workload.observe().await.unwrap().stable;
        assert!(
            seen.available as usize <= new_ready,
            "{} available counted, {new_ready} pods of the new template ready",
            seen.available
        );
        if old_left {
            assert!(seen.available < 3, "the roll is not over");
        }
        let Some(at) = kcm.next_event() else { break };
        now = at;
        kcm.step(now);
        steps += 1;
        assert!(steps < 50, "the roll never ends");
    }
    assert_eq!(workload.observe().await.unwrap().stable.available, 3);
}

/// The `Progressing` condition of Deployment `name`: its status and reason.
fn progressing(server: &kube_testserver::ApiServer, name: &str) -> (String, String) {
    let d = server
        .get("apps/v1", "Deployment", Some("demo"), name)
        .unwrap();
    let condition = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .cloned()
        .unwrap_or_default();
    (
        condition["status"].as_str().unwrap_or_default().to_owned(),
        condition["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The stable Deployment is held only while a release is pending. Held, the simulated
/// Deployment controller says so as kube-controller-manager does
/// (pkg/controller/deployment/progress.go `checkPausedConditions`): `Progressing` turns
/// `Unknown` with reason `DeploymentPaused`, which Argo CD's health check shows as Suspended
/// and kstatus as not current. With nothing pending it is not held, and letting it go makes
/// it complete again. Every write carries field manager `canary`.
#[tokio::test]
async fn the_stable_deployment_is_held_only_while_a_release_is_pending() {
    use jiff::{SignedDuration, Timestamp};

    let server = kube_testserver::ApiServer::start().await.unwrap();
    let kcm = server.controllers(Duration::from_secs(1));
    let labels = json!({"app": "reviews", "version": "v1"});
    server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]}}}
    }));
    let mut now = Timestamp::from_second(1_767_225_600).unwrap();
    let settle = |now: &mut Timestamp| {
        kcm.step(*now);
        while let Some(at) = kcm.next_event() {
            *now = at;
            kcm.step(*now);
        }
        *now = now.checked_add(SignedDuration::from_secs(1)).unwrap();
    };
    settle(&mut now);
    assert_eq!(
        progressing(&server, "reviews-v1"),
        ("True".to_owned(), "NewReplicaSetAvailable".to_owned())
    );
    let plan = canary_core::api::load::plan_from_yaml(BOOKINFO).unwrap();
    let adopting = DeploymentWorkload::new(server.client(), &plan);
    assert_eq!(
        adopting.hold().await.unwrap(),
        Hold::Unchanged,
        "nothing known yet"
    );
    let seen = adopting.observe().await.unwrap();
    // Nothing pending (the status says stable runs what is asked for): not held.
    let idle = DeploymentWorkload::new(server.client(), &plan)
        .with_known_stable(Some(seen.desired_revision.clone()));
    assert_eq!(idle.hold().await.unwrap(), Hold::Unchanged);
    settle(&mut now);
    assert_eq!(
        progressing(&server, "reviews-v1"),
        ("True".to_owned(), "NewReplicaSetAvailable".to_owned())
    );
    // `newVersion` asks for another revision than the one stable runs, but the Deployment
    // runs its template: nothing would roll, nothing is held.
    let workload = DeploymentWorkload::new(server.client(), &plan)
        .with_known_stable(Some(seen.stable.revision.clone()));
    assert_eq!(workload.hold().await.unwrap(), Hold::Unchanged);
    // A new template (no webhook here) is held before the Deployment controller sees it.
    let edit = json!({"spec": {"template": {"spec": {"containers": [{"name": "reviews", "image": "reviews:2"}]}}}});
    Api::<Deployment>::namespaced(server.client(), "demo")
        .patch(
            "reviews-v1",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&edit),
        )
        .await
        .unwrap();
    assert_eq!(workload.hold().await.unwrap(), Hold::Held);
    assert_eq!(workload.hold().await.unwrap(), Hold::Unchanged);
    settle(&mut now);
    assert_eq!(
        progressing(&server, "reviews-v1"),
        ("Unknown".to_owned(), "DeploymentPaused".to_owned())
    );
    assert!(workload.release().await.unwrap());
    settle(&mut now);
    // Resumed, then (nothing left to roll) complete again in the same sync
    // (`syncRolloutStatus`).
    assert_eq!(
        progressing(&server, "reviews-v1"),
        ("True".to_owned(), "NewReplicaSetAvailable".to_owned())
    );
    let stable = Api::<Deployment>::namespaced(server.client(), "demo")
        .get("reviews-v1")
        .await
        .unwrap();
    let managers: Vec<String> = stable
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.manager.clone())
        .collect();
    assert!(managers.contains(&"canary".to_owned()), "{managers:?}");
}

/// Stable pods that name themselves otherwise in Istio's metrics are queried by that name.
#[tokio::test]
async fn stable_pods_naming_themselves_are_reported_by_that_name() {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    let labels = json!({"app": "reviews", "version": "v1"});
    let pod_labels = json!({"app": "reviews", "version": "v1",
                            "service.istio.io/workload-name": "reviews-prod"});
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": pod_labels},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:1"}]}}}
    }));
    let plan = canary_core::api::load::plan_from_yaml(BOOKINFO).unwrap();
    let seen = DeploymentWorkload::new(cluster.client.clone(), &plan)
        .observe()
        .await
        .unwrap();
    assert_eq!(seen.stable_reported_as.as_deref(), Some("reviews-prod"));
}
