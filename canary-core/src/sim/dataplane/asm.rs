//! The Alibaba Cloud Service Mesh (ASM) traffic lanes: which pods answer a request that enters
//! through a lane group's ingress gateway, or that one service of a lane group sends another
//! with the lane's route header propagated.
//!
//! The objects, as Alibaba documents them ("ASMSwimLaneGroup and ASMSwimLane field
//! reference", and the end-to-end canary release with Kruise Rollout walkthrough):
//!
//! - `ASMSwimLaneGroup` (`istio.alibabacloud.com/v1`, cluster-scoped): `spec.services` (the
//!   services lanes govern, by `name` and `namespace`), `spec.ingress.gateway` (`name`,
//!   `namespace` of the ingress gateway), `spec.ingress.ingressRouting`
//!   (`ingressRoutingStrategy`: `rule_based` or `weighted`; `weightedRoutingRule` with `hosts`
//!   and `requestMatches` for the weighted one), `spec.isPermissive` and
//!   `spec.permissiveModeConfiguration` (`fallbackTarget`, the base lane; `routeHeader`, the
//!   header whose value names a lane; `traceHeader`).
//! - `ASMSwimLane` (cluster-scoped, label `swimlane-group: <group>`): its name is the lane's;
//!   `spec.labelSelector` (the pod labels of the lane's versions, e.g. `ASM_TRAFFIC_TAG:
//!   canary`), `spec.services` (the group's services the lane has a version of),
//!   `spec.ingressRules` (rule-based: `hosts`, `match`, `online`, `route.destination.host`)
//!   and `spec.ingressWeight` (weighted: `destination.host` and `weight`).
//!
//! How a request is answered:
//!
//! - A lane's pods for a service are the service's endpoints (by the Service's selector: the
//!   lane subsets ASM writes into the service's DestinationRule select among them) that carry
//!   every label of the lane's `labelSelector`.
//! - Through the gateway, rule-based: a lane gets a request only when one of its own online
//!   ingress rules admits it (Alibaba's API reference, `UpdateSwimLaneGroup`:
//!   `IngressRoutingStrategy`); the rules become HTTP routes of the gateway, and the first
//!   route whose hosts and match admit the request sends it to that lane's pods of the rule's
//!   destination. The routes are tried in lane order (oldest lane first, then by name: the
//!   order in which Istio merges the routes of the VirtualServices bound to one gateway host,
//!   istio `pilot/pkg/model` `sortConfigByCreationTime`; in which order ASM itself lists the
//!   lanes' routes is not documented), except that every catch-all route (URI absent, prefix
//!   `/` or regex `.*`, and no header or query match) is tried after all the others, as
//!   Istio's gateway does (`pilot/pkg/networking/core/route/route.go`: `SortVHostRoutes`,
//!   `IsCatchAllRoute`; called by `buildGatewayHTTPRouteConfig`). Weighted: a request the
//!   group's `weightedRoutingRule` admits is split between the lanes by their `ingressWeight`.
//!   A request no rule admits is answered by nobody (Envoy's 404 `NR`).
//! - Between services, a request carries the route header (propagated along the call chain);
//!   its value names the lane. A request without it, or naming no lane, goes to the base lane
//!   in permissive mode.
//! - Permissive mode: when the lane does not list the service, or has no ready pods of it, the
//!   request falls back to the base lane (`fallbackTarget`), as the `fallback` of the routes
//!   ASM generates does. Strict mode has no fallback: the request is answered by nobody. The
//!   base lane itself has no fallback: if the service's pods lack its tag, nobody answers.
//! - A service of no lane group is plain Kubernetes: its Service's endpoints answer.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::{Caller, PodRef, Request, Served, World, service_of_host, string_map};

/// The route header when a group names none (the one Alibaba's examples use).
const DEFAULT_ROUTE_HEADER: &str = "x-asm-prefer-tag";

