//! The workload providers: the stable workload the user owns (a Deployment or a DaemonSet),
//! and the `<name>-canary` workload of the same kind built from it. [`Workload`] holds what
//! every kind shares; a kind is one module implementing [`Kind`] (`workload::deployment`,
//! `workload::daemonset`) and one arm in [`for_plan`]. What follows says "Deployment" for
//! the workload; a DaemonSet's differences are in `workload::daemonset`.
//!
//! - The stable Deployment is held (paused, with the revision its pods run in an annotation)
//!   only while a release is pending, so that a new template waits for the release instead of
//!   rolling at once; between releases it is as its owner made it (see `crate::hold`).
//! - A revision is the hash of the pod template the user asks for (the stable template with
//!   `newVersion` applied), of the data of the ConfigMaps it uses and of the uid and
//!   resourceVersion of the Secrets it uses (never their data).
//! - The canary Deployment runs that template with the version label, the pod-template
//!   metadata and `canary.rs/role: canary`; for the providers that route by Service, its pods
//!   carry a value of their own for one key of the stable Service's selector, so that the
//!   stable Service (never edited) does not select them (see `canary_core::k8s::services`). It names its Rollout by the `canary.rs/rollout`
//!   label and has no owner reference: when the Rollout is deleted in the foreground (as Argo
//!   CD deletes), the garbage collector deletes every dependent of it at once
//!   (pkg/controller/garbagecollector/garbagecollector.go `attemptToDeleteItem`: a dependent
//!   whose owners are all dangling or deleting their dependents is deleted, whatever its
//!   `blockOwnerDeletion`), and the canary would go while it still has traffic. The Rollout's
//!   finalizer removes it instead, after the routes are reset (see `crate::controller`).
//! - The canary is deleted in the foreground: the Deployment stays until its ReplicaSets and
//!   pods are gone, so "no canary Deployment" means no canary pod either.
//! - Only a canary canary made (its `canary.rs/role` and `canary.rs/rollout` labels) is ever
//!   changed or deleted, and a delete carries the uid read as a precondition. A Deployment of
//!   the canary's name made by anyone else stays as it is; the release waits, saying so.
//! - Every write to the stable Deployment is a JSON merge patch by field manager `canary`
//!   carrying the `resourceVersion` canary read: if someone (Flux, Argo CD, a person) wrote
//!   since, the API server refuses it with 409 Conflict and the next pass reads again, so
//!   canary never writes over a template it has not seen.
//! - Promotion gives the stable Deployment the template (keeping the labels its selector needs,
//!   and the stable pods' own values of the canary-only `podTemplateMetadata`) and lets it
//!   roll; the hold ends once the Rollout's status records the promoted revision.
//! - The canary pods carry the labels the traffic provider routes them by
//!   ([`canary_core::traffic::ProviderDescriptor::canary_pod_labels`]), e.g. an ASM lane's tag.

mod daemonset;
mod deployment;
mod kind;

use async_trait::async_trait;
use canary_core::api::spec::NewVersion;
use canary_core::engine::machine::{WorkloadObservation, WorkloadState};
use canary_core::engine::providers::WorkloadProvider;
use canary_core::k8s::services::canary_pod_label;
use canary_core::workload::WorkloadKind;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};

pub use daemonset::{NO_NODE, UPDATE_STRATEGY};
pub use kind::Kind;
use kind::merged;

use crate::error::{Error, Result};
use crate::revision::hash;
use crate::template::{apply_new_version, config_references};

/// The field manager of canary's writes.
pub const FIELD_MANAGER: &str = "canary";
/// Annotation on the stable Deployment while canary holds it (see `crate::hold`): the
/// revision its pods run.
pub const STABLE_REVISION: &str = "canary.rs/stable-revision";
/// Annotation on the canary Deployment and its pods: the revision they run.
pub const REVISION: &str = "canary.rs/revision";
/// Annotation on pods: the hash of the ConfigMaps and Secrets they use.
pub const CONFIG_HASH: &str = "canary.rs/config-hash";
/// Label on canary pods.
pub const ROLE: &str = "canary.rs/role";

/// The pod label Istio names a workload by in its metrics, when present.
const ISTIO_WORKLOAD_NAME: &str = "service.istio.io/workload-name";

