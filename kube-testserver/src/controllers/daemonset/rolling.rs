//! A DaemonSet's rolling update, after k8s.io/kubernetes pkg/controller/daemon update.go
//! `rollingUpdate`, `findUpdatedPodsOnNode` and `updatedDesiredNodeCounts`, with
//! util/daemonset_util.go `SurgeCount`, `UnavailableCount` and `AllowsSurge`.
//!
//! Without surge, old pods are deleted (and recreated at the current hash by the next
//! `manage`) while no more than `maxUnavailable` desired nodes are without an available pod;
//! with surge, a current pod starts beside the old one on up to `maxSurge` nodes, and the old
//! one goes once the new one is available. Upstream visits the nodes in Go map order, which is
//! undefined; here they are visited in name order.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::super::{Pass, meta, rolling};
use super::Daemon;

/// The `maxUnavailable` the API server defaults a RollingUpdate DaemonSet to.
const DEFAULT_MAX_UNAVAILABLE: i64 = 1;

/// Whether the DaemonSet updates with `RollingUpdate` (the default strategy) rather than
/// `OnDelete`.
pub(super) fn is_rolling(ds: &Value) -> bool {
    ds["spec"]["updateStrategy"]["type"]
        .as_str()
        .is_none_or(|t| t == "RollingUpdate")
}

/// An int-or-percent of `total`, rounded up (`GetScaledValueFromIntOrPercent(..., true)`), or
/// `default` when missing.
fn scaled(value: &Value, total: i64, default: i64) -> i64 {
    if value.is_null() {
        default
    } else {
        rolling::scaled(value, total, true, "0%")
    }
}

/// `SurgeCount` and `UnavailableCount` for `desired` nodes (`updatedDesiredNodeCounts`): both
/// rounded up, and when both come to 0 one node may be unavailable so that the update moves.
/// `(0, 0)` unless rolling.
pub(super) fn budgets(ds: &Value, desired: i64) -> (i64, i64) {
    if !is_rolling(ds) {
        return (0, 0);
    }
    let update = &ds["spec"]["updateStrategy"]["rollingUpdate"];
    let surge = scaled(&update["maxSurge"], desired, 0);
    let unavailable = scaled(&update["maxUnavailable"], desired, DEFAULT_MAX_UNAVAILABLE);
    if desired > 0 && surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// `AllowsSurge`: whether a node may run an old and a new pod at once.
pub(super) fn allows_surge(ds: &Value) -> bool {
    budgets(ds, 1).0 > 0
}

/// A pod found on a node, if any.
type Found<'p> = Option<&'p Arc<Value>>;

/// `findUpdatedPodsOnNode`: the node's current-hash pod and old pod (not being deleted), or
/// `None` when it has more than one of either (left to `manage`).
fn updated_and_old<'p>(d: &Daemon, pods: &'p [Arc<Value>]) -> Option<(Found<'p>, Found<'p>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !meta::terminating(p)) {
        let slot = if d.is_updated(pod) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// What a rolling update does to the nodes: pods to delete and nodes to start a pod on.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Pods to delete.
    pub(super) delete: Vec<Arc<Value>>,
    /// Nodes to start a current pod on.
    pub(super) create: Vec<String>,
}

/// `rollingUpdate`: what to delete and create for one step of the update.
pub(super) fn plan(pass: &Pass<'_>, d: &Daemon) -> Plan {
    // The nodes with pods, and the desired nodes without (`updatedDesiredNodeCounts`).
    let empty: &[Arc<Value>] = &[];
    let mut nodes: BTreeMap<&str, &[Arc<Value>]> = d
        .by_node
        .iter()
        .map(|(node, pods)| (node.as_str(), pods.as_slice()))
        .collect();
    let mut desired = 0;
    for (node, placement) in &d.placements {
        if placement.should_run {
            desired += 1;
            nodes.entry(node.as_str()).or_insert(empty);
        }
    }
    let (surge, unavailable) = budgets(&d.ds, desired);
    if surge == 0 {
        without_surge(pass, d, &nodes, unavailable)
    } else {
        with_surge(pass, d, &nodes, surge, desired)
    }
}

/// A count as an index bound.
fn to_usize(n: i64) -> usize {
    usize::try_from(n.max(0)).unwrap_or(usize::MAX)
}

