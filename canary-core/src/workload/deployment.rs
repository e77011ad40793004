//! Deployments: the canary is a Deployment of its own, sized by the steps; pods hang from
//! ReplicaSets.

use serde_json::Value;

use super::{WorkloadDescriptor, WorkloadKind};

/// The Deployment kind.
pub static DESCRIPTOR: WorkloadDescriptor = WorkloadDescriptor {
    id: WorkloadKind::Deployment,
    api_version: "apps/v1",
    kind: "Deployment",
    plural: "deployments",
    fixed_size: None,
    pods_owned_through: Some("ReplicaSet"),
    desired_pods,
};

/// `spec.replicas`, 1 when absent (the API server's default).
fn desired_pods(deployment: &Value) -> u64 {
    deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1)
}
