//! The garbage collector, after k8s.io/kubernetes pkg/controller/garbagecollector
//! (garbagecollector.go `attemptToDeleteItem`, `classifyReferences`,
//! `processDeletingDependentsItem`, `attemptToOrphanWorker`).
//!
//! Each owner reference of an object is *dangling* (no object of that kind, namespace and name,
//! or one with another uid), *waiting* (the owner is being deleted in the foreground: it has a
//! `deletionTimestamp` and the `foregroundDeletion` finalizer) or *solid*. References to kinds
//! the server does not serve, or without a uid, cannot be checked and count as solid.
//!
//! - An object with a solid owner stays; its dangling and waiting references are removed.
//! - An object whose owners are all dangling or waiting is deleted: in the foreground when an
//!   owner is waiting and the object has dependents itself, otherwise as its own finalizers ask
//!   (`orphan`, `foregroundDeletion`), in the background by default. Whether a reference has
//!   `blockOwnerDeletion` does not matter here: a foreground deletion deletes every dependent.
//! - An owner being deleted in the foreground loses its `foregroundDeletion` finalizer once no
//!   dependent *blocks* it (holds a reference to it with `blockOwnerDeletion: true`), and then
//!   goes when no other finalizer is left.
//! - An owner being deleted with `orphan` has its references removed from every dependent,
//!   then loses its `orphan` finalizer.
//!
//! Other objects being deleted are left to their finalizers.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::resources::ResourceType;
use super::super::store::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER, Part, Propagation};
use super::{Pass, meta};

/// The field manager the collector writes as.
const MANAGER: &str = "generic-garbage-collector";

/// One dependent of an owner: its kind, the object, and whether its reference to the owner
/// blocks the owner's foreground deletion.
struct Dependent {
    kind: ResourceType,
    object: Arc<Value>,
    blocking: bool,
}

/// The dependents of every owner uid, as stored now.
fn dependents(pass: &Pass<'_>) -> HashMap<String, Vec<Dependent>> {
    let mut out: HashMap<String, Vec<Dependent>> = HashMap::new();
    for kind in pass.registry.all() {
        for object in pass.inner.objects_of(&kind, None) {
            for reference in owner_refs(object) {
                if let Some(uid) = reference["uid"].as_str() {
                    out.entry(uid.to_owned()).or_default().push(Dependent {
                        kind: kind.clone(),
                        object: Arc::clone(object),
                        blocking: reference["blockOwnerDeletion"] == true,
                    });
                }
            }
        }
    }
    out
}

fn owner_refs(object: &Value) -> &[Value] {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn has_finalizer(object: &Value, name: &str) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == name))
}

/// Collects once over every served kind.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    // First, in place: what the collector may act on, objects being deleted and dependents
    // with an owner gone or deleting them in the foreground. Every other object (nearly all,
    // on nearly every pass) costs a look-up per owner, and no copy.
    let mut kinds: HashMap<(&str, &str), Option<ResourceType>> = HashMap::new();
    let mut work: Vec<(ResourceType, String, String)> = Vec::new();
    for kind in pass.registry.all() {
        for object in pass.inner.objects_of(&kind, None) {
            let acts = meta::terminating(object)
                || owner_refs(object).iter().any(|reference| {
                    !matches!(classify(pass, &mut kinds, object, reference), Owner::Solid)
                });
            if acts {
                let ns = meta::namespace(object).to_owned();
                work.push((kind.clone(), ns, meta::name(object).to_owned()));
            }
        }
    }
    drop(kinds);
    if work.is_empty() {
        return;
    }
    let index = dependents(pass);
    let none = Vec::new();
    for (kind, ns, name) in work {
        // As stored now: an earlier action of this pass may have changed or removed it.
        let ns = Some(ns.as_str()).filter(|ns| !ns.is_empty());
        let Some(object) = pass.inner.get_shared(&kind, ns, &name).cloned() else {
            continue;
        };
        let deps = index.get(meta::uid(&object)).unwrap_or(&none);
        if meta::terminating(&object) {
            if has_finalizer(&object, ORPHAN_FINALIZER) {
                orphan(pass, &kind, &object, deps);
            } else if has_finalizer(&object, FOREGROUND_FINALIZER)
                && !deps.iter().any(|d| d.blocking)
            {
                remove_finalizer(pass, &kind, &object, FOREGROUND_FINALIZER);
            }
            continue;
        }
        collect(pass, &kind, &object, !deps.is_empty());
    }
}

