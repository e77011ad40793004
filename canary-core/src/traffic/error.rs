//! The one error type of every traffic provider crate.

use crate::error::{Error, ErrorClass};

/// What can go wrong rendering or applying a traffic provider's routes. Every provider crate
/// uses this type (as its `Error`), so the controller sees one kind of provider failure with
/// its cause and class, whichever provider it was.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// An object the routes are built from is missing or not as needed; says which and why.
    #[error("{0}")]
    Input(String),
    /// An object canary needs belongs to someone else (another Rollout, no Rollout), or the
    /// user's object cannot take the routes asked for.
    #[error("{0}")]
    Conflict(String),
    /// The cluster refused or failed a request.
    #[error("Kubernetes API: {source}")]
    Api {
        /// What kind of failure (a 409 conflict, a server error, a refusal…).
        class: ErrorClass,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TrafficError {
    /// What kind of failure this is: a missing or conflicting object waits for a person; an
    /// API failure is what the API server said.
    pub fn class(&self) -> ErrorClass {
        match self {
            TrafficError::Input(_) | TrafficError::Conflict(_) => ErrorClass::Invalid,
            TrafficError::Api { class, .. } => *class,
        }
    }
}

impl From<TrafficError> for Error {
    fn from(error: TrafficError) -> Self {
        Error::provider_failed("traffic", error.class(), error)
    }
}
