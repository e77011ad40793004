//! The provider against the API test server: canary objects applied, read back and verified,
//! the stable Service narrowed while a canary runs, and finalize leaving the stable objects
//! exactly as they were.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::RouteState;
use canary_core::api::spec::{RequestMatch, StringMatch};
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::TrafficProvider;
use canary_kube::fixtures::TestCluster;
use canary_nginx::NginxTraffic;
use kube_testserver::Verb;
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: echoserver, namespace: default}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echoserver}
  service: {name: echoserver, port: 8080}
  newVersion: {containers: [{name: echoserver, image: 'cilium/echoserver:1.10.3'}]}
  trafficRouting: {nginx: {ingress: echoserver}}
  strategy: {canary: {steps: [{weight: 20, replicas: 20%, pause: {}}]}}
  progressDeadline: 30s
";

/// The seed's objects in the cluster, with the stable Deployment's current ReplicaSet.
async fn cluster() -> TestCluster {
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
    cluster.put_replicaset(
        "default",
        "echoserver",
        "6c9f",
        json!({"app": "echoserver"}),
    );
    cluster
}

fn stable(cluster: &TestCluster, api_version: &str, kind: &str, name: &str) -> Value {
    cluster
        .server
        .get(api_version, kind, Some("default"), name)
        .unwrap()
}

fn canary_objects(cluster: &TestCluster) -> (Option<Value>, Option<Value>) {
    (
        cluster.server.get(
            "networking.k8s.io/v1",
            "Ingress",
            Some("default"),
            "echoserver-canary",
        ),
        cluster
            .server
            .get("v1", "Service", Some("default"), "echoserver-canary"),
    )
}

fn provider(cluster: &TestCluster) -> NginxTraffic {
    let rollout = canary_core::api::load::from_yaml(ROLLOUT).unwrap();
    NginxTraffic::new(
        cluster.client.clone(),
        canary_core::api::validate::validate(&rollout).unwrap(),
    )
}

fn writes(cluster: &TestCluster) -> usize {
    cluster
        .server
        .requests()
        .iter()
        .filter(|r| {
            matches!(
                r.verb,
                Verb::Patch | Verb::Create | Verb::Update | Verb::Delete
            )
        })
        .count()
}

