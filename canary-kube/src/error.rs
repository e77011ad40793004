//! The one error type of `canary-kube`.

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
    /// Adding or removing the Rollout's finalizer failed.
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
    /// A short, stable label for metrics (`kube`, `core`, `missing`, `invalid`, `refused`,
    /// `unusable`, `finalizer`, `webhook`).
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Core(_) => "core",
            Error::Missing { .. } => "missing",
            Error::Invalid(_) => "invalid",
            Error::Refused(_) => "refused",
            Error::Unusable(_) => "unusable",
            Error::Finalizer(_) => "finalizer",
            Error::Webhook { .. } => "webhook",
        }
    }

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

    /// As a provider error of the core engine.
    pub fn into_core(self, provider: &'static str) -> canary_core::Error {
        match self {
            Error::Core(error) => error,
            other => canary_core::Error::provider(provider, other.to_string()),
        }
    }
}

/// The result type of `canary-kube`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
