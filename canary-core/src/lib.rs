//! # canary-core
//!
//! The release engine of canary, with no Kubernetes, network or runtime dependency, in layers
//! (the repository's `ARCHITECTURE.md` draws how data flows through them):
//!
//! - [`api`]: the Rollout as users write it ([`api::spec`]), read by [`api::load`], checked and
//!   compiled into a [`RolloutPlan`] by [`api::validate`];
//! - [`traffic`]: the provider-neutral route, what each provider can express, and one
//!   descriptor per traffic provider;
//! - [`engine`]: the release logic as one pure function ([`transition`]), the persisted
//!   [`RolloutStatus`], the traits shells implement with in-memory versions, and the driver
//!   running one reconcile pass over them;
//! - [`analysis`]: the builtin metrics as PromQL, the Prometheus and webhook clients, and the
//!   destinations a controller may call;
//! - [`k8s`]: helpers over Kubernetes objects as plain JSON, and the canary/stable Service
//!   split;
//! - [`sim`]: synthetic traffic in virtual time, to try a rollout without a cluster, and
//!   [`sim::dataplane`], which pod answers a request given a cluster's objects.
//!
//! A program with its own router or workloads plugs them in: a [`traffic::ProviderDescriptor`]
//! registered in a [`traffic::Registry`] makes a router nameable in a Rollout
//! (`trafficRouting.plugin`) and checked by [`api::validate::validate_with`]; the traits of
//! [`engine::providers`] (with their contracts) are what the [`engine::driver::Driver`] and the
//! [`sim::Simulation`] run. The repository's `docs/embedding.md` walks through it.
//!
//! ```
//! # tokio_test_block_on(async {
//! let plan = canary_core::api::load::plan_from_yaml(include_str!("../../examples/rollouts/podinfo-kuma.yaml")).unwrap();
//! let report = canary_core::sim::Simulation::new(&plan, Default::default()).run().await.unwrap();
//! assert_eq!(report.summary.phase, canary_core::Phase::Succeeded);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

pub mod analysis;
pub mod api;
pub mod engine;
pub mod error;
pub mod k8s;
pub mod sim;
pub mod traffic;
pub mod workload;

/// `#[async_trait]`, which every provider trait's implementation needs.
pub use async_trait::async_trait;
/// The time types of every signature (`Timestamp`, `SignedDuration`).
pub use jiff;
/// The JSON of Kubernetes objects and of a plugin's `config`.
pub use serde_json;

pub use api::plan::RolloutPlan;
pub use api::spec::Rollout;
pub use engine::machine::{Action, Command, Input, Transition, transition};
pub use engine::status::{Phase, RolloutStatus, StepStage, Verdict};
pub use error::{Error, ErrorClass, Result};
pub use traffic::{Capabilities, ProviderKind, RouteState};
