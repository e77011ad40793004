//! A whole rollout through the controller with the Istio provider, on the API test server:
//! the VirtualService follows the steps, the release is promoted, and deleting the Rollout
//! removes the generated objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::Phase;
use canary_istio::IstioTraffic;
use canary_kube::controller::reconcile;
use canary_kube::crd::Rollout;
use canary_kube::fixtures::TestCluster;
use canary_kube::testserver::ResourceType;
use kube::Api;
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: demo}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: reviews-v1}
  service: {name: reviews, port: 9080}
  newVersion: {version: v2, containers: [{name: reviews, image: 'reviews:v2'}]}
  trafficRouting: {istio: {}}
  strategy: {canary: {steps: [{weight: 20}, {weight: 50}]}}
  analysis:
    interval: 1s
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
  progressDeadline: 30s
";

fn weights(vs: &Value) -> Vec<(String, u64)> {
    vs["spec"]["http"][0]["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"]["subset"].as_str().unwrap().to_owned(),
                d["weight"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_moves_the_virtual_service_step_by_step_and_deletion_cleans_up() {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    for (kind, plural) in [
        ("VirtualService", "virtualservices"),
        ("DestinationRule", "destinationrules"),
    ] {
        cluster.server.register(ResourceType::new(
            "networking.istio.io",
            "v1",
            kind,
            plural,
            true,
            true,
        ));
    }
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "reviews"}},
                 "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:v1"}]}}}
    }));
    let rollout: Rollout = serde_saphyr::from_str(ROLLOUT).unwrap();
    cluster.create_rollout(&rollout).await;
    let context = cluster.context(Arc::new(IstioTraffic::factory(cluster.client.clone())));
    let vs = || {
        cluster
            .server
            .get(
                "networking.istio.io/v1",
                "VirtualService",
                Some("demo"),
                "reviews",
            )
            .unwrap()
    };
    let at = ("demo", "reviews");

    cluster
        .reconcile_until(&context, at, Duration::from_secs(20), |s| {
            s.route.weight == 20
        })
        .await;
    assert_eq!(
        weights(&vs()),
        [("v1".to_owned(), 80), ("v2".to_owned(), 20)]
    );
    cluster
        .reconcile_until(&context, at, Duration::from_secs(20), |s| {
            s.route.weight == 50
        })
        .await;
    assert_eq!(
        weights(&vs()),
        [("v1".to_owned(), 50), ("v2".to_owned(), 50)]
    );
    let dr = cluster
        .server
        .get(
            "networking.istio.io/v1",
            "DestinationRule",
            Some("demo"),
            "reviews",
        )
        .unwrap();
    assert_eq!(
        dr["spec"]["subsets"][1],
        json!({"name": "v2", "labels": {"version": "v2"}})
    );

    let end = cluster
        .reconcile_until(&context, at, Duration::from_secs(30), |s| {
            s.phase.is_terminal()
        })
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    // Promoted: the stable Deployment runs v2, and all traffic goes to a subset that selects
    // its current pods (by version, or by the current ReplicaSet's pod-template-hash).
    cluster
        .wait_rolled_out("demo", "reviews-v1", Duration::from_secs(10))
        .await;
    let served: Vec<(String, u64)> = weights(&vs()).into_iter().filter(|(_, w)| *w > 0).collect();
    assert_eq!(served.len(), 1, "{served:?}");
    assert_eq!(served[0].1, 100);
    let dr = cluster
        .server
        .get(
            "networking.istio.io/v1",
            "DestinationRule",
            Some("demo"),
            "reviews",
        )
        .unwrap();
    let subset = dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == served[0].0.as_str())
        .unwrap()
        .clone();
    let hash = cluster.current_hash("demo", "reviews-v1").unwrap();
    let current: Vec<Value> = cluster
        .pods("demo", "reviews-v1")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
        .collect();
    assert_eq!(current.len(), 2);
    for pod in &current {
        assert_eq!(pod["metadata"]["labels"]["version"], "v2");
        for (key, value) in subset["labels"].as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][key.as_str()], value, "{subset}");
        }
    }

    let rollouts = Api::<Rollout>::namespaced(cluster.client.clone(), "demo");
    rollouts
        .delete("reviews", &Default::default())
        .await
        .unwrap();
    let held = rollouts.get("reviews").await.unwrap();
    reconcile(Arc::new(held), context.clone()).await.unwrap();
    assert!(
        rollouts.get_opt("reviews").await.unwrap().is_none(),
        "finalizer removed"
    );
    for kind in ["VirtualService", "DestinationRule"] {
        assert!(
            cluster
                .server
                .get("networking.istio.io/v1", kind, Some("demo"), "reviews")
                .is_none(),
            "the generated {kind} is deleted"
        );
    }
}
