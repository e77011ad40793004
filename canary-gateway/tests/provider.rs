//! The provider against the API test server and its simulated Gateway API implementation: a
//! route is in effect only once every parent took it with its references resolved, and until
//! then the observation says which parent refuses it and why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::RouteState;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficObservation, TrafficProvider};
use canary_gateway::GatewayTraffic;
use canary_kube::fixtures::TestCluster;
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: web, namespace: shop}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {name: web, port: 8080}
  trafficRouting:
    gatewayAPI: ROUTING
  strategy: {canary: {stepWeight: 10, maxWeight: 50}}
";

fn gateway(from: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "public", "namespace": "infra"},
           "spec": {"gatewayClassName": "example", "listeners": [
               {"name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": from}}}]}})
}

fn service(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": {"app": name}, "ports": [{"port": 8080}]}})
}

async fn cluster(objects: Vec<Value>) -> TestCluster {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    for object in objects {
        cluster.put(object);
    }
    cluster
}

fn provider(cluster: &TestCluster, routing: &str) -> GatewayTraffic {
    let plan =
        canary_core::api::load::plan_from_yaml(&ROLLOUT.replace("ROUTING", routing)).unwrap();
    GatewayTraffic::new(cluster.client.clone(), plan)
}

/// Applies `route` until it is in effect or `tries` passes went by; the last observation.
async fn settle(traffic: &GatewayTraffic, route: &RouteState, tries: usize) -> TrafficObservation {
    let mut seen = traffic.observe(route).await.unwrap();
    for _ in 0..tries {
        if seen.verified == Verification::Yes {
            break;
        }
        traffic.apply(route).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = traffic.observe(route).await.unwrap();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_refusing_the_route_holds_it_with_its_reason() {
    // The Gateway takes routes of its own namespace only.
    let cluster = cluster(vec![gateway("Same"), service("shop", "web")]).await;
    let traffic = provider(&cluster, "{parentRefs: [{name: public, namespace: infra}]}");
    let weighted = RouteState::weighted(20);
    let seen = settle(&traffic, &weighted, 10).await;
    assert_eq!(seen.verified, Verification::No);
    let why = seen.pending.unwrap();
    assert!(
        why.contains("infra/public") && why.contains("Accepted=False (NotAllowedByListeners)"),
        "{why}"
    );
    // The gateway's owner lets the shop attach: the route takes effect, nothing pending.
    cluster.put(gateway("All"));
    let seen = settle(&traffic, &weighted, 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
    assert_eq!(seen.pending, None);
    assert_eq!(seen.route, Some(weighted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_in_another_namespace_needs_a_reference_grant() {
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                 "rules": [
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                      "backendRefs": [{"name": "cdn", "namespace": "assets", "port": 8080}]},
                     {"backendRefs": [{"name": "web", "port": 8080}]}]}});
    let cluster = cluster(vec![
        gateway("All"),
        service("shop", "web"),
        service("assets", "cdn"),
        route,
    ])
    .await;
    let traffic = provider(&cluster, "{httpRoute: storefront}");
    let weighted = RouteState::weighted(20);
    let seen = settle(&traffic, &weighted, 10).await;
    assert_eq!(seen.verified, Verification::No);
    let why = seen.pending.unwrap();
    assert!(
        why.starts_with(
            "HTTPRoute storefront: parent infra/public: ResolvedRefs=False (RefNotPermitted)"
        ),
        "{why}"
    );
    // The assets team allows routes of the shop to use its Services.
    cluster.put(
        json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "shop-routes", "namespace": "assets"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                           "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Service"}]}}),
    );
    let seen = settle(&traffic, &weighted, 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_service_goes_only_after_the_route_without_it_is_taken() {
    let cluster = cluster(vec![gateway("All"), service("shop", "web")]).await;
    let traffic = provider(&cluster, "{parentRefs: [{name: public, namespace: infra}]}");
    let seen = settle(&traffic, &RouteState::weighted(50), 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
    let canary = || {
        cluster
            .server
            .get("v1", "Service", Some("shop"), "web-canary")
    };
    assert!(canary().is_some());
    // The first pass back to stable writes the route only: the Service is still named by
    // the route the gateway has.
    assert!(traffic.apply(&RouteState::stable()).await.unwrap());
    assert!(canary().is_some(), "the canary Service went with the route");
    let seen = settle(&traffic, &RouteState::stable(), 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
    assert!(canary().is_none());
    // Finalize deletes the route canary generated.
    traffic.finalize().await.unwrap();
    let routes = cluster
        .server
        .list("gateway.networking.k8s.io/v1", "HTTPRoute");
    assert!(routes.is_empty(), "{routes:?}");
}
