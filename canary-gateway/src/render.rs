//! Rendering: a Rollout, a route and the cluster's objects → the canary Service and the
//! HTTPRoute or GRPCRoute. Pure.
//!
//! - **Generated** (`gatewayAPI.parentRefs`): a route named after the Service, attached to the
//!   parents, with the Rollout's hostnames; it exists from the first route on, all traffic on
//!   stable when the route says so (without it the gateway has no route for the service).
//! - **The user's** (`gatewayAPI.httpRoute` or `grpcRoute`): every rule whose `backendRefs`
//!   name the Service (a core `Service` in the route's namespace) is managed. A managed rule
//!   keeps its matches and filters; its stable backend keeps its own fields, weighed
//!   `total - weight`, beside a canary backend (the same with the canary Service's name)
//!   weighed `weight`. Other rules and fields are left as they are. The stable backends'
//!   weights as the user wrote them are recorded in an annotation, and when the route keeps
//!   everything on stable again the route is given back as it was: canary's backends, filters
//!   and rules taken out, the weights put back, canary's annotations removed.
//!
//! For request matches, a rule per managed rule carries the managed rule's matches with the
//! Rollout's conditions added and the canary as its only backend. Its matches have every
//! condition of the managed ones and more, so Gateway API's precedence (more header, query or
//! method conditions win; a longer path prefix wins; for gRPC, more header conditions win)
//! picks it first, wherever it stands in the list. A Rollout match on the path replaces a
//! `PathPrefix /` (any path) only; on a narrower path it is refused, since one match holds one
//! path.
//!
//! Mirroring is a `RequestMirror` filter on each managed rule, copying `mirror` percent to the
//! canary Service.
//!
//! A sticky canary (`sessionAffinity`, HTTPRoute only): while the weights send requests to the
//! canary, the canary backend of each managed rule adds a `Set-Cookie` to its answers (a
//! `ResponseHeaderModifier` on the backend), and a rule `<rollout>-canary-sticky` per managed
//! rule sends requests whose `Cookie` header carries it to the canary (one header condition
//! more than the managed rule: it is picked first). The cookie's value is the canary's
//! revision, so a cookie of an earlier release sends nobody anywhere; once the route keeps
//! everything on stable the rule is gone and the cookie is ignored. The standard channel has no
//! `sessionPersistence` (it is experimental), hence the cookie rule.
//!
//! With `implementation: envoy-gateway`, the canary backend comes first in a managed rule and
//! carries a request header filter (`x-canary-backend: canary`): Envoy Gateway gives a rule one
//! Envoy cluster for all its backends unless a backend has filters, and then one per backend,
//! named by the backend's index, which is what the builtin metrics select by.

use canary_core::api::spec::{
    GatewayImplementation, GatewayRouteKind, GatewayRouting, RequestMatch, StringMatch,
};
use canary_core::k8s::objects::{Objects, clean, generated_metadata};
use canary_core::k8s::services::{
    canary_service, canary_service_name, stable_selects_canary, stable_service,
};
use canary_core::traffic::gateway::{RouteRef, route_of, sticky_cookie};
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Value, json};

/// The API version of the routes canary writes.
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// Annotation on the route: the route canary applied, as JSON.
pub const ROUTE_ANNOTATION: &str = "canary.rs/route";

/// Annotation on a user's route: the weights its managed rules' stable backends had before
/// canary changed them (`null` for none), in rule order, as JSON.
pub const ORIGINAL_ANNOTATION: &str = "canary.rs/original-weights";

/// Annotation on a user's route: the Rollout whose release changed it (one at a time).
pub const EDITOR_ANNOTATION: &str = "canary.rs/edited-by";

/// Annotation on a generated route: the Rollout's `gatewayAPI` settings it was made from, so
/// that a change of them (a parent or hostname less) is written even when the route is not.
pub const SETTINGS_ANNOTATION: &str = "canary.rs/settings";

/// canary's annotations on a user's route.
pub const USER_ROUTE_ANNOTATIONS: [&str; 3] =
    [ROUTE_ANNOTATION, ORIGINAL_ANNOTATION, EDITOR_ANNOTATION];

