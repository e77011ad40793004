//! What each kind of caller's requests get, on hand-written worlds shaped like the objects canary
//! applies (as `canary render` prints them) and the Deployments → ReplicaSets → Pods a cluster
//! runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use canary_core::RolloutPlan;
use canary_core::api::load::plan_from_yaml;
use canary_core::api::spec::RequestMatch;
use canary_core::sim::dataplane::World;
use canary_core::sim::dataplane::probe::{CallerProbe, Probe, RequestClass, probe};
use serde_json::{Value, json};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn plan(yaml: &str) -> RolloutPlan {
    plan_from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn matches(yaml: &str) -> Vec<RequestMatch> {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// A Deployment with its current ReplicaSet (`<name>-<hash>`) and `ready` of `replicas` pods
/// ready, every pod labelled `labels` and `pod-template-hash: <hash>`.
fn workload(
    namespace: &str,
    name: &str,
    hash: &str,
    labels: Value,
    replicas: usize,
    ready: usize,
) -> Vec<Value> {
    let mut pod_labels = labels.clone();
    pod_labels["pod-template-hash"] = json!(hash);
    let rs = format!("{name}-{hash}");
    let mut objects = vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                        "template": {"metadata": {"labels": labels}}}}),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": rs, "namespace": namespace, "labels": pod_labels,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "controller": true}]},
               "spec": {"replicas": replicas}}),
    ];
    for i in 0..replicas {
        let status = if i < ready { "True" } else { "False" };
        objects.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{rs}-{i}"), "namespace": namespace, "labels": pod_labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": true}]},
            "status": {"conditions": [{"type": "Ready", "status": status}]}}));
    }
    objects
}

fn service(namespace: &str, name: &str, selector: Value, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": selector,
                    "ports": [{"name": "http", "port": port, "targetPort": port, "appProtocol": "http"}]}})
}

fn only(probe: &Probe, class: RequestClass) -> Vec<&CallerProbe> {
    probe.of(class).collect()
}

fn assert_shares(entry: &CallerProbe, stable: f64, canary: f64, none: f64) {
    assert!(
        close(entry.stable, stable) && close(entry.canary, canary) && close(entry.none, none),
        "{entry:?}: want stable {stable}, canary {canary}, none {none}"
    );
    assert!(
        close(entry.stable + entry.canary + entry.other + entry.none, 1.0),
        "{entry:?}"
    );
}

// ---------------------------------------------------------------- ingress-nginx

const ECHOSERVER: &str = "
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: echoserver}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: echoserver}
  service: {name: echoserver, port: 8080}
  trafficRouting:
    nginx: {ingress: echoserver}
  strategy:
    canary:
      steps:
      - {weight: 20, replicas: 20%, pause: {}}
";

fn stable_ingress() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "echoserver", "namespace": "default",
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "annotations": {"kubernetes.io/ingress.class": "nginx"}},
           "spec": {"rules": [{"host": "echoserver.example.com", "http": {"paths": [
               {"path": "/", "pathType": "ImplementationSpecific",
                "backend": {"service": {"name": "echoserver", "port": {"number": 8080}}}},
               {"path": "/docs", "pathType": "Prefix",
                "backend": {"service": {"name": "docs", "port": {"number": 80}}}}]}}]}})
}

fn canary_ingress(prefix: &str, annotations: &[(&str, &str)]) -> Value {
    let mut all =
        json!({"kubernetes.io/ingress.class": "nginx", format!("{prefix}/canary"): "true"});
    for (key, value) in annotations {
        all[format!("{prefix}/{key}")] = json!(value);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "echoserver-canary", "namespace": "default",
                        "creationTimestamp": "2026-01-01T00:01:00Z", "annotations": all},
           "spec": {"rules": [{"host": "echoserver.example.com", "http": {"paths": [
               {"path": "/", "pathType": "ImplementationSpecific",
                "backend": {"service": {"name": "echoserver-canary", "port": {"number": 8080}}}}]}}]}})
}

