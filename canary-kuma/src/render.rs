//! Rendering: a Rollout, a route and the stable Service → the canary Service and the route
//! object. Pure; the provider and `canary render` both use it.
//!
//! The canary gets its own Service (`<service>-canary`), so Kuma sees it as its own service
//! (a `MeshService`, or the `kuma.io/service` tag `<service>-canary_<namespace>_svc_<port>`);
//! the stable Service is never edited: the canary's pods leave its selector (see
//! [`canary_core::k8s::services`]). The route:
//!
//! - **MeshHTTPRoute** `<service>-canary` in the Rollout's namespace, in the mesh of
//!   `kuma.io/mesh`, a *producer* policy: it applies to every caller of the service in the mesh
//!   (sidecars of every namespace and gateways), not only to callers in its own namespace. A
//!   rule sends the matching requests to the canary, and a catch-all rule has weighted
//!   `backendRefs` to stable and canary and, for mirror releases, a `RequestMirror` filter.
//!   How it names services is in [`References`].
//! - **TrafficRoute** `<service>.<namespace>` (legacy, cluster-scoped): a weighted split
//!   between the two `kuma.io/service` tags.
//!
//! A route with no traffic for the canary needs no route object and no canary Service: the
//! service's own Service reaches the stable pods.
//!
//! The MeshHTTPRoute form holds for Kuma 2.9 to 2.14 (meshes with MeshServices: 2.10 to 2.14,
//! see [`References`]). Kuma's main line (3.0, unreleased) drops `name` from references and the
//! mesh's `meshServices` mode (`api/common/v1alpha1/targetref.go` there); these routes are not
//! for it.

use canary_core::k8s::objects::{Objects, generated_metadata};
use canary_core::k8s::services::{Split, canary_service_name, split, stable_service};
use canary_core::traffic::kuma;
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::matches::{catch_all, kuma_match};

/// Annotation on the route object: the route canary applied, as JSON.
pub const ROUTE_ANNOTATION: &str = "canary.rs/route";
/// The label that puts a Kuma resource in a mesh.
pub const MESH_LABEL: &str = "kuma.io/mesh";
/// The API version of Kuma's Kubernetes resources (routes, meshes).
pub const API_VERSION: &str = "kuma.io/v1alpha1";

/// The objects that put a route in effect: the canary Service, the MeshHTTPRoute or
/// TrafficRoute (`route`) and the stable Service's selector.
pub type Rendered = Split;

/// How a MeshHTTPRoute names the stable and canary services, which depends on whether the mesh
/// has MeshService objects (the Mesh's `spec.meshServices.mode`).
///
/// Both forms name the service the route is for (`to[].targetRef`) by its `kuma.io/service`
/// tag, `{kind: MeshService, name: <service>_<namespace>_svc_<port>}`:
///
/// - a `to[].targetRef` of kind `MeshService` with a `name` and no other namespace than the
///   policy's makes the route a *producer* policy, which applies to callers in every namespace
///   (Kuma `pkg/core/resources/model/resource.go` `ComputePolicyRole`, 2.9 to 2.13;
///   `pkg/core/resources/labels/compute.go` in 2.14). A reference by labels
///   (`kuma.io/display-name`) makes it a *consumer* policy, which only callers in the route's own
///   namespace get (`pkg/plugins/policies/core/matchers/dataplane.go`
///   `dppSelectedByNamespace`);
/// - on a mesh without MeshServices the name is matched as the `kuma.io/service` tag
///   (`pkg/plugins/policies/core/rules/rules.go` `asSubset`); on a mesh with them it resolves to
///   the MeshService `<service>` in `<namespace>` on port `<port>` (the backwards-compatible
///   parse in `pkg/plugins/policies/core/rules/resolve/targetref.go` `TargetRef`, Kuma 2.10 and
///   later).
///
/// The `backendRefs` differ, because a MeshService reference with a `port` resolves only to a
/// MeshService object and one without names a `kuma.io/service` tag
/// (`api/common/v1alpha1/targetref.go` `BackendRef.ReferencesRealObject`,
/// `pkg/plugins/policies/core/rules/resolve/backendref.go` `BackendRef`):
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    /// No MeshService objects (mode `Disabled`, the mode of a Mesh that does not set it, as the
    /// control plane's own `default` mesh and the Kurator seed's): backends by
    /// `kuma.io/service` tag, `{kind: MeshService, name: <service>_<namespace>_svc_<port>}`.
    ServiceTags,
    /// MeshService objects (`Everywhere`, `ReachableBackends` or `Exclusive`): backends by
    /// MeshService, `{kind: MeshService, name: <service>, namespace: <namespace>, port: <port>}`.
    ///
    /// The `RequestMirror` backend keeps the tag form: Kuma 2.9 to 2.14 builds a mirror's
    /// destination from a `kuma.io/service` tag only.
    MeshServices,
}

