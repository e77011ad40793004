//! The simulated Gateway API implementation: the status it writes on routes, as a conformant
//! implementation of the standard channel v1.6.1 reports it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use jiff::Timestamp;
use kube_testserver::ApiServer;
use serde_json::{Value, json};

fn t0() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn register_gateway_api(server: &ApiServer) {
    for file in ["gateways", "httproutes", "grpcroutes", "referencegrants"] {
        let path = format!(
            "{}/../crds/gateway-api/{file}.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for crd in documents
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            server.register_crd(crd).unwrap();
        }
    }
}

fn gateway(from: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
           "metadata": {"name": "public", "namespace": "infra"},
           "spec": {"gatewayClassName": "example", "listeners": [
               {"name": "http", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": from}}}]}})
}

fn route(backends: Value, section: Option<&str>) -> Value {
    let mut parent = json!({"name": "public", "namespace": "infra"});
    if let Some(section) = section {
        parent["sectionName"] = json!(section);
    }
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
           "metadata": {"name": "shop", "namespace": "web"},
           "spec": {"parentRefs": [parent], "rules": [{"backendRefs": backends}]}})
}

fn service(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
}

/// The (status, reason) of each condition of the route's only parent.
fn conditions(server: &ApiServer) -> Vec<(String, String, String)> {
    let route = server
        .list("gateway.networking.k8s.io/v1", "HTTPRoute")
        .into_iter()
        .next()
        .unwrap();
    let parents = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(parents.len(), 1, "{route:#}");
    let generation = route["metadata"]["generation"].as_i64();
    parents[0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["observedGeneration"].as_i64(), generation);
            (
                c["type"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(conditions: &[(String, String, String)], kind: &str, status: &str, reason: &str) -> bool {
    conditions
        .iter()
        .any(|(k, s, r)| k == kind && s == status && r == reason)
}

#[tokio::test]
async fn an_admitted_route_with_its_services_is_accepted_and_resolved() {
    let server = ApiServer::start().await.unwrap();
    register_gateway_api(&server);
    let kcm = server.controllers(Duration::from_secs(1));
    server.put(gateway("All"));
    server.put(service("web", "shop"));
    server.put(route(json!([{"name": "shop", "port": 80}]), None));
    kcm.step(t0());
    let seen = conditions(&server);
    assert!(has(&seen, "Accepted", "True", "Accepted"), "{seen:?}");
    assert!(
        has(&seen, "ResolvedRefs", "True", "ResolvedRefs"),
        "{seen:?}"
    );
    assert!(
        !kcm.step(t0()),
        "a fixed point: the status is not rewritten"
    );
}

#[tokio::test]
async fn what_an_implementation_refuses_is_reported_with_its_reason() {
    let cases = [
        (
            "Same",
            json!([{"name": "shop", "port": 80}]),
            None,
            "Accepted",
            "NotAllowedByListeners",
        ),
        (
            "All",
            json!([{"name": "shop", "port": 80}]),
            Some("https"),
            "Accepted",
            "NoMatchingParent",
        ),
        (
            "All",
            json!([{"name": "missing", "port": 80}]),
            None,
            "ResolvedRefs",
            "BackendNotFound",
        ),
        (
            "All",
            json!([{"name": "shop", "namespace": "other", "port": 80}]),
            None,
            "ResolvedRefs",
            "RefNotPermitted",
        ),
        (
            "All",
            json!([{"group": "example.com", "kind": "Bucket", "name": "shop"}]),
            None,
            "ResolvedRefs",
            "InvalidKind",
        ),
    ];
    for (from, backends, section, kind, reason) in cases {
        let server = ApiServer::start().await.unwrap();
        register_gateway_api(&server);
        let kcm = server.controllers(Duration::from_secs(1));
        server.put(gateway(from));
        server.put(service("web", "shop"));
        server.put(service("other", "shop"));
        server.put(route(backends, section));
        kcm.step(t0());
        let seen = conditions(&server);
        assert!(has(&seen, kind, "False", reason), "{reason}: {seen:?}");
    }
}

#[tokio::test]
async fn a_reference_grant_resolves_a_backend_in_another_namespace() {
    let server = ApiServer::start().await.unwrap();
    register_gateway_api(&server);
    let kcm = server.controllers(Duration::from_secs(1));
    server.put(gateway("All"));
    server.put(service("other", "shop"));
    server.put(route(
        json!([{"name": "shop", "namespace": "other", "port": 80}]),
        None,
    ));
    server.put(json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "web-routes", "namespace": "other"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "web"}],
                 "to": [{"group": "", "kind": "Service"}]}}));
    kcm.step(t0());
    let seen = conditions(&server);
    assert!(
        has(&seen, "ResolvedRefs", "True", "ResolvedRefs"),
        "{seen:?}"
    );
}
