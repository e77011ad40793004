//! The provider against the API test server: server-side apply, read-back, verification,
//! the canary host made before routes name it and removed after, and finalize (generated
//! objects deleted, a user's restored).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::RouteState;
use canary_core::api::spec::{RequestMatch, StringMatch};
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::TrafficProvider;
use canary_istio::IstioTraffic;
use canary_kube::fixtures::TestCluster;
use kube_testserver::Verb;
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
    cluster.put(stable("v1"));
    cluster.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}
    }));
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
    let rollout = canary_core::api::load::from_yaml(yaml).unwrap();
    IstioTraffic::new(
        cluster.client.clone(),
        canary_core::api::validate::validate(&rollout).unwrap(),
    )
}

fn get(cluster: &TestCluster, kind: &str) -> Option<Value> {
    get_named(cluster, kind, "reviews")
}

fn get_named(cluster: &TestCluster, kind: &str, name: &str) -> Option<Value> {
    let api_version = if kind == "Service" { "v1" } else { ISTIO };
    cluster.server.get(api_version, kind, Some("demo"), name)
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
            let mut parts = r.path.rsplit('/');
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            format!("{} {kind}/{name}", r.method)
        })
        .collect()
}

/// Applies `route` until it is in effect (each apply takes one make-before-break step),
/// checking after every step that the VirtualService names the canary host only while its
/// Service exists. Returns how many applies wrote.
async fn settle(cluster: &TestCluster, traffic: &IstioTraffic, route: &RouteState) -> usize {
    let mut writing = 0;
    for _ in 0..6 {
        if traffic.observe(route).await.unwrap().verified == Verification::Yes {
            return writing;
        }
        if traffic.apply(route).await.unwrap() {
            writing += 1;
        }
        assert_hosts_defined(cluster);
    }
    panic!("{route:?} not in effect after 6 applies");
}

/// The hosts the VirtualService routes and mirrors to.
fn hosts(vs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for kind in ["http", "tcp", "tls"] {
        for route in vs["spec"][kind].as_array().into_iter().flatten() {
            for entry in route["route"].as_array().into_iter().flatten() {
                out.extend(entry["destination"]["host"].as_str().map(str::to_owned));
            }
            out.extend(route["mirror"]["host"].as_str().map(str::to_owned));
        }
    }
    out
}

/// The VirtualService names the canary host only while the canary Service exists (else Envoy
/// has no cluster for it and answers 503).
fn assert_hosts_defined(cluster: &TestCluster) {
    let Some(vs) = get(cluster, "VirtualService") else {
        return;
    };
    if hosts(&vs).iter().any(|h| h.starts_with("reviews-canary")) {
        assert!(
            get_named(cluster, "Service", "reviews-canary").is_some(),
            "the VirtualService routes to reviews-canary, which has no Service: {vs}"
        );
    }
}

/// The hosts the VirtualService's primary route sends to, with their weights.
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
                e["destination"]["host"].as_str().unwrap().to_owned(),
                e["weight"].as_u64().unwrap_or(100),
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

