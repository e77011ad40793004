//! Request matches as Istio `HTTPMatchRequest`s.

use canary_core::api::spec::{RequestMatch, StringMatch};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// `condition` as an Istio `StringMatch`.
fn string_match(condition: &StringMatch) -> Value {
    let mut out = Map::new();
    for (key, value) in [
        ("exact", &condition.exact),
        ("prefix", &condition.prefix),
        ("regex", &condition.regex),
    ] {
        if let Some(value) = value {
            out.insert(key.to_owned(), json!(value));
        }
    }
    Value::Object(out)
}

/// The RE2 pattern for "the `Cookie` header carries `name=value`".
pub fn cookie_pattern(name: &str, value: &str) -> String {
    format!("^(.*?;\\s*)?({}={})(;.*)?$", escape(name), escape(value))
}

/// `text` with the RE2 metacharacters escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One request match as an `HTTPMatchRequest`. A cookie condition is a regex on the `cookie`
/// header.
pub fn http_match(request: &RequestMatch) -> Result<Value> {
    let mut out = Map::new();
    let mut headers: Map<String, Value> = request
        .headers
        .iter()
        .map(|(name, condition)| (name.clone(), string_match(condition)))
        .collect();
    if let Some(cookie) = &request.cookie {
        if headers.contains_key("cookie") {
            return Err(Error::Conflict(
                "a match has both a cookie condition and a `cookie` header condition; Istio \
                 matches cookies through that header, so give one of them"
                    .to_owned(),
            ));
        }
        headers.insert(
            "cookie".to_owned(),
            json!({"regex": cookie_pattern(&cookie.name, cookie.value())}),
        );
    }
    if !headers.is_empty() {
        out.insert("headers".to_owned(), Value::Object(headers));
    }
    if let Some(uri) = &request.uri {
        out.insert("uri".to_owned(), string_match(uri));
    }
    if !request.query_params.is_empty() {
        let params: Map<String, Value> = request
            .query_params
            .iter()
            .map(|(name, condition)| (name.clone(), string_match(condition)))
            .collect();
        out.insert("queryParams".to_owned(), Value::Object(params));
    }
    if let Some(method) = &request.method {
        out.insert("method".to_owned(), json!({"exact": method}));
    }
    Ok(Value::Object(out))
}

/// The matches of a route sending `ours` to the canary within a route the user limited by
/// `theirs` (every pair of the two lists, both sets of conditions held). A pair that would need
/// two conditions on the same field is refused, naming `route`.
pub fn within(theirs: Option<&Value>, ours: &[RequestMatch], route: &str) -> Result<Vec<Value>> {
    let ours: Vec<Value> = ours.iter().map(http_match).collect::<Result<_>>()?;
    let theirs: Vec<Value> = match theirs.and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.clone(),
        _ => return Ok(ours),
    };
    let mut out = Vec::with_capacity(theirs.len() * ours.len());
    for user in &theirs {
        for canary in &ours {
            out.push(both(user, canary, route)?);
        }
    }
    Ok(out)
}

/// One `HTTPMatchRequest` holding the conditions of both.
fn both(user: &Value, canary: &Value, route: &str) -> Result<Value> {
    let mut merged = user.as_object().cloned().unwrap_or_default();
    // The user's match name stays; ours carry none.
    for (field, condition) in canary.as_object().into_iter().flatten() {
        match (merged.get_mut(field), condition) {
            (None, _) => {
                merged.insert(field.clone(), condition.clone());
            }
            (Some(Value::Object(held)), Value::Object(added))
                if matches!(field.as_str(), "headers" | "queryParams") =>
            {
                for (key, value) in added {
                    if held.get(key).is_some_and(|existing| existing != value) {
                        return Err(Error::Conflict(format!(
                            "route `{route}` already matches {field} `{key}` otherwise; a \
                             request cannot match both"
                        )));
                    }
                    held.insert(key.clone(), value.clone());
                }
            }
            (Some(existing), _) if existing == condition => {}
            (Some(existing), _) if field == "uri" && narrower(condition, existing) => {
                *existing = condition.clone();
            }
            (Some(existing), _) if field == "uri" && narrower(existing, condition) => {}
            (Some(_), _) => {
                return Err(Error::Conflict(format!(
                    "route `{route}` already has a `{field}` condition; Istio cannot require two \
                     in one match"
                )));
            }
        }
    }
    Ok(Value::Object(merged))
}

/// True when every path `a` matches is matched by `b` as well (so `a` alone says both): `b` is
/// a prefix of `a`'s exact path or prefix.
fn narrower(a: &Value, b: &Value) -> bool {
    let Some(outer) = b["prefix"].as_str() else {
        return false;
    };
    [&a["exact"], &a["prefix"]]
        .into_iter()
        .filter_map(Value::as_str)
        .any(|inner| inner.starts_with(outer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_core::api::spec::CookieMatch;

    #[test]
    fn cookie_values_are_escaped_into_a_header_regex() {
        let request = RequestMatch {
            cookie: Some(CookieMatch {
                name: "beta".into(),
                value: Some("a.b".into()),
            }),
            ..RequestMatch::default()
        };
        let rendered = http_match(&request).unwrap();
        let pattern = rendered["headers"]["cookie"]["regex"].as_str().unwrap();
        let re = regex_lite(pattern);
        assert!(re("x=1; beta=a.b; y=2"));
        assert!(re("beta=a.b"));
        assert!(!re("beta=aXb"));
        assert!(!re("notbeta=a.b"));
    }

    /// The pattern checked with the `regex` crate, which reads RE2 syntax the same way.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let re = regex::Regex::new(pattern).unwrap();
        move |text| re.is_match(text)
    }

    #[test]
    fn user_conditions_and_ours_are_combined_and_clashes_refused() {
        let ours = [RequestMatch {
            headers: [("x-canary".into(), StringMatch::exact("on"))].into(),
            ..RequestMatch::default()
        }];
        let theirs = json!([{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/v2"}}]);
        let combined = within(Some(&theirs), &ours, "api").unwrap();
        assert_eq!(combined.len(), 2);
        assert_eq!(combined[1]["uri"]["prefix"], "/v2");
        assert_eq!(combined[1]["headers"]["x-canary"]["exact"], "on");
        let narrower = [RequestMatch {
            uri: Some(StringMatch {
                prefix: Some("/api/v2".into()),
                ..StringMatch::default()
            }),
            ..RequestMatch::default()
        }];
        let api = json!([{"uri": {"prefix": "/api"}}]);
        let inside = within(Some(&api), &narrower, "api").unwrap();
        assert_eq!(
            inside[0]["uri"]["prefix"], "/api/v2",
            "the narrower prefix holds both"
        );
        assert!(within(Some(&json!([{"uri": {"prefix": "/v2"}}])), &narrower, "api").is_err());
        let clash = json!([{"headers": {"x-canary": {"exact": "off"}}}]);
        assert!(matches!(
            within(Some(&clash), &ours, "api"),
            Err(Error::Conflict(_))
        ));
    }
}
