//! # canary
//!
//! Progressive delivery for Kubernetes, as a library: canary releases, blue-green switches,
//! A/B routing by request parameters, traffic mirroring and lane releases, promoted or rolled
//! back by metric analysis.
//!
//! This facade re-exports [`canary_core`] and, one cargo feature each, the provider crates.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let plan = canary::load::plan_from_yaml(include_str!("../examples/rollouts/podinfo-kuma.yaml")).unwrap();
//! let report = canary::sim::Simulation::new(&plan, Default::default()).run().await.unwrap();
//! assert_eq!(report.summary.phase, canary::Phase::Succeeded);
//! # });
//! ```

pub use canary_core::*;

/// The Alibaba ASM lane provider.
#[cfg(feature = "asm")]
pub use canary_asm as asm;
/// The Istio traffic provider.
#[cfg(feature = "istio")]
pub use canary_istio as istio;
/// Kubernetes glue: workloads, the Rollout CRD, the controller.
#[cfg(feature = "kube")]
pub use canary_kube as kube;
/// The Kuma traffic provider.
#[cfg(feature = "kuma")]
pub use canary_kuma as kuma;
/// The ingress-nginx traffic provider.
#[cfg(feature = "nginx")]
pub use canary_nginx as nginx;
