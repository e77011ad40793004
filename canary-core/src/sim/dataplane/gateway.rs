//! The Gateway API data plane: which pods answer a request arriving at a `Gateway`, as the
//! specification of Gateway API v1.6.1 says an implementation routes HTTPRoutes.
//!
//! What the model follows (the `HTTPRoute` CRD's field descriptions, standard channel v1.6.1):
//! - A route takes part when one of its `parentRefs` names the Gateway (its namespace defaulting
//!   to the route's, `sectionName` naming a listener when set) and a listener admits it: the
//!   listener's `allowedRoutes.namespaces.from` (`Same`, the default, or `All`) and its hostname
//!   intersecting the route's `hostnames`. Unadmitted routes route nothing.
//! - A request's host must match one of the route's hostnames (all when it has none); a
//!   `*.example.com` wildcard matches one or more leading labels.
//! - Among the matches of every rule of every admitted route, the request takes the one with the
//!   most characters of matching non-wildcard hostname, then an `Exact` path over a prefix, the
//!   longest `PathPrefix`, a method match, the most header matches, the most query-parameter
//!   matches, then the oldest route (`creationTimestamp`), then `namespace/name` in alphabetical
//!   order, then the first rule in list order. No match: 404, answered by nobody.
//! - `PathPrefix` matches whole `/`-separated segments (`/api` matches `/api` and `/api/x`, not
//!   `/apis`); header names compare case-insensitively; a rule without `matches` matches every
//!   path (`PathPrefix /`).
//! - A rule's requests split over its `backendRefs` in proportion to their `weight` (default 1);
//!   a weight of 0 sends nothing. A backend that cannot be resolved (missing Service, another
//!   kind, another namespace without a `ReferenceGrant` allowing it) answers its share with a
//!   500, and a Service without ready endpoints with a 503: nobody serves that share. A rule whose
//!   weights are all 0 serves nobody.
//! - `RequestMirror` filters copy `percent` (or `fraction`) of the rule's requests to their
//!   backend, 100% when neither is set; the answers are dropped.
//! - A gRPC call (`content-type: application/grpc`) takes the GRPCRoutes for its host when
//!   there are any: a method condition matches the call's `/<service>/<method>` (`Exact` or
//!   `RegularExpression`, either part optional), and among matches the most characters of
//!   service, then of method, then the most header conditions win; no condition matches every
//!   call.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::{Caller, Request, Served, World, string_map};

/// The API group of the Gateway API kinds.
pub const GROUP: &str = "gateway.networking.k8s.io";

/// Who answers `request`, sent through the Gateway of its caller
/// ([`Caller::Gateway`]); nobody for other callers.
pub fn serve(world: &World, request: &Request) -> Served {
    let Caller::Gateway { namespace, name } = &request.caller else {
        return Served::nobody("Gateway API routes serve requests arriving at a Gateway");
    };
    let Some(gateway) = world.get("Gateway", namespace, name) else {
        return Served::nobody(format!("no Gateway {namespace}/{name}"));
    };
    let mut best: Option<Candidate<'_>> = None;
    // A gRPC request takes the GRPCRoutes for its host, when there are any; HTTPRoutes
    // otherwise (gRPC is HTTP/2, which they route too).
    let kinds: &[&str] = if is_grpc(request) {
        &["GRPCRoute", "HTTPRoute"]
    } else {
        &["HTTPRoute"]
    };
    for kind in kinds {
        for route in world.all(kind) {
            for candidate in candidates(world, gateway, route, request) {
                if best
                    .as_ref()
                    .is_none_or(|best| candidate.precedes(best) == Ordering::Less)
                {
                    best = Some(candidate);
                }
            }
        }
        if best.is_some() {
            break;
        }
    }
    match best {
        Some(best) => serve_rule(world, best.route, best.rule, request),
        None => Served::nobody(format!(
            "404: no HTTPRoute rule attached to Gateway {namespace}/{name} matches {}{}",
            request.host, request.path
        )),
    }
}

/// Whether `request` is a gRPC call (`content-type: application/grpc…`).
fn is_grpc(request: &Request) -> bool {
    request
        .headers
        .get("content-type")
        .is_some_and(|kind| kind.starts_with("application/grpc"))
}

