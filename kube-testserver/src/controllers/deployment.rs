//! The Deployment controller, after k8s.io/kubernetes pkg/controller/deployment
//! (deployment_controller.go `syncDeployment`, sync.go, rolling.go, recreate.go, progress.go and
//! util/deployment_util.go).
//!
//! A Deployment owns ReplicaSets named `<deployment>-<pod-template-hash>`; the one whose pod
//! template equals the Deployment's (ignoring the hash label) is the new one, the others are
//! old. ReplicaSets without a `spec.template` (hand-made placeholders) are neither managed nor
//! adopted: they are left alone. Orphan ReplicaSets with a template whose labels the
//! Deployment's selector matches are adopted, as upstream does.
//!
//! Not modelled: rollbacks through the deprecated `rollbackTo`, the `revision-history`
//! annotation, events, and ReplicaSet failure conditions.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::store::Part;
use super::{Pass, hash, meta, rolling};

mod rename;
mod status;

pub(super) use rename::name_current;
use status::{
    calculate_status, complete, condition, has_progress_deadline, new_condition, set_condition,
    write_status,
};

/// The field manager the controller writes as.
pub(super) const MANAGER: &str = "kube-controller-manager";
/// The revision annotation on a Deployment and its ReplicaSets.
pub(super) const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment size a ReplicaSet was last scaled for.
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment size plus surge a ReplicaSet was last scaled for.
const MAX: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells the pods of one template apart.
pub(super) const HASH: &str = "pod-template-hash";
/// Deployment annotations never copied to its ReplicaSets (deployment_util.go
/// `annotationsToSkip`).
const SKIPPED_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    DESIRED,
    MAX,
    "deprecated.deployment.rollback.to",
];
/// The default `progressDeadlineSeconds` the API server fills in.
const DEFAULT_PROGRESS_DEADLINE: i64 = 600;
/// The default `revisionHistoryLimit` the API server fills in.
const DEFAULT_HISTORY_LIMIT: i64 = 10;

/// One Deployment being synced: the Deployment and its ReplicaSets as last written, and a
/// Progressing condition to record with the next status.
struct Sync {
    d: Arc<Value>,
    rss: Vec<Arc<Value>>,
    progress: Option<Value>,
}

/// Syncs every Deployment once.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    let replicasets = ReplicaSets::gather(pass, None);
    for d in pass.inner.list(&pass.kinds.deployments, None) {
        let candidates = replicasets.candidates(&d);
        sync(pass, d, candidates);
    }
}

/// The ReplicaSets with a pod template, gathered once per pass (in namespace and name order):
/// by the uid of their controller, and the orphans by namespace. Each Deployment then looks
/// at its own and its namespace's orphans only, not at every ReplicaSet of its namespace.
pub(super) struct ReplicaSets {
    by_controller: HashMap<String, Vec<Arc<Value>>>,
    orphans: HashMap<String, Vec<Arc<Value>>>,
}

impl ReplicaSets {
    /// The ReplicaSets of namespace `ns` (all namespaces if `None`).
    pub(super) fn gather(pass: &Pass<'_>, ns: Option<&str>) -> Self {
        let mut index = Self {
            by_controller: HashMap::new(),
            orphans: HashMap::new(),
        };
        for rs in pass
            .inner
            .objects_of(&pass.kinds.replicasets, ns)
            .filter(|rs| !rs["spec"]["template"].is_null())
        {
            let list = match meta::controller_uid(rs) {
                Some(uid) => index.by_controller.entry(uid.to_owned()),
                None => index.orphans.entry(meta::namespace(rs).to_owned()),
            };
            list.or_default().push(Arc::clone(rs));
        }
        index
    }

    /// The ReplicaSets `d` controls and the orphans of its namespace, as gathered.
    pub(super) fn candidates(&self, d: &Value) -> Vec<Arc<Value>> {
        let owned = self
            .by_controller
            .get(meta::uid(d))
            .into_iter()
            .flatten()
            .filter(|rs| meta::controlled_by(rs, d));
        let orphans = self.orphans.get(meta::namespace(d)).into_iter().flatten();
        owned.chain(orphans).cloned().collect()
    }
}

