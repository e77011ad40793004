//! The Kuma model on hand-written objects, shaped as Kuma documents them and as users write
//! them: a `web` Service in `shop` (stable pods) and a `web-canary` Service (canary pods).

use serde_json::{Value, json};

use super::super::{Caller, PodRef, Request, Served, World};
use super::serve;

fn pod(namespace: &str, name: &str, track: &str, ready: bool) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web", "track": track}},
           "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn service(name: &str, track: &str, app_protocol: Option<&str>) -> Value {
    let mut port = json!({"name": "http", "port": 80, "targetPort": 8080});
    if let Some(p) = app_protocol {
        port["appProtocol"] = json!(p);
    }
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"selector": {"app": "web", "track": track}, "ports": [port]}})
}

fn mesh(mode: &str) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
           "spec": {"meshServices": {"mode": mode}}})
}

/// A MeshService as the control plane generates it from a Service.
fn mesh_service(name: &str, track: &str) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshService",
           "metadata": {"name": name, "namespace": "shop",
                        "labels": {"kuma.io/mesh": "default", "k8s.kuma.io/service-name": name}},
           "spec": {"selector": {"dataplaneTags": {"app": "web", "track": track, "k8s.kuma.io/namespace": "shop"}},
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "appProtocol": "http"}]}})
}

fn route(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshHTTPRoute",
           "metadata": {"name": name, "namespace": namespace, "labels": {"kuma.io/mesh": "default"}},
           "spec": spec})
}

