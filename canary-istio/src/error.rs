//! The error type of `canary-istio`: the one every traffic provider shares.

/// What can go wrong rendering or applying Istio routes.
pub use canary_core::traffic::TrafficError as Error;

/// The result type of `canary-istio`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