/// deployment_controller.go `syncDeployment`.
fn sync(pass: &mut Pass<'_>, d: Arc<Value>, candidates: Vec<Arc<Value>>) {
    if !meta::has_selector(&d["spec"]["selector"]) {
        // An empty selector would select every pod: the controller only records that it saw
        // the generation.
        let generation = meta::int(&d, "/metadata/generation", 1);
        if meta::int(&d, "/status/observedGeneration", 0) < generation {
            let mut next = Value::clone(&d);
            meta::set(
                &mut next,
                &["status", "observedGeneration"],
                json!(generation),
            );
            pass.update(&pass.kinds.deployments.clone(), next, Part::Status, MANAGER);
        }
        return;
    }
    let rss = claim(pass, &d, candidates);
    let mut s = Sync {
        d,
        rss,
        progress: None,
    };
    if meta::terminating(&s.d) {
        let new = find_new(&s.d, &s.rss);
        write_status(pass, &mut s, new, false);
        return;
    }
    check_paused_conditions(pass, &mut s);
    if paused(&s.d) || is_scaling_event(pass, &mut s) {
        sync_scale(pass, &mut s);
        return;
    }
    if rolling::is_rolling(&s.d) {
        rollout_rolling(pass, &mut s);
    } else {
        rollout_recreate(pass, &mut s);
    }
}

fn paused(d: &Value) -> bool {
    d["spec"]["paused"].as_bool().unwrap_or(false)
}

