#![doc = include_str!("../README.md")]

pub use canary_core::*;

/// The Alibaba ASM lane provider.
#[cfg(feature = "asm")]
pub use canary_asm as asm;
/// The Kubernetes Gateway API traffic provider.
#[cfg(feature = "gateway")]
pub use canary_gateway as gateway;
/// The Istio traffic provider.
#[cfg(feature = "istio")]
pub use canary_istio as istio;
/// Kubernetes glue: workloads, the Rollout CRD, the controller.
#[cfg(feature = "kube")]
pub use canary_kube as kube;

#[cfg(feature = "kube")]
pub mod cluster;
#[doc = include_str!("../docs/embedding.md")]
pub mod embedding {}
pub mod registry;
/// The Kuma traffic provider.
#[cfg(feature = "kuma")]
pub use canary_kuma as kuma;
/// The ingress-nginx traffic provider.
#[cfg(feature = "nginx")]
pub use canary_nginx as nginx;
