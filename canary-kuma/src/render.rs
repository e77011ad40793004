//! Rendering: a Rollout, a route and the stable Service → the canary Service, the route object
//! and the stable Service's selector. Pure; the provider and `canary render` both use it.
//!
//! The canary gets its own Service (`<service>-canary`), so Kuma sees it as its own service
//! (a `MeshService`, or the `kuma.io/service` tag `<service>-canary_<namespace>_svc_<port>`);
//! the stable Service is narrowed to the stable pods while canary pods run (see
//! [`canary_core::services`]). The route:
//!
//! - **MeshHTTPRoute** `<service>-canary` in the Rollout's namespace (so services of one name
//!   in two namespaces never meet), in the mesh of `kuma.io/mesh`, for callers of the service
//!   (`to: MeshService` selected by `kuma.io/display-name` and `k8s.kuma.io/namespace`): a rule
//!   sending the matching requests to the canary, and a catch-all rule with weighted
//!   `backendRefs` to stable and canary and, for mirror releases, a `RequestMirror` filter.
//! - **TrafficRoute** `<service>.<namespace>` (legacy, cluster-scoped): a weighted split
//!   between the two `kuma.io/service` tags.
//!
//! A route with no traffic for the canary needs no route object and no canary Service: the
//! service's own Service reaches the stable pods.

use canary_core::objects::{Objects, generated_metadata};
use canary_core::services::{Split, canary_service_name, split};
use canary_core::{ProviderKind, RolloutPlan, RouteState};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::matches::{catch_all, kuma_match};

/// Annotation on the route object: the route canary applied, as JSON.
pub const ROUTE_ANNOTATION: &str = "canary.rs/route";
/// The label that puts a Kuma resource in a mesh.
pub const MESH_LABEL: &str = "kuma.io/mesh";

/// The objects that put a route in effect: the canary Service, the MeshHTTPRoute or
/// TrafficRoute (`route`) and the stable Service's selector.
pub type Rendered = Split;

/// The mesh of `plan`.
pub fn mesh(plan: &RolloutPlan) -> &str {
    plan.rollout
        .spec
        .traffic_routing
        .kuma
        .as_ref()
        .and_then(|kuma| kuma.mesh.as_deref())
        .unwrap_or("default")
}

/// The route object's kind and name.
pub fn route_name(plan: &RolloutPlan) -> (&'static str, String) {
    let service = &plan.rollout.spec.service.name;
    match plan.provider {
        ProviderKind::KumaTrafficRoute => ("TrafficRoute", format!("{service}.{}", plan.namespace)),
        _ => ("MeshHTTPRoute", format!("{service}-canary")),
    }
}

/// The `kuma.io/service` tag of a Kubernetes Service on Kubernetes.
pub fn service_tag(service: &str, namespace: &str, port: i64) -> String {
    format!("{service}_{namespace}_svc_{port}")
}

/// The objects for `route`. `objects` holds the stable Service, and, to narrow it, the stable
/// Deployment with its current ReplicaSet (and the canary Deployment when it runs).
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    split(plan, route, objects, || {
        Ok(match plan.provider {
            ProviderKind::KumaTrafficRoute => traffic_route(plan, route),
            _ => mesh_http_route(plan, route),
        })
    })
    .map_err(Error::Input)
}

fn metadata(plan: &RolloutPlan, name: &str, route: &RouteState) -> Value {
    let mut metadata = generated_metadata(plan, name);
    metadata["labels"][MESH_LABEL] = json!(mesh(plan));
    metadata["annotations"] =
        json!({ROUTE_ANNOTATION: serde_json::to_string(route).unwrap_or_default()});
    metadata
}

