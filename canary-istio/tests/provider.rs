//! The provider against the API test server: server-side apply, read-back, verification,
//! make-before-break subsets, and finalize (generated objects deleted, a user's restored).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::RouteState;
use canary_core::machine::Verification;
use canary_core::providers::TrafficProvider;
use canary_core::spec::{RequestMatch, StringMatch};
use canary_istio::IstioTraffic;
use canary_kube::fixtures::TestCluster;
use canary_kube::testserver::{ResourceType, Verb};
use serde_json::{Value, json};

const ISTIO: &str = "networking.istio.io/v1";

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: demo}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: reviews-v1}
  service: {name: reviews, port: 9080}
  newVersion: {version: v2, containers: [{name: reviews, image: reviews:v2}]}
  trafficRouting: {istio: {virtualService: {name: reviews, routes: [primary]}}}
  strategy: {canary: {steps: [{weight: 20}, {weight: 60}]}}
";

async fn cluster() -> TestCluster {
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
    cluster.put(stable("v1"));
    cluster
}

fn stable(version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "reviews-v1", "namespace": "demo"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "reviews"}},
                 "template": {"metadata": {"labels": {"app": "reviews", "version": version}},
                              "spec": {"containers": [{"name": "reviews", "image": "reviews:v1"}]}}}
    })
}

fn provider(cluster: &TestCluster, yaml: &str) -> IstioTraffic {
    let rollout = canary_core::load::from_yaml(yaml).unwrap();
    IstioTraffic::new(
        cluster.client.clone(),
        canary_core::validate::validate(&rollout).unwrap(),
    )
}

fn get(cluster: &TestCluster, kind: &str) -> Option<Value> {
    cluster.server.get(ISTIO, kind, Some("demo"), "reviews")
}

fn writes(cluster: &TestCluster) -> Vec<String> {
    cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| {
            matches!(
                r.verb,
                Verb::Patch | Verb::Create | Verb::Update | Verb::Delete
            )
        })
        .map(|r| {
            format!(
                "{} {}",
                r.method,
                r.path.rsplit('/').next().unwrap_or_default()
            )
        })
        .collect()
}

fn user_vs() -> Value {
    json!({
        "apiVersion": ISTIO, "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "demo", "labels": {"team": "books"}},
        "spec": {"hosts": ["reviews"], "http": [
            {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}], "route": [{"destination": {"host": "admin"}}]},
            {"name": "primary", "timeout": "5s", "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}
        ]}
    })
}

fn user_dr() -> Value {
    json!({
        "apiVersion": ISTIO, "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"host": "reviews", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v3", "labels": {"version": "v3"}}
        ]}
    })
}

#[tokio::test]
async fn generated_objects_are_applied_read_back_verified_and_deleted_on_finalize() {
    let cluster = cluster().await;
    let generated = ROLLOUT.replace("{virtualService: {name: reviews, routes: [primary]}}", "{}");
    let traffic = provider(&cluster, &generated);
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        None,
        "nothing there yet"
    );
    assert_eq!(
        traffic
            .observe(&RouteState::stable())
            .await
            .unwrap()
            .verified,
        Verification::No
    );

    let route = RouteState::weighted(20);
    assert!(traffic.apply(&route).await.unwrap());
    let vs = get(&cluster, "VirtualService").unwrap();
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], 20);
    assert_eq!(
        vs["metadata"]["managedFields"][0]["manager"],
        "canary-istio"
    );
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(route.clone())
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(60))
            .await
            .unwrap()
            .verified,
        Verification::No
    );

    // Applying what is there writes nothing.
    cluster.server.clear_requests();
    assert!(!traffic.apply(&route).await.unwrap());
    assert!(writes(&cluster).is_empty(), "{:?}", writes(&cluster));

    // Someone moves the weights by hand: observed as they are, and the route is not in effect.
    let mut edited = vs.clone();
    edited["spec"]["http"][0]["route"][0]["weight"] = json!(50);
    edited["spec"]["http"][0]["route"][1]["weight"] = json!(50);
    cluster.put(edited);
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::weighted(50))
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::No
    );

    assert!(traffic.reset().await.unwrap());
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::stable())
    );
    traffic.finalize().await.unwrap();
    assert!(get(&cluster, "VirtualService").is_none());
    assert!(get(&cluster, "DestinationRule").is_none());
}

