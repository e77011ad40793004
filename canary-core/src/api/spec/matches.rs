//! Request matches: which requests go to the canary whatever the weight.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One request match; every condition in it must hold (AND). Several matches in a list are
/// alternatives (OR).
///
/// ```yaml
/// - headers: {x-canary: {exact: insider}}
///   uri: {prefix: /api}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMatch {
    /// Header name → condition on its value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// A cookie that sends the request to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<CookieMatch>,
    /// A condition on the request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// Query parameter name → condition on its value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// An HTTP method such as `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl RequestMatch {
    /// True when the match has no condition at all (it would match every request).
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.cookie.is_none()
            && self.uri.is_none()
            && self.query_params.is_empty()
            && self.method.is_none()
    }
}

/// A condition on a string: exactly one of `exact`, `prefix` or `regex`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value matches this regular expression (RE2 syntax, whole value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    /// An exact match.
    pub fn exact(value: impl Into<String>) -> Self {
        StringMatch {
            exact: Some(value.into()),
            ..StringMatch::default()
        }
    }
}

/// A cookie condition: the request carries cookie `name` with value `value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CookieMatch {
    /// The cookie name.
    pub name: String,
    /// The cookie value that selects the canary; `always` when absent (ingress-nginx's
    /// convention, the only value nginx understands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl CookieMatch {
    /// The value that selects the canary.
    pub fn value(&self) -> &str {
        self.value.as_deref().unwrap_or("always")
    }
}