/// The ReplicaSets the Deployment controls, adopting matching orphans (controller_ref_manager.go
/// `ClaimReplicaSets`), oldest first, from `candidates` (see [`ReplicaSets::candidates`]).
fn claim(pass: &mut Pass<'_>, d: &Value, candidates: Vec<Arc<Value>>) -> Vec<Arc<Value>> {
    let kind = pass.kinds.replicasets.clone();
    let mut owned = Vec::new();
    for gathered in candidates {
        // As stored now: this pass may have adopted it for another Deployment already.
        let Some(rs) = pass
            .inner
            .get_shared(
                &kind,
                Some(meta::namespace(&gathered)),
                meta::name(&gathered),
            )
            .filter(|rs| meta::uid(rs) == meta::uid(&gathered))
            .cloned()
        else {
            continue;
        };
        if meta::controlled_by(&rs, d) {
            owned.push(rs);
        } else if meta::controller_uid(&rs).is_none()
            && !meta::terminating(&rs)
            && !meta::terminating(d)
            && meta::selects(&d["spec"]["selector"], &rs["metadata"]["labels"])
        {
            let mut next = Value::clone(&rs);
            let mut refs = rs["metadata"]["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            refs.push(meta::controller_ref(d));
            meta::set(
                &mut next,
                &["metadata", "ownerReferences"],
                Value::Array(refs),
            );
            if let Some(adopted) = pass.update(&kind, next, Part::Main, MANAGER) {
                owned.push(adopted);
            }
        }
    }
    owned.sort_by(|a, b| meta::by_creation(a, b));
    owned
}

/// Whether two pod templates are equal but for the `pod-template-hash` label
/// (deployment_util.go `EqualIgnoreHash`), compared in place: every Deployment's template is
/// compared with its ReplicaSets' on every pass.
fn equal_ignoring_hash(a: &Value, b: &Value) -> bool {
    equal_except(a, b, &["metadata", "labels", HASH])
}

/// Whether `a` and `b` are equal once the field at `path` (a path of object keys) is removed
/// from both.
fn equal_except(a: &Value, b: &Value, path: &[&str]) -> bool {
    let (Some((&first, rest)), Some(a), Some(b)) =
        (path.split_first(), a.as_object(), b.as_object())
    else {
        return a == b;
    };
    if rest.is_empty() {
        let others =
            |map: &serde_json::Map<String, Value>| map.keys().filter(|k| *k != first).count();
        return others(a) == others(b)
            && a.iter()
                .filter(|(k, _)| *k != first)
                .all(|(k, v)| b.get(k) == Some(v));
    }
    a.len() == b.len()
        && a.iter().all(|(k, v)| match b.get(k) {
            Some(w) if k == first => equal_except(v, w, rest),
            Some(w) => v == w,
            None => false,
        })
}

/// The oldest ReplicaSet whose template equals the Deployment's (deployment_util.go
/// `FindNewReplicaSet`).
fn find_new(d: &Value, rss: &[Arc<Value>]) -> Option<usize> {
    let template = &d["spec"]["template"];
    rss.iter()
        .position(|rs| equal_ignoring_hash(&rs["spec"]["template"], template))
}

/// A ReplicaSet's revision number (0 without one).
fn revision(rs: &Value) -> i64 {
    meta::annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn size(rs: &Value) -> i64 {
    meta::int(rs, "/spec/replicas", 1)
}

fn status_count(rs: &Value, field: &str) -> i64 {
    rs["status"][field].as_i64().unwrap_or(0)
}

/// sync.go `getAllReplicaSetsAndSyncRevision` / `getNewReplicaSet`: finds the new ReplicaSet,
/// brings its revision to one past the old ones' and the Deployment's revision annotation to
/// it, and creates it when asked and missing. Returns its index in `s.rss`.
fn new_replicaset(pass: &mut Pass<'_>, s: &mut Sync, create: bool) -> Option<usize> {
    let new = find_new(&s.d, &s.rss);
    let max_old = s
        .rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new)
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);
    let new_revision = max_old + 1;
    let Some(i) = new else {
        return if create {
            create_new(pass, s, new_revision)
        } else {
            None
        };
    };
    let kind = pass.kinds.replicasets.clone();
    if let Some(rs) = s.rss.get(i)
        && revision(rs) < new_revision
    {
        let mut next = Value::clone(rs);
        meta::set(
            &mut next,
            &["metadata", "annotations", REVISION],
            json!(new_revision.to_string()),
        );
        if let Some(written) = pass.update(&kind, next, Part::Main, MANAGER)
            && let Some(slot) = s.rss.get_mut(i)
        {
            *slot = written;
        }
    }
    let (name, rev) = match s.rss.get(i) {
        Some(rs) => (
            meta::name(rs).to_owned(),
            meta::annotation(rs, REVISION).unwrap_or("1").to_owned(),
        ),
        None => return None,
    };
    set_deployment_revision(pass, s, &rev);
    if condition(&s.d["status"], "Progressing").is_none() {
        s.progress = Some(new_condition(
            "Progressing",
            "True",
            "FoundNewReplicaSet",
            &format!("Found new replica set \"{name}\""),
            pass.now,
        ));
    }
    Some(i)
}