/// Four stable pods behind the stable Service (narrowed to the stable ReplicaSet by
/// `stable_hash`), one canary pod behind `echoserver-canary`, and `extra`.
fn echoserver_world(stable_hash: &str, extra: Vec<Value>) -> World {
    let mut objects = workload(
        "default",
        "echoserver",
        "h1",
        json!({"app": "echoserver"}),
        4,
        4,
    );
    objects.extend(workload(
        "default",
        "echoserver-canary",
        "c1",
        json!({"app": "echoserver", "canary.rs/role": "canary"}),
        1,
        1,
    ));
    objects.push(service(
        "default",
        "echoserver",
        json!({"app": "echoserver", "pod-template-hash": stable_hash}),
        8080,
    ));
    objects.push(service(
        "default",
        "echoserver-canary",
        json!({"app": "echoserver", "canary.rs/role": "canary"}),
        8080,
    ));
    objects.push(stable_ingress());
    objects.extend(extra);
    World::new(objects)
}

#[test]
fn nginx_probes_each_ingress_path_of_the_service_and_splits_by_weight() {
    let plan = plan(ECHOSERVER);
    let world = echoserver_world(
        "h1",
        vec![canary_ingress(
            "nginx.ingress.kubernetes.io",
            &[("canary-weight", "30")],
        )],
    );
    let result = probe(&plan, &world, &[]);
    assert_eq!(
        result.callers.len(),
        1,
        "only the path to the Rollout's Service: {result:?}"
    );
    let entry = &result.callers[0];
    assert_eq!(entry.caller, "ingress-nginx echoserver.example.com/");
    assert_eq!(entry.class, RequestClass::Plain);
    assert_shares(entry, 0.7, 0.3, 0.0);
    assert!(result.worst_unserved().is_none());
    let plain = result.plain_shares();
    assert!(close(plain.stable, 0.7) && close(plain.canary, 0.3) && close(plain.none, 0.0));
    assert!(close(result.max_canary(RequestClass::Plain), 0.3));
}

#[test]
fn nginx_matched_requests_carry_the_header_the_cookie_or_a_value_the_pattern_matches() {
    let plan = plan(ECHOSERVER);
    let by_header = echoserver_world(
        "h1",
        vec![canary_ingress(
            "nginx.ingress.kubernetes.io",
            &[
                ("canary-by-header", "x-canary"),
                ("canary-by-header-value", "insider"),
            ],
        )],
    );
    let wanted = matches("[{headers: {x-canary: {exact: insider}}}]");
    let result = probe(&plan, &by_header, &wanted);
    assert_shares(only(&result, RequestClass::Plain)[0], 1.0, 0.0, 0.0);
    assert_shares(only(&result, RequestClass::Matched)[0], 0.0, 1.0, 0.0);
    assert!(
        only(&result, RequestClass::Matched)[0]
            .request
            .contains("header x-canary=insider")
    );

    let by_cookie = echoserver_world(
        "h1",
        vec![canary_ingress(
            "nginx.ingress.kubernetes.io",
            &[("canary-by-cookie", "beta")],
        )],
    );
    let result = probe(&plan, &by_cookie, &matches("[{cookie: {name: beta}}]"));
    assert_shares(only(&result, RequestClass::Matched)[0], 0.0, 1.0, 0.0);
    assert!(close(
        result.min_canary(RequestClass::Matched).unwrap(),
        1.0
    ));

    let by_pattern = echoserver_world(
        "h1",
        vec![canary_ingress(
            "nginx.ingress.kubernetes.io",
            &[
                ("canary-by-header", "x-group"),
                ("canary-by-header-pattern", "^(insider|beta)$"),
            ],
        )],
    );
    let result = probe(
        &plan,
        &by_pattern,
        &matches("[{headers: {x-group: {regex: 'insider|beta'}}}]"),
    );
    assert_shares(only(&result, RequestClass::Matched)[0], 0.0, 1.0, 0.0);
}

#[test]
fn a_match_no_request_can_be_built_for_is_reported_not_sent() {
    let plan = plan(ECHOSERVER);
    let world = echoserver_world("h1", vec![]);
    let result = probe(
        &plan,
        &world,
        &matches("[{headers: {x-a: {regex: 'a\\bb'}}}, {headers: {x-b: {exact: yes}}}]"),
    );
    assert_eq!(result.unbuilt.len(), 1, "{result:?}");
    assert!(
        result.unbuilt[0].starts_with("match 1: header x-a"),
        "{:?}",
        result.unbuilt
    );
    assert_eq!(only(&result, RequestClass::Matched).len(), 1);
}

