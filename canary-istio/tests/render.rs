//! Rendering: the seed's VirtualService, the upstream schemas, the canary host, and a user's
//! VirtualService changed only where canary manages it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::api::spec::{CookieMatch, RequestMatch, StringMatch};
use canary_core::k8s::objects::Objects;
use canary_core::{RolloutPlan, RouteState};
use canary_istio::render;
use canary_istio::virtual_service::restore;
use canary_kube::fixtures::{crd_validator, schema_errors};
use serde_json::{Value, json};

fn example(name: &str) -> (RolloutPlan, Objects) {
    let path = format!("{}/../examples/rollouts/{name}", env!("CARGO_MANIFEST_DIR"));
    let file =
        canary_core::api::load::rollout_file(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        canary_core::api::validate::validate(&file.rollout).unwrap(),
        file.objects,
    )
}

fn deployment(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "demo", "uid": "u-1",
                     "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": []}}}
    })
}

/// The upstream schemas of the version rendered, read once.
fn validators() -> &'static (jsonschema::Validator, jsonschema::Validator) {
    static VALIDATORS: std::sync::OnceLock<(jsonschema::Validator, jsonschema::Validator)> =
        std::sync::OnceLock::new();
    VALIDATORS.get_or_init(|| {
        (
            crd_validator("istio/virtualservices.yaml", "v1"),
            crd_validator("istio/destinationrules.yaml", "v1"),
        )
    })
}

fn validate_all(objects: &[Value]) {
    let (vs, dr) = validators();
    for object in objects {
        let validator = match object["kind"].as_str() {
            Some("VirtualService") => vs,
            Some("DestinationRule") => dr,
            Some("Service") => {
                assert_eq!(
                    object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                    "canary"
                );
                continue;
            }
            other => panic!("unexpected {other:?}"),
        };
        let errors = schema_errors(validator, object);
        assert!(errors.is_empty(), "{errors:?}\n{object:#}");
    }
}

#[test]
fn bookinfo_at_50_weighs_the_service_host_and_the_canary_host_and_take_over_sends_all_to_the_canary()
 {
    let (plan, objects) = example("bookinfo-istio.yaml");
    let rendered = render(&plan, &RouteState::weighted(50), &objects).unwrap();
    let vs = &rendered.virtual_service;
    assert_eq!(vs["spec"]["hosts"], json!(["reviews"]));
    let destination = |host: &str, weight: u32| json!({"destination": {"host": host, "port": {"number": 9080}}, "weight": weight});
    assert_eq!(vs["spec"]["http"].as_array().unwrap().len(), 1);
    assert_eq!(
        vs["spec"]["http"][0]["route"],
        json!([
            destination("reviews", 50),
            destination("reviews-canary", 50)
        ])
    );
    let service = rendered.canary_service.as_ref().unwrap();
    assert_eq!(service["metadata"]["name"], "reviews-canary");
    assert_eq!(
        service["spec"]["selector"],
        json!({"canary.rs/role": "canary", "canary.rs/rollout": "reviews"})
    );
    // No DestinationRule of the user's: nothing to carry over, and no subsets anywhere.
    assert!(rendered.canary_destination_rule.is_none());
    validate_all(&rendered.objects());

    let take_over = plan.steps.last().unwrap().route.clone();
    let rendered = render(&plan, &take_over, &objects).unwrap();
    assert_eq!(
        rendered.virtual_service["spec"]["http"][0]["route"],
        json!([
            destination("reviews", 0),
            destination("reviews-canary", 100)
        ])
    );
    // All on stable: the service host alone, and no canary host.
    let rendered = render(&plan, &RouteState::stable(), &objects).unwrap();
    assert_eq!(
        rendered.virtual_service["spec"]["http"][0]["route"],
        json!([{"destination": {"host": "reviews", "port": {"number": 9080}}}])
    );
    assert_eq!(rendered.objects().len(), 1);
}

