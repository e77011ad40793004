//! Whether a request matches an `HTTPMatchRequest`, as Envoy evaluates the route match Istio
//! translates it into (`pilot/pkg/networking/core/route/route.go` `TranslateRouteMatch`,
//! `translateHeaderMatch`, `translateQueryParamMatch`, `canBeConvertedToPresentMatch`).
//!
//! All fields of one match must hold. A `StringMatch` is `exact`, `prefix` or `regex`; a regex
//! is an RE2 `safe_regex`, which Envoy matches against the whole value; an empty `StringMatch`
//! and the regex `*` mean "present". An absent header or query parameter matches nothing,
//! except in `withoutHeaders`, where Istio sets `treat_missing_header_as_empty` (so an absent
//! header is compared as the empty string, then the result inverted).

use regex::Regex;
use serde_json::Value;

use crate::sim::dataplane::Request;

/// True when `request` satisfies the route match `m` (the request fields only: source and
/// gateway conditions are decided when routes are built).
pub(super) fn request_matches(m: &Value, request: &Request) -> bool {
    uri_matches(m, &request.path)
        && object_entries(&m["headers"])
            .all(|(name, spec)| string_match(spec, header(request, name).as_deref()))
        && object_entries(&m["withoutHeaders"]).all(|(name, spec)| {
            let value = header(request, name);
            if present_match(spec) {
                value.is_none()
            } else {
                !string_match(spec, Some(value.as_deref().unwrap_or("")))
            }
        })
        && object_entries(&m["queryParams"])
            .all(|(name, spec)| string_match(spec, request.query.get(name).map(String::as_str)))
        && optional_match(&m["method"], &request.method)
        && optional_match(&m["authority"], &request.host)
        && optional_match(&m["scheme"], "http")
}

/// True when the Envoy route built from match `m` (or from no match) is a catch-all
/// (route.go `IsCatchAllRoute`): path prefix `/` or regex `.*`, and no header or query
/// condition. Method, authority and scheme become header conditions.
pub(super) fn catch_all(m: Option<&Value>) -> bool {
    let Some(m) = m else {
        return true;
    };
    let uri = &m["uri"];
    let any_path = uri.is_null()
        || uri.as_object().is_some_and(|o| o.is_empty())
        || uri["prefix"] == "/"
        || uri["regex"] == ".*";
    let conditions = ["headers", "withoutHeaders", "queryParams"]
        .iter()
        .any(|key| object_entries(&m[*key]).next().is_some())
        || ["method", "authority", "scheme"]
            .iter()
            .any(|key| !m[*key].is_null());
    any_path && !conditions
}