/// Annotation on the canary Deployment: the revision it runs (the sticky cookie's value).
const REVISION_ANNOTATION: &str = "canary.rs/revision";

/// The header the canary backend sets for Envoy Gateway (see the module).
pub const BACKEND_HEADER: &str = "x-canary-backend";

/// The name of the rules canary adds for request matches: `<rollout>-canary-match`.
pub fn match_rule_name(plan: &RolloutPlan) -> String {
    format!("{}-canary-match", plan.name)
}

/// The name of the rules canary adds for a sticky canary's cookie: `<rollout>-canary-sticky`.
pub fn sticky_rule_name(plan: &RolloutPlan) -> String {
    format!("{}-canary-sticky", plan.name)
}

/// Whether `rule` is one canary added (named as its match or sticky rules, numbered or not).
fn added_by_canary(plan: &RolloutPlan, rule: &Value) -> bool {
    let name = rule.get("name").and_then(Value::as_str).unwrap_or_default();
    [match_rule_name(plan), sticky_rule_name(plan)]
        .iter()
        .any(|ours| {
            name == ours
                || name
                    .strip_prefix(ours.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
        })
}

/// The most rules a route holds, and matches across its rules (the route CRDs' `maxItems`
/// and their CEL rule on the sum of matches).
const MAX_RULES: usize = 16;
const MAX_MATCHES: usize = 128;

/// The objects that put a route in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `<service>-canary`, while the route sends traffic to the canary.
    pub canary_service: Option<Value>,
    /// The route, generated or the user's as edited (or as given back).
    pub route: Value,
}

impl Rendered {
    /// The objects in the order they are applied: the canary Service first.
    pub fn objects(&self) -> Vec<Value> {
        self.canary_service
            .iter()
            .cloned()
            .chain([self.route.clone()])
            .collect()
    }
}

/// Why a route cannot be rendered: what is missing or cannot take the route.
pub type Error = canary_core::traffic::TrafficError;

/// The reasons of the steps of rendering.
type Why = String;

/// The Rollout's Gateway API settings.
pub fn settings(plan: &RolloutPlan) -> Result<&GatewayRouting, Why> {
    plan.rollout
        .spec
        .traffic_routing
        .gateway_api
        .as_ref()
        .ok_or_else(|| "the Rollout has no gatewayAPI settings".to_owned())
}

/// The route `plan` routes with.
pub fn route_ref(plan: &RolloutPlan) -> Result<RouteRef, Why> {
    Ok(route_of(settings(plan)?, &plan.rollout.spec.service.name))
}

/// The objects for `route`; `objects` holds the stable Service, and the user's route when the
/// Rollout edits one.
pub fn render(
    plan: &RolloutPlan,
    route: &RouteState,
    objects: &Objects,
) -> Result<Rendered, Error> {
    rendered(plan, route, objects).map_err(Error::Input)
}