#[test]
fn the_schema_check_refuses_fields_istio_does_not_have() {
    let (plan, objects) = example("bookinfo-istio.yaml");
    let mut vs = render(&plan, &RouteState::weighted(5), &objects)
        .unwrap()
        .virtual_service;
    vs["spec"]["http"][0]["route"][0]["weigth"] = json!(5);
    assert!(!schema_errors(&validators().0, &vs).is_empty());
    vs["spec"]["http"][0]["route"][0]
        .as_object_mut()
        .unwrap()
        .remove("weigth");
    vs["spec"]["http"][0]["route"][0]["weight"] = json!("five");
    assert!(!schema_errors(&validators().0, &vs).is_empty());
}

#[test]
fn every_istio_example_renders_schema_valid_objects_at_every_step() {
    let stable = deployment("ratings-v1", json!({"app": "ratings", "version": "v1"}));
    let mut checked = 0;
    for name in [
        "bookinfo-istio.yaml",
        "abtest-istio.yaml",
        "mirror-istio.yaml",
    ] {
        let (plan, mut objects) = example(name);
        let workload = &plan.rollout.spec.workload_ref.name;
        let mut stable = stable.clone();
        stable["metadata"]["name"] = json!(workload);
        if objects.get("Deployment", "demo", workload).is_none() {
            objects.insert(stable);
        }
        for step in &plan.steps {
            let rendered = render(&plan, &step.route, &objects).unwrap();
            validate_all(&rendered.objects());
            checked += 1;
        }
    }
    assert!(checked >= 4);
}

#[test]
fn a_route_to_the_canary_needs_the_stable_service_and_never_while_it_selects_the_canary() {
    let (plan, objects) = example("mirror-istio.yaml");
    let without: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] != "Service")
        .cloned()
        .collect();
    let error = render(&plan, &RouteState::weighted(10), &Objects::new(without)).unwrap_err();
    assert!(
        error.to_string().contains("Service demo/details is needed"),
        "{error}"
    );
    // A canary Deployment made before its pods left the stable Service (the same labels).
    let stable = objects.get("Deployment", "demo", "details-v1").unwrap();
    let mut canary = stable.clone();
    canary["metadata"]["name"] = json!("details-v1-canary");
    let mut with_canary = objects.clone();
    with_canary.insert(canary);
    let error = render(&plan, &RouteState::weighted(10), &with_canary).unwrap_err();
    assert!(
        error.to_string().contains("selects the canary's pods"),
        "{error}"
    );
    // All traffic on stable needs neither.
    assert!(render(&plan, &RouteState::stable(), &with_canary).is_ok());
}

/// A VirtualService a user wrote: a route to another service first, the managed route with
/// its own match and retries, a catch-all after, and a TCP route.
fn user_virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "demo", "resourceVersion": "7",
                     "annotations": {"team": "books"}},
        "spec": {
            "hosts": ["reviews", "reviews.example.com"],
            "gateways": ["mesh", "public"],
            "http": [
                {"name": "legacy", "match": [{"uri": {"prefix": "/legacy"}}],
                 "route": [{"destination": {"host": "legacy-reviews"}}]},
                {"name": "primary", "match": [{"uri": {"prefix": "/reviews"}}],
                 "retries": {"attempts": 3},
                 "route": [{"destination": {"host": "reviews.demo.svc.cluster.local", "subset": "v1", "port": {"number": 9080}},
                            "headers": {"response": {"set": {"x-served-by": "reviews"}}}}]},
                {"name": "fallback", "route": [{"destination": {"host": "static-pages"}}]}
            ],
            "tcp": [{"match": [{"port": 9081}], "route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]
        }
    })
}

fn user_plan() -> (RolloutPlan, Objects) {
    let (mut plan, mut objects) = example("bookinfo-istio.yaml");
    let istio = plan.rollout.spec.traffic_routing.istio.as_mut().unwrap();
    istio.virtual_service.as_mut().unwrap().routes = vec!["primary".into()];
    plan = canary_core::api::validate::validate(&plan.rollout).unwrap();
    objects.insert(user_virtual_service());
    (plan, objects)
}

