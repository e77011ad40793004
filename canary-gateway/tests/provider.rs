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

#[test]
fn a_route_is_taken_once_every_parent_it_names_took_its_generation() {
    let route = |generation: i64, parents: Value, reports: Value| {
        json!({"metadata": {"name": "web", "namespace": "shop", "generation": generation},
               "spec": {"parentRefs": parents},
               "status": {"parents": reports}})
    };
    let report = |name: &str, generation: i64, accepted: &str, reason: &str| {
        json!({"parentRef": {"name": name, "namespace": "infra"},
               "controllerName": "example.net/gateway",
               "conditions": [
                   {"type": "Accepted", "status": accepted, "reason": reason,
                    "message": "", "observedGeneration": generation},
                   {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                    "message": "", "observedGeneration": generation}]})
    };
    let public = json!([{"name": "public", "namespace": "infra"}]);
    let taken = route(
        3,
        public.clone(),
        json!([report("public", 3, "True", "Accepted")]),
    );
    assert_eq!(canary_gateway::parents_verdict(&taken), Ok(()));
    // Of an older generation: not yet.
    let stale = route(
        4,
        public.clone(),
        json!([report("public", 3, "True", "Accepted")]),
    );
    let why = canary_gateway::parents_verdict(&stale).unwrap_err();
    assert!(why.contains("generation 4"), "{why}");
    // A parent named but not reporting yet.
    let both = json!([{"name": "public", "namespace": "infra"}, {"name": "internal", "namespace": "infra"}]);
    let waiting = route(3, both, json!([report("public", 3, "True", "Accepted")]));
    let why = canary_gateway::parents_verdict(&waiting).unwrap_err();
    assert!(why.contains("infra/internal has not reported"), "{why}");
    // A report of a parent the route no longer names is not waited for.
    let dropped = route(
        3,
        public,
        json!([
            report("public", 3, "True", "Accepted"),
            report("old", 2, "False", "NoMatchingParent")
        ]),
    );
    assert_eq!(canary_gateway::parents_verdict(&dropped), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_of_someone_else_is_neither_taken_over_nor_deleted() {
    // A hand-written HTTPRoute named as canary would name the one it generates.
    let theirs = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                 "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}});
    let cluster = cluster(vec![gateway("All"), service("shop", "web"), theirs]).await;
    let traffic = provider(&cluster, "{parentRefs: [{name: public, namespace: infra}]}");
    let error = traffic.apply(&RouteState::weighted(20)).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("name the route in gatewayAPI.httpRoute"),
        "{error}"
    );
    traffic.finalize().await.unwrap();
    let left = cluster
        .server
        .get(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("shop"),
            "web",
        )
        .unwrap();
    assert_eq!(
        left["spec"]["rules"][0]["backendRefs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rollouts_of_one_route_release_one_at_a_time() {
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": "shop"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                 "rules": [
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                      "backendRefs": [{"name": "api", "port": 8080}]},
                     {"backendRefs": [{"name": "web", "port": 8080}]}]}});
    let cluster = cluster(vec![
        gateway("All"),
        service("shop", "web"),
        service("shop", "api"),
        route.clone(),
    ])
    .await;
    let web = provider(&cluster, "{httpRoute: storefront}");
    let api_plan = canary_core::api::load::plan_from_yaml(
        &ROLLOUT
            .replace("ROUTING", "{httpRoute: storefront}")
            .replace("name: web", "name: api"),
    )
    .unwrap();
    let api = GatewayTraffic::new(cluster.client.clone(), api_plan);
    let seen = settle(&web, &RouteState::weighted(20), 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
    // The api's release waits for the web's, and reads its own traffic as all on stable.
    let error = api.apply(&RouteState::weighted(20)).await.unwrap_err();
    assert!(
        error.to_string().contains("in the release of Rollout web"),
        "{error}"
    );
    assert_eq!(
        api.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::stable())
    );
    // Its give-back leaves the web's release alone.
    api.finalize().await.unwrap();
    assert_eq!(
        web.observe(&RouteState::weighted(20))
            .await
            .unwrap()
            .verified,
        Verification::Yes
    );
    // Once the web's is over, the api's goes.
    let seen = settle(&web, &RouteState::stable(), 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
    let live = cluster
        .server
        .get(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Some("shop"),
            "storefront",
        )
        .unwrap();
    assert_eq!(live["metadata"].get("annotations"), None, "{live:#}");
    let seen = settle(&api, &RouteState::weighted(20), 20).await;
    assert_eq!(seen.verified, Verification::Yes, "{:?}", seen.pending);
}
