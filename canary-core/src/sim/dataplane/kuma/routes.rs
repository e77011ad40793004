//! The HTTP routes of one outbound, as the MeshHTTPRoute plugin builds them from merged rules:
//! their order, how a request matches them, and where each sends its share.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::super::{PodRef, Request, string_map};
use super::policy::Rule;

/// One route: a single match of a rule, with the rule's `default`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Route {
    /// The match (`path`, `method`, `headers`, `queryParams`); `None` parts match anything.
    pub matched: Value,
    /// `backendRefs` (empty: the outbound's own destination).
    pub backend_refs: Vec<Value>,
    /// `filters`.
    pub filters: Vec<Value>,
    /// The namespace of the policy the route comes from.
    pub origin_namespace: String,
}

/// The routes of `rules` in the order the proxy tries them: each match of each rule a route,
/// stably sorted by match precedence, then a catch-all `PathPrefix /` route to the destination
/// itself unless a route has exactly that match
/// (pkg/plugins/policies/meshhttproute/plugin/v1alpha1/listeners.go: `prepareRoutes`). A
/// gateway has no destination of its own, so `catch_all` is false for it.
pub(super) fn routes(rules: &[Rule], catch_all: bool) -> Vec<Route> {
    let mut routes: Vec<Route> = rules
        .iter()
        .flat_map(|rule| {
            rule.matches.iter().map(|m| Route {
                matched: m.clone(),
                backend_refs: rule.backend_refs.clone().unwrap_or_default(),
                filters: rule.filters.clone().unwrap_or_default(),
                origin_namespace: rule.origin_namespace.clone(),
            })
        })
        .collect();
    routes.sort_by(|a, b| compare_match(&a.matched, &b.matched));
    let every = serde_json::json!({"path": {"type": "PathPrefix", "value": "/"}});
    if catch_all && !routes.iter().any(|r| r.matched == every) {
        routes.push(Route {
            matched: every,
            backend_refs: Vec::new(),
            filters: Vec::new(),
            origin_namespace: String::new(),
        });
    }
    routes
}

/// Match precedence: a path before none; Exact, then PathPrefix, then RegularExpression,
/// longer values first among prefixes and among expressions; then a method before none; then
/// more headers, then more query parameters
/// (pkg/plugins/policies/meshhttproute/api/v1alpha1/compare.go: `CompareMatch`).
pub(super) fn compare_match(a: &Value, b: &Value) -> Ordering {
    let path = |m: &Value| {
        m.get("path").filter(|p| p.is_object()).map(|p| {
            (
                p.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("PathPrefix")
                    .to_owned(),
                p.get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .len(),
            )
        })
    };
    let rank = |t: &str| match t {
        "Exact" => 0,
        "PathPrefix" => 1,
        _ => 2,
    };
    let by_path = match (path(a), path(b)) {
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
        (Some((ta, la)), Some((tb, lb))) => {
            if ta == tb {
                if ta == "Exact" {
                    Ordering::Equal
                } else {
                    lb.cmp(&la)
                }
            } else {
                rank(&ta).cmp(&rank(&tb))
            }
        }
    };
    let count = |m: &Value, key: &str| m.get(key).and_then(Value::as_array).map_or(0, Vec::len);
    let has_method = |m: &Value| m.get("method").is_some_and(|v| !v.is_null());
    by_path
        .then_with(|| has_method(b).cmp(&has_method(a)))
        .then_with(|| count(b, "headers").cmp(&count(a, "headers")))
        .then_with(|| count(b, "queryParams").cmp(&count(a, "queryParams")))
}