fn mesh_http_route(plan: &RolloutPlan, route: &RouteState) -> Value {
    let namespace = &plan.namespace;
    let port = plan.rollout.spec.service.port;
    let reference = |service: &str| {
        json!({
            "kind": "MeshService",
            "labels": {"kuma.io/display-name": service, "k8s.kuma.io/namespace": namespace},
        })
    };
    let backend = |service: &str, weight: u32| {
        let mut backend = reference(service);
        backend["port"] = json!(port);
        backend["weight"] = json!(weight);
        backend
    };
    let stable = &plan.rollout.spec.service.name;
    let canary = canary_service_name(plan);
    let share = route.whole_percent();
    let mut rules = Vec::new();
    if !route.matches.is_empty() {
        rules.push(json!({
            "matches": route.matches.iter().map(kuma_match).collect::<Vec<_>>(),
            "default": {"backendRefs": [backend(&canary, 100)]},
        }));
    }
    let mut weighted = json!({
        "matches": [catch_all()],
        "default": {"backendRefs": [backend(stable, 100 - share), backend(&canary, share)]},
    });
    if let Some(mirror) = route.mirror {
        let mut target = reference(&canary);
        target["port"] = json!(port);
        weighted["default"]["filters"] = json!([{
            "type": "RequestMirror",
            "requestMirror": {"backendRef": target, "percentage": mirror},
        }]);
    }
    rules.push(weighted);
    let (kind, name) = route_name(plan);
    json!({
        "apiVersion": "kuma.io/v1alpha1",
        "kind": kind,
        "metadata": metadata(plan, &name, route),
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": reference(stable), "rules": rules}],
        },
    })
}

fn traffic_route(plan: &RolloutPlan, route: &RouteState) -> Value {
    let spec = &plan.rollout.spec.service;
    let stable = service_tag(&spec.name, &plan.namespace, spec.port);
    let canary = service_tag(&canary_service_name(plan), &plan.namespace, spec.port);
    let share = route.whole_percent();
    let (kind, name) = route_name(plan);
    let mut metadata = metadata(plan, &name, route);
    // Cluster-scoped: no namespace; the mesh is a field of its own.
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.remove("namespace");
    }
    json!({
        "apiVersion": "kuma.io/v1alpha1",
        "kind": kind,
        "mesh": mesh(plan),
        "metadata": metadata,
        "spec": {
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": stable}}],
            "conf": {"split": [
                {"weight": 100 - share, "destination": {"kuma.io/service": stable}},
                {"weight": share, "destination": {"kuma.io/service": canary}},
            ]},
        },
    })
}

/// The route canary last applied to `object`, from its annotation.
pub fn applied_route(object: &Value) -> Option<RouteState> {
    let text = object
        .pointer("/metadata/annotations")?
        .get(ROUTE_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// The canary weight `object` really sends (matches and mirror are not read back): the canary
/// share of its catch-all rule or split.
pub fn observed_route(plan: &RolloutPlan, object: &Value) -> Option<RouteState> {
    let canary = canary_service_name(plan);
    let spec = &plan.rollout.spec.service;
    let canary_tag = service_tag(&canary, &plan.namespace, spec.port);
    let entries: Vec<(bool, u64)> = match plan.provider {
        ProviderKind::KumaTrafficRoute => object["spec"]["conf"]["split"]
            .as_array()?
            .iter()
            .map(|s| {
                let to_canary = s["destination"]["kuma.io/service"].as_str() == Some(&canary_tag);
                (to_canary, s["weight"].as_u64().unwrap_or(0))
            })
            .collect(),
        _ => object["spec"]["to"][0]["rules"].as_array()?.last()?["default"]["backendRefs"]
            .as_array()?
            .iter()
            .map(|b| {
                let to_canary =
                    b["labels"]["kuma.io/display-name"].as_str() == Some(canary.as_str());
                (to_canary, b["weight"].as_u64().unwrap_or(1))
            })
            .collect(),
    };
    let total: u64 = entries.iter().map(|(_, w)| w).sum();
    let to_canary: u64 = entries.iter().filter(|(c, _)| *c).map(|(_, w)| w).sum();
    let weight = (to_canary * 100).checked_div(total).unwrap_or(0);
    Some(RouteState::weighted(u32::try_from(weight).unwrap_or(100)))
}
