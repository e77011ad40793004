//! The Deployment workload provider: the stable Deployment the user owns, and the
//! `<name>-canary` Deployment built from it.
//!
//! - Adoption pauses the stable Deployment, so that a change of its pod template waits for the
//!   rollout instead of rolling at once, and records the revision it runs.
//! - A revision is the hash of the pod template the user asks for (the stable template with
//!   `newVersion` applied) and of the data of the ConfigMaps and Secrets it uses.
//! - The canary Deployment runs that template with the version label, the pod-template
//!   metadata and `canary.rs/role: canary`; it is owned by the Rollout.
//! - Promotion gives the stable Deployment the template (keeping the labels its selector needs,
//!   and the stable pods' own values of the canary-only `podTemplateMetadata`) and lets it
//!   roll; removing the canary pauses the stable Deployment again.
//! - For lane releases the canary pods carry `ASM_TRAFFIC_TAG: <canary lane>`.

use async_trait::async_trait;
use canary_core::machine::{WorkloadObservation, WorkloadState};
use canary_core::providers::WorkloadProvider;
use canary_core::spec::NewVersion;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::revision::hash;
use crate::template::{apply_new_version, config_references};

/// The field manager of canary's writes.
pub const FIELD_MANAGER: &str = "canary";
/// Annotation on the stable Deployment: the revision it runs.
pub const STABLE_REVISION: &str = "canary.rs/stable-revision";
/// Annotation on the canary Deployment and its pods: the revision they run.
pub const REVISION: &str = "canary.rs/revision";
/// Annotation on pods: the hash of the ConfigMaps and Secrets they use.
pub const CONFIG_HASH: &str = "canary.rs/config-hash";
/// Label on canary pods.
pub const ROLE: &str = "canary.rs/role";
/// The pod label Alibaba ASM lanes select by; canary pods of a lane release carry the canary
/// lane's name.
pub const LANE_TAG: &str = "ASM_TRAFFIC_TAG";
/// Label on the canary Deployment: the Rollout it belongs to.
pub const ROLLOUT: &str = "canary.rs/rollout";

/// The stable and canary Deployments of one Rollout.
pub struct DeploymentWorkload {
    deployments: Api<Deployment>,
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    namespace: String,
    rollout: String,
    stable: String,
    canary: String,
    new_version: Option<NewVersion>,
    /// Pod labels only canary pods carry: the ASM lane tag, for lane releases.
    canary_labels: Vec<(String, String)>,
    owner: Option<OwnerReference>,
}

impl DeploymentWorkload {
    /// The workloads of `plan`, in its namespace; the canary is owned by `owner` (the Rollout).
    pub fn new(
        client: Client,
        plan: &canary_core::RolloutPlan,
        owner: Option<OwnerReference>,
    ) -> Self {
        let namespace = plan.namespace.clone();
        DeploymentWorkload {
            deployments: Api::namespaced(client.clone(), &namespace),
            configmaps: Api::namespaced(client.clone(), &namespace),
            secrets: Api::namespaced(client, &namespace),
            rollout: plan.name.clone(),
            stable: plan.rollout.spec.workload_ref.name.clone(),
            canary: plan.canary_workload(),
            new_version: plan.rollout.spec.new_version.clone(),
            canary_labels: plan
                .rollout
                .spec
                .traffic_routing
                .asm
                .iter()
                .map(|asm| (LANE_TAG.to_owned(), asm.canary_lane.clone()))
                .collect(),
            owner,
            namespace,
        }
    }

    async fn stable(&self) -> Result<Deployment> {
        self.deployments
            .get_opt(&self.stable)
            .await?
            .ok_or_else(|| Error::Missing {
                kind: "Deployment",
                namespace: self.namespace.clone(),
                name: self.stable.clone(),
            })
    }

