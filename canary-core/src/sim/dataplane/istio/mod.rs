//! The Istio data plane: which pods answer a request sent through a sidecar or a gateway.
//!
//! Written from istiod's translation of VirtualServices and DestinationRules into Envoy
//! configuration, and Envoy's routing of it:
//!
//! - **Names** (`pilot/pkg/model/config.go` `ResolveShortnameToFQDN`, `resolveGatewayName`;
//!   `pilot/pkg/model/virtualservice.go` `ResolveVirtualServiceShortnames`): a host without a dot
//!   in a VirtualService or DestinationRule is `<host>.<its namespace>.svc.cluster.local`; a host
//!   with a dot is taken as written (so `reviews.prod` names no Kubernetes Service); a gateway
//!   name without `/` is `<VirtualService namespace>/<name>`. A request's short host names a
//!   Service in the caller's namespace (Kubernetes DNS).
//! - **Which VirtualServices a proxy sees** (`pilot/pkg/model/push_context.go`
//!   `initVirtualServices`, `getGatewayNames`): no `gateways` means `mesh` (sidecars only); a
//!   gateway proxy sees those naming it. Order is creation time, then name, then namespace
//!   (`virtualservice_controller.go` `MergedVirtualServices`).
//! - **Several VirtualServices for one host**: on a sidecar the first one wins the host
//!   (`pilot/pkg/networking/core/httproute.go`: a duplicate virtual host is dropped;
//!   `virtualservice.go` `SelectVirtualServices` keeps istiod's order), an exact host before the
//!   most specific wildcard (`route.go` `separateVSHostsAndServices`). On a
//!   gateway their routes are concatenated in order, catch-all routes moved last
//!   (`gateway.go` `buildGatewayHTTPRouteConfig`, `route.go` `SortVHostRoutes`).
//! - **Routes** (`route.go` `BuildHTTPRoutesForVirtualService`, `TranslateRoute`,
//!   `sourceMatchHTTP`): one Envoy route per match of each HTTP route, in order, first match
//!   wins; a match is dropped for this proxy when its `gateways` do not name it, its
//!   `sourceNamespace` is another namespace, its `sourceLabels` are set (callers carry no
//!   labels in this model) or its `port` differs; building stops after a catch-all. A
//!   VirtualService left with no route makes no virtual host (the next VirtualService for the
//!   host, or the Service's default route, serves it); a request no route matches gets 404.
//! - **Destinations** (`route.go` `applyHTTPRouteDestination`): one destination takes
//!   everything whatever its weight; with several, zero weights are dropped and the rest share by
//!   weight over their sum (Envoy weighted clusters; validation only refuses a zero total). A
//!   subset is a cluster only when the DestinationRule in effect for the host defines it
//!   (`push_context.go` `destinationRule`: the caller's namespace, then the Service's, then
//!   `istio-system`, for a proxy in `istio-system` the Service's first; several rules for one host in a namespace merge, the first defining a subset
//!   wins, `destination_rule.go` `mergeDestinationRule`); a route to a cluster that does not
//!   exist gets 503 (`NC`), one to a subset with no ready pod 503 (`UH`). Subset `labels` pick
//!   the Service's ready endpoints whose pod labels include them.
//! - **Mirroring** (`route.go` `MirrorPercent`, `MirrorPercentByPolicy`): `mirror` with
//!   `mirrorPercentage` (or the older `mirrorPercent`), 100% when unset and none when 0;
//!   `mirrors` likewise with their `percentage`.
//!
//! Not modelled: delegate VirtualServices, `exportTo`, `Sidecar` scoping, ServiceEntries,
//! locality and outlier detection, retries and fault injection.

mod matching;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::{Caller, PodRef, Request, Served, World, service_of_host, string_map};

/// The cluster domain Kubernetes Services are named in.
const DOMAIN: &str = "svc.cluster.local";

/// istiod's root configuration namespace (its default).
const ROOT_NAMESPACE: &str = "istio-system";

/// The gateway name sidecars answer to.
const MESH: &str = "mesh";

/// Who answers `request` in `world`.
///
/// A sidecar or gateway caller goes through Istio's routing; [`Caller::IngressController`]
/// (a client without a sidecar) reaches the Service the Kubernetes way, evenly over its ready
/// endpoints.
pub fn serve(world: &World, request: &Request) -> Served {
    match &request.caller {
        Caller::Sidecar { namespace } => sidecar(world, request, namespace),
        Caller::Gateway { namespace, name } => gateway(world, request, namespace, name),
        Caller::IngressController => match service_of_host(&request.host, "default") {
            Some((ns, name)) => even(world, &ns, &name),
            None => Served::nobody(format!("{} names no Service", request.host)),
        },
    }
}

/// The proxy routing a request: its namespace and the gateway names it answers to.
struct Proxy {
    namespace: String,
    gateway: String,
}