fn rendered(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered, Why> {
    let target = route_ref(plan)?;
    let stable = stable_service(plan, objects)?;
    let canary_service = if route.is_stable_only() {
        None
    } else {
        if let Some(why) = stable_selects_canary(plan, stable, objects) {
            return Err(why);
        }
        Some(canary_service(plan, stable)?)
    };
    let route_object = if target.generated {
        generated(plan, route, target.kind, objects)?
    } else {
        let user = objects
            .get(target.kind.name(), &plan.namespace, &target.name)
            .ok_or_else(|| {
                format!(
                    "{} {}/{} not found",
                    target.kind.name(),
                    plan.namespace,
                    target.name
                )
            })?;
        if route.is_stable_only() {
            given_back(plan, user)?
        } else {
            edited(plan, route, user, objects)?
        }
    };
    Ok(Rendered {
        canary_service,
        route: route_object,
    })
}

/// The route canary last applied to `route` for `plan`'s Rollout, from its annotation.
pub fn applied_route(plan: &RolloutPlan, route: &Value) -> Option<RouteState> {
    if editor(route).is_some_and(|editor| editor != plan.name) {
        return None;
    }
    let text = route
        .pointer("/metadata/annotations")?
        .get(ROUTE_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// Whether the release of `plan`'s Rollout changed the user's route `route` (canary's
/// annotations are on it, naming no other Rollout).
pub fn changed_by(plan: &RolloutPlan, route: &Value) -> bool {
    let annotated = route
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|annotations| {
            USER_ROUTE_ANNOTATIONS
                .iter()
                .any(|key| annotations.contains_key(*key))
        });
    annotated && editor(route).is_none_or(|editor| editor == plan.name)
}

/// The port of the Service's backends.
fn port(plan: &RolloutPlan) -> i64 {
    plan.rollout.spec.service.port
}

/// The route canary generates: one weighted rule for every request, and the match rules.
fn generated(
    plan: &RolloutPlan,
    route: &RouteState,
    kind: GatewayRouteKind,
    objects: &Objects,
) -> Result<Value, Why> {
    let settings = settings(plan)?;
    let parents: Vec<Value> = settings
        .parent_refs
        .iter()
        .map(|parent| {
            let mut out = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                 "name": parent.name});
            if let Some(namespace) = &parent.namespace {
                out["namespace"] = json!(namespace);
            }
            if let Some(section) = &parent.section_name {
                out["sectionName"] = json!(section);
            }
            out
        })
        .collect();
    let stable = json!({"group": "", "kind": "Service",
                        "name": plan.rollout.spec.service.name, "port": port(plan)});
    let mut managed = json!({"backendRefs": [stable]});
    if kind == GatewayRouteKind::HttpRoute {
        managed["matches"] = json!([{"path": {"type": "PathPrefix", "value": "/"}}]);
    }
    let rules = manage(plan, route, &[managed], kind, objects)?;
    let mut metadata = generated_metadata(plan, &plan.rollout.spec.service.name);
    metadata["annotations"] = json!({
        ROUTE_ANNOTATION: route_json(route),
        SETTINGS_ANNOTATION: serde_json::to_string(settings).unwrap_or_default(),
    });
    let mut spec = json!({"parentRefs": parents, "rules": rules});
    if !settings.hostnames.is_empty() {
        spec["hostnames"] = json!(settings.hostnames);
    }
    Ok(
        json!({"apiVersion": API_VERSION, "kind": kind.name(), "metadata": metadata,
              "spec": spec}),
    )
}

fn route_json(route: &RouteState) -> String {
    serde_json::to_string(route).unwrap_or_default()
}

/// The kind of `object`.
fn kind_of(object: &Value) -> GatewayRouteKind {
    if object["kind"] == "GRPCRoute" {
        GatewayRouteKind::GrpcRoute
    } else {
        GatewayRouteKind::HttpRoute
    }
}

