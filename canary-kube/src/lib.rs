//! # canary-kube
//!
//! Kubernetes glue for canary: the Deployment workload provider, the Rollout custom resource,
//! the status store on its status subresource, and the controller. This crate is being built;
//! today it only names the Kubernetes group and version the Rollout resource will be served
//! under.

/// The API group of the Rollout custom resource.
pub const GROUP: &str = "canary.rs";
/// The served version of the Rollout custom resource.
pub const VERSION: &str = "v1alpha1";
