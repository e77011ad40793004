//! Holding the stable Deployment while a release is pending, and only then.
//!
//! Between releases the stable Deployment is exactly as its owner (a person, Flux, Argo CD)
//! made it: not paused, no annotation of canary's. When its pod template changes, the new
//! template must not roll onto the stable pods before the release has tested it, so the
//! Deployment is *held*: `spec.paused: true` and the annotation
//! [`crate::workload::STABLE_REVISION`] naming the revision its pods still
//! run (the Rollout's `status.stableRevision`). The Deployment controller makes no new
//! ReplicaSet for a paused Deployment (kubernetes `pkg/controller/deployment/sync.go`
//! `sync`: a paused Deployment is only scaled), so the stable pods stay as they were.
//!
//! Two writers hold, and the first one wins:
//! - the mutating admission webhook (see [`hold_patch`]) holds *in the same request* that
//!   changes the template, so the Deployment controller never sees the new template
//!   unpaused. The fields it adds belong to no field manager (the API server records
//!   managed fields before mutating admission: apiserver `endpoints/handlers/patch.go` and
//!   `update.go` run admission on the object the field manager has already updated), so
//!   Flux's forced apply does not prune them and Argo CD's three-way diff does not see them;
//! - the controller holds on sight whenever the revision asked for differs from the one the
//!   Rollout's status says stable runs (`DeploymentWorkload::hold`). Without the webhook the
//!   Deployment controller may have begun rolling first; the controller says so in an event.
//!
//! The hold ends when the Rollout's status records the revision the Deployment runs and no
//! other is asked for: after a promotion succeeded, or once the template is reverted after a
//! cancelled or failed release.

use serde_json::{Value, json};

use crate::workload::{STABLE_REVISION, pod_template_value};

/// The JSON Patch (RFC 6902) that holds the Deployment `new` (as a write would store it;
/// `old` as stored before), or `None` when it needs no hold:
/// - its pod template is unchanged, or it is paused (held already, or by its owner): nothing
///   rolls;
/// - the write changes canary's annotation: canary's own promotion, which lets it roll;
/// - canary's annotation is not on it and no Rollout among `rollouts` (the Rollouts of its
///   namespace) targets it with a stable revision recorded.
///
/// A Deployment that still carries the annotation (promoted, not yet let go) is paused at the
/// revision the annotation names.
pub fn hold_patch<'a>(
    old: &Value,
    new: &Value,
    rollouts: impl IntoIterator<Item = &'a Value>,
) -> Option<Value> {
    let marked = new["metadata"]["annotations"].get(STABLE_REVISION);
    if marked != old["metadata"]["annotations"].get(STABLE_REVISION)
        || new["spec"]["paused"] == Value::Bool(true)
        || pod_template_value(&old["spec"]["template"])
            == pod_template_value(&new["spec"]["template"])
    {
        return None;
    }
    let mut patch = Vec::new();
    if marked.is_none() {
        let revision = targeting_revision(new, rollouts)?;
        if !new["metadata"]["annotations"].is_object() {
            patch.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
        }
        patch.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", STABLE_REVISION.replace('/', "~1")),
            "value": revision,
        }));
    }
    patch.push(json!({"op": "add", "path": "/spec/paused", "value": true}));
    Some(Value::Array(patch))
}

/// The stable revision recorded by the Rollout among `rollouts` that targets `deployment`.
fn targeting_revision<'a>(
    deployment: &Value,
    rollouts: impl IntoIterator<Item = &'a Value>,
) -> Option<&'a str> {
    let name = deployment["metadata"]["name"].as_str()?;
    rollouts.into_iter().find_map(|rollout| {
        let target = &rollout["spec"]["workloadRef"];
        let targets = target["kind"] == "Deployment"
            && target["name"].as_str() == Some(name)
            && rollout["metadata"]["deletionTimestamp"].is_null();
        targets
            .then(|| rollout["status"]["stableRevision"].as_str())
            .flatten()
            .filter(|revision| !revision.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(image: &str, annotations: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "web", "image": image}]}}}
        })
    }

    fn rollout(target: &str, stable: Option<&str>) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
            "status": {"stableRevision": stable},
        })
    }

    #[test]
    fn a_new_template_of_a_released_deployment_is_held_at_the_revision_stable_runs() {
        let old = deployment("web:1", Value::Null);
        let new = deployment("web:2", Value::Null);
        let patch = hold_patch(&old, &new, &[rollout("web", Some("abc"))]).unwrap();
        let mut held = new.clone();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut held, &patch).unwrap();
        assert_eq!(held["spec"]["paused"], true);
        assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "abc");
        assert_eq!(held["spec"]["template"], new["spec"]["template"]);
    }

    #[test]
    fn nothing_is_held_without_a_new_template_a_rollout_or_a_recorded_revision() {
        let old = deployment("web:1", json!({"team": "a"}));
        let relabelled = deployment("web:1", json!({"team": "b"}));
        let new = deployment("web:2", json!({"team": "a"}));
        let rollouts = [rollout("web", Some("abc"))];
        assert_eq!(hold_patch(&old, &relabelled, &rollouts), None);
        assert_eq!(hold_patch(&old, &new, &[rollout("api", Some("abc"))]), None);
        assert_eq!(hold_patch(&old, &new, &[rollout("web", None)]), None);
        // canary's own promotion: the annotation changes with the template.
        let promoted = deployment("web:2", json!({STABLE_REVISION: "def"}));
        let held = deployment("web:1", json!({STABLE_REVISION: "abc"}));
        assert_eq!(hold_patch(&held, &promoted, &rollouts), None);
        // Paused already: nothing rolls.
        let mut paused = new.clone();
        paused["spec"]["paused"] = json!(true);
        assert_eq!(hold_patch(&old, &paused, &rollouts), None);
        let mut deleting = rollout("web", Some("abc"));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(hold_patch(&old, &new, &[deleting]), None);
        // Existing annotations are kept: only canary's is added.
        let patch = hold_patch(&old, &new, &rollouts).unwrap();
        let mut held = new.clone();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut held, &patch).unwrap();
        assert_eq!(held["metadata"]["annotations"]["team"], "a");
    }

    #[test]
    fn a_promoted_deployment_not_yet_let_go_is_held_at_the_revision_it_names() {
        let promoted = deployment("web:2", json!({STABLE_REVISION: "def"}));
        let edited = deployment("web:3", json!({STABLE_REVISION: "def"}));
        let patch = hold_patch(&promoted, &edited, &[]).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        let mut held = edited.clone();
        json_patch::patch(&mut held, &patch).unwrap();
        assert_eq!(held["spec"]["paused"], true);
        assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "def");
    }
}
