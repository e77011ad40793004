//! What the controllers read from and write into objects: names, labels, owner references,
//! label selectors, counts and times.

use std::cmp::Ordering;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// `metadata.name`, or empty.
pub(super) fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace`, or empty.
pub(super) fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `metadata.uid`, or empty.
pub(super) fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

/// One annotation.
pub(super) fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

/// Whether the object is being deleted (it has a `deletionTimestamp`).
pub(super) fn terminating(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// An integer at a JSON pointer, or `default`.
pub(super) fn int(obj: &Value, pointer: &str, default: i64) -> i64 {
    obj.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(default)
}

/// A timestamp at a JSON pointer.
pub(super) fn time(obj: &Value, pointer: &str) -> Option<Timestamp> {
    obj.pointer(pointer)?.as_str()?.parse().ok()
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub(super) fn controller_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

/// Whether `obj` is controlled by `owner` (same namespace, controller reference to its uid).
pub(super) fn controlled_by(obj: &Value, owner: &Value) -> bool {
    namespace(obj) == namespace(owner) && controller_uid(obj) == Some(uid(owner))
}

/// A controller owner reference to `owner`, as the workload controllers write them.
pub(super) fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Sets `value` at `path`, making objects along the way (replacing non-objects).
pub(super) fn set(obj: &mut Value, path: &[&str], value: Value) {
    match path.split_first() {
        None => *obj = value,
        Some((key, rest)) => {
            if !obj.is_object() {
                *obj = json!({});
            }
            if let Some(map) = obj.as_object_mut() {
                set(map.entry(*key).or_insert(Value::Null), rest, value);
            }
        }
    }
}

/// Removes the field at `path`, if there.
pub(super) fn remove(obj: &mut Value, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = obj;
    for key in parents {
        match at.get_mut(*key) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(map) = at.as_object_mut() {
        map.remove(*last);
    }
}

/// Whether a `metav1.LabelSelector` (`matchLabels`, `matchExpressions` with `In`, `NotIn`,
/// `Exists`, `DoesNotExist`) selects `labels`. An empty or missing selector selects nothing, as
/// the workload controllers treat it (apimachinery `LabelSelectorAsSelector` would select
/// everything, but the Deployment and ReplicaSet controllers refuse to act on it).
pub(super) fn selects(selector: &Value, labels: &Value) -> bool {
    let match_labels = selector["matchLabels"].as_object();
    let expressions = selector["matchExpressions"].as_array();
    if match_labels.is_none_or(Map::is_empty) && expressions.is_none_or(Vec::is_empty) {
        return false;
    }
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(key, want)| labels[key.as_str()] == *want);
    let expressions_ok = expressions.into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let have = labels[key].as_str();
        let values = e["values"].as_array();
        let listed = |v: &str| values.is_some_and(|vs| vs.iter().any(|x| x == v));
        match e["operator"].as_str() {
            Some("In") => have.is_some_and(listed),
            Some("NotIn") => have.is_none_or(|v| !listed(v)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// Whether a label selector has any `matchLabels` or `matchExpressions` (an empty one would
/// select every pod: the workload controllers do not act on it).
pub(super) fn has_selector(selector: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
        || selector["matchExpressions"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
}

/// Creation order: `creationTimestamp`, then the uid (which the store hands out in order).
pub(super) fn by_creation(a: &Value, b: &Value) -> Ordering {
    let stamp = |o: &Value| {
        o["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_owned)
    };
    stamp(a)
        .cmp(&stamp(b))
        .then_with(|| uid(a).cmp(uid(b)))
        .then_with(|| name(a).cmp(name(b)))
}

/// A timestamp as the API writes it (RFC 3339, UTC; fractional seconds when there are any).
pub(super) fn stamp(time: Timestamp) -> Value {
    Value::String(time.to_string())
}

/// Whether a pod's `Ready` condition is `True`.
pub(super) fn pod_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some()
}

/// A pod's `Ready` condition when it is true.
fn ready_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// When a ready pod became ready (its `Ready` condition's `lastTransitionTime`).
pub(super) fn ready_since(pod: &Value) -> Option<Timestamp> {
    let ready = ready_condition(pod)?;
    Some(
        ready["lastTransitionTime"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Whether a pod is available: ready for at least `min_ready_seconds` at `now`
/// (k8s.io/kubernetes pkg/api/v1/pod/util.go `IsPodAvailable`).
pub(super) fn pod_available(pod: &Value, min_ready_seconds: i64, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since
            .checked_add(jiff::SignedDuration::from_secs(min_ready_seconds))
            .is_ok_and(|at| at <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), &labels));
        assert!(!selects(&json!({"matchLabels": {"app": "db"}}), &labels));
        assert!(!selects(&json!({}), &labels));
        let exp = |op: &str, values: Value| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]});
        assert!(selects(&exp("In", json!(["front", "back"])), &labels));
        assert!(!selects(&exp("NotIn", json!(["front"])), &labels));
        assert!(selects(&exp("Exists", Value::Null), &labels));
        assert!(!selects(&exp("DoesNotExist", Value::Null), &labels));
    }

    #[test]
    fn set_and_remove_make_and_drop_paths() {
        let mut obj = json!({"spec": 3});
        set(&mut obj, &["spec", "template", "replicas"], json!(2));
        assert_eq!(obj, json!({"spec": {"template": {"replicas": 2}}}));
        remove(&mut obj, &["spec", "template", "replicas"]);
        remove(&mut obj, &["nothing", "here"]);
        assert_eq!(obj, json!({"spec": {"template": {}}}));
    }
}
