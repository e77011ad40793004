//! The one error type of the crate's direct (Rust, not HTTP) operations; requests over HTTP
//! are answered with Kubernetes `Status` objects instead.

/// Why a direct operation on the server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No resource type is registered for this `apiVersion` and kind.
    #[error("{api_version} {kind} is not served")]
    NotServed {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's kind.
        kind: String,
    },
    /// The input is not what the operation takes (e.g. a CRD without versions, an object
    /// without a name).
    #[error("{0}")]
    Invalid(String),
    /// The server refuses the write, as it would answer the request over HTTP.
    #[error("the server refuses the write ({code}): {message}")]
    Refused {
        /// The HTTP status code of the refusal, e.g. 409 for a field manager conflict.
        code: u16,
        /// The `Status.message` of the refusal.
        message: String,
    },
}

/// The result of the crate's direct operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