/// How the routes of `plan` name services, from the Mesh object among `objects` (found by name
/// in any namespace: Mesh is cluster-scoped, though manifests such as the Kurator seed's give it
/// one). A missing Mesh, or one that does not set `spec.meshServices.mode`, has no MeshServices
/// (`api/mesh/v1alpha1/mesh.proto`: `Disabled` is the default mode).
pub fn references(plan: &RolloutPlan, objects: &Objects) -> References {
    match mesh_services_mode(plan, objects) {
        Some("Everywhere" | "ReachableBackends" | "Exclusive") => References::MeshServices,
        _ => References::ServiceTags,
    }
}

/// The `spec.meshServices.mode` of the Mesh of `plan` among `objects` (found as
/// [`references`] finds it), when it sets one.
pub fn mesh_services_mode<'a>(plan: &RolloutPlan, objects: &'a Objects) -> Option<&'a str> {
    let name = mesh(plan);
    objects
        .iter()
        .find(|object| {
            object["kind"] == "Mesh"
                && object["apiVersion"]
                    .as_str()
                    .is_none_or(|v| v == API_VERSION)
                && object["metadata"]["name"].as_str() == Some(name)
        })
        .and_then(|mesh| mesh.pointer("/spec/meshServices/mode"))
        .and_then(Value::as_str)
}

/// Refuses a mirroring `route` on a mesh whose `meshServices.mode` is `Exclusive`.
///
/// Kuma 2.9 to 2.14 builds a `RequestMirror`'s destination only as a `kuma.io/service` tag,
/// whatever form its `backendRef` has (see [`mirror_backend_ref`]), and an `Exclusive` mesh
/// is one of MeshServices only: its proxies get no `kuma.io/service` outbounds
/// (`pkg/xds/context/mesh_context_builder.go`: `BuildIfChanged`), and from 2.11 a pod's
/// inbounds keep a single Service's tag per port
/// (`pkg/plugins/runtime/k8s/controllers/inbound_converter.go`: `InboundInterfacesFor`
/// deduplicates them by address and port), so whether the canary's tag still has its pods
/// depends on which other Services select them. A mirror that copies nothing leaves the
/// analysis without data; canary refuses before applying instead.
fn refuse_exclusive_mirror(
    plan: &RolloutPlan,
    route: &RouteState,
    objects: &Objects,
) -> Result<()> {
    if route.mirror.is_none()
        || kuma::traffic_route(&plan.rollout.spec.traffic_routing)
        || mesh_services_mode(plan, objects) != Some("Exclusive")
    {
        return Ok(());
    }
    Err(Error::Input(format!(
        "spec.strategy.mirror: Kuma cannot mirror on mesh {:?}: its spec.meshServices.mode is \
         Exclusive, and Kuma (2.9 to 2.14) mirrors only to a kuma.io/service tag, which such a \
         mesh does not keep as a destination; use a mesh whose meshServices.mode is Disabled, Everywhere \
         or ReachableBackends, or a canary or blue-green strategy",
        mesh(plan)
    )))
}

/// The mesh of `plan`.
pub fn mesh(plan: &RolloutPlan) -> &str {
    plan.rollout
        .spec
        .traffic_routing
        .kuma
        .as_ref()
        .and_then(|kuma| kuma.mesh.as_deref())
        .unwrap_or("default")
}

/// The route object's kind and name.
pub fn route_name(plan: &RolloutPlan) -> (&'static str, String) {
    let service = &plan.rollout.spec.service.name;
    if kuma::traffic_route(&plan.rollout.spec.traffic_routing) {
        ("TrafficRoute", format!("{service}.{}", plan.namespace))
    } else {
        ("MeshHTTPRoute", format!("{service}-canary"))
    }
}

