//! Rendering: a Rollout, a route and the stable Ingress and Service → the canary Service, the
//! canary Ingress, and the stable Service's selector. Pure; the provider and `canary render`
//! both use it.
//!
//! - **Canary Service** `<service>-canary` and the **stable Service**'s selector narrowed while
//!   canary pods run: see [`canary_core::services`].
//! - **Canary Ingress** `<ingress>-canary`: the stable Ingress's rules that send traffic to the
//!   stable Service, pointed at the canary Service; its class, TLS, labels and non-canary
//!   annotations; and the canary annotations of the route.
//!
//! A route with no traffic for the canary needs no canary objects.

use canary_core::objects::{Objects, generated_metadata};
use canary_core::services::{Split, canary_service_name, split};
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Map, Value, json};

use crate::annotations::{Canary, DEFAULT_PREFIX};
use crate::error::{Error, Result};

/// An annotation a copy of the stable Ingress must not carry.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The objects that put a route in effect: the canary Service, the canary Ingress (`route`)
/// and the stable Service's selector.
pub type Rendered = Split;

/// The annotation prefix of `plan`'s ingress-nginx.
pub fn prefix(plan: &RolloutPlan) -> &str {
    plan.rollout
        .spec
        .traffic_routing
        .nginx
        .as_ref()
        .and_then(|nginx| nginx.annotation_prefix.as_deref())
        .unwrap_or(DEFAULT_PREFIX)
}

/// The stable Ingress's name.
pub fn ingress_name(plan: &RolloutPlan) -> String {
    plan.rollout
        .spec
        .traffic_routing
        .nginx
        .as_ref()
        .map(|nginx| nginx.ingress.clone())
        .unwrap_or_else(|| plan.rollout.spec.service.name.clone())
}

/// The canary Ingress's name.
pub fn canary_ingress_name(plan: &RolloutPlan) -> String {
    format!("{}-canary", ingress_name(plan))
}

fn needed<'a>(
    objects: &'a Objects,
    plan: &RolloutPlan,
    kind: &str,
    name: &str,
    why: &str,
) -> Result<&'a Value, String> {
    objects.get(kind, &plan.namespace, name).ok_or_else(|| {
        format!(
            "the {kind} {}/{name} is needed: {why} (give it with --objects, or in the rollout file)",
            plan.namespace
        )
    })
}

/// The objects for `route`. `objects` holds the stable Service and Ingress, and, to narrow the
/// stable Service, the stable Deployment with its current ReplicaSet (and the canary
/// Deployment when it runs).
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    split(plan, route, objects, || {
        let ingress = needed(
            objects,
            plan,
            "Ingress",
            &ingress_name(plan),
            "the canary Ingress is cloned from it",
        )?;
        canary_ingress(plan, route, ingress)
    })
    .map_err(Error::Input)
}

fn canary_ingress(plan: &RolloutPlan, route: &RouteState, stable: &Value) -> Result<Value, String> {
    let service = &plan.rollout.spec.service.name;
    let canary_service = canary_service_name(plan);
    let canary = Canary::new(prefix(plan));
    let mut rules = Vec::new();
    for rule in stable["spec"]["rules"].as_array().into_iter().flatten() {
        let paths: Vec<Value> = rule["http"]["paths"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|path| path["backend"]["service"]["name"] == service.as_str())
            .map(|path| {
                let mut path = path.clone();
                path["backend"]["service"]["name"] = json!(canary_service);
                path
            })
            .collect();
        if !paths.is_empty() {
            let mut rule = rule.as_object().cloned().unwrap_or_default();
            rule.insert("http".to_owned(), json!({"paths": paths}));
            rules.push(Value::Object(rule));
        }
    }
    if rules.is_empty() {
        return Err(format!(
            "Ingress {}/{} has no path to the Service {service}; its canary would route nothing",
            plan.namespace,
            ingress_name(plan)
        ));
    }
    let mut metadata = generated_metadata(plan, &canary_ingress_name(plan));
    let mut labels = stable["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.extend(metadata["labels"].as_object().cloned().unwrap_or_default());
    metadata["labels"] = Value::Object(labels);
    let mut annotations: Map<String, Value> = stable["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| !canary.is_canary_key(key) && key.as_str() != LAST_APPLIED)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    annotations.extend(canary.for_route(route));
    metadata["annotations"] = Value::Object(annotations);
    let mut spec = Map::new();
    for field in ["ingressClassName", "tls"] {
        if let Some(value) = stable["spec"].get(field) {
            spec.insert(field.to_owned(), value.clone());
        }
    }
    spec.insert("rules".to_owned(), Value::Array(rules));
    Ok(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }))
}