#[test]
fn nginx_reads_the_annotation_prefix_the_spec_sets() {
    let plan = plan(&ECHOSERVER.replace(
        "{ingress: echoserver}",
        "{ingress: echoserver, annotationPrefix: custom.example.io}",
    ));
    let world = echoserver_world(
        "h1",
        vec![canary_ingress(
            "custom.example.io",
            &[("canary-weight", "30")],
        )],
    );
    assert_shares(&probe(&plan, &world, &[]).callers[0], 0.7, 0.3, 0.0);
}

#[test]
fn a_stable_service_pinned_to_a_gone_replica_set_leaves_everyone_unserved() {
    let plan = plan(ECHOSERVER);
    let world = echoserver_world(
        "h0",
        vec![canary_ingress(
            "nginx.ingress.kubernetes.io",
            &[("canary-weight", "30")],
        )],
    );
    let result = probe(&plan, &world, &[]);
    let worst = result.worst_unserved().expect("unserved requests");
    assert!(
        close(worst.none, 1.0),
        "the primary backend has no endpoints: 503 for all, canary too"
    );
    assert!(worst.unserved_because.is_some());
    assert!(close(result.max_canary(RequestClass::Plain), 0.0));
}

#[test]
fn pods_of_neither_deployment_count_as_other() {
    let plan = plan(ECHOSERVER);
    let stray = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "namespace": "default", "labels": {"app": "echoserver", "pod-template-hash": "h1"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let world = echoserver_world("h1", vec![stray]);
    let entry = &probe(&plan, &world, &[]).callers[0];
    assert!(
        close(entry.other, 0.2) && close(entry.stable, 0.8),
        "{entry:?}"
    );
}

#[test]
fn a_missing_stable_ingress_is_one_unserved_entry_saying_so() {
    let plan = plan(ECHOSERVER);
    let world = World::new(workload(
        "default",
        "echoserver",
        "h1",
        json!({"app": "echoserver"}),
        1,
        1,
    ));
    let result = probe(&plan, &world, &[]);
    let worst = result.worst_unserved().expect("unserved");
    assert!(
        worst
            .unserved_because
            .as_deref()
            .unwrap()
            .contains("Ingress default/echoserver")
    );
}

// ---------------------------------------------------------------- Istio

const REVIEWS: &str = "
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: demo}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: reviews-v1}
  service: {name: reviews, port: 9080}
  newVersion: {version: v2}
  trafficRouting:
    istio: {}
  strategy:
    canary:
      steps:
      - {weight: 30, pause: {}}
";

fn destination_rule(subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets
        .iter()
        .map(|s| json!({"name": s, "labels": {"version": s}}))
        .collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "reviews", "namespace": "demo"},
           "spec": {"host": "reviews", "subsets": subsets}})
}

fn to(subset: &str, weight: u32) -> Value {
    json!({"destination": {"host": "reviews", "port": {"number": 9080}, "subset": subset}, "weight": weight})
}

fn virtual_service(spec: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "reviews", "namespace": "demo"}, "spec": spec})
}

fn reviews_world(extra: Vec<Value>) -> World {
    let mut objects = workload(
        "demo",
        "reviews-v1",
        "a1",
        json!({"app": "reviews", "version": "v1"}),
        2,
        2,
    );
    objects.extend(workload(
        "demo",
        "reviews-v1-canary",
        "b1",
        json!({"app": "reviews", "version": "v2"}),
        2,
        2,
    ));
    objects.push(service("demo", "reviews", json!({"app": "reviews"}), 9080));
    objects.extend(extra);
    World::new(objects)
}

