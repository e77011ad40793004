//! # canary-nginx
//!
//! The ingress-nginx traffic provider. A route is a canary Ingress cloned from the stable one
//! (`<ingress>-<service>-canary`, or `<ingress>-canary` when the stable Ingress routes to the
//! Rollout's Service alone; with `nginx.ingress.kubernetes.io/canary: "true"`, `canary-weight`,
//! `canary-weight-total`, `canary-by-header`(`-value`/`-pattern`) or `canary-by-cookie`),
//! routing to a canary Service (`<service>-canary`) that selects the canary pods; see
//! [`render`](mod@render).
//!
//! ingress-nginx routes by one header (exact value or regular expression) or one cookie, and
//! by weight; it cannot mirror to a canary (its mirroring copies requests to a URL and belongs
//! on the stable Ingress). Validation refuses a spec that asks for more.
//!
//! With the `kube` feature, [`NginxTraffic`] applies the objects by server-side apply (field
//! manager `canary-nginx`), reads the route back from the canary Ingress, and on finalize
//! deletes the canary objects and gives the stable Service its selector back.
//!
//! ```
//! use canary_core::RouteState;
//!
//! let file = canary_core::api::load::rollout_file(include_str!("../../examples/rollouts/echoserver-nginx.yaml")).unwrap();
//! let plan = canary_core::api::validate::validate(&file.rollout).unwrap();
//! let objects = canary_core::api::load::objects_from_yaml(include_str!("../../examples/rollouts/echoserver-objects.yaml")).unwrap();
//! let rendered = canary_nginx::render(&plan, &RouteState::weighted(20), &objects).unwrap();
//! let ingress = rendered.route.unwrap();
//! assert_eq!(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"], "20");
//! ```

pub mod annotations;
pub mod drift;
pub mod error;
#[cfg(feature = "kube")]
mod provider;
pub mod render;

pub use error::{Error, Result};
#[cfg(feature = "kube")]
pub use provider::NginxTraffic;
pub use render::{Rendered, render};

/// The field manager of the provider's writes.
pub const FIELD_MANAGER: &str = "canary-nginx";

canary_core::traffic_backend!(
    /// The ingress-nginx backend: canary's descriptor of ingress-nginx, and its routes rendered.
    Nginx,
    canary_core::traffic::nginx::DESCRIPTOR,
    render
);
