//! DaemonSets: one pod per eligible node, so the canary is a DaemonSet of its own on the same
//! nodes at full size or at none; its pods are owned by it directly.

use serde_json::Value;

use super::{WorkloadDescriptor, WorkloadKind};

/// The DaemonSet kind.
pub static DESCRIPTOR: WorkloadDescriptor = WorkloadDescriptor {
    id: WorkloadKind::DaemonSet,
    api_version: "apps/v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    fixed_size: Some(
        "a DaemonSet runs one pod on every node it is eligible for, so the canary DaemonSet runs \
         beside the stable one on all of them and its replicas cannot be chosen",
    ),
    pods_owned_through: None,
    desired_pods,
};

/// `status.desiredNumberScheduled`: the nodes the DaemonSet controller found eligible (0 until
/// it has looked).
fn desired_pods(daemonset: &Value) -> u64 {
    daemonset
        .pointer("/status/desiredNumberScheduled")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}