/// [`owner_state`] with the owner kinds resolved once per pass.
fn classify<'o>(
    pass: &Pass<'_>,
    kinds: &mut HashMap<(&'o str, &'o str), Option<ResourceType>>,
    dependent: &Value,
    reference: &'o Value,
) -> Owner {
    let (Some(api_version), Some(kind)) =
        (reference["apiVersion"].as_str(), reference["kind"].as_str())
    else {
        return Owner::Solid;
    };
    let owner_kind = kinds
        .entry((api_version, kind))
        .or_insert_with(|| pass.registry.by_kind(api_version, kind));
    match owner_kind {
        Some(owner_kind) => owner_state_of(pass, owner_kind, dependent, reference),
        None => Owner::Solid,
    }
}

/// `attemptToDeleteItem` for an object that is not being deleted.
fn collect(pass: &mut Pass<'_>, kind: &ResourceType, object: &Value, has_dependents: bool) {
    let refs = owner_refs(object);
    if refs.is_empty() {
        return;
    }
    let mut solid = Vec::new();
    let mut waiting = false;
    let mut dangling = false;
    for reference in refs {
        match owner_state(pass, object, reference) {
            Owner::Solid => solid.push(reference.clone()),
            Owner::Waiting => waiting = true,
            Owner::Dangling => dangling = true,
        }
    }
    if !solid.is_empty() {
        if waiting || dangling {
            let mut next = object.clone();
            meta::set(&mut next, &["metadata", "ownerReferences"], json!(solid));
            pass.update(kind, next, Part::Main, MANAGER);
        }
        return;
    }
    let propagation = if waiting && has_dependents {
        Propagation::Foreground
    } else if has_finalizer(object, ORPHAN_FINALIZER) {
        Propagation::Orphan
    } else if has_finalizer(object, FOREGROUND_FINALIZER) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    pass.delete_with(kind, object, propagation);
}

/// `attemptToOrphanWorker`: the owner's references leave every dependent, then its `orphan`
/// finalizer goes.
fn orphan(pass: &mut Pass<'_>, kind: &ResourceType, owner: &Value, deps: &[Dependent]) {
    let uid = meta::uid(owner);
    for dependent in deps {
        let Some(live) = pass
            .inner
            .get(
                &dependent.kind,
                Pass::ns(&dependent.object),
                meta::name(&dependent.object),
            )
            .cloned()
        else {
            continue;
        };
        let kept: Vec<Value> = owner_refs(&live)
            .iter()
            .filter(|r| r["uid"] != uid)
            .cloned()
            .collect();
        let mut next = live;
        if kept.is_empty() {
            meta::remove(&mut next, &["metadata", "ownerReferences"]);
        } else {
            meta::set(&mut next, &["metadata", "ownerReferences"], json!(kept));
        }
        pass.update(&dependent.kind, next, Part::Main, MANAGER);
    }
    remove_finalizer(pass, kind, owner, ORPHAN_FINALIZER);
}

/// Removes finalizer `name` from `object` (which goes once no finalizer is left).
fn remove_finalizer(pass: &mut Pass<'_>, kind: &ResourceType, object: &Value, name: &str) {
    let kept: Vec<Value> = object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != name)
        .cloned()
        .collect();
    let mut next = object.clone();
    meta::set(&mut next, &["metadata", "finalizers"], json!(kept));
    pass.update(kind, next, Part::Main, MANAGER);
}

/// What an owner reference names (`classifyReferences`).
enum Owner {
    /// An owner that exists and is not deleting its dependents.
    Solid,
    /// An owner being deleted in the foreground.
    Waiting,
    /// No such owner.
    Dangling,
}

/// The state of the owner `reference` of `dependent` names.
fn owner_state(pass: &Pass<'_>, dependent: &Value, reference: &Value) -> Owner {
    let (Some(api_version), Some(kind)) =
        (reference["apiVersion"].as_str(), reference["kind"].as_str())
    else {
        return Owner::Solid;
    };
    let Some(owner_kind) = pass.registry.by_kind(api_version, kind) else {
        return Owner::Solid;
    };
    owner_state_of(pass, &owner_kind, dependent, reference)
}

/// The state of the owner of kind `owner_kind` that `reference` of `dependent` names.
fn owner_state_of(
    pass: &Pass<'_>,
    owner_kind: &ResourceType,
    dependent: &Value,
    reference: &Value,
) -> Owner {
    let (Some(name), Some(uid)) = (reference["name"].as_str(), reference["uid"].as_str()) else {
        return Owner::Solid;
    };
    let ns = owner_kind.namespaced.then(|| meta::namespace(dependent));
    match pass.inner.get(owner_kind, ns, name) {
        Some(owner) if meta::uid(owner) == uid => {
            if meta::terminating(owner) && has_finalizer(owner, FOREGROUND_FINALIZER) {
                Owner::Waiting
            } else {
                Owner::Solid
            }
        }
        _ => Owner::Dangling,
    }
}
