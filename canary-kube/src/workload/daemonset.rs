//! DaemonSets: one pod per eligible node, no `paused` field, no replica count.
//!
//! - **Held by `updateStrategy: OnDelete`.** The DaemonSet controller replaces no pod of an
//!   `OnDelete` DaemonSet for a new template (kubernetes `pkg/controller/daemon/update.go`:
//!   `rollingUpdate` runs only for `RollingUpdate`), so the stable pods keep running what they
//!   run. The owner's strategy is kept whole in the annotation [`UPDATE_STRATEGY`] and given
//!   back when the hold ends or at promotion, which then rolls the stable pods the owner's
//!   way. While held, pods the controller creates (a node joining, a pod deleted by someone)
//!   are made from the current template (`manage` always uses it): they run the new version
//!   behind the stable Service before the release has tested it, as they would under any
//!   hold of a DaemonSet.
//! - **A DaemonSet its owner updates `OnDelete`** never takes a new template by itself, so
//!   canary cannot promote it: the release is refused before it starts, saying so.
//! - **The canary DaemonSet** runs on the same nodes (its template keeps the stable one's
//!   node selector, affinity and tolerations) at full size, or on none: the engine's "no
//!   replicas" adds the node selector [`NO_NODE`] that no node carries, so the DaemonSet
//!   controller wants no pod (`desiredNumberScheduled: 0`). A new canary revision replaces
//!   all its pods at once (`maxUnavailable: 100%`): the engine keeps traffic off a canary
//!   whose pods are not available.
//! - **How far along** it is comes from the status the DaemonSet controller counts per node
//!   (`updateDaemonSetStatus`): desired, current, ready, available and updated numbers of
//!   scheduled pods and `observedGeneration`, read as `kubectl rollout status` reads them
//!   (`DaemonSetStatusViewer`: observed, every desired node updated, every one available).

use std::collections::BTreeMap;

use canary_core::engine::machine::WorkloadState;
use canary_core::workload::WorkloadDescriptor;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};

use super::Kind;

/// Annotation on a stable DaemonSet while canary holds it: its owner's `spec.updateStrategy`
/// (JSON), given back when the hold ends.
pub const UPDATE_STRATEGY: &str = "canary.rs/update-strategy";

/// The node selector that keeps a canary DaemonSet off every node (no node carries it).
pub const NO_NODE: (&str, &str) = ("canary.rs/no-node", "true");

/// The strategy of a DaemonSet updated `OnDelete`.
const ON_DELETE: &str = "OnDelete";

