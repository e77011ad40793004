//! A whole rollout through the controller with the Istio provider, on the API test server:
//! the VirtualService follows the steps (requests reach the canary by its share, through the
//! Istio data-plane model), the release is promoted, and deleting the Rollout removes the
//! generated objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::Phase;
use canary_core::sim::dataplane::{Caller, Request, World, istio};
use canary_kube::controller::reconcile;
use canary_kube::crd::Rollout;
use canary_kube::fixtures::TestCluster;
use canary_kube::traffic::{Backends, ClusterBackend};
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
    scrapeInterval: 1s
    metrics:
    - {name: request-success-rate, interval: 2s, thresholdRange: {min: 99}}
  progressDeadline: 30s
";

fn weights(vs: &Value) -> Vec<(String, u64)> {
    vs["spec"]["http"][0]["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"]["host"].as_str().unwrap().to_owned(),
                d["weight"].as_u64().unwrap_or(100),
            )
        })
        .collect()
}

/// The share of requests to `reviews` from a sidecar in `demo` that canary pods answer.
fn canary_share(cluster: &TestCluster) -> f64 {
    let world = World::new(cluster.server.snapshot());
    let request = Request::to("reviews", "/").from(Caller::Sidecar {
        namespace: "demo".into(),
    });
    let served = istio::serve(&world, &request);
    assert!(served.unserved_because.is_none(), "{served:?}");
    served.share(|pod| pod.name.starts_with("reviews-v1-canary"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_moves_the_virtual_service_step_by_step_and_deletion_cleans_up() {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "reviews"}},
                 "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:v1"}]}}}
    }));
    cluster.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}
    }));
    let rollout: Rollout = serde_saphyr::from_str(ROLLOUT).unwrap();
    cluster.create_rollout(&rollout).await;
    let context = cluster.context(Arc::new(Backends::new([
        &canary_istio::Istio as &dyn ClusterBackend
    ])));
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
            s.routing.route.weight == 20
        })
        .await;
    assert_eq!(
        weights(&vs()),
        [
            ("reviews".to_owned(), 80),
            ("reviews-canary".to_owned(), 20)
        ]
    );
    cluster
        .wait_rolled_out("demo", "reviews-v1-canary", Duration::from_secs(10))
        .await;
    assert!((canary_share(&cluster) - 0.2).abs() < 1e-9);
    cluster
        .reconcile_until(&context, at, Duration::from_secs(20), |s| {
            s.routing.route.weight == 50
        })
        .await;
    assert_eq!(
        weights(&vs()),
        [
            ("reviews".to_owned(), 50),
            ("reviews-canary".to_owned(), 50)
        ]
    );
    cluster
        .wait_rolled_out("demo", "reviews-v1-canary", Duration::from_secs(10))
        .await;
    assert!((canary_share(&cluster) - 0.5).abs() < 1e-9);
    let service = |name: &str| cluster.server.get("v1", "Service", Some("demo"), name);
    assert_eq!(
        service("reviews").unwrap()["spec"]["selector"],
        json!({"app": "reviews"}),
        "the stable Service is never written"
    );

    let end = cluster
        .reconcile_until(&context, at, Duration::from_secs(30), |s| {
            s.phase.is_terminal()
        })
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    // Promoted: the stable Deployment runs v2, all traffic goes to the service host, whose
    // pods are the stable Deployment's current ones; the canary host is gone.
    cluster
        .wait_rolled_out("demo", "reviews-v1", Duration::from_secs(10))
        .await;
    assert_eq!(weights(&vs()), [("reviews".to_owned(), 100)]);
    assert!(service("reviews-canary").is_none());
    let hash = cluster.current_hash("demo", "reviews-v1").unwrap();
    let world = World::new(cluster.server.snapshot());
    let request = Request::to("reviews", "/").from(Caller::Sidecar {
        namespace: "demo".into(),
    });
    let served = istio::serve(&world, &request);
    let current = served.share(|pod| {
        world.pod(pod).is_some_and(|p| {
            p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()
                && p["metadata"]["labels"]["version"] == "v2"
        })
    });
    assert!((current - 1.0).abs() < 1e-9, "{served:?}");

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
    assert!(service("reviews-canary").is_none());
    assert!(service("reviews").is_some());
}
