//! A DaemonSet's status, after k8s.io/kubernetes pkg/controller/daemon daemon_controller.go
//! `updateDaemonSetStatus` and `storeDaemonSetStatus`: counted per node, looking at the node's
//! oldest pod only, and written (through the status subresource) only when a count or the
//! observed generation changed. The fields k8s.io/api `apps/v1/types.go` marks `omitempty`
//! (`observedGeneration`, `updatedNumberScheduled`, `numberAvailable`, `numberUnavailable`) are
//! left out when 0, as the API server's JSON has them.

use serde_json::{Value, json};

use super::super::super::store::Part;
use super::super::deployment::MANAGER;
use super::super::{Pass, meta};
use super::Daemon;

/// The counts of `updateDaemonSetStatus`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    /// Nodes that should run a pod.
    desired: i64,
    /// Of those, the ones with a pod.
    current: i64,
    /// Nodes that should not run a pod but have one.
    misscheduled: i64,
    /// Desired nodes whose oldest pod is ready.
    ready: i64,
    /// Desired nodes whose oldest pod is available.
    available: i64,
    /// Desired nodes whose oldest pod is of the current template.
    updated: i64,
}

/// The counts over the nodes of `d`, at the pass's instant.
fn count(pass: &Pass<'_>, d: &Daemon) -> Counts {
    let mut counts = Counts::default();
    for (node, placement) in &d.placements {
        let oldest = d.pods_on(node).first();
        if !placement.should_run {
            if oldest.is_some() {
                counts.misscheduled += 1;
            }
            continue;
        }
        counts.desired += 1;
        let Some(pod) = oldest else {
            continue;
        };
        counts.current += 1;
        if meta::pod_ready(pod) {
            counts.ready += 1;
            if meta::pod_available(pod, d.min_ready, pass.now) {
                counts.available += 1;
            }
        }
        if d.is_updated(pod) {
            counts.updated += 1;
        }
    }
    counts
}

/// `updateDaemonSetStatus`: writes the counts and `observedGeneration` (the controller has
/// always processed the DaemonSet's generation here: nothing it wrote is still unseen) when
/// they changed; other status fields are kept.
pub(super) fn write_status(pass: &mut Pass<'_>, d: &Daemon) {
    let c = count(pass, d);
    let mut status = match &d.ds["status"] {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let generation = meta::int(&d.ds, "/metadata/generation", 1);
    for (field, value, omit_empty) in [
        ("currentNumberScheduled", c.current, false),
        ("numberMisscheduled", c.misscheduled, false),
        ("desiredNumberScheduled", c.desired, false),
        ("numberReady", c.ready, false),
        ("observedGeneration", generation, true),
        ("updatedNumberScheduled", c.updated, true),
        ("numberAvailable", c.available, true),
        ("numberUnavailable", c.desired - c.available, true),
    ] {
        if omit_empty && value == 0 {
            status.remove(field);
        } else {
            status.insert(field.to_owned(), json!(value));
        }
    }
    let status = Value::Object(status);
    if status == d.ds["status"] {
        return;
    }
    let mut next = Value::clone(&d.ds);
    meta::set(&mut next, &["status"], status);
    pass.update(&pass.kinds.daemonsets.clone(), next, Part::Status, MANAGER);
}
