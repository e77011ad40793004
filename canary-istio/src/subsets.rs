//! The DestinationRule subsets that tell stable pods from canary pods.
//!
//! - **By version label** (Istio's convention, and the KubeSphere Bookinfo seed): when the stable
//!   Deployment's pods carry a `version` label and `newVersion.version` gives the canary another,
//!   the subsets are named after the two values (`v1`, `v2`) and select them.
//!   A version that is not a DNS-1123 label (`V1`, `1.0`) gets a subset name made of it
//!   ([`subset_name`]); the subset still selects the value as it is.
//! - **By pod-template hash** otherwise: subset `stable` selects the `pod-template-hash` of the
//!   stable Deployment's current ReplicaSet, subset `canary` the `canary.rs/role: canary` label
//!   the canary pods carry. This is also the case after a promotion, when the stable pods carry
//!   the canary's version: the stable subset then selects one ReplicaSet's hash, so it never
//!   takes in canary pods (Istio subsets select by label equality only, so "without the role
//!   label" cannot be said).
//!
//! While the stable Deployment rolls, the stable subset stays the one the live
//! DestinationRule has ([`resolve`]).

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

/// Annotation on the DestinationRule: the name of the subset the stable share goes to, so a
/// later pass can keep it while the stable Deployment rolls (see [`resolve`]).
pub const STABLE_SUBSET_ANNOTATION: &str = "canary.rs/stable-subset";

/// The subsets of `plan`'s workloads, from the stable Deployment (and, without version labels,
/// its ReplicaSets) and the live DestinationRule in `objects`.
///
/// The stable subset follows the stable Deployment's current pods only once its rollout is
/// complete ([`rolled_out`]): while it rolls (as when a promotion gives it the canary's
/// template), the stable subset the live DestinationRule holds stays, so the stable share
/// never goes to a subset whose pods are not there yet. With no live DestinationRule the
/// current pods count. The stable subset never selects canary pods: by version it selects a
/// version the canary does not carry, by hash one ReplicaSet of the stable Deployment.
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
    let hash = objects.pod_template_hash(deployment, namespace);
    // Equal versions mean the release is promoted (the stable runs the new version) or that
    // the versions cannot tell the pods apart; only the first is a version split.
    let by_version = match (stable_version, canary_version) {
        (Some(stable), Some(canary)) if stable != canary || hash.is_none() => {
            Some((stable, canary))
        }
        _ => None,
    };
    let canary = match by_version {
        Some((_, canary)) => Subset::new(&subset_name(canary), VERSION_LABEL, canary),
        None => Subset::new("canary", ROLE_LABEL, "canary"),
    };
    if !rolled_out(deployment)
        && let Some(live) = live_stable(plan, objects)
        && live.name != canary.name
    {
        return Ok(Subsets {
            stable: live,
            canary,
        });
    }
    let stable = match (by_version, hash) {
        (Some((stable, _)), _) => Subset::new(&subset_name(stable), VERSION_LABEL, stable),
        (None, Some(hash)) => Subset::new("stable", POD_TEMPLATE_HASH, &hash),
        (None, None) => {
            return Err(Error::Input(format!(
                "cannot tell stable pods from canary pods: the pods of Deployment \
                 {namespace}/{stable_name} have no `{VERSION_LABEL}` label other than the \
                 canary's (set one, with spec.newVersion.version for the canary), and no current \
                 ReplicaSet of it gives their {POD_TEMPLATE_HASH}"
            )));
        }
    };
    Ok(Subsets { stable, canary })
}

/// The stable subset the live DestinationRule holds: the one its
/// [`STABLE_SUBSET_ANNOTATION`] names, else one named `stable` (the hash mode's).
fn live_stable(plan: &RolloutPlan, objects: &Objects) -> Option<Subset> {
    let dr = objects.get(
        "DestinationRule",
        &plan.namespace,
        &crate::destination_rule::name(plan),
    )?;
    let name = dr
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(STABLE_SUBSET_ANNOTATION))
        .and_then(Value::as_str)
        .unwrap_or("stable");
    let subset = dr["spec"]["subsets"]
        .as_array()?
        .iter()
        .find(|s| s["name"].as_str() == Some(name))?;
    let labels: BTreeMap<String, String> = subset["labels"]
        .as_object()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    (!labels.is_empty()).then(|| Subset {
        name: name.to_owned(),
        labels,
    })
}

/// True when `deployment`'s rollout is complete: its controller has seen the current spec
/// (`status.observedGeneration` ≥ `metadata.generation`) and every replica asked for is
/// updated and available. A Deployment without status counts as still rolling.
///
/// Close to what `kubectl rollout status` waits for (kubernetes
/// staging/src/k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go:
/// `DeploymentStatusViewer.Status`), with `spec.replicas` defaulting to 1.
pub fn rolled_out(deployment: &Value) -> bool {
    let number = |pointer: &str| deployment.pointer(pointer).and_then(Value::as_i64);
    let Some(observed) = number("/status/observedGeneration") else {
        return false;
    };
    let generation = number("/metadata/generation").unwrap_or(0);
    let replicas = number("/spec/replicas").unwrap_or(1);
    observed >= generation
        && number("/status/updatedReplicas").unwrap_or(0) == replicas
        && number("/status/availableReplicas").unwrap_or(0) == replicas
}

/// The subset name for the pods labelled `version: value`: the value itself when it is a
/// DNS-1123 label, as Istio requires of subset names (istio pkg/config/validation/validation.go:
/// `validateSubsetName`), else a label made of it (lowercased, other characters as `-`) and a
/// hash of the whole value, so that it stays the same on every pass and two values that clean
/// up alike (`V1`, `v1`) get different names.
pub fn subset_name(value: &str) -> String {
    if canary_core::names::dns1123_label(value).is_ok() {
        return value.to_owned();
    }
    let mut cleaned = String::with_capacity(value.len());
    for c in value.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cleaned.push(c);
        } else if !cleaned.ends_with('-') {
            cleaned.push('-');
        }
    }
    let cleaned: String = cleaned.trim_matches('-').chars().take(50).collect();
    let cleaned = cleaned.trim_end_matches('-');
    let hash = fnv1a(value);
    if cleaned.is_empty() {
        format!("version-{hash:08x}")
    } else {
        format!("{cleaned}-{hash:08x}")
    }
}

/// The 32-bit FNV-1a hash of `text`: small, and the same in every process.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
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