/// True when `pattern`, an RE2 expression as Envoy's `safe_regex` reads it, matches the whole
/// of `value`. An expression that does not compile matches nothing.
pub(super) fn full_match(pattern: &str, value: &str) -> bool {
    Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

/// True when `request` matches `matched`
/// (pkg/plugins/policies/meshhttproute/xds/configurer.go: `routePathMatch`,
/// `routeQueryParamsMatch`; xds/match.go: `routeHeadersMatch`). A PathPrefix matches whole
/// segments: `/api` matches `/api` and `/api/x`, not `/apix`.
pub(super) fn matches(matched: &Value, request: &Request) -> bool {
    path_matches(matched.get("path"), &request.path)
        && method_matches(matched.get("method"), &request.method)
        && headers_match(matched.get("headers"), &request.proxy_headers())
        && query_matches(matched.get("queryParams"), &request.query)
}

fn path_matches(path: Option<&Value>, request_path: &str) -> bool {
    let Some(path) = path.filter(|p| p.is_object()) else {
        return true;
    };
    let value = path.get("value").and_then(Value::as_str).unwrap_or("/");
    match path
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("PathPrefix")
    {
        "Exact" => request_path == value,
        "RegularExpression" => full_match(value, request_path),
        _ => {
            if value == "/" {
                return request_path.starts_with('/');
            }
            let trimmed = value.strip_suffix('/').unwrap_or(value);
            request_path == trimmed
                || request_path
                    .strip_prefix(trimmed)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
    }
}

fn method_matches(method: Option<&Value>, request_method: &str) -> bool {
    method
        .and_then(Value::as_str)
        .is_none_or(|m| m.eq_ignore_ascii_case(request_method))
}

fn headers_match(headers: Option<&Value>, request: &BTreeMap<String, String>) -> bool {
    let Some(headers) = headers.and_then(Value::as_array) else {
        return true;
    };
    let mut seen: Vec<String> = Vec::new();
    headers.iter().all(|h| {
        let name = h
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        // Only the first matcher of a name counts (xds/match.go: `routeHeadersMatch`).
        if seen.contains(&name) {
            return true;
        }
        seen.push(name.clone());
        let wanted = h.get("value").and_then(Value::as_str).unwrap_or_default();
        let got = request.get(&name);
        match h.get("type").and_then(Value::as_str).unwrap_or("Exact") {
            "Present" => got.is_some(),
            "Absent" => got.is_none(),
            "Prefix" => got.is_some_and(|g| g.starts_with(wanted)),
            "RegularExpression" => got.is_some_and(|g| full_match(wanted, g)),
            _ => got.is_some_and(|g| g == wanted),
        }
    })
}

fn query_matches(query: Option<&Value>, request: &BTreeMap<String, String>) -> bool {
    let Some(query) = query.and_then(Value::as_array) else {
        return true;
    };
    let mut seen: Vec<&str> = Vec::new();
    query.iter().all(|q| {
        let name = q.get("name").and_then(Value::as_str).unwrap_or_default();
        if seen.contains(&name) {
            return true;
        }
        seen.push(name);
        let wanted = q.get("value").and_then(Value::as_str).unwrap_or_default();
        let got = request.get(name);
        match q.get("type").and_then(Value::as_str).unwrap_or("Exact") {
            "RegularExpression" => got.is_some_and(|g| full_match(wanted, g)),
            _ => got.is_some_and(|g| g == wanted),
        }
    })
}

/// A backend a route sends a share to: the weight and the endpoints (possibly none: that share
/// is answered by nobody).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Split {
    /// Its weight.
    pub weight: f64,
    /// Its ready endpoints.
    pub endpoints: Vec<PodRef>,
    /// What it is, for messages.
    pub name: String,
}

/// A `backendRef`'s fields.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BackendRef {
    /// `kind`.
    pub kind: String,
    /// `name`.
    pub name: String,
    /// `namespace`.
    pub namespace: String,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `tags`.
    pub tags: BTreeMap<String, String>,
    /// `sectionName`.
    pub section_name: String,
    /// `port`.
    pub port: Option<u64>,
    /// `weight` (1 when unset).
    pub weight: u64,
}

impl BackendRef {
    /// The reference at `value`.
    pub fn parse(value: &Value) -> BackendRef {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        BackendRef {
            kind: text("kind"),
            name: text("name"),
            namespace: text("namespace"),
            labels: string_map(value.get("labels")),
            tags: string_map(value.get("tags")),
            section_name: text("sectionName"),
            port: value.get("port").and_then(Value::as_u64),
            weight: value.get("weight").and_then(Value::as_u64).unwrap_or(1),
        }
    }

    /// True when this reference names a real MeshService port rather than a `kuma.io/service`
    /// (api/common/v1alpha1/targetref.go: `BackendRef.ReferencesRealObject`: a MeshService with a
    /// `sectionName` or a `port`).
    pub fn real(&self) -> bool {
        self.kind == "MeshService" && (!self.section_name.is_empty() || self.port.is_some())
    }
}
