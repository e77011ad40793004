//! The provider: renders, then applies by server-side apply what differs from the cluster.
//!
//! Subsets move make-before-break, one write per pass: the DestinationRule with the subsets of
//! both the live and the new routes first, the VirtualService once that DestinationRule is in
//! effect (also on the first apply, when neither exists), and the subsets no route uses any
//! more removed after the VirtualService has moved.

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::RouteState;
use canary_core::machine::Verification;
use canary_core::objects::Objects;
use canary_core::providers::{TrafficObservation, TrafficProvider};
use canary_core::{Capabilities, RolloutPlan};
use canary_kube::apply::{delete_if_present, get_json, label_selector};
use canary_kube::traffic::ProviderFactory;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::hosts::is_service_host;
use crate::render::{Rendered, render};
use crate::subsets;
use crate::{FIELD_MANAGER, destination_rule, virtual_service};
use canary_core::objects::generated;

/// The routes of one Rollout, in a DestinationRule and a VirtualService.
pub struct IstioTraffic {
    plan: RolloutPlan,
    virtual_services: Api<DynamicObject>,
    destination_rules: Api<DynamicObject>,
    deployments: Api<Deployment>,
    replicasets: Api<ReplicaSet>,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("networking.istio.io", "v1", kind))
}

/// What the cluster holds: the objects rendering needs.
struct Live {
    objects: Objects,
    virtual_service: Option<Value>,
    destination_rule: Option<Value>,
    /// Whether the canary Deployment exists (its pods go before it: it is deleted in the
    /// foreground).
    canary_runs: bool,
}

