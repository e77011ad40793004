//! Rendering: a Rollout, a route and the lanes as they are → the lane group and the base and
//! canary lanes with this Rollout's service where the route puts it. Pure; the provider and
//! `canary render` both use it.
//!
//! The lanes are shared by every Rollout of a call chain, so each Rollout changes only its
//! own part of them, starting from what is there:
//!
//! - the **group** (`ASMSwimLaneGroup`, cluster-scoped) lists every service of the chain; a
//!   Rollout adds its service while it exists. Its settings (gateway, routing strategy,
//!   permissive mode with fallback to the base lane, route and trace headers) must agree
//!   between the Rollouts that share it;
//! - the **base lane** (`ASMSwimLane`, label `swimlane-group`) selects the stable pods
//!   (`ASM_TRAFFIC_TAG: <base lane>`) of every service of the group;
//! - the **canary lane** selects the canary pods (`ASM_TRAFFIC_TAG: <canary lane>`) and lists
//!   the services whose canary gets traffic: a service joins when the route sends its canary
//!   traffic and leaves when all traffic is back on stable (promoted or undone). Its ingress
//!   rule is online while it has a service.
//!
//! Before it writes, a Rollout checks what it would take over and whom it would strand:
//!
//! - a lane of the name it asks for that belongs to another group (label `swimlane-group`),
//!   or selects other pods than `ASM_TRAFFIC_TAG: <lane>`, is another chain's: the Rollout is
//!   refused ([`Error::Conflict`]) and changes nothing, and when it goes it leaves such a lane
//!   alone;
//! - the stable pods must carry the base lane's tag (`ASM_TRAFFIC_TAG: <base lane>` in the
//!   stable Deployment's pod template): the base lane is the permissive fallback of every
//!   request, and a service whose stable pods are not in it has no fallback at all. The
//!   Rollout is refused ([`Error::Input`]) when its service would join the lanes (first
//!   registration, or its canary getting traffic) without it; leaving the canary lane is never
//!   refused. Canary does not add the tag itself: it is part of the stable pod template, and
//!   changing that restarts every stable pod (and is itself a new revision to release), so it
//!   is for the user to set, as the ASM seed's Deployments do.
//!
//! The Rollout of the chain's entry (the one with `asm.ingress`) writes the lanes' ingress:
//! rule-based (the base lane admits every request for the entry, the canary lane the requests
//! whose route header names it, while it has a service; see `ingress_rule` for the order the
//! gateway tries them in) or weighted (the canary lane gets the route's weight, the base lane
//! the rest). The route each Rollout applied is kept in an annotation of
//! the canary lane, `canary.rs/route.<namespace>.<name>`.

use canary_core::api::spec::{AsmRouting, StringMatch};
use canary_core::k8s::objects::{
    MANAGED_BY, Objects, Shape, check_fields, check_object, clean, generated,
};
use canary_core::traffic::asm::{LANE_TAG as TAG_LABEL, weighted as weighted_mode};
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// The API version of lane objects.
pub const API_VERSION: &str = "istio.alibabacloud.com/v1";
/// The label that joins a lane to its group.
pub const GROUP_LABEL: &str = "swimlane-group";
/// The trace header when the spec names none.
pub const DEFAULT_TRACE_HEADER: &str = "x-request-id";

/// The lane objects with this Rollout's part in them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The `ASMSwimLaneGroup`.
    pub group: Value,
    /// The base lane.
    pub base: Value,
    /// The canary lane.
    pub canary: Value,
}

impl Rendered {
    /// The objects in the order they are applied: the group, then the lanes.
    pub fn objects(&self) -> Vec<Value> {
        vec![self.group.clone(), self.base.clone(), self.canary.clone()]
    }
}

/// The lanes after this Rollout left them.
#[derive(Debug, Clone, PartialEq)]
pub enum Released {
    /// Other services still use them: the objects without this one.
    Kept(Rendered),
    /// This was the last service: the lanes and the group go.
    Deleted,
}

