//! Rendering: MeshHTTPRoute and legacy TrafficRoute against the upstream Kuma CRDs, weights,
//! matches ordered before the catch-all, mirroring, namespacing, and what validation refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::api::spec::{KumaRouteKind, RequestMatch, StringMatch};
use canary_core::k8s::objects::Objects;
use canary_core::sim::dataplane::{Caller, Request, World, serve};
use canary_core::{ProviderKind, RolloutPlan, RouteState};
use canary_kube::fixtures::{crd_validator, schema_errors};
use canary_kuma::render;
use serde_json::{Value, json};

fn podinfo() -> (RolloutPlan, Objects) {
    let path = format!(
        "{}/../examples/rollouts/podinfo-kuma.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let file =
        canary_core::api::load::rollout_file(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        canary_core::api::validate::validate(&file.rollout).unwrap(),
        file.objects,
    )
}

fn validators() -> &'static (jsonschema::Validator, jsonschema::Validator) {
    static VALIDATORS: std::sync::OnceLock<(jsonschema::Validator, jsonschema::Validator)> =
        std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        (
            crd_validator("kuma/meshhttproutes.yaml", "v1alpha1"),
            crd_validator("kuma/trafficroutes.yaml", "v1alpha1"),
        )
    })
}

fn valid(object: &Value) {
    let validator = match object["kind"].as_str() {
        Some("MeshHTTPRoute") => &validators().0,
        Some("TrafficRoute") => &validators().1,
        _ => return,
    };
    let errors = schema_errors(validator, object);
    assert!(errors.is_empty(), "{errors:?}\n{object:#}");
}

fn header(name: &str, condition: StringMatch) -> RequestMatch {
    RequestMatch {
        headers: [(name.to_owned(), condition)].into(),
        ..RequestMatch::default()
    }
}

/// The policy role Kuma gives a MeshHTTPRoute in a namespace (2.9–2.14,
/// `ComputePolicyRole`): producer when every `to[].targetRef` is a MeshService named by `name`
/// in no other namespace than the route's, consumer when none is, refused when mixed.
fn policy_role(route: &Value) -> &'static str {
    let namespace = &route["metadata"]["namespace"];
    let to = route["spec"]["to"].as_array().unwrap();
    let producer = to
        .iter()
        .filter(|item| {
            let target = &item["targetRef"];
            target["kind"] == "MeshService"
                && target["name"].as_str().is_some_and(|name| !name.is_empty())
                && (target["namespace"].is_null() || target["namespace"] == *namespace)
        })
        .count();
    match producer {
        n if n == to.len() => "producer",
        0 => "consumer",
        _ => "refused",
    }
}

/// A Mesh named `default` with `spec`.
fn mesh(spec: Value) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"}, "spec": spec})
}

/// The Kurator seed's `Mesh default` (metrics only; it carries a namespace although Mesh is
/// cluster-scoped).
fn kurator_mesh() -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh",
           "metadata": {"name": "default", "namespace": "kuma-system"},
           "spec": {"metrics": {"backends": [{"name": "prometheus-1", "type": "prometheus"}],
                                "enabledBackend": "prometheus-1"}}})
}

