//! The kinds of caller users have, per provider, and the plain request each sends: derived from
//! the Rollout's spec (its Service, the provider's settings) and the objects in the world (the
//! stable Ingress, the VirtualService).

use serde_json::Value;

use crate::api::plan::RolloutPlan;
use crate::api::spec::StringMatch;
use crate::traffic::ProviderKind;

use super::super::{Caller, Request, World, kuma};
use super::sample::path_for;

/// The namespace of the callers outside the Rollout's namespace (another one when the Rollout
/// lives there).
pub const OTHER_NAMESPACE: &str = "elsewhere";

/// The host sent for Ingress rules, gateway hosts and lane ingresses that admit every host.
pub const ANY_HOST: &str = "www.example.com";

/// One kind of caller and the plain request it sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Who calls, for people (`sidecar in shop → web.shop.svc.cluster.local:80/`).
    pub label: String,
    /// The request without any match header.
    pub request: Request,
}

/// The callers users have under `plan`'s provider, or why there are none (the objects the
/// provider routes through are missing).
pub fn targets(plan: &RolloutPlan, world: &World) -> Result<Vec<Target>, String> {
    let Some(kind) = plan.provider.builtin() else {
        return Err(format!(
            "canary has no data-plane model of the plugin `{}`",
            plan.provider.name
        ));
    };
    match kind {
        ProviderKind::Nginx => nginx(plan, world),
        ProviderKind::Istio => Ok(istio(plan, world)),
        ProviderKind::Kuma => Ok(sidecars(
            plan,
            &["/".into()],
            kuma_other_namespace(plan, world),
        )),
        ProviderKind::Asm => asm(plan),
        ProviderKind::Gateway => gateway(plan, world),
    }
}

/// Kuma: a namespace outside the Rollout's whose proxies join the same mesh (Kuma routes only
/// within a mesh): another Namespace labelled into it, or when it is the default mesh, one
/// without a label; `None` when no other namespace is in the mesh.
fn kuma_other_namespace(plan: &RolloutPlan, world: &World) -> Option<String> {
    let mesh = kuma::mesh_of_namespace(world, &plan.namespace);
    let labelled = world
        .all("Namespace")
        .filter_map(|ns| ns.pointer("/metadata/name").and_then(Value::as_str))
        .filter(|name| *name != plan.namespace)
        .find(|name| kuma::mesh_of_namespace(world, name) == mesh)
        .map(str::to_owned);
    let other = other_namespace(plan);
    labelled.or_else(|| (kuma::mesh_of_namespace(world, &other) == mesh).then_some(other))
}

/// The namespace of callers outside the Rollout's.
fn other_namespace(plan: &RolloutPlan) -> String {
    if plan.namespace == OTHER_NAMESPACE {
        format!("{OTHER_NAMESPACE}-2")
    } else {
        OTHER_NAMESPACE.to_owned()
    }
}

fn fqdn(plan: &RolloutPlan) -> String {
    format!(
        "{}.{}.svc.cluster.local",
        plan.rollout.spec.service.name, plan.namespace
    )
}

fn service_port(plan: &RolloutPlan) -> Option<u16> {
    u16::try_from(plan.rollout.spec.service.port).ok()
}

/// A request for `host` and `path` from `caller`.
fn request(caller: Caller, host: &str, port: Option<u16>, path: &str) -> Request {
    let mut request = Request::to(host, path).from(caller);
    request.port = port;
    request
}

/// Mesh sidecars calling the Service: in the Rollout's namespace by its short name and its
/// cluster-local name, and in namespace `other` (when there is one) by its cluster-local name.
fn sidecars(plan: &RolloutPlan, paths: &[String], other: Option<String>) -> Vec<Target> {
    let port = service_port(plan);
    let fqdn = fqdn(plan);
    let short = plan.rollout.spec.service.name.as_str();
    let mut out = Vec::new();
    for path in paths {
        let mut callers = vec![
            (plan.namespace.as_str(), short),
            (plan.namespace.as_str(), fqdn.as_str()),
        ];
        if let Some(other) = &other {
            callers.push((other.as_str(), fqdn.as_str()));
        }
        for (namespace, host) in callers {
            let caller = Caller::Sidecar {
                namespace: namespace.to_owned(),
            };
            out.push(Target {
                label: format!(
                    "sidecar in {namespace} → {host}{}{path}",
                    port.map(|p| format!(":{p}")).unwrap_or_default()
                ),
                request: request(caller, host, port, path),
            });
        }
    }
    out
}

/// A concrete host for a host pattern: a wildcard's `*` becomes `www`, `*` alone any host.
fn concrete_host(host: &str) -> String {
    match host {
        "*" | "" => ANY_HOST.to_owned(),
        _ => match host.strip_prefix('*') {
            Some(rest) => format!("www{rest}"),
            None => host.to_ascii_lowercase(),
        },
    }
}

