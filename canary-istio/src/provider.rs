//! The provider: renders, then applies by server-side apply what differs from the cluster.
//!
//! Hosts move make-before-break, one write per pass: the canary Service (and the canary
//! host's DestinationRule) first, the VirtualService that names the canary host once they are
//! there (and the DestinationRule reconciled), and, when the route keeps everything on stable
//! again, the canary Service and its DestinationRule removed after the VirtualService no longer
//! names the canary host. istiod gives Envoy no cluster for a host the registry does not hold
//! (pilot/pkg/networking/core/route/route.go `applyHTTPRouteDestination` leaves Envoy's
//! `cluster_not_found_response_code` at its default for VirtualServices: such requests get
//! 503s), so no route names the canary host before its Service exists.

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::RolloutPlan;
use canary_core::RouteState;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficObservation, TrafficProvider};
use canary_core::k8s::objects::Objects;
use canary_core::k8s::services::canary_service_name;
use canary_kube::apply::{delete_if_present, get_json};
use canary_kube::error::ApiResult;
use canary_kube::services::{LiveServices, ServiceSplit};
use canary_kube::traffic::ClusterBackend;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::hosts::is_service_host;
use crate::render::{Rendered, render};
use crate::{FIELD_MANAGER, destination_rule, virtual_service};
use canary_core::k8s::objects::{generated, includes};

/// The routes of one Rollout: the canary Service, the canary host's DestinationRule and a
/// VirtualService.
pub struct IstioTraffic {
    plan: RolloutPlan,
    services: ServiceSplit,
    virtual_services: Api<DynamicObject>,
    destination_rules: Api<DynamicObject>,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind))
}

/// What the cluster holds: the objects rendering needs.
struct Live {
    objects: Objects,
    services: LiveServices,
    virtual_service: Option<Value>,
    /// The DestinationRule named for the service host (the user's, read only).
    destination_rule: Option<Value>,
    /// The DestinationRule canary generated for the canary host.
    canary_destination_rule: Option<Value>,
    /// A DestinationRule canary generated for the service host (subsets, in earlier
    /// versions), to delete.
    generated_destination_rule: Option<Value>,
}

impl Live {
    /// Whether the live VirtualService routes or mirrors anything to the canary host.
    fn names_canary(&self, plan: &RolloutPlan) -> bool {
        self.virtual_service
            .as_ref()
            .is_some_and(|vs| names_host(vs, &canary_service_name(plan), &plan.namespace))
    }
}

impl ClusterBackend for crate::Istio {
    fn traffic(&self, client: Client, plan: RolloutPlan) -> Arc<dyn TrafficProvider> {
        Arc::new(IstioTraffic::new(client, plan))
    }
}

