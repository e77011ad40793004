//! The provider: renders, then applies by server-side apply what differs from the cluster.

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::machine::Verification;
use canary_core::objects::Objects;
use canary_core::providers::{TrafficObservation, TrafficProvider};
use canary_core::services::StableSelector;
use canary_core::{Capabilities, RolloutPlan, RouteState};
use canary_kube::apply::get_json;
use canary_kube::services::{LiveServices, ServiceSplit, holds};
use canary_kube::traffic::ProviderFactory;
use k8s_openapi::api::networking::v1::Ingress;
use kube::{Api, Client};
use serde_json::Value;

use crate::FIELD_MANAGER;
use crate::annotations::Canary;
use crate::error::{Error, Result};
use crate::render::{Rendered, canary_ingress_name, ingress_name, prefix, render};

/// The canary Ingress and Service of one Rollout, and its stable Service's selector.
pub struct NginxTraffic {
    plan: RolloutPlan,
    ingresses: Api<Ingress>,
    services: ServiceSplit,
}

/// What the cluster holds.
struct Live {
    objects: Objects,
    services: LiveServices,
    canary_ingress: Option<Value>,
}

impl NginxTraffic {
    /// A factory making one for each Rollout, talking through `client`.
    pub fn factory(client: Client) -> ProviderFactory {
        ProviderFactory::new(client, |client, plan| {
            Arc::new(NginxTraffic::new(client, plan))
        })
    }

    /// The routes of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        NginxTraffic {
            ingresses: Api::namespaced(client.clone(), &plan.namespace),
            services: ServiceSplit::new(client, plan.clone(), FIELD_MANAGER),
            plan,
        }
    }

    /// The objects rendering needs (the stable ReplicaSets too when `routing` to the canary).
    async fn live(&self, routing: bool) -> Result<Live> {
        let mut objects = Objects::default();
        let services = self.services.fetch(&mut objects, routing).await?;
        objects.extend(get_json(&self.ingresses, &ingress_name(&self.plan)).await?);
        let canary_ingress = get_json(&self.ingresses, &canary_ingress_name(&self.plan)).await?;
        Ok(Live {
            objects,
            services,
            canary_ingress,
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
        Ok(self
            .services
            .apply(
                &live.services,
                &self.ingresses,
                live.canary_ingress.as_ref(),
                &rendered,
            )
            .await?)
    }

    /// Whether the live objects are what `route` renders to.
    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<bool> {
        let rendered = self.rendered(live, route)?;
        Ok(holds(
            &live.services,
            live.canary_ingress.as_ref(),
            &rendered,
        ))
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

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let live = self.live(!applied.is_stable_only()).await?;
        let verified = if self.in_effect(&live, applied)? {
            Verification::Yes
        } else {
            Verification::No
        };
        let route = match &live.canary_ingress {
            None => Some(RouteState::stable()),
            Some(ingress) => {
                let annotations = ingress["metadata"]["annotations"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                Canary::new(prefix(&self.plan)).route_of(&annotations)
            }
        };
        Ok(TrafficObservation { route, verified })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        let live = self.live(false).await?;
        self.services
            .remove(
                &live.services,
                &self.ingresses,
                live.canary_ingress.as_ref(),
            )
            .await
            .map_err(Error::from)?;
        Ok(())
    }
}
