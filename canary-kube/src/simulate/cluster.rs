//! The simulated cluster: the strict API test server with the CRDs canary and its providers
//! use, the admission webhooks of the meshes and ingress-nginx, the user's objects created
//! through the API (so a real cluster's refusals show), and the kube-controller-manager
//! stepped in virtual time.

use std::time::Duration;

use canary_core::RolloutPlan;
use jiff::{SignedDuration, Timestamp};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_testserver::{ApiServer, ControllerManager, ResourceType};
use serde_json::{Value, json};

use crate::crd::Rollout;
use crate::error::{Error, Result};
use crate::fixtures::{CanaryHold, read_crds, upstream_crds};

/// Custom resources served without a schema: no public CRD of them is published.
const SCHEMALESS: [(&str, &str, &str, &str, bool); 2] = [
    (
        "istio.alibabacloud.com",
        "v1",
        "ASMSwimLaneGroup",
        "asmswimlanegroups",
        false,
    ),
    (
        "istio.alibabacloud.com",
        "v1",
        "ASMSwimLane",
        "asmswimlanes",
        false,
    ),
];

/// How long before the simulation starts the cluster boots, so that the stable Deployment is
/// rolled out when the Rollout arrives.
const BOOT: SignedDuration = SignedDuration::from_hours(1);

/// Annotation `kubectl rollout restart` sets on a pod template.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// A running simulated cluster.
pub(super) struct Cluster {
    pub(super) server: ApiServer,
    pub(super) client: Client,
    pub(super) controllers: ControllerManager,
}

impl Cluster {
    /// A fresh cluster whose pods are ready `pod_startup` after they start.
    pub(super) async fn start(pod_startup: SignedDuration) -> Result<Self> {
        let server = ApiServer::start()
            .await
            .map_err(|e| Error::Invalid(format!("the API test server cannot start: {e}")))?;
        let rollout = serde_json::to_value(<Rollout as kube::CustomResourceExt>::crd())
            .map_err(|e| Error::Invalid(format!("the Rollout CRD: {e}")))?;
        let upstream = read_crds(&upstream_crds()).map_err(Error::Invalid)?;
        for crd in std::iter::once(&rollout).chain(&upstream) {
            server
                .register_crd(crd)
                .map_err(|e| Error::Invalid(format!("a CRD the simulated cluster serves: {e}")))?;
        }
        for (group, version, kind, plural, namespaced) in SCHEMALESS {
            server.register(ResourceType::new(
                group, version, kind, plural, namespaced, false,
            ));
        }
        server.admit_like_upstream();
        // canary's own webhook, installed with the controller: a Deployment whose template
        // changes is held in the same request (see `crate::hold`).
        server.add_mutating_hook(std::sync::Arc::new(CanaryHold));
        let startup = Duration::try_from(pod_startup).unwrap_or_default();
        Ok(Cluster {
            client: server.client(),
            controllers: server.controllers(startup),
            server,
        })
    }

    /// The API of `object`'s kind and namespace, its name, and how to name it in messages:
    /// refused when the cluster does not serve its kind.
    pub(super) fn api_for(&self, object: &Value) -> Result<(Api<DynamicObject>, String, String)> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str();
        let what = super::gitops::describe(object);
        let Some(resource) = self.server.resource(api_version, kind) else {
            return Err(Error::Refused(format!(
                "{what}: the cluster serves no {kind} in {api_version}"
            )));
        };
        let api_resource = ApiResource {
            group: resource.group.clone(),
            version: resource.version.clone(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: resource.plural.clone(),
        };
        let api: Api<DynamicObject> = match (resource.namespaced, namespace) {
            (true, Some(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, &api_resource)
            }
            (true, None) => Api::default_namespaced_with(self.client.clone(), &api_resource),
            (false, _) => Api::all_with(self.client.clone(), &api_resource),
        };
        Ok((api, name.to_owned(), what))
    }

    /// The live object `object` names, if there is one.
    pub(super) async fn get(&self, object: &Value) -> Result<Option<Value>> {
        let (api, name, _) = self.api_for(object)?;
        Ok(api
            .get_opt(&name)
            .await?
            .map(|live| serde_json::to_value(&live).unwrap_or(Value::Null)))
    }

    /// Creates `object` through the API, as `kubectl create` would: refused as a real
    /// cluster refuses it (validation, schema, admission), with the server's message.
    pub(super) async fn create(&self, object: &Value) -> Result<()> {
        let (api, _, what) = self.api_for(object)?;
        let dynamic: DynamicObject =
            serde_json::from_value(canary_core::k8s::objects::clean(object))
                .map_err(|e| Error::Refused(format!("{what}: {e}")))?;
        api.create(&PostParams::default(), &dynamic)
            .await
            .map_err(|e| Error::Refused(format!("{what}: {}", refusal(&e))))?;
        Ok(())
    }

    /// Checks that the objects the rollout builds on are there: the stable workload, its
    /// Service, and nodes for a DaemonSet.
    pub(super) fn check_needs(&self, plan: &RolloutPlan) -> Result<()> {
        let spec = &plan.rollout.spec;
        let needed = [
            (
                plan.workload.api_version,
                plan.workload.kind,
                &spec.workload_ref.name,
                "spec.workloadRef",
            ),
            ("v1", "Service", &spec.service.name, "spec.service"),
        ];
        // A DaemonSet runs one pod per eligible node: without nodes it runs none, and the
        // release would have no stable pod to start from.
        if plan.workload.id == canary_core::workload::WorkloadKind::DaemonSet
            && self.server.list("v1", "Node").is_empty()
        {
            return Err(Error::Unusable(format!(
                "the cluster has no Node for the DaemonSet {}/{} (spec.workloadRef) to run on: \
                 add the nodes (kind: Node) to the rollout file or give them with --objects",
                plan.namespace, spec.workload_ref.name
            )));
        }
        for (api_version, kind, name, field) in needed {
            if self
                .server
                .get(api_version, kind, Some(&plan.namespace), name)
                .is_none()
            {
                return Err(Error::Unusable(format!(
                    "the cluster has no {kind} {}/{name} ({field}): add it to the rollout \
                     file or give it with --objects",
                    plan.namespace
                )));
            }
        }
        Ok(())
    }

