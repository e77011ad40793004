//! The error type of `canary-nginx`: the one every traffic provider shares.

/// What can go wrong rendering or applying ingress-nginx routes.
pub use canary_core::traffic::TrafficError as Error;

/// The result type of `canary-nginx`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