/// Who answers `request` in `world`.
pub fn serve(world: &World, request: &Request) -> Served {
    match &request.caller {
        Caller::Gateway { namespace, name } => {
            let groups: Vec<Group<'_>> = Group::all(world)
                .into_iter()
                .filter(|g| g.gateway == (namespace.as_str(), name.as_str()))
                .collect();
            if groups.is_empty() {
                return Served::nobody(format!(
                    "no lane group enters through gateway {namespace}/{name}"
                ));
            }
            for group in &groups {
                if let Some(served) = group.ingress(world, request) {
                    return served;
                }
            }
            Served::nobody(format!(
                "no ingress rule of gateway {namespace}/{name} admits {} {}{} (404)",
                request.method, request.host, request.path
            ))
        }
        Caller::Sidecar { namespace } => {
            let Some((svc_namespace, service)) = service_of_host(&request.host, namespace) else {
                return Served::nobody(format!("{} names no Service", request.host));
            };
            let groups = Group::all(world);
            let Some(group) = groups.iter().find(|g| g.governs(&svc_namespace, &service)) else {
                let mut served = Served::default();
                let endpoints = world.endpoints(&svc_namespace, &service);
                served.spread(1.0, &endpoints, || {
                    format!("no endpoints for {svc_namespace}/{service}")
                });
                return served;
            };
            let named = request.headers.get(&group.route_header).map(String::as_str);
            group.to_lane(world, named, &svc_namespace, &service)
        }
        Caller::IngressController => Served::nobody("an ingress controller is not an ASM gateway"),
    }
}

/// A lane group and its lanes.
#[derive(Debug, Clone)]
struct Group<'a> {
    name: String,
    /// The ingress gateway, as `(namespace, name)`.
    gateway: (&'a str, &'a str),
    services: Vec<(String, String)>,
    weighted: bool,
    weighted_rule: &'a Value,
    permissive: bool,
    fallback: Option<String>,
    route_header: String,
    lanes: Vec<Lane<'a>>,
}

/// One lane of a group.
#[derive(Debug, Clone)]
struct Lane<'a> {
    name: String,
    selector: BTreeMap<String, String>,
    services: Vec<(String, String)>,
    object: &'a Value,
}

