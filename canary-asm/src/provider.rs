//! The provider: the lanes are shared, so every change is a read, a render from what was
//! read, and a server-side apply that holds the resource version it read: a Rollout that
//! changed the lanes in between makes the write fail, and it is done again from a fresh read.
//!
//! The read includes the stable Deployment, whose pod template must carry the base lane's tag
//! before the service joins the lanes (see [`crate::render`]); lanes of another group are
//! refused before anything is written and left alone on finalize. So are lanes and groups a
//! GitOps tool applies from Git (its field manager owns their spec): it would put its own back
//! over what a release writes into them, and the two would fight every interval.

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::ErrorClass;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficObservation, TrafficProvider};
use canary_core::k8s::objects::{Objects, includes};
use canary_core::{RolloutPlan, RouteState};
use canary_kube::apply::{apply, get_json, gitops_applier};
use canary_kube::error::ApiResult;
use canary_kube::traffic::ClusterBackend;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Preconditions};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::render::{Released, Rendered, in_group, observed_route, release, render, settings};

/// How many times a change is tried again when another Rollout changed the lanes meanwhile.
const ATTEMPTS: usize = 4;

/// What a write does with an object a GitOps tool applies from Git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeptInGit {
    /// Refuses the write: the release cannot use it without fighting the tool.
    Refuse,
    /// Leaves the object as Git has it (a finalize: nothing of the release's is in it).
    Skip,
}

/// One Rollout's service in a lane group.
pub struct AsmTraffic {
    plan: RolloutPlan,
    groups: Api<DynamicObject>,
    lanes: Api<DynamicObject>,
    deployments: Api<DynamicObject>,
}

/// The lane objects as they are.
struct Live {
    objects: Objects,
    /// Whether the stable Deployment exists (it is among `objects` then).
    stable: bool,
    group: Option<Value>,
    base: Option<Value>,
    canary: Option<Value>,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("istio.alibabacloud.com", "v1", kind))
}

impl ClusterBackend for crate::Asm {
    fn traffic(&self, client: Client, plan: RolloutPlan) -> Arc<dyn TrafficProvider> {
        Arc::new(AsmTraffic::new(client, plan))
    }
}

