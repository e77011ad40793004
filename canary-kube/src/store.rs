//! The status store on the Rollout's status subresource, written with server-side apply.

use async_trait::async_trait;
use canary_core::RolloutStatus;
use canary_core::engine::providers::StatusStore;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::crd::Rollout;
use crate::workload::FIELD_MANAGER;

/// The status of one Rollout resource.
pub struct KubeStatusStore {
    api: Api<Rollout>,
    name: String,
}

impl KubeStatusStore {
    /// The status of Rollout `name` in `api`'s namespace.
    pub fn new(api: Api<Rollout>, name: impl Into<String>) -> Self {
        KubeStatusStore {
            api,
            name: name.into(),
        }
    }
}

#[async_trait]
impl StatusStore for KubeStatusStore {
    /// Reads the live object (not a cache): a pass starts from the last status written.
    async fn load(&self) -> canary_core::Result<Option<RolloutStatus>> {
        let rollout = self.api.get(&self.name).await.map_err(|e| {
            canary_core::Error::provider_failed("status", crate::error::class_of(&e), e)
        })?;
        Ok(rollout.status.map(|status| status.engine))
    }

    async fn save(&self, status: &RolloutStatus) -> canary_core::Result<()> {
        let patch =
            json!({"apiVersion": "canary.rs/v1alpha1", "kind": "Rollout", "status": status});
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch_status(&self.name, &params, &Patch::Apply(&patch))
            .await
            .map_err(|e| {
                canary_core::Error::provider_failed("status", crate::error::class_of(&e), e)
            })?;
        Ok(())
    }
}
