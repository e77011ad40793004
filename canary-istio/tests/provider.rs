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

/// Applies `route` until it is in effect (each apply takes one make-before-break step),
/// checking after every step that the VirtualService routes only to subsets the
/// DestinationRule defines. Returns how many applies wrote.
async fn settle(cluster: &TestCluster, traffic: &IstioTraffic, route: &RouteState) -> usize {
    let mut writing = 0;
    for _ in 0..6 {
        if traffic.observe(route).await.unwrap().verified == Verification::Yes {
            return writing;
        }
        if traffic.apply(route).await.unwrap() {
            writing += 1;
        }
        assert_routes_defined(cluster);
    }
    panic!("{route:?} not in effect after 6 applies");
}

/// Every subset of the service the VirtualService routes to is one the DestinationRule
/// defines (else Envoy answers 503).
fn assert_routes_defined(cluster: &TestCluster) {
    let Some(vs) = get(cluster, "VirtualService") else {
        return;
    };
    let dr = get(cluster, "DestinationRule");
    let defined: Vec<String> = dr
        .as_ref()
        .and_then(|dr| dr["spec"]["subsets"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    for route in vs["spec"]["http"].as_array().into_iter().flatten() {
        for entry in route["route"].as_array().into_iter().flatten() {
            if let Some(subset) = entry["destination"]["subset"].as_str() {
                assert!(
                    defined.iter().any(|d| d == subset),
                    "the VirtualService routes to `{subset}`, the DestinationRule defines {defined:?}"
                );
            }
        }
    }
}

/// The subset of the live DestinationRule named `name`.
fn subset(cluster: &TestCluster, name: &str) -> Value {
    get(cluster, "DestinationRule").unwrap()["spec"]["subsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no subset {name}"))
}

/// The subsets the VirtualService's primary route sends to, with their weights.
fn weights(cluster: &TestCluster) -> Vec<(String, u64)> {
    let vs = get(cluster, "VirtualService").unwrap();
    let http = vs["spec"]["http"].as_array().unwrap();
    let primary = http.iter().find(|r| r["name"] == "primary").unwrap();
    primary["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["destination"]["subset"].as_str().unwrap().to_owned(),
                e["weight"].as_u64().unwrap_or(100),
            )
        })
        .collect()
}

/// The stable Deployment with `labels` on its pods, revision `revision`, and its ReplicaSet
/// of that revision with pod-template-hash `hash`.
/// Gives the stable Deployment a new pod template, as promotion does, and returns the
/// `pod-template-hash` of the ReplicaSet the simulated deployment controller makes for it.
async fn roll_stable(cluster: &TestCluster, labels: Value, image: &str) -> String {
    let before = cluster.current_hash("demo", "reviews-v1");
    let mut deployment = cluster
        .server
        .get("apps/v1", "Deployment", Some("demo"), "reviews-v1")
        .unwrap();
    deployment["spec"]["template"]["metadata"]["labels"] = labels;
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    cluster.put(deployment);
    for _ in 0..200 {
        let now = cluster.current_hash("demo", "reviews-v1");
        if let Some(hash) = now.filter(|hash| Some(hash) != before.as_ref()) {
            return hash;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no new ReplicaSet for the stable Deployment");
}

fn stable_rolled_out(cluster: &TestCluster) -> bool {
    let deployment = cluster
        .server
        .get("apps/v1", "Deployment", Some("demo"), "reviews-v1")
        .unwrap();
    canary_istio::subsets::rolled_out(&deployment)
}

/// Waits until the simulated deployment controller has the stable Deployment `rolled` (or
/// not).
async fn until_rolled_out(cluster: &TestCluster, rolled: bool) {
    for _ in 0..100 {
        if stable_rolled_out(cluster) == rolled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the stable Deployment never became rolled out = {rolled}");
}

/// True when the pods labelled `pod` are selected by `subset`.
fn selects(subset: &Value, pod: &Value) -> bool {
    subset["labels"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| pod.get(k) == Some(v))
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
    assert_eq!(
        settle(&cluster, &traffic, &route).await,
        2,
        "the DR, then the VS"
    );
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
    assert_eq!(
        settle(&cluster, &traffic, &route).await,
        2,
        "the DR, then the VS"
    );
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
    settle(&cluster, &traffic, &RouteState::weighted(100)).await;
    // Promotion: the stable pods now carry v2 too, so the versions no longer tell the pods
    // apart; once the stable Deployment is rolled out the subsets go by pod-template hash.
    let promoted = roll_stable(
        &cluster,
        json!({"app": "reviews", "version": "v2"}),
        "reviews:v2",
    )
    .await;
    until_rolled_out(&cluster, true).await;
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(100))
            .await
            .unwrap()
            .verified,
        Verification::No
    );
    cluster.server.clear_requests();
    assert_eq!(settle(&cluster, &traffic, &RouteState::stable()).await, 3);
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
    assert_eq!(patched, ["dr", "vs", "dr"], "bridge, routes, final");
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
        promoted.as_str()
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

#[tokio::test]
async fn the_first_apply_writes_the_destination_rule_alone_and_the_routes_once_it_is_in_effect() {
    let cluster = cluster().await;
    let traffic = provider(
        &cluster,
        &ROLLOUT.replace("{virtualService: {name: reviews, routes: [primary]}}", "{}"),
    );
    let route = RouteState::weighted(20);
    cluster.server.clear_requests();
    assert!(traffic.apply(&route).await.unwrap());
    assert_eq!(writes(&cluster), ["PATCH reviews"]);
    assert!(
        get(&cluster, "VirtualService").is_none(),
        "no route before its subsets are in effect"
    );
    let dr = get(&cluster, "DestinationRule").unwrap();
    assert_eq!(dr["spec"]["subsets"].as_array().unwrap().len(), 2);
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::No
    );

    // Istio reports (as a string, as it may) that it has not taken this generation in yet:
    // the routes wait.
    let mut pending = dr.clone();
    let generation = dr["metadata"]["generation"].as_i64().unwrap();
    pending["status"] = json!({"observedGeneration": (generation - 1).to_string()});
    cluster.put(pending);
    cluster.server.clear_requests();
    assert!(!traffic.apply(&route).await.unwrap());
    assert!(writes(&cluster).is_empty(), "{:?}", writes(&cluster));
    assert!(get(&cluster, "VirtualService").is_none());

    let mut reconciled = get(&cluster, "DestinationRule").unwrap();
    reconciled["status"] = json!({"observedGeneration": generation});
    cluster.put(reconciled);
    assert!(traffic.apply(&route).await.unwrap());
    assert_routes_defined(&cluster);
    assert_eq!(
        weights(&cluster),
        [("v1".to_owned(), 80), ("v2".to_owned(), 20)]
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );
}

#[tokio::test]
async fn by_hash_the_stable_subset_keeps_its_replicaset_until_the_stable_deployment_is_rolled_out()
{
    let cluster = cluster().await;
    let traffic = provider(
        &cluster,
        &ROLLOUT
            .replace("{virtualService: {name: reviews, routes: [primary]}}", "{}")
            .replace("{version: v2, containers", "{containers"),
    );
    let labels = json!({"app": "reviews", "version": "v1"});
    let h1 = roll_stable(&cluster, labels.clone(), "reviews:v1").await;
    until_rolled_out(&cluster, true).await;
    settle(&cluster, &traffic, &RouteState::weighted(20)).await;
    assert_eq!(
        subset(&cluster, "stable")["labels"]["pod-template-hash"],
        h1.as_str()
    );
    settle(&cluster, &traffic, &RouteState::weighted(100)).await;

    // Promotion gives the stable Deployment the new template: a new ReplicaSet rolls out.
    let h2 = roll_stable(&cluster, labels, "reviews:v2").await;
    until_rolled_out(&cluster, false).await;
    settle(&cluster, &traffic, &RouteState::weighted(100)).await;
    assert_eq!(
        subset(&cluster, "stable")["labels"]["pod-template-hash"],
        h1.as_str(),
        "while the stable Deployment rolls, its subset stays where the live one is"
    );

    until_rolled_out(&cluster, true).await;
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(100))
            .await
            .unwrap()
            .verified,
        Verification::No,
        "rolled out: the stable subset is to follow the new ReplicaSet"
    );
    settle(&cluster, &traffic, &RouteState::stable()).await;
    assert_eq!(
        subset(&cluster, "stable")["labels"]["pod-template-hash"],
        h2.as_str()
    );
    assert_eq!(
        weights(&cluster),
        [("stable".to_owned(), 100), ("canary".to_owned(), 0)]
    );
}

