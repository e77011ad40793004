//! The VirtualService: one canary generates and owns, or the user's, where only the managed
//! routes change and everything else stays as written.
//!
//! A route sends the canary's share to the canary host `<service>-canary` (the canary Service,
//! which selects the canary's pods only) and the rest to the stable destination exactly as the
//! route names it (the service host, with the user's subset if it names one). The canary's
//! pods are not endpoints of the service host (their own value of one key of its selector,
//! see `canary_core::k8s::services`), so a route canary did not write — Git's, put back by a
//! GitOps tool mid-release — sends them nothing.
//!
//! In a user's VirtualService canary manages the HTTP routes named in
//! `spec.trafficRouting.istio.virtualService.routes` (or its only HTTP route) and every TCP and
//! TLS route that forwards to the service. A managed HTTP route gets the weights and the
//! mirror; a copy of it (named `<route>-canary-match`) placed just before it sends the matching
//! requests to the canary. The managed routes as they were are kept in the annotation
//! `canary.rs/original` and put back by [`restore`].

use std::collections::BTreeSet;

use canary_core::api::spec::VirtualServiceRef;
use canary_core::k8s::services::canary_service_name;
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Map, Value, json};

use crate::API_VERSION;
use crate::error::{Error, Result};
use crate::hosts::{canary_host, is_service_host};
use crate::matches;
use canary_core::k8s::objects::{
    Shape, check_fields, check_object, clean, generated, generated_metadata,
};

/// Annotation on a VirtualService: the route canary applied, as JSON.
pub const ROUTE_ANNOTATION: &str = "canary.rs/route";
/// Annotation on a user's VirtualService: the routes canary changed, as they were.
pub const ORIGINAL_ANNOTATION: &str = "canary.rs/original";
/// The name of the weighted HTTP route of a generated VirtualService.
pub const PRIMARY_ROUTE: &str = "primary";

/// What the routes are built for.
struct Target<'a> {
    service: &'a str,
    canary: String,
    namespace: &'a str,
}

impl Target<'_> {
    /// The stable destination: `template` (the user's destination) as it is.
    fn stable(&self, template: &Value) -> Value {
        template.clone()
    }

    /// The canary destination: `template` with the canary host (spelt as the template spells
    /// the service) and no subset, its port and other fields kept.
    fn canary(&self, template: &Value) -> Value {
        let mut out = template.as_object().cloned().unwrap_or_default();
        let host = out
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or(self.service)
            .to_owned();
        out.insert(
            "host".to_owned(),
            json!(canary_host(
                &host,
                self.service,
                self.namespace,
                &self.canary
            )),
        );
        out.remove("subset");
        Value::Object(out)
    }

    /// True when `destination` is the service host.
    fn is_ours(&self, destination: &Value) -> bool {
        destination["host"]
            .as_str()
            .is_some_and(|host| is_service_host(host, self.service, self.namespace))
    }

    /// True when `destination` is the canary host.
    fn is_canary(&self, destination: &Value) -> bool {
        destination["host"]
            .as_str()
            .is_some_and(|host| is_service_host(host, &self.canary, self.namespace))
    }

    /// True when every destination of `route` is the service (or the canary host).
    fn forwards_here(&self, route: &Value) -> bool {
        route["route"].as_array().is_some_and(|list| {
            !list.is_empty()
                && list
                    .iter()
                    .all(|d| self.is_ours(&d["destination"]) || self.is_canary(&d["destination"]))
                && list.iter().any(|d| self.is_ours(&d["destination"]))
        })
    }
}