fn no_canary_annotation(object: &Value) {
    let annotations = object["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        annotations.keys().all(|k| !k.starts_with("canary.rs/")),
        "{annotations:?}"
    );
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
    cluster.server.clear_requests();
    assert_eq!(
        settle(&cluster, &traffic, &route).await,
        2,
        "the canary Service, then the VS"
    );
    assert_eq!(
        writes(&cluster),
        [
            "PATCH services/reviews-canary",
            "PATCH virtualservices/reviews"
        ]
    );
    assert_eq!(
        weights(&cluster),
        [
            ("reviews".to_owned(), 80),
            ("reviews-canary".to_owned(), 20)
        ]
    );
    let vs = get(&cluster, "VirtualService").unwrap();
    assert_eq!(
        vs["metadata"]["managedFields"][0]["manager"],
        "canary-istio"
    );
    assert!(
        get(&cluster, "DestinationRule").is_none(),
        "no subsets, no rule"
    );
    let canary = get_named(&cluster, "Service", "reviews-canary").unwrap();
    assert_eq!(
        canary["spec"]["selector"],
        json!({"canary.rs/role": "canary", "canary.rs/rollout": "reviews"})
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

    // Back to stable: the route first, the canary host once no route names it.
    assert!(traffic.reset().await.unwrap());
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::stable())
    );
    assert_eq!(weights(&cluster), [("reviews".to_owned(), 100)]);
    assert!(get_named(&cluster, "Service", "reviews-canary").is_none());
    traffic.finalize().await.unwrap();
    assert!(get(&cluster, "VirtualService").is_none());
    assert!(get(&cluster, "DestinationRule").is_none());
    assert!(
        get(&cluster, "Service").is_some(),
        "the stable Service stays"
    );
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
        "the canary host, then the VS"
    );
    let vs = get(&cluster, "VirtualService").unwrap();
    assert_eq!(vs["spec"]["http"][0], before_vs["spec"]["http"][0]);
    assert_eq!(vs["spec"]["http"][1]["name"], "primary-canary-match");
    assert_eq!(
        vs["spec"]["http"][1]["route"],
        json!([{"destination": {"host": "reviews-canary"}}])
    );
    assert_eq!(vs["spec"]["http"][2]["timeout"], "5s");
    assert_eq!(
        vs["spec"]["http"][2]["route"],
        json!([{"destination": {"host": "reviews", "subset": "v1"}, "weight": 70},
               {"destination": {"host": "reviews-canary"}, "weight": 30}])
    );
    assert_eq!(vs["metadata"]["labels"], before_vs["metadata"]["labels"]);
    // The user's DestinationRule is not written at all; the canary host has its own rule
    // with the same traffic policy.
    let dr = get(&cluster, "DestinationRule").unwrap();
    assert_eq!(dr, before_dr);
    let canary_dr = get_named(&cluster, "DestinationRule", "reviews-canary").unwrap();
    assert_eq!(canary_dr["spec"]["host"], "reviews-canary");
    assert_eq!(
        canary_dr["spec"]["trafficPolicy"],
        before_dr["spec"]["trafficPolicy"]
    );
    assert_eq!(
        canary_dr["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "canary"
    );
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
    assert_eq!(after_dr, before_dr);
    no_canary_annotation(&after_vs);
    assert!(get_named(&cluster, "DestinationRule", "reviews-canary").is_none());
    assert!(get_named(&cluster, "Service", "reviews-canary").is_none());
}

#[tokio::test]
async fn gits_route_put_back_mid_release_is_seen_and_a_stable_route_gives_the_user_git_s_route() {
    let cluster = cluster().await;
    let git = json!({
        "apiVersion": ISTIO, "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"hosts": ["reviews"], "http": [{"name": "primary", "route": [{"destination": {"host": "reviews"}}]}]}
    });
    cluster.put(git.clone());
    let traffic = provider(&cluster, ROLLOUT);
    let route = RouteState::weighted(20);
    settle(&cluster, &traffic, &route).await;
    // A GitOps tool applies Git's routes again (the list is atomic: it replaces canary's).
    let mut reverted = get(&cluster, "VirtualService").unwrap();
    reverted["spec"]["http"] = git["spec"]["http"].clone();
    cluster.put(reverted);
    let seen = traffic.observe(&route).await.unwrap();
    assert_eq!(seen.verified, Verification::No);
    assert_eq!(
        seen.route,
        Some(RouteState::stable()),
        "Git's route sends the canary nothing"
    );
    assert_eq!(settle(&cluster, &traffic, &route).await, 1, "the VS again");
    assert_eq!(
        weights(&cluster),
        [
            ("reviews".to_owned(), 80),
            ("reviews-canary".to_owned(), 20)
        ]
    );

    // All on stable: Git's VirtualService as it is, then the canary host goes.
    cluster.server.clear_requests();
    assert_eq!(settle(&cluster, &traffic, &RouteState::stable()).await, 2);
    assert_eq!(
        writes(&cluster),
        [
            "PATCH virtualservices/reviews",
            "DELETE services/reviews-canary"
        ]
    );
    let vs = get(&cluster, "VirtualService").unwrap();
    assert_eq!(vs["spec"], git["spec"]);
    no_canary_annotation(&vs);
    // Nothing more to do, and nothing written while it stays so.
    cluster.server.clear_requests();
    assert!(!traffic.apply(&RouteState::stable()).await.unwrap());
    assert!(writes(&cluster).is_empty(), "{:?}", writes(&cluster));
}

