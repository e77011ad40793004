//! What a traffic provider can express ([`Capabilities`]), and why a request match is
//! beyond it.

use std::fmt;

use crate::api::spec::{RequestMatch, StringMatch};

/// Which kinds of string condition a provider supports for one request attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchKinds {
    /// `exact`.
    pub exact: bool,
    /// `prefix`.
    pub prefix: bool,
    /// `regex`.
    pub regex: bool,
}

impl MatchKinds {
    /// Every kind of condition.
    pub const ALL: MatchKinds = MatchKinds {
        exact: true,
        prefix: true,
        regex: true,
    };

    /// Exact values and prefixes, no regular expression.
    pub const EXACT_OR_PREFIX: MatchKinds = MatchKinds::new(true, true, false);

    /// Which of `exact`, `prefix` and `regex` are supported.
    pub const fn new(exact: bool, prefix: bool, regex: bool) -> MatchKinds {
        MatchKinds {
            exact,
            prefix,
            regex,
        }
    }

    /// No condition at all.
    pub const NONE: MatchKinds = MatchKinds {
        exact: false,
        prefix: false,
        regex: false,
    };

    fn supports(self, condition: &StringMatch) -> bool {
        (condition.exact.is_none() || self.exact)
            && (condition.prefix.is_none() || self.prefix)
            && (condition.regex.is_none() || self.regex)
    }

    fn any(self) -> bool {
        self.exact || self.prefix || self.regex
    }
}

/// What a traffic provider can express. Validation refuses a spec that asks for more, before
/// anything is applied, and its message quotes what the provider supports (its `Display`).
///
/// `Default` is nothing at all (all traffic on stable); [`Capabilities::weights_only`] and
/// [`Capabilities::everything`] are the usual starting points, and every field is public:
///
/// ```
/// use canary_core::traffic::{Capabilities, MatchKinds};
/// let header_canary = Capabilities {
///     max_matches: 1,
///     max_headers: 1,
///     headers: MatchKinds::new(true, false, false),
///     ..Capabilities::weights_only()
/// };
/// assert_eq!(
///     header_canary.to_string(),
///     "weights; at most 1 match of at most 1 header condition (exact)"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// One sentence saying what the provider supports, for error messages, when the
    /// description made from the fields is not enough (e.g. to say which setting adds more);
    /// empty to use that description.
    pub summary: &'static str,
    /// Weighted splitting between stable and canary.
    pub weights: bool,
    /// How many alternative matches a route may have.
    pub max_matches: usize,
    /// How many header conditions one match may have.
    pub max_headers: usize,
    /// Header conditions.
    pub headers: MatchKinds,
    /// Cookie conditions.
    pub cookie: bool,
    /// Cookie conditions with a value other than `always`.
    pub cookie_value: bool,
    /// A header and a cookie condition in the same match (both required).
    pub header_with_cookie: bool,
    /// URI conditions.
    pub uri: MatchKinds,
    /// Query-parameter conditions.
    pub query: MatchKinds,
    /// Method conditions.
    pub method: bool,
    /// Mirroring.
    pub mirror: bool,
}

impl Capabilities {
    /// A provider that splits by weight and nothing else.
    pub const fn weights_only() -> Capabilities {
        Capabilities {
            summary: "",
            weights: true,
            max_matches: 0,
            max_headers: 0,
            headers: MatchKinds::NONE,
            cookie: false,
            cookie_value: false,
            header_with_cookie: true,
            uri: MatchKinds::NONE,
            query: MatchKinds::NONE,
            method: false,
            mirror: false,
        }
    }

    /// A provider that routes everything canary can ask for.
    pub const fn everything() -> Capabilities {
        Capabilities {
            summary: "",
            weights: true,
            max_matches: usize::MAX,
            max_headers: usize::MAX,
            headers: MatchKinds::ALL,
            cookie: true,
            cookie_value: true,
            header_with_cookie: true,
            uri: MatchKinds::ALL,
            query: MatchKinds::ALL,
            method: true,
            mirror: true,
        }
    }

    /// The same, described by `summary` in error messages.
    pub const fn with_summary(mut self, summary: &'static str) -> Capabilities {
        self.summary = summary;
        self
    }

    /// Why `request` cannot be routed, as `(field under the match, reason)` pairs; empty when it
    /// can.
    pub fn refusals(&self, request: &RequestMatch) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if request.headers.len() > self.max_headers {
            out.push((
                "headers".to_owned(),
                format!(
                    "{} header conditions, at most {}",
                    request.headers.len(),
                    self.max_headers
                ),
            ));
        }
        for (name, condition) in &request.headers {
            if !self.headers.supports(condition) {
                out.push((
                    format!("headers.{name}"),
                    "this kind of header condition".to_owned(),
                ));
            }
        }
        if let Some(cookie) = &request.cookie {
            if !self.header_with_cookie && !request.headers.is_empty() {
                out.push((
                    "cookie".to_owned(),
                    "a header and a cookie condition in one match".to_owned(),
                ));
            }
            if !self.cookie {
                out.push(("cookie".to_owned(), "cookie conditions".to_owned()));
            } else if !self.cookie_value && cookie.value() != "always" {
                out.push((
                    "cookie.value".to_owned(),
                    "cookie values other than `always`".to_owned(),
                ));
            }
        }
        if let Some(uri) = &request.uri {
            if !self.uri.any() {
                out.push(("uri".to_owned(), "URI conditions".to_owned()));
            } else if !self.uri.supports(uri) {
                out.push(("uri".to_owned(), "this kind of URI condition".to_owned()));
            }
        }
        for (name, condition) in &request.query_params {
            if !self.query.any() {
                out.push((
                    format!("queryParams.{name}"),
                    "query-parameter conditions".to_owned(),
                ));
            } else if !self.query.supports(condition) {
                out.push((
                    format!("queryParams.{name}"),
                    "this kind of query condition".to_owned(),
                ));
            }
        }
        if request.method.is_some() && !self.method {
            out.push(("method".to_owned(), "method conditions".to_owned()));
        }
        out
    }
}