/// `base` (a route) sending `route`'s weight to the canary host and the rest to its stable
/// destination; for HTTP routes also the mirror. With no weight for the canary, `base`'s
/// destinations stay as they are.
fn weighted(base: &Value, target: &Target, route: &RouteState, http: bool) -> Value {
    let mut out = base.clone();
    let list: Vec<&Value> = base["route"].as_array().into_iter().flatten().collect();
    let template = list
        .iter()
        .find(|entry| target.is_ours(&entry["destination"]))
        .or_else(|| list.first())
        .map(|entry| (*entry).clone())
        .unwrap_or_else(|| json!({}));
    let template_destination = template["destination"].clone();
    let entry = |destination: Value, weight: u32| {
        let mut entry = template.as_object().cloned().unwrap_or_default();
        entry.insert("destination".to_owned(), destination);
        entry.insert("weight".to_owned(), json!(weight));
        Value::Object(entry)
    };
    let canary = route.whole_percent();
    if canary > 0 {
        out["route"] = json!([
            entry(target.stable(&template_destination), 100 - canary),
            entry(target.canary(&template_destination), canary)
        ]);
    } else {
        // Canary destinations a route may still carry (written before) go; the user's stay.
        let kept: Vec<Value> = list
            .iter()
            .filter(|entry| !target.is_canary(&entry["destination"]))
            .map(|entry| (*entry).clone())
            .collect();
        if kept.len() != list.len() {
            out["route"] = match kept.as_slice() {
                [only] => {
                    let mut only = only.clone();
                    if let Some(map) = only.as_object_mut() {
                        map.remove("weight");
                    }
                    json!([only])
                }
                _ => Value::Array(kept),
            };
        }
    }
    if http && let Some(map) = out.as_object_mut() {
        match route.mirror {
            Some(share) => {
                map.insert("mirror".to_owned(), target.canary(&template_destination));
                map.insert(
                    "mirrorPercentage".to_owned(),
                    json!({"value": f64::from(share)}),
                );
            }
            None => {
                if map.get("mirror").is_some_and(|m| target.is_canary(m)) {
                    map.remove("mirror");
                    map.remove("mirrorPercentage");
                }
            }
        }
    }
    out
}

/// The route placed before `base`: the same route, limited to `route`'s matches and sending
/// them all to the canary.
fn match_route(base: &Value, name: &str, target: &Target, route: &RouteState) -> Result<Value> {
    let mut out = base.as_object().cloned().unwrap_or_default();
    let template = base["route"]
        .as_array()
        .and_then(|list| list.first())
        .map(|first| first["destination"].clone())
        .unwrap_or_else(|| json!({}));
    let within = matches::within(base.get("match"), &route.matches, name)?;
    out.insert("name".to_owned(), json!(name));
    out.insert("match".to_owned(), Value::Array(within));
    out.insert(
        "route".to_owned(),
        json!([{"destination": target.canary(&template)}]),
    );
    for field in ["mirror", "mirrorPercentage", "mirrors"] {
        out.remove(field);
    }
    Ok(Value::Object(out))
}

/// The name of the match route placed before the managed route `key` (`""` for the only one).
fn match_route_name(key: &str) -> String {
    if key.is_empty() {
        "canary-match".to_owned()
    } else {
        format!("{key}-canary-match")
    }
}

/// The VirtualService's name.
pub fn name(plan: &RolloutPlan) -> String {
    istio_ref(plan)
        .map(|vs| vs.name.clone())
        .unwrap_or_else(|| plan.rollout.spec.service.name.clone())
}

fn istio_ref(plan: &RolloutPlan) -> Option<&VirtualServiceRef> {
    plan.rollout
        .spec
        .traffic_routing
        .istio
        .as_ref()
        .and_then(|istio| istio.virtual_service.as_ref())
}

fn target(plan: &RolloutPlan) -> Target<'_> {
    Target {
        service: &plan.rollout.spec.service.name,
        canary: canary_service_name(plan),
        namespace: &plan.namespace,
    }
}

/// The VirtualService for `route`: generated when `existing` is absent or canary's own, else the
/// user's with the managed routes changed.
pub fn desired(plan: &RolloutPlan, route: &RouteState, existing: Option<&Value>) -> Result<Value> {
    let target = target(plan);
    match existing {
        Some(vs) if !generated(vs) => {
            check_shape(vs)?;
            merged(plan, route, &target, vs)
        }
        _ => generate(plan, route, &target),
    }
}

fn generate(plan: &RolloutPlan, route: &RouteState, target: &Target) -> Result<Value> {
    let istio = plan
        .rollout
        .spec
        .traffic_routing
        .istio
        .clone()
        .unwrap_or_default();
    let primary = json!({
        "name": PRIMARY_ROUTE,
        "route": [{"destination": {
            "host": plan.rollout.spec.service.name,
            "port": {"number": plan.rollout.spec.service.port},
        }}],
    });
    let mut http = Vec::new();
    if !route.matches.is_empty() {
        http.push(match_route(
            &primary,
            &match_route_name(PRIMARY_ROUTE),
            target,
            route,
        )?);
    }
    http.push(weighted(&primary, target, route, true));
    let hosts = if istio.hosts.is_empty() {
        vec![plan.rollout.spec.service.name.clone()]
    } else {
        istio.hosts.clone()
    };
    let mut spec = json!({"hosts": hosts, "http": http});
    if !istio.gateways.is_empty() {
        spec["gateways"] = json!(istio.gateways);
    }
    let mut metadata = generated_metadata(plan, &name(plan));
    metadata["annotations"] = json!({ROUTE_ANNOTATION: route_json(route)});
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": metadata,
        "spec": spec,
    }))
}