#[test]
fn at_30_a_mesh_http_route_weighs_70_30_by_service_tag_for_every_caller_and_passes_the_schema() {
    let (plan, mut objects) = podinfo();
    for with_mesh in [false, true] {
        if with_mesh {
            objects.insert(kurator_mesh());
        }
        let rendered = render(&plan, &RouteState::weighted(30), &objects).unwrap();
        let route = rendered.route.as_ref().unwrap();
        valid(route);
        assert_eq!(route["metadata"]["namespace"], "webapp");
        assert_eq!(route["metadata"]["labels"]["kuma.io/mesh"], "default");
        assert_eq!(
            policy_role(route),
            "producer",
            "callers in every namespace see the split"
        );
        let to = &route["spec"]["to"][0];
        assert_eq!(
            to["targetRef"],
            json!({"kind": "MeshService", "name": "backend_webapp_svc_9898"})
        );
        let rules = to["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        // No MeshService objects on this mesh: the backends are `kuma.io/service` tags (no
        // port, which would make them references to MeshService objects).
        assert_eq!(
            rules[0]["default"]["backendRefs"],
            json!([{"kind": "MeshService", "name": "backend_webapp_svc_9898", "weight": 70},
                   {"kind": "MeshService", "name": "backend-canary_webapp_svc_9898", "weight": 30}])
        );
        assert_eq!(
            rendered.canary_service.as_ref().unwrap()["spec"]["ports"][0]["appProtocol"],
            "http"
        );
    }
    // The schema has teeth: a kind Kuma does not route to is refused.
    let route = render(&plan, &RouteState::weighted(30), &objects)
        .unwrap()
        .route
        .unwrap();
    let mut other = route.clone();
    other["spec"]["to"][0]["rules"][0]["default"]["backendRefs"][0]["kind"] = json!("Service");
    assert!(!schema_errors(&validators().0, &other).is_empty());
}

#[test]
fn on_a_mesh_with_mesh_services_the_backends_are_mesh_services_on_the_port() {
    let (plan, objects) = podinfo();
    for mode in ["Everywhere", "ReachableBackends", "Exclusive"] {
        let mut objects = objects.clone();
        objects.insert(mesh(json!({"meshServices": {"mode": mode}})));
        let route = RouteState {
            mirror: (mode != "Exclusive").then_some(20),
            ..RouteState::weighted(40)
        };
        let object = render(&plan, &route, &objects).unwrap().route.unwrap();
        valid(&object);
        assert_eq!(policy_role(&object), "producer", "{mode}");
        assert_eq!(
            object["spec"]["to"][0]["targetRef"],
            json!({"kind": "MeshService", "name": "backend_webapp_svc_9898"}),
            "Kuma 2.10+ resolves the tag to the MeshService backend in webapp on port 9898"
        );
        let rule = &object["spec"]["to"][0]["rules"][0]["default"];
        assert_eq!(
            rule["backendRefs"],
            json!([{"kind": "MeshService", "name": "backend", "namespace": "webapp", "port": 9898, "weight": 60},
                   {"kind": "MeshService", "name": "backend-canary", "namespace": "webapp", "port": 9898, "weight": 40}]),
            "{mode}"
        );
        if route.mirror.is_some() {
            // Kuma 2.9–2.14 builds a mirror's destination from a `kuma.io/service` tag only.
            assert_eq!(
                rule["filters"][0]["requestMirror"]["backendRef"],
                json!({"kind": "MeshService", "name": "backend-canary_webapp_svc_9898"}),
                "{mode}"
            );
        }
        // Read back whichever way it names the canary.
        assert_eq!(
            canary_kuma::render::observed_route(&plan, &object),
            Some(RouteState::weighted(40))
        );
    }
    // A mesh that says Disabled, or another mesh's MeshServices, keeps the tags.
    for other in [
        mesh(json!({"meshServices": {"mode": "Disabled"}})),
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "other"},
               "spec": {"meshServices": {"mode": "Exclusive"}}}),
    ] {
        let mut objects = objects.clone();
        objects.insert(other);
        let object = render(&plan, &RouteState::weighted(40), &objects)
            .unwrap()
            .route
            .unwrap();
        assert_eq!(
            object["spec"]["to"][0]["rules"][0]["default"]["backendRefs"][1]["name"],
            "backend-canary_webapp_svc_9898"
        );
        assert_eq!(
            canary_kuma::render::observed_route(&plan, &object),
            Some(RouteState::weighted(40))
        );
    }
}