/// The user's route `user` with its managed rules routing `route`: built from the route as the
/// user wrote it (canary's earlier changes taken out), the stable weights recorded.
fn edited(
    plan: &RolloutPlan,
    route: &RouteState,
    user: &Value,
    objects: &Objects,
) -> Result<Value, Why> {
    let kind = kind_of(user);
    if let Some(other) = editor(user).filter(|editor| *editor != plan.name) {
        return Err(format!(
            "{} {} is in the release of Rollout {other}: one Rollout at a time changes a route; \
             this one waits until that release is over",
            kind.name(),
            name_of(user)
        ));
    }
    let (rules, weights) = pristine_rules(plan, user);
    if !rules.iter().any(|rule| names_service(plan, rule)) {
        return Err(format!(
            "no rule of {} {} sends requests to Service {}: canary manages the rules whose \
             backendRefs name it",
            kind.name(),
            name_of(user),
            plan.rollout.spec.service.name
        ));
    }
    let rules = manage(plan, route, &rules, kind, objects)?;
    let mut out = clean(user);
    out["spec"]["rules"] = json!(rules);
    let annotations = &mut out["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[ROUTE_ANNOTATION] = json!(route_json(route));
    annotations[ORIGINAL_ANNOTATION] = json!(Value::Array(weights).to_string());
    annotations[EDITOR_ANNOTATION] = json!(plan.name);
    Ok(out)
}

/// The user's route `user` as it was before canary changed it: canary's backends, filters and
/// rules taken out, the recorded weights put back, canary's annotations removed.
fn given_back(plan: &RolloutPlan, user: &Value) -> Result<Value, Why> {
    if editor(user).is_some_and(|editor| editor != plan.name) {
        // Another Rollout's release: its changes are its own to give back.
        return Ok(clean(user));
    }
    let (rules, _) = pristine_rules(plan, user);
    let mut out = clean(user);
    out["spec"]["rules"] = json!(rules);
    if let Some(annotations) = out["metadata"]["annotations"].as_object_mut() {
        for key in USER_ROUTE_ANNOTATIONS {
            annotations.remove(key);
        }
        if annotations.is_empty()
            && let Some(metadata) = out["metadata"].as_object_mut()
        {
            metadata.remove("annotations");
        }
    }
    Ok(out)
}

/// The Rollout whose release changed the user's route `route`, if one did.
fn editor(route: &Value) -> Option<&str> {
    route
        .pointer("/metadata/annotations")?
        .get(EDITOR_ANNOTATION)?
        .as_str()
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The rules of `user` without canary's changes, and the stable weights of its managed rules
/// as the user wrote them (recorded on the route, or read from it when canary has not changed
/// it yet).
fn pristine_rules(plan: &RolloutPlan, user: &Value) -> (Vec<Value>, Vec<Value>) {
    let recorded: Option<Vec<Value>> = user
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(ORIGINAL_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok());
    let canary = canary_service_name(plan);
    let service = plan.rollout.spec.service.name.as_str();
    let mut weights = Vec::new();
    let mut rules = Vec::new();
    for rule in user
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if added_by_canary(plan, rule) {
            continue;
        }
        if !names_service(plan, rule) {
            rules.push(rule.clone());
            continue;
        }
        let mut rule = rule.clone();
        if let Some(backends) = rule.get_mut("backendRefs").and_then(Value::as_array_mut) {
            // A rule without canary's backend is as its owner wrote it (or as a GitOps tool
            // put it back): its weight is theirs, whatever was recorded.
            let edited = backends
                .iter()
                .any(|backend| is_service(plan, backend, &canary));
            backends.retain(|backend| !is_service(plan, backend, &canary));
            let index = weights.len();
            for backend in backends.iter_mut() {
                if !is_service(plan, backend, service) {
                    continue;
                }
                let live = backend.get("weight").cloned().unwrap_or(Value::Null);
                let original = match &recorded {
                    Some(recorded) if edited => recorded.get(index).cloned().unwrap_or(live),
                    _ => live,
                };
                if let Some(object) = backend.as_object_mut() {
                    match &original {
                        Value::Null => object.remove("weight"),
                        weight => object.insert("weight".to_owned(), weight.clone()),
                    };
                }
                weights.push(original);
                break;
            }
        }
        if let Some(filters) = rule.get_mut("filters").and_then(Value::as_array_mut) {
            filters.retain(|filter| !mirrors_to(filter, &canary));
            if filters.is_empty()
                && let Some(object) = rule.as_object_mut()
            {
                object.remove("filters");
            }
        }
        rules.push(rule);
    }
    (rules, weights)
}

/// Whether `filter` mirrors to the Service `canary`.
fn mirrors_to(filter: &Value, canary: &str) -> bool {
    filter["type"] == "RequestMirror"
        && filter.pointer("/requestMirror/backendRef/name") == Some(&json!(canary))
}

/// Whether `backend` is the Service `name` of the Rollout's namespace.
fn is_service(plan: &RolloutPlan, backend: &Value, name: &str) -> bool {
    let group = backend.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = backend
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Service");
    let namespace = backend.get("namespace").and_then(Value::as_str);
    group.is_empty()
        && kind == "Service"
        && namespace.is_none_or(|namespace| namespace == plan.namespace)
        && backend.get("name").and_then(Value::as_str) == Some(name)
}

/// Whether `rule` sends requests to the Rollout's Service.
pub fn names_service(plan: &RolloutPlan, rule: &Value) -> bool {
    rule.get("backendRefs")
        .and_then(Value::as_array)
        .is_some_and(|backends| {
            backends
                .iter()
                .any(|b| is_service(plan, b, &plan.rollout.spec.service.name))
        })
}

/// Whether the implementation is Envoy Gateway (see the module).
fn envoy_gateway(plan: &RolloutPlan) -> bool {
    settings(plan)
        .is_ok_and(|settings| settings.implementation == Some(GatewayImplementation::EnvoyGateway))
}

/// `rules` (as the user wrote them) with every managed rule routing `route`, and the match
/// and sticky rules after them.
fn manage(
    plan: &RolloutPlan,
    route: &RouteState,
    rules: &[Value],
    kind: GatewayRouteKind,
    objects: &Objects,
) -> Result<Vec<Value>, Why> {
    let service = plan.rollout.spec.service.name.as_str();
    let canary = canary_service_name(plan);
    let to_canary = !route.is_stable_only();
    let envoy_gateway = envoy_gateway(plan);
    let sticky = sticky(plan, route, kind, objects);
    let mut out = Vec::new();
    let mut match_rules = Vec::new();
    let mut sticky_rules = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if !names_service(plan, rule) {
            out.push(rule.clone());
            continue;
        }
        let refuse = |why: &str| {
            format!(
                "rule {index}{} {why}",
                rule.get("name")
                    .and_then(Value::as_str)
                    .map(|name| format!(" ({name})"))
                    .unwrap_or_default()
            )
        };
        let backends = rule
            .get("backendRefs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let [backend] = backends.as_slice() else {
            return Err(refuse(&format!(
                "sends requests to other backends too: canary splits the rules whose only \
                 backend is Service {service}"
            )));
        };
        if backend.get("weight").and_then(Value::as_u64) == Some(0) {
            return Err(refuse(&format!(
                "gives Service {service} weight 0: it sends it nothing to split"
            )));
        }
        let mut managed = rule.clone();
        let mut stable = backend.clone();
        stable["weight"] = json!(route.total.saturating_sub(route.weight));
        // The canary's backend is the stable one with the canary Service's name: its own
        // filters (the requests it gets are changed the same way) and canary's.
        let mut theirs = backend.clone();
        theirs["name"] = json!(canary);
        theirs["weight"] = json!(route.weight);
        if envoy_gateway {
            add_header(
                &mut theirs,
                "RequestHeaderModifier",
                "set",
                BACKEND_HEADER,
                "canary",
            )
            .map_err(|why| refuse(&why))?;
        }
        let mut canary_backend = theirs.clone();
        if let Some(object) = canary_backend.as_object_mut() {
            object.remove("weight");
        }
        if let Some(cookie) = &sticky {
            // The canary's answers to weighted requests set the cookie.
            add_header(
                &mut theirs,
                "ResponseHeaderModifier",
                "add",
                "Set-Cookie",
                &cookie.set_cookie,
            )
            .map_err(|why| refuse(&why))?;
        }
        managed["backendRefs"] = match (to_canary, envoy_gateway) {
            (false, _) => json!([stable]),
            (true, true) => json!([theirs, stable]),
            (true, false) => json!([stable, theirs]),
        };
        if let Some(percent) = route.mirror.filter(|percent| *percent > 0) {
            let filters = managed
                .as_object_mut()
                .map(|rule| rule.entry("filters").or_insert_with(|| json!([])));
            if let Some(Value::Array(filters)) = filters {
                filters.push(json!({"type": "RequestMirror", "requestMirror": {
                    "backendRef": {"group": "", "kind": "Service", "name": canary,
                                   "port": port(plan)},
                    "percent": percent}}));
            }
        }
        if to_canary {
            let every_request = match kind {
                GatewayRouteKind::HttpRoute => {
                    vec![json!({"path": {"type": "PathPrefix", "value": "/"}})]
                }
                GatewayRouteKind::GrpcRoute => vec![json!({})],
            };
            let theirs = match rule.get("matches").and_then(Value::as_array) {
                Some(matches) if !matches.is_empty() => matches.clone(),
                _ => every_request,
            };
            if !route.matches.is_empty() {
                let mut matches = Vec::new();
                for base in &theirs {
                    for wanted in &route.matches {
                        matches.push(
                            combined(base, wanted, rules, index).map_err(|why| refuse(&why))?,
                        );
                    }
                }
                match_rules
                    .push(added_rule(rule, matches, &canary_backend).map_err(|why| refuse(&why))?);
            }
            if let Some(cookie) = &sticky {
                let matches = theirs
                    .iter()
                    .map(|base| with_header(base, "Cookie", &cookie.pattern))
                    .collect::<Result<Vec<Value>, Why>>()
                    .map_err(|why| refuse(&why))?;
                sticky_rules
                    .push(added_rule(rule, matches, &canary_backend).map_err(|why| refuse(&why))?);
            }
        }
        out.push(managed);
    }
    // One named rule per managed rule: the standard channel does not check that names are
    // unique, so canary numbers its own.
    for (name, rules) in [
        (match_rule_name(plan), match_rules),
        (sticky_rule_name(plan), sticky_rules),
    ] {
        for (i, mut rule) in rules.into_iter().enumerate() {
            let name = if i == 0 {
                name.clone()
            } else {
                format!("{name}-{i}")
            };
            if name.len() > MAX_NAME {
                return Err(format!(
                    "the rule name `{name}` would be longer than {MAX_NAME} characters: give \
                     the Rollout a shorter name"
                ));
            }
            rule["name"] = json!(name);
            out.push(rule);
        }
    }
    let matches: usize = out.iter().map(matches_len).sum();
    if out.len() > MAX_RULES || matches > MAX_MATCHES {
        return Err(format!(
            "the route would hold {} rules with {matches} matches, more than a route takes \
             ({MAX_RULES} rules, {MAX_MATCHES} matches): canary adds a rule per rule to the \
             Service for request matches and for a sticky canary",
            out.len()
        ));
    }
    Ok(out)
}