#[tokio::test]
async fn by_version_a_promotion_never_puts_canary_pods_or_no_pods_in_the_stable_subset() {
    let cluster = cluster().await;
    let traffic = provider(
        &cluster,
        &ROLLOUT.replace("{virtualService: {name: reviews, routes: [primary]}}", "{}"),
    );
    let h1 = roll_stable(
        &cluster,
        json!({"app": "reviews", "version": "v1"}),
        "reviews:v1",
    )
    .await;
    until_rolled_out(&cluster, true).await;
    let old_stable_pod = json!({"app": "reviews", "version": "v1", "pod-template-hash": h1});
    let canary_pod = json!({"app": "reviews", "version": "v2", "canary.rs/role": "canary", "pod-template-hash": "c1"});

    settle(&cluster, &traffic, &RouteState::weighted(50)).await;
    assert_eq!(
        weights(&cluster),
        [("v1".to_owned(), 50), ("v2".to_owned(), 50)]
    );
    // The promotion: all traffic to the canary, then the stable Deployment takes v2.
    settle(&cluster, &traffic, &RouteState::weighted(100)).await;
    let h2 = roll_stable(
        &cluster,
        json!({"app": "reviews", "version": "v2"}),
        "reviews:v2",
    )
    .await;
    let new_stable_pod = json!({"app": "reviews", "version": "v2", "pod-template-hash": h2});
    until_rolled_out(&cluster, false).await;
    settle(&cluster, &traffic, &RouteState::weighted(100)).await;
    let (stable_name, _) = weights(&cluster)[0].clone();
    let stable = subset(&cluster, &stable_name);
    assert!(
        selects(&stable, &old_stable_pod),
        "the stable subset keeps the pods still there: {stable}"
    );
    assert!(!selects(&stable, &canary_pod), "{stable}");
    let (canary_name, canary_weight) = weights(&cluster)[1].clone();
    assert_eq!(canary_weight, 100);
    assert!(selects(&subset(&cluster, &canary_name), &canary_pod));

    // Rolled out: all traffic back to the stable Deployment, now on v2, and none to the canary.
    until_rolled_out(&cluster, true).await;
    settle(&cluster, &traffic, &RouteState::stable()).await;
    let (stable_name, weight) = weights(&cluster)[0].clone();
    assert_eq!(weight, 100);
    let stable = subset(&cluster, &stable_name);
    assert!(selects(&stable, &new_stable_pod), "{stable}");
    assert!(!selects(&stable, &canary_pod), "{stable}");
    assert!(!selects(&stable, &old_stable_pod), "{stable}");
}