#[test]
fn istio_probes_sidecars_in_and_out_of_the_namespace_and_the_gateways_of_the_virtual_service() {
    let plan = plan(REVIEWS);
    let world = reviews_world(vec![
        destination_rule(&["v1", "v2"]),
        virtual_service(
            json!({"hosts": ["reviews", "bookinfo.example.com"], "gateways": ["mesh", "istio-system/public"],
                               "http": [{"name": "primary", "route": [to("v1", 70), to("v2", 30)]}]}),
        ),
    ]);
    let result = probe(&plan, &world, &[]);
    let callers: Vec<&str> = result.callers.iter().map(|c| c.caller.as_str()).collect();
    for expected in [
        "sidecar in demo → reviews:9080/",
        "sidecar in demo → reviews.demo.svc.cluster.local:9080/",
        "sidecar in elsewhere → reviews.demo.svc.cluster.local:9080/",
        "gateway istio-system/public → bookinfo.example.com/",
        "gateway istio-system/public → reviews.demo.svc.cluster.local/",
    ] {
        assert!(
            callers.contains(&expected),
            "{expected} missing from {callers:?}"
        );
    }
    for entry in &result.callers {
        assert_shares(entry, 0.7, 0.3, 0.0);
    }
}

#[test]
fn istio_gateway_callers_ask_only_for_hosts_the_gateway_serves() {
    let plan = plan(REVIEWS);
    let gateway = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                         "metadata": {"name": "public", "namespace": "istio-system"},
                         "spec": {"selector": {"istio": "ingressgateway"},
                                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                               "hosts": ["demo/*.example.com"]}]}});
    let world = reviews_world(vec![
        destination_rule(&["v1", "v2"]),
        virtual_service(
            json!({"hosts": ["reviews", "bookinfo.example.com"], "gateways": ["mesh", "istio-system/public"],
                               "http": [{"name": "primary", "route": [to("v1", 70), to("v2", 30)]}]}),
        ),
        gateway.clone(),
    ]);
    let gateway_callers = |world: &World| -> Vec<String> {
        probe(&plan, world, &[])
            .callers
            .iter()
            .filter(|c| c.caller.starts_with("gateway "))
            .map(|c| c.caller.clone())
            .collect()
    };
    assert_eq!(
        gateway_callers(&world),
        ["gateway istio-system/public → bookinfo.example.com/"]
    );
    // A server for another namespace's VirtualServices admits none of these hosts.
    let mut elsewhere = gateway;
    elsewhere["spec"]["servers"][0]["hosts"] = json!(["shop/*"]);
    let world = reviews_world(vec![
        destination_rule(&["v1", "v2"]),
        virtual_service(
            json!({"hosts": ["reviews", "bookinfo.example.com"], "gateways": ["istio-system/public"],
                               "http": [{"name": "primary", "route": [to("v1", 70), to("v2", 30)]}]}),
        ),
        elsewhere,
    ]);
    assert!(gateway_callers(&world).is_empty());
}

#[test]
fn istio_routing_to_a_subset_no_destination_rule_defines_leaves_its_share_unserved() {
    let plan = plan(REVIEWS);
    let world = reviews_world(vec![
        destination_rule(&["v1"]),
        virtual_service(
            json!({"hosts": ["reviews"], "http": [{"route": [to("v1", 70), to("v2", 30)]}]}),
        ),
    ]);
    let result = probe(&plan, &world, &[]);
    let worst = result.worst_unserved().expect("503 for the canary's share");
    assert_shares(worst, 0.7, 0.0, 0.3);
    assert!(worst.unserved_because.is_some());
    assert!(close(result.plain_shares().none, 0.3));
}

#[test]
fn istio_mirrored_copies_are_reported_apart_from_answers() {
    let plan = plan(REVIEWS);
    let world = reviews_world(vec![
        destination_rule(&["v1", "v2"]),
        virtual_service(
            json!({"hosts": ["reviews"], "http": [{"route": [to("v1", 100)],
            "mirror": {"host": "reviews", "subset": "v2"}, "mirrorPercentage": {"value": 20.0}}]}),
        ),
    ]);
    let result = probe(&plan, &world, &[]);
    for entry in &result.callers {
        assert_shares(entry, 1.0, 0.0, 0.0);
        assert!(close(entry.mirrored_to_canary, 0.2), "{entry:?}");
    }
    assert!(close(result.max_mirrored(RequestClass::Plain), 0.2));
}