/// One match of one rule that a request satisfies, with what ranks it.
struct Candidate<'a> {
    route: &'a Value,
    rule: &'a Value,
    /// Characters of the matching non-wildcard hostname, then of any matching hostname.
    hostname: (usize, usize),
    /// Characters of the matching gRPC service, then method (GRPCRoute).
    grpc_method: (usize, usize),
    exact_path: bool,
    prefix_len: usize,
    method: bool,
    headers: usize,
    query: usize,
    created: String,
    key: String,
    rule_index: usize,
}

impl Candidate<'_> {
    /// `Less` when `self` wins over `other`.
    fn precedes(&self, other: &Candidate<'_>) -> Ordering {
        other
            .hostname
            .cmp(&self.hostname)
            .then(other.grpc_method.cmp(&self.grpc_method))
            .then(other.exact_path.cmp(&self.exact_path))
            .then(other.prefix_len.cmp(&self.prefix_len))
            .then(other.method.cmp(&self.method))
            .then(other.headers.cmp(&self.headers))
            .then(other.query.cmp(&self.query))
            .then(self.created.cmp(&other.created))
            .then(self.key.cmp(&other.key))
            .then(self.rule_index.cmp(&other.rule_index))
    }
}

/// The matches of `route`'s rules that `request` satisfies, when `route` is attached to
/// `gateway`.
fn candidates<'a>(
    world: &World,
    gateway: &Value,
    route: &'a Value,
    request: &Request,
) -> Vec<Candidate<'a>> {
    let route_namespace = namespace_of(route);
    // The request arrives on a listener that admits the route and takes its host.
    let Some(hostname) =
        admitting_listeners(world, gateway, route)
            .iter()
            .find_map(|listener_host| {
                matching_hostname(route, listener_host.as_deref(), &request.host)
            })
    else {
        return Vec::new();
    };
    let rules = route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let created = route
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let key = format!("{route_namespace}/{}", name_of(route));
    let mut out = Vec::new();
    let grpc = route.get("kind").and_then(Value::as_str) == Some("GRPCRoute");
    for (rule_index, rule) in rules.iter().enumerate() {
        let every_path = [serde_json::json!({"path": {"type": "PathPrefix", "value": "/"}})];
        let every_call = [serde_json::json!({})];
        let matches = match rule.get("matches").and_then(Value::as_array) {
            Some(matches) if !matches.is_empty() => matches.as_slice(),
            _ if grpc => &every_call,
            _ => &every_path,
        };
        for found in matches {
            if grpc {
                let Some(grpc_method) = grpc_method_match(found.get("method"), &request.path)
                else {
                    continue;
                };
                if !headers_match(found.get("headers"), request) {
                    continue;
                }
                out.push(Candidate {
                    route,
                    rule,
                    hostname,
                    grpc_method,
                    exact_path: false,
                    prefix_len: 0,
                    method: false,
                    headers: array_len(found.get("headers")),
                    query: 0,
                    created: created.clone(),
                    key: key.clone(),
                    rule_index,
                });
                continue;
            }
            let Some(path) = path_match(found.get("path"), &request.path) else {
                continue;
            };
            if !headers_match(found.get("headers"), request)
                || !query_match(found.get("queryParams"), &request.query)
                || !method_match(found.get("method"), &request.method)
            {
                continue;
            }
            out.push(Candidate {
                route,
                rule,
                hostname,
                grpc_method: (0, 0),
                exact_path: path.exact,
                prefix_len: path.prefix_len,
                method: found.get("method").is_some(),
                headers: array_len(found.get("headers")),
                query: array_len(found.get("queryParams")),
                created: created.clone(),
                key: key.clone(),
                rule_index,
            });
        }
    }
    out
}

fn array_len(value: Option<&Value>) -> usize {
    value.and_then(Value::as_array).map_or(0, Vec::len)
}

fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The hostnames of the listeners of `gateway` that admit `route` (`None` for a listener
/// without a hostname).
fn admitting_listeners(world: &World, gateway: &Value, route: &Value) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let gateway_namespace = namespace_of(gateway);
    let route_namespace = namespace_of(route);
    let listeners = gateway
        .pointer("/spec/listeners")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let parents = route
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for parent in parents {
        let group = parent.get("group").and_then(Value::as_str).unwrap_or(GROUP);
        let kind = parent
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("Gateway");
        let namespace = parent
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(route_namespace);
        let named = group == GROUP
            && kind == "Gateway"
            && namespace == gateway_namespace
            && parent.get("name").and_then(Value::as_str) == Some(name_of(gateway));
        if !named {
            continue;
        }
        let section = parent.get("sectionName").and_then(Value::as_str);
        for listener in listeners {
            if section.is_some_and(|section| {
                listener.get("name").and_then(Value::as_str) != Some(section)
            }) {
                continue;
            }
            if !allows_namespace(world, listener, gateway_namespace, route_namespace) {
                continue;
            }
            let host = listener
                .get("hostname")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let intersects = match &host {
                None => true,
                Some(listener_host) => {
                    route_hostnames(route).is_empty()
                        || route_hostnames(route)
                            .iter()
                            .any(|route_host| hosts_intersect(listener_host, route_host))
                }
            };
            if intersects && !out.contains(&host) {
                out.push(host);
            }
        }
    }
    out
}

/// Whether `listener` takes routes from `route_namespace`: `allowedRoutes.namespaces.from` is
/// `Same` (the default), `All`, or `Selector` with labels the route's Namespace carries.
fn allows_namespace(
    world: &World,
    listener: &Value,
    gateway_namespace: &str,
    route_namespace: &str,
) -> bool {
    let namespaces = listener.pointer("/allowedRoutes/namespaces");
    match namespaces
        .and_then(|n| n.get("from"))
        .and_then(Value::as_str)
        .unwrap_or("Same")
    {
        "All" => true,
        "Selector" => {
            let wanted = string_map(namespaces.and_then(|n| n.pointer("/selector/matchLabels")));
            let labels = world
                .get("Namespace", "", route_namespace)
                .map(World::labels)
                .unwrap_or_default();
            !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
        }
        _ => gateway_namespace == route_namespace,
    }
}

