//! Routing by Service: a canary Service beside the stable one, for the providers that send
//! traffic to Services rather than to pod subsets (ingress-nginx, Kuma, Istio).
//!
//! - **Canary Service** `<service>-canary`: the stable Service's ports, and a selector of the
//!   canary's own labels (`canary.rs/role: canary`, `canary.rs/rollout: <rollout>`).
//! - **Stable Service**: never written. The canary's pods carry a value of their own for one
//!   key of its selector ([`canary_pod_label`]), so it selects the stable pods only while they
//!   run. `Service.spec.selector` is an atomic map in server-side apply (`+mapType=atomic` in
//!   k8s.io/api core/v1 types.go): a GitOps tool applying the Service as Git has it (Flux
//!   forces it back every interval) would replace any key canary added, and put the canary's
//!   pods behind the stable share of the route.

use serde_json::{Map, Value, json};

use crate::RolloutPlan;
use crate::k8s::objects::{Objects, ROLLOUT_LABEL, generated_metadata};

/// The label every canary pod carries (set by the Deployment workload provider).
pub const ROLE_LABEL: &str = "canary.rs/role";

/// The longest label value Kubernetes accepts (apimachinery `validation.LabelValueMaxLength`).
const LABEL_VALUE_MAX: usize = 63;

/// What a Service-based provider applies for a route.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `<service>-canary`, when the route sends traffic to the canary.
    pub canary_service: Option<Value>,
    /// The provider's own route object (canary Ingress, MeshHTTPRoute…), when the route sends
    /// traffic to the canary.
    pub route: Option<Value>,
}

impl Split {
    /// The objects in the order they are applied: the canary Service before the route that
    /// sends traffic to it.
    pub fn objects(&self) -> Vec<Value> {
        [self.canary_service.clone(), self.route.clone()]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The split for `route`: nothing while the route keeps all traffic on stable; otherwise the
/// canary Service and the provider's route object, which `route_object` builds. Errors say
/// what is missing, or that the stable Service would select canary pods (then the stable
/// share of the route would reach them, and nothing is routed).
pub fn split(
    plan: &RolloutPlan,
    route: &crate::RouteState,
    objects: &Objects,
    route_object: impl FnOnce() -> Result<Value, String>,
) -> Result<Split, String> {
    if route.is_stable_only() {
        return Ok(Split {
            canary_service: None,
            route: None,
        });
    }
    let service = stable_service(plan, objects)?;
    if let Some(why) = stable_selects_canary(plan, service, objects) {
        return Err(why);
    }
    Ok(Split {
        canary_service: Some(canary_service(plan, service)?),
        route: Some(route_object()?),
    })
}

/// The canary Service's name.
pub fn canary_service_name(plan: &RolloutPlan) -> String {
    format!("{}-canary", plan.rollout.spec.service.name)
}

/// The label the canary's pods carry with a value of their own, so that the stable Service's
/// `selector` does not select them: `None` when the pods' `labels` leave it already (a
/// `newVersion` label the selector names) or it selects nothing. Otherwise the selector's
/// first key (in key order) with its value and `-canary` (`app: web` becomes
/// `app: web-canary`), cut to the 63 characters a label value may have.
pub fn canary_pod_label(
    selector: &Map<String, Value>,
    labels: &Map<String, Value>,
) -> Option<(String, String)> {
    if selector.is_empty() || !selects(selector, labels) {
        return None;
    }
    let (key, value) = selector.iter().min_by(|a, b| a.0.cmp(b.0))?;
    let value = value.as_str().unwrap_or_default();
    const SUFFIX: &str = "-canary";
    let room = LABEL_VALUE_MAX - SUFFIX.len();
    let base: String = value.chars().take(room).collect();
    // A label value ends with an alphanumeric character.
    let base = base.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let own = if base.is_empty() {
        "canary".to_owned()
    } else {
        format!("{base}{SUFFIX}")
    };
    // A value already ending in the suffix at the longest length comes out unchanged.
    let own = if own == value {
        "canary".to_owned()
    } else {
        own
    };
    Some((key.clone(), own))
}

/// Whether a Service `selector` selects a pod with `labels`.
fn selects(selector: &Map<String, Value>, labels: &Map<String, Value>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// Why the stable Service `service` would select canary pods, if it would: the canary
/// Deployment's pod template, or canary pods among `objects`, match its selector (the canary
/// was made before the Service's selector changed, or by hand).
pub fn stable_selects_canary(
    plan: &RolloutPlan,
    service: &Value,
    objects: &Objects,
) -> Option<String> {
    let selector = service["spec"]["selector"].as_object()?;
    if selector.is_empty() {
        return None;
    }
    let template = objects
        .get(plan.workload.kind, &plan.namespace, &plan.canary_workload())
        .map(|workload| &workload["spec"]["template"]["metadata"]["labels"]);
    let pods = objects.of_kind("Pod", &plan.namespace).filter_map(|pod| {
        let labels = &pod["metadata"]["labels"];
        (labels[ROLE_LABEL] == "canary" && labels[ROLLOUT_LABEL] == json!(plan.name))
            .then_some(labels)
    });
    let selected = template
        .into_iter()
        .chain(pods)
        .filter_map(Value::as_object)
        .any(|labels| selects(selector, labels));
    selected.then(|| {
        format!(
            "the Service {}/{} selects the canary's pods (its selector {}): its share of the \
             route would reach them; the canary workload {} is made again with a label of \
             its own when the next revision is released",
            plan.namespace,
            plan.rollout.spec.service.name,
            Value::Object(selector.clone()),
            plan.canary_workload()
        )
    })
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

/// The canary Service, from the stable one: its ports, and a selector of the labels only the
/// canary's pods carry.
pub fn canary_service(plan: &RolloutPlan, stable: &Value) -> Result<Value, String> {
    let selects_pods = stable["spec"]["selector"]
        .as_object()
        .is_some_and(|selector| !selector.is_empty());
    if !selects_pods {
        return Err(format!(
            "Service {}/{} has no selector: canary can only split traffic for a Service that \
             selects its pods",
            plan.namespace, plan.rollout.spec.service.name
        ));
    }
    let selector = json!({ROLE_LABEL: "canary", ROLLOUT_LABEL: plan.name});
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RouteState;

    fn plan() -> RolloutPlan {
        crate::api::load::plan_from_yaml(
            "apiVersion: canary.rs/v1alpha1\nkind: Rollout\nmetadata: {name: web, namespace: shop}\nspec:\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  service: {name: web, port: 80}\n  trafficRouting: {nginx: {ingress: web}}\n  strategy: {canary: {steps: [{weight: 50}]}}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    fn service() -> Value {
        json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
               "spec": {"selector": {"app": "web", "tier": "front"}, "ports": [{"port": 80, "nodePort": 30080}]}})
    }

    fn canary_deployment(labels: Value) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web-canary", "namespace": "shop"},
               "spec": {"template": {"metadata": {"labels": labels}}}})
    }

