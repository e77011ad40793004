//! The one error type of `canary-asm`.

use canary_core::ErrorClass;

/// What can go wrong rendering or applying lanes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec or an object the lanes are built from is not as needed; says which and why.
    #[error("{0}")]
    Input(String),
    /// The lane group is set up differently by another Rollout of the chain.
    #[error("{0}")]
    Conflict(String),
    /// The API server refused or failed a request.
    #[cfg(feature = "kube")]
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Input(_) | Error::Conflict(_) => ErrorClass::Invalid,
            #[cfg(feature = "kube")]
            Error::Kube(error) => canary_kube::error::class_of(error),
        }
    }
}

impl From<Error> for canary_core::Error {
    fn from(error: Error) -> Self {
        canary_core::Error::provider_failed("asm", error.class(), error)
    }
}

/// The result type of `canary-asm`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