/// Label on the canary Deployment: the Rollout it belongs to.
pub const ROLLOUT: &str = "canary.rs/rollout";

/// The stable and canary workloads of one Rollout, of kind `K`.
pub struct Workload<K: Kind> {
    workloads: Api<K>,
    configmaps: Api<ConfigMap>,
    secrets: Api<Secret>,
    pods: Api<Pod>,
    services: Api<Service>,
    namespace: String,
    rollout: String,
    stable: String,
    canary: String,
    new_version: Option<NewVersion>,
    /// Pod labels only canary pods carry: the ASM lane tag, for lane releases.
    canary_labels: Vec<(String, String)>,
    /// The Service whose selector must not select canary pods (providers that route by
    /// Service).
    leave_service: Option<String>,
    /// The revision the Rollout's status says the stable Deployment runs.
    known_stable: Option<String>,
}

/// The stable and canary Deployments of one Rollout.
pub type DeploymentWorkload = Workload<Deployment>;
/// The stable and canary DaemonSets of one Rollout.
pub type DaemonSetWorkload = Workload<DaemonSet>;

/// What [`Workload::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing to write: held as it should be, or not held and nothing pending.
    Unchanged,
    /// Held now, before the workload's controller acted on its new template.
    Held,
    /// Held now, but the workload's controller had already begun rolling the new template
    /// onto stable pods (no admission webhook held it in time).
    HeldLate,
    /// The hold ended: rolling as its owner set it, canary's annotations removed.
    Released,
}

