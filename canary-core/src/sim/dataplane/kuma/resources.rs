//! What a Kuma control plane knows of the cluster: the mesh and its MeshServices mode, the
//! `kuma.io/service` tags of pods' inbounds, MeshService objects and their endpoints, and the
//! protocol of each destination.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::{PodRef, World, string_map};

/// The namespace of the control plane: policies there apply mesh-wide (system role).
pub(super) const SYSTEM_NAMESPACE: &str = "kuma-system";

/// The tag naming a pod's inbound: `<service>_<namespace>_svc_<port>` on Kubernetes.
pub(super) const SERVICE_TAG: &str = "kuma.io/service";

/// The tag holding a dataplane's (or a policy's) namespace.
pub(super) const NAMESPACE_TAG: &str = "k8s.kuma.io/namespace";

/// The label holding an object's name as the user wrote it.
pub(super) const DISPLAY_NAME: &str = "kuma.io/display-name";

/// `spec.meshServices.mode` of a Mesh (api/mesh/v1alpha1/mesh.proto `MeshServices.Mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// No MeshServices are generated (the default, and the default mesh's).
    Disabled,
    /// MeshServices are generated and used.
    Everywhere,
    /// MeshServices are generated, but only callers listing them in `reachableBackends` use them.
    ReachableBackends,
    /// Only MeshServices are used; `kuma.io/service` outbounds do not exist.
    Exclusive,
}

/// The mesh the cluster's pods belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mesh {
    /// Its name.
    pub name: String,
    /// Its MeshServices mode.
    pub mode: Mode,
}

impl Mesh {
    /// The mesh the proxies of `namespace` join: the one its Namespace names with
    /// `kuma.io/mesh` (a label or an annotation), else `default` (Kuma
    /// `pkg/plugins/runtime/k8s/util`: `MeshOfByLabelOrAnnotation`). Without a Mesh object of
    /// that name, the mesh as the control plane creates it (MeshServices disabled).
    pub fn of(world: &World, namespace: &str) -> Mesh {
        let named = mesh_of_namespace(world, namespace);
        let Some(mesh) = world
            .all("Mesh")
            .find(|m| str_at(m, "/metadata/name") == Some(named.as_str()))
        else {
            return Mesh {
                name: named,
                mode: Mode::Disabled,
            };
        };
        let mode = match mesh
            .pointer("/spec/meshServices/mode")
            .and_then(Value::as_str)
        {
            Some("Everywhere") => Mode::Everywhere,
            Some("ReachableBackends") => Mode::ReachableBackends,
            Some("Exclusive") => Mode::Exclusive,
            _ => Mode::Disabled,
        };
        Mesh {
            name: str_at(mesh, "/metadata/name")
                .unwrap_or("default")
                .to_owned(),
            mode,
        }
    }

    /// True when `object` (a policy) belongs to this mesh: its `kuma.io/mesh` label, when set,
    /// names it (an unlabelled policy is in the default mesh).
    pub fn holds(&self, object: &Value) -> bool {
        let labels = World::labels(object);
        let named = labels
            .get("kuma.io/mesh")
            .map(String::as_str)
            .or_else(|| str_at(object, "/mesh"))
            .unwrap_or("default");
        named == self.name
    }
}

/// The name of the mesh the proxies of `namespace` join: its Namespace's `kuma.io/mesh` label,
/// else that annotation, else `default` (Kuma `pkg/plugins/runtime/k8s/util`:
/// `MeshOfByLabelOrAnnotation`).
pub fn mesh_of_namespace(world: &World, namespace: &str) -> String {
    world
        .all("Namespace")
        .find(|ns| str_at(ns, "/metadata/name") == Some(namespace))
        .and_then(|ns| {
            str_at(ns, "/metadata/labels/kuma.io~1mesh")
                .or_else(|| str_at(ns, "/metadata/annotations/kuma.io~1mesh"))
        })
        .unwrap_or("default")
        .to_owned()
}

/// The string at `pointer` in `value`.
pub(super) fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// The protocol Kuma gives a Kubernetes Service port: its `appProtocol` when Kuma knows it, else
/// the `<port>.service.kuma.io/protocol` annotation, else `tcp`
/// (pkg/plugins/runtime/k8s/controllers/inbound_converter.go: `ProtocolTagFor`).
pub(super) fn service_port_protocol(service: &Value, port: &Value) -> String {
    let known = |p: &str| {
        matches!(
            p.to_ascii_lowercase().as_str(),
            "http" | "http2" | "grpc" | "tcp" | "kafka" | "tls"
        )
    };
    if let Some(app) = port.get("appProtocol").and_then(Value::as_str)
        && known(app)
    {
        return app.to_ascii_lowercase();
    }
    let number = port.get("port").and_then(Value::as_u64).unwrap_or(0);
    let annotation = format!("{number}.service.kuma.io/protocol");
    if let Some(value) = service
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(&annotation))
        .and_then(Value::as_str)
        && !value.is_empty()
    {
        return value.to_ascii_lowercase();
    }
    "tcp".to_owned()
}