/// The most characters of a rule's name, and the most matches of one rule and conditions of
/// one kind in one match (the route CRDs' `maxLength` and `maxItems`).
const MAX_NAME: usize = 253;
const MAX_RULE_MATCHES: usize = 64;
const MAX_CONDITIONS: usize = 16;

/// A rule canary adds for the managed rule `rule`: `matches` to the canary backend alone, with
/// the managed rule's filters and timeouts (the canary gets the requests stable would, changed
/// the same way).
fn added_rule(rule: &Value, matches: Vec<Value>, backend: &Value) -> Result<Value, Why> {
    if matches.len() > MAX_RULE_MATCHES {
        return Err(format!(
            "would need a rule of {} matches, more than the {MAX_RULE_MATCHES} a rule takes",
            matches.len()
        ));
    }
    let mut out = json!({"matches": matches, "backendRefs": [backend]});
    for field in ["filters", "timeouts"] {
        if let Some(value) = rule.get(field) {
            out[field] = value.clone();
        }
    }
    // The route CRDs let `ReplacePrefixMatch` rewrite only the one `PathPrefix` match of a rule.
    let single_prefix =
        matches_len(&out) == 1 && out.pointer("/matches/0/path/type") == Some(&json!("PathPrefix"));
    if replaces_prefix(&out) && !single_prefix {
        return Err(
            "rewrites with ReplacePrefixMatch, which a rule of several matches (the rule's \
             matches times the Rollout's) cannot take"
                .to_owned(),
        );
    }
    Ok(out)
}