/// A MeshHTTPRoute splitting `web`'s traffic, its destination named by `target`, its backends
/// by `stable` and `canary`.
fn split_route(
    namespace: &str,
    target: Value,
    stable: Value,
    canary: Value,
    canary_weight: u64,
) -> Value {
    let mut stable = stable;
    let mut canary = canary;
    stable["weight"] = json!(100 - canary_weight);
    canary["weight"] = json!(canary_weight);
    route(
        namespace,
        "web-canary",
        json!({"targetRef": {"kind": "Mesh"},
               "to": [{"targetRef": target,
                       "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                  "default": {"backendRefs": [stable, canary]}}]}]}),
    )
}

/// The shop: two ready stable pods, one ready canary pod, both Services speaking HTTP.
fn shop(extra: Vec<Value>) -> World {
    shop_with(true, extra)
}

/// The shop, its canary pod ready or not.
fn shop_with(canary_ready: bool, extra: Vec<Value>) -> World {
    let mut objects = vec![
        service("web", "stable", Some("http")),
        service("web-canary", "canary", Some("http")),
        pod("shop", "web-s1", "stable", true),
        pod("shop", "web-s2", "stable", true),
        pod("shop", "web-c1", "canary", canary_ready),
    ];
    objects.extend(extra);
    World::new(objects)
}

fn with_mesh_services(extra: Vec<Value>) -> World {
    with_mesh_services_and(true, extra)
}

fn with_mesh_services_and(canary_ready: bool, mut extra: Vec<Value>) -> World {
    extra.extend([
        mesh("Everywhere"),
        mesh_service("web", "stable"),
        mesh_service("web-canary", "canary"),
    ]);
    shop_with(canary_ready, extra)
}

fn sidecar(namespace: &str) -> Caller {
    Caller::Sidecar {
        namespace: namespace.to_owned(),
    }
}

fn from(caller: Caller, path: &str) -> Request {
    Request::to("web.shop.svc.cluster.local", path).from(caller)
}

fn canary(served: &Served) -> f64 {
    served.share(|p| p.name.starts_with("web-c"))
}

fn stable(served: &Served) -> f64 {
    served.share(|p| p.name.starts_with("web-s"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn legacy(name: &str) -> Value {
    json!({"kind": "MeshService", "name": name})
}

fn real(name: &str) -> Value {
    json!({"kind": "MeshService", "name": name, "namespace": "shop", "port": 80})
}

#[test]
fn without_routes_the_service_endpoints_answer() {
    let served = serve(&shop(vec![]), &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 1.0), "{served:?}");
    assert!(close(canary(&served), 0.0));
    let pod = PodRef {
        namespace: "shop".into(),
        name: "web-s1".into(),
    };
    assert!(close(served.pods[&pod], 0.5));
}

#[test]
fn a_producer_route_by_service_tag_splits_for_every_caller_on_a_default_mesh() {
    let world = shop(vec![
        mesh("Disabled"),
        split_route(
            "shop",
            legacy("web_shop_svc_80"),
            legacy("web_shop_svc_80"),
            legacy("web-canary_shop_svc_80"),
            10,
        ),
    ]);
    for caller in [
        sidecar("shop"),
        sidecar("default"),
        Caller::Gateway {
            namespace: "kong".into(),
            name: "kong".into(),
        },
    ] {
        let served = serve(&world, &from(caller.clone(), "/"));
        assert!(close(canary(&served), 0.1), "{caller:?}: {served:?}");
        assert!(close(stable(&served), 0.9), "{caller:?}: {served:?}");
    }
}

#[test]
fn a_labels_reference_is_a_consumer_route_for_callers_of_its_namespace_only() {
    let target = json!({"kind": "MeshService",
                        "labels": {"kuma.io/display-name": "web", "k8s.kuma.io/namespace": "shop"}});
    let backend = |name: &str| json!({"kind": "MeshService", "labels": {"kuma.io/display-name": name}, "port": 80});
    let world = with_mesh_services(vec![split_route(
        "shop",
        target,
        backend("web"),
        backend("web-canary"),
        30,
    )]);
    let inside = serve(&world, &from(sidecar("shop"), "/"));
    assert!(close(canary(&inside), 0.3), "{inside:?}");
    let outside = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(canary(&outside), 0.0), "{outside:?}");
    assert!(close(stable(&outside), 1.0));
    let gateway = Caller::Gateway {
        namespace: "kong".into(),
        name: "kong".into(),
    };
    assert!(close(canary(&serve(&world, &from(gateway, "/"))), 0.0));
}

#[test]
fn labels_references_resolve_nothing_on_a_mesh_without_mesh_services() {
    let target = json!({"kind": "MeshService",
                        "labels": {"kuma.io/display-name": "web", "k8s.kuma.io/namespace": "shop"}});
    let backend = |name: &str| json!({"kind": "MeshService", "labels": {"kuma.io/display-name": name}, "port": 80});
    let world = shop(vec![split_route(
        "shop",
        target,
        backend("web"),
        backend("web-canary"),
        50,
    )]);
    for caller in [sidecar("shop"), sidecar("default")] {
        let served = serve(&world, &from(caller, "/"));
        assert!(close(canary(&served), 0.0), "{served:?}");
        assert!(close(stable(&served), 1.0), "{served:?}");
    }
}

#[test]
fn a_name_reference_is_a_producer_route_on_a_mesh_with_mesh_services() {
    let target = json!({"kind": "MeshService", "name": "web"});
    let world = with_mesh_services(vec![split_route(
        "shop",
        target,
        real("web"),
        real("web-canary"),
        20,
    )]);
    for caller in [sidecar("shop"), sidecar("default")] {
        let served = serve(&world, &from(caller, "/"));
        assert!(close(canary(&served), 0.2), "{served:?}");
    }
}

#[test]
fn a_service_tag_name_reaches_the_mesh_service_too() {
    // `name: web_shop_svc_80` resolves to MeshService shop/web port 80 where MeshServices exist
    // and to the `kuma.io/service` tag where they do not: the one form that works on both.
    let route = split_route(
        "shop",
        legacy("web_shop_svc_80"),
        legacy("web_shop_svc_80"),
        legacy("web-canary_shop_svc_80"),
        40,
    );
    for world in [shop(vec![route.clone()]), with_mesh_services(vec![route])] {
        let served = serve(&world, &from(sidecar("default"), "/"));
        assert!(close(canary(&served), 0.4), "{served:?}");
    }
}

#[test]
fn a_short_name_reference_names_no_service_tag_on_a_default_mesh() {
    let target = json!({"kind": "MeshService", "name": "web"});
    let world = shop(vec![split_route(
        "shop",
        target,
        real("web"),
        real("web-canary"),
        20,
    )]);
    let served = serve(&world, &from(sidecar("shop"), "/"));
    assert!(close(canary(&served), 0.0), "{served:?}");
    assert!(close(stable(&served), 1.0));
}

#[test]
fn a_system_policy_configures_every_caller() {
    let world = shop(vec![split_route(
        "kuma-system",
        legacy("web_shop_svc_80"),
        legacy("web_shop_svc_80"),
        legacy("web-canary_shop_svc_80"),
        25,
    )]);
    let served = serve(&world, &from(sidecar("elsewhere"), "/"));
    assert!(close(canary(&served), 0.25), "{served:?}");
}

#[test]
fn a_mixed_producer_and_consumer_policy_is_refused() {
    let world = shop(vec![route(
        "shop",
        "mixed",
        json!({"to": [
            {"targetRef": legacy("web_shop_svc_80"),
             "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "default": {"backendRefs": [legacy("web-canary_shop_svc_80")]}}]},
            {"targetRef": {"kind": "MeshService", "labels": {"app": "web"}},
             "rules": []}]}),
    )]);
    let served = serve(&world, &from(sidecar("shop"), "/"));
    assert!(close(canary(&served), 0.0), "{served:?}");
}

/// A route sending `path` matches to the canary, in a producer policy on `web`.
fn rules_route(name: &str, rules: Value) -> Value {
    route(
        "shop",
        name,
        json!({"to": [{"targetRef": legacy("web_shop_svc_80"), "rules": rules}]}),
    )
}

fn to_canary(matches: Value) -> Value {
    json!({"matches": matches, "default": {"backendRefs": [legacy("web-canary_shop_svc_80")]}})
}

fn to_stable(matches: Value) -> Value {
    json!({"matches": matches, "default": {"backendRefs": [legacy("web_shop_svc_80")]}})
}

#[test]
fn path_prefixes_match_whole_segments_and_longer_prefixes_first() {
    let world = shop(vec![rules_route(
        "paths",
        json!([
            to_stable(json!([{"path": {"type": "PathPrefix", "value": "/api"}}])),
            to_canary(json!([{"path": {"type": "PathPrefix", "value": "/api/v2"}}])),
        ]),
    )]);
    let at = |path: &str| canary(&serve(&world, &from(sidecar("default"), path)));
    assert!(close(at("/api/v2/items"), 1.0));
    assert!(close(at("/api/v2"), 1.0));
    assert!(close(at("/api/v20"), 0.0));
    assert!(close(at("/api/x"), 0.0));
    assert!(close(at("/apix"), 0.0), "a prefix matches whole segments");
}

#[test]
fn exact_paths_come_before_prefixes_and_prefixes_before_expressions() {
    let world = shop(vec![rules_route(
        "order",
        json!([
            to_canary(json!([{"path": {"type": "RegularExpression", "value": "/shop/.*"}}])),
            to_stable(json!([{"path": {"type": "PathPrefix", "value": "/shop"}}])),
            to_canary(json!([{"path": {"type": "Exact", "value": "/shop/cart"}}])),
        ]),
    )]);
    let at = |path: &str| canary(&serve(&world, &from(sidecar("default"), path)));
    assert!(close(at("/shop/cart"), 1.0), "exact first");
    assert!(
        close(at("/shop/items"), 0.0),
        "prefix before the expression"
    );
}

#[test]
fn a_header_rule_without_a_path_comes_after_an_explicit_catch_all() {
    // A match without a path sorts after every match with one, so an explicit `PathPrefix /`
    // rule shadows a header-only rule written before it.
    let header = json!([{"headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}]);
    let shadowed = shop(vec![rules_route(
        "shadowed",
        json!([
            to_canary(header.clone()),
            to_stable(json!([{"path": {"type": "PathPrefix", "value": "/"}}])),
        ]),
    )]);
    let request = from(sidecar("default"), "/").header("x-canary", "always");
    assert!(close(canary(&serve(&shadowed, &request)), 0.0));
    let with_path = shop(vec![rules_route(
        "with-path",
        json!([
            to_canary(json!([{"path": {"type": "PathPrefix", "value": "/"},
                              "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}])),
            to_stable(json!([{"path": {"type": "PathPrefix", "value": "/"}}])),
        ]),
    )]);
    assert!(close(canary(&serve(&with_path, &request)), 1.0));
    let plain = from(sidecar("default"), "/");
    assert!(close(canary(&serve(&with_path, &plain)), 0.0));
    // Without the explicit catch-all, the header rule is reached.
    let alone = shop(vec![rules_route("alone", json!([to_canary(header)]))]);
    assert!(close(canary(&serve(&alone, &request)), 1.0));
    assert!(close(canary(&serve(&alone, &plain)), 0.0));
}

#[test]
fn rules_with_equal_matches_merge_and_the_first_name_wins() {
    let catch_all = json!([{"path": {"type": "PathPrefix", "value": "/"}}]);
    let world = shop(vec![
        rules_route("b-stable", json!([to_stable(catch_all.clone())])),
        rules_route("a-canary", json!([to_canary(catch_all)])),
    ]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(canary(&served), 1.0), "{served:?}");
}

#[test]
fn a_consumer_rule_overrides_a_producer_rule_for_its_callers() {
    let catch_all = json!([{"path": {"type": "PathPrefix", "value": "/"}}]);
    let producer = rules_route("producer", json!([to_canary(catch_all.clone())]));
    let consumer = route(
        "default",
        "consumer",
        json!({"to": [{"targetRef": {"kind": "MeshService", "name": "web_shop_svc_80", "namespace": "shop"},
                       "rules": [to_stable(catch_all)]}]}),
    );
    let world = shop(vec![producer, consumer]);
    assert!(close(
        canary(&serve(&world, &from(sidecar("default"), "/"))),
        0.0
    ));
    assert!(close(
        canary(&serve(&world, &from(sidecar("other"), "/"))),
        1.0
    ));
}

#[test]
fn a_kuma_service_backend_without_ready_endpoints_is_left_out_of_the_split() {
    let world = shop_with(
        false,
        vec![split_route(
            "shop",
            legacy("web_shop_svc_80"),
            legacy("web_shop_svc_80"),
            legacy("web-canary_shop_svc_80"),
            10,
        )],
    );
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 1.0), "{served:?}");
    assert!(close(served.unserved(), 0.0));
}

#[test]
fn a_mesh_service_backend_without_ready_endpoints_answers_nobody() {
    let world = with_mesh_services_and(
        false,
        vec![split_route(
            "shop",
            json!({"kind": "MeshService", "name": "web"}),
            real("web"),
            real("web-canary"),
            10,
        )],
    );
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 0.9), "{served:?}");
    assert!(close(served.unserved(), 0.1));
    assert!(served.unserved_because.is_some());
}

#[test]
fn a_tcp_service_ignores_http_routes() {
    let world = World::new(vec![
        service("web", "stable", None),
        service("web-canary", "canary", None),
        pod("shop", "web-s1", "stable", true),
        pod("shop", "web-c1", "canary", true),
        split_route(
            "shop",
            legacy("web_shop_svc_80"),
            legacy("web_shop_svc_80"),
            legacy("web-canary_shop_svc_80"),
            50,
        ),
    ]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 1.0), "{served:?}");
}

#[test]
fn mesh_hosts_name_the_service_tag() {
    let world = shop(vec![split_route(
        "shop",
        legacy("web_shop_svc_80"),
        legacy("web_shop_svc_80"),
        legacy("web-canary_shop_svc_80"),
        10,
    )]);
    for host in ["web_shop_svc_80.mesh", "web.shop.svc.80.mesh"] {
        let served = serve(&world, &Request::to(host, "/").from(sidecar("default")));
        assert!(close(canary(&served), 0.1), "{host}: {served:?}");
    }
    let unknown = serve(&world, &Request::to("nothing.mesh", "/"));
    assert!(close(unknown.unserved(), 1.0));
}

#[test]
fn an_exclusive_mesh_without_a_mesh_service_has_no_outbound() {
    let world = shop(vec![mesh("Exclusive")]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(served.unserved(), 1.0), "{served:?}");
}

#[test]
fn a_request_mirror_copies_to_the_service_tag() {
    let world = shop(vec![rules_route(
        "mirror",
        json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "default": {"backendRefs": [legacy("web_shop_svc_80")],
                            "filters": [{"type": "RequestMirror",
                                         "requestMirror": {"percentage": 50,
                                                           "backendRef": legacy("web-canary_shop_svc_80")}}]}}]),
    )]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 1.0));
    let copies: f64 = served.mirrored.values().sum();
    assert!(close(copies, 0.5), "{served:?}");
}

/// A route keeping `web`'s traffic on stable and mirroring half of it to `mirror`.
fn mirror_route(mirror: Value) -> Value {
    rules_route(
        "mirror",
        json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "default": {"backendRefs": [real("web")],
                            "filters": [{"type": "RequestMirror",
                                         "requestMirror": {"percentage": 50, "backendRef": mirror}}]}}]),
    )
}

/// The share of copies each canary and stable pod gets.
fn copies(served: &Served) -> (f64, f64) {
    let to = |prefix: &str| -> f64 {
        served
            .mirrored
            .iter()
            .filter(|(pod, _)| pod.name.starts_with(prefix))
            .map(|(_, share)| share)
            .sum()
    };
    (to("web-c"), to("web-s"))
}

#[test]
fn on_a_mesh_with_mesh_services_a_mirror_copies_by_service_tag_only() {
    // Kuma 2.9–2.14 builds the mirror's cluster from its `name` as a `kuma.io/service`: the
    // MeshService form names none, the tag form reaches the canary's pods.
    let by_mesh_service = with_mesh_services(vec![mirror_route(real("web-canary"))]);
    let served = serve(&by_mesh_service, &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 1.0), "{served:?}");
    assert!(served.mirrored.is_empty(), "{served:?}");

    let by_tag = with_mesh_services(vec![mirror_route(legacy("web-canary_shop_svc_80"))]);
    let served = serve(&by_tag, &from(sidecar("default"), "/"));
    assert!(close(stable(&served), 1.0), "{served:?}");
    let (to_canary, to_stable) = copies(&served);
    assert!(close(to_canary, 0.5) && close(to_stable, 0.0), "{served:?}");
    assert!(
        served.mirrored.keys().all(|pod| pod.name == "web-c1"),
        "{served:?}"
    );
    // Only ready pods get copies.
    let unready =
        with_mesh_services_and(false, vec![mirror_route(legacy("web-canary_shop_svc_80"))]);
    assert!(
        serve(&unready, &from(sidecar("default"), "/"))
            .mirrored
            .is_empty()
    );
}