/// Creates the new ReplicaSet (sync.go `getNewReplicaSet`, the create branch). A name taken by
/// a ReplicaSet of another template bumps `status.collisionCount` (the next sync hashes
/// differently) and creates nothing.
fn create_new(pass: &mut Pass<'_>, s: &mut Sync, new_revision: i64) -> Option<usize> {
    let d = &s.d;
    let collisions = d["status"]["collisionCount"].as_i64();
    let hash = hash::pod_template_hash(&d["spec"]["template"], collisions);
    let name = format!("{}-{hash}", meta::name(d));
    let ns = meta::namespace(d).to_owned();
    let mut template = d["spec"]["template"].clone();
    meta::set(&mut template, &["metadata", "labels", HASH], json!(hash));
    let mut selector = d["spec"]["selector"].clone();
    meta::set(&mut selector, &["matchLabels", HASH], json!(hash));
    let desired = rolling::desired(d);
    let surge = rolling::max_surge(d);
    let replicas = if rolling::is_rolling(d) {
        let current: i64 = s.rss.iter().map(|rs| size(rs)).sum();
        rolling::new_rs_replicas(desired, surge, current, 0)
    } else {
        desired
    };
    let mut annotations = serde_json::Map::new();
    if let Some(own) = d["metadata"]["annotations"].as_object() {
        for (key, value) in own {
            if !SKIPPED_ANNOTATIONS.contains(&key.as_str()) {
                annotations.insert(key.clone(), value.clone());
            }
        }
    }
    annotations.insert(REVISION.into(), json!(new_revision.to_string()));
    annotations.insert(DESIRED.into(), json!(desired.to_string()));
    annotations.insert(MAX.into(), json!((desired + surge).to_string()));
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [meta::controller_ref(d)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": meta::int(d, "/spec/minReadySeconds", 0),
            "selector": selector,
            "template": template,
        },
    });
    let kind = pass.kinds.replicasets.clone();
    if let Some(existing) = pass.inner.get(&kind, Some(&ns), &name) {
        // Ours with the same template (being deleted, or not yet seen): wait for it.
        if meta::controlled_by(existing, d)
            && equal_ignoring_hash(&existing["spec"]["template"], &d["spec"]["template"])
        {
            return None;
        }
        let mut next = Value::clone(&s.d);
        meta::set(
            &mut next,
            &["status", "collisionCount"],
            json!(collisions.unwrap_or(0) + 1),
        );
        if let Some(written) =
            pass.update(&pass.kinds.deployments.clone(), next, Part::Status, MANAGER)
        {
            s.d = written;
        }
        return None;
    }
    let created = pass.create(&kind, rs, MANAGER)?;
    s.rss.push(created);
    set_deployment_revision(pass, s, &new_revision.to_string());
    s.progress = Some(new_condition(
        "Progressing",
        "True",
        "NewReplicaSetCreated",
        &format!("Created new replica set \"{name}\""),
        pass.now,
    ));
    Some(s.rss.len() - 1)
}

/// deployment_util.go `SetDeploymentRevision`.
fn set_deployment_revision(pass: &mut Pass<'_>, s: &mut Sync, revision: &str) {
    if meta::annotation(&s.d, REVISION) == Some(revision) {
        return;
    }
    let mut next = Value::clone(&s.d);
    meta::set(
        &mut next,
        &["metadata", "annotations", REVISION],
        json!(revision),
    );
    if let Some(written) = pass.update(&pass.kinds.deployments.clone(), next, Part::Main, MANAGER) {
        s.d = written;
    }
}

/// sync.go `scaleReplicaSet`: sets the size and the desired/max annotations. Returns whether
/// the size changed.
fn scale(pass: &mut Pass<'_>, s: &mut Sync, i: usize, new_size: i64) -> bool {
    let desired = rolling::desired(&s.d);
    let max = desired + rolling::max_surge(&s.d);
    let Some(rs) = s.rss.get(i) else {
        return false;
    };
    let resized = size(rs) != new_size;
    let mut next = Value::clone(rs);
    meta::set(&mut next, &["spec", "replicas"], json!(new_size.max(0)));
    meta::set(
        &mut next,
        &["metadata", "annotations", DESIRED],
        json!(desired.to_string()),
    );
    meta::set(
        &mut next,
        &["metadata", "annotations", MAX],
        json!(max.to_string()),
    );
    if next == **rs {
        return false;
    }
    match pass.update(&pass.kinds.replicasets.clone(), next, Part::Main, MANAGER) {
        Some(written) => {
            if let Some(slot) = s.rss.get_mut(i) {
                *slot = written;
            }
            resized
        }
        None => false,
    }
}

/// progress.go/sync.go `checkPausedConditions`: Progressing becomes Unknown with
/// `DeploymentPaused` while paused and `DeploymentResumed` when resumed.
fn check_paused_conditions(pass: &mut Pass<'_>, s: &mut Sync) {
    if !has_progress_deadline(&s.d) {
        return;
    }
    let current = condition(&s.d["status"], "Progressing");
    let reason = current.and_then(|c| c["reason"].as_str());
    if reason == Some("ProgressDeadlineExceeded") {
        return;
    }
    let paused_recorded = reason == Some("DeploymentPaused");
    let (reason, message) = if paused(&s.d) && !paused_recorded {
        ("DeploymentPaused", "Deployment is paused")
    } else if !paused(&s.d) && paused_recorded {
        ("DeploymentResumed", "Deployment is resumed")
    } else {
        return;
    };
    let mut status = s.d["status"].clone();
    set_condition(
        &mut status,
        new_condition("Progressing", "Unknown", reason, message, pass.now),
    );
    let mut next = Value::clone(&s.d);
    meta::set(&mut next, &["status"], status);
    if let Some(written) = pass.update(&pass.kinds.deployments.clone(), next, Part::Status, MANAGER)
    {
        s.d = written;
    }
}

