//! The Kuma data plane (Kuma 2.9–2.13 on Kubernetes): which pods answer a request a sidecar or
//! a gateway sends to a Service, under the mesh's MeshHTTPRoutes or legacy TrafficRoutes.
//!
//! How a request is routed, as the control plane configures the caller's proxy:
//!
//! - **The outbound.** The caller reaches the destination (a Service host, or a
//!   `<svc>_<ns>_svc_<port>.mesh` name) through one outbound listener. When a MeshService exists
//!   for the Service (the control plane generates them when the Mesh's `meshServices.mode` is
//!   not `Disabled`; the model takes whatever MeshService objects the world holds), that
//!   listener is the MeshService's: MeshService outbounds come after the `kuma.io/service` ones
//!   on the same address and replace them (pkg/xds/context/mesh_context_builder.go:
//!   `BuildIfChanged` appends `Outbounds(meshServices)` after the VIP outbounds), except in
//!   `ReachableBackends` mode where a caller uses them only when it lists them
//!   (pkg/xds/sync/dataplane_proxy_builder.go: `resolveVIPOutbounds`; callers here list
//!   none). In `Exclusive` mode there are no `kuma.io/service` outbounds. Otherwise the outbound
//!   is the `kuma.io/service` one, `<svc>_<ns>_svc_<port>`.
//! - **MeshHTTPRoute or TrafficRoute.** When the mesh holds TrafficRoutes and no MeshHTTPRoute
//!   configures the caller, the legacy TrafficRoute decides
//!   (pkg/plugins/policies/meshhttproute/plugin/v1alpha1/plugin.go: `Apply`).
//! - **Which MeshHTTPRoutes.** A policy configures the caller when its top-level `targetRef`
//!   selects it and its role allows: consumer and workload-owner policies only configure
//!   proxies in their own namespace; producer and system ones configure every proxy (see
//!   the `policy` module). Its `to` entries configure the outbound when their `targetRef`
//!   names it (a `labels` reference resolves only against MeshService objects that exist).
//! - **Rules.** The entries' rules merge in precedence order and become routes tried in match
//!   order, with a catch-all route to the destination itself (see the `routes` module). A
//!   route sends to its `backendRefs` by weight; a backend whose cluster cannot be built (a
//!   `kuma.io/service` without healthy endpoints or not HTTP, an unknown MeshService or port)
//!   is left out, and a route left with no backend is dropped, so its requests fall to the
//!   next route.
//! - **A non-HTTP destination** (a Service port without `appProtocol: http`/`http2`/`grpc` or
//!   the `<port>.service.kuma.io/protocol` annotation) is proxied as TCP: MeshHTTPRoute does not
//!   apply, every request goes to the destination's endpoints.

mod policy;
mod resources;
mod routes;
mod traffic_route;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Caller, PodRef, Request, Served, World, service_of_host};
use policy::{Outbound, Policy, Proxy, TargetRef, merge_entries, oldest_with_labels};
use resources::{
    Mesh, MeshService, Mode, SERVICE_TAG, is_http, parse_service_tag, service_port, service_tag,
    str_at, tag_protocol, tagged_endpoints,
};
use routes::{BackendRef, Route, Split};

pub use resources::mesh_of_namespace;

/// Who answers `request` in `world`.
pub fn serve(world: &World, request: &Request) -> Served {
    let caller_namespace = match &request.caller {
        Caller::Sidecar { namespace } | Caller::Gateway { namespace, .. } => namespace.as_str(),
        Caller::IngressController => "",
    };
    let mesh = Mesh::of(world, caller_namespace);
    let proxy = match &request.caller {
        Caller::Sidecar { namespace } => Proxy {
            namespace: namespace.clone(),
            gateway: false,
            mesh_gateway: None,
        },
        Caller::Gateway { namespace, name } => {
            let builtin = world
                .all("MeshGateway")
                .any(|g| str_at(g, "/metadata/name") == Some(name.as_str()) && mesh.holds(g));
            Proxy {
                namespace: namespace.clone(),
                gateway: true,
                mesh_gateway: builtin.then(|| name.clone()),
            }
        }
        Caller::IngressController => {
            return Served::nobody("an ingress controller is not a Kuma proxy");
        }
    };
    let context = Context {
        world,
        services: MeshService::all(world, &mesh),
        policies: Policy::all(world, &mesh),
        mesh,
    };
    if proxy.mesh_gateway.is_some() {
        return context.serve_gateway(&proxy, request);
    }
    context.serve_outbound(&proxy, request)
}