#[test]
fn on_an_exclusive_mesh_a_mirror_copies_nothing() {
    for mirror in [real("web-canary"), legacy("web-canary_shop_svc_80")] {
        let world = shop(vec![
            mesh("Exclusive"),
            mesh_service("web", "stable"),
            mesh_service("web-canary", "canary"),
            mirror_route(mirror.clone()),
        ]);
        let served = serve(&world, &from(sidecar("default"), "/"));
        assert!(close(stable(&served), 1.0), "{mirror}: {served:?}");
        assert!(served.mirrored.is_empty(), "{mirror}: {served:?}");
    }
}

fn traffic_route(name: &str, canary_weight: u64) -> Value {
    json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficRoute", "mesh": "default",
           "metadata": {"name": name},
           "spec": {"sources": [{"match": {"kuma.io/service": "*"}}],
                    "destinations": [{"match": {"kuma.io/service": "web_shop_svc_80"}}],
                    "conf": {"split": [
                        {"weight": 100 - canary_weight, "destination": {"kuma.io/service": "web_shop_svc_80"}},
                        {"weight": canary_weight, "destination": {"kuma.io/service": "web-canary_shop_svc_80"}}]}}})
}

#[test]
fn a_traffic_route_splits_by_service_tag() {
    let world = shop(vec![traffic_route("web-canary", 20)]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(canary(&served), 0.2), "{served:?}");
}