/// sync.go `isScalingEvent`: an active ReplicaSet was last scaled for another size.
fn is_scaling_event(pass: &mut Pass<'_>, s: &mut Sync) -> bool {
    new_replicaset(pass, s, false);
    let desired = rolling::desired(&s.d);
    s.rss.iter().filter(|rs| size(rs) > 0).any(|rs| {
        meta::annotation(rs, DESIRED)
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|v| v != desired)
    })
}

/// sync.go `sync`: scaling only (a paused Deployment, or a size change), then the status.
fn sync_scale(pass: &mut Pass<'_>, s: &mut Sync) {
    let new = new_replicaset(pass, s, false);
    scale_all(pass, s, new);
    if paused(&s.d) {
        cleanup(pass, s, new);
    }
    write_status(pass, s, new, false);
}

/// sync.go `scale`: one active (or the latest) ReplicaSet takes the whole size; a saturated
/// new ReplicaSet scales the old ones to 0; otherwise a rolling Deployment spreads the change
/// proportionally over its active ReplicaSets, the remainder to the first.
fn scale_all(pass: &mut Pass<'_>, s: &mut Sync, new: Option<usize>) {
    let desired = rolling::desired(&s.d);
    let active: Vec<usize> = (0..s.rss.len())
        .filter(|&i| s.rss.get(i).is_some_and(|rs| size(rs) > 0))
        .collect();
    // deployment_util.go `FindActiveOrLatest`.
    let single = match active.as_slice() {
        [] => new.or_else(|| (0..s.rss.len()).max_by(|&a, &b| creation(s, a, b))),
        [only] => Some(*only),
        _ => None,
    };
    if let Some(i) = single {
        if s.rss.get(i).is_some_and(|rs| size(rs) != desired) {
            scale(pass, s, i, desired);
        }
        return;
    }
    if let Some(n) = new
        && s.rss.get(n).is_some_and(|rs| saturated(rs, desired))
    {
        for i in active.into_iter().filter(|&i| i != n) {
            scale(pass, s, i, 0);
        }
        return;
    }
    if !rolling::is_rolling(&s.d) {
        return;
    }
    let surge = rolling::max_surge(&s.d);
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let current: i64 = active
        .iter()
        .filter_map(|&i| s.rss.get(i))
        .map(|rs| size(rs))
        .sum();
    let to_add = allowed - current;
    let mut order = active;
    // controller_utils.go `ReplicaSetsBySizeNewer` (growing) / `ReplicaSetsBySizeOlder`
    // (shrinking): larger first, ties newer (or older) first.
    order.sort_by(|&a, &b| {
        let by_size = s
            .rss
            .get(b)
            .map(|rs| size(rs))
            .cmp(&s.rss.get(a).map(|rs| size(rs)));
        let by_age = if to_add > 0 {
            creation(s, b, a)
        } else {
            creation(s, a, b)
        };
        by_size.then(by_age)
    });
    let fallback = meta::int(&s.d, "/status/replicas", 0);
    let mut added = 0;
    let mut sizes = Vec::with_capacity(order.len());
    for &i in &order {
        let Some(rs) = s.rss.get(i) else { continue };
        let current = size(rs);
        if to_add == 0 {
            sizes.push((i, current));
            continue;
        }
        let annotated = meta::annotation(rs, MAX)
            .and_then(|v| v.parse().ok())
            .unwrap_or(fallback);
        let fraction = rolling::fraction(current, desired, allowed, annotated);
        let share = rolling::proportion(current, fraction, to_add, added);
        sizes.push((i, current + share));
        added += share;
    }
    if let Some(first) = sizes.first_mut()
        && to_add != 0
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    for (i, new_size) in sizes {
        scale(pass, s, i, new_size);
    }
}

