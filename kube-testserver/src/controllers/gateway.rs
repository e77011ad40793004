//! A conformant Gateway API implementation's route status (standard channel v1.6.1): for every
//! HTTPRoute and GRPCRoute, one `status.parents[]` entry per `parentRefs` entry naming a
//! Gateway that exists, with the conditions an implementation reports
//! (`apis/v1/shared_types.go` of kubernetes-sigs/gateway-api, and its conformance tests):
//!
//! - `Accepted`: `True` (`Accepted`) when a listener admits the route: its `sectionName` (if
//!   set) names the listener, the listener's `allowedRoutes.namespaces.from` (`Same` by
//!   default, `All`, or `Selector` on the route's Namespace labels) takes the route's namespace,
//!   and the hostnames intersect. Otherwise `False`, with `NoMatchingParent` (no listener of
//!   that name), `NotAllowedByListeners` or `NoMatchingListenerHostname`.
//! - `ResolvedRefs`: `True` (`ResolvedRefs`) when every backend (of the rules and of their
//!   `RequestMirror` filters) is a core Service that exists and, in another namespace, that a
//!   `ReferenceGrant` there lets the route's namespace use; otherwise `False` with `InvalidKind`,
//!   `RefNotPermitted` or `BackendNotFound`. A route can be accepted with unresolved references.
//! - Every condition carries the route's `metadata.generation` as `observedGeneration`.
//!
//! `controllerName` is the GatewayClass's (the Gateway's `gatewayClassName`), or
//! [`CONTROLLER_NAME`] when the class is not in the store. The status is written only when a
//! condition changes, and a condition keeps its `lastTransitionTime` while its status stays.

use serde_json::{Value, json};

use super::{Pass, meta};
use crate::store::Part;

/// The API group of the Gateway API.
const GROUP: &str = "gateway.networking.k8s.io";

/// The controller name reported when the Gateway's class is not in the store.
pub const CONTROLLER_NAME: &str = "example.net/gateway-controller";

/// The field manager of the status writes.
const MANAGER: &str = "gateway-controller";

/// Writes the status of every HTTPRoute and GRPCRoute.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    let kinds = [
        pass.registry.by_plural(GROUP, "v1", "httproutes"),
        pass.registry.by_plural(GROUP, "v1", "grpcroutes"),
    ];
    let Some(gateways) = pass.registry.by_plural(GROUP, "v1", "gateways") else {
        return;
    };
    for kind in kinds.into_iter().flatten() {
        for route in pass.inner.list(&kind, None) {
            let parents = parents(pass, &gateways, &route);
            let mut next = (*route).clone();
            next["status"] = json!({"parents": parents});
            if same_status(&route, &next) {
                continue;
            }
            pass.update(&kind, next, Part::Status, MANAGER);
        }
    }
}

/// Whether the conditions are the same but for their times.
fn same_status(before: &Value, after: &Value) -> bool {
    let strip = |object: &Value| {
        let mut status = object["status"].clone();
        if let Some(parents) = status["parents"].as_array_mut() {
            for parent in parents {
                if let Some(conditions) = parent["conditions"].as_array_mut() {
                    for condition in conditions {
                        if let Some(condition) = condition.as_object_mut() {
                            condition.remove("lastTransitionTime");
                        }
                    }
                }
            }
        }
        status
    };
    strip(before) == strip(after)
}

/// The `status.parents` of `route`.
fn parents(pass: &Pass<'_>, gateways: &super::ResourceType, route: &Value) -> Vec<Value> {
    let namespace = meta::namespace(route);
    let generation = route["metadata"]["generation"].as_i64().unwrap_or(1);
    let resolved = resolved_refs(pass, route);
    let mut out = Vec::new();
    for parent in route["spec"]["parentRefs"].as_array().into_iter().flatten() {
        let group = parent["group"].as_str().unwrap_or(GROUP);
        let kind = parent["kind"].as_str().unwrap_or("Gateway");
        if group != GROUP || kind != "Gateway" {
            continue;
        }
        let gateway_namespace = parent["namespace"].as_str().unwrap_or(namespace);
        let Some(name) = parent["name"].as_str() else {
            continue;
        };
        let Some(gateway) = pass
            .inner
            .list(gateways, Some(gateway_namespace))
            .into_iter()
            .find(|g| meta::name(g) == name)
        else {
            continue;
        };
        let accepted = accepted(pass, &gateway, parent, route);
        let previous = previous_conditions(route, parent);
        let condition = |kind: &str, result: &Result<(), (&str, String)>, ok: &str| {
            let (status, reason, message) = match result {
                Ok(()) => ("True", ok.to_owned(), ok.to_owned()),
                Err((reason, message)) => ("False", (*reason).to_owned(), message.clone()),
            };
            let since = previous
                .iter()
                .find(|c| c["type"] == kind && c["status"] == status)
                .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
                .unwrap_or_else(|| pass.now.to_string());
            json!({"type": kind, "status": status, "reason": reason, "message": message,
                   "observedGeneration": generation, "lastTransitionTime": since})
        };
        out.push(json!({
            "parentRef": parent,
            "controllerName": controller_name(pass, &gateway),
            "conditions": [
                condition("Accepted", &accepted, "Accepted"),
                condition("ResolvedRefs", &resolved, "ResolvedRefs"),
            ],
        }));
    }
    out
}