/// The `(namespace, name)` pairs of a `services` list.
fn service_refs(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    Some((
                        s.get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("default")
                            .to_owned(),
                        s.get("name")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

impl<'a> Group<'a> {
    /// Every lane group of `world` with its lanes, oldest lane first.
    fn all(world: &'a World) -> Vec<Group<'a>> {
        world
            .all("ASMSwimLaneGroup")
            .filter_map(|group| {
                let name = text(group, "/metadata/name")?.to_owned();
                let mut lanes: Vec<Lane<'a>> = world
                    .all("ASMSwimLane")
                    .filter(|l| World::labels(l).get("swimlane-group") == Some(&name))
                    .filter_map(|object| {
                        Some(Lane {
                            name: text(object, "/metadata/name")?.to_owned(),
                            selector: string_map(object.pointer("/spec/labelSelector")),
                            services: service_refs(object.pointer("/spec/services")),
                            object,
                        })
                    })
                    .collect();
                lanes.sort_by_key(|l| {
                    (
                        text(l.object, "/metadata/creationTimestamp")
                            .unwrap_or_default()
                            .to_owned(),
                        l.name.clone(),
                    )
                });
                let permissive_conf = group.pointer("/spec/permissiveModeConfiguration");
                let conf_text = |key: &str| {
                    permissive_conf
                        .and_then(|c| c.get(key))
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                };
                Some(Group {
                    gateway: (
                        text(group, "/spec/ingress/gateway/namespace").unwrap_or("istio-system"),
                        text(group, "/spec/ingress/gateway/name").unwrap_or_default(),
                    ),
                    services: service_refs(group.pointer("/spec/services")),
                    weighted: text(group, "/spec/ingress/ingressRouting/ingressRoutingStrategy")
                        == Some("weighted"),
                    weighted_rule: group
                        .pointer("/spec/ingress/ingressRouting/weightedRoutingRule")
                        .unwrap_or(&Value::Null),
                    permissive: group
                        .pointer("/spec/isPermissive")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    fallback: conf_text("fallbackTarget").map(str::to_owned),
                    route_header: conf_text("routeHeader")
                        .unwrap_or(DEFAULT_ROUTE_HEADER)
                        .to_ascii_lowercase(),
                    name,
                    lanes,
                })
            })
            .collect()
    }

    /// True when the group lists Service `namespace/name`.
    fn governs(&self, namespace: &str, name: &str) -> bool {
        self.services
            .iter()
            .any(|(ns, n)| ns == namespace && n == name)
    }

    fn lane(&self, name: &str) -> Option<&Lane<'a>> {
        self.lanes.iter().find(|l| l.name == name)
    }

    /// What the group's gateway does with `request`: `None` when no ingress route of this group
    /// admits it.
    fn ingress(&self, world: &World, request: &Request) -> Option<Served> {
        if self.weighted {
            let rule = self.weighted_rule;
            let matched = hosts_admit(rule.get("hosts"), &request.host)
                && matches_any(rule.get("requestMatches"), request);
            if !matched {
                return None;
            }
            let weights: Vec<(&Lane<'a>, f64, &str)> = self
                .lanes
                .iter()
                .filter_map(|lane| {
                    let weight = lane
                        .object
                        .pointer("/spec/ingressWeight/weight")?
                        .as_f64()?;
                    let host = text(lane.object, "/spec/ingressWeight/destination/host")?;
                    Some((lane, weight, host))
                })
                .filter(|(_, weight, _)| *weight > 0.0)
                .collect();
            let total: f64 = weights.iter().map(|(_, w, _)| w).sum();
            if total <= 0.0 {
                return Some(Served::nobody(format!(
                    "no lane of group {} has an ingress weight",
                    self.name
                )));
            }
            let mut served = Served::default();
            for (lane, weight, host) in weights {
                let part = self.to_host(world, Some(&lane.name), host);
                served.add_scaled(&part, weight / total);
            }
            return Some(served);
        }
        // One gateway route per match of each online rule (Istio makes one Envoy route of
        // each `HTTPMatchRequest`), in lane order.
        let routes: Vec<(&Lane<'a>, &Value, Option<&Value>)> = self
            .lanes
            .iter()
            .flat_map(|lane| {
                lane.object
                    .pointer("/spec/ingressRules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|r| r.get("online").and_then(Value::as_bool) != Some(false))
                    .flat_map(move |rule| match rule.get("match") {
                        Some(Value::Array(list)) if !list.is_empty() => list
                            .iter()
                            .map(|m| (lane, rule, Some(m)))
                            .collect::<Vec<_>>(),
                        other => vec![(lane, rule, other)],
                    })
            })
            .collect();
        // Istio's gateway keeps the order of the other routes and moves the catch-alls last.
        let (catch_all, specific): (Vec<_>, Vec<_>) = routes
            .into_iter()
            .partition(|(_, _, matched)| is_catch_all(*matched));
        specific
            .into_iter()
            .chain(catch_all)
            .find(|(_, rule, matched)| {
                hosts_admit(rule.get("hosts"), &request.host) && matches_any(*matched, request)
            })
            .map(|(lane, rule, _)| {
                let host = text(rule, "/route/destination/host").unwrap_or_default();
                self.to_host(world, Some(&lane.name), host)
            })
    }

    /// A request entering lane `lane` for the service `host` names.
    fn to_host(&self, world: &World, lane: Option<&str>, host: &str) -> Served {
        let Some((namespace, service)) = service_of_host(host, "default") else {
            return Served::nobody(format!("{host} names no Service"));
        };
        if !self.governs(&namespace, &service) {
            return Served::nobody(format!(
                "lane group {} has no subsets for {namespace}/{service}",
                self.name
            ));
        }
        self.to_lane(world, lane, &namespace, &service)
    }

    /// A request for Service `namespace/service` in the lane `named` names (none: no lane).
    fn to_lane(
        &self,
        world: &World,
        named: Option<&str>,
        namespace: &str,
        service: &str,
    ) -> Served {
        let chosen = named.and_then(|n| self.lane(n));
        if let Some(lane) = chosen {
            let pods = lane.pods(world, namespace, service);
            if !pods.is_empty() {
                let mut served = Served::default();
                served.spread(1.0, &pods, String::new);
                return served;
            }
        }
        let why = match (named, chosen) {
            (_, Some(lane)) if !lane.lists(namespace, service) => {
                format!("lane {} has no version of {namespace}/{service}", lane.name)
            }
            (_, Some(lane)) => format!(
                "lane {} has no ready pods of {namespace}/{service} with {:?}",
                lane.name, lane.selector
            ),
            (Some(name), None) => format!("lane group {} has no lane {name}", self.name),
            (None, None) => format!("the request names no lane of group {}", self.name),
        };
        let Some(base) = self.fallback.as_deref().filter(|_| self.permissive) else {
            return Served::nobody(why);
        };
        if chosen.is_some_and(|l| l.name == base) {
            return Served::nobody(why);
        }
        let pods = self
            .lane(base)
            .map(|l| l.pods(world, namespace, service))
            .unwrap_or_default();
        let mut served = Served::default();
        served.spread(1.0, &pods, || {
            format!("{why}, and the base lane {base} has no ready pods of {namespace}/{service}")
        });
        served
    }
}

impl Lane<'_> {
    /// True when the lane lists Service `namespace/name`.
    fn lists(&self, namespace: &str, name: &str) -> bool {
        self.services
            .iter()
            .any(|(ns, n)| ns == namespace && n == name)
    }

    /// The lane's ready pods of Service `namespace/name`: none when the lane does not list it.
    fn pods(&self, world: &World, namespace: &str, name: &str) -> Vec<PodRef> {
        if !self.lists(namespace, name) || self.selector.is_empty() {
            return Vec::new();
        }
        world
            .endpoints(namespace, name)
            .into_iter()
            .filter(|pod| {
                let labels = world.pod(pod).map(World::labels).unwrap_or_default();
                self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect()
    }
}

/// True when `hosts` (absent or empty: any) admits `host`: `*`, the host itself, or
/// `*.suffix`.
fn hosts_admit(hosts: Option<&Value>, host: &str) -> bool {
    let Some(hosts) = hosts.and_then(Value::as_array).filter(|h| !h.is_empty()) else {
        return true;
    };
    hosts.iter().filter_map(Value::as_str).any(|h| {
        h == "*"
            || h.eq_ignore_ascii_case(host)
            || h.strip_prefix('*')
                .is_some_and(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
    })
}

/// True when a gateway route with match `matched` (one `HTTPMatchRequest`, or none) is a
/// catch-all for Istio's gateway: no header, query or method condition and a URI that is
/// absent, prefix `/` or regex `.*` (istio `pilot/pkg/networking/core/route/route.go`:
/// `IsCatchAllRoute`, on the Envoy route the match becomes; a method match becomes a
/// `:method` header match).
fn is_catch_all(matched: Option<&Value>) -> bool {
    let Some(m) = matched.filter(|m| !m.is_null()) else {
        return true;
    };
    let empty = |key: &str| {
        m.get(key)
            .is_none_or(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty()))
    };
    let uri_all = match m.get("uri") {
        None | Some(Value::Null) => true,
        Some(uri) => {
            uri.as_object().is_some_and(|o| o.is_empty())
                || uri.get("prefix").and_then(Value::as_str) == Some("/")
                || uri.get("regex").and_then(Value::as_str) == Some(".*")
        }
    };
    uri_all && empty("headers") && empty("queryParams") && empty("method")
}

/// True when `request` meets one of `matches` (an Istio `HTTPMatchRequest`, or a list of them;
/// absent or empty: every request).
fn matches_any(matches: Option<&Value>, request: &Request) -> bool {
    match matches {
        None | Some(Value::Null) => true,
        Some(Value::Array(list)) => list.is_empty() || list.iter().any(|m| http_match(m, request)),
        Some(one) => http_match(one, request),
    }
}

/// An Istio `HTTPMatchRequest`: `uri`, `method`, `headers` and `queryParams` by `exact`,
/// `prefix` or `regex` (RE2, whole value), all of which must hold.
fn http_match(matched: &Value, request: &Request) -> bool {
    let uri_ok = matched
        .get("uri")
        .is_none_or(|m| string_match(m, Some(&request.path)));
    let method_ok = matched
        .get("method")
        .is_none_or(|m| string_match(m, Some(&request.method)));
    let sent = request.proxy_headers();
    let headers_ok = matched
        .get("headers")
        .and_then(Value::as_object)
        .is_none_or(|headers| {
            headers.iter().all(|(name, m)| {
                string_match(m, sent.get(&name.to_ascii_lowercase()).map(String::as_str))
            })
        });
    let query_ok = matched
        .get("queryParams")
        .and_then(Value::as_object)
        .is_none_or(|params| {
            params
                .iter()
                .all(|(name, m)| string_match(m, request.query.get(name).map(String::as_str)))
        });
    uri_ok && method_ok && headers_ok && query_ok
}

/// An Istio `StringMatch` against a value (`None`: absent, which only matches nothing).
fn string_match(m: &Value, got: Option<&str>) -> bool {
    let Some(got) = got else { return false };
    if let Some(exact) = m.get("exact").and_then(Value::as_str) {
        got == exact
    } else if let Some(prefix) = m.get("prefix").and_then(Value::as_str) {
        got.starts_with(prefix)
    } else if let Some(regex) = m.get("regex").and_then(Value::as_str) {
        Regex::new(&format!("^(?:{regex})$")).is_ok_and(|re| re.is_match(got))
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod of `app` in `default` with the lane tag `tag` (none: untagged).
    fn pod(name: &str, app: &str, tag: Option<&str>, ready: bool) -> Value {
        let mut labels = json!({"app": app});
        if let Some(tag) = tag {
            labels["ASM_TRAFFIC_TAG"] = json!(tag);
        }
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default", "labels": labels},
               "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn service(app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": app, "namespace": "default"},
               "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8000}]}})
    }

    fn services(names: &[&str]) -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| json!({"name": n, "namespace": "default", "cluster": {"name": "test"}}))
                .collect(),
        )
    }

    /// The lane group of the end-to-end walkthrough: mocka, mockb, mockc behind
    /// `istio-system/ingressgateway`, permissive with fallback to `base`.
    fn group(strategy: &str, permissive: bool) -> Value {
        json!({"apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLaneGroup",
               "metadata": {"name": "rollout"},
               "spec": {"ingress": {"gateway": {"name": "ingressgateway", "namespace": "istio-system", "type": "ASM"},
                                    "ingressRouting": {"ingressRoutingStrategy": strategy,
                                                       "weightedRoutingRule": {"hosts": ["*"],
                                                                               "requestMatches": [{"uri": {"exact": "/mock"}}]}}},
                        "isPermissive": permissive,
                        "permissiveModeConfiguration": {"fallbackTarget": "base",
                                                        "routeHeader": "x-asm-prefer-tag",
                                                        "traceHeader": "my-request-id"},
                        "services": services(&["mocka", "mockb", "mockc"])}})
    }

    fn lane(name: &str, members: &[&str], weight: Option<u64>) -> Value {
        let mut lane = json!({"apiVersion": "istio.alibabacloud.com/v1", "kind": "ASMSwimLane",
               "metadata": {"name": name, "labels": {"swimlane-group": "rollout"}},
               "spec": {"labelSelector": {"ASM_TRAFFIC_TAG": name},
                        "services": services(members),
                        "ingressRules": [{"hosts": ["*"], "name": name, "online": true,
                                          "match": {"headers": {"x-asm-prefer-tag": {"exact": name}},
                                                    "uri": {"exact": "/mock"}},
                                          "route": {"destination": {"host": "mocka.default.svc.cluster.local"}}}]}});
        if let Some(weight) = weight {
            lane["spec"]["ingressWeight"] = json!({"destination": {"host": "mocka.default.svc.cluster.local"}, "weight": weight});
        }
        lane
    }

    /// The walkthrough after mocka's canary started: base pods of all three, a canary mocka.
    fn world(group: Value, canary_members: &[&str], extra: Vec<Value>) -> World {
        let mut objects = vec![
            group,
            lane("base", &["mocka", "mockb", "mockc"], None),
            lane("canary", canary_members, None),
            service("mocka"),
            service("mockb"),
            service("mockc"),
            pod("mocka-v1", "mocka", Some("base"), true),
            pod("mockb-v1", "mockb", Some("base"), true),
            pod("mockc-v1", "mockc", Some("base"), true),
            pod("mocka-v2", "mocka", Some("canary"), true),
        ];
        objects.extend(extra);
        World::new(objects)
    }

    fn gateway() -> Caller {
        Caller::Gateway {
            namespace: "istio-system".into(),
            name: "ingressgateway".into(),
        }
    }

    fn entering(lane: Option<&str>) -> Request {
        let request = Request::to("shop.example.com", "/mock").from(gateway());
        match lane {
            Some(lane) => request.header("x-asm-prefer-tag", lane),
            None => request,
        }
    }

    fn only(served: &Served, name: &str) -> bool {
        served.pods.len() == 1 && served.share(|p| p.name == name) > 1.0 - 1e-9
    }

    #[test]
    fn the_route_header_picks_the_lane_at_the_gateway() {
        let world = world(group("rule_based", true), &["mocka"], vec![]);
        assert!(only(&serve(&world, &entering(Some("base"))), "mocka-v1"));
        assert!(only(&serve(&world, &entering(Some("canary"))), "mocka-v2"));
    }

    #[test]
    fn a_request_no_ingress_rule_admits_is_answered_by_nobody() {
        let world = world(group("rule_based", true), &["mocka"], vec![]);
        let served = serve(&world, &entering(None));
        assert!(served.pods.is_empty());
        assert!(served.unserved_because.is_some());
        let other_path = Request::to("shop.example.com", "/other")
            .from(gateway())
            .header("x-asm-prefer-tag", "canary");
        assert!(serve(&world, &other_path).pods.is_empty());
        let other_gateway = entering(Some("base")).from(Caller::Gateway {
            namespace: "istio-system".into(),
            name: "other".into(),
        });
        assert!(serve(&world, &other_gateway).pods.is_empty());
    }

    /// The walkthrough's lanes with the base lane's rule matching `base_match` (no route
    /// header), the base lane created at `base_at` and the canary lane at `canary_at`.
    fn world_with_base_rule(base_match: Value, base_at: &str, canary_at: &str) -> World {
        let mut base = lane("base", &["mocka", "mockb", "mockc"], None);
        base["spec"]["ingressRules"][0]["match"] = base_match;
        base["metadata"]["creationTimestamp"] = json!(base_at);
        let mut canary = lane("canary", &["mocka"], None);
        canary["metadata"]["creationTimestamp"] = json!(canary_at);
        World::new(vec![
            group("rule_based", true),
            base,
            canary,
            service("mocka"),
            pod("mocka-v1", "mocka", Some("base"), true),
            pod("mocka-v2", "mocka", Some("canary"), true),
        ])
    }

    const EARLY: &str = "2026-01-01T00:00:00Z";
    const LATE: &str = "2026-01-01T00:00:05Z";

    #[test]
    fn a_catch_all_rule_is_tried_after_every_other_route_whatever_the_lane_order() {
        for (base_at, canary_at) in [(EARLY, LATE), (LATE, EARLY)] {
            for base_match in [json!({}), json!({"uri": {"prefix": "/"}})] {
                let world = world_with_base_rule(base_match.clone(), base_at, canary_at);
                let plain = Request::to("shop.example.com", "/mock").from(gateway());
                assert!(only(&serve(&world, &plain), "mocka-v1"), "{base_match}");
                assert!(
                    only(&serve(&world, &entering(Some("canary"))), "mocka-v2"),
                    "{base_match}, base lane created {base_at}"
                );
                let elsewhere = Request::to("shop.example.com", "/other").from(gateway());
                assert!(only(&serve(&world, &elsewhere), "mocka-v1"));
            }
        }
    }

    #[test]
    fn narrower_rules_are_tried_in_lane_order() {
        let exact = json!({"uri": {"exact": "/mock"}});
        // The canary lane's routes first: the header request reaches it.
        let world = world_with_base_rule(exact.clone(), LATE, EARLY);
        assert!(only(&serve(&world, &entering(Some("canary"))), "mocka-v2"));
        assert!(only(&serve(&world, &entering(None)), "mocka-v1"));
        // The base lane's first: its rule, which names no header, takes it.
        let world = world_with_base_rule(exact.clone(), EARLY, LATE);
        assert!(only(&serve(&world, &entering(Some("canary"))), "mocka-v1"));
        assert!(only(&serve(&world, &entering(None)), "mocka-v1"));
        // Created at once: by name.
        let world = world_with_base_rule(exact, EARLY, EARLY);
        assert!(only(&serve(&world, &entering(Some("canary"))), "mocka-v1"));
    }

    #[test]
    fn catch_all_routes_are_only_those_without_conditions() {
        assert!(is_catch_all(None));
        assert!(is_catch_all(Some(&json!({}))));
        assert!(is_catch_all(Some(&json!({"uri": {"prefix": "/"}}))));
        assert!(is_catch_all(Some(&json!({"uri": {"regex": ".*"}}))));
        assert!(!is_catch_all(Some(&json!({"uri": {"prefix": "/mock"}}))));
        assert!(!is_catch_all(Some(&json!({"uri": {"exact": "/"}}))));
        assert!(!is_catch_all(Some(
            &json!({"headers": {"x-asm-prefer-tag": {"exact": "base"}}})
        )));
        assert!(!is_catch_all(Some(&json!({"method": {"exact": "GET"}}))));
    }

    #[test]
    fn a_lane_without_the_service_falls_back_to_the_base_lane_when_permissive() {
        // As in the walkthrough before the canary joins: the canary lane lists no services.
        let world = world(group("rule_based", true), &[], vec![]);
        assert!(only(&serve(&world, &entering(Some("canary"))), "mocka-v1"));
    }

    #[test]
    fn strict_mode_has_no_fallback() {
        let world = world(group("rule_based", false), &[], vec![]);
        let served = serve(&world, &entering(Some("canary")));
        assert!(served.pods.is_empty(), "{served:?}");
        let listed = world_with_strict_member();
        assert!(only(&serve(&listed, &entering(Some("canary"))), "mocka-v2"));
    }

    fn world_with_strict_member() -> World {
        world(group("rule_based", false), &["mocka"], vec![])
    }

    #[test]
    fn a_lane_without_ready_pods_falls_back_to_the_base_lane() {
        let world = world(
            group("rule_based", true),
            &["mocka", "mockb"],
            vec![pod("mockb-v2", "mockb", Some("canary"), false)],
        );
        let call = Request::to("mockb", "/")
            .from(Caller::Sidecar {
                namespace: "default".into(),
            })
            .header("x-asm-prefer-tag", "canary");
        assert!(only(&serve(&world, &call), "mockb-v1"));
    }

    #[test]
    fn service_calls_follow_the_propagated_route_header() {
        let world = world(
            group("rule_based", true),
            &["mocka", "mockb"],
            vec![pod("mockb-v2", "mockb", Some("canary"), true)],
        );
        let sidecar = Caller::Sidecar {
            namespace: "default".into(),
        };
        let call = |lane: Option<&str>, host: &str| {
            let request = Request::to(host, "/").from(sidecar.clone());
            let request = match lane {
                Some(lane) => request.header("x-asm-prefer-tag", lane),
                None => request,
            };
            serve(&world, &request)
        };
        assert!(only(&call(Some("canary"), "mockb"), "mockb-v2"));
        assert!(only(
            &call(Some("base"), "mockb.default.svc.cluster.local"),
            "mockb-v1"
        ));
        // Not in the canary lane: back to base.
        assert!(only(&call(Some("canary"), "mockc"), "mockc-v1"));
        // No header, or an unknown lane: the base lane in permissive mode.
        assert!(only(&call(None, "mockb"), "mockb-v1"));
        assert!(only(&call(Some("blue"), "mockb"), "mockb-v1"));
    }

    #[test]
    fn stable_pods_without_the_base_tag_leave_the_fallback_empty() {
        let world = World::new(vec![
            group("rule_based", true),
            lane("base", &["mocka"], None),
            lane("canary", &["mocka"], None),
            service("mocka"),
            pod("mocka-v1", "mocka", None, true),
            pod("mocka-v2", "mocka", Some("canary"), false),
        ]);
        for header in ["base", "canary"] {
            let served = serve(&world, &entering(Some(header)));
            assert!(served.pods.is_empty(), "{header}: {served:?}");
            assert!(served.unserved_because.is_some());
        }
    }

    #[test]
    fn lane_pods_are_the_service_endpoints_with_the_lane_tag() {
        // The canary pod is not selected by the Service: the canary lane has no pods of it.
        let world = World::new(vec![
            group("rule_based", true),
            lane("base", &["mocka"], None),
            lane("canary", &["mocka"], None),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "mocka", "namespace": "default"},
                   "spec": {"selector": {"app": "mocka", "track": "stable"}, "ports": [{"port": 8000}]}}),
            json!({"kind": "Pod", "metadata": {"name": "mocka-v1", "namespace": "default",
                                               "labels": {"app": "mocka", "track": "stable", "ASM_TRAFFIC_TAG": "base"}},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            pod("mocka-v2", "mocka", Some("canary"), true),
        ]);
        assert!(only(&serve(&world, &entering(Some("canary"))), "mocka-v1"));
    }

    #[test]
    fn weighted_ingress_splits_between_lanes() {
        let world = World::new(vec![
            group("weighted", true),
            lane("base", &["mocka"], Some(80)),
            lane("canary", &["mocka"], Some(20)),
            service("mocka"),
            pod("mocka-v1", "mocka", Some("base"), true),
            pod("mocka-v2", "mocka", Some("canary"), true),
        ]);
        let served = serve(&world, &entering(None));
        assert!(
            (served.share(|p| p.name == "mocka-v2") - 0.2).abs() < 1e-9,
            "{served:?}"
        );
        assert!((served.share(|p| p.name == "mocka-v1") - 0.8).abs() < 1e-9);
        let elsewhere = Request::to("shop.example.com", "/other").from(gateway());
        assert!(serve(&world, &elsewhere).pods.is_empty());
    }

    #[test]
    fn a_service_of_no_lane_group_is_plain_kubernetes() {
        let world = world(
            group("rule_based", true),
            &["mocka"],
            vec![service("other"), pod("other-1", "other", None, true)],
        );
        let call = Request::to("other", "/")
            .from(Caller::Sidecar {
                namespace: "default".into(),
            })
            .header("x-asm-prefer-tag", "canary");
        assert!(only(&serve(&world, &call), "other-1"));
    }
}
