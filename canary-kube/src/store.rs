//! The status store on the Rollout's status subresource, written with server-side apply.
//!
//! A pass saves the status it computed from the status it loaded: the save carries the
//! resource version that was loaded, so a save based on a status another writer has replaced
//! since (a cache behind, the replica that led before) fails with a conflict, and the next
//! pass starts from the status as it is.

use async_trait::async_trait;
use canary_core::RolloutStatus;
use canary_core::engine::providers::StatusStore;
use std::sync::{Mutex, PoisonError};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::crd::Rollout;
use crate::workload::FIELD_MANAGER;

/// The status of one Rollout resource.
pub struct KubeStatusStore {
    api: Api<Rollout>,
    name: String,
    /// The resource version of the Rollout as last loaded or saved.
    version: Mutex<Option<String>>,
}

impl KubeStatusStore {
    /// The status of Rollout `name` in `api`'s namespace.
    pub fn new(api: Api<Rollout>, name: impl Into<String>) -> Self {
        KubeStatusStore {
            api,
            name: name.into(),
            version: Mutex::new(None),
        }
    }
}

#[async_trait]
impl StatusStore for KubeStatusStore {
    /// Reads the Rollout through the controller's client (from its watch cache, which keeps
    /// what this process wrote): a pass starts from the last status written.
    async fn load(&self) -> canary_core::Result<Option<RolloutStatus>> {
        let rollout = self.api.get(&self.name).await.map_err(|e| {
            canary_core::Error::provider_failed("status", crate::error::class_of(&e), e)
        })?;
        *self.version.lock().unwrap_or_else(PoisonError::into_inner) =
            rollout.metadata.resource_version.clone();
        Ok(rollout.status.map(|status| status.engine))
    }

    async fn save(&self, status: &RolloutStatus) -> canary_core::Result<()> {
        let version = self
            .version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut patch =
            json!({"apiVersion": "canary.rs/v1alpha1", "kind": "Rollout", "status": status});
        if let Some(version) = version {
            patch["metadata"] = json!({"resourceVersion": version});
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let saved = self
            .api
            .patch_status(&self.name, &params, &Patch::Apply(&patch))
            .await
            .map_err(|e| {
                canary_core::Error::provider_failed("status", crate::error::class_of(&e), e)
            })?;
        *self.version.lock().unwrap_or_else(PoisonError::into_inner) =
            saved.metadata.resource_version;
        Ok(())
    }
}
