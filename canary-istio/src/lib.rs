//! # canary-istio
//!
//! The Istio traffic provider. The canary's share goes to a host of its own:
//!
//! - the **canary Service** `<service>-canary` (`canary_core::k8s::services`), which selects the
//!   canary's pods only; they carry their own value of one key of the stable Service's
//!   selector, so they are no endpoints of the service host, and a route canary did not write
//!   (Git's, put back by Flux or Argo CD mid-release) sends them nothing;
//! - a **DestinationRule** for the canary host, generated when the user's DestinationRule for
//!   the service host has a traffic policy, carrying the same one ([`destination_rule`]); the
//!   user's DestinationRules are never edited;
//! - a **VirtualService** whose managed HTTP route weights the service host (the stable
//!   destination exactly as the route names it, subset included) and the canary host, and
//!   mirrors to the canary host, with a route for the request matches placed before it;
//!   generated, or the user's with only the managed routes changed ([`virtual_service`]).
//!
//! [`render()`] builds them from a plan, a route and the objects already in the cluster; it is
//! pure, and the CLI's `canary render` prints it. With the `kube` feature, [`IstioTraffic`]
//! applies them by server-side apply (field manager `canary-istio`), reads them back, and on
//! finalize deletes what it generated and restores what it changed.
//!
//! ```
//! use canary_core::k8s::objects::Objects;
//! use canary_core::RouteState;
//!
//! let file = canary_core::api::load::rollout_file(include_str!("../../examples/rollouts/bookinfo-istio.yaml")).unwrap();
//! let plan = canary_core::api::validate::validate(&file.rollout).unwrap();
//! let rendered = canary_istio::render(&plan, &RouteState::weighted(50), &file.objects).unwrap();
//! let route = &rendered.virtual_service["spec"]["http"][0]["route"];
//! assert_eq!(route[0]["destination"]["host"], "reviews");
//! assert_eq!(route[1]["destination"]["host"], "reviews-canary");
//! assert_eq!(route[1]["weight"], 50);
//! ```

pub mod destination_rule;
pub mod error;
mod hosts;
pub mod matches;
#[cfg(feature = "kube")]
mod provider;
pub mod render;
pub mod virtual_service;

pub use error::{Error, Result};
#[cfg(feature = "kube")]
pub use provider::IstioTraffic;
pub use render::{Rendered, render};

/// The API version of the objects rendered (`networking.istio.io/v1`, Istio 1.22 and later).
pub const API_VERSION: &str = "networking.istio.io/v1";
/// The field manager of the provider's writes.
pub const FIELD_MANAGER: &str = "canary-istio";

canary_core::traffic_backend!(
    /// The Istio backend: canary's descriptor of Istio, and its routes rendered.
    Istio,
    canary_core::traffic::istio::DESCRIPTOR,
    render
);