#[tokio::test]
async fn a_users_objects_change_only_where_managed_and_are_restored_on_finalize() {
    let cluster = cluster().await;
    cluster.put(user_vs());
    cluster.put(user_dr());
    let before_vs = get(&cluster, "VirtualService").unwrap();
    let before_dr = get(&cluster, "DestinationRule").unwrap();
    let traffic = provider(&cluster, ROLLOUT);
    let route = RouteState {
        weight: 30,
        matches: vec![RequestMatch {
            headers: [("x-tester".into(), StringMatch::exact("yes"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    assert!(traffic.apply(&route).await.unwrap());
    let vs = get(&cluster, "VirtualService").unwrap();
    assert_eq!(vs["spec"]["http"][0], before_vs["spec"]["http"][0]);
    assert_eq!(vs["spec"]["http"][1]["name"], "primary-canary-match");
    assert_eq!(vs["spec"]["http"][2]["timeout"], "5s");
    assert_eq!(vs["spec"]["http"][2]["route"][1]["weight"], 30);
    assert_eq!(vs["metadata"]["labels"], before_vs["metadata"]["labels"]);
    let dr = get(&cluster, "DestinationRule").unwrap();
    assert_eq!(
        dr["spec"]["trafficPolicy"],
        before_dr["spec"]["trafficPolicy"]
    );
    let names: Vec<&str> = dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v3", "v2"], "v1 reused as written, v2 added");
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(route.clone())
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );

    traffic.finalize().await.unwrap();
    let after_vs = get(&cluster, "VirtualService").unwrap();
    let after_dr = get(&cluster, "DestinationRule").unwrap();
    assert_eq!(after_vs["spec"], before_vs["spec"]);
    assert_eq!(after_dr["spec"], before_dr["spec"]);
    for object in [&after_vs, &after_dr] {
        let annotations = object["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            annotations.keys().all(|k| !k.starts_with("canary.rs/")),
            "{annotations:?}"
        );
    }
}

#[tokio::test]
async fn a_change_of_subsets_keeps_the_old_ones_until_the_routes_have_moved() {
    let cluster = cluster().await;
    let traffic = provider(
        &cluster,
        &ROLLOUT.replace("{virtualService: {name: reviews, routes: [primary]}}", "{}"),
    );
    assert!(traffic.apply(&RouteState::weighted(100)).await.unwrap());
    // Promotion: the stable pods now carry v2 too, so the versions no longer tell the pods
    // apart; the subsets go by pod-template hash.
    cluster.put(stable("v2"));
    cluster.put_replicaset("demo", "reviews-v1", "7f9c", json!({"app": "reviews"}));
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(100))
            .await
            .unwrap()
            .verified,
        Verification::No
    );
    cluster.server.clear_requests();
    assert!(traffic.apply(&RouteState::stable()).await.unwrap());
    let order: Vec<String> = writes(&cluster);
    assert_eq!(
        order,
        ["PATCH reviews", "PATCH reviews", "PATCH reviews"],
        "bridge, routes, final"
    );
    let requests = cluster.server.requests();
    let patched: Vec<&str> = requests
        .iter()
        .filter(|r| r.verb == Verb::Patch)
        .map(|r| {
            if r.path.contains("destinationrules") {
                "dr"
            } else {
                "vs"
            }
        })
        .collect();
    assert_eq!(patched, ["dr", "vs", "dr"]);
    let dr = get(&cluster, "DestinationRule").unwrap();
    let names: Vec<&str> = dr["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stable", "canary"]);
    assert_eq!(
        dr["spec"]["subsets"][0]["labels"]["pod-template-hash"],
        "7f9c"
    );
    assert_eq!(
        traffic
            .observe(&RouteState::stable())
            .await
            .unwrap()
            .verified,
        Verification::Yes
    );
}