#[test]
fn path_prefixes_are_rendered_as_kuma_takes_them() {
    let (plan, objects) = podinfo();
    let prefix = |value: &str| RequestMatch {
        uri: Some(StringMatch {
            prefix: Some(value.into()),
            ..StringMatch::default()
        }),
        ..RequestMatch::default()
    };
    let route = RouteState {
        matches: vec![
            prefix("/api/"),
            prefix("v2"),
            prefix("/"),
            prefix("//"),
            RequestMatch {
                uri: Some(StringMatch::exact("login")),
                ..RequestMatch::default()
            },
        ],
        ..RouteState::weighted(10)
    };
    let object = render(&plan, &route, &objects).unwrap().route.unwrap();
    valid(&object);
    let paths: Vec<Value> = object["spec"]["to"][0]["rules"][0]["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            json!({"type": "PathPrefix", "value": "/api"}),
            json!({"type": "PathPrefix", "value": "/v2"}),
            json!({"type": "PathPrefix", "value": "/"}),
            json!({"type": "PathPrefix", "value": "/"}),
            json!({"type": "Exact", "value": "/login"}),
        ]
    );
    // Every value passes Kuma's own rule (validatePath in Kuma's MeshHTTPRoute validation):
    // absolute, and a prefix other than `/` without a trailing `/`.
    for path in &paths {
        let value = path["value"].as_str().unwrap();
        assert!(value.starts_with('/'), "{value}");
        assert!(
            path["type"] != "PathPrefix" || value == "/" || !value.ends_with('/'),
            "{value}"
        );
    }
}

