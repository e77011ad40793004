//! Rendering: the Kruise seed's canary Ingress and Service, typed by k8s-openapi; header,
//! cookie and weight-total annotations; what is carried over from the stable Ingress; and the
//! refusals of what ingress-nginx cannot route.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::api::spec::{CookieMatch, RequestMatch, StringMatch};
use canary_core::k8s::objects::Objects;
use canary_core::{RolloutPlan, RouteState};
use canary_nginx::render;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn echoserver() -> (RolloutPlan, Objects) {
    let text =
        std::fs::read_to_string(root().join("examples/rollouts/echoserver-nginx.yaml")).unwrap();
    let file = canary_core::api::load::rollout_file(&text).unwrap();
    let objects =
        std::fs::read_to_string(root().join("examples/rollouts/echoserver-objects.yaml")).unwrap();
    (
        canary_core::api::validate::validate(&file.rollout).unwrap(),
        canary_core::api::load::objects_from_yaml(&objects).unwrap(),
    )
}

/// `object` read as the k8s-openapi type `T` and written back: equal when every field is one
/// Kubernetes knows, with the right type.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let typed: T = serde_json::from_value(object.clone()).unwrap();
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        object,
        "fields k8s-openapi does not know"
    );
    typed
}

#[test]
fn at_20_percent_the_seeds_canary_ingress_and_service() {
    let (plan, objects) = echoserver();
    let rendered = render(&plan, &RouteState::weighted(20), &objects).unwrap();
    let ingress: Ingress = typed(rendered.route.as_ref().unwrap());
    assert_eq!(ingress.metadata.name.as_deref(), Some("echoserver-canary"));
    let annotations = ingress.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["kubernetes.io/ingress.class"], "nginx");
    assert_eq!(annotations["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(annotations.len(), 3, "{annotations:?}");
    let rule = &ingress.spec.as_ref().unwrap().rules.as_ref().unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("echoserver.example.com"));
    let path = &rule.http.as_ref().unwrap().paths[0];
    assert_eq!(path.path.as_deref(), Some("/"));
    assert_eq!(path.path_type, "ImplementationSpecific");
    let backend = path.backend.service.as_ref().unwrap();
    assert_eq!(backend.name, "echoserver-canary");
    assert_eq!(backend.port.as_ref().unwrap().number, Some(8080));

    let service: Service = typed(rendered.canary_service.as_ref().unwrap());
    assert_eq!(service.metadata.name.as_deref(), Some("echoserver-canary"));
    let spec = service.spec.unwrap();
    assert_eq!(spec.ports.unwrap()[0].port, 8080);
    assert_eq!(
        spec.selector.unwrap(),
        [
            ("canary.rs/role".to_owned(), "canary".to_owned()),
            ("canary.rs/rollout".to_owned(), plan.name.clone()),
        ]
        .into()
    );
    // The stable Service is never among the objects written.
    assert_eq!(rendered.objects().len(), 2);
}

fn with_canary(mut objects: Objects, app: &str) -> Objects {
    objects.insert(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "echoserver-canary", "namespace": "default"},
        "spec": {"template": {"metadata": {"labels": {
            "app": app, "canary.rs/role": "canary", "canary.rs/rollout": "echoserver"}}}}
    }));
    objects
}

#[test]
fn a_canary_the_stable_service_would_select_gets_no_route() {
    let (plan, objects) = echoserver();
    let own = with_canary(objects.clone(), "echoserver-canary");
    assert!(render(&plan, &RouteState::weighted(20), &own).is_ok());
    let shared = with_canary(objects, "echoserver");
    let refused = render(&plan, &RouteState::weighted(20), &shared)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("selects the canary's pods"), "{refused}");
    // Back to stable needs nothing, and is never refused.
    let back = render(&plan, &RouteState::stable(), &shared).unwrap();
    assert!(back.objects().is_empty());
}

fn stable_ingress() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "echoserver", "namespace": "default", "resourceVersion": "9",
                     "labels": {"team": "web",
                                "app.kubernetes.io/instance": "shop",
                                "app.kubernetes.io/managed-by": "Helm",
                                "argocd.argoproj.io/instance": "shop",
                                "kustomize.toolkit.fluxcd.io/name": "shop",
                                "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
                     "annotations": {
                         "custom.example.com/rewrite-target": "/",
                         "custom.example.com/canary-weight": "50",
                         "argocd.argoproj.io/tracking-id": "shop:networking.k8s.io/Ingress:default/echoserver",
                         "argocd.argoproj.io/sync-options": "Prune=true",
                         "meta.helm.sh/release-name": "shop",
                         "meta.helm.sh/release-namespace": "default",
                         "kubernetes.io/ingress.class": "internal",
                         "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "ingressClassName": "internal",
            "tls": [{"hosts": ["echo.example.com"], "secretName": "echo-tls"}],
            "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
            "rules": [
                {"host": "echo.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "echoserver", "port": {"name": "http"}}}},
                    {"path": "/static", "pathType": "Prefix", "backend": {"service": {"name": "assets", "port": {"number": 80}}}}
                ]}},
                {"host": "other.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}}
                ]}}
            ]
        }
    })
}

