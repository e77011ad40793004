//! Holding the stable workload while a release is pending, and only then. What follows says
//! "Deployment"; a DaemonSet, which has no `paused` field, is held by `updateStrategy:
//! OnDelete` with its owner's strategy kept in the annotation
//! [`crate::workload::UPDATE_STRATEGY`] (see `crate::workload::daemonset`), and a write that
//! gives a held DaemonSet a rolling strategy back (a GitOps tool applying its manifest) is
//! held again, the strategy it wrote kept as the owner's.
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

use canary_core::workload::WorkloadKind;
use serde_json::{Value, json};

use crate::workload::{STABLE_REVISION, UPDATE_STRATEGY, pod_template_value};

/// The JSON Patch (RFC 6902) that holds the workload `new` of kind `kind` (as a write would
/// store it; `old` as stored before), or `None` when it needs no hold:
/// - its pod template is unchanged, or it is frozen (a paused Deployment, a DaemonSet updated
///   `OnDelete`: held already, or by its owner): nothing rolls;
/// - the write changes canary's annotation: canary's own promotion, which lets it roll;
/// - canary's annotation is not on it and no Rollout among `rollouts` (the Rollouts of its
///   namespace) targets it with a stable revision recorded.
///
/// A workload that still carries the annotation (promoted, not yet let go) is held at the
/// revision the annotation names. A DaemonSet canary holds that a write gives a rolling
/// strategy back is held again, whatever its template.
pub fn hold_patch<'a>(
    kind: WorkloadKind,
    old: &Value,
    new: &Value,
    rollouts: impl IntoIterator<Item = &'a Value>,
) -> Option<Value> {
    let marked = new["metadata"]["annotations"].get(STABLE_REVISION);
    if marked != old["metadata"]["annotations"].get(STABLE_REVISION) || frozen(kind, new) {
        return None;
    }
    if kind == WorkloadKind::DaemonSet && thawed_while_held(old, new) {
        return Some(Value::Array(freeze(kind, new, false)));
    }
    if pod_template_value(&old["spec"]["template"]) == pod_template_value(&new["spec"]["template"])
    {
        return None;
    }
    let mut patch = Vec::new();
    let mut annotated = false;
    if marked.is_none() {
        let revision = targeting_revision(kind, new, rollouts)?;
        if !new["metadata"]["annotations"].is_object() {
            patch.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
            annotated = true;
        }
        patch.push(json!({
            "op": "add",
            "path": annotation_path(STABLE_REVISION),
            "value": revision,
        }));
    }
    patch.extend(freeze(kind, new, annotated));
    Some(Value::Array(patch))
}

/// Whether `workload` of `kind` is frozen: its controller leaves its pods as they are.
fn frozen(kind: WorkloadKind, workload: &Value) -> bool {
    match kind {
        WorkloadKind::Deployment => workload["spec"]["paused"] == Value::Bool(true),
        WorkloadKind::DaemonSet => workload["spec"]["updateStrategy"]["type"] == "OnDelete",
    }
}

/// Whether a write takes the freeze off a DaemonSet canary holds (its owner's strategy kept in
/// canary's annotation before and after it) without canary's own letting go.
fn thawed_while_held(old: &Value, new: &Value) -> bool {
    let kept = |workload: &Value| {
        workload["metadata"]["annotations"]
            .get(UPDATE_STRATEGY)
            .is_some()
    };
    kept(old) && kept(new) && frozen(WorkloadKind::DaemonSet, old)
}