impl IstioTraffic {
    /// The routes of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        let namespace = plan.namespace.as_str();
        IstioTraffic {
            virtual_services: Api::namespaced_with(
                client.clone(),
                namespace,
                &resource("VirtualService"),
            ),
            destination_rules: Api::namespaced_with(
                client.clone(),
                namespace,
                &resource("DestinationRule"),
            ),
            services: ServiceSplit::new(client, plan.clone(), FIELD_MANAGER),
            plan,
        }
    }

    async fn live(&self) -> Result<Live> {
        let mut objects = Objects::default();
        let services = self.services.fetch(&mut objects).await.api()?;
        let virtual_service = get_json(&self.virtual_services, &virtual_service::name(&self.plan))
            .await
            .api()?;
        let destination_rule =
            get_json(&self.destination_rules, &destination_rule::name(&self.plan))
                .await
                .api()?;
        let canary_destination_rule = get_json(
            &self.destination_rules,
            &destination_rule::canary_name(&self.plan),
        )
        .await
        .api()?
        .filter(generated);
        let generated_destination_rule = destination_rule.clone().filter(generated);
        objects.extend(
            virtual_service
                .iter()
                .chain(destination_rule.iter())
                .cloned(),
        );
        Ok(Live {
            objects,
            services,
            virtual_service,
            destination_rule,
            canary_destination_rule,
            generated_destination_rule,
        })
    }

    /// Whether `route` leaves the user's VirtualService to the user: all traffic on stable, and
    /// the VirtualService theirs. Then canary's changes to it are taken back, so that what Git
    /// holds is what runs and a GitOps tool finds nothing to correct.
    fn idle(live: &Live, route: &RouteState) -> bool {
        route.is_stable_only()
            && live
                .virtual_service
                .as_ref()
                .is_some_and(|vs| !generated(vs))
    }

    /// Whether the user's VirtualService carries nothing of canary's (see [`Self::idle`]), and
    /// the canary host's objects are gone.
    fn released(&self, live: &Live) -> bool {
        let untouched = live.virtual_service.as_ref().is_none_or(|vs| {
            generated(vs)
                || vs["metadata"]["annotations"]
                    .as_object()
                    .is_none_or(|annotations| {
                        !annotations.keys().any(|key| key.starts_with(CANARY_PREFIX))
                    })
        });
        untouched
            && !live.names_canary(&self.plan)
            && Self::canary_host_gone(live)
            && live
                .destination_rule
                .as_ref()
                .is_none_or(|dr| destination_rule::released(dr).is_none())
    }

    /// Whether the canary Service and the canary host's DestinationRule are gone.
    fn canary_host_gone(live: &Live) -> bool {
        live.services.canary.is_none() && live.canary_destination_rule.is_none()
    }

    /// Takes canary's changes back from the user's VirtualService. Returns whether it wrote.
    /// A user's DestinationRule that earlier versions of canary edited is given back too.
    async fn restore_user_objects(&self, live: &Live) -> Result<bool> {
        let mut changed = false;
        if let Some(vs) = &live.virtual_service
            && let Some(restored) = virtual_service::restore(vs)
        {
            changed |= self
                .write(
                    &self.virtual_services,
                    Some(vs),
                    &restored,
                    virtual_service::managed_view,
                )
                .await?;
        }
        changed |= self.release_destination_rule(live).await?;
        Ok(changed)
    }

    /// Gives back a user's DestinationRule that earlier versions of canary edited (its
    /// subsets as recorded, none of canary's annotations). Returns whether it wrote.
    async fn release_destination_rule(&self, live: &Live) -> Result<bool> {
        let Some(released) = live
            .destination_rule
            .as_ref()
            .and_then(destination_rule::released)
        else {
            return Ok(false);
        };
        let name = destination_rule::name(&self.plan);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.destination_rules
            .patch(&name, &params, &Patch::Apply(&payload(&released)))
            .await
            .api()?;
        Ok(true)
    }

    /// Removes the canary Service and the canary host's DestinationRule. Returns whether it
    /// wrote.
    async fn remove_canary_host(&self, live: &Live) -> Result<bool> {
        let mut changed = delete_if_present(
            &self.destination_rules,
            live.canary_destination_rule.as_ref(),
        )
        .await
        .api()?;
        changed |= self
            .services
            .write_canary(&live.services, None)
            .await
            .api()?;
        Ok(changed)
    }

    /// Writes `desired` when its managed parts differ from `live`'s. Returns whether it wrote.
    async fn write(
        &self,
        api: &Api<DynamicObject>,
        live: Option<&Value>,
        desired: &Value,
        view: fn(&Value) -> Value,
    ) -> Result<bool> {
        if live.is_some_and(|live| view(live) == view(desired)) {
            return Ok(false);
        }
        let name = desired
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(&payload(desired)))
            .await
            .api()?;
        Ok(true)
    }

    /// The VirtualService `route` wants: the user's as it was when the route keeps everything
    /// on stable, else the rendered one.
    fn wanted_virtual_service(&self, live: &Live, rendered: &Rendered) -> Option<Value> {
        match &live.virtual_service {
            Some(vs) if !generated(vs) && rendered_stable_only(rendered) => {
                virtual_service::restore(vs)
            }
            _ => Some(rendered.virtual_service.clone()),
        }
    }

    /// One step towards `route`, make-before-break (see the module): the canary Service and
    /// the canary host's DestinationRule, then (on a later pass, once they are stored and the
    /// DestinationRule reconciled) the VirtualService; with all traffic on stable, the
    /// VirtualService first and the canary host's objects on a later pass.
    async fn step(&self, route: &RouteState) -> Result<Step> {
        let live = self.live().await?;
        let rendered = render(&self.plan, route, &live.objects)?;
        if let Some(service) = &rendered.canary_service {
            let mut changed = self
                .services
                .write_canary(&live.services, Some(service))
                .await
                .api()?;
            changed |= match &rendered.canary_destination_rule {
                Some(dr) => {
                    self.write(
                        &self.destination_rules,
                        live.canary_destination_rule.as_ref(),
                        dr,
                        destination_rule::managed_view,
                    )
                    .await?
                }
                None => delete_if_present(
                    &self.destination_rules,
                    live.canary_destination_rule.as_ref(),
                )
                .await
                .api()?,
            };
            if changed {
                return Ok(Step::Waiting { changed: true });
            }
            if !live.canary_destination_rule.as_ref().is_none_or(reconciled) {
                return Ok(Step::Waiting { changed: false });
            }
        }
        let mut changed = match self.wanted_virtual_service(&live, &rendered) {
            Some(vs) => {
                self.write(
                    &self.virtual_services,
                    live.virtual_service.as_ref(),
                    &vs,
                    virtual_service::managed_view,
                )
                .await?
            }
            None => false,
        };
        if rendered.canary_service.is_none() && !Self::canary_host_gone(&live) {
            if changed || !live.virtual_service.as_ref().is_none_or(reconciled) {
                return Ok(Step::Waiting { changed });
            }
            if live.names_canary(&self.plan) {
                // Someone else's route to the canary host: it stays until that is gone.
                return Ok(Step::Done { changed });
            }
            changed |= self.remove_canary_host(&live).await?;
        }
        if rendered.canary_service.is_none() && !changed {
            // After the routes, so that no route names a subset the rule loses.
            changed |= self.release_destination_rule(&live).await?;
        }
        if let Some(dr) = &live.generated_destination_rule
            && !live
                .virtual_service
                .as_ref()
                .is_some_and(|vs| names_subset(vs, &self.plan))
        {
            changed |= delete_if_present(&self.destination_rules, Some(dr))
                .await
                .api()?;
        }
        Ok(Step::Done { changed })
    }

    /// Applies `route` as far as one pass may (see [`Self::step`]). Returns whether it wrote.
    async fn apply_route(&self, route: &RouteState) -> Result<bool> {
        Ok(self.step(route).await?.changed())
    }

    /// Whether the live objects are what `route` renders to, and Istio has taken them in.
    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<bool> {
        if Self::idle(live, route) {
            return Ok(self.released(live));
        }
        let Some(vs) = &live.virtual_service else {
            return Ok(false);
        };
        let rendered = render(&self.plan, route, &live.objects)?;

        let service = match (&live.services.canary, &rendered.canary_service) {
            (Some(live), Some(desired)) => {
                live["spec"]["selector"] == desired["spec"]["selector"] && includes(live, desired)
            }
            (None, None) => true,
            _ => false,
        };
        Ok(service
            && same(
                Some(vs),
                Some(&rendered.virtual_service),
                virtual_service::managed_view,
            )
            && same(
                live.canary_destination_rule.as_ref(),
                rendered.canary_destination_rule.as_ref(),
                destination_rule::managed_view,
            ))
    }

    async fn finalize_routes(&self) -> Result<()> {
        let live = self.live().await?;
        // The routes before the hosts they name.
        if let Some(vs) = live.virtual_service.as_ref().filter(|vs| generated(vs)) {
            delete_if_present(&self.virtual_services, Some(vs))
                .await
                .api()?;
        }
        self.restore_user_objects(&live).await?;
        self.remove_canary_host(&live).await?;
        delete_if_present(
            &self.destination_rules,
            live.generated_destination_rule.as_ref(),
        )
        .await
        .api()?;
        Ok(())
    }
}

