//! The DaemonSet controller, after k8s.io/kubernetes pkg/controller/daemon
//! (daemon_controller.go `syncDaemonSet`, `manage`, `podsShouldBeOnNode`, `syncNodes`,
//! `getNodesToDaemonPods`, `updateDaemonSetStatus`; update.go `rollingUpdate`;
//! util/daemonset_util.go `CreatePodTemplate`).
//!
//! A DaemonSet keeps one pod of its template on every Node that should run one
//! ([`nodes::DaemonPod::placement`]). Its pods are named `<daemonset>-<5 characters>` as the API
//! server's `generateName` would, carry the label `controller-revision-hash` (the hash of the
//! whole template, labels included, and of `status.collisionCount`), the default daemon
//! tolerations and a required node affinity on the node's name, and are bound to the node at
//! once (`spec.nodeName`: the scheduler's part). Pods are created from the current template
//! whatever the update strategy: under `OnDelete` new nodes and replaced pods get it, and only
//! `RollingUpdate` deletes old pods for an update ([`rolling`]). A pass that creates or deletes
//! pods leaves the rolling update to the next one, as upstream waits for its expectations.
//!
//! DaemonSets being deleted are left alone (their pods are the garbage collector's); so are
//! those with an empty selector. Pods whose node is gone are deleted here (upstream this is
//! the pod garbage collector's `gcOrphaned` for bound pods).
//!
//! Not modelled: ControllerRevisions (the hash is the template's, so a template reverted to an
//! earlier one gets its hash back and pods still at it count as updated, as upstream reuses the
//! revision), the deprecated `templateGeneration`, the failed-pod deletion backoff, adoption
//! and release of pods by their labels, and events.

mod nodes;
mod rolling;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::deployment::MANAGER;
use super::replicaset::{free_pod_name, pod_from_template};
use super::{Pass, hash, meta};
use nodes::{DaemonPod, Placement};

/// The label that tells the pods of one template apart (apps/v1
/// `DefaultDaemonSetUniqueLabelKey`).
const HASH: &str = "controller-revision-hash";

/// One DaemonSet being synced: the DaemonSet, its template's hash, its pods by node and what
/// every node is for it.
pub(super) struct Daemon {
    /// The DaemonSet as stored at the start of the sync.
    ds: Arc<Value>,
    /// The current template's `controller-revision-hash`.
    hash: String,
    /// `spec.minReadySeconds`.
    min_ready: i64,
    /// Its pods by the node they are for (`getNodesToDaemonPods`), scheduled ones first, then
    /// oldest first; kept up to date with what this sync creates and deletes.
    by_node: BTreeMap<String, Vec<Arc<Value>>>,
    /// Every node by name, with what it is for the DaemonSet.
    placements: BTreeMap<String, Placement>,
}

impl Daemon {
    /// Whether `pod` is of the current template (util `IsPodUpdated`).
    fn is_updated(&self, pod: &Value) -> bool {
        pod["metadata"]["labels"][HASH].as_str() == Some(self.hash.as_str())
    }

    /// The pods on `node`, oldest first.
    fn pods_on(&self, node: &str) -> &[Arc<Value>] {
        self.by_node.get(node).map_or(&[], Vec::as_slice)
    }
}

/// Syncs every DaemonSet once.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    let daemonsets = pass.inner.list(&pass.kinds.daemonsets, None);
    if daemonsets.is_empty() {
        return;
    }
    let nodes = pass.inner.list(&pass.kinds.nodes, None);
    let mut pods = gather_pods(pass);
    for ds in daemonsets {
        let owned = pods.remove(meta::uid(&ds)).unwrap_or_default();
        sync(pass, ds, &nodes, owned);
    }
}

/// The pods controlled by a DaemonSet, by the uid of their controller, gathered once per pass
/// (`getNodesToDaemonPods` leaves out finished pods being deleted).
fn gather_pods(pass: &Pass<'_>) -> HashMap<String, Vec<Arc<Value>>> {
    let mut by_controller: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for pod in pass.inner.objects_of(&pass.kinds.pods, None) {
        if meta::terminating(pod) && finished(pod) {
            continue;
        }
        let controller = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true && r["kind"] == "DaemonSet");
        if let Some(uid) = controller.and_then(|r| r["uid"].as_str()) {
            by_controller
                .entry(uid.to_owned())
                .or_default()
                .push(Arc::clone(pod));
        }
    }
    by_controller
}

/// Whether a pod has finished (`Succeeded` or `Failed`).
fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// daemon_controller.go `syncDaemonSet`.
fn sync(pass: &mut Pass<'_>, ds: Arc<Value>, nodes: &[Arc<Value>], pods: Vec<Arc<Value>>) {
    if meta::terminating(&ds) || !meta::has_selector(&ds["spec"]["selector"]) {
        return;
    }
    let mut d = Daemon {
        hash: hash::pod_template_hash(
            &ds["spec"]["template"],
            ds["status"]["collisionCount"].as_i64(),
        ),
        min_ready: meta::int(&ds, "/spec/minReadySeconds", 0),
        by_node: by_node(&ds, pods),
        placements: placements(&ds, nodes),
        ds,
    };
    if !manage(pass, &mut d) && rolling::is_rolling(&d.ds) {
        let plan = rolling::plan(pass, &d);
        sync_nodes(pass, &mut d, plan.delete, plan.create);
    }
    status::write_status(pass, &d);
}