    /// Records the revision the stable Deployment runs, once, and pauses it; a Deployment that
    /// is rolling out (its controller has not caught up with its template) is paused only once
    /// it is done. Returns whether it wrote anything.
    pub async fn adopt(&self) -> Result<bool> {
        let stable = self.stable().await?;
        let paused = stable.spec.paused.unwrap_or(false);
        let recorded = annotation(&stable, STABLE_REVISION).is_some();
        let pause = !paused && !rolling(&stable);
        if recorded && !pause {
            return Ok(false);
        }
        let mut patch = if pause {
            json!({"spec": {"paused": true}})
        } else {
            json!({})
        };
        if !recorded {
            let running = self.revision(&pod_template(&stable), &stable).await?;
            patch["metadata"] = json!({"annotations": {STABLE_REVISION: running}});
        }
        self.deployments
            .patch(&self.stable, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(true)
    }

    /// Lets the stable Deployment go: unpaused, canary's annotation removed (the Rollout was
    /// deleted). Returns whether it wrote anything.
    pub async fn release(&self) -> Result<bool> {
        let Some(stable) = self.deployments.get_opt(&self.stable).await? else {
            return Ok(false);
        };
        let paused = stable.spec.paused.unwrap_or(false);
        if !paused && annotation(&stable, STABLE_REVISION).is_none() {
            return Ok(false);
        }
        let patch = json!({"metadata": {"annotations": {STABLE_REVISION: null}}, "spec": {"paused": false}});
        self.deployments
            .patch(&self.stable, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(true)
    }

    /// The template the user asks for (without canary's own annotations), and its revision.
    async fn desired(&self, stable: &Deployment) -> Result<(Value, String, String)> {
        let mut template = pod_template(stable);
        if let Some(new_version) = &self.new_version {
            apply_new_version(&mut template, new_version);
        }
        let configs = self.config_hash(&template).await?;
        let revision = hash(&json!({"template": template, "config": configs}));
        Ok((template, revision, configs))
    }

    /// The revision of `template` as `stable`'s pods would run it.
    async fn revision(&self, template: &Value, _stable: &Deployment) -> Result<String> {
        let configs = self.config_hash(template).await?;
        Ok(hash(&json!({"template": template, "config": configs})))
    }

    /// The hash of the data of the ConfigMaps and Secrets `template` uses; a missing one counts
    /// as empty (the pods will not start, and the rollout's deadline says so).
    async fn config_hash(&self, template: &Value) -> Result<String> {
        let (configmaps, secrets) = config_references(template);
        let mut data = serde_json::Map::new();
        for name in configmaps {
            let map = self.configmaps.get_opt(&name).await?;
            let value = map
                .map(|m| json!({"data": m.data, "binaryData": m.binary_data}))
                .unwrap_or(Value::Null);
            data.insert(format!("configmap/{name}"), value);
        }
        for name in secrets {
            let secret = self.secrets.get_opt(&name).await?;
            let value = secret
                .map(|s| json!({"data": s.data, "stringData": s.string_data}))
                .unwrap_or(Value::Null);
            data.insert(format!("secret/{name}"), value);
        }
        Ok(if data.is_empty() {
            String::new()
        } else {
            hash(&Value::Object(data))
        })
    }

    async fn observe_inner(&self) -> Result<WorkloadObservation> {
        let stable = self.stable().await?;
        let running = match annotation(&stable, STABLE_REVISION) {
            Some(revision) => revision,
            None => self.revision(&pod_template(&stable), &stable).await?,
        };
        let (_, desired, _) = self.desired(&stable).await?;
        let canary = self.deployments.get_opt(&self.canary).await?;
        Ok(WorkloadObservation {
            desired_revision: desired,
            stable: state(&stable, running),
            canary: canary.map(|c| {
                let revision = annotation(&c, REVISION).unwrap_or_default();
                state(&c, revision)
            }),
        })
    }

    async fn ensure_inner(&self, revision: &str, replicas: u32) -> Result<bool> {
        if let Some(existing) = self.deployments.get_opt(&self.canary).await?
            && annotation(&existing, REVISION).as_deref() == Some(revision)
            && existing.spec.replicas == Some(i32::try_from(replicas).unwrap_or(i32::MAX))
        {
            return Ok(false);
        }
        let stable = self.stable().await?;
        let (mut template, desired, configs) = self.desired(&stable).await?;
        if desired != revision {
            return Err(Error::Invalid(format!(
                "the wanted revision changed from {revision} to {desired} while the canary was being made; trying again"
            )));
        }
        template["metadata"]["labels"][ROLE] = json!("canary");
        template["metadata"]["labels"][ROLLOUT] = json!(self.rollout);
        for (key, value) in &self.canary_labels {
            template["metadata"]["labels"][key] = json!(value);
        }
        let selector = canary_selector(&stable, &template);
        if let Some(existing) = self.deployments.get_opt(&self.canary).await?
            && existing.spec.selector.match_labels.as_ref() != Some(&selector)
        {
            // A Deployment's selector is immutable (apps/v1): a canary whose new template no
            // longer matches it is replaced.
            self.deployments
                .delete(&self.canary, &DeleteParams::background())
                .await?;
            return Ok(true);
        }
        template["metadata"]["annotations"][REVISION] = json!(revision);
        if !configs.is_empty() {
            template["metadata"]["annotations"][CONFIG_HASH] = json!(configs);
        }
        let canary = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": self.canary,
                "namespace": self.namespace,
                "labels": {ROLLOUT: self.rollout, ROLE: "canary"},
                "annotations": {REVISION: revision},
                "ownerReferences": self.owner.iter().collect::<Vec<_>>(),
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": template,
            }
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.deployments
            .patch(&self.canary, &params, &Patch::Apply(&canary))
            .await?;
        Ok(true)
    }

    async fn promote_inner(&self, revision: &str) -> Result<bool> {
        let stable = self.stable().await?;
        let paused = stable.spec.paused.unwrap_or(false);
        if annotation(&stable, STABLE_REVISION).as_deref() == Some(revision) && !paused {
            return Ok(false);
        }
        let (mut template, desired, configs) = self.desired(&stable).await?;
        if desired != revision {
            return Err(Error::Invalid(format!(
                "the wanted revision changed from {revision} to {desired} before promotion; trying again"
            )));
        }
        // The labels the stable selector needs stay as they are (a selector cannot change).
        let selector = stable
            .spec
            .selector
            .match_labels
            .clone()
            .unwrap_or_default();
        for (key, value) in selector {
            template["metadata"]["labels"][key] = json!(value);
        }
        // Pod metadata meant for the canary (`newVersion.podTemplateMetadata`, such as a lane
        // tag) stays as the stable pods have it.
        let live = pod_template(&stable);
        if let Some(extra) = self
            .new_version
            .as_ref()
            .and_then(|new| new.pod_template_metadata.as_ref())
        {
            for (field, keys) in [
                ("labels", &extra.labels),
                ("annotations", &extra.annotations),
            ] {
                for key in keys.keys() {
                    match live["metadata"][field].get(key) {
                        Some(value) => template["metadata"][field][key] = value.clone(),
                        None => {
                            if let Some(map) = template["metadata"][field].as_object_mut() {
                                map.remove(key);
                            }
                        }
                    }
                }
            }
        }
        if !configs.is_empty() {
            template["metadata"]["annotations"][CONFIG_HASH] = json!(configs);
        }
        // The template is the live one with the new version applied, so a merge patch (lists
        // replaced whole, maps merged) sets exactly it.
        let patch = json!({
            "metadata": {"annotations": {STABLE_REVISION: revision}},
            "spec": {"paused": false, "template": template},
        });
        self.deployments
            .patch(&self.stable, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(true)
    }

    async fn remove_inner(&self) -> Result<bool> {
        let deleted = match self
            .deployments
            .delete(&self.canary, &DeleteParams::background())
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(error) => return Err(error.into()),
        };
        let stable = self.stable().await?;
        let paused = stable.spec.paused.unwrap_or(false);
        if !paused {
            let patch = json!({"spec": {"paused": true}});
            self.deployments
                .patch(&self.stable, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(deleted || !paused)
    }
}

#[async_trait]
impl WorkloadProvider for DeploymentWorkload {
    async fn observe(&self) -> canary_core::Result<WorkloadObservation> {
        self.observe_inner()
            .await
            .map_err(|e| e.into_core("workload"))
    }

    async fn ensure_canary(&self, revision: &str, replicas: u32) -> canary_core::Result<bool> {
        self.ensure_inner(revision, replicas)
            .await
            .map_err(|e| e.into_core("workload"))
    }

    async fn promote(&self, revision: &str) -> canary_core::Result<bool> {
        self.promote_inner(revision)
            .await
            .map_err(|e| e.into_core("workload"))
    }

    async fn remove_canary(&self) -> canary_core::Result<bool> {
        self.remove_inner()
            .await
            .map_err(|e| e.into_core("workload"))
    }
}

/// The pod template of a Deployment as JSON, without canary's own annotations.
fn pod_template(deployment: &Deployment) -> Value {
    let mut value = serde_json::to_value(&deployment.spec.template).unwrap_or(Value::Null);
    if let Some(annotations) = value["metadata"]["annotations"].as_object_mut() {
        annotations.remove(REVISION);
        annotations.remove(CONFIG_HASH);
        if annotations.is_empty() {
            value["metadata"]
                .as_object_mut()
                .map(|m| m.remove("annotations"));
        }
    }
    value
}

/// True while a Deployment's controller has not rolled its current template out.
fn rolling(deployment: &Deployment) -> bool {
    let status = deployment.status.clone().unwrap_or_default();
    let replicas = deployment.spec.replicas.unwrap_or(1);
    status.observed_generation < deployment.metadata.generation
        || status.updated_replicas.unwrap_or(0) < replicas
        || status.available_replicas.unwrap_or(0) < replicas
}

/// The canary Deployment's selector: the keys of the stable selector with the values the
/// canary's pods carry (a `newVersion` may change one, such as `version`), plus the canary's
/// own labels, so that it always matches the canary's template and never the stable pods.
fn canary_selector(
    stable: &Deployment,
    template: &Value,
) -> std::collections::BTreeMap<String, String> {
    let labels = &template["metadata"]["labels"];
    let mut selector: std::collections::BTreeMap<String, String> = stable
        .spec
        .selector
        .match_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| {
            let own = labels[&key].as_str().map(str::to_owned).unwrap_or(value);
            (key, own)
        })
        .collect();
    selector.insert(ROLE.to_owned(), "canary".to_owned());
    selector.insert(
        ROLLOUT.to_owned(),
        labels[ROLLOUT].as_str().unwrap_or_default().to_owned(),
    );
    selector
}

fn annotation(deployment: &Deployment, key: &str) -> Option<String> {
    deployment.metadata.annotations.as_ref()?.get(key).cloned()
}

/// A Deployment's replicas: ready and available count only pods of the current template, once
/// the Deployment controller has seen the current generation. The status counts ready and
/// available pods of every ReplicaSet, so while pods of an older template remain (a rolling
/// update), they are assumed ready and available and taken off: a Deployment is only as far
/// along as `kubectl rollout status` would say (Kubernetes `DeploymentComplete`: updated,
/// available and total replicas all at the desired count).
fn state(deployment: &Deployment, revision: String) -> WorkloadState {
    let desired = deployment.spec.replicas.unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let current = status
        .observed_generation
        .is_some_and(|seen| Some(seen) >= deployment.metadata.generation);
    let updated = status.updated_replicas.unwrap_or(0);
    let older = status.replicas.unwrap_or(0).saturating_sub(updated).max(0);
    let count = |n: Option<i32>| {
        if current {
            u32::try_from(n.unwrap_or(0).saturating_sub(older).min(updated)).unwrap_or(0)
        } else {
            0
        }
    };
    WorkloadState {
        revision,
        desired: u32::try_from(desired).unwrap_or(0),
        ready: count(status.ready_replicas),
        available: count(status.available_replicas),
        stale: !current,
    }
}