#[tokio::test]
async fn canary_objects_come_and_go_and_the_stable_ones_end_as_they_were() {
    let cluster = cluster().await;
    let ingress_before = stable(&cluster, "networking.k8s.io/v1", "Ingress", "echoserver");
    let service_before = stable(&cluster, "v1", "Service", "echoserver");
    let traffic = provider(&cluster);
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::stable())
    );
    assert_eq!(
        traffic
            .observe(&RouteState::stable())
            .await
            .unwrap()
            .verified,
        Verification::Yes
    );

    let route = RouteState::weighted(20);
    assert!(traffic.apply(&route).await.unwrap());
    let (ingress, service) = canary_objects(&cluster);
    let ingress = ingress.unwrap();
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(
        ingress["metadata"]["managedFields"][0]["manager"],
        "canary-nginx"
    );
    assert_eq!(
        service.unwrap()["spec"]["selector"]["canary.rs/role"],
        "canary"
    );
    assert_eq!(
        stable(&cluster, "v1", "Service", "echoserver"),
        service_before,
        "the stable Service is never written"
    );
    assert_eq!(
        stable(&cluster, "networking.k8s.io/v1", "Ingress", "echoserver"),
        ingress_before
    );
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(route.clone())
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );

    cluster.server.clear_requests();
    assert!(!traffic.apply(&route).await.unwrap());
    assert_eq!(writes(&cluster), 0, "nothing to change, nothing written");

    // A hand edit of the weight is seen, and the route is no longer in effect.
    let mut edited = canary_objects(&cluster).0.unwrap();
    edited["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = json!("50");
    cluster.put(edited);
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::weighted(50))
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::No
    );

    let by_header = RouteState {
        matches: vec![RequestMatch {
            headers: [("x-canary".into(), StringMatch::exact("insider"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    assert!(traffic.apply(&by_header).await.unwrap());
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(by_header.clone())
    );
    let annotations = canary_objects(&cluster).0.unwrap()["metadata"]["annotations"].clone();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header-value"],
        "insider"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "0"
    );

    traffic.finalize().await.unwrap();
    assert_eq!(canary_objects(&cluster), (None, None));
    let service_after = stable(&cluster, "v1", "Service", "echoserver");
    assert_eq!(service_after["spec"], service_before["spec"]);
    // No annotation is left behind (an emptied map counts as none, as the API server writes it).
    let annotations = |service: &Value| {
        service["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(annotations(&service_after), annotations(&service_before));
    assert_eq!(
        stable(&cluster, "networking.k8s.io/v1", "Ingress", "echoserver"),
        ingress_before
    );
}

#[tokio::test]
async fn a_canary_the_stable_service_selects_is_not_routed_to_and_stable_is_always_reachable() {
    let cluster = cluster().await;
    let traffic = provider(&cluster);
    assert!(traffic.apply(&RouteState::weighted(20)).await.unwrap());
    // A canary Deployment made by hand (or before the Service's selector changed) whose pods
    // the stable Service selects: the stable share of any route would reach them.
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echoserver-canary", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "echoserver"}}, "template": {"metadata": {"labels": {"app": "echoserver"}}}}
    }));
    let refused = traffic
        .apply(&RouteState::weighted(50))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("selects the canary's pods"), "{refused}");
    assert_eq!(
        canary_objects(&cluster).0.unwrap()["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "20",
        "nothing half-applied"
    );
    // All traffic back on stable is never refused, and removes the canary objects.
    assert!(traffic.apply(&RouteState::stable()).await.unwrap());
    assert_eq!(canary_objects(&cluster), (None, None));
    assert_eq!(
        traffic
            .observe(&RouteState::stable())
            .await
            .unwrap()
            .verified,
        Verification::Yes
    );
    assert_eq!(
        stable(&cluster, "v1", "Service", "echoserver")["spec"]["selector"],
        json!({"app": "echoserver"})
    );
}

fn ingress(cluster: &TestCluster, name: &str) -> Option<Value> {
    cluster
        .server
        .get("networking.k8s.io/v1", "Ingress", Some("default"), name)
}

/// A second Service, `echo2`, of a second Deployment, on the path `/two` of the seed's
/// Ingress; and the provider of a Rollout for it.
fn second_service(cluster: &TestCluster) -> NginxTraffic {
    cluster.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echo2", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "echo2"}},
                 "template": {"metadata": {"labels": {"app": "echo2"}},
                              "spec": {"containers": [{"name": "echoserver", "image": "cilium/echoserver:1.10.2"}]}}}
    }));
    cluster.put_replicaset("default", "echo2", "77aa", json!({"app": "echo2"}));
    cluster.put(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo2", "namespace": "default"},
        "spec": {"selector": {"app": "echo2"}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}
    }));
    let mut shared = stable(cluster, "networking.k8s.io/v1", "Ingress", "echoserver");
    let mut two = shared["spec"]["rules"][0]["http"]["paths"][0].clone();
    two["path"] = json!("/two");
    two["backend"]["service"]["name"] = json!("echo2");
    shared["spec"]["rules"][0]["http"]["paths"]
        .as_array_mut()
        .unwrap()
        .push(two);
    cluster.put(shared);
    let yaml = ROLLOUT
        .replace(
            "{name: echoserver, namespace: default}",
            "{name: echo2, namespace: default}",
        )
        .replace("name: echoserver}", "name: echo2}")
        .replace(
            "{name: echoserver, port: 8080}",
            "{name: echo2, port: 8080}",
        );
    let rollout = canary_core::api::load::from_yaml(&yaml).unwrap();
    NginxTraffic::new(
        cluster.client.clone(),
        canary_core::api::validate::validate(&rollout).unwrap(),
    )
}