#[test]
fn the_most_specific_traffic_route_wins_and_one_must_select_the_outbound() {
    let catch_all = json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficRoute", "mesh": "default",
                           "metadata": {"name": "route-all-default"},
                           "spec": {"sources": [{"match": {"kuma.io/service": "*"}}],
                                    "destinations": [{"match": {"kuma.io/service": "*"}}],
                                    "conf": {"destination": {"kuma.io/service": "*"}}}});
    let world = shop(vec![catch_all.clone(), traffic_route("web-canary", 100)]);
    assert!(close(
        canary(&serve(&world, &from(sidecar("default"), "/"))),
        1.0
    ));
    let only_other = json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficRoute", "mesh": "default",
                            "metadata": {"name": "other"},
                            "spec": {"sources": [{"match": {"kuma.io/service": "*"}}],
                                     "destinations": [{"match": {"kuma.io/service": "other_shop_svc_80"}}],
                                     "conf": {"destination": {"kuma.io/service": "other_shop_svc_80"}}}});
    let unrouted = shop(vec![only_other]);
    assert!(close(
        serve(&unrouted, &from(sidecar("default"), "/")).unserved(),
        1.0
    ));
    let world = shop(vec![catch_all]);
    assert!(close(
        stable(&serve(&world, &from(sidecar("default"), "/"))),
        1.0
    ));
}