/// The kinds as a list: `exact, prefix, regex`.
impl fmt::Display for MatchKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = [
            (self.exact, "exact"),
            (self.prefix, "prefix"),
            (self.regex, "regex"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, kind)| kind)
        .collect();
        f.write_str(&kinds.join(", "))
    }
}

/// The summary when there is one; otherwise what the fields allow, e.g. `weights; at most 1
/// match of at most 1 header condition (exact)`.
impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.summary.is_empty() {
            return f.write_str(self.summary);
        }
        let mut parts = Vec::new();
        if self.weights {
            parts.push("weights".to_owned());
        }
        let mut conditions = Vec::new();
        if self.headers.any() && self.max_headers > 0 {
            let count = if self.max_headers == usize::MAX {
                "header conditions".to_owned()
            } else if self.max_headers == 1 {
                "at most 1 header condition".to_owned()
            } else {
                format!("at most {} header conditions", self.max_headers)
            };
            conditions.push(format!("{count} ({})", self.headers));
        }
        if self.cookie {
            conditions.push(if self.cookie_value {
                "a cookie".to_owned()
            } else {
                "a cookie set to `always`".to_owned()
            });
        }
        if self.uri.any() {
            conditions.push(format!("the URI ({})", self.uri));
        }
        if self.query.any() {
            conditions.push(format!("query parameters ({})", self.query));
        }
        if self.method {
            conditions.push("the method".to_owned());
        }
        if self.max_matches > 0 && !conditions.is_empty() {
            let matches = match self.max_matches {
                usize::MAX => "matches on".to_owned(),
                1 => "at most 1 match of".to_owned(),
                n => format!("at most {n} matches of"),
            };
            parts.push(format!("{matches} {}", conditions.join(", ")));
        }
        if self.mirror {
            parts.push("mirroring".to_owned());
        }
        if parts.is_empty() {
            return f.write_str("no traffic to the canary at all");
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::TrafficRouting;
    use crate::traffic::ProviderKind;

    fn header(name: &str, condition: StringMatch) -> RequestMatch {
        RequestMatch {
            headers: [(name.to_owned(), condition)].into(),
            ..RequestMatch::default()
        }
    }

    #[test]
    fn nginx_takes_one_exact_or_regex_header_but_not_a_prefix() {
        let nginx = ProviderKind::Nginx.capabilities(&TrafficRouting::default());
        assert!(
            nginx
                .refusals(&header("x-canary", StringMatch::exact("on")))
                .is_empty()
        );
        let prefix = StringMatch {
            prefix: Some("on".into()),
            ..StringMatch::default()
        };
        assert_eq!(nginx.refusals(&header("x-canary", prefix)).len(), 1);
        let mut two = header("a", StringMatch::exact("1"));
        two.headers.insert("b".into(), StringMatch::exact("2"));
        assert_eq!(nginx.refusals(&two)[0].0, "headers");
    }

    #[test]
    fn without_a_summary_the_fields_describe_themselves() {
        assert_eq!(Capabilities::weights_only().to_string(), "weights");
        assert_eq!(
            Capabilities::default().to_string(),
            "no traffic to the canary at all"
        );
        assert_eq!(
            Capabilities::everything().to_string(),
            "weights; matches on header conditions (exact, prefix, regex), a cookie, the URI \
             (exact, prefix, regex), query parameters (exact, prefix, regex), the method; \
             mirroring"
        );
        let summary = Capabilities::weights_only().with_summary("just weights");
        assert_eq!(summary.to_string(), "just weights");
    }

    #[test]
    fn istio_takes_everything() {
        let istio = ProviderKind::Istio.capabilities(&TrafficRouting::default());
        let full = RequestMatch {
            headers: [("a".into(), StringMatch::exact("1"))].into(),
            cookie: Some(crate::api::spec::CookieMatch {
                name: "c".into(),
                value: Some("v".into()),
            }),
            uri: Some(StringMatch {
                regex: Some("^/api".into()),
                ..StringMatch::default()
            }),
            query_params: [("q".into(), StringMatch::exact("x"))].into(),
            method: Some("GET".into()),
        };
        assert!(istio.refusals(&full).is_empty());
        assert_eq!(
            ProviderKind::Nginx
                .capabilities(&TrafficRouting::default())
                .refusals(&full)
                .len(),
            5
        );
    }
}