#[test]
fn istio_ab_matches_send_header_and_cookie_requests_to_the_canary_only() {
    let plan = plan(REVIEWS);
    let world = reviews_world(vec![
        destination_rule(&["v1", "v2"]),
        virtual_service(json!({"hosts": ["reviews"], "http": [
            {"name": "canary-0", "match": [{"headers": {"x-user-group": {"exact": "insider"}}}], "route": [to("v2", 100)]},
            {"name": "canary-1", "match": [{"headers": {"cookie": {"regex": "^(.*?;\\s*)?(beta=yes)(;.*)?$"}}}], "route": [to("v2", 100)]},
            {"name": "primary", "route": [to("v1", 100)]}]})),
    ]);
    let wanted = matches(
        "[{headers: {x-user-group: {exact: insider}}}, {cookie: {name: beta, value: 'yes'}}]",
    );
    let result = probe(&plan, &world, &wanted);
    assert_eq!(
        only(&result, RequestClass::Matched).len(),
        2 * only(&result, RequestClass::Plain).len()
    );
    assert!(close(
        result.min_canary(RequestClass::Matched).unwrap(),
        1.0
    ));
    assert!(close(result.max_canary(RequestClass::Plain), 0.0));
    // Without the step's matches in the route, matched requests stay on stable.
    let plain_route = reviews_world(vec![
        destination_rule(&["v1", "v2"]),
        virtual_service(
            json!({"hosts": ["reviews"], "http": [{"name": "primary", "route": [to("v1", 100)]}]}),
        ),
    ]);
    assert!(close(
        probe(&plan, &plain_route, &wanted).max_canary(RequestClass::Matched),
        0.0
    ));
}

// ---------------------------------------------------------------- Kuma

const BACKEND: &str = "
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: backend, namespace: webapp}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: backend}
  service: {name: backend, port: 9898}
  trafficRouting:
    kuma: {mesh: default}
  strategy:
    canary: {stepWeight: 10, maxWeight: 50}
";

fn mesh(mode: &str) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
           "spec": {"meshServices": {"mode": mode}}})
}

fn mesh_service(name: &str, role: &str) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshService",
           "metadata": {"name": name, "namespace": "webapp",
                        "labels": {"kuma.io/mesh": "default", "k8s.kuma.io/namespace": "webapp",
                                   "kuma.io/display-name": name, "k8s.kuma.io/service-name": name}},
           "spec": {"selector": {"dataplaneTags": {"app": "backend", "role": role, "k8s.kuma.io/namespace": "webapp"}},
                    "ports": [{"name": "http", "port": 9898, "targetPort": 9898, "appProtocol": "http"}]}})
}

fn mesh_http_route(target: Value, stable: Value, canary: Value, weight: u32) -> Value {
    let mut stable = stable;
    let mut canary = canary;
    stable["weight"] = json!(100 - weight);
    canary["weight"] = json!(weight);
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshHTTPRoute",
           "metadata": {"name": "backend-canary", "namespace": "webapp", "labels": {"kuma.io/mesh": "default"}},
           "spec": {"targetRef": {"kind": "Mesh"},
                    "to": [{"targetRef": target,
                            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                       "default": {"backendRefs": [stable, canary]}}]}]}})
}

fn backend_world(extra: Vec<Value>) -> World {
    let mut objects = workload(
        "webapp",
        "backend",
        "s1",
        json!({"app": "backend", "role": "stable"}),
        2,
        2,
    );
    objects.extend(workload(
        "webapp",
        "backend-canary",
        "c1",
        json!({"app": "backend", "role": "canary"}),
        2,
        2,
    ));
    objects.push(service(
        "webapp",
        "backend",
        json!({"app": "backend", "role": "stable"}),
        9898,
    ));
    objects.push(service(
        "webapp",
        "backend-canary",
        json!({"app": "backend", "role": "canary"}),
        9898,
    ));
    objects.extend(extra);
    World::new(objects)
}

fn by_labels(name: &str) -> Value {
    json!({"kind": "MeshService", "labels": {"k8s.kuma.io/namespace": "webapp", "kuma.io/display-name": name}, "port": 9898})
}

#[test]
fn kuma_name_references_split_for_callers_in_every_namespace_on_a_default_mesh() {
    let plan = plan(BACKEND);
    let legacy = |name: &str| json!({"kind": "MeshService", "name": name});
    let world = backend_world(vec![
        mesh("Disabled"),
        mesh_http_route(
            legacy("backend_webapp_svc_9898"),
            legacy("backend_webapp_svc_9898"),
            legacy("backend-canary_webapp_svc_9898"),
            30,
        ),
    ]);
    let result = probe(&plan, &world, &[]);
    assert!(
        result
            .callers
            .iter()
            .any(|c| c.caller.starts_with("sidecar in elsewhere"))
    );
    for entry in &result.callers {
        assert_shares(entry, 0.7, 0.3, 0.0);
    }
}