#[test]
fn a_mesh_http_route_takes_over_from_traffic_routes_for_the_callers_it_configures() {
    let consumer = route(
        "default",
        "consumer",
        json!({"to": [{"targetRef": {"kind": "MeshService", "name": "web_shop_svc_80", "namespace": "shop"},
                       "rules": [to_stable(json!([{"path": {"type": "PathPrefix", "value": "/"}}]))]}]}),
    );
    let world = shop(vec![traffic_route("web-canary", 100), consumer]);
    assert!(close(
        canary(&serve(&world, &from(sidecar("default"), "/"))),
        0.0
    ));
    assert!(close(
        canary(&serve(&world, &from(sidecar("other"), "/"))),
        1.0
    ));
}

#[test]
fn a_builtin_gateway_routes_by_its_own_rules() {
    let gateway = json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshGateway", "mesh": "default",
                         "metadata": {"name": "edge"},
                         "spec": {"selectors": [{"match": {"kuma.io/service": "edge"}}],
                                  "conf": {"listeners": [{"port": 80, "protocol": "HTTP"}]}}});
    let routes = route(
        "ingress",
        "edge-web",
        json!({"targetRef": {"kind": "MeshGateway", "name": "edge"},
               "to": [{"targetRef": {"kind": "Mesh"}, "hostnames": ["shop.example.com"],
                       "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                  "default": {"backendRefs": [
                                      {"kind": "MeshService", "name": "web_shop_svc_80", "weight": 70},
                                      {"kind": "MeshService", "name": "web-canary_shop_svc_80", "weight": 30}]}}]}]}),
    );
    let world = shop(vec![gateway, routes]);
    let edge = Caller::Gateway {
        namespace: "ingress".into(),
        name: "edge".into(),
    };
    let served = serve(
        &world,
        &Request::to("shop.example.com", "/").from(edge.clone()),
    );
    assert!(close(canary(&served), 0.3), "{served:?}");
    let other_host = serve(&world, &Request::to("other.example.com", "/").from(edge));
    assert!(close(other_host.unserved(), 1.0));
}

