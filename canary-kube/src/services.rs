//! The Services of the providers that route by Service (ingress-nginx, Kuma, Istio), in the
//! cluster: the canary Service of [`canary_core::k8s::services`]. The stable Service is only read.

use canary_core::RolloutPlan;
use canary_core::k8s::objects::Objects;
use canary_core::k8s::objects::ROLLOUT_LABEL;
use canary_core::k8s::objects::includes;
use canary_core::k8s::services::{ROLE_LABEL, Split, canary_service_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::apply::{Object, apply_if_changed, delete_if_present, get_json};

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
    pods: Api<Pod>,
}

impl ServiceSplit {
    /// The Services of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan, manager: &'static str) -> Self {
        let namespace = plan.namespace.clone();
        ServiceSplit {
            services: Api::namespaced(client.clone(), &namespace),
            deployments: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client, &namespace),
            manager,
            plan,
        }
    }

    /// Adds to `objects` what rendering needs: the stable Service, and the canary Deployment
    /// and pods that still run (to check the stable Service does not select them).
    pub async fn fetch(&self, objects: &mut Objects) -> kube::Result<LiveServices> {
        let plan = &self.plan;
        let canary_deployment = get_json(&self.deployments, &plan.canary_workload()).await?;
        let pods = self
            .pods
            .list(&ListParams::default().labels(&format!(
                "{ROLE_LABEL}=canary,{ROLLOUT_LABEL}={}",
                plan.name
            )))
            .await?;
        objects.extend(
            pods.items
                .iter()
                .map(|pod| serde_json::to_value(pod).unwrap_or(Value::Null)),
        );
        let live = LiveServices {
            stable: get_json(&self.services, &plan.rollout.spec.service.name).await?,
            canary: get_json(&self.services, &canary_service_name(plan)).await?,
        };
        objects.extend(
            [canary_deployment, live.stable.clone()]
                .into_iter()
                .flatten(),
        );
        Ok(live)
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

    /// Puts `split` in effect in a safe order: the canary Service before the route object that
    /// sends traffic to it (in `routes`; `live` is the one there now), and the route object
    /// gone before the canary Service. Returns whether it wrote.
    pub async fn apply<K: Object>(
        &self,
        live: &LiveServices,
        routes: &Api<K>,
        live_route: Option<&Value>,
        split: &Split,
    ) -> kube::Result<bool> {
        let mut changed = false;
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

    /// Removes the route object and the canary Service.
    pub async fn remove<K: Object>(
        &self,
        live: &LiveServices,
        routes: &Api<K>,
        live_route: Option<&Value>,
    ) -> kube::Result<()> {
        delete_if_present(routes, live_route).await?;
        self.write_canary(live, None).await?;
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
    let canary_selector = match (live.canary.as_ref(), split.canary_service.as_ref()) {
        (Some(live), Some(desired)) => same_selector(live, desired),
        _ => true,
    };
    canary_selector
        && same(live.canary.as_ref(), split.canary_service.as_ref())
        && same(live_route, split.route.as_ref())
}