#[test]
fn kuma_labels_references_show_which_callers_miss_the_canary() {
    let plan = plan(BACKEND);
    let route = mesh_http_route(
        by_labels("backend"),
        by_labels("backend"),
        by_labels("backend-canary"),
        30,
    );
    // No MeshServices: the labels resolve nothing and the route configures nobody.
    let default_mesh = backend_world(vec![mesh("Disabled"), route.clone()]);
    let result = probe(&plan, &default_mesh, &[]);
    assert!(
        close(result.max_canary(RequestClass::Plain), 0.0),
        "{result:?}"
    );
    assert!(result.worst_unserved().is_none());
    // With MeshServices the labels make it a consumer route: only callers in its namespace.
    let with_mesh_services = backend_world(vec![
        mesh("Everywhere"),
        mesh_service("backend", "stable"),
        mesh_service("backend-canary", "canary"),
        route,
    ]);
    let result = probe(&plan, &with_mesh_services, &[]);
    for entry in &result.callers {
        let want = if entry.caller.starts_with("sidecar in webapp") {
            0.3
        } else {
            0.0
        };
        assert!(close(entry.canary, want), "{entry:?}");
    }
    assert!(close(result.min_canary(RequestClass::Plain).unwrap(), 0.0));
    assert!(close(result.max_canary(RequestClass::Plain), 0.3));
}

// ---------------------------------------------------------------- ASM lanes

const MOCKA: &str = "
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: mocka, namespace: default}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: mocka-v1}
  service: {name: mocka, port: 8000}
  newVersion:
    version: v2
    podTemplateMetadata:
      labels: {ASM_TRAFFIC_TAG: canary}
  trafficRouting:
    asm:
      laneGroup: rollout
      canaryLane: canary
      baseLane: base
      routeHeader: x-asm-prefer-tag
      ingress: {uri: {exact: /mock}}
  strategy:
    canary:
      steps:
      - matches:
        - headers: {x-asm-prefer-tag: {exact: canary}}
        pause: {}
";

/// A lane with its ingress rule for `/mock`, asking for the route header `header` when set.
/// The canary lane is the older one, so its header rule comes before a base rule admitting
/// every request (the gateway tries the lanes' rules oldest lane first).
fn lane(name: &str, header: Option<&str>) -> Value {
    let mut matched = json!({"uri": {"exact": "/mock"}});
    if let Some(value) = header {
        matched["headers"] = json!({"x-asm-prefer-tag": {"exact": value}});
    }
    json!({"apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
           "metadata": {"name": name, "labels": {"swimlane-group": "rollout"},
                        "creationTimestamp": if name == "canary" { "2026-01-01T00:00:00Z" } else { "2026-01-01T00:01:00Z" }},
           "spec": {"labelSelector": {"ASM_TRAFFIC_TAG": name},
                    "services": [{"name": "mocka", "namespace": "default"}],
                    "ingressRules": [{"name": name, "online": true, "hosts": ["*"], "match": matched,
                                      "route": {"destination": {"host": "mocka.default.svc.cluster.local"}}}]}})
}

fn mocka_world(canary_ready: usize, base_rule_header: Option<&str>) -> World {
    let mut objects = workload(
        "default",
        "mocka-v1",
        "a1",
        json!({"app": "mocka", "ASM_TRAFFIC_TAG": "base"}),
        2,
        2,
    );
    objects.extend(workload(
        "default",
        "mocka-v1-canary",
        "b1",
        json!({"app": "mocka", "ASM_TRAFFIC_TAG": "canary"}),
        1,
        canary_ready,
    ));
    objects.push(service("default", "mocka", json!({"app": "mocka"}), 8000));
    objects.push(json!({"apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLaneGroup",
        "metadata": {"name": "rollout"},
        "spec": {"ingress": {"gateway": {"name": "ingressgateway", "namespace": "istio-system", "type": "ASM"},
                             "ingressRouting": {"ingressRoutingStrategy": "rule_based"}},
                 "isPermissive": true,
                 "permissiveModeConfiguration": {"fallbackTarget": "base", "routeHeader": "x-asm-prefer-tag"},
                 "services": [{"name": "mocka", "namespace": "default"}]}}));
    objects.push(lane("canary", Some("canary")));
    objects.push(lane("base", base_rule_header));
    World::new(objects)
}