impl Kind for DaemonSet {
    const DESCRIPTOR: &'static WorkloadDescriptor = &canary_core::workload::daemonset::DESCRIPTOR;

    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }

    fn match_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.spec.selector.match_labels.as_ref()
    }

    fn frozen(&self) -> bool {
        strategy_type(&current_strategy(self)) == ON_DELETE
    }

    fn observed(&self) -> bool {
        let status = self.status.as_ref();
        status.and_then(|status| status.observed_generation) >= self.metadata.generation
    }

    fn rolled_out(&self) -> bool {
        let Some(status) = &self.status else {
            return false;
        };
        self.observed()
            && status.updated_number_scheduled.unwrap_or(0) >= status.desired_number_scheduled
    }

    fn freeze(&self) -> Value {
        // Frozen already (by the webhook, or a write in between), the owner's strategy is the
        // one kept, not the OnDelete canary set.
        let owners = saved_strategy(self).unwrap_or_else(|| current_strategy(self));
        json!({
            "metadata": {"annotations": {UPDATE_STRATEGY: owners.to_string()}},
            "spec": {"updateStrategy": {"type": ON_DELETE}},
        })
    }

    fn thaw(&self) -> Value {
        let Some(saved) = saved_strategy(self) else {
            return json!({});
        };
        json!({
            "metadata": {"annotations": {UPDATE_STRATEGY: null}},
            "spec": {"updateStrategy": {
                "type": strategy_type(&saved),
                "rollingUpdate": saved.get("rollingUpdate").cloned().unwrap_or(Value::Null),
            }},
        })
    }

    fn unpromotable(&self) -> Option<String> {
        let owners = saved_strategy(self).unwrap_or_else(|| current_strategy(self));
        (strategy_type(&owners) == ON_DELETE).then(|| {
            format!(
                "the DaemonSet {}/{} is updated OnDelete: its pods never take a new template \
                 by themselves, so canary cannot promote one onto it; give it \
                 `updateStrategy: {{type: RollingUpdate}}` to release it with canary",
                self.metadata.namespace.as_deref().unwrap_or_default(),
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// Ready and available count only nodes whose pod runs the current template, once the
    /// DaemonSet controller has seen the current generation: the status counts ready and
    /// available pods whatever their template, so nodes still running an older one (a rolling
    /// update) are assumed ready and available and taken off.
    fn state(&self, revision: String) -> WorkloadState {
        let status = self.status.clone().unwrap_or_default();
        let current = self.observed() && self.status.is_some();
        let updated = status.updated_number_scheduled.unwrap_or(0).max(0);
        let older = status
            .current_number_scheduled
            .saturating_sub(updated)
            .max(0);
        let count = |n: i32| {
            if current {
                u32::try_from(n.saturating_sub(older).min(updated)).unwrap_or(0)
            } else {
                0
            }
        };
        WorkloadState {
            revision,
            desired: u32::try_from(status.desired_number_scheduled).unwrap_or(0),
            ready: count(status.number_ready),
            available: count(status.number_available.unwrap_or(0)),
            stale: !current,
        }
    }

    fn sized(&self, replicas: u32) -> bool {
        (replicas == 0) == kept_off_nodes(&self.spec.template)
    }

    fn canary_spec(
        _stable: &Self,
        replicas: u32,
        selector: &BTreeMap<String, String>,
        mut template: Value,
    ) -> Value {
        if replicas == 0 {
            template["spec"]["nodeSelector"][NO_NODE.0] = json!(NO_NODE.1);
        }
        json!({
            "selector": {"matchLabels": selector},
            "template": template,
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": "100%", "maxSurge": 0}},
        })
    }
}

/// Whether `template` carries the node selector that keeps its pods off every node.
fn kept_off_nodes(template: &PodTemplateSpec) -> bool {
    template
        .spec
        .as_ref()
        .and_then(|spec| spec.node_selector.as_ref())
        .and_then(|selector| selector.get(NO_NODE.0))
        .is_some_and(|value| value == NO_NODE.1)
}

/// `spec.updateStrategy` as JSON (`{}` when absent: the API server's default, RollingUpdate).
fn current_strategy(daemonset: &DaemonSet) -> Value {
    daemonset
        .spec
        .update_strategy
        .as_ref()
        .and_then(|strategy| serde_json::to_value(strategy).ok())
        .unwrap_or_else(|| json!({}))
}

/// The owner's strategy canary keeps while it holds the DaemonSet.
fn saved_strategy(daemonset: &DaemonSet) -> Option<Value> {
    let saved = daemonset
        .metadata
        .annotations
        .as_ref()?
        .get(UPDATE_STRATEGY)?;
    serde_json::from_str::<Value>(saved)
        .ok()
        .filter(Value::is_object)
}

/// A strategy's type: `RollingUpdate` when not given (the API server's default).
fn strategy_type(strategy: &Value) -> &str {
    strategy["type"].as_str().unwrap_or("RollingUpdate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemonset(strategy: Value, annotations: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ops", "annotations": annotations},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "agent", "image": "a:1"}]}}}
        }))
        .unwrap_or_else(|error| panic!("{error}"))
    }

    fn patched(daemonset: &DaemonSet, patch: &Value) -> DaemonSet {
        let mut value = serde_json::to_value(daemonset).unwrap_or_default();
        json_patch::merge(&mut value, patch);
        serde_json::from_value(value).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn a_hold_gives_the_owners_strategy_back_whole() {
        let owners = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}});
        let free = daemonset(owners.clone(), Value::Null);
        assert!(!free.frozen());
        let held = patched(&free, &free.freeze());
        assert!(held.frozen());
        assert_eq!(held.unpromotable(), None);
        // Frozen again (the controller after the webhook), the owner's strategy stays kept.
        let again = patched(&held, &held.freeze());
        assert_eq!(again.unpromotable(), None);
        assert_eq!(
            serde_json::to_value(&patched(&again, &again.thaw()).spec.update_strategy)
                .unwrap_or_default(),
            owners
        );
        let back = patched(&held, &held.thaw());
        assert!(!back.frozen());
        assert_eq!(
            serde_json::to_value(&back.spec.update_strategy).unwrap_or_default(),
            owners
        );
        assert!(
            !back
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key(UPDATE_STRATEGY)
        );
        // Without a strategy (the API server's default), the hold ends as RollingUpdate.
        let default = daemonset(Value::Null, Value::Null);
        let held = patched(&default, &default.freeze());
        assert!(held.frozen());
        assert!(!patched(&held, &held.thaw()).frozen());
    }

    #[test]
    fn an_owners_on_delete_is_not_promoted_and_nothing_of_it_is_given_back() {
        let owners = daemonset(json!({"type": "OnDelete"}), Value::Null);
        assert!(owners.frozen());
        assert!(
            owners
                .unpromotable()
                .is_some_and(|why| why.contains("OnDelete"))
        );
        assert_eq!(owners.thaw(), json!({}));
    }

    #[test]
    fn a_canary_at_no_size_is_kept_off_every_node() {
        let stable = daemonset(Value::Null, Value::Null);
        let template = serde_json::to_value(&stable.spec.template).unwrap_or_default();
        let selector = BTreeMap::from([("app".to_owned(), "agent".to_owned())]);
        let none: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent-canary"},
            "spec": DaemonSet::canary_spec(&stable, 0, &selector, template.clone()),
        }))
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(none.sized(0) && !none.sized(3));
        let all: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent-canary"},
            "spec": DaemonSet::canary_spec(&stable, 3, &selector, template),
        }))
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(all.sized(3) && !all.sized(0));
    }
}