    /// Moves the cluster on to `now`: the kube-controller-manager and kubelet, and the mesh's
    /// control plane. Returns whether anything changed.
    pub(super) async fn step(&self, now: Timestamp) -> bool {
        let controllers = self.controllers.step(now);
        let mesh = super::kuma::sync_mesh_services(&self.server, &self.client).await;
        let after = mesh && self.controllers.step(now);
        controllers || mesh || after
    }

    /// Runs the kube-controller-manager from an hour before `start` until `start`: the
    /// Deployments created so far are rolled out.
    pub(super) async fn boot(&self, start: Timestamp) {
        let mut now = start.checked_sub(BOOT).unwrap_or(start);
        self.step(now).await;
        while let Some(at) = self.controllers.next_event().filter(|at| *at <= start) {
            now = at.max(now);
            self.step(now).await;
        }
        self.step(start).await;
    }

    /// The Rollout of `plan` as first created: without its `newVersion`, so that the
    /// controller first adopts the stable workload as it runs.
    pub(super) fn rollout_manifest(plan: &RolloutPlan) -> Result<Value> {
        let mut value = serde_json::to_value(&plan.rollout)
            .map_err(|e| Error::Invalid(format!("the Rollout: {e}")))?;
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("newVersion");
        }
        Ok(value)
    }

    /// Creates the Rollout of `plan` without its `newVersion` (see [`Self::rollout_manifest`]).
    pub(super) async fn create_rollout(&self, plan: &RolloutPlan) -> Result<Api<Rollout>> {
        let rollout: Rollout = serde_json::from_value(Self::rollout_manifest(plan)?)
            .map_err(|e| Error::Refused(format!("Rollout {}: {e}", plan.name)))?;
        let api = Api::<Rollout>::namespaced(self.client.clone(), &plan.namespace);
        api.create(&PostParams::default(), &rollout)
            .await
            .map_err(|e| {
                Error::Refused(format!(
                    "Rollout {}/{}: {}",
                    plan.namespace,
                    plan.name,
                    refusal(&e)
                ))
            })?;
        Ok(api)
    }

    /// Asks for a new revision through Git: the Rollout's `newVersion` committed when it has
    /// one, with the stable Deployment's template as promotion will make it when the release
    /// promotes (a tool applying
    /// Git would put any other back: promotion refuses to write a template GitOps applies), or
    /// else the stable Deployment's pod template changed as `kubectl rollout restart` changes
    /// it; the tool applies the commit at once.
    pub(super) async fn release_in_git(
        &self,
        plan: &RolloutPlan,
        at: Timestamp,
        git: &mut super::gitops::Repository,
    ) -> Result<()> {
        let (kind, name) = match plan.rollout.spec.new_version {
            Some(_) => ("Rollout", &plan.name),
            None => (plan.workload.kind, &plan.rollout.spec.workload_ref.name),
        };
        let Some(mut manifest) = git.manifest(kind, name).cloned() else {
            return Err(Error::Unusable(format!(
                "Git has no {kind} {}/{name} to release through",
                plan.namespace
            )));
        };
        match &plan.rollout.spec.new_version {
            Some(new_version) => {
                manifest["spec"]["newVersion"] = serde_json::to_value(new_version)
                    .map_err(|e| Error::Invalid(format!("the Rollout's newVersion: {e}")))?;
                let stable = &plan.rollout.spec.workload_ref.name;
                // A release that does not promote (a dark launch) leaves Git's template.
                let promotes = plan.finish == canary_core::api::plan::Finish::Promote;
                if let Some(mut deployment) = git
                    .manifest(plan.workload.kind, stable)
                    .filter(|_| promotes)
                    .cloned()
                {
                    deployment["spec"]["template"] =
                        crate::workload::promoted_template(&deployment, new_version);
                    git.commit(deployment);
                }
            }
            None => {
                manifest["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT] =
                    json!(at.to_string());
            }
        }
        git.commit(manifest);
        git.sync(self, at, true).await?;
        Ok(())
    }

    /// Asks for a new revision: the Rollout's `newVersion` when it has one, or else a
    /// changed pod template of the stable Deployment, as `kubectl rollout restart` makes.
    pub(super) async fn release(&self, plan: &RolloutPlan, at: Timestamp) -> Result<()> {
        let refused =
            |what: String| move |e: kube::Error| Error::Refused(format!("{what}: {}", refusal(&e)));
        match &plan.rollout.spec.new_version {
            Some(new_version) => {
                let patch = json!({"spec": {"newVersion": new_version}});
                Api::<Rollout>::namespaced(self.client.clone(), &plan.namespace)
                    .patch(&plan.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(refused(format!("Rollout {}/{}", plan.namespace, plan.name)))?;
            }
            None => {
                let stable = json!({
                    "apiVersion": plan.workload.api_version,
                    "kind": plan.workload.kind,
                    "metadata": {"name": plan.rollout.spec.workload_ref.name,
                                 "namespace": plan.namespace},
                });
                let (api, name, what) = self.api_for(&stable)?;
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    RESTARTED_AT: at.to_string()
                }}}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(refused(what))?;
            }
        }
        Ok(())
    }
}

/// What the API server said when it refused a request.
pub(super) fn refusal(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
