//! The Services of the providers that route by Service (ingress-nginx, Kuma), in the cluster:
//! the canary Service and the stable Service's selector of [`canary_core::services`].

use canary_core::RolloutPlan;
use canary_core::objects::Objects;
use canary_core::objects::ROLLOUT_LABEL;
use canary_core::objects::includes;
use canary_core::services::{
    ROLE_LABEL, Split, StableSelector, canary_service_name, selector_patch,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::apply::{Object, apply_if_changed, delete_if_present, get_json, label_selector};

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
    pods: Api<Pod>,
}

impl ServiceSplit {
    /// The Services of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan, manager: &'static str) -> Self {
        let namespace = plan.namespace.clone();
        ServiceSplit {
            services: Api::namespaced(client.clone(), &namespace),
            deployments: Api::namespaced(client.clone(), &namespace),
            replicasets: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client, &namespace),
            manager,
            plan,
        }
    }

    /// Adds to `objects` what rendering needs: both Deployments, the stable Service, the canary
    /// pods that still run, and (while canary pods run, or when `routing` to them) both
    /// Deployments' ReplicaSets.
    pub async fn fetch(&self, objects: &mut Objects, routing: bool) -> kube::Result<LiveServices> {
        let plan = &self.plan;
        let canary_deployment = get_json(&self.deployments, &plan.canary_workload()).await?;
        let stable_deployment =
            get_json(&self.deployments, &plan.rollout.spec.workload_ref.name).await?;
        let pods = self
            .pods
            .list(&ListParams::default().labels(&format!(
                "{ROLE_LABEL}=canary,{ROLLOUT_LABEL}={}",
                plan.name
            )))
            .await?;
        let canary_pods = !pods.items.is_empty();
        objects.extend(
            pods.items
                .iter()
                .map(|pod| serde_json::to_value(pod).unwrap_or(Value::Null)),
        );
        if routing || canary_deployment.is_some() || canary_pods {
            for deployment in [&stable_deployment, &canary_deployment]
                .into_iter()
                .flatten()
            {
                let selector = label_selector(&deployment["spec"]["selector"]["matchLabels"]);
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
        let Some(patch) = selector_patch(selector, stable) else {
            return Ok(false);
        };
        let name = &self.plan.rollout.spec.service.name;
        let params = PatchParams {
            field_manager: Some(self.manager.to_owned()),
            ..PatchParams::default()
        };
        self.services
            .patch(name, &params, &Patch::Merge(&patch))
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
        match (desired, live.canary.as_ref()) {
            (Some(desired), Some(live)) if !same_selector(live, desired) => {
                // A Service's selector is one atomic value (server-side apply replaces it
                // whole, but only a field manager's own keys are its to drop): a key someone
                // added would make the canary Service select nothing, so it is replaced whole.
                let mut replacement: Service =
                    serde_json::from_value(desired.clone()).map_err(kube::Error::SerdeError)?;
                replacement.metadata.resource_version = live["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_owned);
                if let Some(spec) = replacement.spec.as_mut() {
                    // Immutable once set.
                    spec.cluster_ip = live["spec"]["clusterIP"].as_str().map(str::to_owned);
                    spec.cluster_ips = live["spec"]["clusterIPs"].as_array().map(|ips| {
                        ips.iter()
                            .filter_map(|ip| ip.as_str().map(str::to_owned))
                            .collect()
                    });
                }
                let name = canary_service_name(&self.plan);
                self.services
                    .replace(
                        &name,
                        &PostParams {
                            field_manager: Some(self.manager.to_owned()),
                            ..PostParams::default()
                        },
                        &replacement,
                    )
                    .await?;
                Ok(true)
            }
            (Some(desired), live) => {
                apply_if_changed(&self.services, live, desired, self.manager).await
            }
            (None, live) => delete_if_present(&self.services, live).await,
        }
    }

    /// Puts `split` in effect in a safe order: the stable Service narrowed to stable pods, the
    /// canary Service before the route object that sends traffic to it (in `routes`; `live`
    /// is the one there now), and the route object gone before the canary Service. Returns
    /// whether it wrote.
    pub async fn apply<K: Object>(
        &self,
        live: &LiveServices,
        routes: &Api<K>,
        live_route: Option<&Value>,
        split: &Split,
    ) -> kube::Result<bool> {
        let mut changed = self.write_selector(live, &split.stable_selector).await?;
        if split.canary_service.is_some() {
            changed |= self
                .write_canary(live, split.canary_service.as_ref())
                .await?;
        }
        changed |= match &split.route {
            Some(desired) => apply_if_changed(routes, live_route, desired, self.manager).await?,
            None => delete_if_present(routes, live_route).await?,
        };
        if split.canary_service.is_none() {
            changed |= self.write_canary(live, None).await?;
        }
        Ok(changed)
    }

    /// Removes the route object and the canary Service and gives the stable Service its
    /// selector back.
    pub async fn remove<K: Object>(
        &self,
        live: &LiveServices,
        routes: &Api<K>,
        live_route: Option<&Value>,
    ) -> kube::Result<()> {
        delete_if_present(routes, live_route).await?;
        self.write_canary(live, None).await?;
        self.write_selector(live, &StableSelector::AsWritten)
            .await?;
        Ok(())
    }
}

/// Whether the live Service `live` selects exactly what `desired` selects (no key more).
fn same_selector(live: &Value, desired: &Value) -> bool {
    live["spec"]["selector"] == desired["spec"]["selector"]
}

/// Whether the live objects hold `split`.
pub fn holds(live: &LiveServices, live_route: Option<&Value>, split: &Split) -> bool {
    let same = |live: Option<&Value>, desired: Option<&Value>| match (live, desired) {
        (Some(live), Some(desired)) => includes(live, desired),
        (None, None) => true,
        _ => false,
    };
    let selector = live
        .stable
        .as_ref()
        .is_none_or(|stable| split.stable_selector.in_effect(stable));
    let canary_selector = match (live.canary.as_ref(), split.canary_service.as_ref()) {
        (Some(live), Some(desired)) => same_selector(live, desired),
        _ => true,
    };
    selector
        && canary_selector
        && same(live.canary.as_ref(), split.canary_service.as_ref())
        && same(live_route, split.route.as_ref())
}
