//! The canary annotations of ingress-nginx, written from a route and read back into one.

use std::collections::BTreeMap;

use canary_core::RouteState;
use canary_core::api::spec::{CookieMatch, RequestMatch, StringMatch};
use serde_json::{Map, Value, json};

/// The annotation prefix of ingress-nginx unless its `--annotations-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// `pattern` matching whole header values only: `^(?:pattern)$`.
///
/// A route's regex means a whole-value match, but ingress-nginx looks for the
/// `canary-by-header-pattern` anywhere in the value (rootfs/etc/nginx/lua/balancer.lua:
/// `route_to_alternative_balancer` calls `ngx.re.match(header, pattern)` with no anchoring
/// option), so the pattern is written anchored. The added characters are all ones its
/// `IsValidRegex` validator accepts.
pub fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// The pattern [`anchored`] made `written` from (`written` itself when it is not anchored
/// that way).
pub fn unanchored(written: &str) -> &str {
    written
        .strip_prefix("^(?:")
        .and_then(|rest| rest.strip_suffix(")$"))
        .unwrap_or(written)
}

/// The annotations of ingress-nginx's canary feature, under one prefix.
#[derive(Debug, Clone, Copy)]
pub struct Canary<'a> {
    prefix: &'a str,
}

impl<'a> Canary<'a> {
    /// The annotations under `prefix`.
    pub fn new(prefix: &'a str) -> Self {
        Canary { prefix }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// True when `key` is one of the canary annotations (any `<prefix>/canary*`).
    pub fn is_canary_key(&self, key: &str) -> bool {
        key.strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| name.starts_with("canary"))
    }

    /// The canary annotations for `route`: `canary`, `canary-weight`, `canary-weight-total`
    /// when the total is not 100, and the header or cookie of its match (validation allows at
    /// most one match, on one header or one cookie).
    pub fn for_route(&self, route: &RouteState) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert(self.key("canary"), json!("true"));
        out.insert(self.key("canary-weight"), json!(route.weight.to_string()));
        if route.total != 100 {
            out.insert(
                self.key("canary-weight-total"),
                json!(route.total.to_string()),
            );
        }
        if let Some(request) = route.matches.first() {
            if let Some((name, condition)) = request.headers.iter().next() {
                out.insert(self.key("canary-by-header"), json!(name));
                if let Some(value) = &condition.exact {
                    out.insert(self.key("canary-by-header-value"), json!(value));
                }
                if let Some(pattern) = &condition.regex {
                    out.insert(
                        self.key("canary-by-header-pattern"),
                        json!(anchored(pattern)),
                    );
                }
            }
            if let Some(cookie) = &request.cookie {
                out.insert(self.key("canary-by-cookie"), json!(cookie.name));
            }
        }
        out
    }

    /// The route `annotations` put in effect; `None` when they are not a canary Ingress's.
    pub fn route_of(&self, annotations: &BTreeMap<String, String>) -> Option<RouteState> {
        let get = |name: &str| annotations.get(&self.key(name));
        if get("canary").map(String::as_str) != Some("true") {
            return None;
        }
        let number = |name: &str, default: u32| {
            get(name).map_or(Some(default), |value| value.trim().parse::<u32>().ok())
        };
        let mut request = RequestMatch::default();
        if let Some(header) = get("canary-by-header") {
            let condition = match (
                get("canary-by-header-value"),
                get("canary-by-header-pattern"),
            ) {
                (Some(value), _) => StringMatch::exact(value.clone()),
                (None, Some(pattern)) => StringMatch {
                    regex: Some(unanchored(pattern).to_owned()),
                    ..StringMatch::default()
                },
                // `always` / `never` by the header's own value: not a match canary writes.
                (None, None) => StringMatch::exact("always"),
            };
            request.headers.insert(header.clone(), condition);
        }
        if let Some(cookie) = get("canary-by-cookie") {
            request.cookie = Some(CookieMatch {
                name: cookie.clone(),
                value: None,
            });
        }
        Some(RouteState {
            weight: number("canary-weight", 0)?,
            total: number("canary-weight-total", 100)?,
            matches: if request.is_empty() {
                Vec::new()
            } else {
                vec![request]
            },
            mirror: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_nginx_can_take_reads_back_as_written() {
        let canary = Canary::new("example.com/ingress");
        let routes = [
            RouteState::weighted(20),
            RouteState {
                weight: 5,
                total: 1000,
                ..RouteState::stable()
            },
            RouteState {
                matches: vec![RequestMatch {
                    headers: [("x-canary".into(), StringMatch::exact("on"))].into(),
                    ..RequestMatch::default()
                }],
                ..RouteState::stable()
            },
            RouteState {
                matches: vec![RequestMatch {
                    headers: [(
                        "x-region".into(),
                        StringMatch {
                            regex: Some("eu-.*".into()),
                            ..StringMatch::default()
                        },
                    )]
                    .into(),
                    ..RequestMatch::default()
                }],
                ..RouteState::weighted(10)
            },
            RouteState {
                matches: vec![RequestMatch {
                    cookie: Some(CookieMatch {
                        name: "beta".into(),
                        value: None,
                    }),
                    ..RequestMatch::default()
                }],
                ..RouteState::stable()
            },
        ];
        for route in routes {
            let written: BTreeMap<String, String> = canary
                .for_route(&route)
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
                .collect();
            assert!(
                written.keys().all(|k| canary.is_canary_key(k)),
                "{written:?}"
            );
            assert_eq!(canary.route_of(&written), Some(route));
        }
        assert!(!canary.is_canary_key("example.com/ingress/rewrite-target"));
        assert!(!canary.is_canary_key("other.io/canary"));
    }
}