#[tokio::test]
async fn the_routes_wait_for_the_canary_hosts_destination_rule_to_be_reconciled() {
    let cluster = cluster().await;
    cluster.put(user_vs());
    cluster.put(user_dr());
    let traffic = provider(&cluster, ROLLOUT);
    let route = RouteState::weighted(20);
    cluster.server.clear_requests();
    assert!(traffic.apply(&route).await.unwrap());
    assert_eq!(
        writes(&cluster),
        [
            "PATCH services/reviews-canary",
            "PATCH destinationrules/reviews-canary"
        ]
    );
    assert_eq!(weights(&cluster), [("reviews".to_owned(), 100)]);
    // Istio reports (as a string, as it may) that it has not taken this generation in yet:
    // the routes wait.
    let dr = get_named(&cluster, "DestinationRule", "reviews-canary").unwrap();
    let generation = dr["metadata"]["generation"].as_i64().unwrap();
    let mut pending = dr.clone();
    pending["status"] = json!({"observedGeneration": (generation - 1).to_string()});
    cluster.put(pending);
    cluster.server.clear_requests();
    assert!(!traffic.apply(&route).await.unwrap());
    assert!(writes(&cluster).is_empty(), "{:?}", writes(&cluster));
    let mut reconciled = dr;
    reconciled["status"] = json!({"observedGeneration": generation});
    cluster.put(reconciled);
    assert!(traffic.apply(&route).await.unwrap());
    assert_hosts_defined(&cluster);
    assert_eq!(
        weights(&cluster),
        [
            ("reviews".to_owned(), 80),
            ("reviews-canary".to_owned(), 20)
        ]
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );
}

#[tokio::test]
async fn a_destination_rule_an_earlier_version_edited_is_given_back_once_no_route_needs_it() {
    let cluster = cluster().await;
    cluster.put(user_vs());
    cluster.put(user_dr());
    // What earlier versions left: a canary subset added and their annotations, written by
    // server-side apply as canary's field manager.
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        cluster.client.clone(),
        "demo",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "networking.istio.io",
            "v1",
            "DestinationRule",
        )),
    );
    let original = json!({"subsets": user_dr()["spec"]["subsets"]}).to_string();
    let legacy = json!({
        "apiVersion": ISTIO, "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "demo",
                     "annotations": {"canary.rs/original": original, "canary.rs/stable-subset": "v1"}},
        "spec": {"subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v3", "labels": {"version": "v3"}},
            {"name": "v2", "labels": {"version": "v2"}}
        ]}
    });
    api.patch(
        "reviews",
        &kube::api::PatchParams::apply("canary-istio").force(),
        &kube::api::Patch::Apply(&legacy),
    )
    .await
    .unwrap();
    let traffic = provider(&cluster, ROLLOUT);
    assert_eq!(
        traffic
            .observe(&RouteState::stable())
            .await
            .unwrap()
            .verified,
        Verification::No
    );
    settle(&cluster, &traffic, &RouteState::stable()).await;
    let dr = get(&cluster, "DestinationRule").unwrap();
    assert_eq!(dr["spec"], user_dr()["spec"]);
    no_canary_annotation(&dr);
    cluster.server.clear_requests();
    assert!(!traffic.apply(&RouteState::stable()).await.unwrap());
    assert!(writes(&cluster).is_empty(), "{:?}", writes(&cluster));
}