fn plan_with(prefix: &str) -> RolloutPlan {
    let (mut plan, _) = echoserver();
    plan.rollout
        .spec
        .traffic_routing
        .nginx
        .as_mut()
        .unwrap()
        .annotation_prefix = Some(prefix.into());
    canary_core::api::validate::validate(&plan.rollout).unwrap()
}

#[test]
fn the_clone_keeps_class_tls_nginx_annotations_and_only_the_services_paths() {
    let plan = plan_with("custom.example.com");
    let (_, mut objects) = echoserver();
    objects.insert(stable_ingress());
    let route = RouteState {
        weight: 5,
        total: 1000,
        matches: vec![RequestMatch {
            headers: [(
                "x-region".into(),
                StringMatch {
                    regex: Some("eu-.*".into()),
                    ..StringMatch::default()
                },
            )]
            .into(),
            ..RequestMatch::default()
        }],
        mirror: None,
    };
    let ingress = render(&plan, &route, &objects).unwrap().route.unwrap();
    let _: Ingress = typed(&ingress);
    let annotations = ingress["metadata"]["annotations"].as_object().unwrap();
    // Only the ingress class and ingress-nginx's own annotations are carried over: none of
    // Argo CD's, Helm's or kubectl's.
    let expected = json!({
        "kubernetes.io/ingress.class": "internal",
        "custom.example.com/rewrite-target": "/",
        "custom.example.com/canary": "true",
        "custom.example.com/canary-weight": "5",
        "custom.example.com/canary-weight-total": "1000",
        "custom.example.com/canary-by-header": "x-region",
        "custom.example.com/canary-by-header-pattern": "^(?:eu-.*)$",
    });
    assert_eq!(&Value::Object(annotations.clone()), &expected);
    // canary's own labels alone: the GitOps tracking labels of the stable Ingress (Argo CD's
    // `app.kubernetes.io/instance` / `argocd.argoproj.io/instance`, Flux's
    // `kustomize.toolkit.fluxcd.io/*`, Helm's `app.kubernetes.io/managed-by`) would make the
    // tool that applied the stable Ingress adopt the canary one and prune it.
    assert_eq!(
        ingress["metadata"]["labels"],
        canary_core::k8s::objects::generated_metadata(
            &plan,
            ingress["metadata"]["name"].as_str().unwrap()
        )["labels"]
    );
    assert_eq!(ingress["spec"]["ingressClassName"], "internal");
    assert_eq!(ingress["spec"]["tls"], stable_ingress()["spec"]["tls"]);
    assert!(ingress["spec"].get("defaultBackend").is_none());
    let rules = ingress["spec"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "only the rule that routes to the service");
    let paths = rules[0]["http"]["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1);
    assert_eq!(
        paths[0]["backend"]["service"],
        json!({"name": "echoserver-canary", "port": {"name": "http"}})
    );
}

#[test]
fn header_values_and_cookies_become_their_annotations() {
    let (plan, objects) = echoserver();
    let header = RouteState {
        matches: vec![RequestMatch {
            headers: [("x-canary".into(), StringMatch::exact("insider"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::stable()
    };
    let ingress = render(&plan, &header, &objects).unwrap().route.unwrap();
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header"],
        "x-canary"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-by-header-value"],
        "insider"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "0"
    );
    let cookie = RouteState {
        matches: vec![RequestMatch {
            cookie: Some(CookieMatch {
                name: "beta".into(),
                value: None,
            }),
            ..RequestMatch::default()
        }],
        ..RouteState::weighted(10)
    };
    let ingress = render(&plan, &cookie, &objects).unwrap().route.unwrap();
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-cookie"],
        "beta"
    );
}

#[test]
fn a_stable_ingress_without_a_path_to_the_service_is_refused() {
    let (plan, mut objects) = echoserver();
    let mut ingress = stable_ingress();
    ingress["spec"]["rules"] = json!([{"host": "x", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}}]}}]);
    objects.insert(ingress);
    let error = render(&plan, &RouteState::weighted(10), &objects)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("no path to the Service echoserver"),
        "{error}"
    );
}

/// The echoserver rollout with `strategy` replaced.
fn validation_errors(strategy: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(root().join("examples/rollouts/echoserver-nginx.yaml")).unwrap();
    let start = text.find("  strategy:").unwrap();
    let end = text.find("  progressDeadline").unwrap();
    let yaml = format!("{}{strategy}\n{}", &text[..start], &text[end..]);
    match canary_core::api::load::plan_from_yaml(&yaml) {
        Err(canary_core::Error::Invalid(errors)) => {
            errors.0.iter().map(ToString::to_string).collect()
        }
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn what_nginx_cannot_route_is_refused_with_what_it_can() {
    for (strategy, field) in [
        (
            "  strategy: {abTest: {matches: [{headers: {a: {exact: '1'}, b: {exact: '2'}}}]}}",
            "headers",
        ),
        (
            "  strategy: {abTest: {matches: [{uri: {prefix: /api}}]}}",
            "uri",
        ),
        (
            "  strategy: {abTest: {matches: [{headers: {a: {exact: '1'}}, cookie: {name: c}}]}}",
            "cookie",
        ),
        (
            "  strategy: {abTest: {matches: [{headers: {a: {exact: '1'}}}, {cookie: {name: c}}]}}",
            "matches",
        ),
        ("  strategy: {mirror: {percent: 50}}", "mirror"),
    ] {
        let errors = validation_errors(strategy);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(field) && e.contains("nginx")),
            "{strategy}: {errors:?}"
        );
    }
}

