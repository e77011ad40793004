//! The provider: renders, then applies by server-side apply what differs from the cluster, and
//! counts a route in effect once the Gateway API implementation says it took it.
//!
//! - **Order.** The canary Service is written before a route names it; once a route sends
//!   nothing to the canary again, the Service is deleted only after the implementation has
//!   taken that route (its status is current), so no request is sent to a backend that is
//!   gone.
//! - **A user's route.** Only `spec.rules` (an atomic list: server-side apply owns it whole)
//!   and canary's own annotations are written; every other field stays the user's. Untouched
//!   until a release sends traffic to the canary, and given back as it was when the route keeps
//!   everything on stable again, or the Rollout is deleted.
//! - **In effect** when the objects are as rendered and every parent in the route's
//!   `status.parents` reports `Accepted=True` and `ResolvedRefs=True` for the route's current
//!   generation (`observedGeneration`), each of its `parentRefs` with a report. The Gateway API
//!   asks implementations to write these conditions (`RouteConditionType` of the v1.6.1 API:
//!   a rejected parent or a backend that cannot be resolved shows there; an unresolved
//!   backend's share of requests gets 500s).

use std::sync::Arc;

use async_trait::async_trait;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{TrafficObservation, TrafficProvider};
use canary_core::k8s::objects::{MANAGED_BY, Objects, ROLLOUT_LABEL, includes};
use canary_core::k8s::services::canary_service_name;
use canary_core::traffic::TrafficError;
use canary_core::traffic::gateway::RouteRef;
use canary_core::{RolloutPlan, RouteState};
use canary_kube::apply::{apply, delete_if_present, get_json};
use canary_kube::error::ApiResult;
use canary_kube::services::{LiveServices, ServiceSplit};
use canary_kube::traffic::ClusterBackend;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Map, Value, json};

use crate::FIELD_MANAGER;
use crate::render::{
    API_VERSION, Rendered, USER_ROUTE_ANNOTATIONS, applied_route, changed_by, names_service,
    render, route_ref,
};

type Result<T, E = TrafficError> = std::result::Result<T, E>;

/// The route and Services of one Rollout.
pub struct GatewayTraffic {
    plan: RolloutPlan,
    routes: Api<DynamicObject>,
    services: ServiceSplit,
}

/// What the cluster holds.
struct Live {
    objects: Objects,
    services: LiveServices,
    route: Option<Value>,
}

impl ClusterBackend for crate::Gateway {
    fn traffic(&self, client: Client, plan: RolloutPlan) -> Arc<dyn TrafficProvider> {
        Arc::new(GatewayTraffic::new(client, plan))
    }
}