/// ingress-nginx: every host and path of the stable Ingress whose backend is the Rollout's
/// Service (a rule without a host, or the Ingress's default backend, for any host).
fn nginx(plan: &RolloutPlan, world: &World) -> Result<Vec<Target>, String> {
    let Some(settings) = &plan.rollout.spec.traffic_routing.nginx else {
        return Err("the Rollout has no nginx settings".to_owned());
    };
    let namespace = plan.namespace.as_str();
    let service = plan.rollout.spec.service.name.as_str();
    let Some(ingress) = world.get("Ingress", namespace, &settings.ingress) else {
        return Err(format!(
            "the Ingress {namespace}/{} does not exist",
            settings.ingress
        ));
    };
    let names_service = |backend: &Value| backend.pointer("/service/name") == Some(&service.into());
    let mut pairs: Vec<(String, String)> = Vec::new();
    for rule in ingress
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let host = concrete_host(rule["host"].as_str().unwrap_or_default());
        for path in rule
            .pointer("/http/paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|path| names_service(&path["backend"]))
        {
            pairs.push((
                host.clone(),
                path["path"].as_str().unwrap_or("/").to_owned(),
            ));
        }
    }
    if pairs.is_empty()
        && let Some(default) = ingress.pointer("/spec/defaultBackend")
        && names_service(default)
    {
        pairs.push((ANY_HOST.to_owned(), "/".to_owned()));
    }
    let mut out: Vec<Target> = Vec::new();
    for (host, path) in pairs {
        let label = format!("ingress-nginx {host}{path}");
        if !out.iter().any(|t| t.label == label) {
            out.push(Target {
                label,
                request: request(Caller::IngressController, &host, None, &path),
            });
        }
    }
    if out.is_empty() {
        return Err(format!(
            "the Ingress {namespace}/{} has no path to Service {service}",
            settings.ingress
        ));
    }
    Ok(out)
}

