//! Rendering: a Rollout, a route and the stable Ingress and Service → the canary Service and
//! the canary Ingress. Pure; the provider and `canary render` both use it.
//!
//! - **Canary Service** `<service>-canary`; the **stable Service** is never edited (the
//!   canary's pods leave its selector): see [`canary_core::k8s::services`].
//! - **Canary Ingress** `<ingress>-<service>-canary` (`<ingress>-canary` when the stable
//!   Ingress routes to the Rollout's Service alone, see [`canary_ingress_name`]): the stable
//!   Ingress's rules that send traffic to the stable Service, pointed at the canary Service;
//!   its class and TLS and its ingress-nginx annotations other than the canary ones; canary's
//!   own labels (never the stable Ingress's, which carry GitOps tracking labels); and the
//!   canary annotations of the route.
//!
//! A route with no traffic for the canary needs no canary objects.

use canary_core::k8s::objects::{Objects, ROLLOUT_LABEL, generated, generated_metadata};
use canary_core::k8s::services::{Split, canary_service_name, split};
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Map, Value, json};

use crate::annotations::{Canary, DEFAULT_PREFIX};
use crate::error::{Error, Result};

/// The legacy annotation that picks the ingress controller of an Ingress.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

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

/// The longest object name Kubernetes takes (a DNS-1123 subdomain).
const MAX_NAME: usize = 253;

/// The canary Ingress's name, for the stable Ingress `stable` as it is now.
///
/// Rollouts whose Services share one Ingress each need their own canary Ingress (with the
/// paths to their Service only): it is `<ingress>-<service>-canary`. When every backend of
/// the stable Ingress is the Rollout's Service no other Rollout can need one, and the name is
/// the shorter `<ingress>-canary` (the usual name for a single-Service Ingress). A name over
/// 253 characters is cut and given a hash of the whole, so it stays unique.
pub fn canary_ingress_name(plan: &RolloutPlan, stable: Option<&Value>) -> String {
    let [single, shared] = canary_ingress_names(plan);
    if stable.is_some_and(|stable| only_backend(stable, &plan.rollout.spec.service.name)) {
        single
    } else {
        shared
    }
}

/// Both names the canary Ingress of `plan` can have (see [`canary_ingress_name`]): for a
/// stable Ingress with the Rollout's Service alone, and for one shared with other Services.
pub fn canary_ingress_names(plan: &RolloutPlan) -> [String; 2] {
    let ingress = ingress_name(plan);
    let service = &plan.rollout.spec.service.name;
    [
        bounded(&ingress, "-canary"),
        bounded(&format!("{ingress}-{service}"), "-canary"),
    ]
}

/// `base` + `suffix`, cut to [`MAX_NAME`] characters with a hash of the whole when longer.
fn bounded(base: &str, suffix: &str) -> String {
    let whole = format!("{base}{suffix}");
    if whole.len() <= MAX_NAME {
        return whole;
    }
    let hash = whole.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    let keep = MAX_NAME - suffix.len() - 9;
    let cut: String = base.chars().take(keep).collect();
    format!("{}-{hash:08x}{suffix}", cut.trim_end_matches(['-', '.']))
}

/// True when every backend Service of Ingress `ingress` (rules and default backend) is
/// `service`.
fn only_backend(ingress: &Value, service: &str) -> bool {
    let rules = ingress["spec"]["rules"].as_array().into_iter().flatten();
    let paths = rules.flat_map(|rule| rule["http"]["paths"].as_array().into_iter().flatten());
    let backends = paths
        .map(|path| &path["backend"])
        .chain(ingress["spec"].get("defaultBackend"));
    backends
        .filter_map(|backend| backend.pointer("/service/name"))
        .all(|name| name == service)
}

/// Why canary must not write over `live`, an object of the name it would give its own: it
/// belongs to another Rollout (by its `canary.rs/rollout` label or an owner reference to a
/// Rollout), or canary did not make it. `None` when it is `plan`'s own.
pub fn owner_conflict(plan: &RolloutPlan, live: &Value) -> Option<String> {
    let kind = live["kind"].as_str().unwrap_or("object");
    let name = live["metadata"]["name"].as_str().unwrap_or_default();
    let place = format!("{kind} {}/{name}", plan.namespace);
    let labelled = live
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(ROLLOUT_LABEL))
        .and_then(Value::as_str);
    let owner_ref = live
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|owner| owner["kind"] == "Rollout" && owner["name"] != plan.name.as_str())
        .and_then(|owner| owner["name"].as_str());
    match (labelled, owner_ref) {
        (_, Some(other)) => Some(format!(
            "{place} belongs to Rollout {}/{other} (its owner reference); canary will not take \
             it over for Rollout {}",
            plan.namespace, plan.name
        )),
        (Some(other), None) if other != plan.name => Some(format!(
            "{place} belongs to Rollout {}/{other} (label {ROLLOUT_LABEL}); canary will not \
             take it over for Rollout {}",
            plan.namespace, plan.name
        )),
        _ if !generated(live) => Some(format!(
            "{place} exists and canary did not make it; rename or remove it, canary will not \
             take it over for Rollout {}",
            plan.name
        )),
        _ => None,
    }
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

/// The objects for `route`. `objects` holds the stable Service and Ingress, and the canary
/// Deployment and pods when they run (the stable Service must not select them).
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
    // Only canary's own labels: the stable Ingress's labels include GitOps tracking labels
    // (`app.kubernetes.io/instance`, `kustomize.toolkit.fluxcd.io/name`, Helm's
    // `app.kubernetes.io/managed-by`) that would make Argo CD, Flux or Helm take the canary
    // Ingress for one of theirs and prune it mid-release.
    let mut metadata = generated_metadata(plan, &canary_ingress_name(plan, Some(stable)));
    let mut annotations: Map<String, Value> = stable["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| carried_annotation(&canary, prefix(plan), key))
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

/// Whether the canary Ingress carries the stable Ingress's annotation `key`: the ingress class
/// and ingress-nginx's own annotations (of `prefix`) other than the canary ones. Anything else
/// (`kubectl.kubernetes.io/last-applied-configuration`, Argo CD's
/// `argocd.argoproj.io/tracking-id`, Helm's `meta.helm.sh/release-name`, Flux's and other
/// tools' annotations) belongs to the stable Ingress alone. ingress-nginx ignores most
/// annotations of a canary Ingress and takes the main one's, but honours some on the canary
/// (docs/user-guide/nginx-configuration/annotations.md, "Canary": `load-balance`,
/// `upstream-hash-by` and the session affinity ones), so all of its own are carried over.
fn carried_annotation(canary: &Canary, prefix: &str, key: &str) -> bool {
    if key == CLASS_ANNOTATION {
        return true;
    }
    let own = key
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with('/'));
    own && !canary.is_canary_key(key)
}
