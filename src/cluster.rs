//! The traffic providers of this build, chosen for each Rollout by its `spec.trafficRouting`.

use std::sync::Arc;

use canary_core::RolloutPlan;
use canary_core::engine::providers::TrafficProvider;
use canary_kube::Client;
use canary_kube::controller::TrafficFactory;
use canary_kube::traffic::Backends;

use crate::registry::PROVIDERS;

/// Routes Rollouts on a cluster with the provider each names, from this build's
/// [`registry`](crate::registry); a provider this build leaves out (its cargo feature off)
/// refuses the Rollout with a message naming the providers it has.
pub struct ClusterTraffic(Backends);

impl Default for ClusterTraffic {
    fn default() -> Self {
        Self::new()
    }
}

impl ClusterTraffic {
    /// This build's providers.
    pub fn new() -> Self {
        ClusterTraffic(Backends::new(PROVIDERS.iter().copied()))
    }
}

impl TrafficFactory for ClusterTraffic {
    fn provider(
        &self,
        client: &Client,
        plan: &RolloutPlan,
    ) -> canary_kube::Result<Arc<dyn TrafficProvider>> {
        self.0.provider(client, plan)
    }

    fn registry(&self) -> canary_core::traffic::Registry {
        self.0.registry()
    }
}

/// Simulates `plan` through a cluster holding `objects`, routed by this build's providers (see
/// [`canary_kube::simulate::ClusterSimulation`]); with `gitops`, the objects and the Rollout
/// are kept in Git and applied by that tool.
#[cfg(feature = "test-util")]
pub async fn simulate(
    plan: &RolloutPlan,
    objects: &canary_core::k8s::objects::Objects,
    config: canary_core::sim::SimConfig,
    gitops: Option<canary_kube::simulate::GitOps>,
) -> canary_kube::Result<canary_core::sim::SimReport> {
    let objects = objects.iter().cloned().collect();
    let mut simulation = canary_kube::simulate::ClusterSimulation::new(plan, objects, config);
    if let Some(gitops) = gitops {
        simulation = simulation.gitops(gitops);
    }
    simulation
        .run(|| Arc::new(ClusterTraffic::new()) as Arc<dyn TrafficFactory>)
        .await
}
