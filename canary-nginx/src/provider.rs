//! The provider: renders, then applies by server-side apply what differs from the cluster.

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::machine::Verification;
use canary_core::objects::{Objects, POD_TEMPLATE_HASH, includes};
use canary_core::providers::TrafficProvider;
use canary_core::{Capabilities, RolloutPlan, RouteState};
use canary_kube::controller::TrafficFactory;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::FIELD_MANAGER;
use crate::annotations::Canary;
use crate::error::{Error, Result};
use crate::render::{
    NARROWED_ANNOTATION, Rendered, StableSelector, canary_ingress_name, canary_service_name,
    ingress_name, prefix, render,
};

/// Makes an [`NginxTraffic`] for each Rollout.
pub struct NginxFactory {
    client: Client,
}

impl NginxFactory {
    /// Providers talking to the cluster through `client`.
    pub fn new(client: Client) -> Self {
        NginxFactory { client }
    }
}

impl TrafficFactory for NginxFactory {
    fn provider(&self, plan: &RolloutPlan) -> canary_kube::Result<Arc<dyn TrafficProvider>> {
        Ok(Arc::new(NginxTraffic::new(
            self.client.clone(),
            plan.clone(),
        )))
    }
}

/// The canary Ingress and Service of one Rollout, and its stable Service's selector.
pub struct NginxTraffic {
    plan: RolloutPlan,
    ingresses: Api<Ingress>,
    services: Api<Service>,
    deployments: Api<Deployment>,
    replicasets: Api<ReplicaSet>,
}

/// What the cluster holds.
struct Live {
    objects: Objects,
    canary_ingress: Option<Value>,
    canary_service: Option<Value>,
    stable_service: Option<Value>,
}

fn to_value(object: &impl Serialize) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}

async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<Value>>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.map(|o| to_value(&o)))
}