/// Whether `live` is `desired` where canary writes it (`view`) and reconciled, or both are
/// absent.
fn same(live: Option<&Value>, desired: Option<&Value>, view: fn(&Value) -> Value) -> bool {
    match (live, desired) {
        (Some(live), Some(desired)) => view(live) == view(desired) && reconciled(live),
        (None, None) => true,
        _ => false,
    }
}

/// Whether `rendered` keeps all traffic on stable (no canary host to route to).
fn rendered_stable_only(rendered: &Rendered) -> bool {
    rendered.canary_service.is_none()
}

/// Whether a route or mirror of `vs` names `host` (a Service in `namespace`).
fn names_host(vs: &Value, host: &str, namespace: &str) -> bool {
    destinations(vs).any(|destination| {
        destination["host"]
            .as_str()
            .is_some_and(|h| is_service_host(h, host, namespace))
    })
}

/// Whether a route or mirror of `vs` names a subset of the service host.
fn names_subset(vs: &Value, plan: &RolloutPlan) -> bool {
    let service = &plan.rollout.spec.service.name;
    destinations(vs).any(|destination| {
        destination["subset"].is_string()
            && destination["host"]
                .as_str()
                .is_some_and(|h| is_service_host(h, service, &plan.namespace))
    })
}

/// Every destination and mirror of `vs`'s HTTP, TCP and TLS routes.
fn destinations(vs: &Value) -> impl Iterator<Item = &Value> {
    ["http", "tcp", "tls"]
        .into_iter()
        .flat_map(move |kind| vs["spec"][kind].as_array().into_iter().flatten())
        .flat_map(|route| {
            let routed = route["route"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|entry| &entry["destination"]);
            let mirrors = route["mirrors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|mirror| &mirror["destination"]);
            routed
                .chain(std::iter::once(&route["mirror"]))
                .chain(mirrors)
        })
}

/// How far one step towards a route got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The route's objects are written; nothing is left for later passes.
    Done {
        /// Whether the step wrote.
        changed: bool,
    },
    /// A later pass has more to write (after what was written is in effect).
    Waiting {
        /// Whether the step wrote.
        changed: bool,
    },
}