#[test]
fn in_a_users_virtual_service_only_the_named_route_changes_and_restore_gives_it_back() {
    let (plan, objects) = user_plan();
    let route = RouteState {
        weight: 30,
        matches: vec![RequestMatch {
            headers: [("x-user".into(), StringMatch::exact("tester"))].into(),
            ..RequestMatch::default()
        }],
        mirror: Some(20),
        ..RouteState::stable()
    };
    let rendered = render(&plan, &route, &objects).unwrap();
    let vs = &rendered.virtual_service;
    let http = vs["spec"]["http"].as_array().unwrap();
    let names: Vec<&str> = http.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["legacy", "primary-canary-match", "primary", "fallback"]
    );
    let user = user_virtual_service();
    assert_eq!(http[0], user["spec"]["http"][0]);
    assert_eq!(http[3], user["spec"]["http"][2]);
    assert_eq!(vs["spec"]["hosts"], user["spec"]["hosts"]);
    assert_eq!(vs["metadata"]["annotations"]["team"], "books");
    // The match route: the user's prefix and our header, both required; retries kept.
    assert_eq!(
        http[1]["match"],
        json!([{"uri": {"prefix": "/reviews"}, "headers": {"x-user": {"exact": "tester"}}}])
    );
    assert_eq!(http[1]["retries"], json!({"attempts": 3}));
    assert_eq!(
        http[1]["route"][0]["destination"],
        json!({"host": "reviews-canary.demo.svc.cluster.local", "port": {"number": 9080}})
    );
    // The weighted route keeps the user's stable destination as it is (host spelling,
    // subset) and its destination headers; the canary host is spelt alike, without subset.
    let weighted = &http[2]["route"];
    assert_eq!(
        weighted[0]["destination"],
        user["spec"]["http"][1]["route"][0]["destination"]
    );
    assert_eq!(
        weighted[1]["destination"],
        json!({"host": "reviews-canary.demo.svc.cluster.local", "port": {"number": 9080}})
    );
    assert_eq!(weighted[0]["weight"], 70);
    assert_eq!(weighted[1]["weight"], 30);
    assert_eq!(
        weighted[1]["headers"],
        user["spec"]["http"][1]["route"][0]["headers"]
    );
    assert_eq!(http[2]["mirrorPercentage"]["value"], 20.0);
    assert_eq!(
        http[2]["mirror"]["host"],
        "reviews-canary.demo.svc.cluster.local"
    );
    let tcp = &vs["spec"]["tcp"][0]["route"];
    assert_eq!(
        tcp[0],
        json!({"destination": {"host": "reviews", "subset": "v1"}, "weight": 70})
    );
    assert_eq!(
        tcp[1],
        json!({"destination": {"host": "reviews-canary"}, "weight": 30})
    );
    validate_all(&rendered.objects());

    let restored = restore(vs).unwrap();
    let mut original = user_virtual_service();
    original["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(restored, original);
}

#[test]
fn the_users_destination_rule_is_never_rendered_and_its_traffic_policy_goes_to_the_canary_host() {
    let (plan, mut objects) = user_plan();
    let user_dr = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "demo"},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                 "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
                                   "connectionPool": {"http": {"http1MaxPendingRequests": 10}}}}
    });
    objects.insert(user_dr.clone());
    let rendered = render(&plan, &RouteState::weighted(20), &objects).unwrap();
    assert!(
        rendered
            .objects()
            .iter()
            .all(|o| o["metadata"]["name"] != "reviews" || o["kind"] == "VirtualService")
    );
    let dr = rendered.canary_destination_rule.as_ref().unwrap();
    assert_eq!(dr["metadata"]["name"], "reviews-canary");
    assert_eq!(
        dr["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "canary"
    );
    assert_eq!(dr["spec"]["host"], "reviews-canary");
    assert_eq!(
        dr["spec"]["trafficPolicy"],
        user_dr["spec"]["trafficPolicy"]
    );
    assert!(dr["spec"]["subsets"].is_null());
    validate_all(&rendered.objects());
    // Without a policy there is nothing to carry over.
    let mut bare = user_dr;
    bare["spec"]
        .as_object_mut()
        .unwrap()
        .remove("trafficPolicy");
    objects.insert(bare);
    let rendered = render(&plan, &RouteState::weighted(20), &objects).unwrap();
    assert!(rendered.canary_destination_rule.is_none());
}

