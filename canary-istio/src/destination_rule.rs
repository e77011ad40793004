//! DestinationRules: the user's for the service host is only read; the canary host gets one
//! canary generates and owns, carrying the same traffic policy.
//!
//! A route to the canary host `<service>-canary` reaches the canary's pods through Envoy's
//! cluster for that host, and istiod builds each cluster's settings (TLS mode, connection
//! pool, load balancer, outlier detection) from the DestinationRule in effect for that host
//! only (istio pilot/pkg/networking/core/cluster_builder.go `applyTrafficPolicy`, with the
//! rule picked per host by pilot/pkg/model/push_context.go `destinationRule`). Without a rule
//! of its own the canary's share would go out with Istio's defaults (mTLS `ISTIO_MUTUAL` under
//! auto mTLS, no pool limits) where the stable share goes out as the user asked.

use canary_core::RolloutPlan;
use canary_core::k8s::objects::{
    Shape, check_fields, check_object, clean, generated, generated_metadata,
};
use canary_core::k8s::services::canary_service_name;
use serde_json::{Value, json};

use crate::API_VERSION;

/// The name of the user's DestinationRule for the service host
/// (`spec.trafficRouting.istio.destinationRule.name`, else the service's name).
pub fn name(plan: &RolloutPlan) -> String {
    plan.rollout
        .spec
        .traffic_routing
        .istio
        .as_ref()
        .and_then(|istio| istio.destination_rule.as_ref())
        .map(|dr| dr.name.clone())
        .unwrap_or_else(|| plan.rollout.spec.service.name.clone())
}

/// The name of the DestinationRule canary generates for the canary host: the canary
/// Service's (`<service>-canary`).
pub fn canary_name(plan: &RolloutPlan) -> String {
    canary_service_name(plan)
}

/// The fields of a user's DestinationRule canary reads (and, for rules earlier versions of
/// canary edited, writes back).
const FIELDS: [(&str, Shape); 2] = [
    ("/spec/trafficPolicy", Shape::Mapping),
    ("/spec/subsets", Shape::ListOfMappings),
];

/// Refuses a DestinationRule whose fields are not of the shape canary reads; the error names
/// the rule and the field.
pub fn check_shape(dr: &Value) -> Result<(), String> {
    check_object(dr).and_then(|()| check_fields(dr, &FIELDS))
}

/// The DestinationRule for the canary host: the traffic policy of the user's rule `user` (when
/// it is the user's and has one) for host `<service>-canary`. `None` when there is no policy
/// to carry over (Istio's defaults then apply to both hosts alike).
pub fn canary(plan: &RolloutPlan, user: Option<&Value>) -> Option<Value> {
    let user = user.filter(|dr| !generated(dr))?;
    let policy = user["spec"]["trafficPolicy"]
        .as_object()
        .filter(|policy| !policy.is_empty())?;
    let mut spec = json!({
        "host": canary_service_name(plan),
        "trafficPolicy": policy,
    });
    if let Some(export_to) = user["spec"]["exportTo"].as_array() {
        spec["exportTo"] = json!(export_to);
    }
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": generated_metadata(plan, &canary_name(plan)),
        "spec": spec,
    }))
}

/// The prefix of the annotations earlier versions of canary put on a user's DestinationRule
/// (`canary.rs/original`: its subsets before canary added its own; `canary.rs/stable-subset`).
const CANARY_PREFIX: &str = "canary.rs/";

/// A user's DestinationRule `dr` that earlier versions of canary edited, given back: the
/// subsets recorded in `canary.rs/original` (else its subsets as they are) and none of
/// canary's annotations. `None` when it carries nothing of canary's.
pub fn released(dr: &Value) -> Option<Value> {
    if generated(dr) {
        return None;
    }
    let annotations = dr["metadata"]["annotations"].as_object()?;
    if !annotations.keys().any(|key| key.starts_with(CANARY_PREFIX)) {
        return None;
    }
    let original = annotations
        .get("canary.rs/original")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|record| record.get("subsets").cloned())
        .filter(Value::is_array);
    let mut out = clean(dr);
    if let Some(subsets) = original {
        // The rule's `spec` may be anything the cluster holds: written only when a mapping.
        match out.get_mut("spec") {
            Some(Value::Object(spec)) => {
                spec.insert("subsets".to_owned(), subsets);
            }
            Some(Value::Null) | None => {
                if let Some(map) = out.as_object_mut() {
                    map.insert("spec".to_owned(), json!({"subsets": subsets}));
                }
            }
            Some(_) => {}
        }
    }
    if let Some(annotations) = out["metadata"]["annotations"].as_object_mut() {
        annotations.retain(|key, _| !key.starts_with(CANARY_PREFIX));
    }
    Some(out)
}

/// The parts of a DestinationRule canary writes, to compare the desired with the live one.
pub fn managed_view(dr: &Value) -> Value {
    json!({
        "host": dr["spec"]["host"],
        "trafficPolicy": dr["spec"]["trafficPolicy"],
        "exportTo": dr["spec"]["exportTo"],
        "subsets": dr["spec"]["subsets"],
    })
}
