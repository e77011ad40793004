//! Rendering against the upstream Gateway API CRDs (standard channel v1.6.1), and what requests
//! arriving at the Gateway get from the rendered route (the data-plane model of the spec).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::api::spec::{RequestMatch, StringMatch};
use canary_core::k8s::objects::Objects;
use canary_core::sim::dataplane::{Caller, PodRef, Request, Served, World, gateway};
use canary_core::{RolloutPlan, RouteState};
use canary_gateway::render;
use canary_kube::fixtures::{crd_validator, schema_errors};
use serde_json::{Value, json};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: shop, namespace: web}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: shop}
  service: {name: shop, port: 80}
  trafficRouting:
    gatewayAPI: ROUTING
  strategy: {canary: {stepWeight: 10, maxWeight: 50}}
";

fn plan(routing: &str) -> RolloutPlan {
    canary_core::api::load::plan_from_yaml(&ROLLOUT.replace("ROUTING", routing)).unwrap()
}

fn valid(object: &Value) {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| crd_validator("gateway-api/httproutes.yaml", "v1"));
    let errors = schema_errors(validator, object);
    assert!(errors.is_empty(), "{errors:?}\n{object:#}");
}

fn pod(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "web", "labels": labels},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

/// The stable Service and pods, a Gateway taking routes of every namespace, and a canary pod.
fn cluster() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop", "namespace": "web"},
               "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "public", "namespace": "infra"},
               "spec": {"gatewayClassName": "example", "listeners": [
                   {"name": "http", "port": 80, "protocol": "HTTP",
                    "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
        pod("shop-1", json!({"app": "shop"})),
        pod("shop-2", json!({"app": "shop"})),
        // The canary's pods carry the role label and their own value of the selector's key
        // (see canary_core::k8s::services).
        pod(
            "shop-canary-1",
            json!({"app": "shop-canary", "canary.rs/role": "canary", "canary.rs/rollout": "shop"}),
        ),
    ]
}

fn world(objects: &[Value], rendered: &canary_gateway::Rendered) -> World {
    let mut all = objects.to_vec();
    all.retain(|o| !(o["kind"] == "HTTPRoute"));
    all.extend(rendered.objects());
    World::new(all)
}

fn at_gateway(host: &str, path: &str) -> Request {
    Request::to(host, path).from(Caller::Gateway {
        namespace: "infra".into(),
        name: "public".into(),
    })
}

fn canary_share(served: &Served) -> f64 {
    served.share(|pod: &PodRef| pod.name.starts_with("shop-canary"))
}

#[test]
fn a_generated_route_weights_stable_and_canary_at_the_gateway() {
    let plan =
        plan("{parentRefs: [{name: public, namespace: infra}], hostnames: [shop.example.com]}");
    let objects = cluster();
    for weight in [0, 30, 100] {
        let rendered = render(
            &plan,
            &RouteState::weighted(weight),
            &Objects::new(objects.clone()),
        )
        .unwrap();
        valid(&rendered.route);
        let world = world(&objects, &rendered);
        let served = gateway::serve(&world, &at_gateway("shop.example.com", "/cart"));
        assert_eq!(served.unserved(), 0.0, "{weight}: {served:?}");
        assert!(
            (canary_share(&served) - f64::from(weight) / 100.0).abs() < 1e-9,
            "{weight}: {served:?}"
        );
        let elsewhere = gateway::serve(&world, &at_gateway("api.example.com", "/"));
        assert_eq!(elsewhere.unserved(), 1.0);
    }
}

#[test]
fn a_users_route_changes_only_in_its_managed_rule() {
    let plan = plan("{httpRoute: storefront}");
    let user = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": "web"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                 "hostnames": ["shop.example.com"],
                 "rules": [
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                      "backendRefs": [{"name": "cdn", "port": 80}]},
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                      "backendRefs": [{"name": "shop", "port": 80}]},
                     {"matches": [{"path": {"type": "Exact", "value": "/healthz"}}],
                      "backendRefs": [{"name": "health", "port": 80}]}]}});
    let mut objects = cluster();
    objects.push(user.clone());
    let beta = RouteState {
        weight: 20,
        matches: vec![RequestMatch {
            headers: [("x-beta".to_owned(), StringMatch::exact("on"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    let rendered = render(&plan, &beta, &Objects::new(objects.clone())).unwrap();
    valid(&rendered.route);
    let rules = rendered.route["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules[0], user["spec"]["rules"][0]);
    assert_eq!(rules[2], user["spec"]["rules"][2]);
    let world = world(&objects, &rendered);
    let plain = gateway::serve(&world, &at_gateway("shop.example.com", "/cart"));
    assert!((canary_share(&plain) - 0.2).abs() < 1e-9, "{plain:?}");
    let matched = gateway::serve(
        &world,
        &at_gateway("shop.example.com", "/cart").header("x-beta", "on"),
    );
    assert_eq!(canary_share(&matched), 1.0, "{matched:?}");
}

fn storefront(weight: Option<u64>) -> Value {
    let mut shop = json!({"name": "shop", "port": 80});
    if let Some(weight) = weight {
        shop["weight"] = json!(weight);
    }
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": "web",
                     "annotations": {"team": "shop"}},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                 "rules": [
                     {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                      "filters": [{"type": "RequestHeaderModifier",
                                   "requestHeaderModifier": {"add": [{"name": "x-from",
                                                                      "value": "gw"}]}}],
                      "backendRefs": [shop]},
                     {"matches": [{"path": {"type": "Exact", "value": "/healthz"}}],
                      "backendRefs": [{"name": "shop", "port": 80, "weight": 2}]}]}})
}

#[test]
fn a_users_route_is_given_back_as_it_was_after_every_kind_of_route() {
    let plan = plan("{httpRoute: storefront}");
    let beta = RouteState {
        weight: 30,
        mirror: Some(10),
        matches: vec![RequestMatch {
            headers: [("x-beta".to_owned(), StringMatch::exact("on"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    for original in [storefront(None), storefront(Some(5))] {
        let mut live = original.clone();
        // Every route in turn, each rendered over the last one as the cluster holds it.
        for route in [
            RouteState::weighted(10),
            beta.clone(),
            RouteState::weighted(60),
        ] {
            let mut objects = cluster();
            objects.push(live.clone());
            let rendered = render(&plan, &route, &Objects::new(objects)).unwrap();
            valid(&rendered.route);
            live = rendered.route;
        }
        let mut objects = cluster();
        objects.push(live);
        let back = render(&plan, &RouteState::stable(), &Objects::new(objects)).unwrap();
        assert_eq!(back.canary_service, None);
        assert_eq!(back.route, original);
    }
}

#[test]
fn mirroring_copies_its_percent_and_serves_from_stable() {
    let plan = plan("{httpRoute: storefront}");
    let mut objects = cluster();
    objects.push(storefront(None));
    let mirror = RouteState {
        mirror: Some(25),
        ..RouteState::stable()
    };
    let rendered = render(&plan, &mirror, &Objects::new(objects.clone())).unwrap();
    valid(&rendered.route);
    let world = world(&objects, &rendered);
    let served = gateway::serve(&world, &at_gateway("shop.example.com", "/cart"));
    assert_eq!(canary_share(&served), 0.0, "{served:?}");
    assert_eq!(served.unserved(), 0.0, "{served:?}");
    let mirrored: f64 = served
        .mirrored
        .iter()
        .filter(|(pod, _)| pod.name.starts_with("shop-canary"))
        .map(|(_, share)| share)
        .sum();
    assert!((mirrored - 0.25).abs() < 1e-9, "{served:?}");
}

#[test]
fn a_path_condition_on_a_rule_of_another_path_is_refused() {
    let plan = plan("{httpRoute: storefront}");
    let mut route = storefront(None);
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] = json!("/shop");
    let mut objects = cluster();
    objects.push(route);
    let on_path = RouteState {
        matches: vec![RequestMatch {
            uri: Some(StringMatch {
                prefix: Some("/beta".into()),
                ..StringMatch::default()
            }),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    let error = render(&plan, &on_path, &Objects::new(objects)).unwrap_err();
    assert!(
        error.to_string().contains("rule 0 matches another path"),
        "{error}"
    );
}

#[test]
fn envoy_gateway_gets_a_cluster_per_backend_the_canary_first() {
    let plan =
        plan("{parentRefs: [{name: public, namespace: infra}], implementation: envoy-gateway}");
    let objects = cluster();
    for weight in [0, 40] {
        let route = RouteState {
            weight,
            matches: vec![RequestMatch {
                headers: [("x-beta".to_owned(), StringMatch::exact("on"))].into(),
                ..RequestMatch::default()
            }],
            ..RouteState::stable()
        };
        let rendered = render(&plan, &route, &Objects::new(objects.clone())).unwrap();
        valid(&rendered.route);
        // Envoy Gateway's cluster `.../rule/<i>/backend/0` is the canary's, `/backend/1`
        // stable's, in every rule naming the canary (the builtin metrics select by them).
        for rule in rendered.route["spec"]["rules"].as_array().unwrap() {
            let backends = rule["backendRefs"].as_array().unwrap();
            assert_eq!(backends[0]["name"], "shop-canary", "{rule}");
            assert!(backends[0]["filters"].is_array(), "{rule}");
            if backends.len() > 1 {
                assert_eq!(backends[1]["name"], "shop", "{rule}");
            }
        }
        let world = world(&objects, &rendered);
        let served = gateway::serve(&world, &at_gateway("shop.example.com", "/"));
        assert!(
            (canary_share(&served) - f64::from(weight) / 100.0).abs() < 1e-9,
            "{weight}: {served:?}"
        );
    }
}

#[test]
fn a_generated_grpc_route_sends_matching_calls_to_the_canary() {
    static GRPC: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let validator = GRPC.get_or_init(|| crd_validator("gateway-api/grpcroutes.yaml", "v1"));
    let plan = plan(
        "{parentRefs: [{name: public, namespace: infra}], routeKind: GRPCRoute, \
         hostnames: [shop.example.com]}",
    );
    let objects = cluster();
    let route = RouteState {
        weight: 10,
        matches: vec![RequestMatch {
            headers: [("x-tenant".to_owned(), StringMatch::exact("internal"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    let rendered = render(&plan, &route, &Objects::new(objects.clone())).unwrap();
    assert_eq!(rendered.route["kind"], "GRPCRoute");
    let errors = schema_errors(validator, &rendered.route);
    assert!(errors.is_empty(), "{errors:?}\n{:#}", rendered.route);
    let mut all = objects.clone();
    all.extend(rendered.objects());
    let world = World::new(all);
    let call = |tenant: Option<&str>| {
        let mut request = at_gateway("shop.example.com", "/shop.Cart/Add")
            .header("content-type", "application/grpc");
        request.method = "POST".into();
        if let Some(tenant) = tenant {
            request = request.header("x-tenant", tenant);
        }
        gateway::serve(&world, &request)
    };
    let plain = call(None);
    assert!((canary_share(&plain) - 0.1).abs() < 1e-9, "{plain:?}");
    assert_eq!(canary_share(&call(Some("internal"))), 1.0);
    assert!((canary_share(&call(Some("external"))) - 0.1).abs() < 1e-9);
}

#[test]
fn a_sticky_canary_keeps_the_users_it_answered() {
    let plan = plan(
        "{parentRefs: [{name: public, namespace: infra}], hostnames: [shop.example.com], \
         sessionAffinity: {cookieName: shop-canary, maxAge: 1h}}",
    );
    let mut objects = cluster();
    objects.push(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "shop-canary", "namespace": "web",
                     "annotations": {"canary.rs/revision": "5f7c9d"}},
        "spec": {"template": {"metadata": {"labels": {"app": "shop-canary",
            "canary.rs/role": "canary", "canary.rs/rollout": "shop"}}}}}));
    let rendered = render(
        &plan,
        &RouteState::weighted(10),
        &Objects::new(objects.clone()),
    )
    .unwrap();
    valid(&rendered.route);
    // The cookie the canary's answers set, read from the route as a browser would get it.
    let weighted = rendered.route["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["backendRefs"].as_array().unwrap().len() == 2)
        .unwrap();
    let canary = &weighted["backendRefs"][1];
    assert_eq!(canary["name"], "shop-canary");
    let set_cookie = canary["filters"][0]["responseHeaderModifier"]["add"][0]["value"]
        .as_str()
        .unwrap();
    assert!(set_cookie.contains("Max-Age=3600"), "{set_cookie}");
    let (name, value) = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap();
    let during = world(&objects, &rendered);
    let plain = gateway::serve(&during, &at_gateway("shop.example.com", "/cart"));
    assert!((canary_share(&plain) - 0.1).abs() < 1e-9, "{plain:?}");
    for request in [
        at_gateway("shop.example.com", "/cart").cookie(name, value),
        at_gateway("shop.example.com", "/")
            .cookie("theme", "dark")
            .cookie(name, value),
    ] {
        let served = gateway::serve(&during, &request);
        assert_eq!(canary_share(&served), 1.0, "{request:?}: {served:?}");
    }
    // A cookie of another release, or another cookie, is the weights' to place.
    let stale = gateway::serve(
        &during,
        &at_gateway("shop.example.com", "/cart").cookie(name, "0a1b2c"),
    );
    assert!((canary_share(&stale) - 0.1).abs() < 1e-9, "{stale:?}");
    // Back on stable: no cookie rule, the cookie sends nobody to a canary.
    let stable = render(&plan, &RouteState::stable(), &Objects::new(objects.clone())).unwrap();
    valid(&stable.route);
    let after = world(&objects, &stable);
    let served = gateway::serve(
        &after,
        &at_gateway("shop.example.com", "/cart").cookie(name, value),
    );
    assert_eq!(canary_share(&served), 0.0, "{served:?}");
}

#[test]
fn a_route_with_more_rules_than_a_route_takes_is_refused() {
    let plan = plan("{httpRoute: storefront}");
    let rules: Vec<Value> = (0..9)
        .map(|i| {
            json!({"matches": [{"path": {"type": "PathPrefix", "value": format!("/p{i}")}}],
                   "backendRefs": [{"name": "shop", "port": 80}]})
        })
        .collect();
    let mut objects = cluster();
    objects.push(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": "web"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}], "rules": rules}}),
    );
    let objects = Objects::new(objects);
    assert!(render(&plan, &RouteState::weighted(20), &objects).is_ok());
    let beta = RouteState {
        weight: 20,
        matches: vec![RequestMatch {
            headers: [("x-beta".to_owned(), StringMatch::exact("on"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    let error = render(&plan, &beta, &objects).unwrap_err();
    assert!(error.to_string().contains("18 rules"), "{error}");
}

fn with_rules(rules: Value) -> Objects {
    let mut objects = cluster();
    objects.push(
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "storefront", "namespace": "web"},
        "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}], "rules": rules}}),
    );
    Objects::new(objects)
}

fn on(request: RequestMatch) -> RouteState {
    RouteState {
        weight: 10,
        matches: vec![request],
        ..RouteState::stable()
    }
}

#[test]
fn what_would_send_the_canary_requests_of_others_is_refused() {
    let plan = plan("{httpRoute: storefront}");
    let refused = |rules: Value, route: RouteState, words: &str| {
        let error = render(&plan, &route, &with_rules(rules))
            .unwrap_err()
            .to_string();
        assert!(error.contains(words), "{error}");
    };
    // Another backend in the rule: its share is not the Service's to split.
    refused(
        json!([{"backendRefs": [{"name": "shop", "port": 80, "weight": 50},
                                {"name": "legacy", "port": 80, "weight": 50}]}]),
        RouteState::weighted(30),
        "sends requests to other backends too",
    );
    // The Rollout's path under another rule's prefix would now outrank it.
    let assets_and_shop = json!([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
         "backendRefs": [{"name": "assets", "port": 80}]},
        {"backendRefs": [{"name": "shop", "port": 80}]}]);
    let under_static = RequestMatch {
        uri: Some(StringMatch {
            prefix: Some("/static/v2".into()),
            ..StringMatch::default()
        }),
        ..RequestMatch::default()
    };
    refused(
        assets_and_shop.clone(),
        on(under_static),
        "take requests of rule 0",
    );
    // Elsewhere it is the managed rule's, and the canary gets it.
    let beta = RequestMatch {
        uri: Some(StringMatch {
            prefix: Some("/beta".into()),
            ..StringMatch::default()
        }),
        ..RequestMatch::default()
    };
    let objects = with_rules(assets_and_shop);
    let rendered = render(&plan, &on(beta), &objects).unwrap();
    valid(&rendered.route);
    let world = world(
        objects.iter().cloned().collect::<Vec<_>>().as_slice(),
        &rendered,
    );
    let served = gateway::serve(&world, &at_gateway("shop.example.com", "/beta/x"));
    assert_eq!(canary_share(&served), 1.0, "{served:?}");
    // A header the rule already matches on, or another method.
    let tenant = json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                                      "headers": [{"name": "x-tenant", "value": "acme"}],
                                      "method": "GET"}],
                         "backendRefs": [{"name": "shop", "port": 80}]}]);
    refused(
        tenant.clone(),
        on(RequestMatch {
            headers: [(
                "X-Tenant".to_owned(),
                StringMatch {
                    regex: Some(".*".into()),
                    ..StringMatch::default()
                },
            )]
            .into(),
            ..RequestMatch::default()
        }),
        "matches on X-Tenant already",
    );
    refused(
        tenant,
        on(RequestMatch {
            method: Some("POST".into()),
            ..RequestMatch::default()
        }),
        "matches method GET",
    );
}

#[test]
fn the_canary_gets_requests_changed_as_stable_gets_them() {
    let plan = plan("{httpRoute: storefront}");
    let rewrite = json!({"type": "URLRewrite",
                         "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}});
    let header = json!({"type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}});
    let rules = json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "filters": [header],
                        "timeouts": {"request": "5s"},
                        "backendRefs": [{"name": "shop", "port": 80}]}]);
    let beta = RequestMatch {
        headers: [("x-beta".to_owned(), StringMatch::exact("on"))].into(),
        ..RequestMatch::default()
    };
    let rendered = render(&plan, &on(beta.clone()), &with_rules(rules)).unwrap();
    valid(&rendered.route);
    let added = rendered.route["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["name"] == "shop-canary-match")
        .unwrap();
    assert_eq!(added["filters"], json!([header]));
    assert_eq!(added["timeouts"], json!({"request": "5s"}));
    // A prefix rewrite holds on a rule of one PathPrefix match only.
    let two_matches = json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                              "filters": [rewrite.clone()],
                              "backendRefs": [{"name": "shop", "port": 80}]}]);
    let both = RouteState {
        weight: 10,
        matches: vec![
            beta.clone(),
            RequestMatch {
                headers: [("x-gamma".to_owned(), StringMatch::exact("on"))].into(),
                ..RequestMatch::default()
            },
        ],
        ..RouteState::stable()
    };
    let error = render(&plan, &both, &with_rules(two_matches.clone())).unwrap_err();
    assert!(error.to_string().contains("ReplacePrefixMatch"), "{error}");
    let one = render(&plan, &on(beta), &with_rules(two_matches)).unwrap();
    valid(&one.route);
}