fn matches_len(rule: &Value) -> usize {
    rule.get("matches")
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
}

/// Whether a filter of `rule` (or of its backends) rewrites a path with `ReplacePrefixMatch`.
fn replaces_prefix(rule: &Value) -> bool {
    let list = |value: Option<&Value>| value.and_then(Value::as_array).cloned().unwrap_or_default();
    let mut filters = list(rule.get("filters"));
    for backend in list(rule.get("backendRefs")) {
        filters.extend(list(backend.get("filters")));
    }
    filters.iter().any(|filter| {
        ["/requestRedirect/path/type", "/urlRewrite/path/type"]
            .iter()
            .any(|pointer| filter.pointer(pointer) == Some(&json!("ReplacePrefixMatch")))
    })
}

/// Adds header `name: value` to the `field` list (`set` or `add`) of the `kind` filter of
/// `backend` (its only one of that kind, as the CRDs allow), making the filter when there is
/// none.
fn add_header(
    backend: &mut Value,
    kind: &str,
    field: &str,
    name: &str,
    value: &str,
) -> Result<(), Why> {
    let key = match kind {
        "RequestHeaderModifier" => "requestHeaderModifier",
        _ => "responseHeaderModifier",
    };
    let Some(object) = backend.as_object_mut() else {
        return Err("has a backend that is not a mapping".to_owned());
    };
    let filters = object.entry("filters").or_insert_with(|| json!([]));
    let Some(filters) = filters.as_array_mut() else {
        return Err("has backend filters that are not a list".to_owned());
    };
    if !filters
        .iter()
        .any(|filter| filter.get("type") == Some(&json!(kind)))
    {
        filters.push(json!({"type": kind, key: {}}));
    }
    let Some(modifier) = filters
        .iter_mut()
        .find(|filter| filter.get("type") == Some(&json!(kind)))
        .and_then(|filter| filter.get_mut(key))
        .and_then(Value::as_object_mut)
    else {
        return Err(format!("has a {kind} filter without {key}"));
    };
    let list = modifier.entry(field).or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return Err(format!("has a {kind} whose {field} is not a list"));
    };
    let named = |header: &Value| {
        header
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    };
    if list.iter().any(named) {
        return Err(format!(
            "already has the backend header {name} ({kind}), which canary needs"
        ));
    }
    if list.len() >= MAX_CONDITIONS {
        return Err(format!(
            "already has {MAX_CONDITIONS} headers in its backend's {kind}"
        ));
    }
    list.push(json!({"name": name, "value": value}));
    Ok(())
}

