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
use canary_core::services::{
    StableSelector, canary_runs, canary_service, canary_service_name, stable_selector,
    stable_service,
};
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Map, Value, json};

use crate::annotations::{Canary, DEFAULT_PREFIX};
use crate::error::{Error, Result};

/// An annotation a copy of the stable Ingress must not carry.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The objects that put a route in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `<service>-canary`, when the route sends traffic to the canary.
    pub canary_service: Option<Value>,
    /// `<ingress>-canary`, when the route sends traffic to the canary.
    pub canary_ingress: Option<Value>,
    /// The stable Service's selector.
    pub stable_selector: StableSelector,
}

impl Rendered {
    /// The objects in the order they are applied: the canary Service before the Ingress that
    /// routes to it, then the narrowed stable Service.
    pub fn objects(&self) -> Vec<Value> {
        let narrowed = match &self.stable_selector {
            StableSelector::Narrowed(service) => Some(service.clone()),
            _ => None,
        };
        [
            self.canary_service.clone(),
            self.canary_ingress.clone(),
            narrowed,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

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
) -> Result<&'a Value> {
    objects.get(kind, &plan.namespace, name).ok_or_else(|| {
        Error::Input(format!(
            "the {kind} {}/{name} is needed: {why} (give it with --objects, or in the rollout file)",
            plan.namespace
        ))
    })
}

/// The objects for `route`. `objects` holds the stable Service and Ingress, and, to narrow the
/// stable Service, the stable Deployment with its current ReplicaSet (and the canary
/// Deployment when it runs).
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    let runs = canary_runs(plan, objects);
    if route.is_stable_only() && !runs {
        return Ok(Rendered {
            canary_service: None,
            canary_ingress: None,
            stable_selector: StableSelector::AsWritten,
        });
    }
    let service = stable_service(plan, objects).map_err(Error::Input)?;
    let stable_selector = stable_selector(plan, service, objects, true);
    if route.is_stable_only() {
        return Ok(Rendered {
            canary_service: None,
            canary_ingress: None,
            stable_selector,
        });
    }
    let ingress = needed(
        objects,
        plan,
        "Ingress",
        &ingress_name(plan),
        "the canary Ingress is cloned from it",
    )?;
    Ok(Rendered {
        canary_service: Some(canary_service(plan, service).map_err(Error::Input)?),
        canary_ingress: Some(canary_ingress(plan, route, ingress)?),
        stable_selector,
    })
}

fn canary_ingress(plan: &RolloutPlan, route: &RouteState, stable: &Value) -> Result<Value> {
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
        return Err(Error::Input(format!(
            "Ingress {}/{} has no path to the Service {service}; its canary would route nothing",
            plan.namespace,
            ingress_name(plan)
        )));
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