fn route_hostnames(route: &Value) -> Vec<&str> {
    route
        .pointer("/spec/hostnames")
        .and_then(Value::as_array)
        .map(|hosts| hosts.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether `pattern` (`host` or `*.suffix`) matches `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Whether two hostnames (either possibly a wildcard) can match a common host.
fn hosts_intersect(a: &str, b: &str) -> bool {
    host_matches(a, b) || host_matches(b, a) || a == b
}

/// The (non-wildcard characters, characters) of the route hostname `host` matches, when the
/// listener's hostname matches it too; `(0, 0)` for a route without hostnames.
fn matching_hostname(
    route: &Value,
    listener_host: Option<&str>,
    host: &str,
) -> Option<(usize, usize)> {
    let host = host.to_ascii_lowercase();
    if listener_host.is_some_and(|listener| !host_matches(listener, &host)) {
        return None;
    }
    let hostnames = route_hostnames(route);
    if hostnames.is_empty() {
        return Some((0, 0));
    }
    hostnames
        .iter()
        .filter(|pattern| host_matches(pattern, &host))
        .map(|pattern| {
            let exact = if pattern.starts_with("*.") {
                0
            } else {
                pattern.len()
            };
            (exact, pattern.len())
        })
        .max()
}

/// The characters of the service and method a GRPCRoute method condition matched in the call
/// `path` (`/<service>/<method>`); `None` when it does not match. No condition matches every
/// call.
fn grpc_method_match(condition: Option<&Value>, path: &str) -> Option<(usize, usize)> {
    let Some(condition) = condition else {
        return Some((0, 0));
    };
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let wanted_service = condition.get("service").and_then(Value::as_str);
    let wanted_method = condition.get("method").and_then(Value::as_str);
    let regex = condition.get("type").and_then(Value::as_str) == Some("RegularExpression");
    let holds = |wanted: Option<&str>, actual: &str| match wanted {
        None => true,
        Some(wanted) if regex => full_match(wanted, actual),
        Some(wanted) => wanted == actual,
    };
    (holds(wanted_service, service) && holds(wanted_method, method)).then(|| {
        (
            wanted_service.map_or(0, str::len),
            wanted_method.map_or(0, str::len),
        )
    })
}

/// How a path condition matched.
struct PathMatched {
    exact: bool,
    prefix_len: usize,
}

/// The match of `path` against a path condition (absent: `PathPrefix /`).
fn path_match(condition: Option<&Value>, path: &str) -> Option<PathMatched> {
    let kind = condition
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("PathPrefix");
    let value = condition
        .and_then(|c| c.get("value"))
        .and_then(Value::as_str)
        .unwrap_or("/");
    match kind {
        "Exact" => (path == value).then_some(PathMatched {
            exact: true,
            prefix_len: 0,
        }),
        "PathPrefix" => {
            let prefix = value.trim_end_matches('/');
            let whole_segments = path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
                || prefix.is_empty();
            whole_segments.then_some(PathMatched {
                exact: false,
                prefix_len: value.len(),
            })
        }
        "RegularExpression" => full_match(value, path).then_some(PathMatched {
            exact: false,
            prefix_len: 0,
        }),
        _ => None,
    }
}

/// Whether `value` matches the regular expression `pattern` as a whole.
fn full_match(pattern: &str, value: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

/// Whether every header condition holds (names case-insensitive; `Exact` by default).
fn headers_match(conditions: Option<&Value>, request: &Request) -> bool {
    let headers = request.proxy_headers();
    all_hold(conditions, |name| {
        headers.get(&name.to_ascii_lowercase()).cloned()
    })
}

/// Whether every query-parameter condition holds (`Exact` by default).
fn query_match(conditions: Option<&Value>, query: &BTreeMap<String, String>) -> bool {
    all_hold(conditions, |name| query.get(name).cloned())
}

/// Whether every `{name, type, value}` condition holds for the value `lookup` finds by name.
fn all_hold(conditions: Option<&Value>, lookup: impl Fn(&str) -> Option<String>) -> bool {
    conditions
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .all(|condition| {
            let name = condition
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            value_match(condition, lookup(name).as_deref())
        })
}

fn value_match(condition: &Value, value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    let wanted = condition
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match condition
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("Exact")
    {
        "Exact" => value == wanted,
        "RegularExpression" => full_match(wanted, value),
        _ => false,
    }
}

fn method_match(condition: Option<&Value>, method: &str) -> bool {
    condition
        .and_then(Value::as_str)
        .is_none_or(|wanted| wanted == method)
}

/// Who answers `request` by `rule` of `route`: its backends by weight, its mirrors.
fn serve_rule(world: &World, route: &Value, rule: &Value, request: &Request) -> Served {
    let route_namespace = namespace_of(route);
    let backends = rule
        .get("backendRefs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let weight = |backend: &Value| backend.get("weight").and_then(Value::as_u64).unwrap_or(1);
    let total: u64 = backends.iter().map(weight).sum();
    if total == 0 {
        return Served::nobody(format!(
            "500: the rule of HTTPRoute {route_namespace}/{} matching {} has no backend with \
             weight",
            name_of(route),
            request.path
        ));
    }
    let mut served = Served::default();
    for backend in backends {
        let share = weight(backend) as f64 / total as f64;
        match resolve(world, route, backend) {
            Ok((namespace, service)) => {
                let endpoints = world.endpoints(&namespace, &service);
                served.spread(share, &endpoints, || {
                    format!("503: Service {namespace}/{service} has no ready endpoints")
                });
            }
            Err(why) => {
                if share > 0.0 {
                    served.unserved_because.get_or_insert(why);
                }
            }
        }
    }
    for filter in rule
        .get("filters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(mirror) = filter.get("requestMirror") else {
            continue;
        };
        let Some(backend) = mirror.get("backendRef") else {
            continue;
        };
        if let Ok((namespace, service)) = resolve(world, route, backend) {
            served.mirror(mirror_share(mirror), &world.endpoints(&namespace, &service));
        }
    }
    served
}

/// The share of requests a `RequestMirror` copies: `percent`, or `fraction`, or all.
fn mirror_share(mirror: &Value) -> f64 {
    if let Some(percent) = mirror.get("percent").and_then(Value::as_f64) {
        return (percent / 100.0).clamp(0.0, 1.0);
    }
    if let Some(fraction) = mirror.get("fraction") {
        let numerator = fraction
            .get("numerator")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let denominator = fraction
            .get("denominator")
            .and_then(Value::as_f64)
            .unwrap_or(100.0);
        if denominator > 0.0 {
            return (numerator / denominator).clamp(0.0, 1.0);
        }
        return 0.0;
    }
    1.0
}

/// The Service `backend` names, or why it cannot be used (the status reason an implementation
/// reports: `InvalidKind`, `BackendNotFound`, `RefNotPermitted`).
fn resolve(world: &World, route: &Value, backend: &Value) -> Result<(String, String), String> {
    let route_namespace = namespace_of(route);
    let group = backend.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = backend
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Service");
    let name = backend
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !group.is_empty() || kind != "Service" {
        return Err(format!("500: InvalidKind: backend {group}/{kind} {name}"));
    }
    let namespace = backend
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or(route_namespace);
    if namespace != route_namespace && !granted(world, route, namespace, name) {
        return Err(format!(
            "500: RefNotPermitted: no ReferenceGrant in {namespace} lets HTTPRoutes of \
             {route_namespace} use Service {name}"
        ));
    }
    if world.get("Service", namespace, name).is_none() {
        return Err(format!("500: BackendNotFound: Service {namespace}/{name}"));
    }
    Ok((namespace.to_owned(), name.to_owned()))
}

/// Whether a ReferenceGrant in `namespace` lets `route`'s namespace refer to Service `name`.
fn granted(world: &World, route: &Value, namespace: &str, name: &str) -> bool {
    let from_namespace = namespace_of(route);
    let route_kind = route
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("HTTPRoute");
    world
        .all("ReferenceGrant")
        .filter(|grant| namespace_of(grant) == namespace)
        .any(|grant| {
            let list = |field: &str| {
                grant
                    .pointer(&format!("/spec/{field}"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let from = list("from").iter().any(|from| {
                from.get("group").and_then(Value::as_str) == Some(GROUP)
                    && from.get("kind").and_then(Value::as_str) == Some(route_kind)
                    && from.get("namespace").and_then(Value::as_str) == Some(from_namespace)
            });
            let to = list("to").iter().any(|to| {
                to.get("group").and_then(Value::as_str) == Some("")
                    && to.get("kind").and_then(Value::as_str) == Some("Service")
                    && to
                        .get("name")
                        .and_then(Value::as_str)
                        .is_none_or(|granted| granted == name)
            });
            from && to
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sim::dataplane::PodRef;

    fn pod(namespace: &str, name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn service(namespace: &str, name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}})
    }

    fn gateway(from: &str) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "public", "namespace": "infra"},
               "spec": {"gatewayClassName": "example", "listeners": [
                   {"name": "http", "port": 80, "protocol": "HTTP",
                    "hostname": "*.example.com",
                    "allowedRoutes": {"namespaces": {"from": from}}}]}})
    }

    fn route(name: &str, created: &str, rules: Value) -> Value {
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
               "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
               "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                        "hostnames": ["shop.example.com"], "rules": rules}})
    }

    fn backend(name: &str, weight: u64) -> Value {
        json!({"name": name, "port": 80, "weight": weight})
    }

    fn world(extra: Vec<Value>) -> World {
        let mut objects = vec![
            gateway("All"),
            service("shop", "web", "web"),
            service("shop", "web-canary", "web-canary"),
            pod("shop", "web-1", "web"),
            pod("shop", "web-canary-1", "web-canary"),
        ];
        objects.extend(extra);
        World::new(objects)
    }

    fn at_gateway(path: &str) -> Request {
        Request::to("shop.example.com", path).from(Caller::Gateway {
            namespace: "infra".into(),
            name: "public".into(),
        })
    }

    fn canary_share(served: &Served) -> f64 {
        served.share(|pod: &PodRef| pod.name.starts_with("web-canary"))
    }

    #[test]
    fn weights_split_a_rule_and_zero_sends_nothing() {
        let split = world(vec![route(
            "web",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 75), backend("web-canary", 25)]}]),
        )]);
        let served = serve(&split, &at_gateway("/"));
        assert!((canary_share(&served) - 0.25).abs() < 1e-9);
        assert_eq!(served.unserved(), 0.0);
        let stable_only = world(vec![route(
            "web",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 1), backend("web-canary", 0)]}]),
        )]);
        assert_eq!(canary_share(&serve(&stable_only, &at_gateway("/x"))), 0.0);
        let nothing = world(vec![route(
            "web",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 0), backend("web-canary", 0)]}]),
        )]);
        assert_eq!(serve(&nothing, &at_gateway("/")).unserved(), 1.0);
    }

    #[test]
    fn the_rule_with_more_header_matches_wins_whatever_its_place() {
        let rules = json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [backend("web", 1)]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                          "headers": [{"name": "X-Canary", "value": "on"}]}],
             "backendRefs": [backend("web-canary", 1)]}
        ]);
        let world = world(vec![route("web", "2026-01-01T00:00:00Z", rules)]);
        let plain = serve(&world, &at_gateway("/cart"));
        assert_eq!(canary_share(&plain), 0.0);
        let matched = serve(&world, &at_gateway("/cart").header("x-canary", "on"));
        assert_eq!(canary_share(&matched), 1.0);
    }

    #[test]
    fn an_exact_path_beats_a_prefix_and_a_longer_prefix_a_shorter_one() {
        let rules = json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
             "backendRefs": [backend("web-canary", 1)]},
            {"matches": [{"path": {"type": "Exact", "value": "/api/v1"}}],
             "backendRefs": [backend("web", 1)]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
             "backendRefs": [backend("web", 1)]}
        ]);
        let world = world(vec![route("web", "2026-01-01T00:00:00Z", rules)]);
        assert_eq!(canary_share(&serve(&world, &at_gateway("/api/v2"))), 1.0);
        assert_eq!(canary_share(&serve(&world, &at_gateway("/api/v1"))), 0.0);
        // Whole segments: `/apis` is not under `/api`.
        assert_eq!(canary_share(&serve(&world, &at_gateway("/apis"))), 0.0);
    }

    #[test]
    fn between_routes_the_oldest_wins_then_the_name() {
        let old = route(
            "b-old",
            "2025-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web-canary", 1)]}]),
        );
        let new = route(
            "a-new",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 1)]}]),
        );
        let world = world(vec![new, old]);
        assert_eq!(canary_share(&serve(&world, &at_gateway("/"))), 1.0);
    }

    #[test]
    fn unresolvable_backends_and_empty_services_serve_nobody_their_share() {
        let rules = json!([{"backendRefs": [
            backend("web", 50),
            {"name": "web", "namespace": "other", "port": 80, "weight": 25},
            backend("missing", 25)
        ]}]);
        let world = world(vec![
            route("web", "2026-01-01T00:00:00Z", rules),
            service("other", "web", "nothing-runs-this"),
        ]);
        let served = serve(&world, &at_gateway("/"));
        assert!((served.unserved() - 0.5).abs() < 1e-9, "{served:?}");
        assert!(served.unserved_because.is_some());
    }

    #[test]
    fn a_reference_grant_lets_a_route_use_a_service_of_another_namespace() {
        let rules = json!([{"backendRefs": [
            {"name": "web", "namespace": "other", "port": 80}
        ]}]);
        let grant = json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "shop-routes", "namespace": "other"},
            "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "shop"}],
                     "to": [{"group": "", "kind": "Service"}]}});
        let without = world(vec![
            route("web", "2026-01-01T00:00:00Z", rules.clone()),
            service("other", "web", "web-other"),
            pod("other", "web-other-1", "web-other"),
        ]);
        assert_eq!(serve(&without, &at_gateway("/")).unserved(), 1.0);
        let with = world(vec![
            route("web", "2026-01-01T00:00:00Z", rules),
            service("other", "web", "web-other"),
            pod("other", "web-other-1", "web-other"),
            grant,
        ]);
        assert_eq!(serve(&with, &at_gateway("/")).unserved(), 0.0);
    }

    #[test]
    fn a_listener_admits_routes_of_its_own_namespace_unless_told_otherwise() {
        let rules = json!([{"backendRefs": [backend("web", 1)]}]);
        let mut objects = vec![route("web", "2026-01-01T00:00:00Z", rules)];
        objects.push(gateway("Same"));
        let mut world_objects = world(Vec::new())
            .objects()
            .iter()
            .cloned()
            .collect::<Vec<_>>();
        world_objects.retain(|o| o["kind"] != "Gateway");
        world_objects.extend(objects);
        let same = World::new(world_objects);
        assert_eq!(serve(&same, &at_gateway("/")).unserved(), 1.0);
    }

    #[test]
    fn a_host_outside_the_route_or_listener_is_not_routed() {
        let world = world(vec![route(
            "web",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 1)]}]),
        )]);
        let elsewhere = Request::to("api.example.com", "/").from(Caller::Gateway {
            namespace: "infra".into(),
            name: "public".into(),
        });
        assert_eq!(serve(&world, &elsewhere).unserved(), 1.0);
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
    }

    #[test]
    fn a_request_takes_whichever_listener_admits_its_host() {
        let two = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "infra"},
            "spec": {"gatewayClassName": "example", "listeners": [
                {"name": "shop", "port": 80, "protocol": "HTTP", "hostname": "shop.example.com",
                 "allowedRoutes": {"namespaces": {"from": "All"}}},
                {"name": "api", "port": 80, "protocol": "HTTP", "hostname": "api.example.com",
                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}});
        let mut both = route(
            "web",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 1)]}]),
        );
        both["spec"]["hostnames"] = json!([]);
        let world = World::new(vec![
            two,
            service("shop", "web", "web"),
            pod("shop", "web-1", "web"),
            both,
        ]);
        for host in ["shop.example.com", "api.example.com"] {
            let request = Request::to(host, "/").from(Caller::Gateway {
                namespace: "infra".into(),
                name: "public".into(),
            });
            assert_eq!(serve(&world, &request).unserved(), 0.0, "{host}");
        }
    }

    #[test]
    fn a_grpc_call_takes_the_grpc_route_by_service_and_method() {
        let grpc = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": "pay", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                     "hostnames": ["shop.example.com"],
                     "rules": [
                         {"backendRefs": [backend("web", 1)]},
                         {"matches": [{"method": {"service": "shop.Cart", "method": "Checkout"}}],
                          "backendRefs": [backend("web-canary", 1)]}]}});
        let world = world(vec![grpc]);
        let call = |path: &str| {
            let mut request = at_gateway(path).header("content-type", "application/grpc");
            request.method = "POST".into();
            request
        };
        assert_eq!(
            canary_share(&serve(&world, &call("/shop.Cart/Checkout"))),
            1.0
        );
        assert_eq!(canary_share(&serve(&world, &call("/shop.Cart/Add"))), 0.0);
        assert_eq!(serve(&world, &call("/shop.Cart/Add")).unserved(), 0.0);
        // A plain HTTP request is no call: no HTTPRoute routes it here.
        assert_eq!(serve(&world, &at_gateway("/shop.Cart/Add")).unserved(), 1.0);
    }

    #[test]
    fn a_mirror_copies_its_percent_and_answers_nothing() {
        let world = world(vec![route(
            "web",
            "2026-01-01T00:00:00Z",
            json!([{"backendRefs": [backend("web", 1)],
                    "filters": [{"type": "RequestMirror", "requestMirror": {
                        "backendRef": {"name": "web-canary", "port": 80}, "percent": 20}}]}]),
        )]);
        let served = serve(&world, &at_gateway("/"));
        assert_eq!(canary_share(&served), 0.0);
        let mirrored: f64 = served.mirrored.values().sum();
        assert!((mirrored - 0.2).abs() < 1e-9);
    }
}
