//! canary's own mutating webhook, as `deploy/webhook.yaml` installs it: a Deployment whose pod
//! template changes while a Rollout targets it is held in the same request (see
//! [`crate::hold`]).

use serde_json::Value;

use super::{AdmissionRequest, Denial, MutatingHook, Operation};

/// canary's hold webhook (`hold.canary.rs`): Deployment updates, with the Rollouts of the
/// Deployment's namespace read to decide.
#[derive(Debug, Clone, Copy, Default)]
pub struct CanaryHold;

impl MutatingHook for CanaryHold {
    fn name(&self) -> &str {
        "hold.canary.rs"
    }

    fn handles(&self, group: &str, kind: &str) -> bool {
        group == "apps" && kind == "Deployment"
    }

    fn reads(&self) -> Option<(&str, &str)> {
        Some(("canary.rs/v1alpha1", "Rollout"))
    }

    fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        read: &[Value],
    ) -> Result<Option<Value>, Denial> {
        let (Operation::Update, Some(old)) = (request.operation, request.old_object) else {
            return Ok(None);
        };
        Ok(crate::hold::hold_patch(old, request.object, read))
    }
}
