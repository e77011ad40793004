//! What a traffic provider can express ([`Capabilities`]), and why a request match is
//! beyond it.

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
/// anything is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// One sentence saying what the provider supports, for error messages.
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
    pub const fn weights_only(summary: &'static str) -> Capabilities {
        Capabilities {
            summary,
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