/// True for the protocols MeshHTTPRoute configures (pkg/plugins/policies/core/xds/meshroute/
/// listeners.go: `MakeHTTPSplit` accepts http, http2 and grpc).
pub(super) fn is_http(protocol: &str) -> bool {
    matches!(protocol, "http" | "http2" | "grpc")
}

/// A Kubernetes Service port: the number, its name and the protocol Kuma gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServicePort {
    /// The Service port number.
    pub port: u64,
    /// The protocol (`http`, `tcp`…).
    pub protocol: String,
}

/// The port `port` of Service `namespace/name` (the first port when `port` is `None`).
pub(super) fn service_port(
    world: &World,
    namespace: &str,
    name: &str,
    port: Option<u64>,
) -> Option<ServicePort> {
    let service = world.get("Service", namespace, name)?;
    let ports = service.pointer("/spec/ports")?.as_array()?;
    let chosen = match port {
        Some(number) => ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(number))?,
        None => ports.first()?,
    };
    Some(ServicePort {
        port: chosen.get("port").and_then(Value::as_u64)?,
        protocol: service_port_protocol(service, chosen),
    })
}

/// `<service>_<namespace>_svc_<port>`: the `kuma.io/service` tag Kuma gives the inbounds of the
/// pods a Service selects on Kubernetes (pkg/plugins/runtime/k8s/util: `ServiceTag`).
pub(super) fn service_tag(namespace: &str, name: &str, port: u64) -> String {
    format!("{name}_{namespace}_svc_{port}")
}

/// The Service, namespace and port a `kuma.io/service` value of the Kubernetes form names
/// (pkg/plugins/policies/core/rules/resolve/targetref.go: `parseService`).
pub(super) fn parse_service_tag(tag: &str) -> Option<(String, String, u64)> {
    let parts: Vec<&str> = tag.split('_').collect();
    match parts.as_slice() {
        [name, namespace, "svc", port] => Some((
            (*name).to_owned(),
            (*namespace).to_owned(),
            port.parse().ok()?,
        )),
        _ => None,
    }
}

