//! Rendering: the seed's VirtualService, the upstream schemas, subsets by version label or
//! pod-template hash, and a user's VirtualService changed only where canary manages it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::objects::Objects;
use canary_core::spec::{CookieMatch, RequestMatch, StringMatch};
use canary_core::{RolloutPlan, RouteState};
use canary_istio::render;
use canary_istio::virtual_service::restore;
use canary_kube::fixtures::{crd_validator, schema_errors};
use serde_json::{Value, json};

fn example(name: &str) -> (RolloutPlan, Objects) {
    let path = format!("{}/../examples/rollouts/{name}", env!("CARGO_MANIFEST_DIR"));
    let file = canary_core::load::rollout_file(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        canary_core::validate::validate(&file.rollout).unwrap(),
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

fn replicaset(owner: &str, revision: &str, hash: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{owner}-{hash}"), "namespace": "demo",
                     "labels": {"pod-template-hash": hash},
                     "annotations": {"deployment.kubernetes.io/revision": revision},
                     "ownerReferences": [{"kind": "Deployment", "name": owner, "uid": "u-1", "apiVersion": "apps/v1"}]}
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
            other => panic!("unexpected {other:?}"),
        };
        let errors = schema_errors(validator, object);
        assert!(errors.is_empty(), "{errors:?}\n{object:#}");
    }
}