/// A VirtualService with its names resolved.
struct VirtualService<'a> {
    object: &'a Value,
    namespace: String,
    hosts: Vec<String>,
}

/// One Envoy route: an HTTP route of a VirtualService with one of its matches (or none).
struct Route<'a> {
    http: &'a Value,
    matched: Option<&'a Value>,
    namespace: &'a str,
}

fn sidecar(world: &World, request: &Request, namespace: &str) -> Served {
    let proxy = Proxy {
        namespace: namespace.to_owned(),
        gateway: MESH.to_owned(),
    };
    let service = service_of_host(&request.host, namespace)
        .filter(|(ns, name)| world.get("Service", ns, name).is_some());
    let host = match &service {
        Some((ns, name)) => format!("{name}.{ns}.{DOMAIN}"),
        None => request.host.trim_end_matches('.').to_ascii_lowercase(),
    };
    let services = virtual_services(world, &proxy);
    let port = request.port.or_else(|| {
        let (ns, name) = service.as_ref()?;
        let port = world.get("Service", ns, name)?["spec"]["ports"][0]["port"].as_u64()?;
        u16::try_from(port).ok()
    });
    // An exact host wins, then the most specific wildcard, the oldest among equals; a
    // VirtualService that leaves this proxy no route makes no virtual host, so the next one
    // (or the Service's default route) serves the host.
    let mut candidates: Vec<(usize, &VirtualService<'_>)> = services
        .iter()
        .filter_map(|vs| Some((host_rank(&vs.hosts, &host)?, vs)))
        .collect();
    candidates.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    for (_, vs) in candidates {
        let routes = routes(vs, &proxy, port);
        if !routes.is_empty() {
            return route_request(world, &proxy, &routes, request);
        }
    }
    match service {
        Some((ns, name)) => even(world, &ns, &name),
        None => Served::nobody(format!(
            "{host} names no Service and no VirtualService routes it"
        )),
    }
}

fn gateway(world: &World, request: &Request, namespace: &str, name: &str) -> Served {
    let proxy = Proxy {
        namespace: namespace.to_owned(),
        gateway: format!("{namespace}/{name}"),
    };
    let host = request.host.trim_end_matches('.').to_ascii_lowercase();
    if let Some(gw) = world.get("Gateway", namespace, name) {
        let server_hosts: Vec<String> = gw["spec"]["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["hosts"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .map(|h| h.rsplit('/').next().unwrap_or(h).to_ascii_lowercase())
            .collect();
        if host_rank(&server_hosts, &host).is_none() {
            return Served::nobody(format!("404: gateway {namespace}/{name} serves no {host}"));
        }
    }
    let services = virtual_services(world, &proxy);
    // Envoy picks the virtual host whose domain matches best; every VirtualService with that
    // domain adds its routes. A VirtualService leaving this gateway no route adds no domain.
    let port = request.port;
    let mut domains: Vec<(usize, &String)> = services
        .iter()
        .flat_map(|vs| vs.hosts.iter())
        .filter_map(|h| Some((host_rank(std::slice::from_ref(h), &host)?, h)))
        .collect();
    domains.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    let Some(all) = domains
        .into_iter()
        .map(|(_, domain)| {
            services
                .iter()
                .filter(|vs| vs.hosts.contains(domain))
                .flat_map(|vs| routes(vs, &proxy, port))
                .collect::<Vec<Route<'_>>>()
        })
        .find(|routes| !routes.is_empty())
    else {
        return Served::nobody(format!(
            "404: no VirtualService for {host} on gateway {namespace}/{name}"
        ));
    };
    let (mut ordered, catch_alls): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| !matching::catch_all(r.matched));
    ordered.extend(catch_alls);
    route_request(world, &proxy, &ordered, request)
}

/// The VirtualServices bound to the proxy's gateway (`mesh` for sidecars), names resolved, in
/// istiod's order.
fn virtual_services<'a>(world: &'a World, proxy: &Proxy) -> Vec<VirtualService<'a>> {
    let mut found: Vec<(String, String, VirtualService<'a>)> = world
        .all("VirtualService")
        .filter_map(|object| {
            let namespace = namespace_of(object);
            let gateways = string_list(&object["spec"]["gateways"]);
            let bound = if gateways.is_empty() {
                proxy.gateway == MESH
            } else {
                gateways
                    .iter()
                    .any(|g| gateway_name(g, &namespace) == proxy.gateway)
            };
            if !bound {
                return None;
            }
            let hosts = string_list(&object["spec"]["hosts"])
                .iter()
                .map(|h| fqdn(h, &namespace))
                .collect();
            let created = object
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Some((
                created,
                name,
                VirtualService {
                    object,
                    namespace,
                    hosts,
                },
            ))
        })
        .collect();
    found.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.cmp(&b.1))
            .then_with(|| a.2.namespace.cmp(&b.2.namespace))
    });
    found.into_iter().map(|(_, _, vs)| vs).collect()
}

