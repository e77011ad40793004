//! The API test server's validating admission hooks: the mesh webhooks refuse what their
//! upstream validators refuse, with the API server's denial message, and admit the rest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use kube_testserver::{
    AdmissionHook, AdmissionRequest, ApiServer, Denial, NginxAdmission, ResourceType,
};
use serde_json::{Value, json};

/// A raw POST: `(code, Status or object)`.
async fn post(server: &ApiServer, path: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (
        code,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

/// Asserts a denial by `webhook` with `code` and exactly `message` after the API server's
/// prefix.
fn assert_denied(answer: &(u16, Value), code: u16, webhook: &str, message: &str) {
    assert_eq!(answer.0, code, "{}", answer.1);
    assert_eq!(
        answer.1["message"],
        format!("admission webhook \"{webhook}\" denied the request: {message}"),
    );
}

async fn istio() -> ApiServer {
    let server = ApiServer::start().await.unwrap();
    common::register_upstream_crds(&server);
    server.enable_istio_validation();
    server
}

const VS: &str = "/apis/networking.istio.io/v1/namespaces/default/virtualservices";
const DR: &str = "/apis/networking.istio.io/v1/namespaces/default/destinationrules";
const ISTIO: &str = "validation.istio.io";

fn vs(routes: Value) -> Value {
    json!({"metadata": {"name": "web"}, "spec": {"hosts": ["web"], "http": [{"route": routes}]}})
}

fn dr(subsets: Value) -> Value {
    json!({"metadata": {"name": "web"}, "spec": {"host": "web", "subsets": subsets}})
}

#[tokio::test]
async fn istio_refuses_subset_names_that_are_not_dns1123_labels() {
    let server = istio().await;
    let answer = post(
        &server,
        DR,
        &dr(json!([{"name": "v1.0", "labels": {"version": "v1.0"}}])),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: subset name is invalid: v1.0",
    );
    let answer = post(
        &server,
        VS,
        &vs(json!([{"destination": {"host": "web", "subset": "v1.0"}}])),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: subset name is invalid: v1.0",
    );
    let answer = post(
        &server,
        DR,
        &dr(json!([{"name": "stable", "labels": {"version": "v1"}}, {"name": "stable"}])),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: duplicate subset names: stable",
    );
    let (code, _) = post(
        &server,
        DR,
        &dr(json!([{"name": "stable", "labels": {"version": "v1.0"}}, {"name": "V2"}])),
    )
    .await;
    assert_eq!(code, 201, "Istio's labels allow upper case");
}

#[tokio::test]
async fn istio_refuses_negative_and_all_zero_weights_but_not_other_sums() {
    let server = istio().await;
    let answer = post(
        &server,
        VS,
        &vs(json!([
            {"destination": {"host": "web", "subset": "stable"}, "weight": 0},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 0},
        ])),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: total destination weight = 0",
    );
    let answer = post(
        &server,
        VS,
        &vs(json!([
            {"destination": {"host": "web", "subset": "stable"}, "weight": 110},
            {"destination": {"host": "web", "subset": "canary"}, "weight": -10},
        ])),
    )
    .await;
    assert_eq!(answer.0, 400);
    // Two errors: listed as go-multierror does.
    let answer = post(
        &server,
        VS,
        &json!({"metadata": {"name": "web"}, "spec": {"hosts": ["web"], "http": [{"route": [
            {"destination": {"host": "web", "subset": "a.b"}, "weight": -1},
        ]}]}}),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: 2 errors occurred:\n\t* subset name is invalid: a.b\n\t* \
         weight -1 < 0\n\n",
    );
    // Weights that do not add up to 100 are Istio's to normalise, not to refuse.
    let (code, body) = post(
        &server,
        VS,
        &vs(json!([
            {"destination": {"host": "web", "subset": "stable"}, "weight": 30},
            {"destination": {"host": "web", "subset": "canary"}, "weight": 30},
        ])),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn istio_accepts_a_route_to_a_subset_no_destination_rule_defines() {
    let server = istio().await;
    let (code, body) = post(
        &server,
        VS,
        &vs(json!([{"destination": {"host": "web", "subset": "nowhere"}}])),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        server
            .get("networking.istio.io/v1", "DestinationRule", None, "web")
            .is_none()
    );
}

#[tokio::test]
async fn istio_checks_hosts_and_route_shapes() {
    let server = istio().await;
    let answer = post(
        &server,
        VS,
        &json!({"metadata": {"name": "web"}, "spec": {"hosts": ["*"], "http": [{"route": [
            {"destination": {"host": "web"}}]}]}}),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: wildcard host * is not allowed for virtual services bound to \
         the mesh gateway",
    );
    let answer = post(
        &server,
        VS,
        &json!({"metadata": {"name": "web"}, "spec": {"hosts": ["web"]}}),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: http, tcp or tls must be provided in virtual service",
    );
    let answer = post(
        &server,
        VS,
        &vs(json!([{"destination": {"host": "web_1"}}])),
    )
    .await;
    assert_denied(
        &answer,
        400,
        ISTIO,
        "configuration is invalid: domain name \"web_1\" invalid (label \"web_1\" invalid)",
    );
}

#[tokio::test]
async fn webhooks_are_off_until_enabled() {
    let server = ApiServer::start().await.unwrap();
    common::register_upstream_crds(&server);
    let (code, body) = post(&server, DR, &dr(json!([{"name": "v1.0"}]))).await;
    assert_eq!(code, 201, "{body}");
}

const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
const NGINX: &str = "validate.nginx.ingress.kubernetes.io";

fn ingress(name: &str, annotations: Value, service: &str) -> Value {
    let mut annotations = annotations;
    annotations["kubernetes.io/ingress.class"] = json!("nginx");
    json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": 80}}},
        }]}}]},
    })
}