impl AsmTraffic {
    /// The lanes of `plan` (cluster-scoped objects).
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        let (group, version) = plan
            .workload
            .api_version
            .split_once('/')
            .unwrap_or(("", plan.workload.api_version));
        let deployments =
            ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, plan.workload.kind));
        AsmTraffic {
            groups: Api::all_with(client.clone(), &resource("ASMSwimLaneGroup")),
            lanes: Api::all_with(client.clone(), &resource("ASMSwimLane")),
            deployments: Api::namespaced_with(client, &plan.namespace, &deployments),
            plan,
        }
    }

    async fn live(&self) -> Result<Live> {
        let asm = settings(&self.plan)?;
        let group = get_json(&self.groups, &asm.lane_group).await.api()?;
        let base = get_json(&self.lanes, &asm.base_lane).await.api()?;
        let canary = get_json(&self.lanes, &asm.canary_lane).await.api()?;
        let stable = get_json(&self.deployments, &self.plan.rollout.spec.workload_ref.name)
            .await
            .api()?;
        let found = stable.is_some();
        let objects = Objects::new(
            [group.clone(), base.clone(), canary.clone(), stable]
                .into_iter()
                .flatten()
                .collect(),
        );
        Ok(Live {
            objects,
            stable: found,
            group,
            base,
            canary,
        })
    }

    /// Writes `desired` when `live` does not hold it, on the condition that `live` is still
    /// the version read; an object a GitOps tool applies is refused or skipped (`kept`).
    async fn write(
        &self,
        api: &Api<DynamicObject>,
        live: Option<&Value>,
        desired: &Value,
        kept: KeptInGit,
    ) -> Result<bool> {
        if live.is_some_and(|live| includes(live, desired)) {
            return Ok(false);
        }
        if let Some(tool) = live.and_then(|live| gitops_applier(live, &["f:spec"])) {
            if kept == KeptInGit::Skip {
                return Ok(false);
            }
            return Err(Error::Conflict(format!(
                "{} {} is applied from Git by {tool}, which would put its own back over the \
                 services and routes this release writes into it: remove it from Git (canary \
                 creates the lanes and the group it needs, and deletes them with the last \
                 Rollout)",
                desired["kind"].as_str().unwrap_or("lane object"),
                desired["metadata"]["name"].as_str().unwrap_or_default(),
            )));
        }
        let mut desired = desired.clone();
        if let Some(version) = live.and_then(|l| l["metadata"]["resourceVersion"].as_str()) {
            desired["metadata"]["resourceVersion"] = json!(version);
        }
        apply(api, &desired, FIELD_MANAGER).await.api()?;
        Ok(true)
    }

    async fn write_all(&self, live: &Live, rendered: &Rendered, kept: KeptInGit) -> Result<bool> {
        let mut changed = self
            .write(&self.groups, live.group.as_ref(), &rendered.group, kept)
            .await?;
        changed |= self
            .write(&self.lanes, live.base.as_ref(), &rendered.base, kept)
            .await?;
        changed |= self
            .write(&self.lanes, live.canary.as_ref(), &rendered.canary, kept)
            .await?;
        Ok(changed)
    }

    /// Runs `change` from a fresh read until no other Rollout changed the lanes in between.
    async fn retrying<F, Fut>(&self, change: F) -> Result<bool>
    where
        F: Fn(Live) -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match change(self.live().await?).await {
                Err(error) if error.class() == ErrorClass::Conflict => last = Some(error),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Input("lanes kept changing".to_owned())))
    }

    async fn delete(&self, api: &Api<DynamicObject>, live: Option<&Value>) -> kube::Result<()> {
        let Some(live) = live else {
            return Ok(());
        };
        let name = live["metadata"]["name"].as_str().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: live["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[async_trait]
impl TrafficProvider for AsmTraffic {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self
            .retrying(|live| async move {
                if !live.stable && !route.is_stable_only() {
                    let name = &self.plan.rollout.spec.workload_ref.name;
                    return Err(Error::Input(format!(
                        "the stable {} {}/{name} is needed: its pods must be in the \
                         base lane before the canary gets traffic",
                        self.plan.workload.kind, self.plan.namespace
                    )));
                }
                let rendered = render(&self.plan, route, &live.objects)?;
                self.write_all(&live, &rendered, KeptInGit::Refuse).await
            })
            .await?)
    }

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let live = self.live().await?;
        let rendered = render(&self.plan, applied, &live.objects)?;
        let holds = |live: &Option<Value>, desired: &Value| {
            live.as_ref().is_some_and(|live| includes(live, desired))
        };
        let in_effect = holds(&live.group, &rendered.group)
            && holds(&live.base, &rendered.base)
            && holds(&live.canary, &rendered.canary);
        Ok(TrafficObservation {
            route: observed_route(&self.plan, live.canary.as_ref()),
            verified: if in_effect {
                Verification::Yes
            } else {
                Verification::No
            },
            pending: None,
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        self.retrying(|live| async move {
            match release(&self.plan, &live.objects)? {
                Released::Kept(rendered) => self.write_all(&live, &rendered, KeptInGit::Skip).await,
                Released::Deleted => {
                    // The lanes first: a group is never left without them while lanes remain.
                    // A lane of the same name in another group is not this group's to delete.
                    let group = &settings(&self.plan)?.lane_group;
                    let ours =
                        |lane: &Option<Value>| lane.clone().filter(|lane| in_group(lane, group));
                    self.delete(&self.lanes, ours(&live.canary).as_ref())
                        .await
                        .api()?;
                    self.delete(&self.lanes, ours(&live.base).as_ref())
                        .await
                        .api()?;
                    self.delete(&self.groups, live.group.as_ref()).await.api()?;
                    Ok(true)
                }
            }
        })
        .await?;
        Ok(())
    }
}