/// The `kuma.io/service` tag of a Kubernetes Service on Kubernetes.
pub fn service_tag(service: &str, namespace: &str, port: i64) -> String {
    format!("{service}_{namespace}_svc_{port}")
}

/// The objects for `route`. `objects` holds the stable Service, and the canary Deployment and
/// pods when they run (the stable Service must not select them); for a
/// MeshHTTPRoute, the Mesh when it has MeshServices (see [`references`]).
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    refuse_exclusive_mirror(plan, route, objects)?;
    let mut rendered = split(plan, route, objects, || {
        Ok(if kuma::traffic_route(&plan.rollout.spec.traffic_routing) {
            traffic_route(plan, route)
        } else {
            mesh_http_route(plan, route, references(plan, objects))
        })
    })
    .map_err(Error::Input)?;
    if let (Some(canary), Ok(stable)) = (
        rendered.canary_service.as_mut(),
        stable_service(plan, objects),
    ) {
        in_the_mesh(plan, canary, stable);
    }
    Ok(rendered)
}

/// Makes the canary Service the same kind of service to Kuma as the stable one:
///
/// - labelled `kuma.io/mesh: <mesh>`: Kuma makes a MeshService of a Service that has the label
///   or whose namespace has sidecar injection on, in the mesh the label names (else the
///   namespace's; `MeshServiceReconciler.Reconcile` in Kuma's
///   `pkg/plugins/runtime/k8s/controllers/meshservice_controller.go`);
/// - with the stable Service's `<port>.service.kuma.io/protocol` annotations: a port's protocol
///   is its `appProtocol` (copied with the ports) or else that annotation, or else TCP
///   (`ProtocolTagFor` in `inbound_converter.go` there), and an HTTP route drops a backend that
///   is not HTTP.
fn in_the_mesh(plan: &RolloutPlan, canary: &mut Value, stable: &Value) {
    canary["metadata"]["labels"][MESH_LABEL] = json!(mesh(plan));
    let protocols: serde_json::Map<String, Value> = stable["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| key.ends_with(".service.kuma.io/protocol"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !protocols.is_empty() {
        canary["metadata"]["annotations"] = Value::Object(protocols);
    }
}

fn metadata(plan: &RolloutPlan, name: &str, route: &RouteState) -> Value {
    let mut metadata = generated_metadata(plan, name);
    metadata["labels"][MESH_LABEL] = json!(mesh(plan));
    metadata["annotations"] =
        json!({ROUTE_ANNOTATION: serde_json::to_string(route).unwrap_or_default()});
    metadata
}

/// The `backendRef` of the `RequestMirror` filter copying to `service`: its `kuma.io/service`
/// tag, `{kind: MeshService, name: <service>_<namespace>_svc_<port>}`, on every kind of mesh.
///
/// Kuma 2.9 to 2.14 does not resolve a mirror's `backendRef`: it always wraps it as a legacy
/// reference (`pkg/plugins/policies/meshhttproute/plugin/v1alpha1/listeners.go`:
/// `generateFromService` builds the mirror's split from `LegacyBackendRef`), so the cluster is
/// the `kuma.io/service` its `name` names (`pkg/plugins/policies/core/xds/meshroute/listeners.go`:
/// `handleLegacyBackendRef`) with the endpoints of that tag. A MeshService reference
/// (`name: <service>, namespace, port`) names no tag: no cluster is built, and the mirror
/// filter fails to find one (`xds/filters/requestmirror.go`: `Configure`), so nothing is
/// mirrored. The tag's endpoints exist on meshes with MeshServices too
/// (`pkg/xds/topology/outbound.go`: `BuildEdsEndpointMap` fills them from the Dataplanes'
/// inbound tags), except on `Exclusive` ones (see [`refuse_exclusive_mirror`]).
fn mirror_backend_ref(plan: &RolloutPlan, service: &str) -> Value {
    backend_ref(plan, service, References::ServiceTags)
}

/// A backend reference to `service` (without weight), as `references` says.
fn backend_ref(plan: &RolloutPlan, service: &str, references: References) -> Value {
    let port = plan.rollout.spec.service.port;
    match references {
        References::ServiceTags => json!({
            "kind": "MeshService",
            "name": service_tag(service, &plan.namespace, port),
        }),
        References::MeshServices => json!({
            "kind": "MeshService",
            "name": service,
            "namespace": plan.namespace,
            "port": port,
        }),
    }
}