/// The Envoy routes a VirtualService gives this proxy (route.go
/// BuildHTTPRoutesForVirtualService / TranslateRoute / sourceMatchHTTP).
fn routes<'a>(vs: &'a VirtualService<'a>, proxy: &Proxy, port: Option<u16>) -> Vec<Route<'a>> {
    let mut out = Vec::new();
    for http in vs.object["spec"]["http"].as_array().into_iter().flatten() {
        let matches: Vec<&Value> = http["match"].as_array().into_iter().flatten().collect();
        if matches.is_empty() {
            out.push(Route {
                http,
                matched: None,
                namespace: &vs.namespace,
            });
            return out;
        }
        for m in matches {
            if !applies_to(m, proxy, &vs.namespace, port) {
                continue;
            }
            out.push(Route {
                http,
                matched: Some(m),
                namespace: &vs.namespace,
            });
            if matching::catch_all(Some(m)) {
                return out;
            }
        }
    }
    out
}

/// Whether a match is kept for this proxy: its port, gateways, source labels and namespace.
fn applies_to(m: &Value, proxy: &Proxy, vs_namespace: &str, port: Option<u16>) -> bool {
    if let Some(wanted) = m["port"].as_u64().filter(|p| *p != 0)
        && port.map(u64::from) != Some(wanted)
    {
        return false;
    }
    let gateways = string_list(&m["gateways"]);
    if !gateways.is_empty() {
        return gateways
            .iter()
            .any(|g| gateway_name(g, vs_namespace) == proxy.gateway);
    }
    if !string_map(Some(&m["sourceLabels"])).is_empty() {
        return false;
    }
    match m["sourceNamespace"].as_str() {
        Some(ns) if !ns.is_empty() => ns == proxy.namespace,
        _ => true,
    }
}

