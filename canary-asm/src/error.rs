//! The error type of `canary-asm`: the one every traffic provider shares.

/// What can go wrong rendering or applying ASM lane routes.
pub use canary_core::traffic::TrafficError as Error;

/// The result type of `canary-asm`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
