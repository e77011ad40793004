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
        // The step comes from the cluster: counted in u64, `u32::MAX` cannot overflow.
        (u64::from(status.step) + 1).to_string()
    } else {
        "-".to_owned()
    };
    let message: String = status.message.chars().take(80).collect();
    format!(
        "{:<20} {:<12} {:>6}  {:<5}  {message}",
        rollout.name_any(),
        status.phase.to_string(),
        status.routing.route.weight,
        step
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_last_possible_step_is_shown_without_overflow() {
        let rollout: Rollout = serde_json::from_value(json!({
            "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "service": {"name": "web", "port": 80},
                "trafficRouting": {"kuma": {}},
                "strategy": {"canary": {"steps": [{"weight": 10}]}},
            },
            "status": {"phase": "Progressing", "step": u32::MAX},
        }))
        .unwrap();
        assert!(
            row(&rollout).contains(&(u64::from(u32::MAX) + 1).to_string()),
            "{}",
            row(&rollout)
        );
    }
}
