//! The Services of the providers that route by Service (ingress-nginx, Kuma), in the cluster:
//! the canary Service and the stable Service's selector of [`canary_core::services`].

use canary_core::RolloutPlan;
use canary_core::objects::Objects;
use canary_core::services::{StableSelector, canary_service_name, selector_patch};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::Value;

use crate::apply::{apply, apply_if_changed, delete_if_present, get_json, label_selector};

/// The stable and canary Services of one Rollout, as they are.
#[derive(Debug, Clone, Default)]
pub struct LiveServices {
    /// The stable Service.
    pub stable: Option<Value>,
    /// The canary Service.
    pub canary: Option<Value>,
}

/// Reads and writes the Services of one Rollout, as field manager `manager`.
pub struct ServiceSplit {
    plan: RolloutPlan,
    manager: &'static str,
    services: Api<Service>,
    deployments: Api<Deployment>,
    replicasets: Api<ReplicaSet>,
}

impl ServiceSplit {
    /// The Services of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan, manager: &'static str) -> Self {
        let namespace = plan.namespace.clone();
        ServiceSplit {
            services: Api::namespaced(client.clone(), &namespace),
            deployments: Api::namespaced(client.clone(), &namespace),
            replicasets: Api::namespaced(client, &namespace),
            manager,
            plan,
        }
    }

    /// Adds to `objects` what rendering needs: both Deployments, the stable Service and (while
    /// canary pods run, or when `routing` to them) the stable Deployment's ReplicaSets.
    pub async fn fetch(&self, objects: &mut Objects, routing: bool) -> kube::Result<LiveServices> {
        let plan = &self.plan;
        let canary_deployment = get_json(&self.deployments, &plan.canary_workload()).await?;
        let stable_deployment =
            get_json(&self.deployments, &plan.rollout.spec.workload_ref.name).await?;
        if let Some(stable) = &stable_deployment
            && (routing || canary_deployment.is_some())
        {
            let selector = label_selector(&stable["spec"]["selector"]["matchLabels"]);
            let list = self
                .replicasets
                .list(&ListParams::default().labels(&selector))
                .await?;
            objects.extend(
                list.items
                    .iter()
                    .map(|rs| serde_json::to_value(rs).unwrap_or(Value::Null)),
            );
        }
        let live = LiveServices {
            stable: get_json(&self.services, &plan.rollout.spec.service.name).await?,
            canary: get_json(&self.services, &canary_service_name(plan)).await?,
        };
        objects.extend(
            [canary_deployment, stable_deployment, live.stable.clone()]
                .into_iter()
                .flatten(),
        );
        Ok(live)
    }

    /// Narrows the stable Service's selector, or gives it back as written. Returns whether it
    /// wrote.
    pub async fn write_selector(
        &self,
        live: &LiveServices,
        selector: &StableSelector,
    ) -> kube::Result<bool> {
        let Some(stable) = &live.stable else {
            return Ok(false);
        };
        if selector.in_effect(stable) || matches!(selector, StableSelector::Unknown(_)) {
            return Ok(false);
        }
        apply(
            &self.services,
            &selector_patch(&self.plan, selector),
            self.manager,
        )
        .await?;
        Ok(true)
    }

    /// Applies the canary Service, or deletes it when `desired` is `None`. Returns whether it
    /// wrote.
    pub async fn write_canary(
        &self,
        live: &LiveServices,
        desired: Option<&Value>,
    ) -> kube::Result<bool> {
        match desired {
            Some(desired) => {
                apply_if_changed(&self.services, live.canary.as_ref(), desired, self.manager).await
            }
            None => delete_if_present(&self.services, live.canary.as_ref()).await,
        }
    }
}
