//! The DestinationRule: one canary generates and owns, or the user's, where canary adds or
//! updates only its two subsets.

use canary_core::RolloutPlan;
use serde_json::{Value, json};

use crate::API_VERSION;
use crate::subsets::{STABLE_SUBSET_ANNOTATION, Subset, Subsets};
use crate::virtual_service::ORIGINAL_ANNOTATION;
use canary_core::objects::{clean, generated, generated_metadata};

/// The DestinationRule's name.
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

/// The DestinationRule holding `subsets` and `extra` (subsets still in use while routes move,
/// see the provider): generated when `existing` is absent or canary's own, else the user's with
/// those subsets added or updated by name.
pub fn desired(
    plan: &RolloutPlan,
    subsets: &Subsets,
    extra: &[Value],
    existing: Option<&Value>,
) -> Value {
    let mut wanted: Vec<Value> = subsets
        .distinct()
        .into_iter()
        .map(Subset::to_json)
        .collect();
    for subset in extra {
        if !wanted.iter().any(|w| w["name"] == subset["name"]) {
            wanted.push(subset.clone());
        }
    }
    let mut out = match existing {
        Some(dr) if !generated(dr) => merged(dr, &wanted),
        _ => json!({
            "apiVersion": API_VERSION,
            "kind": "DestinationRule",
            "metadata": generated_metadata(plan, &name(plan)),
            "spec": {"host": plan.rollout.spec.service.name, "subsets": wanted},
        }),
    };
    let annotations = &mut out["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[STABLE_SUBSET_ANNOTATION] = json!(subsets.stable.name);
    out
}

fn merged(dr: &Value, wanted: &[Value]) -> Value {
    let held: Vec<Value> = dr["spec"]["subsets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut subsets = held.clone();
    for subset in wanted {
        match subsets.iter_mut().find(|s| s["name"] == subset["name"]) {
            // A subset of that name selecting the same pods stays as the user wrote it.
            Some(existing) if existing["labels"] == subset["labels"] => {}
            Some(existing) => existing["labels"] = subset["labels"].clone(),
            None => subsets.push(subset.clone()),
        }
    }
    let mut out = clean(dr);
    if subsets == held {
        return out;
    }
    out["spec"]["subsets"] = Value::Array(subsets);
    if original_subsets(dr).is_none() {
        let annotations = &mut out["metadata"]["annotations"];
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[ORIGINAL_ANNOTATION] = json!(json!({"subsets": held}).to_string());
    }
    out
}

/// The subsets of a user's DestinationRule before canary changed them.
fn original_subsets(dr: &Value) -> Option<Vec<Value>> {
    let text = dr
        .pointer("/metadata/annotations")?
        .get(ORIGINAL_ANNOTATION)?
        .as_str()?;
    let record: Value = serde_json::from_str(text).ok()?;
    record["subsets"].as_array().cloned()
}

/// The user's DestinationRule as it was, keeping the subsets in `keep` that the restored
/// VirtualService still routes to. `None` when there is nothing to restore.
pub fn restore(dr: &Value, keep: &[&Subset]) -> Option<Value> {
    if generated(dr) {
        return None;
    }
    let original = original_subsets(dr);
    let marked = dr
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STABLE_SUBSET_ANNOTATION))
        .is_some();
    if original.is_none() && !marked {
        return None;
    }
    let mut out = clean(dr);
    if let Some(mut subsets) = original {
        for subset in keep {
            if !subsets.iter().any(|s| s["name"] == subset.name.as_str()) {
                subsets.push(subset.to_json());
            }
        }
        out["spec"]["subsets"] = Value::Array(subsets);
    }
    if let Some(annotations) = out["metadata"]["annotations"].as_object_mut() {
        annotations.remove(ORIGINAL_ANNOTATION);
        annotations.remove(STABLE_SUBSET_ANNOTATION);
    }
    Some(out)
}

/// The subsets `dr` defines, by name.
pub fn defined(dr: &Value) -> Vec<Value> {
    dr["spec"]["subsets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The parts of a DestinationRule canary writes, to compare the desired with the live one.
pub fn managed_view(dr: &Value) -> Value {
    json!({
        "host": dr["spec"]["host"],
        "subsets": dr["spec"]["subsets"],
        "original": dr.pointer("/metadata/annotations").and_then(|a| a.get(ORIGINAL_ANNOTATION)),
        "stable": dr.pointer("/metadata/annotations").and_then(|a| a.get(STABLE_SUBSET_ANNOTATION)),
    })
}
