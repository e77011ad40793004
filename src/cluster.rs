//! The traffic providers of this build, chosen for each Rollout by its `spec.trafficRouting`.

use std::sync::Arc;

use canary_core::RolloutPlan;
use canary_core::providers::TrafficProvider;
use canary_kube::Client;
use canary_kube::controller::TrafficFactory;
use canary_kube::traffic::NoTraffic;

/// Routes Rollouts on a cluster with the provider each names; a provider this build leaves
/// out (its cargo feature off) refuses the Rollout with a message naming it.
pub struct ClusterTraffic {
    #[cfg_attr(
        not(any(
            feature = "istio",
            feature = "nginx",
            feature = "kuma",
            feature = "asm"
        )),
        allow(dead_code)
    )]
    client: Client,
}

impl ClusterTraffic {
    /// Providers talking to the cluster through `client`.
    pub fn new(client: Client) -> Self {
        ClusterTraffic { client }
    }
}

impl TrafficFactory for ClusterTraffic {
    fn provider(&self, plan: &RolloutPlan) -> canary_kube::Result<Arc<dyn TrafficProvider>> {
        match plan.provider {
            #[cfg(feature = "istio")]
            canary_core::ProviderKind::Istio => {
                canary_istio::IstioTraffic::factory(self.client.clone()).provider(plan)
            }
            #[cfg(feature = "nginx")]
            canary_core::ProviderKind::Nginx => {
                canary_nginx::NginxTraffic::factory(self.client.clone()).provider(plan)
            }
            #[cfg(feature = "kuma")]
            canary_core::ProviderKind::Kuma | canary_core::ProviderKind::KumaTrafficRoute => {
                canary_kuma::KumaTraffic::factory(self.client.clone()).provider(plan)
            }
            #[cfg(feature = "asm")]
            canary_core::ProviderKind::AsmHeader | canary_core::ProviderKind::AsmWeighted => {
                canary_asm::AsmTraffic::factory(self.client.clone()).provider(plan)
            }
            // Reached in builds that leave a provider out.
            #[allow(unreachable_patterns)]
            _ => NoTraffic.provider(plan),
        }
    }
}

/// Simulates `plan` through a cluster holding `objects`, routed by this build's providers (see
/// [`canary_kube::simulate::ClusterSimulation`]); with `gitops`, the objects and the Rollout
/// are kept in Git and applied by that tool.
#[cfg(feature = "test-util")]
pub async fn simulate(
    plan: &RolloutPlan,
    objects: &canary_core::objects::Objects,
    config: canary_core::sim::SimConfig,
    gitops: Option<canary_kube::simulate::GitOps>,
) -> canary_kube::Result<canary_core::sim::SimReport> {
    let objects = objects.iter().cloned().collect();
    let mut simulation = canary_kube::simulate::ClusterSimulation::new(plan, objects, config);
    if let Some(gitops) = gitops {
        simulation = simulation.gitops(gitops);
    }
    simulation
        .run(|client| Arc::new(ClusterTraffic::new(client)) as Arc<dyn TrafficFactory>)
        .await
}