/// A sticky canary's cookie as canary writes it.
struct StickyCookie {
    /// The `Set-Cookie` header value the canary's answers add.
    set_cookie: String,
    /// The regular expression a `Cookie` header carrying it matches.
    pattern: String,
}

/// The cookie of a sticky canary, while the weights send requests to the canary. Its value is
/// the canary's revision (from the canary Deployment among `objects`), so a cookie of an
/// earlier release sends nobody to this one.
fn sticky(
    plan: &RolloutPlan,
    route: &RouteState,
    kind: GatewayRouteKind,
    objects: &Objects,
) -> Option<StickyCookie> {
    if route.weight == 0 || kind != GatewayRouteKind::HttpRoute {
        return None;
    }
    let (name, max_age) = sticky_cookie(settings(plan).ok()?)?;
    let revision = objects
        .get(plan.workload.kind, &plan.namespace, &plan.canary_workload())
        .and_then(|deployment| {
            deployment
                .pointer("/metadata/annotations")
                .and_then(|annotations| annotations.get(REVISION_ANNOTATION))
                .and_then(Value::as_str)
        })
        .unwrap_or("canary");
    let value: String = revision
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-' || *ch == '_')
        .take(64)
        .collect();
    let escaped: String = name
        .chars()
        .flat_map(|ch| {
            let special = !ch.is_ascii_alphanumeric() && ch != '-' && ch != '_';
            special.then_some('\\').into_iter().chain([ch])
        })
        .collect();
    Some(StickyCookie {
        set_cookie: format!(
            "{name}={value}; Max-Age={}; Path=/; HttpOnly",
            max_age.as_secs()
        ),
        pattern: format!("^(?:.*;\\s*)?{escaped}={value}(?:;.*)?$"),
    })
}

/// `base` (a rule's match) with the header condition `name` matching `pattern`.
fn with_header(base: &Value, name: &str, pattern: &str) -> Result<Value, Why> {
    let condition = json!({"name": name, "type": "RegularExpression", "value": pattern});
    add_condition(base.clone(), "headers", condition)
}

/// `out` with `condition` added to its `field` list; refused when the match has a condition
/// on that name already (it would not be the same requests), or as many as a match takes.
fn add_condition(mut out: Value, field: &str, condition: Value) -> Result<Value, Why> {
    let name = condition
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(object) = out.as_object_mut() else {
        return Err("has a match that is not a mapping".to_owned());
    };
    let list = object.entry(field).or_insert_with(|| json!([]));
    let Some(list) = list.as_array_mut() else {
        return Err(format!("has a match whose {field} is not a list"));
    };
    let named = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    };
    if list.iter().any(named) {
        return Err(format!(
            "matches on {name} already: a condition of the Rollout's on it would send the \
             canary requests the rule does not take"
        ));
    }
    if list.len() >= MAX_CONDITIONS {
        return Err(format!(
            "has {MAX_CONDITIONS} {field} conditions in a match already, as many as it takes"
        ));
    }
    list.push(condition);
    Ok(out)
}