/// The fields of a live lane group canary writes into: mappings it adds keys to.
const GROUP_FIELDS: [(&str, Shape); 3] = [
    ("/spec/ingress", Shape::Mapping),
    ("/spec/ingress/ingressRouting", Shape::Mapping),
    ("/spec/ingress/gateway", Shape::Mapping),
];

/// The fields of a live lane canary writes into: its ingress rules are turned on and off.
const LANE_FIELDS: [(&str, Shape); 1] = [("/spec/ingressRules", Shape::ListOfMappings)];

/// Refuses live lane objects whose fields are not of the shape canary reads and writes (a
/// custom resource's schema may leave them open); the error names the object and the field.
fn check_shapes(asm: &AsmRouting, objects: &Objects) -> Result<()> {
    let group = objects.get("ASMSwimLaneGroup", "", &asm.lane_group);
    let lanes = [&asm.base_lane, &asm.canary_lane].map(|name| objects.get("ASMSwimLane", "", name));
    let checked = group
        .map(|group| check_object(group).and_then(|()| check_fields(group, &GROUP_FIELDS)))
        .into_iter()
        .chain(
            lanes
                .into_iter()
                .flatten()
                .map(|lane| check_object(lane).and_then(|()| check_fields(lane, &LANE_FIELDS))),
        )
        .collect::<Result<Vec<()>, String>>();
    checked.map(drop).map_err(Error::Input)
}

/// `plan`'s ASM settings.
pub fn settings(plan: &RolloutPlan) -> Result<&AsmRouting> {
    plan.rollout
        .spec
        .traffic_routing
        .asm
        .as_ref()
        .ok_or_else(|| Error::Input("the rollout does not route with ASM lanes".to_owned()))
}

/// This Rollout's service as the lanes list it.
fn member(plan: &RolloutPlan) -> Value {
    json!({"name": plan.rollout.spec.service.name, "namespace": plan.namespace})
}

fn same_service(a: &Value, b: &Value) -> bool {
    a["name"] == b["name"] && a["namespace"] == b["namespace"]
}

/// The annotation of the canary lane holding the route this Rollout applied.
pub fn route_annotation(plan: &RolloutPlan) -> String {
    format!("canary.rs/route.{}.{}", plan.namespace, plan.name)
}

/// The host the entry's lanes route ingress traffic to.
fn entry_host(plan: &RolloutPlan) -> String {
    format!(
        "{}.{}.svc.cluster.local",
        plan.rollout.spec.service.name, plan.namespace
    )
}

fn string_match(condition: &StringMatch) -> Value {
    serde_json::to_value(condition).unwrap_or(Value::Null)
}

/// The group settings this Rollout asks for (everything but the services and the entry's
/// ingress rule).
fn group_settings(plan: &RolloutPlan, asm: &AsmRouting) -> Value {
    let gateway = asm.gateway.clone().unwrap_or_default();
    let strategy = if weighted_mode(&plan.rollout.spec.traffic_routing) {
        "weighted"
    } else {
        "rule_based"
    };
    json!({
        "ingress": {
            "gateway": {
                "name": gateway.name.as_deref().unwrap_or("ingressgateway"),
                "namespace": gateway.namespace.as_deref().unwrap_or("istio-system"),
                "type": "ASM",
            },
            "ingressRouting": {"ingressRoutingStrategy": strategy},
        },
        "isPermissive": true,
        "permissiveModeConfiguration": {
            "fallbackTarget": asm.base_lane,
            "routeHeader": asm.route_header,
            "traceHeader": asm.trace_header.as_deref().unwrap_or(DEFAULT_TRACE_HEADER),
        },
    })
}

/// `list` with `service` in it (`true`, added at the end when missing) or out of it (`false`);
/// every other entry as it is.
fn with_member(list: &Value, service: &Value, present: bool) -> Value {
    let held: Vec<Value> = list.as_array().cloned().unwrap_or_default();
    let there = held.iter().any(|entry| same_service(entry, service));
    match (present, there) {
        (true, true) => Value::Array(held),
        (true, false) => Value::Array(held.into_iter().chain([service.clone()]).collect()),
        (false, _) => Value::Array(
            held.into_iter()
                .filter(|entry| !same_service(entry, service))
                .collect(),
        ),
    }
}