#[test]
fn asm_probes_the_gateway_and_sidecars_with_and_without_the_lane_header() {
    let plan = plan(MOCKA);
    let wanted = matches("[{headers: {x-asm-prefer-tag: {exact: canary}}}]");
    let result = probe(&plan, &mocka_world(1, None), &wanted);
    let gateway: Vec<&CallerProbe> = result
        .callers
        .iter()
        .filter(|c| c.caller.starts_with("gateway istio-system/ingressgateway"))
        .collect();
    assert_eq!(gateway.len(), 3, "plain, matched and lane: {result:?}");
    assert!(gateway[0].request.contains("/mock"));
    for entry in &result.callers {
        let want = if entry.class == RequestClass::Plain {
            0.0
        } else {
            1.0
        };
        assert_shares(entry, 1.0 - want, want, 0.0);
    }
    // Before the canary's pod is ready the lane falls back to the base lane.
    let result = probe(&plan, &mocka_world(0, None), &wanted);
    assert!(close(result.max_canary(RequestClass::Lane), 0.0));
    assert!(result.worst_unserved().is_none(), "{result:?}");
}

#[test]
fn asm_gateway_requests_no_lane_rule_admits_are_unserved() {
    let plan = plan(MOCKA);
    // The base lane's ingress rule asks for the header naming it: plain requests match no rule.
    let result = probe(&plan, &mocka_world(1, Some("base")), &[]);
    let worst = result.worst_unserved().expect("404 at the gateway");
    assert!(worst.caller.starts_with("gateway "), "{worst:?}");
    assert_eq!(worst.class, RequestClass::Plain);
    assert!(close(worst.none, 1.0));
    assert!(
        result
            .callers
            .iter()
            .filter(|c| c.caller.starts_with("sidecar"))
            .all(|c| close(c.none, 0.0))
    );
}

#[test]
fn asm_without_an_ingress_probes_only_sidecars() {
    let plan = plan(&MOCKA.replace("      ingress: {uri: {exact: /mock}}\n", ""));
    let result = probe(&plan, &mocka_world(1, None), &[]);
    assert!(!result.callers.is_empty());
    assert!(
        result
            .callers
            .iter()
            .all(|c| c.caller.starts_with("sidecar")),
        "{result:?}"
    );
}

#[test]
fn kuma_callers_in_another_namespace_are_callers_of_the_same_mesh() {
    let plan = plan(BACKEND);
    let namespace = |name: &str, mesh: Option<&str>| {
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        if let Some(mesh) = mesh {
            ns["metadata"]["labels"] = json!({"kuma.io/mesh": mesh});
        }
        ns
    };
    let others = |world: &World| -> Vec<String> {
        probe(&plan, world, &[])
            .callers
            .iter()
            .filter(|c| !c.caller.starts_with("sidecar in webapp"))
            .map(|c| c.caller.clone())
            .collect()
    };
    // The default mesh: an unlabelled namespace is in it.
    let world = backend_world(vec![]);
    assert!(
        others(&world)
            .iter()
            .all(|c| c.starts_with("sidecar in elsewhere")),
        "{:?}",
        others(&world)
    );
    assert!(!others(&world).is_empty());
    // The Rollout's namespace in mesh `prod`: a namespace labelled into `prod` calls from
    // outside; an unlabelled one is in another mesh, which Kuma does not route for.
    let world = backend_world(vec![
        namespace("webapp", Some("prod")),
        namespace("payments", Some("prod")),
        namespace("tools", None),
    ]);
    let callers = others(&world);
    assert!(!callers.is_empty());
    assert!(
        callers.iter().all(|c| c.starts_with("sidecar in payments")),
        "{callers:?}"
    );
    // No other namespace in `prod`: nobody calls from outside.
    let world = backend_world(vec![namespace("webapp", Some("prod"))]);
    assert!(others(&world).is_empty(), "{:?}", others(&world));
}
