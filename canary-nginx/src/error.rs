//! The one error type of `canary-nginx`.

use canary_core::ErrorClass;

/// What can go wrong rendering or applying nginx routes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object the routes are built from is missing or not as needed; says which and why.
    #[error("{0}")]
    Input(String),
    /// An object of the name canary needs belongs to another Rollout, or to no Rollout.
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
        canary_core::Error::provider_failed("nginx", error.class(), error)
    }
}

/// The result type of `canary-nginx`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