fn mesh_http_route(plan: &RolloutPlan, route: &RouteState, references: References) -> Value {
    let backend = |service: &str, weight: u32| {
        let mut backend = backend_ref(plan, service, references);
        backend["weight"] = json!(weight);
        backend
    };
    let stable = &plan.rollout.spec.service.name;
    let canary = canary_service_name(plan);
    let share = route.whole_percent();
    let mut rules = Vec::new();
    if !route.matches.is_empty() {
        rules.push(json!({
            "matches": route.matches.iter().map(kuma_match).collect::<Vec<_>>(),
            "default": {"backendRefs": [backend(&canary, 100)]},
        }));
    }
    let mut weighted = json!({
        "matches": [catch_all()],
        "default": {"backendRefs": [backend(stable, 100 - share), backend(&canary, share)]},
    });
    if let Some(mirror) = route.mirror {
        weighted["default"]["filters"] = json!([{
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": mirror_backend_ref(plan, &canary),
                "percentage": mirror,
            },
        }]);
    }
    rules.push(weighted);
    let (kind, name) = route_name(plan);
    // The tag form in both modes: a producer policy, resolved on either kind of mesh (see
    // `References`).
    let target = json!({
        "kind": "MeshService",
        "name": service_tag(stable, &plan.namespace, plan.rollout.spec.service.port),
    });
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata(plan, &name, route),
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": target, "rules": rules}],
        },
    })
}

fn traffic_route(plan: &RolloutPlan, route: &RouteState) -> Value {
    let spec = &plan.rollout.spec.service;
    let stable = service_tag(&spec.name, &plan.namespace, spec.port);
    let canary = service_tag(&canary_service_name(plan), &plan.namespace, spec.port);
    let share = route.whole_percent();
    let (kind, name) = route_name(plan);
    let mut metadata = metadata(plan, &name, route);
    // Cluster-scoped: no namespace; the mesh is a field of its own.
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.remove("namespace");
    }
    json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "mesh": mesh(plan),
        "metadata": metadata,
        "spec": {
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": stable}}],
            "conf": {"split": [
                {"weight": 100 - share, "destination": {"kuma.io/service": stable}},
                {"weight": share, "destination": {"kuma.io/service": canary}},
            ]},
        },
    })
}

/// The route canary last applied to `object`, from its annotation.
pub fn applied_route(object: &Value) -> Option<RouteState> {
    let text = object
        .pointer("/metadata/annotations")?
        .get(ROUTE_ANNOTATION)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// The canary weight `object` really sends (matches and mirror are not read back): the canary
/// share of its catch-all rule or split.
pub fn observed_route(plan: &RolloutPlan, object: &Value) -> Option<RouteState> {
    let canary = canary_service_name(plan);
    let spec = &plan.rollout.spec.service;
    let canary_tag = service_tag(&canary, &plan.namespace, spec.port);
    let legacy = kuma::traffic_route(&plan.rollout.spec.traffic_routing);
    let entries: Vec<(bool, u64)> = if legacy {
        object["spec"]["conf"]["split"]
            .as_array()?
            .iter()
            .map(|s| {
                let to_canary = s["destination"]["kuma.io/service"].as_str() == Some(&canary_tag);
                (to_canary, s["weight"].as_u64().unwrap_or(0))
            })
            .collect()
    } else {
        object["spec"]["to"][0]["rules"].as_array()?.last()?["default"]["backendRefs"]
            .as_array()?
            .iter()
            .map(|b| {
                // Any form canary has written: by tag, by MeshService name, or by labels.
                let to_canary = [&b["name"], &b["labels"]["kuma.io/display-name"]]
                    .into_iter()
                    .any(|name| {
                        name.as_str()
                            .is_some_and(|name| name == canary || name == canary_tag)
                    });
                (to_canary, b["weight"].as_u64().unwrap_or(1))
            })
            .collect()
    };
    // Weights as the cluster holds them: summed in u128, so no count of them overflows.
    let total: u128 = entries.iter().map(|(_, w)| u128::from(*w)).sum();
    let to_canary: u128 = entries
        .iter()
        .filter(|(c, _)| *c)
        .map(|(_, w)| u128::from(*w))
        .sum();
    let weight = (to_canary * 100).checked_div(total).unwrap_or(0);
    Some(RouteState::weighted(
        u32::try_from(weight.min(100)).unwrap_or(100),
    ))
}
