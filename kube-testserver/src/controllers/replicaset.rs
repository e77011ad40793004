//! The ReplicaSet controller, after k8s.io/kubernetes pkg/controller/replicaset
//! (replica_set.go `syncReplicaSet`, `manageReplicas`, replica_set_utils.go
//! `calculateStatus`): it keeps `spec.replicas` pods of the template and reports their counts.
//!
//! Pods are named `<replicaset>-<5 characters>` as the API server's `generateName` would, from a
//! hash rather than at random. Surplus pods go not-ready first, then the most recently ready,
//! then the newest (controller_utils.go `ActivePodsWithRanks`). ReplicaSets without a
//! `spec.template` are left alone; orphan pods are not adopted.

use std::cmp::{Ordering, Reverse};
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::store::Part;
use super::{Pass, hash, meta};

/// The field manager the controller writes as.
const MANAGER: &str = "kube-controller-manager";
/// The longest `generateName` prefix the API server keeps (names are at most 63 characters,
/// 5 of them random).
const MAX_PREFIX: usize = 58;

/// Syncs every ReplicaSet once.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    let pods_kind = pass.kinds.pods.clone();
    // The active pods by the uid of their controller, gathered once per pass.
    let mut by_controller: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for pod in pass
        .inner
        .objects_of(&pods_kind, None)
        .filter(|pod| active(pod))
    {
        if let Some(uid) = meta::controller_uid(pod) {
            by_controller
                .entry(uid.to_owned())
                .or_default()
                .push(pod.clone());
        }
    }
    for rs in pass.inner.list(&pass.kinds.replicasets.clone(), None) {
        if rs["spec"]["template"].is_null() {
            continue;
        }
        let mut pods: Vec<Arc<Value>> = by_controller
            .remove(meta::uid(&rs))
            .unwrap_or_default()
            .into_iter()
            .filter(|pod| meta::controlled_by(pod, &rs))
            .collect();
        if !meta::terminating(&rs) {
            manage(pass, &rs, &mut pods);
        }
        write_status(pass, &rs, &pods);
    }
}

/// controller_utils.go `IsPodActive`: not finished and not being deleted.
fn active(pod: &Value) -> bool {
    !meta::terminating(pod)
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

/// replica_set.go `manageReplicas`: creates the missing pods, deletes the surplus.
fn manage(pass: &mut Pass<'_>, rs: &Value, pods: &mut Vec<Arc<Value>>) {
    let want = usize::try_from(meta::int(rs, "/spec/replicas", 1)).unwrap_or(0);
    let kind = pass.kinds.pods.clone();
    if pods.len() < want {
        let mut attempt = 0u64;
        while pods.len() < want {
            let Some(pod) = new_pod(pass, rs, &mut attempt) else {
                return;
            };
            match pass.create(&kind, pod, MANAGER) {
                Some(created) => pods.push(created),
                None => return,
            }
        }
    } else if pods.len() > want {
        pods.sort_by(|a, b| deletion_order(a, b));
        for pod in pods.drain(..pods.len() - want) {
            pass.delete(&kind, &pod);
        }
    }
}

/// A pod of `rs`'s template, named with a free suffix.
fn new_pod(pass: &Pass<'_>, rs: &Value, attempt: &mut u64) -> Option<Value> {
    let name = free_pod_name(pass, rs, attempt)?;
    Some(pod_from_template(rs, &rs["spec"]["template"], name))
}

/// A name `<owner>-<5 characters>` no pod of `owner`'s namespace has, as the API server's
/// `generateName` would make it (controller_utils.go `getPodsPrefix`): the suffixes are tried
/// from the `attempt`-th on (see [`hash::pod_suffix`]), and `attempt` is left past the one
/// taken. `None` when 10 000 are taken.
pub(super) fn free_pod_name(pass: &Pass<'_>, owner: &Value, attempt: &mut u64) -> Option<String> {
    let ns = meta::namespace(owner);
    let mut prefix = format!("{}-", meta::name(owner));
    if prefix.len() > MAX_PREFIX {
        let mut end = MAX_PREFIX;
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        prefix.truncate(end);
    }
    for _ in 0..10_000 {
        let name = format!("{prefix}{}", hash::pod_suffix(meta::uid(owner), *attempt));
        *attempt = attempt.wrapping_add(1);
        if pass.inner.get(&pass.kinds.pods, Some(ns), &name).is_none() {
            return Some(name);
        }
    }
    None
}

/// A pod named `name` of `template` (controller_utils.go `GetPodFromTemplate`: the
/// template's labels, annotations and spec, `owner` as controller).
pub(super) fn pod_from_template(owner: &Value, template: &Value, name: String) -> Value {
    let mut metadata = json!({
        "name": name,
        "namespace": meta::namespace(owner),
        "ownerReferences": [meta::controller_ref(owner)],
    });
    for field in ["labels", "annotations"] {
        if let Some(value) = template["metadata"].get(field) {
            meta::set(&mut metadata, &[field], value.clone());
        }
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    })
}

/// The order surplus pods are deleted in (controller_utils.go `ActivePodsWithRanks.Less`,
/// without nodes, ranks and restarts): pending before running, not ready before ready, the
/// most recently ready first, the newest first.
fn deletion_order(a: &Value, b: &Value) -> Ordering {
    let phase = |p: &Value| match p["status"]["phase"].as_str() {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1,
    };
    phase(a)
        .cmp(&phase(b))
        .then_with(|| meta::pod_ready(a).cmp(&meta::pod_ready(b)))
        .then_with(|| Reverse(meta::ready_since(a)).cmp(&Reverse(meta::ready_since(b))))
        .then_with(|| meta::by_creation(b, a))
}

/// replica_set_utils.go `calculateStatus`.
fn write_status(pass: &mut Pass<'_>, rs: &Value, pods: &[Arc<Value>]) {
    let min_ready = meta::int(rs, "/spec/minReadySeconds", 0);
    let template_labels = rs["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let fully_labeled = pods
        .iter()
        .filter(|pod| {
            template_labels
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"][k.as_str()] == *v)
        })
        .count();
    let ready = pods.iter().filter(|p| meta::pod_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| meta::pod_available(p, min_ready, pass.now))
        .count();
    let mut status = rs["status"].clone();
    for (field, value) in [
        ("replicas", json!(pods.len())),
        ("fullyLabeledReplicas", json!(fully_labeled)),
        ("readyReplicas", json!(ready)),
        ("availableReplicas", json!(available)),
        (
            "observedGeneration",
            json!(meta::int(rs, "/metadata/generation", 1)),
        ),
    ] {
        meta::set(&mut status, &[field], value);
    }
    if status == rs["status"] {
        return;
    }
    let mut next = Value::clone(rs);
    meta::set(&mut next, &["status"], status);
    pass.update(&pass.kinds.replicasets.clone(), next, Part::Status, MANAGER);
}