#[test]
fn matches_come_first_with_a_path_and_every_kind_passes_the_schema() {
    let (plan, objects) = podinfo();
    let matches = vec![
        header("x-canary", StringMatch::exact("insider")),
        header(
            "x-region",
            StringMatch {
                regex: Some("eu-.*".into()),
                ..StringMatch::default()
            },
        ),
        header(
            "x-team",
            StringMatch {
                prefix: Some("web".into()),
                ..StringMatch::default()
            },
        ),
        RequestMatch {
            uri: Some(StringMatch {
                prefix: Some("/api".into()),
                ..StringMatch::default()
            }),
            query_params: [("beta".to_owned(), StringMatch::exact("1"))].into(),
            method: Some("GET".into()),
            ..RequestMatch::default()
        },
        RequestMatch {
            uri: Some(StringMatch::exact("/login")),
            ..RequestMatch::default()
        },
    ];
    let route = RouteState {
        matches,
        mirror: Some(25),
        ..RouteState::weighted(10)
    };
    let rendered = render(&plan, &route, &objects).unwrap();
    let object = rendered.route.unwrap();
    valid(&object);
    let rules = object["spec"]["to"][0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    let first = rules[0]["matches"].as_array().unwrap();
    assert_eq!(first.len(), 5);
    assert_eq!(
        first[0]["path"],
        json!({"type": "PathPrefix", "value": "/"}),
        "a header rule carries the catch-all path"
    );
    assert_eq!(first[1]["headers"][0]["type"], "RegularExpression");
    assert_eq!(first[2]["headers"][0]["type"], "Prefix");
    assert_eq!(
        first[3]["path"],
        json!({"type": "PathPrefix", "value": "/api"})
    );
    assert_eq!(
        first[3]["queryParams"][0],
        json!({"type": "Exact", "name": "beta", "value": "1"})
    );
    assert_eq!(first[4]["path"]["type"], "Exact");
    assert_eq!(rules[0]["default"]["backendRefs"][0]["weight"], 100);
    let mirror = &rules[1]["default"]["filters"][0];
    assert_eq!(mirror["type"], "RequestMirror");
    assert_eq!(mirror["requestMirror"]["percentage"], 25);
    assert_eq!(
        mirror["requestMirror"]["backendRef"]["name"],
        "backend-canary_webapp_svc_9898"
    );
}

#[test]
fn all_traffic_on_stable_needs_no_route() {
    let (plan, objects) = podinfo();
    assert!(
        render(&plan, &RouteState::stable(), &objects)
            .unwrap()
            .objects()
            .is_empty()
    );
}

fn legacy(namespace: &str) -> (RolloutPlan, Objects) {
    let (mut plan, mut objects) = podinfo();
    plan.rollout.metadata.namespace = Some(namespace.into());
    plan.rollout
        .spec
        .traffic_routing
        .kuma
        .as_mut()
        .unwrap()
        .route_kind = Some(KumaRouteKind::TrafficRoute);
    let plan = canary_core::api::validate::validate(&plan.rollout).unwrap();
    let mut service = objects.get("Service", "webapp", "backend").unwrap().clone();
    service["metadata"]["namespace"] = json!(namespace);
    objects.insert(service);
    (plan, objects)
}

#[test]
fn the_legacy_traffic_route_splits_by_service_tag_and_is_named_per_namespace() {
    let (plan, objects) = legacy("webapp");
    let route = render(&plan, &RouteState::weighted(40), &objects)
        .unwrap()
        .route
        .unwrap();
    valid(&route);
    assert_eq!(route["kind"], "TrafficRoute");
    assert_eq!(route["mesh"], "default");
    assert!(
        route["metadata"].get("namespace").is_none(),
        "cluster-scoped"
    );
    assert_eq!(
        route["spec"]["destinations"][0]["match"]["kuma.io/service"],
        "backend_webapp_svc_9898"
    );
    assert_eq!(
        route["spec"]["conf"]["split"],
        json!([{"weight": 60, "destination": {"kuma.io/service": "backend_webapp_svc_9898"}},
               {"weight": 40, "destination": {"kuma.io/service": "backend-canary_webapp_svc_9898"}}])
    );
    let (other, objects) = legacy("staging");
    let elsewhere = render(&other, &RouteState::weighted(40), &objects)
        .unwrap()
        .route
        .unwrap();
    assert_ne!(
        route["metadata"]["name"], elsewhere["metadata"]["name"],
        "one name per namespace"
    );
}

#[test]
fn what_kuma_cannot_route_is_refused() {
    let base = std::fs::read_to_string(format!(
        "{}/../examples/rollouts/podinfo-kuma.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let with = |routing: &str, strategy: &str| {
        let text = base.replace("    kuma: {mesh: default}", routing).replace(
            "    canary:\n      stepWeight: 10\n      maxWeight: 50",
            strategy,
        );
        match canary_core::api::load::plan_from_yaml(&text) {
            Err(canary_core::Error::Invalid(errors)) => {
                errors.0.iter().map(ToString::to_string).collect::<Vec<_>>()
            }
            other => panic!("accepted: {other:?}"),
        }
    };
    let mesh = "    kuma: {mesh: default}";
    let cookie = with(mesh, "    abTest: {matches: [{cookie: {name: beta}}]}");
    assert!(
        cookie
            .iter()
            .any(|e| e.contains("cookie") && e.contains("kuma")),
        "{cookie:?}"
    );
    let regex = with(mesh, "    abTest: {matches: [{uri: {regex: '^/api'}}]}");
    assert!(regex.iter().any(|e| e.contains("uri")), "{regex:?}");
    let legacy = "    kuma: {mesh: default, routeKind: TrafficRoute}";
    let header = with(
        legacy,
        "    abTest: {matches: [{headers: {x-canary: {exact: 'on'}}}]}",
    );
    assert!(
        header.iter().any(|e| e.contains("TrafficRoute")),
        "{header:?}"
    );
    let mirror = with(legacy, "    mirror: {percent: 50}");
    assert!(mirror.iter().any(|e| e.contains("mirror")), "{mirror:?}");
}

#[test]
fn the_canary_service_is_in_the_mesh_with_the_stable_services_protocol() {
    let (plan, mut objects) = podinfo();
    // A Service that says HTTP by Kuma's annotation instead of `appProtocol`.
    let mut stable = objects.get("Service", "webapp", "backend").unwrap().clone();
    stable["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("appProtocol");
    stable["metadata"]["annotations"] =
        json!({"9898.service.kuma.io/protocol": "http", "team": "web"});
    objects.insert(stable);
    let canary = render(&plan, &RouteState::weighted(10), &objects)
        .unwrap()
        .canary_service
        .unwrap();
    assert_eq!(canary["metadata"]["labels"]["kuma.io/mesh"], "default");
    assert_eq!(
        canary["metadata"]["annotations"],
        json!({"9898.service.kuma.io/protocol": "http"})
    );
}

/// The podinfo rollout's pods, Services and MeshServices once `route` is applied, as
/// Kubernetes and the Kuma control plane make them: two stable pods and one canary pod, the
/// stable Service narrowed to the stable pods, the canary Service, and on a mesh with
/// MeshServices one MeshService per Service (`dataplaneTags` from its selector, its ports).
fn world_after(plan: &RolloutPlan, objects: &Objects, route: &RouteState) -> World {
    let rendered = render(plan, route, objects).unwrap();
    let pod = |name: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "webapp", "labels": labels},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    };
    let mut stable = objects.get("Service", "webapp", "backend").unwrap().clone();
    stable["spec"]["selector"]["pod-template-hash"] = json!("s1");
    let canary = rendered.canary_service.clone().unwrap();
    let mut canary_labels = canary["spec"]["selector"].clone();
    canary_labels["pod-template-hash"] = json!("c1");
    let mut world: Vec<Value> = objects.iter().cloned().collect();
    world.extend([
        pod(
            "backend-s1",
            json!({"app": "backend", "pod-template-hash": "s1"}),
        ),
        pod(
            "backend-s2",
            json!({"app": "backend", "pod-template-hash": "s1"}),
        ),
        pod("backend-c1", canary_labels),
        stable.clone(),
        canary.clone(),
        rendered.route.clone().unwrap(),
    ]);
    let with_mesh_services = canary_kuma::render::references(plan, objects)
        == canary_kuma::render::References::MeshServices;
    if with_mesh_services {
        for service in [&stable, &canary] {
            let name = service["metadata"]["name"].as_str().unwrap();
            let mut tags = service["spec"]["selector"].clone();
            tags["k8s.kuma.io/namespace"] = json!("webapp");
            let ports: Vec<Value> = service["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    json!({"name": p["name"], "port": p["port"], "targetPort": p["targetPort"],
                                "appProtocol": p["appProtocol"]})
                })
                .collect();
            world.push(json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshService",
                "metadata": {"name": name, "namespace": "webapp",
                             "labels": {"kuma.io/mesh": "default", "k8s.kuma.io/namespace": "webapp",
                                        "kuma.io/display-name": name, "k8s.kuma.io/service-name": name}},
                "spec": {"selector": {"dataplaneTags": tags}, "ports": ports}}));
        }
    }
    World::new(world)
}