    #[test]
    fn the_canary_pods_get_their_own_value_of_the_first_selector_key() {
        let selector = map(json!({"tier": "front", "app": "web"}));
        let labels = map(json!({"app": "web", "tier": "front", "team": "a", ROLE_LABEL: "canary"}));
        let (key, value) = canary_pod_label(&selector, &labels).unwrap_or_else(|| panic!("none"));
        assert_eq!((key.as_str(), value.as_str()), ("app", "web-canary"));
        let mut relabelled = labels.clone();
        relabelled.insert(key, json!(value));
        assert!(!selects(&selector, &relabelled));
    }

    #[test]
    fn pods_the_selector_leaves_already_keep_their_labels() {
        // A newVersion that changes a label the selector names (`version: v2`).
        let selector = map(json!({"app": "web", "version": "v1"}));
        let labels = map(json!({"app": "web", "version": "v2"}));
        assert_eq!(canary_pod_label(&selector, &labels), None);
        assert_eq!(canary_pod_label(&Map::new(), &labels), None);
    }

    #[test]
    fn the_canary_value_is_always_a_valid_label_value_other_than_the_stable_one() {
        let long = "a".repeat(63);
        let dotted = format!("{}.-x", "b".repeat(54));
        let suffixed = format!("{}-canary", "c".repeat(56));
        for value in [
            "web",
            "",
            "canary",
            long.as_str(),
            dotted.as_str(),
            suffixed.as_str(),
        ] {
            let selector = map(json!({"app": value}));
            let (_, own) =
                canary_pod_label(&selector, &selector.clone()).unwrap_or_else(|| panic!("{value}"));
            assert_ne!(own, value);
            assert!(own.len() <= LABEL_VALUE_MAX, "{own}");
            let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            assert!(
                edges(own.chars().next()) && edges(own.chars().last()),
                "{own}"
            );
            assert!(
                own.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{own}"
            );
        }
    }

    #[test]
    fn the_canary_service_selects_the_canary_pods_by_their_own_labels() {
        let canary = canary_service(&plan(), &service()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            canary["spec"]["selector"],
            json!({ROLE_LABEL: "canary", ROLLOUT_LABEL: "web"})
        );
        assert_eq!(canary["spec"]["ports"], json!([{"port": 80}]));
        let mut bare = service();
        bare["spec"]["selector"] = json!({});
        assert!(canary_service(&plan(), &bare).is_err());
    }

    #[test]
    fn nothing_is_routed_while_the_stable_service_selects_canary_pods() {
        let objects = |labels: Value| Objects::new(vec![service(), canary_deployment(labels)]);
        let route = || Ok(json!({"kind": "Ingress"}));
        let shared = objects(
            json!({"app": "web", "tier": "front", ROLE_LABEL: "canary", ROLLOUT_LABEL: "web"}),
        );
        let refused = split(&plan(), &RouteState::weighted(20), &shared, route)
            .err()
            .unwrap_or_default();
        assert!(refused.contains("selects the canary's pods"), "{refused}");
        // Stable-only routes need nothing, and are never refused.
        let back =
            split(&plan(), &RouteState::stable(), &shared, route).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.objects().is_empty());

        let own = objects(
            json!({"app": "web-canary", "tier": "front", ROLE_LABEL: "canary", ROLLOUT_LABEL: "web"}),
        );
        let split = split(&plan(), &RouteState::weighted(20), &own, route)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(split.objects().len(), 2);
    }

    #[test]
    fn a_leftover_canary_pod_the_stable_service_selects_refuses_the_route() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-canary-x", "namespace": "shop",
                          "labels": {"app": "web", "tier": "front", ROLE_LABEL: "canary", ROLLOUT_LABEL: "web"}}});
        let objects = Objects::new(vec![service(), pod]);
        assert!(stable_selects_canary(&plan(), &service(), &objects).is_some());
        let other = Objects::new(vec![service()]);
        assert!(stable_selects_canary(&plan(), &service(), &other).is_none());
    }
}