impl Step {
    fn changed(self) -> bool {
        match self {
            Step::Done { changed } | Step::Waiting { changed } => changed,
        }
    }
}

/// The prefix of canary's own annotations.
const CANARY_PREFIX: &str = "canary.rs/";

/// The most steps [`TrafficProvider::reset`] takes in one call.
const RESET_STEPS: usize = 4;

/// What canary applies of `desired`: the whole object when canary generated it, else only the
/// fields it manages in the user's object (the others stay the user's).
fn payload(desired: &Value) -> Value {
    if generated(desired) {
        return desired.clone();
    }
    let mut spec = Map::new();
    for field in ["http", "tcp", "tls", "subsets"] {
        if let Some(value) = desired["spec"].get(field) {
            spec.insert(field.to_owned(), value.clone());
        }
    }
    let annotations: Map<String, Value> = desired
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.starts_with(CANARY_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let mut metadata = json!({
        "name": desired["metadata"]["name"],
        "namespace": desired["metadata"]["namespace"],
    });
    if !annotations.is_empty() {
        metadata["annotations"] = Value::Object(annotations);
    }
    json!({
        "apiVersion": desired["apiVersion"],
        "kind": desired["kind"],
        "metadata": metadata,
        "spec": spec,
    })
}

/// False while Istio reports (in the object's status) an older generation than the object's.
/// Istio writes `status.observedGeneration` as an integer or a string (the CRDs declare it
/// `x-kubernetes-int-or-string`); without status reporting (istiod's `PILOT_ENABLE_STATUS`)
/// there is none, and the object read back is all there is to go by.
fn reconciled(object: &Value) -> bool {
    let number = |value: &Value| {
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    };
    let generation = object.pointer("/metadata/generation").and_then(number);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(number);
    match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        _ => true,
    }
}

#[async_trait]
impl TrafficProvider for IstioTraffic {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self.apply_route(route).await?)
    }

    /// All traffic to stable, in as many steps as can be taken now: each step reads the
    /// objects back, so the canary host's objects go only once the VirtualService no longer
    /// names it. Deleting a Rollout relies on one call.
    async fn reset(&self) -> canary_core::Result<bool> {
        let mut changed = false;
        for _ in 0..RESET_STEPS {
            match self.step(&RouteState::stable()).await? {
                Step::Done { changed: wrote } => return Ok(changed || wrote),
                Step::Waiting { changed: wrote } => {
                    changed |= wrote;
                    if !wrote {
                        break;
                    }
                }
            }
        }
        Ok(changed)
    }

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let live = self.live().await?;
        let in_effect = self.in_effect(&live, applied)?;
        let verified = if in_effect {
            Verification::Yes
        } else {
            Verification::No
        };
        let Some(vs) = &live.virtual_service else {
            return Ok(TrafficObservation {
                route: None,
                verified,
                pending: None,
            });
        };
        if Self::idle(&live, applied) && in_effect {
            // The user's own routes, with no canary to send anything to.
            return Ok(TrafficObservation {
                route: Some(RouteState::stable()),
                verified,
                pending: None,
            });
        }
        let route = match virtual_service::applied_route(vs) {
            Some(recorded) if recorded == *applied && in_effect => Some(recorded),
            Some(recorded) if recorded != *applied && self.in_effect(&live, &recorded)? => {
                Some(recorded)
            }
            _ => virtual_service::observed_route(&self.plan, vs),
        };
        Ok(TrafficObservation {
            route,
            verified,
            pending: None,
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        Ok(self.finalize_routes().await?)
    }
}