/// `base` (a match of rule `index` of `rules`) with the conditions of `wanted` added; refused
/// when that would send the canary requests another rule of the route takes now.
fn combined(
    base: &Value,
    wanted: &RequestMatch,
    rules: &[Value],
    index: usize,
) -> Result<Value, Why> {
    let mut out = base.clone();
    let Some(object) = out.as_object_mut() else {
        return Err("has a match that is not a mapping".to_owned());
    };
    if let Some(uri) = &wanted.uri {
        let any_path = base.get("path").is_none_or(|path| {
            path.get("type") == Some(&json!("PathPrefix")) && path.get("value") == Some(&json!("/"))
        });
        if !any_path {
            return Err(
                "matches another path: a path condition goes only on a rule for every path \
                 (give the match without uri, or route that path in its own rule)"
                    .to_owned(),
            );
        }
        if let Some(other) = path_taken_elsewhere(uri, rules, index) {
            return Err(format!(
                "would, with the Rollout's path, take requests of rule {other}, whose path is \
                 among them: the canary would get requests that are not the Service's"
            ));
        }
        object.insert("path".to_owned(), path(uri));
    }
    if let Some(method) = &wanted.method {
        match base.get("method").and_then(Value::as_str) {
            Some(theirs) if theirs != method => {
                return Err(format!(
                    "matches method {theirs}: the Rollout's {method} requests are not its own"
                ));
            }
            _ => {
                object.insert("method".to_owned(), json!(method));
            }
        }
    }
    for (name, condition) in &wanted.headers {
        out = add_condition(out, "headers", condition_entry(name, condition))?;
    }
    for (name, condition) in &wanted.query_params {
        out = add_condition(out, "queryParams", condition_entry(name, condition))?;
    }
    Ok(out)
}

/// Another rule (than `index`) of `rules` whose path condition matches some requests `uri`
/// matches and that `uri` would now outrank: a `PathPrefix` other than `/` that is a prefix of
/// the Rollout's path, the same `Exact` path, an `Exact` path under the Rollout's prefix, or
/// any regular expression (whose precedence implementations choose).
fn path_taken_elsewhere(uri: &StringMatch, rules: &[Value], index: usize) -> Option<usize> {
    rules.iter().enumerate().find_map(|(i, rule)| {
        if i == index {
            return None;
        }
        let paths = rule
            .get("matches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("path"));
        let mut taken = false;
        for path in paths {
            let value = path.get("value").and_then(Value::as_str).unwrap_or("/");
            let kind = path
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("PathPrefix");
            taken |= match (kind, &uri.exact, &uri.prefix) {
                ("PathPrefix", _, _) if value == "/" => false,
                ("PathPrefix", Some(wanted), _) | ("PathPrefix", None, Some(wanted)) => {
                    segment_prefix(value, wanted)
                }
                ("Exact", Some(wanted), _) => value == wanted,
                ("Exact", None, Some(wanted)) => segment_prefix(wanted, value),
                _ => true,
            };
        }
        taken.then_some(i)
    })
}

/// Whether `prefix` matches `path` as a Gateway API `PathPrefix` does (whole segments).
fn segment_prefix(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn condition_entry(name: &str, condition: &StringMatch) -> Value {
    match (&condition.exact, &condition.regex) {
        (Some(value), _) => json!({"name": name, "type": "Exact", "value": value}),
        (None, Some(pattern)) => {
            json!({"name": name, "type": "RegularExpression", "value": pattern})
        }
        (None, None) => json!({"name": name, "type": "Exact", "value": ""}),
    }
}

fn path(uri: &StringMatch) -> Value {
    match (&uri.exact, &uri.prefix, &uri.regex) {
        (Some(value), _, _) => json!({"type": "Exact", "value": value}),
        (None, Some(value), _) => json!({"type": "PathPrefix", "value": value}),
        (None, None, Some(pattern)) => json!({"type": "RegularExpression", "value": pattern}),
        (None, None, None) => json!({"type": "PathPrefix", "value": "/"}),
    }
}