impl NginxTraffic {
    /// The routes of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        let namespace = plan.namespace.as_str();
        NginxTraffic {
            ingresses: Api::namespaced(client.clone(), namespace),
            services: Api::namespaced(client.clone(), namespace),
            deployments: Api::namespaced(client.clone(), namespace),
            replicasets: Api::namespaced(client, namespace),
            plan,
        }
    }

    /// The objects rendering needs; the stable Deployment's ReplicaSets only while a canary
    /// runs or is about to get traffic (`routing`).
    async fn live(&self, routing: bool) -> Result<Live> {
        let plan = &self.plan;
        let mut objects = Objects::default();
        let canary = get(&self.deployments, &plan.canary_workload()).await?;
        let stable = get(&self.deployments, &plan.rollout.spec.workload_ref.name).await?;
        if let Some(stable) = &stable
            && (routing || canary.is_some())
        {
            let selector = stable
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|labels| {
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let list = self
                .replicasets
                .list(&ListParams::default().labels(&selector))
                .await?;
            objects.extend(list.items.iter().map(to_value));
        }
        let stable_service = get(&self.services, &plan.rollout.spec.service.name).await?;
        let stable_ingress = get(&self.ingresses, &ingress_name(plan)).await?;
        let canary_ingress = get(&self.ingresses, &canary_ingress_name(plan)).await?;
        let canary_service = get(&self.services, &canary_service_name(plan)).await?;
        objects.extend(
            [canary, stable, stable_service.clone(), stable_ingress]
                .into_iter()
                .flatten(),
        );
        Ok(Live {
            objects,
            canary_ingress,
            canary_service,
            stable_service,
        })
    }

    fn rendered(&self, live: &Live, route: &RouteState) -> Result<Rendered> {
        let rendered = render(&self.plan, route, &live.objects)?;
        if let StableSelector::Unknown(why) = &rendered.stable_selector {
            return Err(Error::Input(why.clone()));
        }
        Ok(rendered)
    }

    async fn apply_route(&self, route: &RouteState) -> Result<bool> {
        let live = self.live(!route.is_stable_only()).await?;
        let rendered = self.rendered(&live, route)?;
        let mut changed = false;
        // Stable pods only behind the stable Service before the canary gets traffic.
        changed |= self
            .write_selector(&live, &rendered.stable_selector)
            .await?;
        if let Some(service) = &rendered.canary_service {
            changed |= write(&self.services, live.canary_service.as_ref(), service).await?;
        }
        match &rendered.canary_ingress {
            Some(ingress) => {
                changed |= write(&self.ingresses, live.canary_ingress.as_ref(), ingress).await?
            }
            None => {
                // Traffic leaves the canary Ingress before its Service goes.
                changed |= delete(&self.ingresses, live.canary_ingress.as_ref()).await?;
            }
        }
        if rendered.canary_service.is_none() {
            changed |= delete(&self.services, live.canary_service.as_ref()).await?;
        }
        Ok(changed)
    }

    /// Narrows the stable Service's selector, or gives it back as written.
    async fn write_selector(&self, live: &Live, selector: &StableSelector) -> Result<bool> {
        let Some(stable) = &live.stable_service else {
            return Ok(false);
        };
        let name = &self.plan.rollout.spec.service.name;
        let base = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": self.plan.namespace},
        });
        let payload = match selector {
            StableSelector::Narrowed(service) => {
                let hash = &service["metadata"]["annotations"][NARROWED_ANNOTATION];
                if stable["metadata"]["annotations"][NARROWED_ANNOTATION] == *hash
                    && includes(&stable["spec"]["selector"], &service["spec"]["selector"])
                {
                    return Ok(false);
                }
                let mut payload = base;
                payload["metadata"]["annotations"] = json!({NARROWED_ANNOTATION: hash});
                payload["spec"] = json!({"selector": {POD_TEMPLATE_HASH: hash}});
                payload
            }
            StableSelector::AsWritten | StableSelector::Unknown(_) => {
                if stable["metadata"]["annotations"][NARROWED_ANNOTATION].is_null() {
                    return Ok(false);
                }
                // Applying nothing gives up the fields canary set: the selector is the user's.
                base
            }
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.services
            .patch(name, &params, &Patch::Apply(&payload))
            .await?;
        Ok(true)
    }

    /// Whether the live objects are what `route` renders to.
    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<bool> {
        let rendered = self.rendered(live, route)?;
        let same = |live: Option<&Value>, desired: Option<&Value>| match (live, desired) {
            (Some(live), Some(desired)) => includes(live, desired),
            (None, None) => true,
            _ => false,
        };
        let selector = match (&rendered.stable_selector, &live.stable_service) {
            (StableSelector::Narrowed(service), Some(stable)) => {
                includes(&stable["spec"]["selector"], &service["spec"]["selector"])
            }
            (_, Some(stable)) => stable["metadata"]["annotations"][NARROWED_ANNOTATION].is_null(),
            (_, None) => rendered.canary_ingress.is_none(),
        };
        Ok(selector
            && same(
                live.canary_service.as_ref(),
                rendered.canary_service.as_ref(),
            )
            && same(
                live.canary_ingress.as_ref(),
                rendered.canary_ingress.as_ref(),
            ))
    }
}

/// Writes `desired` (an object canary generates) when the live one does not hold it.
async fn write<K>(api: &Api<K>, live: Option<&Value>, desired: &Value) -> Result<bool>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    if live.is_some_and(|live| includes(live, desired)) {
        return Ok(false);
    }
    let name = desired["metadata"]["name"].as_str().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(desired)).await?;
    Ok(true)
}

/// Deletes `live` when it exists.
async fn delete<K>(api: &Api<K>, live: Option<&Value>) -> Result<bool>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let Some(name) = live.and_then(|l| l["metadata"]["name"].as_str()) else {
        return Ok(false);
    };
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error.into()),
    }
}

#[async_trait]
impl TrafficProvider for NginxTraffic {
    fn capabilities(&self) -> Capabilities {
        crate::capabilities()
    }

    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self.apply_route(route).await?)
    }

    async fn observe(&self) -> canary_core::Result<Option<RouteState>> {
        let Some(ingress) = get(&self.ingresses, &canary_ingress_name(&self.plan))
            .await
            .map_err(canary_core::Error::from)?
        else {
            return Ok(Some(RouteState::stable()));
        };
        let annotations = ingress["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        Ok(Canary::new(prefix(&self.plan)).route_of(&annotations))
    }

    async fn verify(&self, route: &RouteState) -> canary_core::Result<Verification> {
        let live = self.live(!route.is_stable_only()).await?;
        Ok(if self.in_effect(&live, route)? {
            Verification::Yes
        } else {
            Verification::No
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        let live = self.live(false).await?;
        delete(&self.ingresses, live.canary_ingress.as_ref()).await?;
        delete(&self.services, live.canary_service.as_ref()).await?;
        self.write_selector(&live, &StableSelector::AsWritten)
            .await?;
        Ok(())
    }
}
