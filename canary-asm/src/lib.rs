//! # canary-asm
//!
//! End-to-end lane releases on Alibaba Cloud Service Mesh. The Rollouts of a call chain
//! (mocka → mockb → mockc) share one `ASMSwimLaneGroup` with a base and a canary
//! `ASMSwimLane`: the stable pods of every service are in the base lane, and a service's canary
//! pods (`ASM_TRAFFIC_TAG: <canary lane>`, which the Deployment workload provider gives them)
//! join the canary lane while their Rollout routes to them. Requests whose route header names
//! the canary lane travel it and, in permissive mode, fall back to the base lane at every
//! service without a canary; each service's canary is promoted or undone on its own. See
//! [`render`](mod@render).
//!
//! With the `kube` feature, [`AsmTraffic`] applies the lanes by server-side apply (field
//! manager `canary-asm`) holding the resource version it read, so Rollouts of one chain
//! changing the lanes at once never lose each other's changes; the lanes go with the last
//! Rollout. ASM generates the VirtualServices and DestinationRules from the lanes; canary never
//! edits those.
//!
//! ```
//! use canary_core::k8s::objects::Objects;
//!
//! let plan = canary_core::api::load::plan_from_yaml(include_str!("../../examples/rollouts/mocka-asm.yaml")).unwrap();
//! let rendered = canary_asm::render(&plan, &plan.steps[0].route, &Objects::default()).unwrap();
//! assert_eq!(rendered.canary["spec"]["services"][0]["name"], "mocka");
//! assert_eq!(rendered.canary["spec"]["labelSelector"]["ASM_TRAFFIC_TAG"], "canary");
//! ```

pub mod error;
#[cfg(feature = "kube")]
mod provider;
pub mod render;

pub use error::{Error, Result};
#[cfg(feature = "kube")]
pub use provider::AsmTraffic;
pub use render::{Released, Rendered, release, render};

/// The field manager of the provider's writes.
pub const FIELD_MANAGER: &str = "canary-asm";

canary_core::traffic_backend!(
    /// The Alibaba ASM lanes backend: canary's descriptor of Alibaba ASM lanes, and its routes rendered.
    Asm,
    canary_core::traffic::asm::DESCRIPTOR,
    render
);