/// The conditions the route's status holds for `parent`.
fn previous_conditions(route: &Value, parent: &Value) -> Vec<Value> {
    route["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["parentRef"] == *parent)
        .and_then(|entry| entry["conditions"].as_array().cloned())
        .unwrap_or_default()
}

fn controller_name(pass: &Pass<'_>, gateway: &Value) -> String {
    let class = gateway["spec"]["gatewayClassName"]
        .as_str()
        .unwrap_or_default();
    pass.registry
        .by_plural(GROUP, "v1", "gatewayclasses")
        .and_then(|kind| {
            pass.inner
                .list(&kind, None)
                .into_iter()
                .find(|c| meta::name(c) == class)
        })
        .and_then(|c| c["spec"]["controllerName"].as_str().map(str::to_owned))
        .unwrap_or_else(|| CONTROLLER_NAME.to_owned())
}

/// Whether a listener of `gateway` admits `route` through `parent`.
fn accepted(
    pass: &Pass<'_>,
    gateway: &Value,
    parent: &Value,
    route: &Value,
) -> Result<(), (&'static str, String)> {
    let listeners: Vec<&Value> = gateway["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| {
            parent["sectionName"]
                .as_str()
                .is_none_or(|section| l["name"] == section)
        })
        .filter(|l| {
            parent["port"]
                .as_i64()
                .is_none_or(|port| l["port"].as_i64() == Some(port))
        })
        .collect();
    if listeners.is_empty() {
        return Err((
            "NoMatchingParent",
            "no listener of the Gateway has that sectionName or port".to_owned(),
        ));
    }
    let allowed: Vec<&&Value> = listeners
        .iter()
        .filter(|l| allows(pass, l, meta::namespace(gateway), meta::namespace(route)))
        .collect();
    if allowed.is_empty() {
        return Err((
            "NotAllowedByListeners",
            format!(
                "no listener takes routes from namespace {}",
                meta::namespace(route)
            ),
        ));
    }
    let hostnames: Vec<&str> = route["spec"]["hostnames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let intersects = allowed.iter().any(|l| match l["hostname"].as_str() {
        None => true,
        Some(listener) => {
            hostnames.is_empty() || hostnames.iter().any(|host| hosts_intersect(listener, host))
        }
    });
    if intersects {
        Ok(())
    } else {
        Err((
            "NoMatchingListenerHostname",
            "no listener hostname matches the route's hostnames".to_owned(),
        ))
    }
}

fn allows(pass: &Pass<'_>, listener: &Value, gateway_ns: &str, route_ns: &str) -> bool {
    let namespaces = &listener["allowedRoutes"]["namespaces"];
    match namespaces["from"].as_str().unwrap_or("Same") {
        "All" => true,
        "Selector" => {
            let wanted = namespaces["selector"]["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let labels = pass
                .registry
                .by_plural("", "v1", "namespaces")
                .and_then(|kind| {
                    pass.inner
                        .list(&kind, None)
                        .into_iter()
                        .find(|n| meta::name(n) == route_ns)
                })
                .map(|n| n["metadata"]["labels"].clone())
                .unwrap_or(Value::Null);
            !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k] == *v)
        }
        _ => gateway_ns == route_ns,
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

fn hosts_intersect(a: &str, b: &str) -> bool {
    a == b || host_matches(a, b) || host_matches(b, a)
}

/// Whether every backend of `route` resolves.
fn resolved_refs(pass: &Pass<'_>, route: &Value) -> Result<(), (&'static str, String)> {
    let namespace = meta::namespace(route);
    let mut backends = Vec::new();
    for rule in route["spec"]["rules"].as_array().into_iter().flatten() {
        for backend in rule["backendRefs"].as_array().into_iter().flatten() {
            backends.push(backend.clone());
        }
        for filter in rule["filters"].as_array().into_iter().flatten() {
            if let Some(backend) = filter.pointer("/requestMirror/backendRef") {
                backends.push(backend.clone());
            }
        }
    }
    let services = pass.registry.by_plural("", "v1", "services");
    for backend in &backends {
        let group = backend["group"].as_str().unwrap_or("");
        let kind = backend["kind"].as_str().unwrap_or("Service");
        let name = backend["name"].as_str().unwrap_or_default();
        if !group.is_empty() || kind != "Service" {
            return Err((
                "InvalidKind",
                format!("{group}/{kind} {name} is not a Service"),
            ));
        }
        let target = backend["namespace"].as_str().unwrap_or(namespace);
        if target != namespace && !granted(pass, route, target, name) {
            return Err((
                "RefNotPermitted",
                format!("no ReferenceGrant in {target} allows Service {name}"),
            ));
        }
        let found = services.as_ref().is_some_and(|kind| {
            pass.inner
                .list(kind, Some(target))
                .iter()
                .any(|s| meta::name(s) == name)
        });
        if !found {
            return Err((
                "BackendNotFound",
                format!("Service {target}/{name} not found"),
            ));
        }
    }
    Ok(())
}

fn granted(pass: &Pass<'_>, route: &Value, target: &str, name: &str) -> bool {
    let from_ns = meta::namespace(route);
    let route_kind = route["kind"].as_str().unwrap_or("HTTPRoute");
    let grants = ["v1beta1", "v1"]
        .into_iter()
        .filter_map(|version| pass.registry.by_plural(GROUP, version, "referencegrants"))
        .flat_map(|kind| pass.inner.list(&kind, Some(target)));
    grants.into_iter().any(|grant| {
        let from = grant["spec"]["from"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["group"] == GROUP && f["kind"] == route_kind && f["namespace"] == from_ns);
        let to = grant["spec"]["to"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["group"] == ""
                    && t["kind"] == "Service"
                    && t["name"].as_str().is_none_or(|n| n == name)
            });
        from && to
    })
}
