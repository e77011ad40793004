//! `spec.trafficRouting`: which provider moves traffic, and its settings.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Exactly one of the providers must be set: a built-in one by its key, or a plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRouting {
    /// Istio VirtualService + DestinationRule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioRouting>,
    /// ingress-nginx canary Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxRouting>,
    /// Kuma MeshHTTPRoute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kuma: Option<KumaRouting>,
    /// Alibaba ASM traffic lanes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asm: Option<AsmRouting>,
    /// Kubernetes Gateway API routes (HTTPRoute, GRPCRoute).
    #[serde(
        default,
        rename = "gatewayAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_api: Option<GatewayRouting>,
    /// A provider that is not built in, registered by the program running canary
    /// (`canary_core::traffic::Registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginRouting>,
}

impl TrafficRouting {
    /// The plugin's `config`, when a plugin is named.
    pub fn plugin_config(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.plugin.as_ref().map(|plugin| &plugin.config)
    }
}

/// A traffic provider registered by name, with its settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRouting {
    /// The name it is registered under.
    pub name: String,
    /// Its settings, passed to it as they are: canary only bounds their size. The plugin's
    /// own rules check them at validation.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schemars(schema_with = "any_object")]
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// Any JSON object, kept as it is by the API server.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Istio settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioRouting {
    /// The VirtualService to manage; one named after the service is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<VirtualServiceRef>,
    /// The DestinationRule to manage; one named after the service is generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<DestinationRuleRef>,
    /// The hosts of a VirtualService canary generates; the service name when empty. A
    /// VirtualService the user wrote keeps its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The gateways of a VirtualService canary generates (`mesh` for the sidecars); the mesh
    /// only when empty. A VirtualService the user wrote keeps its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
}

/// A VirtualService, and which of its HTTP routes canary manages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceRef {
    /// The VirtualService name.
    pub name: String,
    /// Names of the HTTP routes to manage; the others are left as they are. Empty means the
    /// only route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// A DestinationRule by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleRef {
    /// The DestinationRule name.
    pub name: String,
}

/// ingress-nginx settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NginxRouting {
    /// The stable Ingress to clone into `<ingress>-canary`.
    pub ingress: String,
    /// The controller's `--annotations-prefix`; `nginx.ingress.kubernetes.io` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
}

/// Kuma settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KumaRouting {
    /// The mesh; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<String>,
    /// The route object: `MeshHTTPRoute` (Kuma 2.9 and later, the default) or the legacy
    /// `TrafficRoute` (older meshes; weights only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_kind: Option<KumaRouteKind>,
}

/// Which Kuma object carries the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KumaRouteKind {
    /// `MeshHTTPRoute` with `MeshService` backends.
    MeshHTTPRoute,
    /// The legacy, cluster-scoped `TrafficRoute` splitting by `kuma.io/service` tags.
    TrafficRoute,
}

/// Gateway API settings: the route to manage, or where a generated one attaches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayRouting {
    /// The HTTPRoute in the Rollout's namespace to edit: only its rules whose `backendRefs`
    /// name `spec.service` change; the rest stays as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<String>,
    /// The GRPCRoute in the Rollout's namespace to edit, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_route: Option<String>,
    /// Where the route canary generates attaches (owned by the Rollout, deleted with it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<GatewayParentRef>,
    /// The kind of the generated route: `HTTPRoute` (the default) or `GRPCRoute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_kind: Option<GatewayRouteKind>,
    /// The hostnames of the generated route; every host its parents accept when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Sticky canary: a user the weights send to the canary gets a cookie and stays on the
    /// canary while the release runs (HTTPRoute only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Which implementation serves the routes, for the builtin metrics (`other`, the default,
    /// has none: the metrics need custom queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<GatewayImplementation>,
}

/// The cookie of a sticky canary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinity {
    /// The cookie's name (an RFC 6265 token); `canary-session` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    /// How long the browser keeps it, e.g. `1h` (1s..=168h); `24h` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// A Gateway (or a listener of one) a generated route attaches to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayParentRef {
    /// The Gateway's name.
    pub name: String,
    /// Its namespace; the Rollout's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The listener, by name; every listener that admits the route when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// The kind of a Gateway API route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GatewayRouteKind {
    /// An `HTTPRoute`.
    #[default]
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    /// A `GRPCRoute`.
    #[serde(rename = "GRPCRoute")]
    GrpcRoute,
}

impl GatewayRouteKind {
    /// The kind's name.
    pub fn name(self) -> &'static str {
        match self {
            GatewayRouteKind::HttpRoute => "HTTPRoute",
            GatewayRouteKind::GrpcRoute => "GRPCRoute",
        }
    }
}

/// The Gateway API implementation, which decides the builtin metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GatewayImplementation {
    /// Istio's gateway: `istio_requests_total` reported by the gateway (`reporter="source"`),
    /// by destination Service.
    Istio,
    /// Envoy Gateway: Envoy's upstream cluster statistics, one cluster per backend (canary
    /// puts the canary backend first in a managed rule, with a filter of its own, so that
    /// Envoy Gateway gives each backend its own cluster).
    EnvoyGateway,
    /// Another implementation: no builtin metrics.
    Other,
}

/// Alibaba ASM lane settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AsmRouting {
    /// The ASMSwimLaneGroup shared by the rollouts of one call chain.
    pub lane_group: String,
    /// The lane canary workloads join.
    pub canary_lane: String,
    /// The lane of the stable workloads, and the permissive-mode fallback.
    pub base_lane: String,
    /// The header whose value names the lane (`x-asm-prefer-tag` in ASM's examples).
    pub route_header: String,
    /// How ingress traffic enters the canary lane; `header` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AsmRoutingMode>,
    /// The header carrying each request's trace id, which the services pass on to the calls
    /// they make: how permissive mode keeps a request in its lane along the chain
    /// (`x-request-id` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    /// The gateway ingress traffic enters by; `istio-system/ingressgateway` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<AsmGateway>,
    /// Set on the Rollout of the chain's entry service: the lanes' ingress rules (or weights)
    /// send gateway traffic to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<AsmIngress>,
}

/// The ASM ingress gateway of a lane group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AsmGateway {
    /// Its name; `ingressgateway` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its namespace; `istio-system` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Which gateway requests enter a chain's lanes, at its entry service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AsmIngress {
    /// The gateway hosts; every host (`*`) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// The request path; every path when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<crate::api::spec::StringMatch>,
}

/// How ingress traffic is sent into the canary lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AsmRoutingMode {
    /// Requests whose route header names the canary lane (ASM `rule_based`).
    #[serde(rename = "header")]
    Header,
    /// A share of ingress traffic by weight (ASM `weighted`).
    #[serde(rename = "weighted")]
    Weighted,
}
