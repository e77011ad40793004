//! # canary-kube
//!
//! canary on a Kubernetes cluster: the Rollout custom resource, the Deployment workload
//! provider, the status store on the Rollout's status subresource, and the controller.

pub mod apply;
pub mod cache;
pub mod command;
pub mod controller;
pub mod crd;
pub mod ctl;
pub mod error;
#[cfg(feature = "test-util")]
pub mod fixtures;
pub mod hold;
pub mod leader;
pub mod metrics;
pub mod retry;
pub mod revision;
pub mod services;
pub mod shard;
#[cfg(feature = "test-util")]
pub mod simulate;
pub mod store;
pub mod template;
pub mod traffic;
pub mod webhook;
pub mod workload;

pub use error::{Error, Result};
/// The Kubernetes client every part of this crate and the providers talk through.
pub use kube::Client;

/// The API group of the Rollout custom resource.
pub const GROUP: &str = "canary.rs";
/// The served version of the Rollout custom resource.
pub const VERSION: &str = "v1alpha1";