/// True when `pod` (in `namespace`, with `labels`) carries every tag of `tags` on an inbound:
/// its labels, `k8s.kuma.io/namespace`, and `kuma.io/service` for each Service port selecting it.
/// A value `*` matches any value of a present tag.
pub(super) fn pod_has_tags(
    world: &World,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> bool {
    tags.iter().all(|(key, wanted)| {
        let any = wanted == "*";
        match key.as_str() {
            SERVICE_TAG => pod_service_tags(world, namespace, labels)
                .iter()
                .any(|tag| any || tag == wanted),
            NAMESPACE_TAG => any || namespace == wanted,
            "kuma.io/mesh" | "kuma.io/zone" | "kuma.io/protocol" => true,
            _ => labels.get(key).is_some_and(|v| any || v == wanted),
        }
    })
}

/// The `kuma.io/service` tags of a pod's inbounds: one per port of each Service selecting it.
fn pod_service_tags(
    world: &World,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    world
        .all("Service")
        .filter(|s| str_at(s, "/metadata/namespace") == Some(namespace))
        .filter(|s| {
            let selector = string_map(s.pointer("/spec/selector"));
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .flat_map(|s| {
            let name = str_at(s, "/metadata/name").unwrap_or_default();
            s.pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ports| {
                    ports
                        .iter()
                        .filter_map(|p| p.get("port").and_then(Value::as_u64))
                        .map(|port| service_tag(namespace, name, port))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// The ready pods whose inbounds carry `tags`, which name a `kuma.io/service` of the Kubernetes
/// form (plus, optionally, other tags such as `version`). Kuma sends only to healthy inbounds
/// (pkg/xds/topology/outbound.go: `GetHealthyInbounds`).
pub(super) fn tagged_endpoints(world: &World, tags: &BTreeMap<String, String>) -> Vec<PodRef> {
    let Some((name, namespace, port)) = tags.get(SERVICE_TAG).and_then(|t| parse_service_tag(t))
    else {
        return Vec::new();
    };
    if service_port(world, &namespace, &name, Some(port)).is_none() {
        return Vec::new();
    }
    world
        .endpoints(&namespace, &name)
        .into_iter()
        .filter(|pod| {
            let labels = world.pod(pod).map(World::labels).unwrap_or_default();
            pod_has_tags(world, &namespace, &labels, tags)
        })
        .collect()
}

/// The protocol of a `kuma.io/service` as the control plane infers it from its healthy
/// endpoints: none when it has none (pkg/xds/context/mesh_context_builder.go:
/// `resolveProtocol`, `GetServiceProtocol` answers "unknown").
pub(super) fn tag_protocol(world: &World, tag: &str) -> Option<String> {
    let (name, namespace, port) = parse_service_tag(tag)?;
    let service_port = service_port(world, &namespace, &name, Some(port))?;
    if world.endpoints(&namespace, &name).is_empty() {
        return None;
    }
    Some(service_port.protocol)
}

/// A MeshService object: its identity, its labels (with those the control plane computes) and
/// its ports.
#[derive(Debug, Clone)]
pub(super) struct MeshService<'a> {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its labels, with `kuma.io/display-name`, `k8s.kuma.io/namespace` and `kuma.io/mesh`
    /// as the control plane sets them (pkg/core/resources/labels/compute.go).
    pub labels: BTreeMap<String, String>,
    /// The object.
    pub object: &'a Value,
}

/// One port of a MeshService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MeshServicePort {
    /// The port number.
    pub port: u64,
    /// Its name, when it has one.
    pub name: Option<String>,
    /// Its `appProtocol` (`tcp` when unset).
    pub protocol: String,
}

impl MeshServicePort {
    /// True when `section` names this port: by its name or its number
    /// (pkg/core/resources/apis/meshservice/api/v1alpha1/helpers.go: `FindPortByName`).
    pub fn named(&self, section: &str) -> bool {
        self.name.as_deref() == Some(section) || self.port.to_string() == section
    }

    /// The section name of this port (`Port.GetName`: its name, else its number).
    pub fn section(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.port.to_string())
    }
}

impl<'a> MeshService<'a> {
    /// Every MeshService of `mesh` in `world`.
    pub fn all(world: &'a World, mesh: &Mesh) -> Vec<MeshService<'a>> {
        world
            .all("MeshService")
            .filter(|m| mesh.holds(m))
            .filter_map(|object| {
                let name = str_at(object, "/metadata/name")?.to_owned();
                let namespace = str_at(object, "/metadata/namespace")
                    .unwrap_or_default()
                    .to_owned();
                let mut labels = World::labels(object);
                labels
                    .entry(DISPLAY_NAME.to_owned())
                    .or_insert_with(|| name.clone());
                if !namespace.is_empty() {
                    labels
                        .entry(NAMESPACE_TAG.to_owned())
                        .or_insert_with(|| namespace.clone());
                }
                labels
                    .entry("kuma.io/mesh".to_owned())
                    .or_insert_with(|| mesh.name.clone());
                Some(MeshService {
                    name,
                    namespace,
                    labels,
                    object,
                })
            })
            .collect()
    }

    /// Its ports.
    pub fn ports(&self) -> Vec<MeshServicePort> {
        self.object
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        Some(MeshServicePort {
                            port: p.get("port").and_then(Value::as_u64)?,
                            name: p.get("name").and_then(Value::as_str).map(str::to_owned),
                            protocol: p
                                .get("appProtocol")
                                .and_then(Value::as_str)
                                .unwrap_or("tcp")
                                .to_ascii_lowercase(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The port `section` names.
    pub fn port(&self, section: &str) -> Option<MeshServicePort> {
        self.ports().into_iter().find(|p| p.named(section))
    }

    /// Its ready endpoints: the pods of its namespace whose inbounds carry
    /// `spec.selector.dataplaneTags`. A MeshService without a selector has none.
    pub fn endpoints(&self, world: &World) -> Vec<PodRef> {
        let tags = string_map(self.object.pointer("/spec/selector/dataplaneTags"));
        if tags.is_empty() {
            return Vec::new();
        }
        world
            .all("Pod")
            .filter(|pod| str_at(pod, "/metadata/namespace") == Some(self.namespace.as_str()))
            .filter(|pod| World::ready(pod))
            .filter(|pod| pod_has_tags(world, &self.namespace, &World::labels(pod), &tags))
            .filter_map(|pod| {
                Some(PodRef {
                    namespace: self.namespace.clone(),
                    name: str_at(pod, "/metadata/name")?.to_owned(),
                })
            })
            .collect()
    }

    /// Its creation time as written (RFC 3339 sorts as text), empty when unset.
    pub fn created(&self) -> &str {
        str_at(self.object, "/metadata/creationTimestamp").unwrap_or_default()
    }
}
