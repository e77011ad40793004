//! The error type of `canary-kuma`: the one every traffic provider shares.

/// What can go wrong rendering or applying Kuma routes.
pub use canary_core::traffic::TrafficError as Error;

/// The result type of `canary-kuma`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
