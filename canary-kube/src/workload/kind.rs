//! What the workload provider needs of a workload kind: the one trait a kind implements.

use std::collections::BTreeMap;

use canary_core::engine::machine::WorkloadState;
use canary_core::workload::WorkloadDescriptor;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A workload kind canary releases: its objects, how its controller is held from rolling a new
/// template onto the stable pods, how far along it is, and the canary it runs.
pub trait Kind:
    kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// What `canary-core` knows of the kind.
    const DESCRIPTOR: &'static WorkloadDescriptor;

    /// Its pod template.
    fn template(&self) -> &PodTemplateSpec;

    /// Its selector's `matchLabels`.
    fn match_labels(&self) -> Option<&BTreeMap<String, String>>;

    /// Whether its controller leaves the pods as they are when the template changes (a paused
    /// Deployment, a DaemonSet updated `OnDelete`).
    fn frozen(&self) -> bool;

    /// Whether its controller has seen its current generation.
    fn observed(&self) -> bool;

    /// Whether every pod it wants runs its current template (as far as its status says).
    fn rolled_out(&self) -> bool;

    /// The JSON merge patch that freezes it (see [`Kind::frozen`]), keeping what it needs to
    /// be given back by [`Kind::thaw`].
    fn freeze(&self) -> Value;

    /// The JSON merge patch that lets its controller roll again as its owner set it.
    fn thaw(&self) -> Value;

    /// Why canary cannot promote a new template onto it, when its owner set it so that its
    /// pods never take one by themselves.
    fn unpromotable(&self) -> Option<String> {
        None
    }

    /// How far along it is at `revision`.
    fn state(&self, revision: String) -> WorkloadState;

    /// Whether it (a canary) runs at the size `replicas` asks for.
    fn sized(&self, replicas: u32) -> bool;

    /// The spec of the canary of `stable` running `replicas` pods of `template`, selected by
    /// `selector`.
    fn canary_spec(
        stable: &Self,
        replicas: u32,
        selector: &BTreeMap<String, String>,
        template: Value,
    ) -> Value;
}

/// `patch` with `more` merged in (objects merged key by key, anything else replaced), as a
/// JSON merge patch of both would apply.
pub(super) fn merged(mut patch: Value, more: Value) -> Value {
    match (&mut patch, more) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                let slot = into.remove(&key).unwrap_or(Value::Null);
                let value = if slot.is_object() && value.is_object() {
                    merged(slot, value)
                } else {
                    value
                };
                into.insert(key, value);
            }
            patch
        }
        (_, more) => more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patches_merge_key_by_key() {
        let a = json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"paused": true}});
        let b = json!({"metadata": {"annotations": {"b": null}}, "spec": {"template": {"x": 1}}});
        assert_eq!(
            merged(a, b),
            json!({"metadata": {"annotations": {"a": "1", "b": null}},
                   "spec": {"paused": true, "template": {"x": 1}}})
        );
    }
}