fn lane_base(name: &str, group: &str, live: Option<&Value>) -> Value {
    // A lane canary creates says so: it is canary's to delete with the last service.
    let mut lane = live.map(clean).unwrap_or_else(|| {
        json!({
            "apiVersion": API_VERSION,
            "kind": "ASMSwimLane",
            "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
            "spec": {},
        })
    });
    lane["metadata"]["labels"][GROUP_LABEL] = json!(group);
    lane["spec"]["labelSelector"] = json!({TAG_LABEL: name});
    lane
}

/// Which requests a lane's ingress rule admits at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admits {
    /// Every request for the entry's hosts and URI: the base lane's rule, which serves the
    /// users who name no lane.
    Everyone,
    /// Only requests whose route header names the lane: the canary lane's rule.
    Named,
}

/// The entry's ingress rule of a lane: the requests it admits (for the entry's hosts and URI)
/// go to the entry service, in the lane.
///
/// How ASM and its gateway treat these rules:
///
/// - rule-based routing sends a request to a lane only when that lane's own ingress rule
///   matches it (Alibaba Cloud ASM API reference, `UpdateSwimLaneGroup`,
///   `IngressRoutingStrategy`), and ASM turns the rules into HTTP routes of VirtualServices
///   bound to the group's gateway (ASM "ASMSwimLaneGroup and ASMSwimLane field reference").
///   A request no route matches gets Envoy's 404 (`NR`): so the base lane's rule matches no
///   header, or every user who sends no route header (nearly all of them) would get 404s;
/// - a rule's match has only `uri` and `headers` (exact, prefix or regex, each needing the
///   header to be present: `SwimLaneIngressRequestMatch` in aliyun/alibabacloud-servicemesh-api
///   `alibabacloudservicemesh/v1/asmswimlane_types.go`), so no rule can say "without the route
///   header" or "naming no other lane": the base rule also matches requests that name the
///   canary lane, and the canary rule must be tried first for them to reach it;
/// - the gateway tries routes in order: Istio concatenates the routes of the VirtualServices
///   bound to a gateway for one host in VirtualService creation order (istio
///   `pilot/pkg/model`: `sortConfigByCreationTime`), then moves every catch-all route (URI
///   prefix `/` or regex `.*`, no header or query match) behind all the others
///   (`pilot/pkg/networking/core/route/route.go`: `SortVHostRoutes`, `IsCatchAllRoute`, called
///   by `buildGatewayHTTPRouteConfig` in `pilot/pkg/networking/core/gateway.go`). With no
///   `asm.ingress.uri` (or `prefix: /`) the base rule is such a catch-all, so the canary rule is
///   tried first whatever order ASM writes the lanes' routes in. With a narrower URI, the order
///   of the two lanes' routes is ASM's, which Alibaba does not document: when ASM puts the
///   canary lane's first, header requests reach the canary; when it puts the base lane's
///   first, they are served by the stable pods (never by nobody, and never by the canary
///   outside a step).
///
/// Requests that name the canary lane while its rule is offline (before the first step, after
/// promotion or rollback) match the base rule; requests that name it while the entry service
/// has no canary in it fall back to the base lane (permissive mode).
fn ingress_rule(
    plan: &RolloutPlan,
    asm: &AsmRouting,
    lane: &str,
    admits: Admits,
    online: bool,
) -> Value {
    let ingress = asm.ingress.clone().unwrap_or_default();
    let mut matched = Map::new();
    if admits == Admits::Named {
        matched.insert(
            "headers".to_owned(),
            json!({asm.route_header.as_str(): {"exact": lane}}),
        );
    }
    if let Some(uri) = &ingress.uri {
        matched.insert("uri".to_owned(), string_match(uri));
    }
    json!({
        "name": lane,
        "online": online,
        "hosts": hosts(asm),
        "match": matched,
        "route": {"destination": {"host": entry_host(plan)}},
    })
}