impl GatewayTraffic {
    /// The route of `plan`, in its namespace.
    pub fn new(client: Client, plan: RolloutPlan) -> Self {
        let kind = route_ref(&plan).map_or("HTTPRoute", |target| target.kind.name());
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "gateway.networking.k8s.io",
            "v1",
            kind,
        ));
        GatewayTraffic {
            routes: Api::namespaced_with(client.clone(), &plan.namespace, &resource),
            services: ServiceSplit::new(client, plan.clone(), FIELD_MANAGER),
            plan,
        }
    }

    fn target(&self) -> Result<RouteRef> {
        route_ref(&self.plan).map_err(TrafficError::Input)
    }

    async fn live(&self) -> Result<Live> {
        let mut objects = Objects::default();
        let services = self.services.fetch(&mut objects).await.api()?;
        let route = get_json(&self.routes, &self.target()?.name).await.api()?;
        objects.extend(route.iter().cloned());
        Ok(Live {
            objects,
            services,
            route,
        })
    }

    fn rendered(&self, live: &Live, route: &RouteState) -> Result<Rendered> {
        render(&self.plan, route, &live.objects)
    }

    /// Writes the route when it differs from `live` where canary writes it. Returns whether
    /// it wrote.
    async fn write_route(&self, live: Option<&Value>, desired: &Value) -> Result<bool> {
        let generated = self.target()?.generated;
        if live.is_some_and(|live| holds(live, desired, generated)) {
            return Ok(false);
        }
        if generated && let Some(live) = live.filter(|live| !owned(&self.plan, live)) {
            return Err(TrafficError::Conflict(format!(
                "{} {}/{} is not one canary generated for Rollout {}: name the route in \
                 gatewayAPI.{} to have it edited, or remove it",
                live["kind"].as_str().unwrap_or("route"),
                self.plan.namespace,
                live["metadata"]["name"].as_str().unwrap_or_default(),
                self.plan.name,
                if live["kind"] == "GRPCRoute" {
                    "grpcRoute"
                } else {
                    "httpRoute"
                }
            )));
        }
        let payload = if generated {
            desired.clone()
        } else {
            // The rules are written as read: a change made since (by a person or a GitOps
            // tool) makes the write fail with a conflict, and the next pass starts from it.
            let mut payload = user_payload(desired);
            if let Some(version) = live.and_then(|live| live.pointer("/metadata/resourceVersion")) {
                payload["metadata"]["resourceVersion"] = version.clone();
            }
            payload
        };
        apply(&self.routes, &payload, FIELD_MANAGER).await.api()?;
        Ok(true)
    }

    /// One step towards `route` (see the module). Returns whether it wrote.
    async fn apply_route(&self, route: &RouteState) -> Result<bool> {
        let live = self.live().await?;
        let rendered = self.rendered(&live, route)?;
        let mut changed = false;
        if let Some(service) = &rendered.canary_service {
            changed |= self
                .services
                .write_canary(&live.services, Some(service))
                .await
                .api()?;
        }
        changed |= self
            .write_route(live.route.as_ref(), &rendered.route)
            .await?;
        if rendered.canary_service.is_none() && live.services.canary.is_some() && !changed {
            // The route without the canary must be taken before its Service goes.
            let taken = live
                .route
                .as_ref()
                .is_some_and(|route| parents_verdict(route).is_ok());
            let names_canary = live
                .route
                .as_ref()
                .is_some_and(|route| route_names_canary(&self.plan, route));
            if taken && !names_canary {
                changed |= self
                    .services
                    .write_canary(&live.services, None)
                    .await
                    .api()?;
            }
        }
        Ok(changed)
    }

    /// Whether the objects are what `route` renders to and the implementation took them; why
    /// not when they are not.
    fn in_effect(&self, live: &Live, route: &RouteState) -> Result<Result<(), String>> {
        let rendered = self.rendered(live, route)?;
        let generated = self.target()?.generated;
        let service = match (&live.services.canary, &rendered.canary_service) {
            (Some(live), Some(desired)) => {
                live["spec"]["selector"] == desired["spec"]["selector"] && includes(live, desired)
            }
            (None, None) => true,
            _ => false,
        };
        if !service {
            return Ok(Err("the canary Service is not as rendered yet".to_owned()));
        }
        let Some(object) = &live.route else {
            return Ok(Err("the route does not exist yet".to_owned()));
        };
        if !holds(object, &rendered.route, generated) {
            return Ok(Err("the route is not as rendered yet".to_owned()));
        }
        Ok(parents_verdict(object))
    }
}

#[async_trait]
impl TrafficProvider for GatewayTraffic {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        Ok(self.apply_route(route).await?)
    }

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let live = self.live().await?;
        let in_effect = self.in_effect(&live, applied)?;
        let verified = if in_effect.is_ok() {
            Verification::Yes
        } else {
            Verification::No
        };
        let in_effect = in_effect.map_err(|why| {
            format!(
                "{} {}: {why}",
                self.target().map_or("route", |target| target.kind.name()),
                self.target().map(|target| target.name).unwrap_or_default()
            )
        });
        let generated = self.target()?.generated;
        let route = match &live.route {
            None if generated => Some(RouteState::stable()),
            None => None,
            Some(object) => match applied_route(&self.plan, object) {
                Some(recorded) if recorded == *applied && in_effect.is_ok() => Some(recorded),
                Some(recorded)
                    if render(&self.plan, &recorded, &live.objects)
                        .is_ok_and(|rendered| holds(object, &rendered.route, generated)) =>
                {
                    Some(recorded)
                }
                None if !generated && !changed_by(&self.plan, object) => Some(RouteState::stable()),
                _ => observed_route(&self.plan, object),
            },
        };
        Ok(TrafficObservation {
            route,
            verified,
            pending: in_effect.err(),
        })
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        let live = self.live().await?;
        let target = self.target()?;
        if let Some(route) = &live.route {
            if target.generated {
                if owned(&self.plan, route) {
                    delete_if_present(&self.routes, Some(route)).await.api()?;
                }
            } else if changed_by(&self.plan, route) {
                let rendered = self.rendered(&live, &RouteState::stable())?;
                self.write_route(Some(route), &rendered.route).await?;
            }
        }
        self.services
            .write_canary(&live.services, None)
            .await
            .api()?;
        Ok(())
    }
}

/// Whether canary generated `route` for `plan`'s Rollout (its labels say so).
fn owned(plan: &RolloutPlan, route: &Value) -> bool {
    let labels = &route["metadata"]["labels"];
    labels[MANAGED_BY.0] == MANAGED_BY.1 && labels[ROLLOUT_LABEL] == json!(plan.name)
}

/// Whether `live` holds `desired` where canary writes it: the whole route it generated; of a
/// user's route, the rules and canary's annotations (present or absent as desired).
fn holds(live: &Value, desired: &Value, generated: bool) -> bool {
    if generated {
        return includes(live, desired);
    }
    let ours = |object: &Value| -> Vec<Option<Value>> {
        USER_ROUTE_ANNOTATIONS
            .iter()
            .map(|key| object.pointer("/metadata/annotations")?.get(*key).cloned())
            .collect()
    };
    ours(live) == ours(desired) && includes(&live["spec"]["rules"], &desired["spec"]["rules"])
}