fn paths_and_backends(ingress: &Value) -> Vec<(String, String)> {
    ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap().to_owned(),
                p["backend"]["service"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_rollouts_whose_services_share_an_ingress_each_get_their_own_canary_ingress() {
    let cluster = cluster().await;
    let second = second_service(&cluster);
    let first = provider(&cluster);
    let (one, two) = (RouteState::weighted(20), RouteState::weighted(50));
    assert!(first.apply(&one).await.unwrap());
    assert!(second.apply(&two).await.unwrap());
    let weight = "nginx.ingress.kubernetes.io/canary-weight";
    let a = ingress(&cluster, "echoserver-echoserver-canary").expect("the first's");
    let b = ingress(&cluster, "echoserver-echo2-canary").expect("the second's");
    assert!(ingress(&cluster, "echoserver-canary").is_none());
    assert_eq!(a["metadata"]["annotations"][weight], "20");
    assert_eq!(b["metadata"]["annotations"][weight], "50");
    assert_eq!(
        paths_and_backends(&a),
        [("/".to_owned(), "echoserver-canary".to_owned())]
    );
    assert_eq!(
        paths_and_backends(&b),
        [("/two".to_owned(), "echo2-canary".to_owned())]
    );
    for (traffic, route) in [(&first, &one), (&second, &two)] {
        let seen = traffic.observe(route).await.unwrap();
        assert_eq!(seen.verified, Verification::Yes);
        assert_eq!(seen.route.as_ref(), Some(route));
    }
    // One going back to stable leaves the other's canary alone.
    assert!(first.apply(&RouteState::stable()).await.unwrap());
    assert!(ingress(&cluster, "echoserver-echoserver-canary").is_none());
    assert!(ingress(&cluster, "echoserver-echo2-canary").is_some());
    assert_eq!(
        second.observe(&two).await.unwrap().verified,
        Verification::Yes
    );
}

#[tokio::test]
async fn a_canary_ingress_of_another_rollout_or_of_a_user_is_never_taken_over() {
    let cluster = cluster().await;
    let traffic = provider(&cluster);
    for (labels, owner) in [
        (
            json!({"app.kubernetes.io/managed-by": "canary", "canary.rs/rollout": "other"}),
            "Rollout default/other",
        ),
        (json!({"team": "web"}), "canary did not make it"),
    ] {
        let mut theirs = stable(&cluster, "networking.k8s.io/v1", "Ingress", "echoserver");
        theirs["metadata"] = json!({"name": "echoserver-canary", "namespace": "default", "labels": labels,
                                    "annotations": {"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "5"}});
        cluster.put(theirs);
        let before = ingress(&cluster, "echoserver-canary").unwrap();
        let error = traffic
            .apply(&RouteState::weighted(20))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(owner), "{error}");
        assert!(
            error.contains("Ingress default/echoserver-canary"),
            "{error}"
        );
        assert_eq!(ingress(&cluster, "echoserver-canary").unwrap(), before);
        assert_eq!(
            traffic
                .observe(&RouteState::weighted(20))
                .await
                .unwrap()
                .verified,
            Verification::No
        );
        // All traffic to stable needs no canary Ingress: theirs stays.
        traffic.apply(&RouteState::stable()).await.unwrap();
        traffic.finalize().await.unwrap();
        assert_eq!(ingress(&cluster, "echoserver-canary").unwrap(), before);
    }
}

#[tokio::test]
async fn when_the_ingress_gains_a_service_the_canary_ingress_moves_to_its_per_service_name() {
    let cluster = cluster().await;
    let traffic = provider(&cluster);
    assert!(traffic.apply(&RouteState::weighted(20)).await.unwrap());
    assert!(ingress(&cluster, "echoserver-canary").is_some());
    second_service(&cluster);
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(20))
            .await
            .unwrap()
            .verified,
        Verification::No
    );
    assert!(traffic.apply(&RouteState::weighted(20)).await.unwrap());
    assert!(ingress(&cluster, "echoserver-canary").is_none());
    let moved = ingress(&cluster, "echoserver-echoserver-canary").unwrap();
    assert_eq!(
        paths_and_backends(&moved),
        [("/".to_owned(), "echoserver-canary".to_owned())]
    );
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(20))
            .await
            .unwrap()
            .verified,
        Verification::Yes
    );
}

#[tokio::test]
async fn a_stray_canary_annotation_on_the_canary_ingress_is_seen_and_removed() {
    let cluster = cluster().await;
    let traffic = provider(&cluster);
    let route = RouteState::weighted(20);
    assert!(traffic.apply(&route).await.unwrap());
    let mut edited = ingress(&cluster, "echoserver-canary").unwrap();
    edited["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"] =
        json!("x-debug");
    edited["metadata"]["annotations"]["team"] = json!("web");
    cluster.put(edited);
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::No,
        "a header match nobody asked for routes requests to the canary"
    );
    assert!(traffic.apply(&route).await.unwrap());
    let repaired = ingress(&cluster, "echoserver-canary").unwrap();
    let annotations = &repaired["metadata"]["annotations"];
    assert!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary-by-header")
            .is_none(),
        "{annotations}"
    );
    assert_eq!(annotations["team"], "web", "other annotations stay");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );
    cluster.server.clear_requests();
    assert!(!traffic.apply(&route).await.unwrap());
    assert_eq!(writes(&cluster), 0);
}

#[tokio::test]
async fn a_stray_key_in_the_canary_services_selector_is_seen_and_removed() {
    let cluster = cluster().await;
    let traffic = provider(&cluster);
    let route = RouteState::weighted(20);
    assert!(traffic.apply(&route).await.unwrap());
    let (_, service) = canary_objects(&cluster);
    let mut edited = service.unwrap();
    let wanted = edited["spec"]["selector"].clone();
    // A key no canary pod carries: the canary Service would select nothing, and ingress-nginx
    // would answer the canary's share with 503s.
    edited["spec"]["selector"]["track"] = json!("old");
    cluster.put(edited);
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::No
    );
    assert!(traffic.apply(&route).await.unwrap());
    let (_, repaired) = canary_objects(&cluster);
    assert_eq!(repaired.unwrap()["spec"]["selector"], wanted);
    assert_eq!(
        traffic.observe(&route).await.unwrap().verified,
        Verification::Yes
    );
    cluster.server.clear_requests();
    assert!(!traffic.apply(&route).await.unwrap());
    assert_eq!(writes(&cluster), 0);
}