fn hosts(asm: &AsmRouting) -> Vec<String> {
    match asm.ingress.as_ref().map(|i| i.hosts.clone()) {
        Some(hosts) if !hosts.is_empty() => hosts,
        _ => vec!["*".to_owned()],
    }
}

/// True when `lane` (a live `ASMSwimLane`) belongs to lane group `group`.
pub fn in_group(lane: &Value, group: &str) -> bool {
    lane["metadata"]["labels"][GROUP_LABEL].as_str() == Some(group)
}

/// Refuses to take over a lane of `name` that exists as another group's, or that selects
/// other pods than `ASM_TRAFFIC_TAG: <name>` (ASM's lanes join their group by the
/// `swimlane-group` label and select pods by one `ASM_TRAFFIC_TAG` value, as the lane API's
/// `GroupName` and `LabelSelectorKey`/`LabelSelectorValue` say).
pub fn check_lane(asm: &AsmRouting, name: &str, live: Option<&Value>) -> Result<()> {
    let Some(lane) = live else {
        return Ok(());
    };
    if !in_group(lane, &asm.lane_group) {
        let owner = match lane["metadata"]["labels"][GROUP_LABEL].as_str() {
            Some(group) => format!("lane group {group}"),
            None => "no lane group (no swimlane-group label)".to_owned(),
        };
        return Err(Error::Conflict(format!(
            "the ASMSwimLane {name} belongs to {owner}, not to {}; lanes are cluster-wide, so \
             this Rollout would take it over: name other lanes in \
             spec.trafficRouting.asm (baseLane, canaryLane)",
            asm.lane_group
        )));
    }
    let selector = &lane["spec"]["labelSelector"];
    if !selector.is_null() && *selector != json!({TAG_LABEL: name}) {
        return Err(Error::Conflict(format!(
            "the ASMSwimLane {name} of lane group {} selects pods by {selector}, but this \
             Rollout's lanes select {TAG_LABEL}: {name}; changing it would move other \
             services' pods out of the lane",
            asm.lane_group
        )));
    }
    Ok(())
}

/// Refuses a stable Deployment (when it is among `objects`) whose pod template lacks the base
/// lane's tag: its pods would be in no lane, and requests falling back to the base lane would
/// find none of them.
pub fn check_stable_pods(plan: &RolloutPlan, objects: &Objects) -> Result<()> {
    let asm = settings(plan)?;
    let name = &plan.rollout.spec.workload_ref.name;
    let Some(stable) = objects.get(plan.workload.kind, &plan.namespace, name) else {
        return Ok(());
    };
    let tag = &stable["spec"]["template"]["metadata"]["labels"][TAG_LABEL];
    if tag.as_str() == Some(asm.base_lane.as_str()) {
        return Ok(());
    }
    let has = match tag.as_str() {
        Some(value) => format!("{TAG_LABEL}: {value}"),
        None => format!("no {TAG_LABEL} label"),
    };
    Err(Error::Input(format!(
        "the stable pods of {} {}/{name} have {has}, so they are not in the base lane \
         {base} that requests fall back to; add the label {TAG_LABEL}: {base} to its pod \
         template (spec.template.metadata.labels), which restarts its pods, before releasing \
         with lanes",
        plan.workload.kind,
        plan.namespace,
        base = asm.base_lane
    )))
}