/// The operations that freeze `workload` (as the write would store it), keeping a DaemonSet's
/// strategy as its owner's in canary's annotation; `annotated`: the operations before these
/// made `/metadata/annotations` (made again, it would lose what they added).
fn freeze(kind: WorkloadKind, workload: &Value, annotated: bool) -> Vec<Value> {
    match kind {
        WorkloadKind::Deployment => {
            vec![json!({"op": "add", "path": "/spec/paused", "value": true})]
        }
        WorkloadKind::DaemonSet => {
            let owners = match &workload["spec"]["updateStrategy"] {
                Value::Null => json!({}),
                strategy => strategy.clone(),
            };
            let mut ops = Vec::new();
            if !annotated && !workload["metadata"]["annotations"].is_object() {
                ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
            }
            ops.push(json!({
                "op": "add",
                "path": annotation_path(UPDATE_STRATEGY),
                "value": owners.to_string(),
            }));
            // `rollingUpdate` stays as it is (allowed beside OnDelete), so that the owner's
            // manifest and the stored object differ in the type only.
            ops.push(if owners.is_object() && !workload["spec"]["updateStrategy"].is_null() {
                json!({"op": "add", "path": "/spec/updateStrategy/type", "value": "OnDelete"})
            } else {
                json!({"op": "add", "path": "/spec/updateStrategy", "value": {"type": "OnDelete"}})
            });
            ops
        }
    }
}

/// The JSON Pointer of annotation `key`.
fn annotation_path(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// The stable revision recorded by the Rollout among `rollouts` that targets `workload` of
/// `kind`.
fn targeting_revision<'a>(
    kind: WorkloadKind,
    workload: &Value,
    rollouts: impl IntoIterator<Item = &'a Value>,
) -> Option<&'a str> {
    let name = workload["metadata"]["name"].as_str()?;
    let kind = kind.descriptor().kind;
    rollouts.into_iter().find_map(|rollout| {
        let target = &rollout["spec"]["workloadRef"];
        let targets = target["kind"] == kind
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
        let patch = hold_patch(
            WorkloadKind::Deployment,
            &old,
            &new,
            &[rollout("web", Some("abc"))],
        )
        .unwrap();
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
        assert_eq!(
            hold_patch(WorkloadKind::Deployment, &old, &relabelled, &rollouts),
            None
        );
        assert_eq!(
            hold_patch(
                WorkloadKind::Deployment,
                &old,
                &new,
                &[rollout("api", Some("abc"))]
            ),
            None
        );
        assert_eq!(
            hold_patch(
                WorkloadKind::Deployment,
                &old,
                &new,
                &[rollout("web", None)]
            ),
            None
        );
        // canary's own promotion: the annotation changes with the template.
        let promoted = deployment("web:2", json!({STABLE_REVISION: "def"}));
        let held = deployment("web:1", json!({STABLE_REVISION: "abc"}));
        assert_eq!(
            hold_patch(WorkloadKind::Deployment, &held, &promoted, &rollouts),
            None
        );
        // Paused already: nothing rolls.
        let mut paused = new.clone();
        paused["spec"]["paused"] = json!(true);
        assert_eq!(
            hold_patch(WorkloadKind::Deployment, &old, &paused, &rollouts),
            None
        );
        let mut deleting = rollout("web", Some("abc"));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            hold_patch(WorkloadKind::Deployment, &old, &new, &[deleting]),
            None
        );
        // Existing annotations are kept: only canary's is added.
        let patch = hold_patch(WorkloadKind::Deployment, &old, &new, &rollouts).unwrap();
        let mut held = new.clone();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut held, &patch).unwrap();
        assert_eq!(held["metadata"]["annotations"]["team"], "a");
    }

    #[test]
    fn a_promoted_deployment_not_yet_let_go_is_held_at_the_revision_it_names() {
        let promoted = deployment("web:2", json!({STABLE_REVISION: "def"}));
        let edited = deployment("web:3", json!({STABLE_REVISION: "def"}));
        let patch = hold_patch(WorkloadKind::Deployment, &promoted, &edited, &[]).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        let mut held = edited.clone();
        json_patch::patch(&mut held, &patch).unwrap();
        assert_eq!(held["spec"]["paused"], true);
        assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "def");
    }
}

#[cfg(test)]
mod daemonset_tests {
    use super::*;