#[test]
fn a_header_pattern_is_written_anchored_so_it_matches_whole_values_and_reads_back_as_given() {
    let (plan, objects) = echoserver();
    for pattern in ["eu-.*", "^v[0-9]+$", "a|b"] {
        let route = RouteState {
            matches: vec![RequestMatch {
                headers: [(
                    "x-region".into(),
                    StringMatch {
                        regex: Some(pattern.into()),
                        ..StringMatch::default()
                    },
                )]
                .into(),
                ..RequestMatch::default()
            }],
            ..RouteState::stable()
        };
        let ingress = render(&plan, &route, &objects).unwrap().route.unwrap();
        let written = ingress["metadata"]["annotations"]
            ["nginx.ingress.kubernetes.io/canary-by-header-pattern"]
            .as_str()
            .unwrap()
            .to_owned();
        // ingress-nginx searches the value for the pattern; only `^(?:…)$` makes every
        // alternative of it cover the whole value.
        assert!(
            written.starts_with("^(?:") && written.ends_with(")$"),
            "{written}"
        );
        assert_eq!(&written[4..written.len() - 2], pattern);
        let annotations = ingress["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            canary_nginx::annotations::Canary::new("nginx.ingress.kubernetes.io")
                .route_of(&annotations),
            Some(route)
        );
    }
}

#[test]
fn the_canary_ingress_is_named_per_service_when_the_ingress_is_shared_and_stays_a_valid_name() {
    let (plan, objects) = echoserver();
    let stable = objects
        .get("Ingress", "default", "echoserver")
        .unwrap()
        .clone();
    assert_eq!(
        canary_nginx::render::canary_ingress_name(&plan, Some(&stable)),
        "echoserver-canary",
        "the seed's single-Service Ingress keeps the short name"
    );
    let mut shared = stable.clone();
    let mut other = shared["spec"]["rules"][0]["http"]["paths"][0].clone();
    other["path"] = json!("/admin");
    other["backend"]["service"]["name"] = json!("admin");
    shared["spec"]["rules"][0]["http"]["paths"]
        .as_array_mut()
        .unwrap()
        .push(other);
    let mut with_shared = objects.clone();
    with_shared.insert(shared.clone());
    let ingress = render(&plan, &RouteState::weighted(20), &with_shared)
        .unwrap()
        .route
        .unwrap();
    assert_eq!(ingress["metadata"]["name"], "echoserver-echoserver-canary");
    let paths = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap();
    assert_eq!(paths.len(), 1, "only the paths to the Rollout's Service");
    assert_eq!(paths[0]["backend"]["service"]["name"], "echoserver-canary");

    // The longest names still make a valid object name, distinct per Service.
    let long_ingress = "i".repeat(250);
    let names: Vec<String> = ["a", "b"]
        .iter()
        .map(|service| {
            let text =
                std::fs::read_to_string(root().join("examples/rollouts/echoserver-nginx.yaml"))
                    .unwrap();
            let mut rollout = canary_core::api::load::rollout_file(&text).unwrap().rollout;
            rollout.spec.traffic_routing.nginx.as_mut().unwrap().ingress = long_ingress.clone();
            rollout.spec.service.name = (*service).to_owned();
            let plan = canary_core::api::validate::validate(&rollout).unwrap();
            canary_nginx::render::canary_ingress_name(&plan, None)
        })
        .collect();
    for name in &names {
        assert!(name.len() <= 253, "{}", name.len());
        canary_core::api::names::dns1123_subdomain(name).unwrap();
        assert!(name.ends_with("-canary"));
    }
    assert_ne!(names[0], names[1]);
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
fn objects_of_any_shape_never_panic() {
    let (plan, objects) = echoserver();
    let service = objects
        .get("Service", &plan.namespace, &plan.rollout.spec.service.name)
        .unwrap()
        .clone();
    for object in [stable_ingress(), service] {
        for broken in broken_copies(&object) {
            let mut objects = objects.clone();
            objects.insert(broken.clone());
            for weight in [0, 20, 100] {
                no_panic(&broken, || {
                    render(&plan, &RouteState::weighted(weight), &objects)
                });
            }
            no_panic(&broken, || {
                canary_nginx::render::owner_conflict(&plan, &broken)
            });
            no_panic(&broken, || {
                canary_nginx::render::canary_ingress_name(&plan, Some(&broken))
            });
        }
    }
}
