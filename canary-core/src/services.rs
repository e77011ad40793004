//! Routing by Service: a canary Service beside the stable one, for the providers that send
//! traffic to Services rather than to pod subsets (ingress-nginx, Kuma).
//!
//! - **Canary Service** `<service>-canary`: the stable Service's ports, its selector plus
//!   `canary.rs/role: canary` (the label every canary pod carries).
//! - **Stable Service**: canary pods carry the stable Service's labels too, so while they run
//!   its selector is narrowed to the `pod-template-hash` of the stable Deployment's current
//!   ReplicaSet (one key, marked by the annotation `canary.rs/narrowed-to`), and given back as
//!   written when they are gone.

use serde_json::{Value, json};

use crate::RolloutPlan;
use crate::objects::{Objects, POD_TEMPLATE_HASH, clean, generated_metadata};

/// The label every canary pod carries (set by the Deployment workload provider).
pub const ROLE_LABEL: &str = "canary.rs/role";
/// Annotation on the stable Service while canary narrows its selector: the hash it added.
pub const NARROWED_ANNOTATION: &str = "canary.rs/narrowed-to";

/// What the stable Service's selector should be.
#[derive(Debug, Clone, PartialEq)]
pub enum StableSelector {
    /// As the user wrote it (no canary pods run).
    AsWritten,
    /// Narrowed to the stable pods: the whole Service as it would be.
    Narrowed(Value),
    /// Canary pods run but the stable pods' hash is not known (no current ReplicaSet of the
    /// stable Deployment among the objects); says why.
    Unknown(String),
}

impl StableSelector {
    /// True when the live stable Service `live` has this selector.
    pub fn in_effect(&self, live: &Value) -> bool {
        match self {
            StableSelector::Narrowed(service) => {
                crate::objects::includes(&live["spec"]["selector"], &service["spec"]["selector"])
                    && live["metadata"]["annotations"][NARROWED_ANNOTATION]
                        == service["metadata"]["annotations"][NARROWED_ANNOTATION]
            }
            StableSelector::AsWritten => {
                live["metadata"]["annotations"][NARROWED_ANNOTATION].is_null()
            }
            StableSelector::Unknown(_) => false,
        }
    }
}

/// What a Service-based provider applies for a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `<service>-canary`, when the route sends traffic to the canary.
    pub canary_service: Option<Value>,
    /// The provider's own route object (canary Ingress, MeshHTTPRoute…), when the route sends
    /// traffic to the canary.
    pub route: Option<Value>,
    /// The stable Service's selector.
    pub stable_selector: StableSelector,
}

impl Split {
    /// The objects in the order they are applied: the canary Service before the route that
    /// sends traffic to it, then the narrowed stable Service.
    pub fn objects(&self) -> Vec<Value> {
        let narrowed = match &self.stable_selector {
            StableSelector::Narrowed(service) => Some(service.clone()),
            _ => None,
        };
        [self.canary_service.clone(), self.route.clone(), narrowed]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The split for `route`: no canary objects while the route keeps all traffic on stable (the
/// stable Service stays narrowed while canary pods still run); otherwise the canary Service
/// and the provider's route object, which `route_object` builds. Errors say what is missing.
pub fn split(
    plan: &RolloutPlan,
    route: &crate::RouteState,
    objects: &Objects,
    route_object: impl FnOnce() -> Result<Value, String>,
) -> Result<Split, String> {
    let runs = canary_runs(plan, objects);
    if route.is_stable_only() && !runs {
        return Ok(Split {
            canary_service: None,
            route: None,
            stable_selector: StableSelector::AsWritten,
        });
    }
    let service = stable_service(plan, objects)?;
    let stable_selector = stable_selector(plan, service, objects);
    if route.is_stable_only() {
        return Ok(Split {
            canary_service: None,
            route: None,
            stable_selector,
        });
    }
    Ok(Split {
        canary_service: Some(canary_service(plan, service)?),
        route: Some(route_object()?),
        stable_selector,
    })
}

/// The canary Service's name.
pub fn canary_service_name(plan: &RolloutPlan) -> String {
    format!("{}-canary", plan.rollout.spec.service.name)
}

/// True when the canary Deployment is among `objects`.
pub fn canary_runs(plan: &RolloutPlan, objects: &Objects) -> bool {
    objects
        .get("Deployment", &plan.namespace, &plan.canary_workload())
        .is_some()
}

/// The stable Service of `plan` among `objects`, or why it is needed.
pub fn stable_service<'a>(plan: &RolloutPlan, objects: &'a Objects) -> Result<&'a Value, String> {
    let name = &plan.rollout.spec.service.name;
    objects
        .get("Service", &plan.namespace, name)
        .ok_or_else(|| {
            format!(
                "the Service {}/{name} is needed: the canary Service copies its ports and selector \
             (give it with --objects, or in the rollout file)",
                plan.namespace
            )
        })
}

/// The canary Service, from the stable one.
pub fn canary_service(plan: &RolloutPlan, stable: &Value) -> Result<Value, String> {
    let mut selector = stable["spec"]["selector"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if selector.is_empty() {
        return Err(format!(
            "Service {}/{} has no selector: canary can only split traffic for a Service that \
             selects its pods",
            plan.namespace, plan.rollout.spec.service.name
        ));
    }
    // A stable selector canary narrowed carries the stable hash; the canary's must not.
    selector.remove(POD_TEMPLATE_HASH);
    selector.insert(ROLE_LABEL.to_owned(), json!("canary"));
    let ports: Vec<Value> = stable["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|port| {
            let mut port = port.as_object().cloned().unwrap_or_default();
            port.remove("nodePort");
            Value::Object(port)
        })
        .collect();
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": generated_metadata(plan, &canary_service_name(plan)),
        "spec": {"type": "ClusterIP", "selector": selector, "ports": ports},
    }))
}

/// The stable Service narrowed to the stable pods (while canary pods run or get traffic).
pub fn stable_selector(plan: &RolloutPlan, service: &Value, objects: &Objects) -> StableSelector {
    let workload = &plan.rollout.spec.workload_ref.name;
    let hash = objects
        .get("Deployment", &plan.namespace, workload)
        .and_then(|deployment| objects.pod_template_hash(deployment, &plan.namespace));
    match hash {
        Some(hash) => {
            let mut narrowed = clean(service);
            narrowed["spec"]["selector"][POD_TEMPLATE_HASH] = json!(hash);
            let annotations = &mut narrowed["metadata"]["annotations"];
            if !annotations.is_object() {
                *annotations = json!({});
            }
            annotations[NARROWED_ANNOTATION] = json!(hash);
            StableSelector::Narrowed(narrowed)
        }
        None => StableSelector::Unknown(format!(
            "the Service {}/{} selects canary pods as well as stable ones; narrowing it needs \
             the stable Deployment {workload} and its current ReplicaSet",
            plan.namespace, plan.rollout.spec.service.name
        )),
    }
}

/// What canary applies to the stable Service for `selector` (server-side apply of its own
/// fields only): the hash key and annotation, or nothing at all, which gives them up.
pub fn selector_patch(plan: &RolloutPlan, selector: &StableSelector) -> Value {
    let mut patch = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": plan.rollout.spec.service.name, "namespace": plan.namespace},
    });
    if let StableSelector::Narrowed(service) = selector {
        let hash = &service["metadata"]["annotations"][NARROWED_ANNOTATION];
        patch["metadata"]["annotations"] = json!({NARROWED_ANNOTATION: hash});
        patch["spec"] = json!({"selector": {POD_TEMPLATE_HASH: hash}});
    }
    patch
}