fn canary(extra: Value) -> Value {
    let mut annotations = json!({"nginx.ingress.kubernetes.io/canary": "true"});
    if let (Some(map), Some(more)) = (annotations.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    annotations
}

#[tokio::test]
async fn nginx_allows_one_canary_per_host_and_path() {
    let server = ApiServer::start().await.unwrap();
    server.enable_nginx_admission();
    let (code, _) = post(&server, INGRESSES, &ingress("web", json!({}), "web")).await;
    assert_eq!(code, 201);
    let (code, body) = post(
        &server,
        INGRESSES,
        &ingress(
            "web-canary",
            canary(json!({"nginx.ingress.kubernetes.io/canary-weight": "10"})),
            "web-canary",
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // A second primary without annotations on the same host and path is refused.
    let answer = post(&server, INGRESSES, &ingress("web-2", json!({}), "web-2")).await;
    assert_denied(
        &answer,
        400,
        NGINX,
        "host \"web.example.com\" and path \"/\" is already defined in ingress default/web",
    );
    assert_eq!(answer.1["reason"], "BadRequest");
    // Ingresses of another class are not this controller's.
    let mut other = ingress("web-3", json!({}), "web-3");
    other["metadata"]["annotations"]["kubernetes.io/ingress.class"] = json!("internal");
    assert_eq!(post(&server, INGRESSES, &other).await.0, 201);
}

#[tokio::test]
async fn nginx_refuses_two_canaries_on_a_location_a_canary_owns() {
    let server = ApiServer::start().await.unwrap();
    server.enable_nginx_admission();
    let (code, _) = post(
        &server,
        INGRESSES,
        &ingress("a-canary", canary(json!({})), "a"),
    )
    .await;
    assert_eq!(code, 201);
    let answer = post(
        &server,
        INGRESSES,
        &ingress("b-canary", canary(json!({})), "b"),
    )
    .await;
    assert_denied(
        &answer,
        400,
        NGINX,
        "host \"web.example.com\" and path \"/\" is already defined in ingress default/a-canary",
    );
}

#[tokio::test]
async fn nginx_canary_annotation_values_must_pass_its_parser() {
    let server = ApiServer::start().await.unwrap();
    server.enable_nginx_admission();
    post(&server, INGRESSES, &ingress("web", json!({}), "web")).await;
    let bad = [
        ("nginx.ingress.kubernetes.io/canary-by-header", "X-Canary!"),
        ("nginx.ingress.kubernetes.io/canary-by-header-value", "a,b"),
        ("nginx.ingress.kubernetes.io/canary-by-cookie", "user=1"),
        (
            "nginx.ingress.kubernetes.io/canary-by-header-pattern",
            "^a b$",
        ),
        ("nginx.ingress.kubernetes.io/canary-weight", "ten"),
    ];
    for (key, value) in bad {
        let answer = post(
            &server,
            INGRESSES,
            &ingress("web-canary", canary(json!({key: value})), "web-canary"),
        )
        .await;
        assert_denied(
            &answer,
            400,
            NGINX,
            &format!("annotation {key} contains invalid value"),
        );
    }
    let good = canary(json!({
        "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
        "nginx.ingress.kubernetes.io/canary-by-header-pattern": "^(alpha|beta)[0-9]*$",
        "nginx.ingress.kubernetes.io/canary-by-cookie": "canary_user",
        "nginx.ingress.kubernetes.io/canary-weight": "25",
    }));
    let (code, body) = post(
        &server,
        INGRESSES,
        &ingress("web-canary", good, "web-canary"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn nginx_as_upstream_admits_values_its_parser_then_ignores() {
    let server = ApiServer::start().await.unwrap();
    server.add_admission_hook(Arc::new(NginxAdmission::upstream()));
    let annotations = canary(json!({"nginx.ingress.kubernetes.io/canary-by-header": "X Canary!"}));
    let object = ingress("web-canary", annotations, "web-canary");
    assert_eq!(
        kube_testserver::nginx_ignored_canary_annotations(&object),
        ["nginx.ingress.kubernetes.io/canary-by-header"]
    );
    assert_eq!(post(&server, INGRESSES, &object).await.0, 201);
}

const ROUTES: &str = "/apis/kuma.io/v1alpha1/namespaces/default/meshhttproutes";
const KUMA: &str = "validator.kuma-admission.kuma.io";

fn route(target: Value, path: Value, backends: Value) -> Value {
    json!({
        "metadata": {"name": "web"},
        "spec": {
            "targetRef": target,
            "to": [{
                "targetRef": {"kind": "MeshService", "name": "web"},
                "rules": [{"matches": [{"path": path}], "default": {"backendRefs": backends}}],
            }],
        },
    })
}

/// A server with MeshHTTPRoutes (no schema: the webhook's rules alone) and Kuma's webhook.
async fn kuma() -> ApiServer {
    let server = ApiServer::start().await.unwrap();
    server.register(ResourceType::new(
        "kuma.io",
        "v1alpha1",
        "MeshHTTPRoute",
        "meshhttproutes",
        true,
        false,
    ));
    server.enable_kuma_validation();
    server
}

#[tokio::test]
async fn kuma_path_prefixes_are_absolute_without_a_trailing_slash() {
    let server = kuma().await;
    let backends = json!([{"kind": "MeshService", "name": "web", "weight": 100}]);
    let mesh = json!({"kind": "Mesh"});
    let answer = post(
        &server,
        ROUTES,
        &route(
            mesh.clone(),
            json!({"type": "PathPrefix", "value": "/api/"}),
            backends.clone(),
        ),
    )
    .await;
    assert_denied(
        &answer,
        422,
        KUMA,
        "spec.to[0].rules[0].matches[0].path.value: does not need a trailing slash because only \
         a `/`-separated prefix or an entire path is matched",
    );
    assert_eq!(answer.1["reason"], "Invalid");
    assert_eq!(
        answer.1["details"]["causes"][0]["field"],
        "spec.to[0].rules[0].matches[0].path.value"
    );
    let answer = post(
        &server,
        ROUTES,
        &route(
            mesh.clone(),
            json!({"type": "PathPrefix", "value": "api"}),
            backends.clone(),
        ),
    )
    .await;
    assert_denied(
        &answer,
        422,
        KUMA,
        "spec.to[0].rules[0].matches[0].path.value: must be an absolute path",
    );
    for ok in ["/", "/api"] {
        let mut object = route(
            mesh.clone(),
            json!({"type": "PathPrefix", "value": ok}),
            backends.clone(),
        );
        object["metadata"]["name"] = json!(format!("ok{}", ok.len()));
        let (code, body) = post(&server, ROUTES, &object).await;
        assert_eq!(code, 201, "{body}");
    }
}

#[tokio::test]
async fn kuma_checks_target_ref_kinds_and_forms() {
    let server = kuma().await;
    let path = json!({"type": "PathPrefix", "value": "/"});
    let backends = json!([{"kind": "MeshService", "name": "web"}]);
    let answer = post(
        &server,
        ROUTES,
        &route(
            json!({"kind": "MeshHTTPRoute", "name": "x"}),
            path.clone(),
            backends.clone(),
        ),
    )
    .await;
    assert_denied(
        &answer,
        422,
        KUMA,
        "spec.targetRef.kind: value is not supported",
    );
    let answer = post(
        &server,
        ROUTES,
        &route(
            json!({"kind": "Mesh"}),
            path.clone(),
            json!([{"kind": "MeshService", "name": "web", "labels": {"app": "web"}}]),
        ),
    )
    .await;
    assert_denied(
        &answer,
        422,
        KUMA,
        "spec.to[0].rules[0].default.backendRefs[0].labels: either labels or name and namespace \
         must be specified",
    );
    let answer = post(
        &server,
        ROUTES,
        &route(
            json!({"kind": "Mesh", "name": "default"}),
            path.clone(),
            backends.clone(),
        ),
    )
    .await;
    assert_denied(
        &answer,
        422,
        KUMA,
        "spec.targetRef.name: using name with kind Mesh is not yet supported",
    );
    let (code, body) = post(
        &server,
        ROUTES,
        &route(
            json!({"kind": "MeshService", "name": "web"}),
            path,
            backends,
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

/// A hook of the test's own, called with the stored peers.
#[derive(Debug)]
struct OnePerNamespace;

impl AdmissionHook for OnePerNamespace {
    fn name(&self) -> &str {
        "one.example.com"
    }
    fn handles(&self, group: &str, kind: &str) -> bool {
        group.is_empty() && kind == "ConfigMap"
    }
    fn reads_peers(&self) -> bool {
        true
    }
    fn review(&self, request: &AdmissionRequest<'_>) -> Result<(), Denial> {
        let taken = request
            .peers
            .iter()
            .any(|p| p["metadata"]["namespace"] == request.namespace());
        if taken {
            Err(Denial::new(403, "Forbidden", "one ConfigMap per namespace"))
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn custom_hooks_see_peers_and_their_denials_are_reported() {
    let server = ApiServer::start().await.unwrap();
    server.add_admission_hook(Arc::new(OnePerNamespace));
    let cm = |name: &str| json!({"metadata": {"name": name}});
    assert_eq!(
        post(&server, "/api/v1/namespaces/default/configmaps", &cm("a"))
            .await
            .0,
        201
    );
    let answer = post(&server, "/api/v1/namespaces/default/configmaps", &cm("b")).await;
    assert_denied(
        &answer,
        403,
        "one.example.com",
        "one ConfigMap per namespace",
    );
    assert_eq!(answer.1["reason"], "Forbidden");
    // Validation comes first: an invalid object is refused as invalid, not by the hook.
    let answer = post(&server, "/api/v1/namespaces/default/configmaps", &cm("B")).await;
    assert_eq!(answer.0, 422);
}