/// The pods of `ds` by the node they are for (util `GetTargetNodeName`; pods for no node are
/// left out), each node's scheduled pods first, then oldest first (daemon_controller.go
/// `podByCreationTimestampAndPhase`, ties broken by uid, which the store hands out in order).
fn by_node(ds: &Value, pods: Vec<Arc<Value>>) -> BTreeMap<String, Vec<Arc<Value>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for pod in pods.into_iter().filter(|pod| meta::controlled_by(pod, ds)) {
        if let Some(node) = nodes::target_node(&pod) {
            by_node.entry(node.to_owned()).or_default().push(pod);
        }
    }
    for pods in by_node.values_mut() {
        pods.sort_by(|a, b| {
            unscheduled(a)
                .cmp(&unscheduled(b))
                .then_with(|| meta::by_creation(a, b))
        });
    }
    by_node
}

/// Whether a pod is not bound to a node yet.
fn unscheduled(pod: &Value) -> bool {
    pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
}

/// What every node is for `ds`, by name.
fn placements(ds: &Value, nodes: &[Arc<Value>]) -> BTreeMap<String, Placement> {
    let pod = DaemonPod::new(&ds["spec"]["template"]["spec"]);
    nodes
        .iter()
        .map(|node| (meta::name(node).to_owned(), pod.placement(node)))
        .collect()
}

/// daemon_controller.go `manage`: creates the missing pods and deletes the ones that should
/// not be there (`podsShouldBeOnNode` for every node, and every pod of a node that is gone).
/// Returns whether anything was created or deleted.
fn manage(pass: &mut Pass<'_>, d: &mut Daemon) -> bool {
    let surge = rolling::allows_surge(&d.ds);
    let mut create = Vec::new();
    let mut delete = Vec::new();
    for (node, placement) in &d.placements {
        let (start, stop) = pods_should_be_on_node(pass, d, node, *placement, surge);
        if start {
            create.push(node.clone());
        }
        delete.extend(stop);
    }
    for (node, pods) in &d.by_node {
        if !d.placements.contains_key(node) {
            delete.extend(pods.iter().filter(|p| !meta::terminating(p)).cloned());
        }
    }
    sync_nodes(pass, d, delete, create)
}

/// daemon_controller.go `podsShouldBeOnNode`: whether to start a pod on `node`, and which of
/// its pods to delete: finished ones, all of them where they may not stay, and without surge
/// all but the oldest; with surge an old and a new pod may share the node while the old one is
/// ready and the new one not yet available.
fn pods_should_be_on_node(
    pass: &Pass<'_>,
    d: &Daemon,
    node: &str,
    placement: Placement,
    surge: bool,
) -> (bool, Vec<Arc<Value>>) {
    let pods = d.pods_on(node);
    if placement.should_run && pods.is_empty() {
        return (true, Vec::new());
    }
    let live = pods.iter().filter(|p| !meta::terminating(p));
    if !placement.should_continue {
        return (false, live.cloned().collect());
    }
    let (done, running): (Vec<&Arc<Value>>, Vec<&Arc<Value>>) = live.partition(|pod| finished(pod));
    let mut delete: Vec<Arc<Value>> = done.into_iter().cloned().collect();
    if !surge {
        delete.extend(running.into_iter().skip(1).cloned());
        return (false, delete);
    }
    if running.len() <= 1 {
        return (running.is_empty() && placement.should_run, delete);
    }
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in running {
        let slot = if d.is_updated(pod) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            delete.push(Arc::clone(pod));
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!meta::pod_ready(old) || meta::pod_available(new, d.min_ready, pass.now))
    {
        delete.push(Arc::clone(old));
    }
    (false, delete)
}

/// daemon_controller.go `syncNodes`: deletes `delete` and starts a current pod on every node
/// of `create`, keeping `d.by_node` up to date. Returns whether anything was done.
fn sync_nodes(
    pass: &mut Pass<'_>,
    d: &mut Daemon,
    delete: Vec<Arc<Value>>,
    create: Vec<String>,
) -> bool {
    let acted = !(delete.is_empty() && create.is_empty());
    let kind = pass.kinds.pods.clone();
    for pod in delete {
        pass.delete(&kind, &pod);
        if let Some(pods) = nodes::target_node(&pod).and_then(|n| d.by_node.get_mut(n)) {
            pods.retain(|p| !Arc::ptr_eq(p, &pod));
        }
    }
    d.by_node.retain(|_, pods| !pods.is_empty());
    // Seeded by the store's version, so that a pod deleted earlier does not hand its name on.
    let mut attempt = pass.inner.rv();
    for node in create {
        let Some(pod) = new_pod(pass, d, &node, &mut attempt) else {
            break;
        };
        match pass.create(&kind, pod, MANAGER) {
            Some(created) => d.by_node.entry(node).or_default().push(created),
            None => break,
        }
    }
    acted
}

/// A pod of the DaemonSet's template for `node` (util `CreatePodTemplate` and
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the hash label, the default daemon tolerations,
/// the node affinity on the node's name, and bound to it.
fn new_pod(pass: &Pass<'_>, d: &Daemon, node: &str, attempt: &mut u64) -> Option<Value> {
    let name = free_pod_name(pass, &d.ds, attempt)?;
    let mut template = d.ds["spec"]["template"].clone();
    meta::set(&mut template, &["metadata", "labels", HASH], json!(d.hash));
    let mut spec = template["spec"].clone();
    let tolerations = nodes::daemon_tolerations(&spec);
    meta::set(&mut spec, &["tolerations"], Value::Array(tolerations));
    nodes::pin_to_node(&mut spec, node);
    meta::set(&mut spec, &["nodeName"], json!(node));
    meta::set(&mut template, &["spec"], spec);
    Some(pod_from_template(&d.ds, &template, name))
}
