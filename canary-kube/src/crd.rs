//! The Rollout custom resource: the core spec and status, served as `canary.rs/v1alpha1`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The spec of a Rollout resource: exactly the spec of a Rollout file.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "canary.rs",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "canary_core::RolloutStatus",
    shortname = "ro",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.route.weight"}"#,
    printcolumn = r#"{"name":"Step","type":"integer","jsonPath":".status.step"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct RolloutSpec {
    /// The spec, as the core engine reads it.
    #[serde(flatten)]
    pub spec: canary_core::spec::RolloutSpec,
}
