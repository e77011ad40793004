//! # canary-kuma
//!
//! The Kuma traffic provider. The canary gets its own Service, which Kuma turns into its own
//! `kuma.io/service` tag (and `MeshService`, on meshes that have them); a `MeshHTTPRoute` that
//! every caller of the service in the mesh applies weights the stable and canary
//! `backendRefs`, sends requests that match (headers, path, query parameters, method) to the
//! canary, and mirrors with a `RequestMirror` filter. The legacy `TrafficRoute` splits by
//! `kuma.io/service` tag (weights only). See [`render`](mod@render).
//!
//! With the `kube` feature, [`KumaTraffic`] reads the Mesh (to name services as it resolves
//! them), applies the objects by server-side apply (field manager `canary-kuma`), reads the
//! route back, and on finalize deletes what it created and gives the stable Service its
//! selector back.
//!
//! ```
//! use canary_core::RouteState;
//!
//! let file = canary_core::api::load::rollout_file(include_str!("../../examples/rollouts/podinfo-kuma.yaml")).unwrap();
//! let plan = canary_core::api::validate::validate(&file.rollout).unwrap();
//! let rendered = canary_kuma::render(&plan, &RouteState::weighted(30), &file.objects).unwrap();
//! let backends = &rendered.route.unwrap()["spec"]["to"][0]["rules"][0]["default"]["backendRefs"];
//! assert_eq!((backends[0]["weight"].as_u64(), backends[1]["weight"].as_u64()), (Some(70), Some(30)));
//! ```

pub mod error;
pub mod matches;
#[cfg(feature = "kube")]
mod provider;
pub mod render;

pub use error::{Error, Result};
#[cfg(feature = "kube")]
pub use provider::KumaTraffic;
pub use render::{Rendered, render};

/// The field manager of the provider's writes.
pub const FIELD_MANAGER: &str = "canary-kuma";

canary_core::traffic_backend!(
    /// The Kuma backend: canary's descriptor of Kuma, and its routes rendered.
    Kuma,
    canary_core::traffic::kuma::DESCRIPTOR,
    render
);
