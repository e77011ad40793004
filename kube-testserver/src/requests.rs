//! The request log: one entry per handled request.

/// The Kubernetes verb a request was classified as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET of one object (also discovery and other non-resource GETs).
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH (including server-side apply).
    Patch,
    /// DELETE of one object or a collection.
    Delete,
}

impl Verb {
    /// Whether the verb changes state (create, update, patch, delete).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete
        )
    }
}

/// One handled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// The verb classification.
    pub verb: Verb,
    /// The HTTP method, e.g. `PATCH`.
    pub method: String,
    /// The request path without the query string.
    pub path: String,
    /// The HTTP status code answered (200 for watches that started streaming).
    pub status: u16,
    /// Whether only the objects' metadata was asked for (`as=PartialObjectMetadata`).
    pub metadata_only: bool,
}