#[test]
fn sidecar_only_policies_leave_gateways_alone() {
    let world = shop(vec![route(
        "shop",
        "sidecars",
        json!({"targetRef": {"kind": "Mesh", "proxyTypes": ["Sidecar"]},
               "to": [{"targetRef": legacy("web_shop_svc_80"),
                       "rules": [to_canary(json!([{"path": {"type": "PathPrefix", "value": "/"}}]))]}]}),
    )]);
    let gateway = Caller::Gateway {
        namespace: "kong".into(),
        name: "kong".into(),
    };
    assert!(close(canary(&serve(&world, &from(gateway, "/"))), 0.0));
    assert!(close(
        canary(&serve(&world, &from(sidecar("default"), "/"))),
        1.0
    ));
}

#[test]
fn an_exclusive_mesh_routes_mesh_services_only() {
    let route = split_route(
        "shop",
        legacy("web_shop_svc_80"),
        real("web"),
        real("web-canary"),
        10,
    );
    let world = shop(vec![
        mesh("Exclusive"),
        mesh_service("web", "stable"),
        mesh_service("web-canary", "canary"),
        route,
    ]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(canary(&served), 0.1), "{served:?}");
    let by_tag = serve(
        &world,
        &Request::to("web_shop_svc_80.mesh", "/").from(sidecar("default")),
    );
    assert!(close(by_tag.unserved(), 1.0), "{by_tag:?}");
}

