//! Label and field selectors for list, watch and delete-collection.

use serde_json::Value;

use super::errors::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq)]
struct FieldReq {
    path: Vec<String>,
    value: String,
    negated: bool,
}

/// A parsed `labelSelector` and `fieldSelector` pair (all requirements ANDed).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Selector {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

impl Selector {
    /// Parses the two query parameters; malformed selectors are 400 BadRequest.
    pub(crate) fn parse(labels: Option<&str>, fields: Option<&str>) -> ApiResult<Self> {
        let labels = match labels {
            Some(s) => split_top_level(s)
                .into_iter()
                .map(parse_label)
                .collect::<ApiResult<_>>()?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(s) => split_top_level(s)
                .into_iter()
                .map(parse_field)
                .collect::<ApiResult<_>>()?,
            None => Vec::new(),
        };
        Ok(Self { labels, fields })
    }

    /// Whether an object satisfies every requirement.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        let label = |k: &str| {
            obj.get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        let labels_ok = self.labels.iter().all(|req| match req {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelReq::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
        });
        labels_ok
            && self.fields.iter().all(|req| {
                let actual = req.path.iter().try_fold(obj, |node, k| node.get(k));
                let actual = match actual {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == req.value) != req.negated
            })
    }
}

/// Splits on commas outside parentheses, dropping empty parts.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn bad(what: &str, s: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: invalid {what} selector {s:?}"
    ))
}

fn parse_label(s: &str) -> ApiResult<LabelReq> {
    if let Some(key) = s.strip_prefix('!') {
        return Ok(LabelReq::NotExists(key.trim().to_owned()));
    }
    let end = s
        .find(|c: char| c.is_whitespace() || c == '=' || c == '!')
        .unwrap_or(s.len());
    let (key, rest) = s.split_at(end);
    let rest = rest.trim();
    if key.is_empty() {
        return Err(bad("label", s));
    }
    let key = key.to_owned();
    let set = |rest: &str| -> ApiResult<Vec<String>> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad("label", s))?;
        Ok(inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect())
    };
    if rest.is_empty() {
        Ok(LabelReq::Exists(key))
    } else if let Some(v) = rest.strip_prefix("!=") {
        Ok(LabelReq::NotEq(key, v.trim().to_owned()))
    } else if let Some(v) = rest.strip_prefix("==").or_else(|| rest.strip_prefix('=')) {
        Ok(LabelReq::Eq(key, v.trim().to_owned()))
    } else if let Some(r) = rest.strip_prefix("notin") {
        Ok(LabelReq::NotIn(key, set(r)?))
    } else if let Some(r) = rest.strip_prefix("in") {
        Ok(LabelReq::In(key, set(r)?))
    } else {
        Err(bad("label", s))
    }
}

fn parse_field(s: &str) -> ApiResult<FieldReq> {
    let (path, value, negated) = if let Some((p, v)) = s.split_once("!=") {
        (p, v, true)
    } else if let Some((p, v)) = s.split_once("==").or_else(|| s.split_once('=')) {
        (p, v, false)
    } else {
        return Err(bad("field", s));
    };
    let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(bad("field", s));
    }
    Ok(FieldReq {
        path,
        value: value.trim().to_owned(),
        negated,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn label_forms() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "fe"}}});
        let ok = |l: &str| Selector::parse(Some(l), None).unwrap().matches(&obj);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(ok("app in (web, api),!missing"));
        assert!(ok("tier notin (be),env!=prod"));
        assert!(!ok("app!=web"));
        assert!(!ok("missing"));
        assert!(!ok("app in (api)"));
        assert!(Selector::parse(Some("app in web"), None).is_err());
        let f = Selector::parse(None, Some("metadata.name=a")).unwrap();
        assert!(f.matches(&obj));
        let f = Selector::parse(None, Some("metadata.name!=a")).unwrap();
        assert!(!f.matches(&obj));
    }
}