/// The lane objects for `route`, from the lanes in `objects` (when they exist). Refuses lanes
/// of another group and, when this service would join the lanes, stable pods outside the base
/// lane (see the module documentation).
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    let asm = settings(plan)?;
    check_shapes(asm, objects)?;
    let me = member(plan);
    check_lane(
        asm,
        &asm.base_lane,
        objects.get("ASMSwimLane", "", &asm.base_lane),
    )?;
    check_lane(
        asm,
        &asm.canary_lane,
        objects.get("ASMSwimLane", "", &asm.canary_lane),
    )?;
    let live_group = objects.get("ASMSwimLaneGroup", "", &asm.lane_group);
    let registered = live_group.is_some_and(|group| {
        group["spec"]["services"]
            .as_array()
            .is_some_and(|list| list.iter().any(|held| same_service(held, &me)))
    });
    if !route.is_stable_only() || !registered {
        check_stable_pods(plan, objects)?;
    }
    let settings = group_settings(plan, asm);
    let mut group = match live_group {
        Some(live) => {
            check_settings(asm, live, &settings)?;
            clean(live)
        }
        None => json!({
            "apiVersion": API_VERSION,
            "kind": "ASMSwimLaneGroup",
            "metadata": {"name": asm.lane_group, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
            "spec": {},
        }),
    };
    for (key, value) in settings.as_object().into_iter().flatten() {
        if key == "ingress" {
            group["spec"]["ingress"]["gateway"] = value["gateway"].clone();
            group["spec"]["ingress"]["ingressRouting"]["ingressRoutingStrategy"] =
                value["ingressRouting"]["ingressRoutingStrategy"].clone();
        } else {
            group["spec"][key] = value.clone();
        }
    }
    let services = with_member(&group["spec"]["services"], &me, true);
    group["spec"]["services"] = services.clone();

    let entry = asm.ingress.is_some();
    let weighted = weighted_mode(&plan.rollout.spec.traffic_routing);
    if entry && weighted {
        let mut rule = json!({"hosts": hosts(asm)});
        if let Some(uri) = asm.ingress.as_ref().and_then(|i| i.uri.as_ref()) {
            rule["requestMatches"] = json!([{"uri": string_match(uri)}]);
        }
        group["spec"]["ingress"]["ingressRouting"]["weightedRoutingRule"] = rule;
    }

    let live_base = objects.get("ASMSwimLane", "", &asm.base_lane);
    let live_canary = objects.get("ASMSwimLane", "", &asm.canary_lane);
    let mut base = lane_base(&asm.base_lane, &asm.lane_group, live_base);
    let mut canary = lane_base(&asm.canary_lane, &asm.lane_group, live_canary);
    base["spec"]["services"] = services;
    let joined = !route.is_stable_only();
    let canary_services = with_member(&canary["spec"]["services"], &me, joined);
    let anyone = canary_services.as_array().is_some_and(|l| !l.is_empty());
    canary["spec"]["services"] = canary_services;
    let annotation = route_annotation(plan);
    let annotations = &mut canary["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(annotations) = annotations.as_object_mut() {
        if joined {
            annotations.insert(
                annotation,
                json!(serde_json::to_string(route).unwrap_or_default()),
            );
        } else {
            annotations.remove(&annotation);
        }
    }
    if entry && !weighted {
        base["spec"]["ingressRules"] = json!([ingress_rule(
            plan,
            asm,
            &asm.base_lane,
            Admits::Everyone,
            true
        )]);
        canary["spec"]["ingressRules"] = json!([ingress_rule(
            plan,
            asm,
            &asm.canary_lane,
            Admits::Named,
            anyone
        )]);
    } else if let Some(rules) = canary
        .pointer_mut("/spec/ingressRules")
        .and_then(Value::as_array_mut)
    {
        // Whoever changes the canary lane keeps its ingress rule online exactly while it has a
        // service.
        for rule in rules {
            rule["online"] = json!(anyone);
        }
    }
    if entry && weighted {
        let share = if joined { route.whole_percent() } else { 0 };
        let destination = json!({"host": entry_host(plan)});
        base["spec"]["ingressWeight"] = json!({"destination": destination, "weight": 100 - share});
        canary["spec"]["ingressWeight"] = json!({"destination": destination, "weight": share});
    }
    Ok(Rendered {
        group,
        base,
        canary,
    })
}

/// Refuses to take over a group another chain set up differently.
fn check_settings(asm: &AsmRouting, live: &Value, wanted: &Value) -> Result<()> {
    let spec = &live["spec"];
    let held = [
        (
            "ingress.gateway",
            &spec["ingress"]["gateway"],
            &wanted["ingress"]["gateway"],
        ),
        (
            "ingress.ingressRouting.ingressRoutingStrategy",
            &spec["ingress"]["ingressRouting"]["ingressRoutingStrategy"],
            &wanted["ingress"]["ingressRouting"]["ingressRoutingStrategy"],
        ),
        (
            "permissiveModeConfiguration",
            &spec["permissiveModeConfiguration"],
            &wanted["permissiveModeConfiguration"],
        ),
    ];
    for (field, have, want) in held {
        if !have.is_null() && have != want {
            return Err(Error::Conflict(format!(
                "lane group {} has {field} {have}, but this Rollout asks for {want}; the \
                 Rollouts of one lane group must agree on it",
                asm.lane_group
            )));
        }
    }
    Ok(())
}

