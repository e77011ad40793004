//! The traffic providers of this build, in one list: what `canary render` renders with and
//! what the controller applies with ([`cluster::ClusterTraffic`](crate::cluster::ClusterTraffic)).
//! A provider's cargo feature off leaves it out, and a Rollout naming it is refused with the
//! names of those that are in.

/// A provider as this build holds it: with the Kubernetes layer, one that can also apply its
/// routes to a cluster.
#[cfg(feature = "kube")]
pub type Backend = dyn canary_kube::traffic::ClusterBackend;
/// A provider as this build holds it: its descriptor and its rendered routes.
#[cfg(not(feature = "kube"))]
pub type Backend = dyn canary_core::traffic::TrafficBackend;

/// Every traffic provider of this build.
pub static PROVIDERS: &[&Backend] = &[
    #[cfg(feature = "istio")]
    &canary_istio::Istio,
    #[cfg(feature = "nginx")]
    &canary_nginx::Nginx,
    #[cfg(feature = "kuma")]
    &canary_kuma::Kuma,
    #[cfg(feature = "asm")]
    &canary_asm::Asm,
    #[cfg(feature = "gateway")]
    &canary_gateway::Gateway,
];

/// The backend of the provider `descriptor` describes, if this build has it.
pub fn backend(descriptor: &canary_core::traffic::ProviderDescriptor) -> Option<&'static Backend> {
    PROVIDERS
        .iter()
        .copied()
        .find(|backend| backend.descriptor() == descriptor)
}

/// The names of the providers of this build, for messages.
pub fn names() -> Vec<&'static str> {
    PROVIDERS
        .iter()
        .map(|backend| backend.descriptor().name)
        .collect()
}