    fn daemonset(image: &str, strategy: Value, annotations: Value) -> Value {
        json!({
            "metadata": {"name": "agent", "namespace": "ops", "annotations": annotations},
            "spec": {"updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "agent"}},
                     "spec": {"containers": [{"name": "agent", "image": image}]}}}
        })
    }

    fn rollout() -> Value {
        json!({
            "metadata": {"name": "agent", "namespace": "ops"},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"}},
            "status": {"stableRevision": "abc"},
        })
    }

    fn applied(object: &Value, patch: Value) -> Value {
        let patch: json_patch::Patch =
            serde_json::from_value(patch).unwrap_or_else(|e| panic!("{e}"));
        let mut held = object.clone();
        json_patch::patch(&mut held, &patch).unwrap_or_else(|e| panic!("{e}"));
        held
    }

    #[test]
    fn a_new_template_of_a_daemonset_is_held_on_delete_with_its_owners_strategy_kept() {
        let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}});
        let old = daemonset("a:1", rolling.clone(), Value::Null);
        let new = daemonset("a:2", rolling.clone(), Value::Null);
        let patch = hold_patch(WorkloadKind::DaemonSet, &old, &new, &[rollout()]);
        let held = applied(&new, patch.unwrap_or_default());
        assert_eq!(held["spec"]["updateStrategy"]["type"], "OnDelete");
        assert_eq!(
            held["spec"]["updateStrategy"]["rollingUpdate"],
            rolling["rollingUpdate"]
        );
        assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "abc");
        let kept: Value = serde_json::from_str(
            held["metadata"]["annotations"][UPDATE_STRATEGY]
                .as_str()
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(kept, rolling);
        // The kind must match: a Rollout of a Deployment of that name holds nothing here.
        let mut deployment_rollout = rollout();
        deployment_rollout["spec"]["workloadRef"]["kind"] = json!("Deployment");
        assert_eq!(
            hold_patch(WorkloadKind::DaemonSet, &old, &new, &[deployment_rollout]),
            None
        );
        // Without a strategy (the default), the hold writes one.
        let bare = daemonset("a:2", Value::Null, Value::Null);
        let patch = hold_patch(WorkloadKind::DaemonSet, &old, &bare, &[rollout()]);
        let held = applied(&bare, patch.unwrap_or_default());
        assert_eq!(held["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
        assert_eq!(held["metadata"]["annotations"][UPDATE_STRATEGY], "{}");
        assert_eq!(
            held["metadata"]["annotations"][STABLE_REVISION], "abc",
            "both annotations are kept on an object that had none"
        );
    }

    #[test]
    fn a_gitops_apply_of_a_rolling_strategy_over_a_held_daemonset_is_held_again() {
        let held_annotations = json!({STABLE_REVISION: "abc", UPDATE_STRATEGY: "{}"});
        let old = daemonset("a:2", json!({"type": "OnDelete"}), held_annotations.clone());
        let applied_by_flux = daemonset(
            "a:2",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
            held_annotations,
        );
        let patch = hold_patch(WorkloadKind::DaemonSet, &old, &applied_by_flux, &[]);
        let held = applied(&applied_by_flux, patch.unwrap_or_default());
        assert_eq!(held["spec"]["updateStrategy"]["type"], "OnDelete");
        let kept: Value = serde_json::from_str(
            held["metadata"]["annotations"][UPDATE_STRATEGY]
                .as_str()
                .unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(
            kept["rollingUpdate"]["maxSurge"], 1,
            "the owner's new strategy is kept"
        );
        // canary's own letting go (the annotations removed) is not held.
        let let_go = daemonset("a:2", json!({"type": "RollingUpdate"}), json!({}));
        assert_eq!(
            hold_patch(WorkloadKind::DaemonSet, &old, &let_go, &[]),
            None
        );
        // An owner's own OnDelete is left alone.
        let owners = daemonset("a:3", json!({"type": "OnDelete"}), Value::Null);
        let before = daemonset("a:2", json!({"type": "OnDelete"}), Value::Null);
        assert_eq!(
            hold_patch(WorkloadKind::DaemonSet, &before, &owners, &[rollout()]),
            None
        );
    }
}
