//! The provider: renders, then applies by server-side apply what differs from the cluster.
//!
//! It never writes over or deletes a canary Ingress or canary Service that another Rollout
//! (or no Rollout) owns: applying a route that needs them fails with the owner's name. Routing
//! fields someone added to its own canary Ingress ([`crate::drift`]) are removed by a JSON merge
//! patch, and a route with them is not in effect.

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficObservation, TrafficProvider};
use canary_core::k8s::objects::Objects;
use canary_core::{RolloutPlan, RouteState};
use canary_kube::apply::{delete_if_present, get_json};
use canary_kube::error::ApiResult;
use canary_kube::services::{LiveServices, ServiceSplit, holds};
use canary_kube::traffic::ClusterBackend;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::FIELD_MANAGER;
use crate::annotations::Canary;
use crate::drift::foreign_fields;
use crate::error::{Error, Result};
use crate::render::{
    Rendered, canary_ingress_name, canary_ingress_names, ingress_name, owner_conflict, prefix,
    render,
};

/// The canary Ingress and Service of one Rollout, and its stable Service's selector.
pub struct NginxTraffic {
    plan: RolloutPlan,
    ingresses: Api<Ingress>,
    services: ServiceSplit,
}

/// What the cluster holds.
struct Live {
    objects: Objects,
    /// The Services; a canary Service of another owner is left out (see `conflict`).
    services: LiveServices,
    /// The canary Ingress under the name wanted now, when it is this Rollout's.
    canary_ingress: Option<Value>,
    /// This Rollout's canary Ingress under its other name (the stable Ingress gained or lost
    /// a Service since it was made): deleted.
    stale_ingress: Option<Value>,
    /// Why canary must not write the canary objects: one of their names is taken.
    conflict: Option<String>,
}

impl ClusterBackend for crate::Nginx {
    fn traffic(&self, client: Client, plan: RolloutPlan) -> Arc<dyn TrafficProvider> {
        Arc::new(NginxTraffic::new(client, plan))
    }
}

impl NginxTraffic {
    /// The routes of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        NginxTraffic {
            ingresses: Api::namespaced(client.clone(), &plan.namespace),
            services: ServiceSplit::new(client, plan.clone(), FIELD_MANAGER),
            plan,
        }
    }

    /// The objects rendering needs.
    /// Objects of the canary names that another Rollout (or no Rollout) owns are left out and
    /// named in `conflict`, so nothing here writes or deletes them.
    async fn live(&self) -> Result<Live> {
        let mut objects = Objects::default();
        let mut services = self.services.fetch(&mut objects).await.api()?;
        let stable_ingress = get_json(&self.ingresses, &ingress_name(&self.plan))
            .await
            .api()?;
        let name = canary_ingress_name(&self.plan, stable_ingress.as_ref());
        objects.extend(stable_ingress);
        let mut conflicts = Vec::new();
        let mut own = |object: Option<Value>| match object {
            Some(object) => match owner_conflict(&self.plan, &object) {
                Some(why) => {
                    conflicts.push(why);
                    None
                }
                None => Some(object),
            },
            None => None,
        };
        let canary_ingress = own(get_json(&self.ingresses, &name).await.api()?);
        services.canary = own(services.canary.take());
        let mut stale_ingress = None;
        for other in canary_ingress_names(&self.plan) {
            if other != name {
                stale_ingress = get_json(&self.ingresses, &other)
                    .await
                    .api()?
                    .filter(|object| owner_conflict(&self.plan, object).is_none());
            }
        }
        Ok(Live {
            objects,
            services,
            canary_ingress,
            stale_ingress,
            conflict: (!conflicts.is_empty()).then(|| conflicts.join("; ")),
        })
    }

    fn rendered(&self, live: &Live, route: &RouteState) -> Result<Rendered> {
        render(&self.plan, route, &live.objects)
    }

    /// The merge patch removing routing fields someone added to the live canary Ingress.
    fn foreign(&self, live: &Live, rendered: &Rendered) -> Option<Value> {
        let (Some(live), Some(desired)) = (&live.canary_ingress, &rendered.route) else {
            return None;
        };
        foreign_fields(live, desired, &Canary::new(prefix(&self.plan)))
    }

    async fn apply_route(&self, route: &RouteState) -> Result<bool> {
        let live = self.live().await?;
        let rendered = self.rendered(&live, route)?;
        if let Some(why) = &live.conflict
            && (rendered.route.is_some() || rendered.canary_service.is_some())
        {
            return Err(Error::Conflict(why.clone()));
        }
        let mut changed = delete_if_present(&self.ingresses, live.stale_ingress.as_ref())
            .await
            .api()?;
        if let (Some(patch), Some(name)) = (
            self.foreign(&live, &rendered),
            live.canary_ingress
                .as_ref()
                .and_then(|ingress| ingress["metadata"]["name"].as_str()),
        ) {
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            self.ingresses
                .patch(name, &params, &Patch::Merge(&patch))
                .await
                .api()?;
            changed = true;
        }
        changed |= self
            .services
            .apply(
                &live.services,
                &self.ingresses,
                live.canary_ingress.as_ref(),
                &rendered,
            )
            .await
            .api()?;
        Ok(changed)
    }

    /// Whether the live objects are what `route` renders to, with no routing field added.
    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<bool> {
        let rendered = self.rendered(live, route)?;
        let needs_objects = rendered.route.is_some() || rendered.canary_service.is_some();
        Ok(
            holds(&live.services, live.canary_ingress.as_ref(), &rendered)
                && self.foreign(live, &rendered).is_none()
                && live.stale_ingress.is_none()
                && !(needs_objects && live.conflict.is_some()),
        )
    }
}

#[async_trait]
impl TrafficProvider for NginxTraffic {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self.apply_route(route).await?)
    }

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let live = self.live().await?;
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
        Ok(TrafficObservation {
            route,
            verified,
            pending: None,
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        let live = self.live().await?;
        delete_if_present(&self.ingresses, live.stale_ingress.as_ref())
            .await
            .api()?;
        self.services
            .remove(
                &live.services,
                &self.ingresses,
                live.canary_ingress.as_ref(),
            )
            .await
            .api()?;
        Ok(())
    }
}
