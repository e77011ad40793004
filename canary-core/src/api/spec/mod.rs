//! The Rollout spec as users write it: the same YAML in a file and in the cluster.
//!
//! These types mirror the YAML one to one: camelCase fields, unknown fields refused, numbers kept
//! wide so that [`crate::api::validate`] can report a bad value with its field path instead of the
//! parser stopping at the first one. The engine never runs on these types directly; it runs on
//! the [`crate::api::plan::RolloutPlan`] that validation builds from them.

mod analysis;
mod matches;
mod strategy;
mod traffic;
mod workload;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use analysis::{
    Analysis, FailureCounting, HookType, JudgeKind, Metric, NoDataPolicy, PrometheusQuery,
    SequentialSettings, ThresholdRange, Webhook,
};
pub use matches::{CookieMatch, RequestMatch, StringMatch};
pub use strategy::{
    AbTestStrategy, BlueGreenStrategy, CanaryStep, CanaryStrategy, MirrorStrategy, Pause, Strategy,
    SwitchMode,
};
pub use traffic::{
    AsmGateway, AsmIngress, AsmRouting, AsmRoutingMode, DestinationRuleRef, GatewayImplementation,
    GatewayParentRef, GatewayRouteKind, GatewayRouting, IstioRouting, KumaRouteKind, KumaRouting,
    NginxRouting, PluginRouting, SessionAffinity, TrafficRouting, VirtualServiceRef,
};
pub use workload::{
    ContainerOverride, EnvVar, ExecAction, HttpGetAction, IntOrPercent, NewVersion,
    PodTemplateMetadata, Probe, ResourceList, Resources, TcpSocketAction,
};

/// The `apiVersion` of a Rollout.
pub const API_VERSION: &str = "canary.rs/v1alpha1";
/// The `kind` of a Rollout.
pub const KIND: &str = "Rollout";

/// A whole Rollout document: `apiVersion`, `kind`, `metadata` and `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Must be `canary.rs/v1alpha1`.
    pub api_version: String,
    /// Must be `Rollout`.
    pub kind: String,
    /// Name, namespace, labels and annotations.
    pub metadata: Metadata,
    /// What to release and how.
    pub spec: RolloutSpec,
}

/// The part of Kubernetes object metadata a Rollout file carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The Rollout name: a DNS-1123 subdomain of at most 253 characters.
    pub name: String,
    /// The namespace; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels, carried as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations, carried as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What to release (`workloadRef`, `service`, `newVersion`) and how (`trafficRouting`,
/// `strategy`, `analysis`, `progressDeadline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// The stable workload the release starts from.
    pub workload_ref: WorkloadRef,
    /// The Service in front of the workload.
    pub service: ServiceRef,
    /// Settings of the new version; absent when the new version is a change of the stable
    /// workload's own template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_version: Option<NewVersion>,
    /// Exactly one traffic provider.
    pub traffic_routing: TrafficRouting,
    /// Exactly one strategy.
    pub strategy: Strategy,
    /// Metric analysis and webhooks; absent means steps advance on time alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// How long waiting for the world (canary ready, route applied, stable promoted) may take
    /// before the rollout fails; `10m` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
}

/// A reference to the stable workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadRef {
    /// `apps/v1`.
    pub api_version: String,
    /// `Deployment` or `DaemonSet`. A DaemonSet's canary runs on every node the stable one
    /// runs on, so its replicas cannot be chosen.
    pub kind: String,
    /// The workload's name, in the Rollout's namespace.
    pub name: String,
}

/// The Service that fronts the workload and the port traffic arrives on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    /// The Service name, in the Rollout's namespace.
    pub name: String,
    /// The Service port, 1..=65535.
    pub port: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_describes_the_contract() {
        let schema = serde_json::to_value(schemars::schema_for!(Rollout)).unwrap();
        let text = schema.to_string();
        for field in [
            "workloadRef",
            "trafficRouting",
            "stepWeight",
            "thresholdRange",
            "podTemplateMetadata",
        ] {
            assert!(text.contains(field), "{field} missing from the schema");
        }
        assert_eq!(
            schema["additionalProperties"], false,
            "unknown fields are refused"
        );
        assert_eq!(
            schema["required"],
            serde_json::json!(["apiVersion", "kind", "metadata", "spec"])
        );
    }
}