/// Istio: sidecars (as [`sidecars`]), and a gateway caller per gateway the spec or the
/// VirtualService names, for each of the VirtualService's hosts; the paths are those the
/// managed routes match (`/` for a route without a path condition).
fn istio(plan: &RolloutPlan, world: &World) -> Vec<Target> {
    let settings = plan
        .rollout
        .spec
        .traffic_routing
        .istio
        .clone()
        .unwrap_or_default();
    let namespace = plan.namespace.as_str();
    let service = plan.rollout.spec.service.name.as_str();
    let vs_name = settings
        .virtual_service
        .as_ref()
        .map_or(service, |vs| vs.name.as_str());
    let vs = world.get("VirtualService", namespace, vs_name);
    let strings = |pointer: &str| -> Vec<String> {
        vs.and_then(|vs| vs.pointer(pointer))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let mut hosts = strings("/spec/hosts");
    if hosts.is_empty() {
        hosts.clone_from(&settings.hosts);
    }
    if hosts.is_empty() {
        hosts.push(service.to_owned());
    }
    let mut gateways = settings.gateways.clone();
    for gateway in strings("/spec/gateways") {
        if !gateways.contains(&gateway) {
            gateways.push(gateway);
        }
    }
    let managed: Vec<String> = settings
        .virtual_service
        .map(|vs| vs.routes)
        .unwrap_or_default();
    let paths = vs.map_or_else(|| vec!["/".to_owned()], |vs| route_paths(vs, &managed));
    let mut out = sidecars(plan, &paths, Some(other_namespace(plan)));
    for gateway in gateways.iter().filter(|g| g.as_str() != "mesh") {
        let (gw_namespace, gw_name) = gateway
            .split_once('/')
            .unwrap_or((namespace, gateway.as_str()));
        for host in &hosts {
            let host = if host.contains('.') || host.contains('*') {
                concrete_host(host)
            } else {
                format!("{host}.{namespace}.svc.cluster.local")
            };
            if !gateway_serves(world, (gw_namespace, gw_name), namespace, &host) {
                continue;
            }
            for path in &paths {
                let caller = Caller::Gateway {
                    namespace: gw_namespace.to_owned(),
                    name: gw_name.to_owned(),
                };
                out.push(Target {
                    label: format!("gateway {gw_namespace}/{gw_name} → {host}{path}"),
                    request: request(caller, &host, None, path),
                });
            }
        }
    }
    out
}

/// Whether the Istio Gateway `gateway` (when it is in the world) has a server for `host` that
/// admits VirtualServices of `namespace`: a server host `[namespace/]dnsName`, the namespace
/// `*`, `.` (the Gateway's own) or a name, the DNS name exact, `*` or a `*.` suffix (Istio
/// `networking/v1/gateway.proto`, `Server.hosts`). A Gateway not in the world serves every host.
fn gateway_serves(world: &World, gateway: (&str, &str), namespace: &str, host: &str) -> bool {
    // Istio's Gateway, not the Gateway API's of the same kind name.
    let Some(object) = world.get("Gateway", gateway.0, gateway.1).filter(|object| {
        object["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("networking.istio.io/"))
    }) else {
        return true;
    };
    let server_hosts = object
        .pointer("/spec/servers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|server| server["hosts"].as_array().into_iter().flatten())
        .filter_map(Value::as_str);
    server_hosts.into_iter().any(|entry| {
        let (scope, name) = entry.split_once('/').unwrap_or(("*", entry));
        let scoped = match scope {
            "*" => true,
            "." => gateway.0 == namespace,
            other => other == namespace,
        };
        let named = name == "*"
            || name.eq_ignore_ascii_case(host)
            || name.strip_prefix('*').is_some_and(|suffix| {
                host.to_ascii_lowercase()
                    .ends_with(&suffix.to_ascii_lowercase())
            });
        scoped && named
    })
}

/// The paths the VirtualService's managed HTTP routes (`managed` by name, every route when
/// empty) match; `/` for a route or match without a `uri` condition.
fn route_paths(vs: &Value, managed: &[String]) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    let routes = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|route| {
            managed.is_empty()
                || route["name"]
                    .as_str()
                    .is_some_and(|name| managed.iter().any(|m| m == name))
        });
    for route in routes {
        let matches: Vec<&Value> = route["match"].as_array().into_iter().flatten().collect();
        let uris: Vec<Option<&Value>> = if matches.is_empty() {
            vec![None]
        } else {
            matches.iter().map(|m| m.get("uri")).collect()
        };
        for uri in uris {
            let path = match uri.map(|uri| serde_json::from_value::<StringMatch>(uri.clone())) {
                None => Some("/".to_owned()),
                Some(Ok(condition)) => path_for(&condition).ok(),
                Some(Err(_)) => None,
            };
            if let Some(path) = path
                && !paths.contains(&path)
            {
                paths.push(path);
            }
        }
    }
    if paths.is_empty() {
        paths.push("/".to_owned());
    }
    paths
}

/// Gateway API: clients of each Gateway the route attaches to (the route as the world holds
/// it, or the spec's `parentRefs` before canary generated it), for each of its hostnames (the
/// listener's, or any host, when the route has none), on the paths its rules to the Service
/// match (`/` for a rule without a path); for a GRPCRoute, gRPC calls.
fn gateway(plan: &RolloutPlan, world: &World) -> Result<Vec<Target>, String> {
    let Some(settings) = &plan.rollout.spec.traffic_routing.gateway_api else {
        return Err("the Rollout has no gatewayAPI settings".to_owned());
    };
    let service = plan.rollout.spec.service.name.as_str();
    let target = crate::traffic::gateway::route_of(settings, service);
    let namespace = plan.namespace.as_str();
    let route = world.get(target.kind.name(), namespace, &target.name);
    let parents: Vec<(String, String)> = match route {
        Some(route) => route
            .pointer("/spec/parentRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|parent| parent["kind"].as_str().is_none_or(|kind| kind == "Gateway"))
            .filter_map(|parent| {
                let name = parent["name"].as_str()?;
                let ns = parent["namespace"].as_str().unwrap_or(namespace);
                Some((ns.to_owned(), name.to_owned()))
            })
            .collect(),
        None if target.generated => settings
            .parent_refs
            .iter()
            .map(|parent| {
                let ns = parent.namespace.as_deref().unwrap_or(namespace);
                (ns.to_owned(), parent.name.clone())
            })
            .collect(),
        None => {
            return Err(format!(
                "the {} {namespace}/{} does not exist",
                target.kind.name(),
                target.name
            ));
        }
    };
    let hostnames: Vec<String> = match route {
        Some(route) => route
            .pointer("/spec/hostnames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        None => settings.hostnames.clone(),
    };
    let grpc = target.kind == crate::api::spec::GatewayRouteKind::GrpcRoute;
    let paths = match route {
        Some(route) if !grpc => gateway_paths(plan, route),
        _ if grpc => vec![GRPC_CALL.to_owned()],
        _ => vec!["/".to_owned()],
    };
    let mut out = Vec::new();
    for (gw_namespace, gw_name) in parents {
        let hosts = if hostnames.is_empty() {
            listener_hosts(world, &gw_namespace, &gw_name)
        } else {
            hostnames.clone()
        };
        for host in hosts {
            let host = concrete_host(&host);
            for path in &paths {
                let caller = Caller::Gateway {
                    namespace: gw_namespace.clone(),
                    name: gw_name.clone(),
                };
                let mut request = request(caller, &host, None, path);
                let label = if grpc {
                    request.method = "POST".to_owned();
                    request
                        .headers
                        .insert("content-type".to_owned(), "application/grpc".to_owned());
                    format!("gRPC client of gateway {gw_namespace}/{gw_name} → {host}{path}")
                } else {
                    format!("client of gateway {gw_namespace}/{gw_name} → {host}{path}")
                };
                out.push(Target { label, request });
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "the {} {namespace}/{} attaches to no Gateway",
            target.kind.name(),
            target.name
        ));
    }
    Ok(out)
}

/// The gRPC call the callers of a GRPCRoute make when its rules name no method.
const GRPC_CALL: &str = "/canary.example.Service/Call";

/// The hostnames of the listeners of Gateway `namespace/name` (any host for a listener without
/// one, or a Gateway not in the world).
fn listener_hosts(world: &World, namespace: &str, name: &str) -> Vec<String> {
    let mut hosts: Vec<String> = world
        .get("Gateway", namespace, name)
        .and_then(|gateway| gateway.pointer("/spec/listeners"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|listener| listener["hostname"].as_str().unwrap_or("*").to_owned())
        .collect();
    hosts.dedup();
    if hosts.is_empty() {
        hosts.push("*".to_owned());
    }
    hosts
}

/// The paths of the HTTPRoute's rules to the Service: an `Exact` or `PathPrefix` value, a
/// path a regular expression matches, `/` for a rule without a path.
fn gateway_paths(plan: &RolloutPlan, route: &Value) -> Vec<String> {
    let service = serde_json::json!(plan.rollout.spec.service.name);
    let mut paths: Vec<String> = Vec::new();
    for rule in route
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rule| {
            rule["backendRefs"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|backend| backend["name"] == service)
        })
    {
        let matches: Vec<&Value> = rule["matches"].as_array().into_iter().flatten().collect();
        let conditions: Vec<Option<&Value>> = if matches.is_empty() {
            vec![None]
        } else {
            matches.iter().map(|m| m.get("path")).collect()
        };
        for condition in conditions {
            let path = match condition {
                None => Some("/".to_owned()),
                Some(path) => {
                    let value = path["value"].as_str().unwrap_or("/").to_owned();
                    let condition = match path["type"].as_str() {
                        Some("Exact") => StringMatch::exact(value),
                        Some("RegularExpression") => StringMatch {
                            regex: Some(value),
                            ..StringMatch::default()
                        },
                        _ => StringMatch {
                            prefix: Some(value),
                            ..StringMatch::default()
                        },
                    };
                    path_for(&condition).ok()
                }
            };
            if let Some(path) = path
                && !paths.contains(&path)
            {
                paths.push(path);
            }
        }
    }
    if paths.is_empty() {
        paths.push("/".to_owned());
    }
    paths
}

/// ASM lanes: the lane group's ingress gateway for each of the entry service's ingress hosts
/// (when the spec sets `asm.ingress`), and sidecars calling the service by its cluster-local
/// name.
fn asm(plan: &RolloutPlan) -> Result<Vec<Target>, String> {
    let Some(settings) = &plan.rollout.spec.traffic_routing.asm else {
        return Err("the Rollout has no asm settings".to_owned());
    };
    let mut out = Vec::new();
    if let Some(ingress) = &settings.ingress {
        let gateway = settings.gateway.clone().unwrap_or_default();
        let gw_namespace = gateway.namespace.as_deref().unwrap_or("istio-system");
        let gw_name = gateway.name.as_deref().unwrap_or("ingressgateway");
        let path = match &ingress.uri {
            Some(uri) => path_for(uri)?,
            None => "/".to_owned(),
        };
        let hosts = if ingress.hosts.is_empty() {
            vec![ANY_HOST.to_owned()]
        } else {
            ingress.hosts.iter().map(|h| concrete_host(h)).collect()
        };
        for host in hosts {
            let caller = Caller::Gateway {
                namespace: gw_namespace.to_owned(),
                name: gw_name.to_owned(),
            };
            out.push(Target {
                label: format!("gateway {gw_namespace}/{gw_name} → {host}{path}"),
                request: request(caller, &host, None, &path),
            });
        }
    }
    let fqdn = fqdn(plan);
    let port = service_port(plan);
    for namespace in [plan.namespace.clone(), other_namespace(plan)] {
        let caller = Caller::Sidecar {
            namespace: namespace.clone(),
        };
        out.push(Target {
            label: format!(
                "sidecar in {namespace} → {fqdn}{}/",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            request: request(caller, &fqdn, port, "/"),
        });
    }
    Ok(out)
}