impl IstioTraffic {
    /// A factory making one for each Rollout, talking through `client`.
    pub fn factory(client: Client) -> ProviderFactory {
        ProviderFactory::new(client, |client, plan| {
            Arc::new(IstioTraffic::new(client, plan))
        })
    }

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
            deployments: Api::namespaced(client.clone(), namespace),
            replicasets: Api::namespaced(client, namespace),
            plan,
        }
    }

    async fn live(&self) -> Result<Live> {
        let mut objects = Objects::default();
        let stable = get_json(&self.deployments, &self.plan.rollout.spec.workload_ref.name).await?;
        if let Some(stable) = stable {
            objects.insert(stable.clone());
            if subsets::needs_replicasets(&self.plan, &stable) {
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
        }
        let canary_runs = get_json(&self.deployments, &self.plan.canary_workload())
            .await?
            .is_some();
        let virtual_service =
            get_json(&self.virtual_services, &virtual_service::name(&self.plan)).await?;
        let destination_rule =
            get_json(&self.destination_rules, &destination_rule::name(&self.plan)).await?;
        objects.extend(
            virtual_service
                .iter()
                .chain(destination_rule.iter())
                .cloned(),
        );
        Ok(Live {
            objects,
            virtual_service,
            destination_rule,
            canary_runs,
        })
    }

    /// Whether `route` leaves the user's VirtualService to the user: all traffic on stable,
    /// no canary running, and the VirtualService theirs. Then canary's changes to it and to
    /// their DestinationRule are taken back, so that what Git holds is what runs and a GitOps
    /// tool finds nothing to correct between releases.
    fn idle(live: &Live, route: &RouteState) -> bool {
        route.is_stable_only()
            && !live.canary_runs
            && live
                .virtual_service
                .as_ref()
                .is_some_and(|vs| !generated(vs))
    }

    /// Whether the user's objects carry nothing of canary's (see [`Self::idle`]).
    fn released(live: &Live) -> bool {
        let untouched = |object: &Option<Value>| {
            object.as_ref().is_none_or(|object| {
                generated(object)
                    || object["metadata"]["annotations"]
                        .as_object()
                        .is_none_or(|annotations| {
                            !annotations.keys().any(|key| key.starts_with(CANARY_PREFIX))
                        })
            })
        };
        untouched(&live.virtual_service) && untouched(&live.destination_rule)
    }

    /// Takes canary's changes back from the user's VirtualService and DestinationRule (the
    /// routes first, then the subsets no restored route uses). Returns whether it wrote.
    async fn restore_user_objects(&self, live: &Live) -> Result<bool> {
        let subsets = subsets::resolve(&self.plan, &live.objects).ok();
        let mut changed = false;
        if let (Some(vs), Some(subsets)) = (&live.virtual_service, &subsets)
            && let Some(restored) = virtual_service::restore(&self.plan, subsets, vs)
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
        if let Some(dr) = &live.destination_rule {
            let keep: Vec<&subsets::Subset> = subsets.iter().map(|s| &s.stable).collect();
            if let Some(restored) = destination_rule::restore(dr, &keep) {
                changed |= self
                    .write(
                        &self.destination_rules,
                        Some(dr),
                        &restored,
                        destination_rule::managed_view,
                    )
                    .await?;
            }
        }
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
            .await?;
        Ok(true)
    }

    /// One step towards `route`, make-before-break: the DestinationRule with every subset the
    /// live and the new routes use, then (once it is stored and Istio reports it reconciled)
    /// the VirtualService, then (on a later pass, once the routes have moved) the
    /// DestinationRule without the subsets no route uses any more. A step that writes the
    /// DestinationRule stops there: the VirtualService is written by a later one, after the
    /// DestinationRule is read back in effect, so no route ever names a subset Envoy does not
    /// know yet (istio pilot/pkg/networking/core/route/route.go:
    /// `applyHTTPRouteDestination` leaves Envoy's `cluster_not_found_response_code` at its
    /// default for VirtualServices, so requests to an undefined subset get 503s).
    async fn step(&self, route: &RouteState) -> Result<Step> {
        let live = self.live().await?;
        if Self::idle(&live, route) {
            let changed = self.restore_user_objects(&live).await?;
            return Ok(Step::Done { changed });
        }
        let rendered = render(&self.plan, route, &live.objects)?;
        let existing = live.destination_rule.as_ref();
        let in_use = self.subsets_in_use(&live, &rendered);
        let bridge = destination_rule::desired(&self.plan, &rendered.subsets, &in_use, existing);
        if self
            .write(
                &self.destination_rules,
                existing,
                &bridge,
                destination_rule::managed_view,
            )
            .await?
        {
            return Ok(Step::Waiting { changed: true });
        }
        if !existing.is_some_and(reconciled) {
            return Ok(Step::Waiting { changed: false });
        }
        if self
            .write(
                &self.virtual_services,
                live.virtual_service.as_ref(),
                &rendered.virtual_service,
                virtual_service::managed_view,
            )
            .await?
        {
            return Ok(if in_use.is_empty() {
                Step::Done { changed: true }
            } else {
                Step::Waiting { changed: true }
            });
        }
        Ok(Step::Done { changed: false })
    }

    /// Applies `route` as far as one pass may (see [`Self::step`]). Returns whether it wrote.
    async fn apply_route(&self, route: &RouteState) -> Result<bool> {
        Ok(self.step(route).await?.changed())
    }

    /// The subsets the live VirtualService routes the service to that the rendered
    /// DestinationRule no longer defines, as the live DestinationRule defines them.
    fn subsets_in_use(&self, live: &Live, rendered: &Rendered) -> Vec<Value> {
        let (Some(vs), Some(dr)) = (&live.virtual_service, &live.destination_rule) else {
            return Vec::new();
        };
        let service = &self.plan.rollout.spec.service.name;
        let mut names = Vec::new();
        for kind in ["http", "tcp", "tls"] {
            for route in vs["spec"][kind].as_array().into_iter().flatten() {
                let destinations = route["route"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|entry| &entry["destination"])
                    .chain(std::iter::once(&route["mirror"]));
                for destination in destinations {
                    let ours = destination["host"]
                        .as_str()
                        .is_some_and(|h| is_service_host(h, service, &self.plan.namespace));
                    if let (true, Some(subset)) = (ours, destination["subset"].as_str()) {
                        names.push(subset.to_owned());
                    }
                }
            }
        }
        let wanted = destination_rule::defined(&rendered.destination_rule);
        destination_rule::defined(dr)
            .into_iter()
            .filter(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|n| names.iter().any(|u| u == n))
            })
            .filter(|s| !wanted.iter().any(|w| w["name"] == s["name"]))
            .collect()
    }

    /// Whether the live objects are what `route` renders to, and Istio has taken them in.
    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<bool> {
        if Self::idle(live, route) {
            return Ok(Self::released(live));
        }
        let (Some(vs), Some(dr)) = (&live.virtual_service, &live.destination_rule) else {
            return Ok(false);
        };
        let rendered = render(&self.plan, route, &live.objects)?;
        Ok(virtual_service::managed_view(vs)
            == virtual_service::managed_view(&rendered.virtual_service)
            && destination_rule::managed_view(dr)
                == destination_rule::managed_view(&rendered.destination_rule)
            && reconciled(vs)
            && reconciled(dr))
    }

    async fn finalize_routes(&self) -> Result<()> {
        let live = self.live().await?;
        // The routes before the subsets they name.
        if let Some(vs) = live.virtual_service.as_ref().filter(|vs| generated(vs)) {
            delete_if_present(&self.virtual_services, Some(vs)).await?;
        }
        self.restore_user_objects(&live).await?;
        if let Some(dr) = live.destination_rule.as_ref().filter(|dr| generated(dr)) {
            delete_if_present(&self.destination_rules, Some(dr)).await?;
        }
        Ok(())
    }
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
        .filter(|(key, _)| key.starts_with("canary.rs/"))
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
    fn capabilities(&self) -> Capabilities {
        crate::capabilities()
    }

    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self.apply_route(route).await?)
    }

    /// All traffic to stable, in as many steps as can be taken now: each step reads the
    /// objects back, so the VirtualService moves only once the DestinationRule is stored and
    /// (when Istio reports status) reconciled. Deleting a Rollout relies on one call.
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
            });
        };
        if Self::idle(&live, applied) && in_effect {
            // The user's own routes, with no canary to send anything to.
            return Ok(TrafficObservation {
                route: Some(RouteState::stable()),
                verified,
            });
        }
        let route = match virtual_service::applied_route(vs) {
            Some(recorded) if recorded == *applied && in_effect => Some(recorded),
            Some(recorded) if recorded != *applied && self.in_effect(&live, &recorded)? => {
                Some(recorded)
            }
            _ => {
                let subsets = subsets::resolve(&self.plan, &live.objects)?;
                virtual_service::observed_route(&self.plan, &subsets, vs)
            }
        };
        Ok(TrafficObservation { route, verified })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        Ok(self.finalize_routes().await?)
    }
}
