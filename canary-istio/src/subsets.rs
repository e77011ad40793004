//! The DestinationRule subsets that tell stable pods from canary pods.
//!
//! - **By version label** (Istio's convention, and the KubeSphere Bookinfo seed): when the stable
//!   Deployment's pods carry a `version` label and `newVersion.version` gives the canary another,
//!   the subsets are named after the two values (`v1`, `v2`) and select them.
//! - **By pod-template hash** otherwise: subset `stable` selects the `pod-template-hash` of the
//!   stable Deployment's current ReplicaSet, subset `canary` the `canary.rs/role: canary` label
//!   the canary pods carry.

use std::collections::BTreeMap;

use canary_core::RolloutPlan;
use canary_core::objects::Objects;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The pod label Istio's conventions use for versions.
pub const VERSION_LABEL: &str = "version";
pub use canary_core::objects::POD_TEMPLATE_HASH;
/// The label canary pods carry (set by the Deployment workload provider).
pub const ROLE_LABEL: &str = "canary.rs/role";

/// One subset: its name and the pod labels it selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subset {
    /// The subset name routes refer to.
    pub name: String,
    /// The pod labels it selects.
    pub labels: BTreeMap<String, String>,
}

impl Subset {
    fn new(name: &str, key: &str, value: &str) -> Self {
        Subset {
            name: name.to_owned(),
            labels: [(key.to_owned(), value.to_owned())].into(),
        }
    }

    /// The subset as a DestinationRule lists it.
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "labels": self.labels})
    }
}

/// The stable and canary subsets. After a promotion both may be the same subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsets {
    /// The pods of the stable Deployment.
    pub stable: Subset,
    /// The pods of the canary Deployment.
    pub canary: Subset,
}

impl Subsets {
    /// The distinct subsets, stable first.
    pub fn distinct(&self) -> Vec<&Subset> {
        if self.stable.name == self.canary.name {
            vec![&self.stable]
        } else {
            vec![&self.stable, &self.canary]
        }
    }
}

/// The subsets of `plan`'s workloads, from the stable Deployment (and, without version labels,
/// its ReplicaSets) in `objects`.
pub fn resolve(plan: &RolloutPlan, objects: &Objects) -> Result<Subsets> {
    let namespace = &plan.namespace;
    let stable_name = &plan.rollout.spec.workload_ref.name;
    let deployment = objects
        .get("Deployment", namespace, stable_name)
        .ok_or_else(|| {
            Error::Input(format!(
                "the stable Deployment {namespace}/{stable_name} is needed: its pod labels tell \
                 the stable subset (give it with --objects, or in the rollout file)"
            ))
        })?;
    let stable_version = deployment
        .pointer("/spec/template/metadata/labels")
        .and_then(|labels| labels.get(VERSION_LABEL))
        .and_then(Value::as_str);
    let canary_version = plan
        .rollout
        .spec
        .new_version
        .as_ref()
        .and_then(|new| new.version.as_deref())
        .or(stable_version);
    if let (Some(stable), Some(canary)) = (stable_version, canary_version) {
        // Equal versions mean the release is promoted (the stable runs the new version) or
        // that the versions cannot tell the pods apart; only the first is a version split.
        if stable != canary || objects.pod_template_hash(deployment, namespace).is_none() {
            return Ok(Subsets {
                stable: Subset::new(stable, VERSION_LABEL, stable),
                canary: Subset::new(canary, VERSION_LABEL, canary),
            });
        }
    }
    let hash = objects
        .pod_template_hash(deployment, namespace)
        .ok_or_else(|| {
            Error::Input(format!(
                "cannot tell stable pods from canary pods: the pods of Deployment \
             {namespace}/{stable_name} have no `{VERSION_LABEL}` label other than the canary's \
             (set one, with spec.newVersion.version for the canary), and no current ReplicaSet \
             of it gives their {POD_TEMPLATE_HASH}"
            ))
        })?;
    Ok(Subsets {
        stable: Subset::new("stable", POD_TEMPLATE_HASH, &hash),
        canary: Subset::new("canary", ROLE_LABEL, "canary"),
    })
}

/// Whether telling the pods apart needs the stable Deployment's ReplicaSets (its pods carry
/// no `version` label other than the canary's).
pub fn needs_replicasets(plan: &RolloutPlan, deployment: &Value) -> bool {
    let stable = deployment
        .pointer("/spec/template/metadata/labels")
        .and_then(|labels| labels.get(VERSION_LABEL))
        .and_then(Value::as_str);
    let canary = plan
        .rollout
        .spec
        .new_version
        .as_ref()
        .and_then(|new| new.version.as_deref());
    !matches!((stable, canary), (Some(stable), Some(canary)) if stable != canary)
}