#[test]
fn bookinfo_at_50_is_the_seed_virtual_service_and_take_over_sends_all_to_v2() {
    let (plan, objects) = example("bookinfo-istio.yaml");
    let rendered = render(&plan, &RouteState::weighted(50), &objects).unwrap();
    let vs = &rendered.virtual_service;
    assert_eq!(vs["spec"]["hosts"], json!(["reviews"]));
    let destination = |subset: &str, weight: u32| json!({"destination": {"host": "reviews", "port": {"number": 9080}, "subset": subset}, "weight": weight});
    assert_eq!(vs["spec"]["http"].as_array().unwrap().len(), 1);
    assert_eq!(
        vs["spec"]["http"][0]["route"],
        json!([destination("v1", 50), destination("v2", 50)])
    );
    let dr = &rendered.destination_rule;
    assert_eq!(dr["spec"]["host"], "reviews");
    assert_eq!(
        dr["spec"]["subsets"],
        json!([{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}])
    );
    validate_all(&rendered.objects());

    let take_over = plan.steps.last().unwrap().route.clone();
    let rendered = render(&plan, &take_over, &objects).unwrap();
    assert_eq!(
        rendered.virtual_service["spec"]["http"][0]["route"],
        json!([destination("v1", 0), destination("v2", 100)])
    );
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
fn without_version_labels_the_subsets_go_by_pod_template_hash() {
    let (plan, _) = example("mirror-istio.yaml");
    let mut objects = Objects::new(vec![deployment("details-v1", json!({"app": "details"}))]);
    let error = render(&plan, &RouteState::weighted(10), &objects).unwrap_err();
    assert!(error.to_string().contains("pod-template-hash"), "{error}");
    objects.insert(replicaset("details-v1", "2", "old"));
    objects.insert(replicaset("details-v1", "3", "5d8f7c"));
    let rendered = render(&plan, &RouteState::weighted(10), &objects).unwrap();
    // newVersion.version v2 against no version label: the versions do not tell, the hash does.
    assert_eq!(
        rendered.destination_rule["spec"]["subsets"],
        json!([{"name": "stable", "labels": {"pod-template-hash": "5d8f7c"}},
               {"name": "canary", "labels": {"canary.rs/role": "canary"}}])
    );
    validate_all(&rendered.objects());
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
    plan = canary_core::validate::validate(&plan.rollout).unwrap();
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
    assert_eq!(http[1]["route"][0]["destination"]["subset"], "v2");
    // The weighted route keeps the user's host spelling and destination headers.
    let weighted = &http[2]["route"];
    assert_eq!(
        weighted[0]["destination"]["host"],
        "reviews.demo.svc.cluster.local"
    );
    assert_eq!(weighted[0]["weight"], 70);
    assert_eq!(weighted[1]["weight"], 30);
    assert_eq!(
        weighted[1]["headers"],
        user["spec"]["http"][1]["route"][0]["headers"]
    );
    assert_eq!(http[2]["mirrorPercentage"]["value"], 20.0);
    assert_eq!(vs["spec"]["tcp"][0]["route"][1]["weight"], 30);
    validate_all(&rendered.objects());

    let restored = restore(&plan, &rendered.subsets, vs).unwrap();
    let mut original = user_virtual_service();
    original["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(restored, original);
}

#[test]
fn restore_after_a_promotion_points_the_route_at_the_new_stable_subset() {
    let (plan, objects) = user_plan();
    let rendered = render(&plan, &RouteState::weighted(40), &objects).unwrap();
    // The release was promoted: the stable Deployment's pods now carry version v2.
    let mut promoted = objects.clone();
    promoted.insert(deployment(
        "reviews-v1",
        json!({"app": "reviews", "version": "v2"}),
    ));
    promoted.insert(rendered.virtual_service.clone());
    let now = render(&plan, &RouteState::stable(), &promoted).unwrap();
    assert_eq!(now.subsets.stable.name, "v2");
    let restored = restore(&plan, &now.subsets, &now.virtual_service).unwrap();
    assert_eq!(
        restored["spec"]["http"][1]["route"][0]["destination"]["subset"],
        "v2"
    );
    assert_eq!(
        restored["spec"]["http"][1]["match"],
        json!([{"uri": {"prefix": "/reviews"}}])
    );
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

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
            let restored = restore(&plan, &rendered.subsets, vs).unwrap();
            let mut original = user;
            original["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            prop_assert_eq!(restored, original);
        }
    }
}

/// Istio's rule for subset names (istio pkg/config/validation/validation.go:
/// `validateSubsetName`): a DNS-1123 label.
fn is_dns1123_label(name: &str) -> bool {
    regex::Regex::new("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        .unwrap()
        .is_match(name)
        && name.len() <= 63
}

#[test]
fn a_stable_version_label_istio_would_refuse_as_a_subset_name_gets_a_valid_stable_one() {
    let (plan, _) = example("bookinfo-istio.yaml");
    let mut names = Vec::new();
    for version in ["V1", "1.0", "v1_beta", "v1", "_", "A.B_C-1"] {
        let objects = Objects::new(vec![deployment(
            "reviews-v1",
            json!({"app": "reviews", "version": version}),
        )]);
        let rendered = render(&plan, &RouteState::weighted(20), &objects).unwrap();
        let again = render(&plan, &RouteState::weighted(40), &objects).unwrap();
        assert_eq!(
            rendered.subsets, again.subsets,
            "the same name on every pass"
        );
        let stable = &rendered.subsets.stable;
        assert!(
            is_dns1123_label(&stable.name),
            "{version} → {}",
            stable.name
        );
        assert_eq!(
            stable.labels["version"], version,
            "selects the value as it is"
        );
        assert_ne!(stable.name, rendered.subsets.canary.name);
        if version == "v1" {
            assert_eq!(stable.name, "v1", "a valid value is kept");
        }
        let vs = &rendered.virtual_service;
        for entry in vs["spec"]["http"][0]["route"].as_array().unwrap() {
            let subset = entry["destination"]["subset"].as_str().unwrap();
            assert!(is_dns1123_label(subset), "{subset}");
        }
        for subset in rendered.destination_rule["spec"]["subsets"]
            .as_array()
            .unwrap()
        {
            assert!(is_dns1123_label(subset["name"].as_str().unwrap()));
        }
        validate_all(&rendered.objects());
        names.push(stable.name.clone());
    }
    let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
}
