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
use crate::objects::{Objects, POD_TEMPLATE_HASH, ROLLOUT_LABEL, clean, generated_metadata};

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
    let stable_selector = stable_selector(plan, service, objects, route);
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

/// True when the canary Deployment, or any pod of it, is among `objects`: pods outlive their
/// Deployment (the garbage collector removes them after it), and while one runs it carries
/// the stable Service's labels.
pub fn canary_runs(plan: &RolloutPlan, objects: &Objects) -> bool {
    let deployment = objects
        .get("Deployment", &plan.namespace, &plan.canary_workload())
        .is_some();
    deployment
        || objects.of_kind("Pod", &plan.namespace).any(|pod| {
            let labels = &pod["metadata"]["labels"];
            labels[ROLE_LABEL] == "canary" && labels[ROLLOUT_LABEL] == json!(plan.name)
        })
}

/// True when `deployment` has rolled its template out: its controller saw the current
/// generation, and every replica runs the current template and is available (no pod of an
/// older ReplicaSet is left).
pub fn settled(deployment: &Value) -> bool {
    let count = |field: &str| deployment["status"][field].as_i64().unwrap_or(0);
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(0);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    count("observedGeneration") >= generation
        && count("updatedReplicas") == replicas
        && count("availableReplicas") == replicas
        && count("replicas") == replicas
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

/// The stable Service narrowed to pods that are not the canary's (while canary pods run), by
/// `pod-template-hash`. The hash must never leave the Service without ready pods, or
/// ingress-nginx answers 503 for everything on its host and path, canary share included:
///
/// - the stable Deployment's current ReplicaSet, once the Deployment has [`settled`] on it;
/// - while it rolls (promotion replaces its pods) and `route` sends everything to the canary:
///   the canary's own pods, the only ones sure to stay (they take no share through this
///   Service that the route does not give them already);
/// - otherwise while it rolls: the hash the live Service holds, kept until the roll is over;
/// - with none of these: the current ReplicaSet.
pub fn stable_selector(
    plan: &RolloutPlan,
    service: &Value,
    objects: &Objects,
    route: &crate::RouteState,
) -> StableSelector {
    let namespace = &plan.namespace;
    let workload = &plan.rollout.spec.workload_ref.name;
    let stable = objects.get("Deployment", namespace, workload);
    let current = stable.and_then(|deployment| objects.pod_template_hash(deployment, namespace));
    let held = service["metadata"]["annotations"][NARROWED_ANNOTATION]
        .as_str()
        .map(str::to_owned);
    let canary = objects
        .get("Deployment", namespace, &plan.canary_workload())
        .filter(|deployment| settled(deployment))
        .and_then(|deployment| objects.pod_template_hash(deployment, namespace));
    let all_to_canary = route.total > 0 && route.weight >= route.total;
    // The hash held while all traffic went to the canary is the canary's: once the route gives
    // stable any share, the Service must leave the canary's pods (about to be removed).
    let canary_hashes = canary_pod_hashes(plan, objects);
    let held_stable = held.clone().filter(|hash| !canary_hashes.contains(hash));
    let hash = if stable.is_some_and(settled) {
        current
    } else if all_to_canary {
        canary.or(held).or(current)
    } else {
        held_stable.or(current)
    };
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

/// The `pod-template-hash`es of the canary's pods: its Deployment's current ReplicaSet's, and
/// those of the canary pods among `objects` (which outlive their Deployment).
fn canary_pod_hashes(plan: &RolloutPlan, objects: &Objects) -> Vec<String> {
    let namespace = &plan.namespace;
    let deployment = objects
        .get("Deployment", namespace, &plan.canary_workload())
        .and_then(|deployment| objects.pod_template_hash(deployment, namespace));
    let pods = objects.of_kind("Pod", namespace).filter_map(|pod| {
        let labels = &pod["metadata"]["labels"];
        (labels[ROLE_LABEL] == "canary" && labels[ROLLOUT_LABEL] == json!(plan.name))
            .then(|| labels[POD_TEMPLATE_HASH].as_str().map(str::to_owned))
            .flatten()
    });
    deployment.into_iter().chain(pods).collect()
}

/// The JSON merge patch that puts `selector` in effect on the live stable Service `live`, or
/// `None` when it is in effect already (or unknown).
///
/// `Service.spec.selector` is an atomic map in server-side apply (`+mapType=atomic` in
/// k8s.io/api core/v1 types.go): an apply replaces it whole, and an apply that stops setting
/// it removes it. So canary never applies it: a merge patch adds its one key
/// (`pod-template-hash`) and later removes exactly that key, and everything else the owners of
/// the selector wrote stays theirs. The patch carries the resourceVersion canary read, so a
/// selector changed in between (a GitOps tool re-applying it) is a conflict, read again on
/// the next pass, and never overwritten with a stale copy.
pub fn selector_patch(selector: &StableSelector, live: &Value) -> Option<Value> {
    if selector.in_effect(live) {
        return None;
    }
    let version = live["metadata"]["resourceVersion"].clone();
    match selector {
        StableSelector::Narrowed(service) => {
            let hash = &service["metadata"]["annotations"][NARROWED_ANNOTATION];
            Some(json!({
                "metadata": {"resourceVersion": version, "annotations": {NARROWED_ANNOTATION: hash}},
                "spec": {"selector": {POD_TEMPLATE_HASH: hash}},
            }))
        }
        StableSelector::AsWritten => {
            let held = &live["metadata"]["annotations"][NARROWED_ANNOTATION];
            // Only the key canary added goes: a hash someone else put there since is theirs.
            let ours = !held.is_null() && live["spec"]["selector"][POD_TEMPLATE_HASH] == *held;
            let mut patch = json!({
                "metadata": {"resourceVersion": version, "annotations": {NARROWED_ANNOTATION: null}},
            });
            if ours {
                patch["spec"] = json!({"selector": {POD_TEMPLATE_HASH: null}});
            }
            Some(patch)
        }
        StableSelector::Unknown(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RouteState;

    fn plan() -> RolloutPlan {
        crate::load::plan_from_yaml(
            "apiVersion: canary.rs/v1alpha1\nkind: Rollout\nmetadata: {name: web, namespace: shop}\nspec:\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  service: {name: web, port: 80}\n  trafficRouting: {nginx: {ingress: web}}\n  strategy: {canary: {steps: [{weight: 50}]}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn deployment(name: &str, revision: u32, settled: bool) -> Value {
        let updated = if settled { 3 } else { 1 };
        json!({"kind": "Deployment", "metadata": {"name": name, "namespace": "shop", "uid": name, "generation": 2,
                "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
               "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": updated, "availableReplicas": 3}})
    }

    fn replicaset(owner: &str, hash: &str, revision: u32) -> Value {
        json!({"kind": "ReplicaSet", "metadata": {"name": format!("{owner}-{hash}"), "namespace": "shop",
                "labels": {"app": "web", "pod-template-hash": hash},
                "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                "ownerReferences": [{"kind": "Deployment", "name": owner, "uid": owner}]}})
    }

    fn service(narrowed_to: Option<&str>) -> Value {
        let mut service = json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                                 "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        if let Some(hash) = narrowed_to {
            service["spec"]["selector"][POD_TEMPLATE_HASH] = json!(hash);
            service["metadata"]["annotations"] = json!({NARROWED_ANNOTATION: hash});
        }
        service
    }

    fn narrowed_to(selector: &StableSelector) -> Option<String> {
        match selector {
            StableSelector::Narrowed(service) => service["spec"]["selector"][POD_TEMPLATE_HASH]
                .as_str()
                .map(str::to_owned),
            _ => None,
        }
    }

    /// The stable Deployment promoted to `new` (revision 2) and still rolling, the canary
    /// settled on `c`.
    fn promoting(live: Option<&str>) -> (Objects, Value) {
        let service = service(live);
        let objects = Objects::new(vec![
            deployment("web", 2, false),
            replicaset("web", "old", 1),
            replicaset("web", "new", 2),
            deployment("web-canary", 1, true),
            replicaset("web-canary", "c", 1),
            service.clone(),
        ]);
        (objects, service)
    }

    #[test]
    fn a_settled_stable_deployment_is_selected_by_its_current_replicaset() {
        let service = service(Some("old"));
        let objects = Objects::new(vec![
            deployment("web", 2, true),
            replicaset("web", "old", 1),
            replicaset("web", "new", 2),
            service.clone(),
        ]);
        let selector = stable_selector(&plan(), &service, &objects, &RouteState::stable());
        assert_eq!(narrowed_to(&selector).as_deref(), Some("new"));
    }

    #[test]
    fn while_stable_rolls_the_live_narrowing_is_kept() {
        let (objects, service) = promoting(Some("old"));
        let selector = stable_selector(&plan(), &service, &objects, &RouteState::weighted(50));
        assert_eq!(narrowed_to(&selector).as_deref(), Some("old"));
    }

    #[test]
    fn a_route_giving_stable_a_share_again_takes_the_service_off_the_canary_pods() {
        // A blue-green switch (or promotion's hand-over) narrowed the Service to the canary's
        // pods while the stable Deployment's template waits for promotion; a rollback then
        // routes to stable and removes the canary: the Service must not stay on its pods.
        let mut stable = deployment("web", 1, false);
        stable["status"]["updatedReplicas"] = json!(0);
        let service = service(Some("c"));
        let objects = Objects::new(vec![
            stable,
            replicaset("web", "old", 1),
            deployment("web-canary", 1, true),
            replicaset("web-canary", "c", 1),
            service.clone(),
        ]);
        let selector = stable_selector(&plan(), &service, &objects, &RouteState::stable());
        assert_eq!(narrowed_to(&selector).as_deref(), Some("old"));
        // With the canary Deployment gone and only its pods left, too.
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-canary-c-1", "namespace": "shop",
                          "labels": {"app": "web", "pod-template-hash": "c",
                                     ROLE_LABEL: "canary", ROLLOUT_LABEL: "web"}}});
        let objects = Objects::new(vec![
            deployment("web", 1, false),
            replicaset("web", "old", 1),
            pod,
            service.clone(),
        ]);
        let selector = stable_selector(&plan(), &service, &objects, &RouteState::stable());
        assert_eq!(narrowed_to(&selector).as_deref(), Some("old"));
    }

    #[test]
    fn while_stable_rolls_behind_a_full_canary_route_the_service_keeps_the_canary_pods() {
        // ingress-nginx answers 503 for everything when the stable Service has no endpoints:
        // the old pods go away during the roll, the canary's stay.
        let (objects, service) = promoting(Some("old"));
        let selector = stable_selector(&plan(), &service, &objects, &RouteState::weighted(100));
        assert_eq!(narrowed_to(&selector).as_deref(), Some("c"));
    }

    #[test]
    fn canary_pods_that_outlive_their_deployment_keep_the_service_narrowed() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-canary-x", "namespace": "shop",
                          "labels": {"app": "web", ROLE_LABEL: "canary", ROLLOUT_LABEL: "web"}}});
        let mut objects = Objects::new(vec![
            deployment("web", 1, true),
            replicaset("web", "old", 1),
            service(Some("old")),
        ]);
        assert!(!canary_runs(&plan(), &objects));
        objects.insert(pod);
        assert!(canary_runs(&plan(), &objects));
        let split = split(&plan(), &RouteState::stable(), &objects, || {
            Err("no route object at 0%".to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(narrowed_to(&split.stable_selector).as_deref(), Some("old"));
    }

    /// The live Service after a JSON merge patch (RFC 7386), as the API server makes it.
    fn merged(live: &Value, patch: &Value) -> Value {
        fn merge(target: &mut Value, patch: &Value) {
            match (target.as_object_mut(), patch.as_object()) {
                (Some(target), Some(patch)) => {
                    for (key, value) in patch {
                        if value.is_null() {
                            target.remove(key);
                        } else {
                            merge(target.entry(key.clone()).or_insert(Value::Null), value);
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        let mut out = live.clone();
        merge(&mut out, patch);
        out
    }

    #[test]
    fn narrowing_adds_one_key_and_giving_back_removes_only_that_key() {
        let mut live = service(None);
        live["spec"]["selector"]["tier"] = json!("web");
        live["metadata"]["resourceVersion"] = json!("7");
        let narrowed = StableSelector::Narrowed(service(Some("abc")));
        let patch = selector_patch(&narrowed, &live).unwrap_or_else(|| panic!("no patch"));
        // The precondition: a selector changed since it was read is a conflict.
        assert_eq!(patch["metadata"]["resourceVersion"], json!("7"));
        let after = merged(&live, &patch);
        assert_eq!(
            after["spec"]["selector"],
            json!({"app": "web", "tier": "web", POD_TEMPLATE_HASH: "abc"})
        );
        assert!(narrowed.in_effect(&after));
        assert_eq!(selector_patch(&narrowed, &after), None);

        let back = selector_patch(&StableSelector::AsWritten, &after)
            .unwrap_or_else(|| panic!("no patch"));
        let restored = merged(&after, &back);
        assert_eq!(restored["spec"]["selector"], live["spec"]["selector"]);
        assert!(StableSelector::AsWritten.in_effect(&restored));
        assert_eq!(selector_patch(&StableSelector::AsWritten, &restored), None);
    }

    #[test]
    fn a_hash_someone_else_put_in_the_selector_is_left_to_them() {
        let mut live = service(Some("abc"));
        // Since canary narrowed it, the owner of the selector wrote a hash of their own.
        live["spec"]["selector"][POD_TEMPLATE_HASH] = json!("theirs");
        let back =
            selector_patch(&StableSelector::AsWritten, &live).unwrap_or_else(|| panic!("no patch"));
        let after = merged(&live, &back);
        assert_eq!(
            after["spec"]["selector"][POD_TEMPLATE_HASH],
            json!("theirs")
        );
        assert!(after["metadata"]["annotations"][NARROWED_ANNOTATION].is_null());
    }
}