fn creation(s: &Sync, a: usize, b: usize) -> Ordering {
    match (s.rss.get(a), s.rss.get(b)) {
        (Some(x), Some(y)) => meta::by_creation(x, y),
        _ => Ordering::Equal,
    }
}

/// deployment_util.go `IsSaturated`.
fn saturated(rs: &Value, desired: i64) -> bool {
    size(rs) == desired
        && meta::annotation(rs, DESIRED).and_then(|v| v.parse::<i64>().ok()) == Some(desired)
        && status_count(rs, "availableReplicas") == desired
}

/// rolling.go `rolloutRolling`.
fn rollout_rolling(pass: &mut Pass<'_>, s: &mut Sync) {
    let Some(new) = new_replicaset(pass, s, true) else {
        return;
    };
    if reconcile_new(pass, s, new) || reconcile_old(pass, s, new) {
        write_status(pass, s, Some(new), true);
        return;
    }
    if complete(&s.d, &calculate_status(s, Some(new), pass.now)) {
        cleanup(pass, s, Some(new));
    }
    write_status(pass, s, Some(new), true);
}

/// rolling.go `reconcileNewReplicaSet`.
fn reconcile_new(pass: &mut Pass<'_>, s: &mut Sync, new: usize) -> bool {
    let desired = rolling::desired(&s.d);
    let Some(current_size) = s.rss.get(new).map(|rs| size(rs)) else {
        return false;
    };
    if current_size == desired {
        return false;
    }
    if current_size > desired {
        return scale(pass, s, new, desired);
    }
    let all: i64 = s.rss.iter().map(|rs| size(rs)).sum();
    let target = rolling::new_rs_replicas(desired, rolling::max_surge(&s.d), all, current_size);
    scale(pass, s, new, target)
}

/// rolling.go `reconcileOldReplicaSets`: unhealthy old pods go first
/// (`cleanupUnhealthyReplicas`), then old pods while more than the minimum stay available
/// (`scaleDownOldReplicaSetsForRollingUpdate`), oldest ReplicaSets first.
fn reconcile_old(pass: &mut Pass<'_>, s: &mut Sync, new: usize) -> bool {
    let old: Vec<usize> = (0..s.rss.len()).filter(|&i| i != new).collect();
    let old_pods: i64 = old
        .iter()
        .filter_map(|&i| s.rss.get(i))
        .map(|rs| size(rs))
        .sum();
    if old_pods == 0 {
        return false;
    }
    let desired = rolling::desired(&s.d);
    let min_available = desired - rolling::max_unavailable(&s.d);
    let all_pods: i64 = s.rss.iter().map(|rs| size(rs)).sum();
    let new_unavailable = s
        .rss
        .get(new)
        .map_or(0, |rs| size(rs) - status_count(rs, "availableReplicas"));
    let max_down = rolling::max_scaled_down(all_pods, min_available, new_unavailable);
    if max_down <= 0 {
        return false;
    }
    let mut cleaned = 0;
    for &i in &old {
        if cleaned >= max_down {
            break;
        }
        let Some(rs) = s.rss.get(i) else { continue };
        let (current, available) = (size(rs), status_count(rs, "availableReplicas"));
        if current == 0 || current <= available {
            continue;
        }
        let down = (max_down - cleaned).min(current - available);
        scale(pass, s, i, current - down);
        cleaned += down;
    }
    let available: i64 = s
        .rss
        .iter()
        .map(|rs| status_count(rs, "availableReplicas"))
        .sum();
    let mut scaled = 0;
    if available > min_available {
        let total = available - min_available;
        for &i in &old {
            if scaled >= total {
                break;
            }
            let Some(current) = s.rss.get(i).map(|rs| size(rs)) else {
                continue;
            };
            if current == 0 {
                continue;
            }
            let down = current.min(total - scaled);
            scale(pass, s, i, current - down);
            scaled += down;
        }
    }
    cleaned + scaled > 0
}

