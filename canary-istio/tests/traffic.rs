//! What users' requests get: a user's VirtualService routed by the provider, the canary's pods
//! made by the Deployment workload provider, and requests served by the model of Istio's data
//! plane (`canary_core::sim::dataplane::istio`, written from istiod's and Envoy's semantics, not
//! from this crate). The canary gets the route's share and nothing more, also when a GitOps
//! tool puts Git's route back mid-release.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::RouteState;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficProvider, WorkloadProvider};
use canary_core::sim::dataplane::{Caller, Request, Served, World, istio};
use canary_istio::IstioTraffic;
use canary_kube::fixtures::TestCluster;
use canary_kube::workload::DeploymentWorkload;
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: demo}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: reviews-v1}
  service: {name: reviews, port: 9080}
  newVersion: {version: v2, containers: [{name: reviews, image: reviews:v2}]}
  trafficRouting: {istio: {virtualService: {name: reviews}}}
  strategy: {canary: {steps: [{weight: 20}]}}
";

/// The VirtualService as Git has it: everything to the service host.
fn gits_virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"hosts": ["reviews"], "http": [{"name": "primary", "route": [{"destination": {"host": "reviews"}}]}]}
    })
}

async fn cluster() -> TestCluster {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "reviews"}},
                 "template": {"metadata": {"labels": {"app": "reviews", "version": "v1"}},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:v1"}]}}}
    }));
    cluster.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}
    }));
    cluster.put(gits_virtual_service());
    cluster
        .wait_rolled_out("demo", "reviews-v1", Duration::from_secs(10))
        .await;
    cluster
}

fn serve(cluster: &TestCluster) -> Served {
    let world = World::new(cluster.server.snapshot());
    let request = Request::to("reviews", "/").from(Caller::Sidecar {
        namespace: "demo".into(),
    });
    istio::serve(&world, &request)
}

fn canary_share(served: &Served) -> f64 {
    served.share(|pod| pod.name.starts_with("reviews-v1-canary"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_canary_gets_its_weight_and_nothing_once_gits_route_is_back() {
    let cluster = cluster().await;
    let rollout = canary_core::api::load::from_yaml(ROLLOUT).unwrap();
    let plan = canary_core::api::validate::validate(&rollout).unwrap();
    // The canary as the workload provider makes it: as many pods as the stable Deployment, so
    // that a share going by pods would show (half of them).
    let workload = DeploymentWorkload::new(cluster.client.clone(), &plan);
    let revision = workload.observe().await.unwrap().desired_revision;
    workload.ensure_canary(&revision, 4).await.unwrap();
    cluster
        .wait_rolled_out("demo", "reviews-v1-canary", Duration::from_secs(10))
        .await;
    let canary_pods = cluster.pods("demo", "reviews-v1-canary");
    assert_eq!(canary_pods.len(), 4);
    for pod in &canary_pods {
        assert_eq!(pod["metadata"]["labels"]["app"], "reviews-canary", "{pod}");
    }
    // Before any route: Git's route, the canary's pods are no endpoints of the service host.
    let served = serve(&cluster);
    assert_eq!(canary_share(&served), 0.0, "{served:?}");

    let traffic = IstioTraffic::new(cluster.client.clone(), plan);
    let route = RouteState::weighted(20);
    for _ in 0..4 {
        if traffic.observe(&route).await.unwrap().verified == Verification::Yes {
            break;
        }
        traffic.apply(&route).await.unwrap();
    }
    let served = serve(&cluster);
    assert!(served.unserved_because.is_none(), "{served:?}");
    assert!((canary_share(&served) - 0.2).abs() < 1e-9, "{served:?}");
    assert!((served.share(|_| true) - 1.0).abs() < 1e-9);

    // A GitOps tool puts Git's route back (the http list is atomic: Git's replaces canary's).
    let mut reverted = cluster
        .server
        .get(
            "networking.istio.io/v1",
            "VirtualService",
            Some("demo"),
            "reviews",
        )
        .unwrap();
    reverted["spec"] = gits_virtual_service()["spec"].clone();
    cluster.put(reverted);
    let served = serve(&cluster);
    assert!(served.unserved_because.is_none(), "{served:?}");
    assert_eq!(canary_share(&served), 0.0, "{served:?}");
    assert!((served.share(|_| true) - 1.0).abs() < 1e-9);
    // Seen, and the step applied again.
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::No
    );
    assert!(traffic.apply(&route).await.unwrap());
    assert!((canary_share(&serve(&cluster)) - 0.2).abs() < 1e-9);
}