/// The URI condition: exact or prefix (case-insensitive with `ignoreUriCase`), or a regex over
/// the whole path (Envoy ignores case-insensitivity for `safe_regex`).
fn uri_matches(m: &Value, path: &str) -> bool {
    let uri = &m["uri"];
    let ignore_case = m["ignoreUriCase"].as_bool().unwrap_or(false);
    let fold = |s: &str| {
        if ignore_case {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    if let Some(exact) = uri["exact"].as_str() {
        fold(path) == fold(exact)
    } else if let Some(prefix) = uri["prefix"].as_str() {
        fold(path).starts_with(&fold(prefix))
    } else if let Some(regex) = uri["regex"].as_str() {
        full_match(regex, path)
    } else {
        true
    }
}

fn optional_match(spec: &Value, value: &str) -> bool {
    spec.is_null() || string_match(spec, Some(value))
}

/// A `StringMatch` against a value, `None` when the header or parameter is absent.
fn string_match(spec: &Value, value: Option<&str>) -> bool {
    let Some(value) = value else {
        return false;
    };
    if present_match(spec) {
        return true;
    }
    if let Some(exact) = spec["exact"].as_str() {
        value == exact
    } else if let Some(prefix) = spec["prefix"].as_str() {
        value.starts_with(prefix)
    } else if let Some(regex) = spec["regex"].as_str() {
        full_match(regex, value)
    } else {
        false
    }
}

/// route.go canBeConvertedToPresentMatch: no match type, or the regex `*`.
fn present_match(spec: &Value) -> bool {
    match spec.as_object() {
        None => true,
        Some(o) => {
            o.get("regex").and_then(Value::as_str) == Some("*")
                || !["exact", "prefix", "regex"]
                    .iter()
                    .any(|k| o.contains_key(*k))
        }
    }
}

/// Envoy `safe_regex`: RE2 syntax, the whole value must match. A regex that does not compile
/// matches nothing (Istio's validation would have refused it).
fn full_match(regex: &str, value: &str) -> bool {
    Regex::new(&format!("^(?:{regex})$")).is_ok_and(|re| re.is_match(value))
}

/// A request header by (lower-case) name. `cookie` is built from the request's cookies when
/// the request carries no explicit `cookie` header, as a client sends them.
fn header(request: &Request, name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    if let Some(value) = request.headers.get(&name) {
        return Some(value.clone());
    }
    if name == "cookie" && !request.cookies.is_empty() {
        let pairs: Vec<String> = request
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        return Some(pairs.join("; "));
    }
    None
}

fn object_entries(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flatten()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn get(path: &str) -> Request {
        Request::to("reviews", path)
    }

    #[test]
    fn uri_exact_prefix_and_whole_value_regex() {
        assert!(request_matches(
            &json!({"uri": {"exact": "/a"}}),
            &get("/a")
        ));
        assert!(!request_matches(
            &json!({"uri": {"exact": "/a"}}),
            &get("/a/b")
        ));
        assert!(request_matches(
            &json!({"uri": {"prefix": "/a"}}),
            &get("/ab")
        ));
        assert!(request_matches(
            &json!({"uri": {"regex": "/a/[0-9]+"}}),
            &get("/a/12")
        ));
        assert!(!request_matches(
            &json!({"uri": {"regex": "/a/[0-9]+"}}),
            &get("/a/12/x")
        ));
        assert!(!request_matches(
            &json!({"uri": {"regex": "[0-9]+"}}),
            &get("/a/12")
        ));
        let ignore = json!({"uri": {"prefix": "/API"}, "ignoreUriCase": true});
        assert!(request_matches(&ignore, &get("/api/v1")));
        assert!(!request_matches(
            &json!({"uri": {"prefix": "/API"}}),
            &get("/api/v1")
        ));
    }

    #[test]
    fn headers_exact_prefix_regex_and_presence() {
        let r = get("/").header("end-user", "jason");
        for (spec, want) in [
            (json!({"exact": "jason"}), true),
            (json!({"exact": "Jason"}), false),
            (json!({"prefix": "ja"}), true),
            (json!({"regex": "j.*n"}), true),
            (json!({"regex": "as"}), false),
            (json!({}), true),
            (json!({"regex": "*"}), true),
        ] {
            let m = json!({"headers": {"end-user": spec}});
            assert_eq!(request_matches(&m, &r), want, "{m}");
        }
        assert!(!request_matches(
            &json!({"headers": {"end-user": {}}}),
            &get("/")
        ));
    }

    #[test]
    fn without_headers_inverts_and_treats_missing_as_empty() {
        let m = json!({"withoutHeaders": {"x-canary": {"exact": "true"}}});
        assert!(request_matches(&m, &get("/")));
        assert!(request_matches(&m, &get("/").header("x-canary", "false")));
        assert!(!request_matches(&m, &get("/").header("x-canary", "true")));
        let absent = json!({"withoutHeaders": {"x-canary": {}}});
        assert!(request_matches(&absent, &get("/")));
        assert!(!request_matches(&absent, &get("/").header("x-canary", "")));
        // A regex the empty string satisfies makes an absent header "match", so inverted: no.
        let empty_ok = json!({"withoutHeaders": {"x-canary": {"regex": ".*"}}});
        assert!(!request_matches(&empty_ok, &get("/")));
    }

    #[test]
    fn fields_of_one_match_must_all_hold() {
        let m = json!({"uri": {"prefix": "/api"}, "method": {"exact": "POST"},
                       "queryParams": {"v": {"exact": "2"}}});
        let mut r = get("/api/x");
        r.method = "POST".into();
        r.query.insert("v".into(), "2".into());
        assert!(request_matches(&m, &r));
        r.query.insert("v".into(), "3".into());
        assert!(!request_matches(&m, &r));
    }

    #[test]
    fn cookies_are_matched_through_the_cookie_header() {
        let m = json!({"headers": {"cookie": {"regex": "^(.*?;\\s*)?(user=jason)(;.*)?$"}}});
        assert!(request_matches(
            &m,
            &get("/").cookie("user", "jason").cookie("a", "1")
        ));
        assert!(!request_matches(&m, &get("/").cookie("user", "bob")));
    }

    #[test]
    fn catch_all_routes() {
        assert!(catch_all(None));
        assert!(catch_all(Some(&json!({"uri": {"prefix": "/"}}))));
        assert!(catch_all(Some(&json!({"sourceNamespace": "x"}))));
        assert!(!catch_all(Some(&json!({"uri": {"prefix": "/a"}}))));
        assert!(!catch_all(Some(&json!({"headers": {"x": {"exact": "1"}}}))));
        assert!(!catch_all(Some(&json!({"method": {"exact": "GET"}}))));
    }
}
