//! The provider: renders, then applies by server-side apply what differs from the cluster.
//!
//! Kuma reports no status on routes, so a route counts as in effect once the objects are as
//! rendered. A MeshHTTPRoute names services as the mesh resolves them, so the provider reads
//! the Mesh (`kuma.io/v1alpha1`, cluster-scoped) on every pass: a Mesh that is missing (not
//! created yet, or Kuma's CRDs not installed) counts as one without MeshServices, which is what
//! the control plane's own `default` mesh is (see [`crate::render::References`]).

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficObservation, TrafficProvider};
use canary_core::k8s::objects::{Objects, includes};
use canary_core::{RolloutPlan, RouteState};
use canary_kube::apply::get_json;
use canary_kube::error::ApiResult;
use canary_kube::services::{LiveServices, ServiceSplit, holds};
use canary_kube::traffic::ClusterBackend;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::Value;

use crate::FIELD_MANAGER;
use crate::error::Result;
use crate::render::{Rendered, applied_route, mesh, observed_route, render, route_name};

/// The route object and Services of one Rollout.
pub struct KumaTraffic {
    plan: RolloutPlan,
    routes: Api<DynamicObject>,
    /// The Mesh objects, read for MeshHTTPRoutes only.
    meshes: Option<Api<DynamicObject>>,
    services: ServiceSplit,
}

/// What the cluster holds.
struct Live {
    objects: Objects,
    services: LiveServices,
    route: Option<Value>,
}

impl ClusterBackend for crate::Kuma {
    fn traffic(&self, client: Client, plan: RolloutPlan) -> Arc<dyn TrafficProvider> {
        Arc::new(KumaTraffic::new(client, plan))
    }
}

impl KumaTraffic {
    /// The routes of `plan`: a MeshHTTPRoute in its namespace, or a cluster-wide TrafficRoute.
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        let (kind, _) = route_name(&plan);
        let resource =
            |kind| ApiResource::from_gvk(&GroupVersionKind::gvk("kuma.io", "v1alpha1", kind));
        let (routes, meshes) = if kind == "TrafficRoute" {
            (Api::all_with(client.clone(), &resource(kind)), None)
        } else {
            (
                Api::namespaced_with(client.clone(), &plan.namespace, &resource(kind)),
                Some(Api::all_with(client.clone(), &resource("Mesh"))),
            )
        };
        KumaTraffic {
            services: ServiceSplit::new(client, plan.clone(), FIELD_MANAGER),
            routes,
            meshes,
            plan,
        }
    }

    async fn live(&self) -> Result<Live> {
        let mut objects = Objects::default();
        let services = self.services.fetch(&mut objects).await.api()?;
        let route = get_json(&self.routes, &route_name(&self.plan).1)
            .await
            .api()?;
        if let Some(meshes) = &self.meshes
            && let Some(mesh) = get_json(meshes, mesh(&self.plan)).await.api()?
        {
            objects.insert(mesh);
        }
        Ok(Live {
            objects,
            services,
            route,
        })
    }

    fn rendered(&self, live: &Live, route: &RouteState) -> Result<Rendered> {
        render(&self.plan, route, &live.objects)
    }

    async fn apply_route(&self, route: &RouteState) -> Result<bool> {
        let live = self.live().await?;
        let rendered = self.rendered(&live, route)?;
        self.services
            .apply(&live.services, &self.routes, live.route.as_ref(), &rendered)
            .await
            .api()
    }

    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<bool> {
        let rendered = self.rendered(live, route)?;
        Ok(holds(&live.services, live.route.as_ref(), &rendered))
    }
}

#[async_trait]
impl TrafficProvider for KumaTraffic {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self.apply_route(route).await?)
    }

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let live = self.live().await?;
        let in_effect = self.in_effect(&live, applied)?;
        let verified = if in_effect {
            Verification::Yes
        } else {
            Verification::No
        };
        let route = match &live.route {
            None => Some(RouteState::stable()),
            Some(object) => match applied_route(object) {
                Some(recorded) if recorded == *applied && in_effect => Some(recorded),
                Some(recorded)
                    if render(&self.plan, &recorded, &live.objects)
                        .ok()
                        .and_then(|rendered| rendered.route)
                        .is_some_and(|desired| includes(object, &desired)) =>
                {
                    Some(recorded)
                }
                _ => observed_route(&self.plan, object),
            },
        };
        Ok(TrafficObservation {
            route,
            verified,
            pending: None,
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        let live = self.live().await?;
        self.services
            .remove(&live.services, &self.routes, live.route.as_ref())
            .await
            .api()?;
        Ok(())
    }
}