#[test]
fn a_mirror_step_copies_to_the_canary_pods_with_and_without_mesh_services() {
    let (plan, objects) = podinfo();
    let step = RouteState {
        mirror: Some(20),
        ..RouteState::stable()
    };
    for mode in [
        None,
        Some("Disabled"),
        Some("Everywhere"),
        Some("ReachableBackends"),
    ] {
        let mut objects = objects.clone();
        if let Some(mode) = mode {
            objects.insert(mesh(json!({"meshServices": {"mode": mode}})));
        }
        let world = world_after(&plan, &objects, &step);
        for caller in ["webapp", "default"] {
            let request =
                Request::to("backend.webapp.svc.cluster.local", "/").from(Caller::Sidecar {
                    namespace: caller.to_owned(),
                });
            let served = serve(ProviderKind::Kuma, &world, &request);
            let answered: f64 = served.pods.values().sum();
            let on_stable = served.share(|p| p.name.starts_with("backend-s"));
            assert!(
                (answered - 1.0).abs() < 1e-9 && (on_stable - 1.0).abs() < 1e-9,
                "{mode:?} from {caller}: {served:?}"
            );
            let copies: f64 = served.mirrored.values().sum();
            assert!(
                (copies - 0.2).abs() < 1e-9,
                "{mode:?} from {caller}: 20% of requests are copied: {served:?}"
            );
            assert!(
                served.mirrored.keys().all(|p| p.name == "backend-c1"),
                "{mode:?} from {caller}: copies go to the canary pod only: {served:?}"
            );
        }
    }
}