/// The `maxSurge == 0` half of `rollingUpdate`: unavailable old pods go; available ones while
/// fewer than `max_unavailable` nodes are unavailable (a node with no pod, with an old and a
/// new one, or with an unavailable new one counts as unavailable).
fn without_surge(
    pass: &Pass<'_>,
    d: &Daemon,
    nodes: &BTreeMap<&str, &[Arc<Value>]>,
    max_unavailable: i64,
) -> Plan {
    let available = |pod: &Arc<Value>| meta::pod_available(pod, d.min_ready, pass.now);
    let mut unavailable = 0;
    let mut replacements = Vec::new();
    let mut candidates = Vec::new();
    for pods in nodes.values() {
        let Some(found) = updated_and_old(d, pods) else {
            unavailable += 1;
            continue;
        };
        match found {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !available(new) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !available(old) {
                    replacements.push(old);
                    unavailable += 1;
                } else if unavailable < max_unavailable {
                    candidates.push(old);
                }
            }
        }
    }
    let room = to_usize(max_unavailable - unavailable).min(candidates.len());
    replacements.extend(candidates.into_iter().take(room));
    Plan {
        delete: replacements.into_iter().cloned().collect(),
        create: Vec::new(),
    }
}

/// The `maxSurge > 0` half of `rollingUpdate`: a node whose old pod is unavailable gets a new
/// pod at once, up to `max_surge` others with an available old pod get one beside it, and an
/// old pod goes once the new one beside it is available. Old pods on nodes that should no
/// longer run one go only while more than `desired` nodes have an available pod.
fn with_surge(
    pass: &Pass<'_>,
    d: &Daemon,
    nodes: &BTreeMap<&str, &[Arc<Value>]>,
    max_surge: i64,
    desired: i64,
) -> Plan {
    let available = |pod: &Arc<Value>| meta::pod_available(pod, d.min_ready, pass.now);
    let should_run = |node: &str| d.placements.get(node).is_some_and(|p| p.should_run);
    let mut delete: Vec<&Arc<Value>> = Vec::new();
    let mut should_not_run: Vec<&Arc<Value>> = Vec::new();
    let mut allowed: Vec<String> = Vec::new();
    let mut candidates: Vec<String> = Vec::new();
    let (mut surging, mut num_available) = (0, 0);
    for (&node, pods) in nodes {
        let Some((new, old)) = updated_and_old(d, pods) else {
            surging += 1;
            continue;
        };
        if old.or(new).is_some_and(available) {
            num_available += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if should_run(node) {
                    allowed.push(node.to_owned());
                } else {
                    delete.push(old);
                }
            }
            (None, Some(old)) => {
                if !should_run(node) {
                    should_not_run.push(old);
                } else if surging < max_surge {
                    candidates.push(node.to_owned());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    let deletable = to_usize(num_available - desired).min(should_not_run.len());
    delete.extend(should_not_run.into_iter().take(deletable));
    let room = to_usize(max_surge - surging).min(candidates.len());
    allowed.extend(candidates.into_iter().take(room));
    Plan {
        delete: delete.into_iter().cloned().collect(),
        create: allowed,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ds(strategy: Value) -> Value {
        json!({"spec": {"updateStrategy": strategy}})
    }

    #[test]
    fn budgets_default_round_up_and_never_stall() {
        assert_eq!(budgets(&ds(Value::Null), 4), (0, 1));
        let rolling = |surge: Value, unavailable: Value| {
            let update = json!({"maxSurge": surge, "maxUnavailable": unavailable});
            ds(json!({"type": "RollingUpdate", "rollingUpdate": update}))
        };
        assert_eq!(budgets(&rolling(json!(0), json!("30%")), 4), (0, 2));
        assert_eq!(budgets(&rolling(json!("10%"), json!(0)), 4), (1, 0));
        assert_eq!(budgets(&rolling(json!(0), json!("0%")), 4), (0, 1));
        assert_eq!(budgets(&rolling(json!(0), json!("0%")), 0), (0, 0));
        assert_eq!(budgets(&rolling(json!(2), json!(0)), 4), (2, 0));
        assert!(allows_surge(&rolling(json!("1%"), json!(0))));
        assert!(!allows_surge(&rolling(json!(0), json!(3))));
        let on_delete = ds(json!({"type": "OnDelete", "rollingUpdate": {"maxSurge": 1}}));
        assert_eq!(budgets(&on_delete, 4), (0, 0));
        assert!(!allows_surge(&on_delete));
        assert!(!is_rolling(&on_delete));
    }
}