/// recreate.go `rolloutRecreate`: every old pod goes, then the new ReplicaSet takes the whole
/// size.
fn rollout_recreate(pass: &mut Pass<'_>, s: &mut Sync) {
    let new = new_replicaset(pass, s, false);
    let mut scaled = false;
    for i in (0..s.rss.len()).filter(|&i| Some(i) != new) {
        if s.rss.get(i).is_some_and(|rs| size(rs) != 0) {
            scaled |= scale(pass, s, i, 0);
        }
    }
    if scaled || old_pods_running(pass, s, new) {
        write_status(pass, s, new, true);
        return;
    }
    let new = match new {
        Some(i) => i,
        None => match new_replicaset(pass, s, true) {
            Some(i) => i,
            None => return,
        },
    };
    scale(pass, s, new, rolling::desired(&s.d));
    if complete(&s.d, &calculate_status(s, Some(new), pass.now)) {
        cleanup(pass, s, Some(new));
    }
    write_status(pass, s, Some(new), true);
}

/// recreate.go `oldPodsRunning`: an old ReplicaSet still counts pods, or a pod of one is not
/// finished.
fn old_pods_running(pass: &Pass<'_>, s: &Sync, new: Option<usize>) -> bool {
    let old: Vec<&Value> = s
        .rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new)
        .map(|(_, rs)| &**rs)
        .collect();
    if old.iter().any(|rs| status_count(rs, "replicas") > 0) {
        return true;
    }
    let pods = pass
        .inner
        .list(&pass.kinds.pods, Some(meta::namespace(&s.d)));
    pods.iter().any(|pod| {
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        !finished && old.iter().any(|rs| meta::controlled_by(pod, rs))
    })
}

/// sync.go `cleanupDeployment`: old ReplicaSets scaled to 0 beyond `revisionHistoryLimit`
/// (default 10) are deleted, lowest revision first.
fn cleanup(pass: &mut Pass<'_>, s: &Sync, new: Option<usize>) {
    let limit = meta::int(&s.d, "/spec/revisionHistoryLimit", DEFAULT_HISTORY_LIMIT).max(0);
    let mut cleanable: Vec<&Value> = s
        .rss
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new)
        .map(|(_, rs)| &**rs)
        .filter(|rs| {
            size(rs) == 0
                && status_count(rs, "replicas") == 0
                && !meta::terminating(rs)
                && meta::int(rs, "/metadata/generation", 1)
                    <= status_count(rs, "observedGeneration")
        })
        .collect();
    let excess = i64::try_from(cleanable.len()).unwrap_or(0) - limit;
    if excess <= 0 {
        return;
    }
    cleanable.sort_by(|a, b| {
        revision(a)
            .cmp(&revision(b))
            .then_with(|| meta::by_creation(a, b))
    });
    let kind = pass.kinds.replicasets.clone();
    for rs in cleanable
        .into_iter()
        .take(usize::try_from(excess).unwrap_or(0))
    {
        pass.delete(&kind, rs);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::equal_ignoring_hash;

    #[test]
    fn templates_compare_without_their_hash_label() {
        let template = |labels: serde_json::Value| json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app"}]}});
        let plain = template(json!({"app": "web"}));
        let hashed = template(json!({"app": "web", "pod-template-hash": "abc"}));
        assert!(equal_ignoring_hash(&plain, &hashed));
        assert!(equal_ignoring_hash(
            &hashed,
            &template(json!({"app": "web", "pod-template-hash": "def"}))
        ));
        assert!(!equal_ignoring_hash(
            &plain,
            &template(json!({"app": "api"}))
        ));
        assert!(!equal_ignoring_hash(
            &plain,
            &template(json!({"app": "web", "tier": "x"}))
        ));
        // As if the label were removed from both: empty labels are still labels.
        let no_labels = json!({"metadata": {}, "spec": {"containers": [{"name": "app"}]}});
        assert!(equal_ignoring_hash(
            &template(json!({"pod-template-hash": "abc"})),
            &template(json!({}))
        ));
        assert!(!equal_ignoring_hash(&template(json!({})), &no_labels));
        let other_spec =
            json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}});
        assert!(!equal_ignoring_hash(&plain, &other_spec));
        assert!(equal_ignoring_hash(&json!(null), &json!(null)));
    }
}