/// The destination a host names: a Service port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    namespace: String,
    name: String,
    port: u64,
    protocol: String,
}

/// The Service port `host` names for a caller in `namespace`: a Kubernetes Service name, or a
/// Kuma `.mesh` name, `<svc>_<ns>_svc_<port>.mesh` or `<svc>.<ns>.svc.<port>.mesh`
/// (pkg/xds/topology/dns.go: `VIPOutbounds`).
fn destination(
    world: &World,
    host: &str,
    port: Option<u16>,
    namespace: &str,
) -> Option<Destination> {
    let host = host.trim_end_matches('.');
    let (svc_namespace, name, port) = if let Some(base) = host.strip_suffix(".mesh") {
        let parts: Vec<&str> = base.split('.').collect();
        match (parse_service_tag(base), parts.as_slice()) {
            (Some((name, ns, port)), _) => (ns, name, Some(port)),
            (None, [name, ns, "svc", port]) => {
                ((*ns).to_owned(), (*name).to_owned(), port.parse().ok())
            }
            _ => return None,
        }
    } else {
        let (ns, name) = service_of_host(host, namespace)?;
        (ns, name, port.map(u64::from))
    };
    let found = service_port(world, &svc_namespace, &name, port)?;
    Some(Destination {
        namespace: svc_namespace,
        name,
        port: found.port,
        protocol: found.protocol,
    })
}

/// What the model reads once per request.
struct Context<'a> {
    world: &'a World,
    mesh: Mesh,
    services: Vec<MeshService<'a>>,
    policies: Vec<Policy<'a>>,
}

