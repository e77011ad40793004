//! What the generated objects share: their metadata, and telling canary's objects from the
//! user's.

use canary_core::RolloutPlan;
use serde_json::{Value, json};

/// The label canary puts on objects it generates, and its value.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "canary");
/// The label naming the Rollout a generated object belongs to.
pub const ROLLOUT_LABEL: &str = "canary.rs/rollout";

/// True when canary generated `object` (and may replace or delete it whole).
pub fn owned(object: &Value) -> bool {
    object
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(MANAGED_BY.0))
        .and_then(Value::as_str)
        == Some(MANAGED_BY.1)
}

/// The metadata of an object canary generates for `plan`.
pub fn owned_metadata(plan: &RolloutPlan, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": plan.namespace,
        "labels": {MANAGED_BY.0: MANAGED_BY.1, ROLLOUT_LABEL: plan.name},
    })
}

/// `object` without what the API server sets (status, uid, resource version, managed fields…).
pub fn clean(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
    }
    if let Some(metadata) = out["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            metadata.remove(field);
        }
    }
    out
}