#[test]
fn a_users_virtual_service_with_several_routes_needs_them_named() {
    let (plan, mut objects) = example("bookinfo-istio.yaml");
    objects.insert(user_virtual_service());
    let error = render(&plan, &RouteState::weighted(10), &objects).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("3 HTTP routes") && message.contains("virtualService.routes"),
        "{message}"
    );
}

#[test]
fn a_cookie_and_a_cookie_header_in_one_match_are_refused() {
    let (plan, objects) = example("bookinfo-istio.yaml");
    let route = RouteState {
        matches: vec![RequestMatch {
            headers: [("cookie".into(), StringMatch::exact("a=b"))].into(),
            cookie: Some(CookieMatch {
                name: "beta".into(),
                value: None,
            }),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    assert!(render(&plan, &route, &objects).is_err());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn string_match() -> impl Strategy<Value = StringMatch> {
        prop_oneof![
            "[a-z]{1,6}".prop_map(StringMatch::exact),
            "/[a-z]{1,6}".prop_map(|p| StringMatch {
                prefix: Some(p),
                ..StringMatch::default()
            }),
            "[a-z]{1,4}".prop_map(|r| StringMatch {
                regex: Some(format!("^{r}.*")),
                ..StringMatch::default()
            }),
        ]
    }

    fn request_match() -> impl Strategy<Value = RequestMatch> {
        (
            proptest::collection::btree_map("x-[a-z]{1,5}", string_match(), 0..3),
            proptest::option::of(("[a-z]{1,5}", proptest::option::of("[a-z0-9]{1,5}"))),
            proptest::option::of(string_match()),
            proptest::collection::btree_map("[a-z]{1,5}", string_match(), 0..2),
            proptest::option::of(prop_oneof![Just("GET".to_owned()), Just("POST".to_owned())]),
        )
            .prop_map(
                |(headers, cookie, uri, query_params, method)| RequestMatch {
                    headers,
                    cookie: cookie.map(|(name, value)| CookieMatch { name, value }),
                    uri,
                    query_params,
                    method,
                },
            )
            .prop_filter("a match has a condition", |m| !m.is_empty())
    }

    fn route_state() -> impl Strategy<Value = RouteState> {
        (
            0u32..=100,
            proptest::collection::vec(request_match(), 0..3),
            proptest::option::of(0u32..=100),
        )
            .prop_map(|(weight, matches, mirror)| RouteState {
                weight,
                total: 100,
                matches,
                mirror,
            })
    }

    fn weights_sum_to_100(vs: &Value) {
        for kind in ["http", "tcp"] {
            for route in vs["spec"][kind].as_array().into_iter().flatten() {
                let list = route["route"].as_array().unwrap();
                if list.iter().any(|d| d.get("weight").is_some()) {
                    let sum: u64 = list.iter().map(|d| d["weight"].as_u64().unwrap()).sum();
                    assert_eq!(sum, 100, "{route}");
                }
            }
        }
    }

    /// Cases per property: `PROPTEST_CASES` when set (a long run), else `default` (what CI runs).
    /// A config that names its own `cases` overrides proptest's reading of that variable, so it is
    /// read here.
    fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(default)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases(64)))]

        #[test]
        fn generated_routes_weigh_100_put_matches_first_and_pass_the_schema(route in route_state()) {
            let (plan, objects) = example("bookinfo-istio.yaml");
            let rendered = render(&plan, &route, &objects).unwrap();
            let vs = &rendered.virtual_service;
            weights_sum_to_100(vs);
            let names: Vec<&str> = vs["spec"]["http"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
            let expected: &[&str] = if route.matches.is_empty() { &["primary"] } else { &["primary-canary-match", "primary"] };
            prop_assert_eq!(names, expected);
            if !route.matches.is_empty() {
                prop_assert_eq!(vs["spec"]["http"][0]["match"].as_array().unwrap().len(), route.matches.len());
            }
            validate_all(&rendered.objects());
        }

        #[test]
        fn a_users_other_routes_stay_byte_for_byte_and_restore_is_exact(route in route_state()) {
            let (plan, objects) = user_plan();
            let rendered = match render(&plan, &route, &objects) {
                Ok(rendered) => rendered,
                // The managed route matches prefix /reviews: a canary URI outside it cannot hold
                // at the same time, and is refused.
                Err(canary_istio::Error::Conflict(message)) => {
                    let outside = route.matches.iter().any(|m| m.uri.as_ref().is_some_and(|uri| {
                        ![&uri.exact, &uri.prefix].into_iter().flatten().any(|p| p.starts_with("/reviews"))
                    }));
                    prop_assert!(outside, "{}", message);
                    return Ok(());
                }
                Err(other) => panic!("{other}"),
            };
            let vs = &rendered.virtual_service;
            weights_sum_to_100(vs);
            let user = user_virtual_service();
            let http = vs["spec"]["http"].as_array().unwrap();
            let text = |v: &Value| serde_json::to_string(v).unwrap();
            prop_assert_eq!(text(&http[0]), text(&user["spec"]["http"][0]));
            prop_assert_eq!(text(http.last().unwrap()), text(&user["spec"]["http"][2]));
            let weighted = http.iter().position(|r| r["name"] == "primary").unwrap();
            if let Some(placed) = http.iter().position(|r| r["name"] == "primary-canary-match") {
                prop_assert_eq!(placed + 1, weighted);
            } else {
                prop_assert!(route.matches.is_empty());
            }
            validate_all(&rendered.objects());
            // Rendering again over the result changes nothing.
            let mut again = objects.clone();
            again.insert(vs.clone());
            let second = render(&plan, &route, &again).unwrap();
            prop_assert_eq!(&second.virtual_service, vs);
            let restored = restore(vs).unwrap();
            let mut original = user;
            original["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            prop_assert_eq!(restored, original);
        }
    }
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
fn objects_of_the_wrong_shape_are_refused_by_name_and_field_never_a_panic() {
    let (plan, objects) = user_plan();
    let user_dr = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "demo",
                     "annotations": {"canary.rs/original": "{\"subsets\": [{\"name\": \"v1\"}]}"}},
        "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                 "exportTo": ["."], "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}
    });
    // The case that once panicked: a DestinationRule whose `spec` is not a mapping.
    for spec in [json!("text"), json!([1, 2]), json!(7)] {
        let mut dr = user_dr.clone();
        dr["spec"] = spec;
        let mut objects = objects.clone();
        objects.insert(dr.clone());
        let error = render(&plan, &RouteState::weighted(20), &objects)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("DestinationRule demo/reviews: spec is "),
            "{error}"
        );
        assert!(error.ends_with("it must be a mapping"), "{error}");
        assert!(canary_istio::destination_rule::released(&dr).is_some());
    }
    let mut vs = user_virtual_service();
    vs["spec"]["http"][1] = json!("primary");
    let mut broken = objects.clone();
    broken.insert(vs);
    let error = render(&plan, &RouteState::weighted(20), &broken)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "VirtualService demo/reviews: spec.http is a list with an item that is not a mapping"
        ),
        "{error}"
    );
    let routes = [
        RouteState::weighted(40),
        RouteState::stable(),
        RouteState {
            weight: 10,
            matches: vec![RequestMatch {
                headers: [("x-user".into(), StringMatch::exact("tester"))].into(),
                ..RequestMatch::default()
            }],
            mirror: Some(20),
            ..RouteState::stable()
        },
    ];
    let service = objects
        .get("Service", &plan.namespace, &plan.rollout.spec.service.name)
        .unwrap()
        .clone();
    for object in [user_virtual_service(), user_dr, service] {
        for broken in broken_copies(&object) {
            let mut objects = objects.clone();
            objects.insert(broken.clone());
            for route in &routes {
                no_panic(&broken, || render(&plan, route, &objects));
            }
            no_panic(&broken, || {
                canary_istio::destination_rule::released(&broken)
            });
            no_panic(&broken, || restore(&broken));
            no_panic(&broken, || {
                canary_istio::virtual_service::applied_route(&broken)
            });
        }
    }
}