#[test]
fn reachable_backends_mode_keeps_service_tag_outbounds() {
    // Callers list no `reachableBackends`, so they keep the `kuma.io/service` outbound, which
    // a short `name` reference does not name.
    let world = shop(vec![
        mesh("ReachableBackends"),
        mesh_service("web", "stable"),
        mesh_service("web-canary", "canary"),
        split_route(
            "shop",
            json!({"kind": "MeshService", "name": "web"}),
            real("web"),
            real("web-canary"),
            10,
        ),
    ]);
    let served = serve(&world, &from(sidecar("default"), "/"));
    assert!(close(canary(&served), 0.0), "{served:?}");
}

#[test]
fn a_policy_with_a_trailing_slash_prefix_is_refused() {
    let world = shop(vec![rules_route(
        "trailing",
        json!([to_canary(
            json!([{"path": {"type": "PathPrefix", "value": "/api/"}}])
        )]),
    )]);
    assert!(close(
        canary(&serve(&world, &from(sidecar("default"), "/api/x"))),
        0.0
    ));
    let valid = shop(vec![rules_route(
        "valid",
        json!([to_canary(
            json!([{"path": {"type": "PathPrefix", "value": "/api"}}])
        )]),
    )]);
    assert!(close(
        canary(&serve(&valid, &from(sidecar("default"), "/api/x"))),
        1.0
    ));
}

#[test]
fn a_cookie_header_match_sees_the_request_cookies() {
    let world = shop(vec![rules_route(
        "cookie",
        json!([to_canary(
            json!([{"path": {"type": "PathPrefix", "value": "/"},
                                  "headers": [{"type": "RegularExpression", "name": "cookie",
                                               "value": ".*canary=always.*"}]}])
        )]),
    )]);
    let with = from(sidecar("default"), "/").cookie("canary", "always");
    assert!(close(canary(&serve(&world, &with)), 1.0));
    assert!(close(
        canary(&serve(&world, &from(sidecar("default"), "/"))),
        0.0
    ));
}

/// Proxies join the mesh their namespace names (`kuma.io/mesh`), else `default`: another
/// mesh with MeshServices changes nothing for them, and a namespace labelled into it does.
#[test]
fn proxies_join_the_mesh_their_namespace_names() {
    let mut other = mesh("Exclusive");
    other["metadata"]["name"] = json!("prod");
    let mut in_prod = mesh_service("web", "stable");
    in_prod["metadata"]["labels"]["kuma.io/mesh"] = json!("prod");
    // The default mesh (no Mesh object: MeshServices disabled) still routes by tag.
    let route = || {
        split_route(
            "shop",
            legacy("web_shop_svc_80"),
            legacy("web_shop_svc_80"),
            legacy("web-canary_shop_svc_80"),
            100,
        )
    };
    let served = serve(
        &shop(vec![other.clone(), in_prod.clone(), route()]),
        &from(sidecar("shop"), "/"),
    );
    assert!(close(canary(&served), 1.0), "{served:?}");
    // Labelled into `prod`, which uses MeshServices only, the tag route configures nothing:
    // the MeshService's own endpoints answer.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
                           "metadata": {"name": "shop", "labels": {"kuma.io/mesh": "prod"}}});
    let served = serve(
        &shop(vec![other, in_prod, namespace, route()]),
        &from(sidecar("shop"), "/"),
    );
    assert!(close(stable(&served), 1.0), "{served:?}");
}
