//! Workload kinds: what canary knows of the kind of workload a Rollout releases, one
//! [`WorkloadDescriptor`] per kind (`workload::deployment`, `workload::daemonset`), as
//! [`crate::traffic`] has one descriptor per traffic provider.
//!
//! A descriptor says how the kind is named (`spec.workloadRef`), whether the canary's size can
//! be chosen (a DaemonSet runs one pod per eligible node, so its replicas cannot), how its pods
//! hang from it and how many pods it wants. Validation, the plan, the simulation's data-plane
//! model and the Kubernetes layer (`canary_kube::workload`) look a kind up here; adding a kind
//! is one module beside these, one [`WorkloadKind`] variant with its arm in
//! [`WorkloadKind::descriptor`], and the cluster side in `canary-kube`.

pub mod daemonset;
pub mod deployment;

use serde_json::Value;

/// The workload kinds canary releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [WorkloadKind; 2] = [WorkloadKind::Deployment, WorkloadKind::DaemonSet];

    /// The kind's descriptor.
    pub fn descriptor(self) -> &'static WorkloadDescriptor {
        match self {
            WorkloadKind::Deployment => &deployment::DESCRIPTOR,
            WorkloadKind::DaemonSet => &daemonset::DESCRIPTOR,
        }
    }

    /// The kind `workloadRef` names by its `apiVersion` and `kind`, if canary releases it.
    pub fn named(api_version: &str, kind: &str) -> Option<WorkloadKind> {
        Self::ALL.into_iter().find(|candidate| {
            let descriptor = candidate.descriptor();
            descriptor.api_version == api_version && descriptor.kind == kind
        })
    }

    /// The kinds canary releases, as `apiVersion kind` phrases for messages.
    pub fn supported() -> String {
        Self::ALL
            .iter()
            .map(|kind| {
                let descriptor = kind.descriptor();
                format!("{} {}", descriptor.api_version, descriptor.kind)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What canary knows of one workload kind outside the code that runs it in a cluster.
#[derive(Debug)]
pub struct WorkloadDescriptor {
    /// The kind this describes.
    pub id: WorkloadKind,
    /// `apiVersion` of its objects.
    pub api_version: &'static str,
    /// `kind` of its objects.
    pub kind: &'static str,
    /// Its REST name (plural) in the API.
    pub plural: &'static str,
    /// Why the canary's number of pods cannot be chosen, when its controller decides it: every
    /// step then runs the canary at full size, and replica fields are refused with this reason.
    pub fixed_size: Option<&'static str>,
    /// The kind of object between the workload and its pods (a Deployment's ReplicaSets), when
    /// its pods are not owned by the workload itself.
    pub pods_owned_through: Option<&'static str>,
    /// How many pods an object of this kind (as JSON) wants, as far as its spec or its
    /// controller's status says.
    pub desired_pods: fn(&Value) -> u64,
}

/// Descriptors are the same when they describe the same kind.
impl PartialEq for WorkloadDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for WorkloadDescriptor {}

impl WorkloadDescriptor {
    /// Whether the canary's number of pods can be chosen.
    pub fn sized(&self) -> bool {
        self.fixed_size.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_and_found_by_its_name() {
        for kind in WorkloadKind::ALL {
            let descriptor = kind.descriptor();
            assert_eq!(descriptor.id, kind);
            assert_eq!(
                WorkloadKind::named(descriptor.api_version, descriptor.kind),
                Some(kind)
            );
            assert!(WorkloadKind::supported().contains(descriptor.kind));
        }
        assert_eq!(WorkloadKind::named("apps/v1", "StatefulSet"), None);
        assert_eq!(
            WorkloadKind::named("extensions/v1beta1", "Deployment"),
            None
        );
    }
}
