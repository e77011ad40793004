//! Request matches as MeshHTTPRoute `matches`.

use canary_core::api::spec::{RequestMatch, StringMatch};
use serde_json::{Map, Value, json};

/// The catch-all path every rule carries: Kuma orders rules by path first, so a rule without
/// one would sort after the catch-all and never match.
pub fn catch_all() -> Value {
    json!({"path": {"type": "PathPrefix", "value": "/"}})
}

/// `condition` as a Kuma match type and value (validation leaves only what Kuma takes).
fn typed(condition: &StringMatch, prefix: &str) -> (String, String) {
    match (&condition.exact, &condition.prefix, &condition.regex) {
        (Some(value), _, _) => ("Exact".to_owned(), value.clone()),
        (None, Some(value), _) => (prefix.to_owned(), value.clone()),
        (None, None, Some(value)) => ("RegularExpression".to_owned(), value.clone()),
        (None, None, None) => ("Exact".to_owned(), String::new()),
    }
}

/// A path as Kuma takes it: absolute and, for a `PathPrefix` other than `/`, without a
/// trailing `/`, which Kuma's validator refuses (`validatePath` in
/// `pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go`, Kuma 2.x). Validation
/// refuses such values in a spec; this keeps a route built some other way valid.
///
/// A `PathPrefix` matches whole `/`-separated segments: `/api` matches `/api` and `/api/…`,
/// not `/apis` (`routePathMatch` in `pkg/plugins/policies/meshhttproute/xds/configurer.go`
/// turns it into the exact path plus the prefix `/api/`).
pub fn kuma_path(kind: &str, value: &str) -> String {
    let absolute = if value.starts_with('/') {
        value.to_owned()
    } else {
        format!("/{value}")
    };
    if kind != "PathPrefix" {
        return absolute;
    }
    let trimmed = absolute.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// One request match as a MeshHTTPRoute match.
pub fn kuma_match(request: &RequestMatch) -> Value {
    let mut out = Map::new();
    let path = match &request.uri {
        Some(uri) => {
            let (kind, value) = typed(uri, "PathPrefix");
            let value = match kind.as_str() {
                "RegularExpression" => value,
                _ => kuma_path(&kind, &value),
            };
            json!({"type": kind, "value": value})
        }
        None => catch_all()["path"].clone(),
    };
    out.insert("path".to_owned(), path);
    if let Some(method) = &request.method {
        out.insert("method".to_owned(), json!(method));
    }
    if !request.headers.is_empty() {
        let headers: Vec<Value> = request
            .headers
            .iter()
            .map(|(name, condition)| {
                let (kind, value) = typed(condition, "Prefix");
                json!({"type": kind, "name": name, "value": value})
            })
            .collect();
        out.insert("headers".to_owned(), Value::Array(headers));
    }
    if !request.query_params.is_empty() {
        let params: Vec<Value> = request
            .query_params
            .iter()
            .map(|(name, condition)| {
                let (kind, value) = typed(condition, "Exact");
                json!({"type": kind, "name": name, "value": value})
            })
            .collect();
        out.insert("queryParams".to_owned(), Value::Array(params));
    }
    Value::Object(out)
}