impl<K: Kind> Workload<K> {
    /// The workloads of `plan`, in its namespace.
    pub fn new(client: Client, plan: &canary_core::RolloutPlan) -> Self {
        let namespace = plan.namespace.clone();
        Workload {
            workloads: Api::namespaced(client.clone(), &namespace),
            configmaps: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client.clone(), &namespace),
            services: Api::namespaced(client.clone(), &namespace),
            secrets: Api::namespaced(client, &namespace),
            rollout: plan.name.clone(),
            stable: plan.rollout.spec.workload_ref.name.clone(),
            canary: plan.canary_workload(),
            new_version: plan.rollout.spec.new_version.clone(),
            canary_labels: (plan.provider.canary_pod_labels)(&plan.rollout.spec.traffic_routing)
                .into_iter()
                .collect(),
            leave_service: plan
                .provider
                .routes_by_service
                .then(|| plan.rollout.spec.service.name.clone()),
            known_stable: None,
            namespace,
        }
    }

    /// This workload knowing from the Rollout's status which revision the stable Deployment
    /// runs (`status.stableRevision`), without which it cannot tell a new template from the
    /// one stable runs while the Deployment is not held.
    pub fn with_known_stable(mut self, revision: Option<String>) -> Self {
        self.known_stable = revision.filter(|revision| !revision.is_empty());
        self
    }

    /// The workloads of the Rollout `rollout` in `namespace` whose spec no longer validates
    /// (so it has no plan): enough to remove its canary (found by its labels and name) and let
    /// the stable Deployment `stable` go.
    pub fn without_plan(client: Client, namespace: &str, rollout: &str, stable: &str) -> Self {
        Workload {
            workloads: Api::namespaced(client.clone(), namespace),
            configmaps: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            services: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            rollout: rollout.to_owned(),
            stable: stable.to_owned(),
            canary: format!("{stable}-canary"),
            new_version: None,
            canary_labels: Vec::new(),
            leave_service: None,
            known_stable: None,
            namespace: namespace.to_owned(),
        }
    }

    /// Whether the stable Deployment exists.
    pub async fn stable_exists(&self) -> Result<bool> {
        Ok(self.workloads.get_opt(&self.stable).await?.is_some())
    }

    async fn stable(&self) -> Result<K> {
        self.workloads
            .get_opt(&self.stable)
            .await?
            .ok_or_else(|| Error::Missing {
                kind: K::DESCRIPTOR.kind,
                namespace: self.namespace.clone(),
                name: self.stable.clone(),
            })
    }

    /// Writes the JSON merge patch `patch` to the stable Deployment as field manager `canary`,
    /// on condition that it is still as `read` (its `resourceVersion`): a merge patch carrying
    /// `metadata.resourceVersion` is refused with 409 Conflict when the object changed since
    /// (apiserver pkg/registry/rest/update.go: a non-empty resourceVersion is a precondition of
    /// every update, patches included). A conflict is an error of this pass; the next one
    /// reads the Deployment again.
    async fn write_stable(&self, read: &K, mut patch: Value) -> Result<()> {
        if let Some(version) = &read.meta().resource_version {
            patch["metadata"]["resourceVersion"] = json!(version);
        }
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        self.workloads
            .patch(&self.stable, &params, &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// The canary Deployment, if there is one canary made for this Rollout (it carries the
    /// labels `canary.rs/role: canary` and `canary.rs/rollout: <rollout>`). A Deployment of
    /// the canary's name that someone else made is not the canary: canary never changes nor
    /// deletes it (see [`Workload::foreign_canary`]).
    async fn canary(&self) -> Result<Option<K>> {
        let found = self.workloads.get_opt(&self.canary).await?;
        Ok(found.filter(|deployment| self.made(deployment)))
    }

    /// Whether canary made `deployment` as this Rollout's canary.
    fn made(&self, deployment: &K) -> bool {
        let labels = deployment.meta().labels.as_ref();
        let label = |key: &str| {
            labels
                .and_then(|labels| labels.get(key))
                .map(String::as_str)
        };
        label(ROLE) == Some("canary") && label(ROLLOUT) == Some(self.rollout.as_str())
    }

    /// The error of a Deployment named as the canary that canary did not make, if there is
    /// one: the release cannot make its canary until it is renamed or removed by its owner.
    async fn foreign_canary(&self) -> Result<Option<Error>> {
        let found = self.workloads.get_opt(&self.canary).await?;
        Ok(found.filter(|deployment| !self.made(deployment)).map(|_| {
            Error::Invalid(format!(
                "{} {}/{} is in the way: canary makes the canary of Rollout {} under \
                 that name, and this one lacks the labels {ROLE}=canary and {ROLLOUT}={} that \
                 canary gives its own, so it is never changed nor deleted; rename it or remove \
                 it",
                K::DESCRIPTOR.kind,
                self.namespace,
                self.canary,
                self.rollout,
                self.rollout
            ))
        }))
    }

    /// Deletes `canary` (as read) in the foreground, on condition that it is still the object
    /// read (its uid: a Deployment of that name made since by someone else is never deleted).
    async fn delete_canary(&self, canary: &K) -> Result<bool> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: canary.meta().uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::foreground()
        };
        match self.workloads.delete(&self.canary, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether the canary Deployment and every pod of it are gone (a canary deleted in the
    /// foreground stays until its pods are gone; pods left by any other way of deleting it
    /// are looked for by their labels).
    pub async fn canary_gone(&self) -> Result<bool> {
        if self.canary().await?.is_some() {
            return Ok(false);
        }
        let selector = format!("{ROLE}=canary,{ROLLOUT}={}", self.rollout);
        let left = self
            .pods
            .list_metadata(&ListParams::default().labels(&selector))
            .await?;
        Ok(left.items.is_empty())
    }

    /// Holds the stable Deployment while a release is pending and its own template would roll
    /// something else than what its pods run, and lets it go once no release is pending (see
    /// `crate::hold`):
    /// - held when the revision asked for differs from the one the Rollout's status says
    ///   stable runs and the Deployment has not rolled its template out (a new template; a
    ///   release asked for by `newVersion` or by a ConfigMap leaves the template, which its
    ///   pods run, as it is, so nothing would roll and nothing is held);
    /// - released when the status records the revision the hold names and no other is asked
    ///   for (after a promotion, a cancelled release, a reverted template).
    ///
    /// Before the status knows a stable revision (adoption) nothing is written.
    pub async fn hold(&self) -> Result<Hold> {
        let stable = self.stable().await?;
        let held = annotation(&stable, STABLE_REVISION);
        let Some(known) = &self.known_stable else {
            return Ok(Hold::Unchanged);
        };
        let (_, desired, _) = self.desired(&stable).await?;
        let observed = stable.observed();
        let rolled_out = stable.rolled_out();
        let paused = stable.frozen();
        match held {
            Some(running) if running == *known && desired == *known => {
                self.let_go(&stable).await?;
                Ok(Hold::Released)
            }
            // Promoted and not yet let go, and its template changed again: paused at the
            // revision the annotation names.
            Some(running) if desired != running && !paused && !rolled_out => {
                self.write_stable(&stable, stable.freeze()).await?;
                Ok(if observed { Hold::HeldLate } else { Hold::Held })
            }
            Some(_) => Ok(Hold::Unchanged),
            None if desired == *known || rolled_out => Ok(Hold::Unchanged),
            None => {
                // The Deployment's controller has acted on the template once it observed its
                // generation unpaused: pods of a new ReplicaSet are on their way.
                let late = observed && !paused;
                let patch = merged(
                    stable.freeze(),
                    json!({"metadata": {"annotations": {STABLE_REVISION: known}}}),
                );
                self.write_stable(&stable, patch).await?;
                Ok(if late { Hold::HeldLate } else { Hold::Held })
            }
        }
    }

    /// Lets the stable Deployment go when canary holds it: unpaused, canary's annotation
    /// removed (the Rollout was deleted). A Deployment canary does not hold is left as it is.
    /// Returns whether it wrote anything.
    pub async fn release(&self) -> Result<bool> {
        let Some(stable) = self.workloads.get_opt(&self.stable).await? else {
            return Ok(false);
        };
        if annotation(&stable, STABLE_REVISION).is_none() {
            return Ok(false);
        }
        self.let_go(&stable).await?;
        Ok(true)
    }

    /// Ends canary's hold of `stable` (as read): rolling as its owner set it, canary's
    /// annotations removed.
    async fn let_go(&self, stable: &K) -> Result<()> {
        let patch = merged(
            stable.thaw(),
            json!({"metadata": {"annotations": {STABLE_REVISION: null}}}),
        );
        self.write_stable(stable, patch).await
    }

    /// The template the user asks for (without canary's own annotations), and its revision.
    async fn desired(&self, stable: &K) -> Result<(Value, String, String)> {
        let mut template = pod_template(stable);
        if let Some(new_version) = &self.new_version {
            apply_new_version(&mut template, new_version);
        }
        let configs = self.config_hash(&template).await?;
        let revision = hash(&json!({"template": template, "config": configs}));
        Ok((template, revision, configs))
    }

    /// The revision of `template` with the ConfigMaps and Secrets it uses as they are now.
    async fn revision(&self, template: &Value) -> Result<String> {
        let configs = self.config_hash(template).await?;
        Ok(hash(&json!({"template": template, "config": configs})))
    }

    /// The hash of the data of the ConfigMaps and of the versions of the Secrets `template`
    /// uses; a missing one counts as empty (the pods will not start, and the rollout's
    /// deadline says so).
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
        // A Secret counts by its identity and version, read as metadata only: its data never
        // reaches canary, and no hash of it is published on pods, where anyone who may read
        // pods could test guesses of a secret against it. RBAC has no metadata-only verb, so
        // the default install grants no Secret reads at all: refused (403), Secrets are not
        // tracked, and a change of one is no release.
        for name in secrets {
            let value = match self.secrets.get_metadata_opt(&name).await {
                Ok(secret) => secret
                    .map(|s| json!({"uid": s.metadata.uid, "resourceVersion": s.metadata.resource_version}))
                    .unwrap_or(Value::Null),
                Err(kube::Error::Api(status)) if status.code == 403 => json!("untracked"),
                Err(error) => return Err(error.into()),
            };
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
        // Held: the annotation says what the pods run. Not held: what the Rollout's status
        // recorded (the template may be new, not yet held); at adoption, the template.
        let running = match (annotation(&stable, STABLE_REVISION), &self.known_stable) {
            (Some(revision), _) => revision,
            (None, Some(known)) => known.clone(),
            (None, None) => self.revision(&pod_template(&stable)).await?,
        };
        let (_, desired, _) = self.desired(&stable).await?;
        let canary = self.canary().await?;
        let stable_reported_as = stable
            .template()
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.labels.as_ref())
            .and_then(|labels| labels.get(ISTIO_WORKLOAD_NAME))
            .filter(|name| **name != self.stable)
            .cloned();
        Ok(WorkloadObservation {
            desired_revision: desired,
            stable_reported_as,
            stable: stable.state(running),
            canary: canary.map(|c| {
                if c.meta().deletion_timestamp.is_some() {
                    // Being deleted: still there (its pods go first), but of no revision and
                    // with nothing ready, so that no route is sent to it.
                    return WorkloadState {
                        ready: 0,
                        available: 0,
                        stale: true,
                        ..c.state(String::new())
                    };
                }
                let revision = annotation(&c, REVISION).unwrap_or_default();
                c.state(revision)
            }),
        })
    }

    async fn ensure_inner(&self, revision: &str, replicas: u32) -> Result<bool> {
        if let Some(error) = self.foreign_canary().await? {
            return Err(error);
        }
        let existing = self.canary().await?;
        if let Some(existing) = &existing {
            // A canary being deleted (replaced, or removed) is waited for: its pods go first.
            if existing.meta().deletion_timestamp.is_some() {
                return Ok(false);
            }
            if annotation(existing, REVISION).as_deref() == Some(revision)
                && existing.sized(replicas)
                && !owned_by_rollout(existing)
            {
                return Ok(false);
            }
        }
        let stable = self.stable().await?;
        if let Some(why) = stable.unpromotable() {
            return Err(Error::Invalid(why));
        }
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
        // Istio (1.25+) reports a pod as the workload its `service.istio.io/workload-name`
        // label names, else as its Deployment: a canary inheriting stable's would report its
        // requests as stable's, and the analysis would see no canary at all.
        // A label value holds at most 63 characters; without the label Istio names the pods
        // after their Deployment, which is the canary too.
        if let Some(labels) = template["metadata"]["labels"].as_object_mut()
            && labels.contains_key(ISTIO_WORKLOAD_NAME)
        {
            if self.canary.len() <= 63 {
                labels.insert(ISTIO_WORKLOAD_NAME.to_owned(), json!(self.canary));
            } else {
                labels.remove(ISTIO_WORKLOAD_NAME);
            }
        }
        if let Some((key, value)) = self.stable_service_leaving(&template).await? {
            template["metadata"]["labels"][key] = json!(value);
        }
        let selector = canary_selector(&stable, &template);
        if let Some(existing) = &existing
            && existing.match_labels() != Some(&selector)
        {
            // A workload's selector is immutable (apps/v1): a canary whose new template no
            // longer matches it is replaced, once its pods are gone.
            self.delete_canary(existing).await?;
            return Ok(true);
        }
        template["metadata"]["annotations"][REVISION] = json!(revision);
        if !configs.is_empty() {
            template["metadata"]["annotations"][CONFIG_HASH] = json!(configs);
        }
        let canary = json!({
            "apiVersion": K::DESCRIPTOR.api_version,
            "kind": K::DESCRIPTOR.kind,
            "metadata": {
                "name": self.canary,
                "namespace": self.namespace,
                "labels": {ROLLOUT: self.rollout, ROLE: "canary"},
                "annotations": {REVISION: revision},
            },
            "spec": K::canary_spec(&stable, replicas, &selector, template),
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.workloads
            .patch(&self.canary, &params, &Patch::Apply(&canary))
            .await?;
        Ok(true)
    }

    /// The label that keeps pods of `template` out of the stable Service's selector, when the
    /// provider routes by Service and the selector would select them.
    async fn stable_service_leaving(&self, template: &Value) -> Result<Option<(String, String)>> {
        let Some(name) = &self.leave_service else {
            return Ok(None);
        };
        let Some(service) = self.services.get_opt(name).await? else {
            return Ok(None);
        };
        let selector: serde_json::Map<String, Value> = service
            .spec
            .and_then(|spec| spec.selector)
            .into_iter()
            .flatten()
            .map(|(key, value)| (key, Value::String(value)))
            .collect();
        let labels = template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        Ok(canary_pod_label(&selector, &labels))
    }

    async fn promote_inner(&self, revision: &str) -> Result<bool> {
        let stable = self.stable().await?;
        let Some(patch) = self.promotion(&stable, revision).await? else {
            return Ok(false);
        };
        self.write_stable(&stable, patch).await?;
        Ok(true)
    }

    /// The merge patch promoting `revision` onto `stable` (as read), or `None` when it runs
    /// it already.
    async fn promotion(&self, stable: &K, revision: &str) -> Result<Option<Value>> {
        let paused = stable.frozen();
        if annotation(stable, STABLE_REVISION).as_deref() == Some(revision) && !paused {
            return Ok(None);
        }
        let (mut template, desired, configs) = self.desired(stable).await?;
        if desired != revision {
            return Err(Error::Invalid(format!(
                "the wanted revision changed from {revision} to {desired} before promotion; trying again"
            )));
        }
        let live = pod_template(stable);
        keep_stable_labels(
            &mut template,
            &live,
            &serde_json::to_value(stable.match_labels()).unwrap_or(Value::Null),
            self.new_version.as_ref(),
        );
        if !configs.is_empty() {
            template["metadata"]["annotations"][CONFIG_HASH] = json!(configs);
        }
        if live != pod_template_value(&template)
            && let Some(manager) = gitops_applier(stable)
        {
            return Err(Error::Invalid(format!(
                "the stable {kind} {}/{}'s pod template is applied by {manager}, which would \
                 put the old one back after promotion: commit newVersion's change to the \
                 {kind}'s template in Git (the release is promoted once the template there \
                 asks for it), or release by changing the template in Git, without newVersion",
                self.namespace,
                self.stable,
                kind = K::DESCRIPTOR.kind
            )));
        }
        // The template is the live one with the new version applied, so a merge patch (lists
        // replaced whole, maps merged) sets exactly it.
        Ok(Some(merged(
            stable.thaw(),
            json!({
                "metadata": {"annotations": {STABLE_REVISION: revision}},
                "spec": {"template": template},
            }),
        )))
    }

    /// Deletes the canary Deployment in the foreground (its ReplicaSets and pods first; see
    /// [`Workload::canary_gone`]). Returns whether it wrote anything (a canary
    /// already being deleted is left to go).
    async fn remove_inner(&self) -> Result<bool> {
        match self.canary().await? {
            Some(canary) if canary.meta().deletion_timestamp.is_none() => {
                self.delete_canary(&canary).await
            }
            _ => Ok(false),
        }
    }
}

#[async_trait]
impl<K: Kind> WorkloadProvider for Workload<K> {
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

/// A workload provider of any kind, with what the controller asks of it besides the engine's
/// [`WorkloadProvider`] calls.
#[async_trait]
pub trait ClusterWorkload: WorkloadProvider {
    /// Holds the stable workload while a release is pending (see [`Workload::hold`]).
    async fn hold(&self) -> Result<Hold>;
    /// Lets the stable workload go (see [`Workload::release`]).
    async fn release(&self) -> Result<bool>;
    /// Whether the canary workload and its pods are gone.
    async fn canary_gone(&self) -> Result<bool>;
    /// Whether the stable workload exists.
    async fn stable_exists(&self) -> Result<bool>;
}

#[async_trait]
impl<K: Kind> ClusterWorkload for Workload<K> {
    async fn hold(&self) -> Result<Hold> {
        Workload::hold(self).await
    }

    async fn release(&self) -> Result<bool> {
        Workload::release(self).await
    }

    async fn canary_gone(&self) -> Result<bool> {
        Workload::canary_gone(self).await
    }

    async fn stable_exists(&self) -> Result<bool> {
        Workload::stable_exists(self).await
    }
}

/// The workload provider of `plan`'s kind, knowing the revision the Rollout's status says the
/// stable workload runs (see [`Workload::with_known_stable`]). Each kind is one arm here.
pub fn for_plan(
    client: Client,
    plan: &canary_core::RolloutPlan,
    known_stable: Option<String>,
) -> Box<dyn ClusterWorkload> {
    match plan.workload.id {
        WorkloadKind::Deployment => {
            Box::new(DeploymentWorkload::new(client, plan).with_known_stable(known_stable))
        }
        WorkloadKind::DaemonSet => {
            Box::new(DaemonSetWorkload::new(client, plan).with_known_stable(known_stable))
        }
    }
}

/// The workload provider of a Rollout without a plan (see [`Workload::without_plan`]), of
/// `kind`.
pub fn for_kind_without_plan(
    kind: WorkloadKind,
    client: Client,
    namespace: &str,
    rollout: &str,
    stable: &str,
) -> Box<dyn ClusterWorkload> {
    match kind {
        WorkloadKind::Deployment => Box::new(DeploymentWorkload::without_plan(
            client, namespace, rollout, stable,
        )),
        WorkloadKind::DaemonSet => Box::new(DaemonSetWorkload::without_plan(
            client, namespace, rollout, stable,
        )),
    }
}

/// The pod template of a Deployment as JSON, without canary's own annotations.
fn pod_template<K: Kind>(workload: &K) -> Value {
    pod_template_value(&serde_json::to_value(workload.template()).unwrap_or(Value::Null))
}

/// A pod template (`spec.template` of a Deployment as JSON) without canary's own annotations.
pub(crate) fn pod_template_value(template: &Value) -> Value {
    let mut value = template.clone();
    // `get_mut`, not `value["metadata"]["annotations"]`: indexing a JSON object mutably adds a
    // missing key as null, and the hash of the template would then depend on it.
    let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return value;
    };
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(REVISION);
        annotations.remove(CONFIG_HASH);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
    value
}

/// What promotion keeps of the stable pods' `live` template in the new `template`: the labels
/// the stable Deployment's selector (`match_labels`) needs (a selector cannot change), and the
/// stable pods' own values of the keys of `newVersion.podTemplateMetadata` (pod metadata
/// meant for the canary, such as a lane tag).
fn keep_stable_labels(
    template: &mut Value,
    live: &Value,
    match_labels: &Value,
    new_version: Option<&NewVersion>,
) {
    for (key, value) in match_labels.as_object().into_iter().flatten() {
        template["metadata"]["labels"][key] = value.clone();
    }
    let Some(extra) = new_version.and_then(|new| new.pod_template_metadata.as_ref()) else {
        return;
    };
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

/// The pod template promotion of `new_version` gives the Deployment `manifest` (as JSON): what
/// its template must be in Git for a GitOps tool to keep what promotion writes.
pub fn promoted_template(manifest: &Value, new_version: &NewVersion) -> Value {
    let live = manifest["spec"]["template"].clone();
    let mut template = live.clone();
    apply_new_version(&mut template, new_version);
    keep_stable_labels(
        &mut template,
        &live,
        &manifest["spec"]["selector"]["matchLabels"],
        Some(new_version),
    );
    template
}

/// The GitOps tool whose manager owns fields of `deployment`'s pod template, if one does
/// (see [`crate::apply::gitops_applier`]).
fn gitops_applier<K: Kind>(workload: &K) -> Option<String> {
    let object = serde_json::to_value(workload).ok()?;
    crate::apply::gitops_applier(&object, &["f:spec", "f:template"])
}

/// The canary Deployment's selector: the keys of the stable selector with the values the
/// canary's pods carry (a `newVersion` may change one, such as `version`), plus the canary's
/// own labels, so that it always matches the canary's template and never the stable pods.
fn canary_selector<K: Kind>(
    stable: &K,
    template: &Value,
) -> std::collections::BTreeMap<String, String> {
    let labels = &template["metadata"]["labels"];
    let mut selector: std::collections::BTreeMap<String, String> = stable
        .match_labels()
        .cloned()
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

/// Whether `deployment` has an owner reference to a Rollout (a canary made before canary
/// stopped giving them): it is applied again, without.
fn owned_by_rollout<K: Kind>(workload: &K) -> bool {
    workload
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "Rollout" && r.api_version.starts_with(crate::GROUP))
}

fn annotation<K: Kind>(workload: &K, key: &str) -> Option<String> {
    workload.meta().annotations.as_ref()?.get(key).cloned()
}

#[cfg(all(test, feature = "test-util"))]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use kube_testserver::ApiServer;

    const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: web, namespace: default}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {name: web, port: 80}
  trafficRouting: {nginx: {ingress: web}}
  strategy: {canary: {steps: [{weight: 50}]}}
";

    fn image(deployment: &Deployment) -> String {
        let containers = deployment
            .spec
            .template
            .spec
            .clone()
            .unwrap_or_default()
            .containers;
        containers
            .first()
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    }

    /// A `newVersion` promoted into a template Flux applies from Git would be put back at
    /// Flux's next interval, the stable pods rolled back under a release reported as
    /// promoted: promotion refuses, naming the tool and what to commit. Once Git's template
    /// asks for the new version, promotion only lets the Deployment roll.
    #[tokio::test]
    async fn a_new_version_is_not_written_into_a_template_gitops_applies() {
        let server = ApiServer::start().await.unwrap();
        let manifest = |image: &str| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"replicas": 2,
                         "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "web", "image": image}]}}}
            })
        };
        server
            .apply_as("kustomize-controller", &manifest("web:1"), true)
            .unwrap();
        let rollout =
            format!("{ROLLOUT}  newVersion: {{containers: [{{name: web, image: \"web:2\"}}]}}\n");
        let plan = canary_core::api::load::plan_from_yaml(&rollout).unwrap();
        let workload = DeploymentWorkload::new(server.client(), &plan);
        let seen = workload.observe_inner().await.unwrap();
        let workload = workload.with_known_stable(Some(seen.stable.revision.clone()));
        assert_eq!(workload.hold().await.unwrap(), Hold::Held);
        let refused = workload
            .promote_inner(&seen.desired_revision)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("applied by kustomize-controller") && refused.contains("Git"),
            "{refused}"
        );
        assert_eq!(image(&workload.stable().await.unwrap()), "web:1");

        // The user commits the new version to the Deployment in Git; Flux applies it.
        server
            .apply_as("kustomize-controller", &manifest("web:2"), true)
            .unwrap();
        let again = workload.observe_inner().await.unwrap();
        assert_eq!(again.desired_revision, seen.desired_revision);
        assert!(
            workload
                .promote_inner(&again.desired_revision)
                .await
                .unwrap()
        );
        let promoted = workload.stable().await.unwrap();
        assert_eq!(image(&promoted), "web:2");
        assert_eq!(promoted.spec.paused, Some(false));
    }

    /// A write by another manager between canary's read of the stable Deployment and its
    /// promotion (Flux applying Git's template) makes the API server refuse canary's write
    /// with 409, because it carries the resourceVersion canary read: the other write is kept.
    /// The next pass reads again and promotes what the template now asks for, as manager
    /// `canary`.
    #[tokio::test]
    async fn a_write_since_the_read_refuses_the_promotion_and_the_next_pass_converges() {
        let server = ApiServer::start().await.unwrap();
        server.put(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default",
                         "annotations": {STABLE_REVISION: "running"}},
            "spec": {"replicas": 2, "paused": true,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:2"}]}}}
        }));
        let plan = canary_core::api::load::plan_from_yaml(ROLLOUT).unwrap();
        let workload = DeploymentWorkload::new(server.client(), &plan);
        let seen = workload.observe_inner().await.unwrap();
        let read = workload.stable().await.unwrap();
        let patch = workload
            .promotion(&read, &seen.desired_revision)
            .await
            .unwrap()
            .expect("web:2 is to be promoted");

        // Flux writes Git's template (web:3) in between.
        let deployments: Api<Deployment> = Api::namespaced(server.client(), "default");
        let flux = PatchParams {
            field_manager: Some("kustomize-controller".to_owned()),
            ..PatchParams::default()
        };
        let template = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:3"}]}}}});
        deployments
            .patch("web", &flux, &Patch::Merge(&template))
            .await
            .unwrap();

        let refused = workload.write_stable(&read, patch).await.unwrap_err();
        assert!(
            matches!(&refused, Error::Kube(kube::Error::Api(status)) if status.code == 409),
            "{refused}"
        );
        let kept = workload.stable().await.unwrap();
        assert_eq!(image(&kept), "web:3", "Flux's template is kept");
        assert_eq!(
            annotation(&kept, STABLE_REVISION).as_deref(),
            Some("running")
        );

        // The next pass: the revision asked for is now web:3's, and its promotion goes through.
        let again = workload.observe_inner().await.unwrap();
        assert_ne!(again.desired_revision, seen.desired_revision);
        assert!(
            workload
                .promote_inner(&again.desired_revision)
                .await
                .unwrap()
        );
        let promoted = workload.stable().await.unwrap();
        assert_eq!(image(&promoted), "web:3");
        assert_eq!(promoted.spec.paused, Some(false));
        assert_eq!(
            annotation(&promoted, STABLE_REVISION),
            Some(again.desired_revision.clone())
        );
        let managers: Vec<String> = promoted
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|entry| entry.manager.clone())
            .collect();
        assert!(managers.contains(&FIELD_MANAGER.to_owned()), "{managers:?}");
    }
}
