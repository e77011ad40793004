//! What users' requests get: the objects canary renders for ingress-nginx, put in a cluster with
//! stable and canary pods, and served by the model of ingress-nginx's balancer
//! (`canary_core::sim::dataplane::nginx`, written from ingress-nginx's source, not from this crate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::RouteState;
use canary_core::api::spec::{RequestMatch, StringMatch};
use canary_core::k8s::objects::Objects;
use canary_core::sim::dataplane::{Caller, Request, World, nginx};
use serde_json::{Value, json};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plan() -> canary_core::RolloutPlan {
    let text =
        std::fs::read_to_string(root().join("examples/rollouts/echoserver-nginx.yaml")).unwrap();
    canary_core::api::validate::validate(
        &canary_core::api::load::rollout_file(&text).unwrap().rollout,
    )
    .unwrap()
}

/// A ReplicaSet of `deployment` with pod-template-hash `hash`, and `count` ready pods of it
/// carrying `labels`.
fn pods(deployment: &str, hash: &str, revision: u32, count: usize, labels: Value) -> Vec<Value> {
    let rs = format!("{deployment}-{hash}");
    let mut labels = labels;
    labels["pod-template-hash"] = json!(hash);
    let mut objects = vec![json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": rs, "namespace": "default", "labels": labels,
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "uid": deployment, "controller": true}]}
    })];
    for i in 0..count {
        objects.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{rs}-{i}"), "namespace": "default", "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
    }
    objects
}

fn deployment(name: &str, replicas: u32, revision: u32, labels: Value, settled: bool) -> Value {
    let updated = if settled { replicas } else { 0 };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "uid": name, "generation": 1,
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels.clone()},
                 "template": {"metadata": {"labels": labels}}},
        "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": updated,
                   "availableReplicas": replicas, "readyReplicas": replicas}
    })
}

/// The Kruise seed's objects with 5 stable pods and, when `canary` pods, a canary Deployment.
fn cluster(canary: usize) -> Objects {
    let text =
        std::fs::read_to_string(root().join("examples/rollouts/echoserver-objects.yaml")).unwrap();
    let mut objects = canary_core::api::load::objects_from_yaml(&text).unwrap();
    objects.insert(deployment(
        "echoserver",
        5,
        1,
        json!({"app": "echoserver"}),
        true,
    ));
    objects.extend(pods(
        "echoserver",
        "stable1",
        1,
        5,
        json!({"app": "echoserver"}),
    ));
    if canary > 0 {
        let labels = canary_labels();
        objects.insert(deployment(
            "echoserver-canary",
            canary as u32,
            1,
            labels.clone(),
            true,
        ));
        objects.extend(pods("echoserver-canary", "canary1", 1, canary, labels));
    }
    objects
}

/// The labels of the canary's pods, as the workload makes them: the stable pods' labels with
/// canary's own, and an own value for the stable Service's selector key.
fn canary_labels() -> Value {
    let mut labels =
        json!({"app": "echoserver", "canary.rs/role": "canary", "canary.rs/rollout": "echoserver"});
    let (key, value) = canary_core::k8s::services::canary_pod_label(
        json!({"app": "echoserver"}).as_object().unwrap(),
        labels.as_object().unwrap(),
    )
    .unwrap();
    labels[key] = json!(value);
    labels
}

/// `objects` with what canary renders for `route` applied (the canary Service and Ingress
/// added; the stable Service is never rendered).
fn applied(objects: &Objects, route: &RouteState) -> World {
    let rendered = canary_nginx::render(&plan(), route, objects).unwrap();
    let mut objects = objects.clone();
    let mut add = |object: &Value| {
        let mut object = object.clone();
        if object["metadata"]["namespace"].is_null() {
            object["metadata"]["namespace"] = json!("default");
        }
        objects.insert(object);
    };
    for object in rendered.objects() {
        add(&object);
    }
    World::new(objects.iter().cloned().collect())
}

/// Shares of requests answered by stable pods, canary pods and nobody.
fn shares(world: &World, request: &Request) -> (f64, f64, f64) {
    let served = nginx::serve(world, request);
    let canary = served.share(|pod| pod.name.starts_with("echoserver-canary"));
    let stable = served.share(|pod| !pod.name.starts_with("echoserver-canary"));
    (stable, canary, served.unserved())
}

fn request() -> Request {
    Request::to("echoserver.example.com", "/").from(Caller::IngressController)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn at_20_percent_a_fifth_of_requests_reach_the_canary_pods() {
    let world = applied(&cluster(1), &RouteState::weighted(20));
    let (stable, canary, none) = shares(&world, &request());
    assert!(close(canary, 0.2), "canary {canary}");
    assert!(close(stable, 0.8), "stable {stable}");
    assert!(close(none, 0.0));
}

#[test]
fn canary_pods_get_nothing_through_the_stable_service_before_the_first_step() {
    // The canary's pods carry the stable Service's labels; the stable-only route with them in
    // place must keep every request on stable pods.
    let world = applied(&cluster(1), &RouteState::stable());
    let (stable, canary, none) = shares(&world, &request());
    assert!(close(canary, 0.0), "canary {canary}");
    assert!(close(stable, 1.0));
    assert!(close(none, 0.0));
}

#[test]
fn a_header_match_sends_exactly_the_matching_requests() {
    let route = RouteState {
        matches: vec![RequestMatch {
            headers: [("x-canary".to_owned(), StringMatch::exact("yes"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    let world = applied(&cluster(1), &route);
    let (_, matched, _) = shares(&world, &request().header("x-canary", "yes"));
    let (_, other, _) = shares(&world, &request().header("x-canary", "yesno"));
    assert!(close(matched, 1.0), "matched {matched}");
    assert!(close(other, 0.0), "a longer value is not a match: {other}");
}

#[test]
fn while_stable_rolls_behind_a_full_canary_route_nothing_is_unserved() {
    // Promotion: the canary at full size takes all traffic while the stable Deployment rolls
    // to a new ReplicaSet (RollingUpdate, 25 % of 5 unavailable at most: 4 old pods stay
    // until new ones are ready). The stable Service is as the user wrote it.
    let mut objects = cluster(5);
    let stable: Vec<Value> = objects
        .iter()
        .filter(|o| o["metadata"]["name"] != "echoserver-stable1-4")
        .cloned()
        .collect();
    objects = Objects::new(stable);
    objects.insert(deployment(
        "echoserver",
        5,
        2,
        json!({"app": "echoserver"}),
        false,
    ));
    objects.extend(pods(
        "echoserver",
        "stable2",
        2,
        0,
        json!({"app": "echoserver"}),
    ));
    let world = applied(&objects, &RouteState::weighted(100));
    let (stable, canary, none) = shares(&world, &request());
    assert!(close(none, 0.0), "unserved {none}");
    assert!(close(canary, 1.0), "canary {canary}, stable {stable}");
    // Back to stable before the roll is over: the old pods answer everything.
    let world = applied(&objects, &RouteState::stable());
    let (stable, canary, none) = shares(&world, &request());
    assert!(close(stable, 1.0) && close(canary, 0.0) && close(none, 0.0));
}