/// The lanes after this Rollout leaves them: out of the canary lane and the group; the lanes
/// and the group deleted with the last service when canary created them. Lanes and groups
/// someone else made (kept in Git, say) stay, without this service.
pub fn release(plan: &RolloutPlan, objects: &Objects) -> Result<Released> {
    let asm = settings(plan)?;
    check_shapes(asm, objects)?;
    let Some(live_group) = objects.get("ASMSwimLaneGroup", "", &asm.lane_group) else {
        return Ok(Released::Deleted);
    };
    let me = member(plan);
    let remaining = with_member(&live_group["spec"]["services"], &me, false);
    // Another group's lane is left alone either way; this group's must be canary's own.
    let canarys = |lane: Option<&Value>| {
        lane.is_none_or(|lane| !in_group(lane, &asm.lane_group) || generated(lane))
    };
    let deletable = generated(live_group)
        && canarys(objects.get("ASMSwimLane", "", &asm.base_lane))
        && canarys(objects.get("ASMSwimLane", "", &asm.canary_lane));
    if remaining.as_array().is_none_or(Vec::is_empty) && deletable {
        return Ok(Released::Deleted);
    }
    let mut group = clean(live_group);
    group["spec"]["services"] = remaining.clone();
    let live_base = objects.get("ASMSwimLane", "", &asm.base_lane);
    let live_canary = objects.get("ASMSwimLane", "", &asm.canary_lane);
    // Another group's lane of the same name (this Rollout was refused) stays as it is.
    let group_name = asm.lane_group.as_str();
    let foreign = |live: Option<&Value>| -> Option<Value> {
        live.filter(|lane| !in_group(lane, group_name)).map(clean)
    };
    let mut base = lane_base(&asm.base_lane, &asm.lane_group, live_base);
    base["spec"]["services"] = remaining;
    if let Some(lane) = foreign(live_base) {
        base = lane;
    }
    if let Some(lane) = foreign(live_canary) {
        return Ok(Released::Kept(Rendered {
            group,
            base,
            canary: lane,
        }));
    }
    let mut canary = lane_base(&asm.canary_lane, &asm.lane_group, live_canary);
    let canary_services = with_member(&canary["spec"]["services"], &me, false);
    let anyone = canary_services.as_array().is_some_and(|l| !l.is_empty());
    canary["spec"]["services"] = canary_services;
    if let Some(rules) = canary
        .pointer_mut("/spec/ingressRules")
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            rule["online"] = json!(anyone);
        }
    }
    if let Some(annotations) = canary["metadata"]["annotations"].as_object_mut() {
        annotations.remove(&route_annotation(plan));
    }
    Ok(Released::Kept(Rendered {
        group,
        base,
        canary,
    }))
}

/// The route this Rollout has in the lanes: the one it applied while its service is in the
/// canary lane, all traffic on stable when it is not.
pub fn observed_route(plan: &RolloutPlan, canary: Option<&Value>) -> Option<RouteState> {
    let Some(canary) = canary else {
        return Some(RouteState::stable());
    };
    let me = member(plan);
    let member = canary["spec"]["services"]
        .as_array()
        .is_some_and(|list| list.iter().any(|held| same_service(held, &me)));
    if !member {
        return Some(RouteState::stable());
    }
    let applied = canary["metadata"]["annotations"][route_annotation(plan)]
        .as_str()
        .and_then(|text| serde_json::from_str::<RouteState>(text).ok());
    // In the lane with no record of why: traffic reaches the canary, by an unknown route.
    Some(applied.unwrap_or_else(|| RouteState::weighted(100)))
}
