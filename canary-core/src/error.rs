//! The one error type of `canary-core`.

use crate::validate::ValidationErrors;

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
    #[error("{provider} provider: {message}")]
    Provider {
        /// Which provider: `traffic`, `workload`, `metrics`, `webhooks` or `status`.
        provider: &'static str,
        /// What it reported.
        message: String,
    },
    /// The simulation cannot run this rollout as configured.
    #[error("simulation: {0}")]
    Simulation(String),
}

impl Error {
    /// A short, stable label for metrics and logs (`parse`, `invalid`, `provider`, `simulation`).
    pub fn label(&self) -> &'static str {
        match self {
            Error::Parse { .. } => "parse",
            Error::Invalid(_) => "invalid",
            Error::Provider { .. } => "provider",
            Error::Simulation(_) => "simulation",
        }
    }

    /// Builds a [`Error::Provider`] error.
    pub fn provider(provider: &'static str, message: impl Into<String>) -> Self {
        Error::Provider {
            provider,
            message: message.into(),
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