/// The first route matching `request` decides; none → 404.
fn route_request(world: &World, proxy: &Proxy, routes: &[Route<'_>], request: &Request) -> Served {
    let Some(route) = routes.iter().find(|r| {
        r.matched
            .is_none_or(|m| matching::request_matches(m, request))
    }) else {
        return Served::nobody(format!(
            "404: no route matches {} {}{}",
            request.method, request.host, request.path
        ));
    };
    let http = route.http;
    if !http["redirect"].is_null() {
        return Served::nobody("the route answers with a redirect");
    }
    if !http["directResponse"].is_null() {
        return Served::nobody("the route answers with a direct response");
    }
    let destinations: Vec<&Value> = http["route"].as_array().into_iter().flatten().collect();
    let weighted: Vec<(&Value, f64)> = match destinations.as_slice() {
        [] => return Served::nobody("the route has no destination"),
        [only] => vec![(*only, 1.0)],
        several => {
            let kept: Vec<(&Value, f64)> = several
                .iter()
                .map(|d| (*d, d["weight"].as_f64().unwrap_or(0.0)))
                .filter(|(_, w)| *w > 0.0)
                .collect();
            let total: f64 = kept.iter().map(|(_, w)| w).sum();
            if total <= 0.0 {
                return Served::nobody("total destination weight is 0");
            }
            kept.into_iter().map(|(d, w)| (d, w / total)).collect()
        }
    };
    let mut served = Served::default();
    for (destination, share) in weighted {
        match cluster(world, proxy, &destination["destination"], route.namespace) {
            Ok((name, endpoints)) => served.spread(share, &endpoints, || {
                format!("503 UH: no healthy upstream in {name}")
            }),
            Err(why) => served.add_scaled(&Served::nobody(why), share),
        }
    }
    for (target, percent) in mirrors(http) {
        if let Ok((_, endpoints)) = cluster(world, proxy, target, route.namespace) {
            served.mirror(percent / 100.0, &endpoints);
        }
    }
    served
}

/// The mirror targets of an HTTP route with their percentages.
fn mirrors(http: &Value) -> Vec<(&Value, f64)> {
    let mut out = Vec::new();
    if !http["mirror"].is_null() {
        let percent = if !http["mirrorPercentage"].is_null() {
            http["mirrorPercentage"]["value"].as_f64().unwrap_or(0.0)
        } else if !http["mirrorPercent"].is_null() {
            http["mirrorPercent"].as_f64().unwrap_or(0.0)
        } else {
            100.0
        };
        out.push((&http["mirror"], percent));
    }
    for m in http["mirrors"].as_array().into_iter().flatten() {
        let percent = if m["percentage"].is_null() {
            100.0
        } else {
            m["percentage"]["value"].as_f64().unwrap_or(0.0)
        };
        out.push((&m["destination"], percent));
    }
    out.into_iter()
        .filter(|(_, p)| *p > 0.0)
        .map(|(d, p)| (d, p.min(100.0)))
        .collect()
}

/// The Envoy cluster a `Destination` names, with its ready endpoints, or why it does not exist
/// (a 503 `NC`).
fn cluster(
    world: &World,
    proxy: &Proxy,
    destination: &Value,
    vs_namespace: &str,
) -> Result<(String, Vec<PodRef>), String> {
    let host = fqdn(
        destination["host"].as_str().unwrap_or_default(),
        vs_namespace,
    );
    let Some((ns, name)) = kubernetes_service(&host) else {
        return Err(format!(
            "503 NC: {host} is no Kubernetes Service in the registry"
        ));
    };
    let Some(service) = world.get("Service", &ns, &name) else {
        return Err(format!("503 NC: no Service {ns}/{name}"));
    };
    if let Some(port) = destination["port"]["number"].as_u64() {
        let has = service["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["port"].as_u64() == Some(port));
        if !has {
            return Err(format!("503 NC: {host} has no port {port}"));
        }
    }
    let endpoints = world.endpoints(&ns, &name);
    match destination["subset"].as_str().filter(|s| !s.is_empty()) {
        None => Ok((host, endpoints)),
        Some(subset) => {
            let Some(labels) = subset_labels(world, &host, &ns, &proxy.namespace, subset) else {
                return Err(format!(
                    "503 NC: no DestinationRule in effect defines subset {subset} of {host}"
                ));
            };
            let picked = endpoints
                .into_iter()
                .filter(|pod| {
                    let have = world.pod(pod).map(World::labels).unwrap_or_default();
                    labels.iter().all(|(k, v)| have.get(k) == Some(v))
                })
                .collect();
            Ok((format!("{host} subset {subset}"), picked))
        }
    }
}

/// The labels of `subset` of `host` in the DestinationRules in effect for a proxy in
/// `proxy_namespace` (push_context.go destinationRule), or `None` when it is not defined.
fn subset_labels(
    world: &World,
    host: &str,
    service_namespace: &str,
    proxy_namespace: &str,
    subset: &str,
) -> Option<BTreeMap<String, String>> {
    let mut rules: Vec<(&Value, String, String)> = world
        .all("DestinationRule")
        .map(|dr| {
            let ns = namespace_of(dr);
            let h = fqdn(dr["spec"]["host"].as_str().unwrap_or_default(), &ns);
            (dr, ns, h)
        })
        .collect();
    rules.sort_by(|a, b| creation_order(a.0, b.0).then_with(|| a.1.cmp(&b.1)));
    // A proxy in the root namespace looks there first only for rules private to it (exportTo
    // is not modelled: every rule counts as exported), so it starts with the Service's.
    let mut namespaces = if proxy_namespace == ROOT_NAMESPACE {
        vec![service_namespace, ROOT_NAMESPACE]
    } else {
        vec![proxy_namespace, service_namespace, ROOT_NAMESPACE]
    };
    namespaces.dedup();
    for ns in namespaces {
        let in_ns: Vec<&(&Value, String, String)> = rules.iter().filter(|r| r.1 == ns).collect();
        let hosts: Vec<String> = in_ns.iter().map(|r| r.2.clone()).collect();
        let Some(best) = best_host(&hosts, host) else {
            continue;
        };
        // mergeDestinationRule: subsets of later rules add to the first, the first definition
        // of a name counts.
        return in_ns
            .iter()
            .filter(|r| r.2 == best)
            .flat_map(|r| r.0["spec"]["subsets"].as_array().into_iter().flatten())
            .find(|s| s["name"] == subset)
            .map(|s| string_map(Some(&s["labels"])));
    }
    None
}

/// The best of `hosts` for `host` (model/config.go MostSpecificHostMatch).
fn best_host(hosts: &[String], host: &str) -> Option<String> {
    hosts
        .iter()
        .filter_map(|h| Some((host_rank(std::slice::from_ref(h), host)?, h)))
        .fold(
            None,
            |best: Option<(usize, &String)>, (rank, h)| match best {
                Some((r, _)) if r >= rank => best,
                _ => Some((rank, h)),
            },
        )
        .map(|(_, h)| h.clone())
}

/// How well the best of `patterns` matches `host`: exact beats any wildcard, a longer wildcard
/// suffix beats a shorter one, `*` matches anything least. `None` when none matches.
fn host_rank(patterns: &[String], host: &str) -> Option<usize> {
    patterns
        .iter()
        .filter_map(|p| {
            if p == host {
                Some(usize::MAX)
            } else if let Some(suffix) = p.strip_prefix('*') {
                host.ends_with(suffix).then_some(suffix.len())
            } else {
                None
            }
        })
        .max()
}

/// route cluster for a Service without a VirtualService: its ready endpoints, evenly.
fn even(world: &World, namespace: &str, name: &str) -> Served {
    let mut served = Served::default();
    served.spread(1.0, &world.endpoints(namespace, name), || {
        format!("503 UH: no healthy upstream for {namespace}/{name}")
    });
    served
}

/// config.go ResolveShortnameToFQDN.
fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host == "*" || host.contains('.') || host.contains(':') || host.is_empty() {
        host
    } else {
        format!("{host}.{namespace}.{DOMAIN}")
    }
}

/// The Service a registry host names: only `<name>.<namespace>.svc.cluster.local`.
fn kubernetes_service(host: &str) -> Option<(String, String)> {
    let rest = host.strip_suffix(&format!(".{DOMAIN}"))?;
    let (name, namespace) = rest.split_once('.')?;
    (!namespace.contains('.')).then(|| (namespace.to_owned(), name.to_owned()))
}

/// config.go resolveGatewayName.
fn gateway_name(gateway: &str, namespace: &str) -> String {
    if gateway == MESH {
        return gateway.to_owned();
    }
    match gateway.split_once('/') {
        Some((".", name)) => format!("{namespace}/{name}"),
        Some(_) => gateway.to_owned(),
        None => match gateway.split_once('.') {
            None => format!("{namespace}/{gateway}"),
            Some((name, rest)) => {
                let ns = rest.split('.').next().unwrap_or(rest);
                format!("{ns}/{name}")
            }
        },
    }
}

fn namespace_of(object: &Value) -> String {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_owned()
}

fn creation_order(a: &Value, b: &Value) -> Ordering {
    let key = |o: &Value| {
        (
            o.pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            o.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    };
    key(a).cmp(&key(b))
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "reviews", "namespace": "shop"},
               "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]}})
    }

    fn pod(name: &str, version: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "shop",
                            "labels": {"app": "reviews", "version": version}},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn destination_rule(namespace: &str, subsets: &[&str]) -> Value {
        let subsets: Vec<Value> = subsets
            .iter()
            .map(|v| json!({"name": v, "labels": {"version": v}}))
            .collect();
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "reviews", "namespace": namespace},
               "spec": {"host": "reviews.shop.svc.cluster.local", "subsets": subsets}})
    }

    fn virtual_service(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": name, "namespace": "shop",
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "spec": spec})
    }

    fn to(subset: &str, weight: u32) -> Value {
        json!({"destination": {"host": "reviews", "subset": subset}, "weight": weight})
    }

    /// Pods v1-a, v1-b (version v1) and v2-a (version v2) behind `reviews`, subsets v1 and v2,
    /// and `extra` objects.
    fn world(extra: Vec<Value>) -> World {
        let mut objects = vec![
            service(),
            pod("v1-a", "v1"),
            pod("v1-b", "v1"),
            pod("v2-a", "v2"),
            destination_rule("shop", &["v1", "v2"]),
        ];
        objects.extend(extra);
        World::new(objects)
    }

    fn from_shop() -> Request {
        Request::to("reviews", "/").from(Caller::Sidecar {
            namespace: "shop".into(),
        })
    }

    fn v1(served: &Served) -> f64 {
        served.share(|p| p.name.starts_with("v1"))
    }

    fn v2(served: &Served) -> f64 {
        served.share(|p| p.name.starts_with("v2"))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn without_a_virtual_service_the_service_spreads_evenly() {
        let served = serve(&world(vec![]), &from_shop());
        assert!(close(v1(&served), 2.0 / 3.0), "{served:?}");
        assert!(close(v2(&served), 1.0 / 3.0));
    }

    #[test]
    fn weights_split_over_subsets_picked_by_labels() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v1", 90), to("v2", 10)]}]}),
        );
        let served = serve(&world(vec![vs]), &from_shop());
        assert!(close(v1(&served), 0.9), "{served:?}");
        assert!(close(v2(&served), 0.1));
        let a = PodRef {
            namespace: "shop".into(),
            name: "v1-a".into(),
        };
        assert!(close(served.pods[&a], 0.45));
    }

    #[test]
    fn weights_are_relative_and_a_single_destination_takes_all() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v1", 1), to("v2", 3), to("v1", 0)]}]}),
        );
        let served = serve(&world(vec![vs]), &from_shop());
        assert!(close(v2(&served), 0.75), "{served:?}");
        let single = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v2", 5)]}]}),
        );
        assert!(close(v2(&serve(&world(vec![single]), &from_shop())), 1.0));
    }

    #[test]
    fn the_first_matching_route_wins() {
        let header_first = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [
                {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2", 100)]},
                {"route": [to("v1", 100)]}]}),
        );
        let world = world(vec![header_first]);
        assert!(close(
            v2(&serve(&world, &from_shop().header("end-user", "jason"))),
            1.0
        ));
        assert!(close(
            v1(&serve(&world, &from_shop().header("end-user", "bob"))),
            1.0
        ));

        let catch_all_first = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [
                {"route": [to("v1", 100)]},
                {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [to("v2", 100)]}]}),
        );
        let world = super::World::new(
            world
                .objects()
                .iter()
                .filter(|o| o["kind"] != "VirtualService")
                .cloned()
                .chain([catch_all_first])
                .collect(),
        );
        assert!(close(
            v1(&serve(&world, &from_shop().header("end-user", "jason"))),
            1.0
        ));
    }

    #[test]
    fn matches_are_or_and_no_match_is_404() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [
                {"match": [{"uri": {"prefix": "/api"}, "method": {"exact": "GET"}},
                           {"queryParams": {"beta": {"exact": "1"}}}],
                 "route": [to("v2", 100)]}]}),
        );
        let world = world(vec![vs]);
        assert!(close(
            v2(&serve(
                &world,
                &Request {
                    path: "/api/x".into(),
                    ..from_shop()
                }
            )),
            1.0
        ));
        let mut beta = from_shop();
        beta.query.insert("beta".into(), "1".into());
        assert!(close(v2(&serve(&world, &beta)), 1.0));
        let post = Request {
            path: "/api/x".into(),
            method: "POST".into(),
            ..from_shop()
        };
        let served = serve(&world, &post);
        assert!(close(served.unserved(), 1.0));
        assert!(
            served
                .unserved_because
                .as_deref()
                .is_some_and(|w| w.starts_with("404"))
        );
    }

    #[test]
    fn a_subset_no_destination_rule_defines_is_a_503() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v1", 50), to("canary", 50)]}]}),
        );
        let served = serve(&world(vec![vs]), &from_shop());
        assert!(close(v1(&served), 0.5), "{served:?}");
        assert!(close(served.unserved(), 0.5));
        assert!(
            served
                .unserved_because
                .as_deref()
                .is_some_and(|w| w.contains("subset canary"))
        );
    }

    #[test]
    fn an_empty_subset_is_a_503() {
        let mut objects = vec![
            service(),
            pod("v1-a", "v1"),
            destination_rule("shop", &["v1", "v2"]),
        ];
        objects.push(virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v2", 100)]}]}),
        ));
        let served = serve(&World::new(objects), &from_shop());
        assert!(close(served.unserved(), 1.0));
        assert!(
            served
                .unserved_because
                .as_deref()
                .is_some_and(|w| w.starts_with("503 UH"))
        );
    }

    #[test]
    fn the_destination_rule_in_the_callers_namespace_takes_precedence() {
        let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [to("v2", 100)]}]}});
        let mut local = destination_rule("web", &["v1"]);
        local["spec"]["host"] = json!("reviews.shop.svc.cluster.local");
        let world = world(vec![vs, local]);
        let from_web = Request::to("reviews.shop", "/").from(Caller::Sidecar {
            namespace: "web".into(),
        });
        assert!(close(serve(&world, &from_web).unserved(), 1.0));
        assert!(close(v2(&serve(&world, &from_shop())), 1.0));
    }

    #[test]
    fn a_gateway_in_the_root_namespace_uses_the_services_destination_rule_first() {
        let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"hosts": ["shop.example.com"], "gateways": ["istio-system/ingressgateway"],
                     "http": [{"route": [to("v2", 100)]}]}});
        let mut global = destination_rule("istio-system", &["v1"]);
        global["metadata"]["name"] = json!("global");
        let world = world(vec![vs, global]);
        let gw = Request::to("shop.example.com", "/").from(Caller::Gateway {
            namespace: "istio-system".into(),
            name: "ingressgateway".into(),
        });
        assert!(close(v2(&serve(&world, &gw)), 1.0));
    }

    #[test]
    fn hosts_resolve_in_their_namespaces() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v2", 100)]}]}),
        );
        let world = world(vec![
            vs,
            json!({"kind": "Service", "metadata": {"name": "reviews", "namespace": "web"},
                   "spec": {"selector": {"app": "other"}, "ports": [{"port": 9080}]}}),
        ]);
        for host in ["reviews.shop", "reviews.shop.svc.cluster.local"] {
            let request = Request::to(host, "/").from(Caller::Sidecar {
                namespace: "web".into(),
            });
            assert!(close(v2(&serve(&world, &request)), 1.0), "{host}");
        }
        // From `web`, the short name is web's own `reviews`, which the VirtualService (whose
        // `reviews` means shop's) does not route.
        let request = Request::to("reviews", "/").from(Caller::Sidecar {
            namespace: "web".into(),
        });
        let served = serve(&world, &request);
        assert!(close(v2(&served), 0.0));
        assert!(
            served
                .unserved_because
                .as_deref()
                .is_some_and(|w| w.contains("web/reviews"))
        );
    }

    #[test]
    fn a_dotted_destination_host_is_taken_as_written() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews.shop"}}]}]}),
        );
        let served = serve(&world(vec![vs]), &from_shop());
        assert!(close(served.unserved(), 1.0), "{served:?}");
    }

    #[test]
    fn gateways_bind_virtual_services() {
        let gateway_caller = |host: &str| {
            Request::to(host, "/").from(Caller::Gateway {
                namespace: "shop".into(),
                name: "public".into(),
            })
        };
        let mesh_only = virtual_service(
            "reviews",
            json!({"hosts": ["reviews", "shop.example.com"], "http": [{"route": [to("v2", 100)]}]}),
        );
        let world_mesh = world(vec![mesh_only]);
        assert!(close(
            serve(&world_mesh, &gateway_caller("shop.example.com")).unserved(),
            1.0
        ));

        let bound = virtual_service(
            "reviews",
            json!({"hosts": ["shop.example.com"], "gateways": ["public"],
                   "http": [{"route": [to("v2", 100)]}]}),
        );
        let world_gw = world(vec![bound]);
        assert!(close(
            v2(&serve(&world_gw, &gateway_caller("shop.example.com"))),
            1.0
        ));
        // Not bound to `mesh`: sidecars get the Service's default route.
        assert!(close(v1(&serve(&world_gw, &from_shop())), 2.0 / 3.0));
        let other_gateway = gateway_caller("shop.example.com").from(Caller::Gateway {
            namespace: "istio-system".into(),
            name: "public".into(),
        });
        assert!(close(serve(&world_gw, &other_gateway).unserved(), 1.0));
    }

    #[test]
    fn match_gateways_and_source_namespace_filter_routes_per_proxy() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews", "shop.example.com"], "gateways": ["mesh", "shop/public"],
                   "http": [
                {"match": [{"gateways": ["public"]}], "route": [to("v2", 100)]},
                {"match": [{"sourceNamespace": "web"}], "route": [to("v2", 100)]},
                {"route": [to("v1", 100)]}]}),
        );
        let world = world(vec![vs]);
        let gw = Request::to("shop.example.com", "/").from(Caller::Gateway {
            namespace: "shop".into(),
            name: "public".into(),
        });
        assert!(close(v2(&serve(&world, &gw)), 1.0));
        assert!(close(v1(&serve(&world, &from_shop())), 1.0));
        let from_web = Request::to("reviews.shop", "/").from(Caller::Sidecar {
            namespace: "web".into(),
        });
        assert!(close(v2(&serve(&world, &from_web)), 1.0));
    }

    #[test]
    fn a_virtual_service_without_routes_for_this_proxy_leaves_the_default_route() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [
                {"match": [{"gateways": ["shop/public"]}], "route": [to("v2", 100)]}]}),
        );
        let served = serve(&world(vec![vs]), &from_shop());
        assert!(close(v1(&served), 2.0 / 3.0), "{served:?}");
    }

    #[test]
    fn a_virtual_service_without_routes_for_this_proxy_gives_way_to_the_next() {
        let gateway_only = virtual_service(
            "a-gateway-only",
            json!({"hosts": ["reviews"], "http": [
                {"match": [{"gateways": ["shop/public"]}], "route": [to("v1", 100)]}]}),
        );
        let mut mesh = virtual_service(
            "b-mesh",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v2", 100)]}]}),
        );
        mesh["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
        let world = world(vec![gateway_only, mesh]);
        assert!(close(v2(&serve(&world, &from_shop())), 1.0));
    }

    #[test]
    fn on_a_sidecar_the_oldest_virtual_service_for_a_host_wins() {
        let old = virtual_service(
            "b-old",
            json!({"hosts": ["reviews"], "http": [{"route": [to("v2", 100)]}]}),
        );
        let mut new = virtual_service(
            "a-new",
            json!({"hosts": ["reviews.shop.svc.cluster.local"], "http": [{"route": [to("v1", 100)]}]}),
        );
        new["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
        let world = world(vec![new, old]);
        assert!(close(v2(&serve(&world, &from_shop())), 1.0));
    }

    #[test]
    fn on_a_gateway_virtual_services_for_a_host_merge_with_catch_alls_last() {
        let catch_all = virtual_service(
            "a-default",
            json!({"hosts": ["shop.example.com"], "gateways": ["public"],
                   "http": [{"route": [to("v1", 100)]}]}),
        );
        let mut header = virtual_service(
            "b-beta",
            json!({"hosts": ["shop.example.com"], "gateways": ["public"],
                   "http": [{"match": [{"headers": {"x-beta": {"exact": "1"}}}], "route": [to("v2", 100)]}]}),
        );
        header["metadata"]["creationTimestamp"] = json!("2026-02-01T00:00:00Z");
        let world = world(vec![catch_all, header]);
        let gw = Request::to("shop.example.com", "/").from(Caller::Gateway {
            namespace: "shop".into(),
            name: "public".into(),
        });
        assert!(close(
            v2(&serve(&world, &gw.clone().header("x-beta", "1"))),
            1.0
        ));
        assert!(close(v1(&serve(&world, &gw)), 1.0));
    }

    #[test]
    fn a_gateway_object_limits_the_hosts_it_serves() {
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["*"], "gateways": ["public"], "http": [{"route": [to("v2", 100)]}]}),
        );
        let gateway = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "shop"},
            "spec": {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                  "hosts": ["shop/*.example.com"]}]}});
        let world = world(vec![vs, gateway]);
        let at = |host: &str| {
            serve(
                &world,
                &Request::to(host, "/").from(Caller::Gateway {
                    namespace: "shop".into(),
                    name: "public".into(),
                }),
            )
        };
        assert!(close(v2(&at("shop.example.com")), 1.0));
        assert!(close(at("shop.example.org").unserved(), 1.0));
    }

    #[test]
    fn mirrors_copy_a_share_without_answering() {
        let mut http = json!({"route": [to("v1", 100)],
                              "mirror": {"host": "reviews", "subset": "v2"}});
        let world_with = |http: &Value| {
            world(vec![virtual_service(
                "reviews",
                json!({"hosts": ["reviews"], "http": [http]}),
            )])
        };
        let served = serve(&world_with(&http), &from_shop());
        assert!(close(v1(&served), 1.0));
        let copies: f64 = served.mirrored.values().sum();
        assert!(close(copies, 1.0), "{served:?}");
        http["mirrorPercentage"] = json!({"value": 25.0});
        let copies: f64 = serve(&world_with(&http), &from_shop())
            .mirrored
            .values()
            .sum();
        assert!(close(copies, 0.25));
        http["mirrorPercentage"] = json!({"value": 0.0});
        assert!(serve(&world_with(&http), &from_shop()).mirrored.is_empty());
    }

    #[test]
    fn names_resolve_as_istiod_resolves_them() {
        assert_eq!(fqdn("reviews", "shop"), "reviews.shop.svc.cluster.local");
        assert_eq!(fqdn("reviews.prod", "shop"), "reviews.prod");
        assert_eq!(fqdn("*", "shop"), "*");
        assert_eq!(gateway_name("public", "shop"), "shop/public");
        assert_eq!(gateway_name("./public", "shop"), "shop/public");
        assert_eq!(gateway_name("gw/public", "shop"), "gw/public");
        assert_eq!(
            gateway_name("public.gw.svc.cluster.local", "shop"),
            "gw/public"
        );
        assert_eq!(gateway_name("mesh", "shop"), "mesh");
    }

    #[test]
    fn a_destination_host_reaches_its_own_services_endpoints_by_short_name_or_fqdn() {
        // A second Service beside `reviews`, selecting only a pod `reviews` does not select.
        let canary_service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "reviews-canary", "namespace": "shop"},
            "spec": {"selector": {"role": "canary"}, "ports": [{"name": "http", "port": 9080}]}});
        let canary_pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "canary-a", "namespace": "shop",
                         "labels": {"app": "reviews-canary", "role": "canary"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let canary = |served: &Served| served.share(|p| p.name.starts_with("canary"));
        for host in ["reviews-canary", "reviews-canary.shop.svc.cluster.local"] {
            let vs = virtual_service(
                "reviews",
                json!({"hosts": ["reviews"], "http": [{"route": [
                    {"destination": {"host": "reviews"}, "weight": 80},
                    {"destination": {"host": host, "port": {"number": 9080}}, "weight": 20}]}]}),
            );
            let world = world(vec![canary_service.clone(), canary_pod.clone(), vs]);
            let served = serve(&world, &from_shop());
            assert!(served.unserved_because.is_none(), "{host}: {served:?}");
            assert!(close(canary(&served), 0.2), "{host}: {served:?}");
            assert!(close(v1(&served) + v2(&served), 0.8), "{host}: {served:?}");
        }
        // With a dot the host is taken as written: `reviews-canary.shop` is no registry host.
        let vs = virtual_service(
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [
                {"destination": {"host": "reviews"}, "weight": 80},
                {"destination": {"host": "reviews-canary.shop"}, "weight": 20}]}]}),
        );
        let served = serve(&world(vec![canary_service, canary_pod, vs]), &from_shop());
        assert!(close(canary(&served), 0.0));
        assert!(
            served
                .unserved_because
                .is_some_and(|why| why.contains("503 NC"))
        );
    }
}
