//! Rendering: MeshHTTPRoute and legacy TrafficRoute against the upstream Kuma CRDs, weights,
//! matches ordered before the catch-all, mirroring, namespacing, and what validation refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::objects::Objects;
use canary_core::spec::{KumaRouteKind, RequestMatch, StringMatch};
use canary_core::{RolloutPlan, RouteState};
use canary_kube::fixtures::{crd_validator, schema_errors};
use canary_kuma::render;
use serde_json::{Value, json};

fn podinfo() -> (RolloutPlan, Objects) {
    let path = format!(
        "{}/../examples/rollouts/podinfo-kuma.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = canary_core::load::rollout_file(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        canary_core::validate::validate(&file.rollout).unwrap(),
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

#[test]
fn at_30_a_mesh_http_route_weighs_70_30_and_passes_the_schema() {
    let (plan, objects) = podinfo();
    let rendered = render(&plan, &RouteState::weighted(30), &objects).unwrap();
    let route = rendered.route.as_ref().unwrap();
    valid(route);
    assert_eq!(route["metadata"]["namespace"], "webapp");
    assert_eq!(route["metadata"]["labels"]["kuma.io/mesh"], "default");
    let to = &route["spec"]["to"][0];
    assert_eq!(
        to["targetRef"]["labels"],
        json!({"kuma.io/display-name": "backend", "k8s.kuma.io/namespace": "webapp"})
    );
    let rules = to["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    let backends = &rules[0]["default"]["backendRefs"];
    assert_eq!(
        backends[0],
        json!({"kind": "MeshService", "labels": {"kuma.io/display-name": "backend", "k8s.kuma.io/namespace": "webapp"}, "port": 9898, "weight": 70})
    );
    assert_eq!(
        backends[1]["labels"]["kuma.io/display-name"],
        "backend-canary"
    );
    assert_eq!(backends[1]["weight"], 30);
    assert_eq!(
        rendered.canary_service.as_ref().unwrap()["spec"]["ports"][0]["appProtocol"],
        "http"
    );
    // The schema has teeth: a 2.x-style reference by name is not in it.
    let mut by_name = route.clone();
    by_name["spec"]["to"][0]["rules"][0]["default"]["backendRefs"][0]["name"] = json!("backend");
    assert!(!schema_errors(&validators().0, &by_name).is_empty());
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
        mirror["requestMirror"]["backendRef"]["labels"]["kuma.io/display-name"],
        "backend-canary"
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
    let plan = canary_core::validate::validate(&plan.rollout).unwrap();
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
        match canary_core::load::plan_from_yaml(&text) {
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
