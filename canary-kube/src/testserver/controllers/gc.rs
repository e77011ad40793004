//! The garbage collector, after k8s.io/kubernetes pkg/controller/garbagecollector
//! (garbagecollector.go `attemptToDeleteItem`): an object whose every owner reference names an
//! owner that no longer exists (no object of that kind, namespace and name, or one with another
//! uid) is deleted, in the background; references to missing owners are dropped from objects
//! that still have a live owner. References to kinds the server does not serve, or without a
//! uid, cannot be checked and count as live. Objects already being deleted are left to their
//! finalizers. Foreground deletion and orphaning are not modelled.

use serde_json::{Value, json};

use super::super::store::Part;
use super::{Pass, meta};

/// The field manager the collector writes as.
const MANAGER: &str = "generic-garbage-collector";

/// Collects once over every served kind.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    for kind in pass.registry.all() {
        for object in pass.inner.list(&kind, None) {
            let Some(refs) = object["metadata"]["ownerReferences"].as_array() else {
                continue;
            };
            if refs.is_empty() || meta::terminating(&object) {
                continue;
            }
            let (live, gone): (Vec<&Value>, Vec<&Value>) =
                refs.iter().partition(|r| owner_exists(pass, &object, r));
            if gone.is_empty() {
                continue;
            }
            if live.is_empty() {
                pass.delete(&kind, &object);
            } else {
                let mut next = object.clone();
                meta::set(&mut next, &["metadata", "ownerReferences"], json!(live));
                pass.update(&kind, next, Part::Main, MANAGER);
            }
        }
    }
}

/// Whether the owner `reference` of `dependent` names an existing object.
fn owner_exists(pass: &Pass<'_>, dependent: &Value, reference: &Value) -> bool {
    let (Some(api_version), Some(kind), Some(name), Some(uid)) = (
        reference["apiVersion"].as_str(),
        reference["kind"].as_str(),
        reference["name"].as_str(),
        reference["uid"].as_str(),
    ) else {
        return true;
    };
    let Some(owner_kind) = pass.registry.by_kind(api_version, kind) else {
        return true;
    };
    let ns = owner_kind.namespaced.then(|| meta::namespace(dependent));
    pass.inner
        .get(&owner_kind, ns, name)
        .is_some_and(|owner| meta::uid(owner) == uid)
}