#[test]
fn a_mirror_on_an_exclusive_mesh_is_refused_with_the_field_and_why() {
    let (plan, mut objects) = podinfo();
    objects.insert(mesh(json!({"meshServices": {"mode": "Exclusive"}})));
    let step = RouteState {
        mirror: Some(20),
        ..RouteState::stable()
    };
    let error = render(&plan, &step, &objects).unwrap_err().to_string();
    assert!(
        error.contains("spec.strategy.mirror")
            && error.contains("Exclusive")
            && error.contains("kuma.io/service"),
        "{error}"
    );
    // Routes without a mirror, and returning all traffic to stable, still render.
    assert!(render(&plan, &RouteState::weighted(30), &objects).is_ok());
    assert!(render(&plan, &RouteState::stable(), &objects).is_ok());
}

/// Every copy of `object` with one node (each in turn, the whole object too) replaced by a
/// value of another shape: what a user's file or a custom resource with an open schema may
/// hold.
fn broken_copies(object: &Value) -> Vec<Value> {
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    pointers(child, format!("{at}/{key}"), out);
                }
            }
            Value::Array(list) => {
                for (index, child) in list.iter().enumerate() {
                    pointers(child, format!("{at}/{index}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }
    let mut all = Vec::new();
    pointers(object, String::new(), &mut all);
    let wrong = [
        json!("text"),
        json!(u64::MAX),
        json!(-1),
        json!([1, "x"]),
        json!({"x": 1}),
        Value::Null,
    ];
    let mut out = Vec::new();
    for pointer in &all {
        for value in &wrong {
            let mut copy = object.clone();
            if let Some(node) = copy.pointer_mut(pointer)
                && node != value
            {
                *node = value.clone();
                out.push(copy);
            }
        }
    }
    out
}

/// Runs `f` (whatever it answers), failing the test with `what` when it panics.
fn no_panic<T>(what: &Value, f: impl FnOnce() -> T) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        panic!("panicked on {what:#}");
    }
}

#[test]
fn objects_of_any_shape_and_any_weights_never_panic() {
    let (plan, objects) = podinfo();
    // Weights as large as the cluster can hold: the sum once overflowed.
    let mut route = render(&plan, &RouteState::weighted(30), &objects)
        .unwrap()
        .route
        .unwrap();
    let backends = &mut route["spec"]["to"][0]["rules"][0]["default"]["backendRefs"];
    backends[0]["weight"] = json!(u64::MAX);
    backends[1]["weight"] = json!(u64::MAX);
    assert_eq!(
        canary_kuma::render::observed_route(&plan, &route),
        Some(RouteState::weighted(50))
    );
    let stable = objects
        .get("Service", &plan.namespace, &plan.rollout.spec.service.name)
        .unwrap()
        .clone();
    for object in [stable, kurator_mesh(), route] {
        for broken in broken_copies(&object) {
            let mut objects = objects.clone();
            objects.insert(broken.clone());
            for weight in [0, 30, 100] {
                no_panic(&broken, || {
                    render(&plan, &RouteState::weighted(weight), &objects)
                });
            }
            no_panic(&broken, || {
                canary_kuma::render::observed_route(&plan, &broken)
            });
            no_panic(&broken, || canary_kuma::render::applied_route(&broken));
        }
    }
}