fn route_json(route: &RouteState) -> String {
    serde_json::to_string(route).unwrap_or_default()
}

/// The managed HTTP routes of a user's VirtualService: keys (route names, or `""` for the only
/// route) in the order given.
fn managed_keys(plan: &RolloutPlan, vs: &Value, base: &[&Value]) -> Result<Vec<String>> {
    let configured = istio_ref(plan)
        .map(|r| r.routes.clone())
        .unwrap_or_default();
    let names: Vec<&str> = base.iter().filter_map(|r| r["name"].as_str()).collect();
    let place = describe(vs);
    if configured.is_empty() {
        return match base.len() {
            0 | 1 => Ok(base.iter().map(|_| String::new()).collect()),
            count => Err(Error::Input(format!(
                "VirtualService {place} has {count} HTTP routes ({}); name the ones canary \
                 manages in spec.trafficRouting.istio.virtualService.routes",
                names.join(", ")
            ))),
        };
    }
    for wanted in &configured {
        if !names.contains(&wanted.as_str()) {
            return Err(Error::Input(format!(
                "VirtualService {place} has no HTTP route named `{wanted}` (it has: {})",
                if names.is_empty() {
                    "no named routes".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        }
    }
    Ok(configured)
}

/// The fields of a user's VirtualService canary reads and writes: each route list a list of
/// mappings (the Istio CRD's schema leaves `spec` open, so the API server may hold anything).
const FIELDS: [(&str, Shape); 3] = [
    ("/spec/http", Shape::ListOfMappings),
    ("/spec/tcp", Shape::ListOfMappings),
    ("/spec/tls", Shape::ListOfMappings),
];

/// Refuses a VirtualService whose fields are not of the shape canary reads and writes.
fn check_shape(vs: &Value) -> Result<()> {
    check_object(vs)
        .and_then(|()| check_fields(vs, &FIELDS))
        .map_err(Error::Input)
}

fn describe(object: &Value) -> String {
    format!(
        "{}/{}",
        object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("-"),
        object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("-")
    )
}

/// The key of `route` among the managed `keys`, if managed.
fn key_of<'k>(route: &Value, keys: &'k [String]) -> Option<&'k String> {
    keys.iter()
        .find(|key| key.is_empty() || route["name"].as_str() == Some(key.as_str()))
}

/// What canary recorded of a user's object before changing it.
pub fn original(object: &Value) -> Option<Map<String, Value>> {
    let text = object
        .pointer("/metadata/annotations")?
        .get(ORIGINAL_ANNOTATION)?
        .as_str()?;
    serde_json::from_str::<Value>(text)
        .ok()?
        .as_object()
        .cloned()
}

/// The user's VirtualService `vs` routing as `route` says: its managed HTTP routes (and TCP or
/// TLS routes to the service) weighted, canary's match routes placed before them, what they
/// were recorded for the restore.
fn merged(plan: &RolloutPlan, route: &RouteState, target: &Target, vs: &Value) -> Result<Value> {
    let recorded = original(vs);
    let http: Vec<Value> = vs["spec"]["http"].as_array().cloned().unwrap_or_default();
    let base = user_http_routes(plan, vs, &http, recorded.is_some())?;
    let keys = managed_keys(plan, vs, &base)?;
    let mut record = recorded.unwrap_or_default();
    let mut spec = Map::new();
    let new_http = merged_http(route, target, vs, (&base, &keys), &mut record)?;
    if vs["spec"].get("http").is_some() {
        spec.insert("http".to_owned(), Value::Array(new_http));
    }
    let any_stream = merged_streams(route, target, vs, &mut record, &mut spec);
    check_manageable(route, target, vs, keys.is_empty(), any_stream)?;
    Ok(annotated(vs, spec, route, record))
}

/// The user's HTTP routes among `http`: all but the match routes canary placed, recognised by
/// name. A route named like them in a VirtualService canary never changed is a conflict.
fn user_http_routes<'v>(
    plan: &RolloutPlan,
    vs: &Value,
    http: &'v [Value],
    recorded: bool,
) -> Result<Vec<&'v Value>> {
    let configured = istio_ref(plan)
        .map(|r| r.routes.clone())
        .unwrap_or_default();
    let placed: BTreeSet<String> = if configured.is_empty() {
        [match_route_name("")].into()
    } else {
        configured.iter().map(|key| match_route_name(key)).collect()
    };
    let base: Vec<&Value> = http
        .iter()
        .filter(|r| !r["name"].as_str().is_some_and(|n| placed.contains(n)))
        .collect();
    if !recorded && base.len() != http.len() {
        return Err(Error::Conflict(format!(
            "VirtualService {} already has a route named like canary's match routes ({}); \
             rename it",
            describe(vs),
            placed.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(base)
}

/// The HTTP routes of `base` with the managed ones (by `keys`) weighted as `route` says, each
/// after its match route when `route` matches; the originals of the managed ones kept in
/// `record`.
fn merged_http(
    route: &RouteState,
    target: &Target,
    vs: &Value,
    (base, keys): (&[&Value], &[String]),
    record: &mut Map<String, Value>,
) -> Result<Vec<Value>> {
    let mut new_http = Vec::with_capacity(base.len() + 1);
    for user_route in base {
        let Some(key) = key_of(user_route, keys) else {
            new_http.push((*user_route).clone());
            continue;
        };
        let original = record
            .get("http")
            .and_then(|held| held.get(key.as_str()))
            .cloned()
            .unwrap_or_else(|| (*user_route).clone());
        if !target.forwards_here(&original) {
            return Err(Error::Input(format!(
                "HTTP route `{}` of VirtualService {} does not forward only to the service {}; \
                 canary can only weight routes to it",
                if key.is_empty() {
                    "(the only one)"
                } else {
                    key
                },
                describe(vs),
                target.service
            )));
        }
        if !route.matches.is_empty() {
            new_http.push(match_route(
                &original,
                &match_route_name(key),
                target,
                route,
            )?);
        }
        new_http.push(weighted(&original, target, route, true));
        let held = record.entry("http").or_insert_with(|| json!({}));
        if let Some(held) = held.as_object_mut() {
            held.entry(key.clone()).or_insert(original);
        }
    }
    Ok(new_http)
}

/// The TCP and TLS routes of `vs` into `spec`, those to the service weighted as `route` says
/// and their originals kept in `record`. Whether any was.
fn merged_streams(
    route: &RouteState,
    target: &Target,
    vs: &Value,
    record: &mut Map<String, Value>,
    spec: &mut Map<String, Value>,
) -> bool {
    let mut any_stream = false;
    for kind in ["tcp", "tls"] {
        let Some(list) = vs["spec"][kind].as_array() else {
            continue;
        };
        let mut out = Vec::with_capacity(list.len());
        for (index, user_route) in list.iter().enumerate() {
            let original = record
                .get(kind)
                .and_then(|held| held.get(index.to_string()))
                .cloned()
                .unwrap_or_else(|| user_route.clone());
            if target.forwards_here(&original) {
                any_stream = true;
                out.push(weighted(&original, target, route, false));
                let held = record.entry(kind).or_insert_with(|| json!({}));
                if let Some(held) = held.as_object_mut() {
                    held.entry(index.to_string()).or_insert(original);
                }
            } else {
                out.push(user_route.clone());
            }
        }
        spec.insert(kind.to_owned(), Value::Array(out));
    }
    any_stream
}

/// An error when `vs` has nothing canary can manage for `route`: no managed HTTP route and no
/// stream route to the service, or matches or a mirror without an HTTP route.
fn check_manageable(
    route: &RouteState,
    target: &Target,
    vs: &Value,
    no_http: bool,
    any_stream: bool,
) -> Result<()> {
    if no_http && !any_stream {
        return Err(Error::Input(format!(
            "VirtualService {} has no route canary could manage: no HTTP route, and no TCP or \
             TLS route to the service {}",
            describe(vs),
            target.service
        )));
    }
    if no_http && (!route.matches.is_empty() || route.mirror.is_some()) {
        return Err(Error::Input(format!(
            "matches and mirroring need an HTTP route, and VirtualService {} has none",
            describe(vs)
        )));
    }
    Ok(())
}

/// `vs` with the routes of `spec`, and canary's annotations: the route it applied and the
/// `record` of the user's routes.
fn annotated(
    vs: &Value,
    spec: Map<String, Value>,
    route: &RouteState,
    record: Map<String, Value>,
) -> Value {
    let mut out = clean(vs);
    for (kind, list) in spec {
        out["spec"][kind] = list;
    }
    let annotations = &mut out["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[ROUTE_ANNOTATION] = json!(route_json(route));
    annotations[ORIGINAL_ANNOTATION] = json!(Value::Object(record).to_string());
    out
}

/// The user's VirtualService as it was before canary changed it: the managed routes put back,
/// canary's match routes removed, canary's annotations gone; every other route as it is now.
/// `None` when there is nothing to restore (canary never changed it, or generated it).
pub fn restore(vs: &Value) -> Option<Value> {
    if generated(vs) {
        return None;
    }
    let annotations = vs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    let marked = annotations.is_some_and(|a| a.contains_key(ROUTE_ANNOTATION));
    let record = match original(vs) {
        Some(record) => record,
        None if marked => Map::new(),
        None => return None,
    };
    let mut out = clean(vs);
    let held_http = record.get("http").and_then(Value::as_object);
    let placed: BTreeSet<String> = held_http
        .into_iter()
        .flatten()
        .map(|(key, _)| match_route_name(key))
        .collect();
    if let Some(http) = vs["spec"]["http"].as_array() {
        let kept: Vec<&Value> = http
            .iter()
            .filter(|r| !r["name"].as_str().is_some_and(|n| placed.contains(n)))
            .collect();
        let restored: Vec<Value> = kept
            .iter()
            .map(|r| {
                let key = if kept.len() == 1 && held_http.is_some_and(|h| h.contains_key("")) {
                    Some(String::new())
                } else {
                    r["name"].as_str().map(str::to_owned)
                };
                key.and_then(|key| held_http.and_then(|h| h.get(&key)))
                    .map_or_else(|| (*r).clone(), Value::clone)
            })
            .collect();
        out["spec"]["http"] = Value::Array(restored);
    }
    for kind in ["tcp", "tls"] {
        let held = record.get(kind).and_then(Value::as_object);
        if let (Some(list), Some(held)) = (vs["spec"][kind].as_array(), held) {
            let restored: Vec<Value> = list
                .iter()
                .enumerate()
                .map(|(index, r)| {
                    held.get(&index.to_string())
                        .map_or_else(|| r.clone(), Value::clone)
                })
                .collect();
            out["spec"][kind] = Value::Array(restored);
        }
    }
    if let Some(annotations) = out["metadata"]["annotations"].as_object_mut() {
        annotations.remove(ROUTE_ANNOTATION);
        annotations.remove(ORIGINAL_ANNOTATION);
    }
    Some(out)
}

/// The route canary last applied to `vs`, from its annotation.
pub fn applied_route(vs: &Value) -> Option<RouteState> {
    let text = vs
        .pointer("/metadata/annotations")?
        .get(ROUTE_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// The route `vs` really sends: the canary weight and mirror of its first managed weighted
/// route (matches are not read back). `None` when it has no such route.
pub fn observed_route(plan: &RolloutPlan, vs: &Value) -> Option<RouteState> {
    let target = target(plan);
    let http: Vec<&Value> = vs["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            !r["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("canary-match"))
        })
        .collect();
    let named = |wanted: &str| http.iter().copied().find(|r| r["name"] == wanted);
    let configured = istio_ref(plan).and_then(|r| r.routes.first());
    let chosen = if generated(vs) {
        named(PRIMARY_ROUTE)
    } else if let Some(first) = configured {
        named(first)
    } else if http.len() == 1 {
        http.first().copied()
    } else {
        None
    };
    let weighted = chosen.or_else(|| {
        ["tcp", "tls"]
            .into_iter()
            .flat_map(|kind| vs["spec"][kind].as_array().into_iter().flatten())
            .find(|r| target.forwards_here(r))
    })?;
    let destinations = weighted["route"].as_array()?;
    // A single destination takes everything whatever its weight.
    let weight: u64 = match destinations.as_slice() {
        [only] if target.is_canary(&only["destination"]) => 100,
        _ => destinations
            .iter()
            .filter(|d| target.is_canary(&d["destination"]))
            .filter_map(|d| d["weight"].as_u64())
            .sum(),
    };
    let mirror = target
        .is_canary(&weighted["mirror"])
        .then(|| {
            weighted["mirrorPercentage"]["value"]
                .as_f64()
                .unwrap_or(100.0)
        })
        .map(|share| share.round().clamp(0.0, 100.0) as u32);
    Some(RouteState {
        weight: u32::try_from(weight.min(100)).unwrap_or(100),
        mirror,
        ..RouteState::stable()
    })
}

/// The parts of a VirtualService canary writes, to compare the desired with the live one.
pub fn managed_view(vs: &Value) -> Value {
    let annotations = vs.pointer("/metadata/annotations");
    let annotation = |key: &str| annotations.and_then(|a| a.get(key)).cloned();
    json!({
        "hosts": vs["spec"]["hosts"],
        "gateways": vs["spec"]["gateways"],
        "http": vs["spec"]["http"],
        "tcp": vs["spec"]["tcp"],
        "tls": vs["spec"]["tls"],
        "route": annotation(ROUTE_ANNOTATION),
        "original": annotation(ORIGINAL_ANNOTATION),
    })
}
