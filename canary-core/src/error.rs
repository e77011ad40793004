//! The one error type of `canary-core`.

use crate::api::validate::ValidationErrors;

/// Everything that can go wrong in `canary-core`: loading a spec, validating it, or a provider
/// failing while the driver runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The YAML could not be read as a Rollout (syntax, wrong type, unknown field).
    #[error("{message}")]
    Parse {
        /// What went wrong, with the field where known.
        message: String,
        /// 1-based line of the problem, when known.
        line: Option<u64>,
        /// 1-based column of the problem, when known.
        column: Option<u64>,
    },
    /// The Rollout was read but breaks one or more rules; every broken rule is listed.
    #[error("{0}")]
    Invalid(ValidationErrors),
    /// A provider (traffic, workload, metrics, webhooks, status store) failed; the driver stops
    /// this pass and the next pass starts again from the persisted status.
    #[error("{provider} provider: {source}")]
    Provider {
        /// Which provider: the traffic provider's name (`istio`, `nginx`, …) or `traffic`,
        /// `workload`, `metrics`, `webhooks` or `status`.
        provider: &'static str,
        /// What kind of failure, for retries and metrics.
        class: ErrorClass,
        /// What it reported, with its own causes.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The simulation cannot run this rollout as configured.
    #[error("simulation: {0}")]
    Simulation(String),
    /// A provider cannot be added to a [`crate::traffic::Registry`].
    #[error("{0}")]
    Registry(String),
}

/// What kind of failure an error is: what a shell does about it (how soon to retry) and how
/// it counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The world was briefly unable to answer (a timeout, a server error, throttling): the
    /// same request soon is likely to succeed.
    Transient,
    /// Someone else changed an object between its read and its write: read again and retry at
    /// once.
    Conflict,
    /// The spec or an object it names is not as needed (refused by validation or by the
    /// cluster, missing, owned by someone else): nothing changes until a person changes it.
    Invalid,
    /// The shell cannot work (no permission, a broken configuration): retrying will not help.
    Fatal,
}

impl ErrorClass {
    /// A short, stable label for metrics (`transient`, `conflict`, `invalid`, `fatal`).
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Fatal => "fatal",
        }
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Parse { .. } | Error::Invalid(_) => ErrorClass::Invalid,
            Error::Provider { class, .. } => *class,
            Error::Simulation(_) | Error::Registry(_) => ErrorClass::Fatal,
        }
    }

    /// This error, said of the provider `name` when it is a traffic provider's (`traffic`).
    pub fn of_provider(self, name: &'static str) -> Self {
        match self {
            Error::Provider {
                provider: "traffic",
                class,
                source,
            } => Error::Provider {
                provider: name,
                class,
                source,
            },
            other => other,
        }
    }

    /// A [`Error::Provider`] error of `class` saying `message`.
    pub fn provider(provider: &'static str, class: ErrorClass, message: impl Into<String>) -> Self {
        Error::Provider {
            provider,
            class,
            source: message.into().into(),
        }
    }

    /// A [`Error::Provider`] error of `class` caused by `source`, which it keeps.
    pub fn provider_failed(
        provider: &'static str,
        class: ErrorClass,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Provider {
            provider,
            class,
            source: Box::new(source),
        }
    }
}

/// An error with its causes (HTTP clients keep the useful part in the source chain).
pub fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The result type of `canary-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
