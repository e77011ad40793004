//! # canary-gateway
//!
//! The Kubernetes Gateway API traffic provider (standard channel v1.6.1). The canary gets its
//! own Service (`<service>-canary`); a route's rules weight the stable and canary Services as
//! two `backendRefs`, a rule of its own sends the requests that match to the canary, and a
//! `RequestMirror` filter copies a share of requests to it. The route, an HTTPRoute or a
//! GRPCRoute, is generated (attached to the `parentRefs` the Rollout names) or the user's own,
//! of which only the rules whose `backendRefs` name the Service change. See
//! [`render`](mod@render).
//!
//! With the `kube` feature, [`GatewayTraffic`] applies the objects by server-side apply (field
//! manager `canary-gateway`), counts a route in effect once every parent reports it accepted
//! with its references resolved, and on finalize deletes the route it generated or gives the
//! user's back as it was.
//!
//! ```
//! use canary_core::RouteState;
//!
//! let file = canary_core::api::load::rollout_file(include_str!("../../examples/rollouts/storefront-gateway.yaml")).unwrap();
//! let plan = canary_core::api::validate::validate(&file.rollout).unwrap();
//! let rendered = canary_gateway::render(&plan, &RouteState::weighted(30), &file.objects).unwrap();
//! let managed = rendered.route["spec"]["rules"].as_array().unwrap().iter()
//!     .find(|rule| rule["backendRefs"][0]["name"] == "storefront").unwrap();
//! let weights: Vec<_> = managed["backendRefs"].as_array().unwrap().iter()
//!     .map(|backend| (backend["name"].as_str().unwrap(), backend["weight"].as_u64().unwrap()))
//!     .collect();
//! assert_eq!(weights, [("storefront", 70), ("storefront-canary", 30)]);
//! ```

#[cfg(feature = "kube")]
mod provider;
pub mod render;

#[cfg(feature = "kube")]
pub use provider::{GatewayTraffic, parents_verdict};
pub use render::{Rendered, render};

/// The field manager of the provider's writes.
pub const FIELD_MANAGER: &str = "canary-gateway";

pub use render::Error;

canary_core::traffic_backend!(
    /// The Gateway API backend: canary's descriptor of the Gateway API, and its routes
    /// rendered.
    Gateway,
    canary_core::traffic::gateway::DESCRIPTOR,
    render
);