/// What canary writes of a user's route: its rules and canary's annotations (server-side
/// apply leaves every other field to its owner, and removes canary's annotations when they
/// are left out).
fn user_payload(desired: &Value) -> Value {
    let annotations: Map<String, Value> = desired
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| USER_ROUTE_ANNOTATIONS.contains(&key.as_str()))
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
        "apiVersion": API_VERSION,
        "kind": desired["kind"],
        "metadata": metadata,
        "spec": {"rules": desired["spec"]["rules"]},
    })
}

/// Whether a rule of `route` sends or mirrors requests to the canary Service.
fn route_names_canary(plan: &RolloutPlan, route: &Value) -> bool {
    let canary = json!(canary_service_name(plan));
    route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|rule| {
            let backends = rule["backendRefs"].as_array().into_iter().flatten();
            let mirrors = rule["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|filter| filter.pointer("/requestMirror/backendRef"));
            backends
                .chain(mirrors)
                .any(|backend| backend["name"] == canary)
        })
}

/// Whether every parent of `route` took its current generation: each `parentRefs` entry has
/// a report in `status.parents`, and every report says `Accepted=True` and `ResolvedRefs=True`
/// observed at the route's generation; otherwise which parent says what.
pub fn parents_verdict(route: &Value) -> Result<(), String> {
    let generation = route
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let namespace = route
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reports: Vec<&Value> = route
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let parents: Vec<&Value> = route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    for parent in &parents {
        let reported = reports
            .iter()
            .any(|report| same_parent(&report["parentRef"], parent, namespace));
        if !reported {
            return Err(format!(
                "parent {} has not reported on the route yet",
                describe_parent(parent, namespace)
            ));
        }
    }
    // Reports of parents the route no longer names are stale, not the route's to wait for.
    let named = |report: &&&Value| {
        parents
            .iter()
            .any(|parent| same_parent(&report["parentRef"], parent, namespace))
    };
    for report in reports.iter().filter(named) {
        let who = describe_parent(&report["parentRef"], namespace);
        for kind in ["Accepted", "ResolvedRefs"] {
            let condition = report["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|condition| condition["type"] == kind);
            let Some(condition) = condition else {
                return Err(format!("parent {who} reports no {kind} condition yet"));
            };
            let observed = condition["observedGeneration"].as_i64().unwrap_or(0);
            if observed < generation {
                return Err(format!(
                    "parent {who} has not seen generation {generation} yet (its {kind} \
                     condition is of generation {observed})"
                ));
            }
            if condition["status"] != "True" {
                return Err(format!(
                    "parent {who}: {kind}={} ({}): {}",
                    condition["status"].as_str().unwrap_or("Unknown"),
                    condition["reason"].as_str().unwrap_or_default(),
                    condition["message"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    Ok(())
}

/// Whether two parent references name the same parent (`namespace` is the route's).
fn same_parent(a: &Value, b: &Value, namespace: &str) -> bool {
    let field = |reference: &Value, key: &str, default: &str| {
        reference[key].as_str().unwrap_or(default).to_owned()
    };
    ["group", "kind", "namespace", "name", "sectionName"]
        .iter()
        .all(|key| {
            let default = match *key {
                "group" => "gateway.networking.k8s.io",
                "kind" => "Gateway",
                "namespace" => namespace,
                _ => "",
            };
            field(a, key, default) == field(b, key, default)
        })
        && a["port"] == b["port"]
}

fn describe_parent(parent: &Value, namespace: &str) -> String {
    let mut out = format!(
        "{}/{}",
        parent["namespace"].as_str().unwrap_or(namespace),
        parent["name"].as_str().unwrap_or_default()
    );
    if let Some(section) = parent["sectionName"].as_str() {
        out.push('/');
        out.push_str(section);
    }
    out
}

/// The route `route` really sends, read from its first managed rule: the canary's share of
/// the weights (matches and mirrors are not read back). `None` when it has no managed rule.
fn observed_route(plan: &RolloutPlan, route: &Value) -> Option<RouteState> {
    let canary = json!(canary_service_name(plan));
    let rule = route
        .pointer("/spec/rules")?
        .as_array()?
        .iter()
        .find(|rule| names_service(plan, rule))?;
    let (mut to_canary, mut total) = (0u128, 0u128);
    for backend in rule["backendRefs"].as_array()? {
        let weight = u128::from(backend["weight"].as_u64().unwrap_or(1));
        total += weight;
        if backend["name"] == canary {
            to_canary += weight;
        }
    }
    if total == 0 {
        return None;
    }
    let percent = (to_canary * 100 + total / 2) / total;
    Some(RouteState::weighted(u32::try_from(percent).unwrap_or(100)))
}
