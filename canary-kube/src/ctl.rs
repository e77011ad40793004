//! What `canaryctl` does: send user commands to Rollouts and show their status.

use canary_core::{Command, Phase};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::command::{COMMAND, COMMAND_ID};
use crate::crd::Rollout;
use crate::error::Result;

/// Sends `command` to Rollout `name` as command number `id` (ids must increase; the time in
/// milliseconds does).
pub async fn send(api: &Api<Rollout>, name: &str, command: Command, id: u64) -> Result<()> {
    let patch =
        json!({"metadata": {"annotations": {COMMAND: command.name(), COMMAND_ID: id.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The header of [`row`]s.
pub const HEADER: &str = "NAME                 PHASE        WEIGHT  STEP   MESSAGE";

/// One line about a Rollout, as `kubectl get` would print it.
pub fn row(rollout: &Rollout) -> String {
    let status = rollout.status.clone().unwrap_or_default();
    let stepping = matches!(status.phase, Phase::Progressing | Phase::Paused);
    let step = if stepping {
        (status.step + 1).to_string()
    } else {
        "-".to_owned()
    };
    let message: String = status.message.chars().take(80).collect();
    format!(
        "{:<20} {:<12} {:>6}  {:<5}  {message}",
        rollout.name_any(),
        status.phase.to_string(),
        status.route.weight,
        step
    )
}
