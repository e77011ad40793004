//! The one error type of `canary-kube`.

use canary_core::ErrorClass;
use canary_core::traffic::TrafficError;

/// What can go wrong talking to the cluster or running a rollout there.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The engine or one of its providers failed.
    #[error(transparent)]
    Core(#[from] canary_core::Error),
    /// An object the rollout needs does not exist.
    #[error("{kind} {namespace}/{name} not found")]
    Missing {
        /// Its kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// An object is not as the rollout needs it.
    #[error("{0}")]
    Invalid(String),
    /// The cluster refused an object (its API server's or an admission webhook's message).
    #[error("the cluster refuses {0}")]
    Refused(String),
    /// The objects a simulated cluster was given cannot run the rollout (e.g. no stable
    /// Deployment).
    #[error("{0}")]
    Unusable(String),
    /// The Rollout cannot be finalized (it has no name, or the finalizer is not a valid name);
    /// a failed request adding or removing the finalizer is [`Error::Kube`].
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The admission webhook cannot read a review, or cannot serve: its address, its
    /// certificate or its key.
    #[error("admission webhook: {what}")]
    Webhook {
        /// What failed (never a request's content).
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// An admission webhook error: `what` failed because of `source`.
    pub fn webhook(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Webhook {
            what: what.into(),
            source: source.into(),
        }
    }

    /// What kind of failure this is: how soon the controller retries, and how it counts it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Kube(error) => class_of(error),
            Error::Core(error) => error.class(),
            Error::Missing { .. } | Error::Invalid(_) | Error::Refused(_) | Error::Unusable(_) => {
                ErrorClass::Invalid
            }
            Error::Finalizer(_) => ErrorClass::Fatal,
            Error::Webhook { .. } => ErrorClass::Fatal,
        }
    }

    /// As a provider error of the core engine, keeping this error as its source.
    pub fn into_core(self, provider: &'static str) -> canary_core::Error {
        match self {
            Error::Core(error) => error,
            other => canary_core::Error::provider_failed(provider, other.class(), other),
        }
    }
}

/// The class of a failed request to the API server, by kube-apiserver's status: `409` with
/// reason `Conflict` (a stale resourceVersion or precondition; canary's server-side applies
/// are forced, so never a field owned by another manager) is a conflict; another `409`
/// (`AlreadyExists`) and other `4xx` refuse the object; `429` (throttled) and `5xx` (the
/// server or a webhook could not answer) are transient; `401`/`403` (the controller may not
/// act) are fatal. Errors of the connection itself are transient, errors of reading an answer
/// fatal.
pub fn class_of(error: &kube::Error) -> ErrorClass {
    match error {
        kube::Error::Api(status) => match status.code {
            409 if status.reason == "Conflict" => ErrorClass::Conflict,
            401 | 403 => ErrorClass::Fatal,
            429 | 500..=599 => ErrorClass::Transient,
            _ => ErrorClass::Invalid,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            ErrorClass::Transient
        }
        _ => ErrorClass::Fatal,
    }
}

/// Reads a request's result as a traffic provider's, the error kept as the cause with its
/// class ([`class_of`]).
pub trait ApiResult<T> {
    /// The result, a failure as [`TrafficError::Api`].
    fn api(self) -> std::result::Result<T, TrafficError>;
}

impl<T> ApiResult<T> for kube::Result<T> {
    fn api(self) -> std::result::Result<T, TrafficError> {
        self.map_err(|error| TrafficError::Api {
            class: class_of(&error),
            source: Box::new(error),
        })
    }
}

/// The result type of `canary-kube`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