impl<'a> Context<'a> {
    /// The MeshService of a Service: the one the control plane generates, of the same name and
    /// namespace, with the port.
    fn mesh_service(&self, destination: &Destination) -> Option<&MeshService<'a>> {
        self.services.iter().find(|m| {
            m.name == destination.name
                && m.namespace == destination.namespace
                && m.ports().iter().any(|p| p.port == destination.port)
        })
    }

    /// A sidecar's (or delegated gateway's) request to a mesh destination.
    fn serve_outbound(&self, proxy: &Proxy, request: &Request) -> Served {
        let Some(destination) =
            destination(self.world, &request.host, request.port, &proxy.namespace)
        else {
            return Served::nobody(format!(
                "{} names no Service port of the mesh",
                request.host
            ));
        };
        let tag = service_tag(&destination.namespace, &destination.name, destination.port);
        let traffic_routes = traffic_route::all(self.world, &self.mesh);
        let http_routed = self
            .policies
            .iter()
            .any(|p| p.selects(proxy) && !p.to.is_empty());
        if !traffic_routes.is_empty() && !http_routed {
            if self.mesh.mode == Mode::Exclusive {
                return Served::nobody(format!(
                    "no outbound for {tag}: the mesh uses MeshServices only and TrafficRoutes configure none"
                ));
            }
            return match traffic_route::select(self.world, &self.mesh, proxy, &tag) {
                Some(route) => traffic_route::serve(self.world, route, &tag, request),
                None => Served::nobody(format!("no TrafficRoute selects the outbound {tag}")),
            };
        }
        if self.mesh.mode == Mode::Exclusive
            && request.host.trim_end_matches('.').ends_with(".mesh")
        {
            return Served::nobody(format!(
                "{}: the mesh uses MeshServices only, `.mesh` names of `kuma.io/service` have no address",
                request.host
            ));
        }
        let real = match self.mesh.mode {
            Mode::ReachableBackends => None,
            _ => self.mesh_service(&destination),
        };
        let (outbound, protocol, own) = match real {
            Some(ms) => {
                let Some(port) = ms.ports().into_iter().find(|p| p.port == destination.port) else {
                    return Served::nobody(format!("{tag}: no MeshService port"));
                };
                let own = Split {
                    weight: 1.0,
                    endpoints: ms.endpoints(self.world),
                    name: format!("MeshService {}/{}", ms.namespace, ms.name),
                };
                (
                    Outbound::Real {
                        name: ms.name.clone(),
                        namespace: ms.namespace.clone(),
                        labels: &ms.labels,
                        port: port.port,
                        section: port.section(),
                    },
                    port.protocol,
                    Some(own),
                )
            }
            None if self.mesh.mode == Mode::Exclusive => {
                return Served::nobody(format!(
                    "no MeshService for {tag}: the mesh uses MeshServices only"
                ));
            }
            None => {
                let tags = BTreeMap::from([(SERVICE_TAG.to_owned(), tag.clone())]);
                let own = tag_protocol(self.world, &tag)
                    .filter(|p| is_http(p))
                    .map(|_| Split {
                        weight: 1.0,
                        endpoints: tagged_endpoints(self.world, &tags),
                        name: tag.clone(),
                    });
                (
                    Outbound::Legacy { tag: tag.clone() },
                    destination.protocol.clone(),
                    own,
                )
            }
        };
        let rules = policy::merged_rules(&self.policies, proxy, &outbound);
        let whole = |why: String| {
            let mut served = Served::default();
            let endpoints = match &outbound {
                Outbound::Legacy { tag } => tagged_endpoints(
                    self.world,
                    &BTreeMap::from([(SERVICE_TAG.to_owned(), tag.clone())]),
                ),
                Outbound::Real { .. } => real.map(|m| m.endpoints(self.world)).unwrap_or_default(),
            };
            served.spread(1.0, &endpoints, || why);
            served
        };
        if !is_http(&protocol) {
            return whole(format!("no endpoints for {tag} (TCP)"));
        }
        let routes = routes::routes(&rules, true);
        let built = self.build(&routes, own.as_ref());
        if built.is_empty() {
            return whole(format!("no endpoints for {tag}"));
        }
        self.answer(&built, request, &tag)
    }

    /// A builtin MeshGateway's request: the rules of the `to` entries of kind `Mesh` of the
    /// policies attached to it, for the request's host
    /// (pkg/plugins/policies/meshhttproute/plugin/v1alpha1/plugin.go: `ApplyToGateway`). A
    /// gateway route without backends and a request matching no route are answered by nobody.
    fn serve_gateway(&self, proxy: &Proxy, request: &Request) -> Served {
        let mut entries: Vec<policy::Entry<'_>> = self
            .policies
            .iter()
            .filter(|p| p.selects(proxy))
            .flat_map(|policy| {
                policy.to.iter().map(move |value| policy::Entry {
                    policy,
                    target: TargetRef::parse(value.get("targetRef")),
                    value,
                })
            })
            .filter(|e| e.target.kind == "Mesh")
            .filter(|e| hostname_matches(e.value.get("hostnames"), &request.host))
            .collect();
        entries.sort_by(policy::policy_precedence);
        let rules = merge_entries(&entries);
        let routes = routes::routes(&rules, false);
        let built = self.build(&routes, None);
        self.answer(&built, request, &request.host)
    }

    /// The routes that get an Envoy route: those with at least one backend whose cluster can be
    /// built (pkg/plugins/policies/meshhttproute/plugin/v1alpha1/listeners.go:
    /// `generateFromService` skips a route whose split is empty). `own` is the outbound's
    /// destination, for routes without `backendRefs`.
    fn build(&self, routes: &[Route], own: Option<&Split>) -> Vec<(Route, Vec<Split>)> {
        routes
            .iter()
            .filter_map(|route| {
                let splits: Vec<Split> = if route.backend_refs.is_empty() {
                    own.cloned().into_iter().collect()
                } else {
                    route
                        .backend_refs
                        .iter()
                        .filter_map(|b| self.split(&BackendRef::parse(b), &route.origin_namespace))
                        .collect()
                };
                (!splits.is_empty()).then(|| (route.clone(), splits))
            })
            .collect()
    }

    /// Who answers `request` on `routes`: the first route it matches, its share per backend by
    /// weight, and the copies its `RequestMirror` filters make.
    fn answer(&self, routes: &[(Route, Vec<Split>)], request: &Request, what: &str) -> Served {
        let Some((route, splits)) = routes
            .iter()
            .find(|(r, _)| routes::matches(&r.matched, request))
        else {
            return Served::nobody(format!(
                "no route for {} {} on {what} (404)",
                request.method, request.path
            ));
        };
        let total: f64 = splits.iter().map(|s| s.weight).sum();
        let mut served = Served::default();
        for split in splits {
            served.spread(split.weight / total, &split.endpoints, || {
                format!("no endpoints for {}", split.name)
            });
        }
        for filter in &route.filters {
            if filter.get("type").and_then(Value::as_str) != Some("RequestMirror") {
                continue;
            }
            let mirror = &filter["requestMirror"];
            let share = percentage(mirror.get("percentage")).unwrap_or(100.0) / 100.0;
            served.mirror(
                share,
                &self.mirror_endpoints(&BackendRef::parse(&mirror["backendRef"])),
            );
        }
        served
    }

    /// Where a backend reference sends its share, or `None` when its cluster cannot be built
    /// (pkg/plugins/policies/core/xds/meshroute/listeners.go: `makeSplits`,
    /// `handleRealResources`, `handleLegacyBackendRef`; rules/resolve/backendref.go:
    /// `BackendRef`). A MeshService port with `sectionName` or `port` resolves by `labels` (the
    /// oldest match) or by `name` and `namespace` (the policy's when omitted); otherwise the
    /// `name` is a `kuma.io/service`, whose cluster exists only while it has healthy HTTP
    /// endpoints.
    fn split(&self, backend: &BackendRef, origin_namespace: &str) -> Option<Split> {
        if backend.weight == 0 {
            return None;
        }
        if backend.real() {
            let service = if backend.labels.is_empty() {
                let namespace = if backend.namespace.is_empty() {
                    origin_namespace
                } else {
                    &backend.namespace
                };
                self.services
                    .iter()
                    .find(|m| m.name == backend.name && m.namespace == namespace)?
            } else {
                oldest_with_labels(&self.services, &backend.labels)?
            };
            let section = if backend.section_name.is_empty() {
                backend.port?.to_string()
            } else {
                backend.section_name.clone()
            };
            let port = service.port(&section)?;
            if !is_http(&port.protocol) {
                return None;
            }
            return Some(Split {
                weight: backend.weight as f64,
                endpoints: service.endpoints(self.world),
                name: format!(
                    "MeshService {}/{} port {}",
                    service.namespace, service.name, port.port
                ),
            });
        }
        if !matches!(backend.kind.as_str(), "MeshService" | "MeshServiceSubset") {
            return None;
        }
        let endpoints = self.legacy_endpoints(backend)?;
        Some(Split {
            weight: backend.weight as f64,
            endpoints,
            name: backend.name.clone(),
        })
    }

    /// The endpoints of a `kuma.io/service` backend (with its `tags`), when its cluster can be
    /// built: the service has healthy endpoints speaking HTTP, and the mesh is not `Exclusive`.
    /// On an `Exclusive` mesh the control plane still fills a tag's endpoints from the
    /// Dataplanes' inbound tags (pkg/xds/topology/outbound.go: `fillDataplaneOutbounds`), but
    /// from 2.11 a pod's inbounds keep a single Service's tag per port
    /// (pkg/plugins/runtime/k8s/controllers/inbound_converter.go: `InboundInterfacesFor`), which
    /// the model does not follow: it builds no `kuma.io/service` cluster there.
    fn legacy_endpoints(&self, backend: &BackendRef) -> Option<Vec<PodRef>> {
        if self.mesh.mode == Mode::Exclusive {
            return None;
        }
        let protocol = tag_protocol(self.world, &backend.name)?;
        if !is_http(&protocol) {
            return None;
        }
        let mut tags = backend.tags.clone();
        tags.insert(SERVICE_TAG.to_owned(), backend.name.clone());
        Some(tagged_endpoints(self.world, &tags))
    }

    /// The pods a `RequestMirror` copies to. Kuma 2.9 to 2.14 builds its backend as a
    /// `kuma.io/service` reference by `name` whatever its form
    /// (pkg/plugins/policies/meshhttproute/plugin/v1alpha1/listeners.go: `generateFromService`
    /// makes the mirror's split from `LegacyBackendRef`; only the unreleased main line resolves
    /// it, kumahq/kuma#17676). A MeshService reference (`name: web-canary, namespace, port`)
    /// therefore names a tag that does not exist even on a mesh with MeshServices, and the tag
    /// form `<svc>_<ns>_svc_<port>` reaches the pods carrying that tag. When no cluster is built,
    /// no copies are made: the mirror filter then fails to find its cluster
    /// (xds/filters/requestmirror.go: `Configure`), the caller's outbound is not generated and
    /// its proxy keeps the configuration it had, which mirrored nothing to this backend.
    fn mirror_endpoints(&self, backend: &BackendRef) -> Vec<PodRef> {
        self.legacy_endpoints(backend).unwrap_or_default()
    }
}

/// A `RequestMirror` percentage: a number or a decimal string.
fn percentage(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    }
}

/// True when `hostnames` (absent: any) admits `host`; `*.example.com` matches one or more
/// labels before `.example.com`.
fn hostname_matches(hostnames: Option<&Value>, host: &str) -> bool {
    let Some(names) = hostnames
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return true;
    };
    names.iter().filter_map(Value::as_str).any(|name| {
        name == "*"
            || name.eq_ignore_ascii_case(host)
            || name
                .strip_prefix('*')
                .is_some_and(|suffix| host.len() > suffix.len() && host.ends_with(suffix))
    })
}
