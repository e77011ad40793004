//! The Rollout custom resource: the core spec and status, served as `canary.rs/v1alpha1`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The spec of a Rollout resource: exactly the spec of a Rollout file.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "canary.rs",
    version = "v1alpha1",
    kind = "Rollout",
    namespaced,
    status = "RolloutStatus",
    shortname = "ro",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.route.weight"}"#,
    printcolumn = r#"{"name":"Step","type":"integer","jsonPath":".status.step"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct RolloutSpec {
    /// The spec, as the core engine reads it.
    #[serde(flatten)]
    pub spec: canary_core::api::spec::RolloutSpec,
}

/// The status of a Rollout resource: the engine's status, and the last spec the controller
/// acted on.
///
/// The engine's part is written by the driver (field manager `canary`); `lastValidSpec` by the
/// controller alone (field manager [`SPEC_KEEPER`]), so neither write removes the other's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The release engine's state.
    #[serde(flatten)]
    pub engine: canary_core::RolloutStatus,
    /// The last spec that validated and was acted on. A Rollout whose spec stops validating
    /// mid-release is still cleaned up from it when deleted: its routes go back to stable
    /// before its canary is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub last_valid_spec: Option<Value>,
}

/// The field manager of `status.lastValidSpec`.
pub const SPEC_KEEPER: &str = "canary-spec-keeper";

impl std::ops::Deref for RolloutStatus {
    type Target = canary_core::RolloutStatus;

    fn deref(&self) -> &Self::Target {
        &self.engine
    }
}

/// An object the API server keeps as given (its fields are not pruned).
fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
