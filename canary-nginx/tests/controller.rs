//! A whole rollout through the controller with the nginx provider, on the API test server: the
//! Kruise seed's release (20% of pods and traffic, a person approves), then a revert that
//! removes every canary object.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::{Command, Phase};
use canary_kube::crd::Rollout;
use canary_kube::fixtures::TestCluster;
use canary_kube::traffic::{Backends, ClusterBackend};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: echoserver, namespace: default}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echoserver}
  service: {name: echoserver, port: 8080}
  trafficRouting: {nginx: {ingress: echoserver}}
  strategy: {canary: {steps: [{weight: 20, replicas: 20%, pause: {}}]}}
  progressDeadline: 30s
";

fn get(cluster: &TestCluster, api_version: &str, kind: &str, name: &str) -> Option<Value> {
    cluster.server.get(api_version, kind, Some("default"), name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_release_approved_then_a_revert_cleans_every_canary_object() {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    let text = std::fs::read_to_string(format!(
        "{}/../examples/rollouts/echoserver-objects.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    for mut object in canary_core::api::load::objects_from_yaml(&text)
        .unwrap()
        .iter()
        .cloned()
    {
        object["metadata"]["namespace"] = json!("default");
        cluster.put(object);
    }
    // The simulated controllers give the Deployment its ReplicaSet and ready pods.
    cluster
        .wait_rolled_out("default", "echoserver", Duration::from_secs(10))
        .await;
    let service_before = get(&cluster, "v1", "Service", "echoserver").unwrap();
    let rollout: Rollout = serde_saphyr::from_str(ROLLOUT).unwrap();
    cluster.create_rollout(&rollout).await;
    let context = cluster.context(Arc::new(Backends::new([
        &canary_nginx::Nginx as &dyn ClusterBackend
    ])));
    let at = ("default", "echoserver");
    let rollouts = Api::<Rollout>::namespaced(cluster.client.clone(), "default");
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), "default");
    let set_image = |image: &'static str| {
        let deployments = deployments.clone();
        async move {
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "echoserver", "image": image}]}}}});
            deployments
                .patch(
                    "echoserver",
                    &Default::default(),
                    &kube::api::Patch::Strategic(&patch),
                )
                .await
                .unwrap();
        }
    };

    // The first deploy does no rollout.
    let idle = cluster
        .reconcile_until(&context, at, Duration::from_secs(10), |s| {
            s.stable_revision.is_some()
        })
        .await;
    assert_eq!(idle.phase, Phase::Initialized);
    assert!(
        get(
            &cluster,
            "networking.k8s.io/v1",
            "Ingress",
            "echoserver-canary"
        )
        .is_none()
    );

    // A new image: 20% of pods and traffic on the canary, waiting for a person.
    set_image("cilium/echoserver:1.10.3").await;
    let paused = cluster
        .reconcile_until(&context, at, Duration::from_secs(20), |s| {
            s.phase == Phase::Paused
        })
        .await;
    assert_eq!(paused.routing.route.weight, 20);
    let ingress = get(
        &cluster,
        "networking.k8s.io/v1",
        "Ingress",
        "echoserver-canary",
    )
    .unwrap();
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"],
        "true"
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "echoserver-canary"
    );
    let canary = deployments.get("echoserver-canary").await.unwrap();
    assert_eq!(canary.spec.replicas, Some(1), "20% of 5 pods");
    assert!(get(&cluster, "v1", "Service", "echoserver-canary").is_some());

    // Approve: the release completes, the canary objects go, the stable Service is as it was.
    canary_kube::ctl::send(&rollouts, "echoserver", Command::Promote, 1)
        .await
        .unwrap();
    let end = cluster
        .reconcile_until(&context, at, Duration::from_secs(30), |s| {
            s.phase.is_terminal()
        })
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    let stable = deployments.get("echoserver").await.unwrap();
    assert_eq!(
        stable.spec.template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("cilium/echoserver:1.10.3")
    );
    cluster
        .reconcile_until(&context, at, Duration::from_secs(10), |_| {
            get(&cluster, "v1", "Service", "echoserver").unwrap()["spec"] == service_before["spec"]
        })
        .await;
    assert!(
        get(
            &cluster,
            "networking.k8s.io/v1",
            "Ingress",
            "echoserver-canary"
        )
        .is_none()
    );
    assert!(get(&cluster, "v1", "Service", "echoserver-canary").is_none());

    // The next release, reverted while it waits: every canary object is removed.
    set_image("cilium/echoserver:1.10.4").await;
    cluster
        .reconcile_until(&context, at, Duration::from_secs(20), |s| {
            s.phase == Phase::Paused
        })
        .await;
    assert!(
        get(
            &cluster,
            "networking.k8s.io/v1",
            "Ingress",
            "echoserver-canary"
        )
        .is_some()
    );
    set_image("cilium/echoserver:1.10.3").await;
    cluster
        .reconcile_until(&context, at, Duration::from_secs(20), |s| {
            !matches!(s.phase, Phase::Paused | Phase::Progressing)
        })
        .await;
    cluster
        .reconcile_until(&context, at, Duration::from_secs(10), |_| {
            get(&cluster, "v1", "Service", "echoserver").unwrap()["spec"] == service_before["spec"]
                && get(&cluster, "apps/v1", "Deployment", "echoserver-canary").is_none()
        })
        .await;
    assert!(
        get(
            &cluster,
            "networking.k8s.io/v1",
            "Ingress",
            "echoserver-canary"
        )
        .is_none()
    );
    assert!(get(&cluster, "v1", "Service", "echoserver-canary").is_none());
}
