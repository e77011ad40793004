//! # canary-core
//!
//! The release engine of canary, with no Kubernetes, network or runtime dependency:
//!
//! - [`spec`]: the Rollout YAML contract, read by [`load`] (with the cluster [`objects`] a file
//!   may carry);
//! - [`validate`]: every rule, every error with its field path, compiling a [`RolloutPlan`];
//! - [`machine`]: the release logic as one pure function, [`transition`];
//! - [`providers`]: the traits the shell works through, with in-memory versions in [`memory`];
//! - [`driver`]: one reconcile pass over those traits;
//! - [`sim`]: synthetic traffic in virtual time, to try a rollout without a cluster;
//! - [`dataplane`]: which pod answers a request, given a cluster's objects;
//! - [`destinations`]: the Prometheus servers and webhooks a controller may call for Rollouts.
//!
//! ```
//! # tokio_test_block_on(async {
//! let plan = canary_core::load::plan_from_yaml(include_str!("../../examples/rollouts/podinfo-kuma.yaml")).unwrap();
//! let report = canary_core::sim::Simulation::new(&plan, Default::default()).run().await.unwrap();
//! assert_eq!(report.summary.phase, canary_core::Phase::Succeeded);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod dataplane;
pub mod destinations;
pub mod driver;
pub mod duration;
pub mod error;
#[cfg(any(feature = "prometheus", feature = "webhooks"))]
mod http;
pub mod load;
pub mod machine;
pub mod memory;
pub mod names;
pub mod objects;
pub mod plan;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod providers;
pub mod queries;
pub mod services;
pub mod sim;
pub mod spec;
pub mod status;
pub mod traffic;
pub mod validate;
#[cfg(feature = "webhooks")]
pub mod webhooks;

pub use error::{Error, ErrorClass, Result};
pub use machine::{Action, Command, Input, Transition, transition};
pub use plan::RolloutPlan;
pub use spec::Rollout;
pub use status::{Phase, RolloutStatus, Verdict};
pub use traffic::{Capabilities, ProviderKind, RouteState};
