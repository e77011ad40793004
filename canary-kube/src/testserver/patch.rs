//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a simplified
//! strategic merge patch. Server-side apply lives in `apply.rs`.

use serde_json::{Map, Value};

use super::errors::{ApiError, ApiResult};

/// The patch flavour named by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// Parses a `Content-Type` header value (parameters ignored).
    pub(crate) fn from_content_type(content_type: &str) -> ApiResult<Self> {
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        match mime.to_ascii_lowercase().as_str() {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media(format!(
                "the body of the request was in an unknown format ({other:?}) - accepted media types \
                 include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json"
            ))),
        }
    }
}

/// Applies an RFC 7386 merge patch.
pub(crate) fn merge(live: &Value, patch: &Value) -> Value {
    let mut out = live.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Applies an RFC 6902 JSON patch; a malformed document is 400, a failing operation 422.
///
/// As the Kubernetes API server does, a `test` that a path is `null` passes when the path is
/// missing (kube-runtime's finalizer helper relies on it).
pub(crate) fn json(live: &Value, patch: &Value) -> ApiResult<Value> {
    let mut patch = patch.clone();
    if let Value::Array(ops) = &mut patch {
        ops.retain(|op| {
            let null_test = op["op"] == "test" && op.get("value") == Some(&Value::Null);
            let missing = op["path"]
                .as_str()
                .is_some_and(|path| live.pointer(path).is_none());
            !(null_test && missing)
        });
    }
    let ops: json_patch::Patch = serde_json::from_value(patch)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    let mut out = live.clone();
    json_patch::patch(&mut out, &ops)
        .map_err(|e| ApiError::invalid(format!("the JSON patch could not be applied: {e}")))?;
    Ok(out)
}

/// Applies a simplified strategic merge patch: like a merge patch, except that lists of
/// objects that all carry a `name` are merged element-wise by `name` (an element with
/// `"$patch": "delete"` removes its namesake); other lists are replaced and other
/// `$`-directives are ignored.
pub(crate) fn strategic(live: &Value, patch: &Value) -> Value {
    let mut out = live.clone();
    smp(&mut out, patch);
    out
}

fn smp(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, pv) in p {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), pv) {
            (Some(Value::Array(tl)), Value::Array(pl)) if named(tl) && named(pl) => {
                merge_named(tl, pl)
            }
            (Some(tv), _) => smp(tv, pv),
            (None, _) => {
                let mut fresh = Value::Null;
                smp(&mut fresh, pv);
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

fn named(list: &[Value]) -> bool {
    list.iter().all(|v| name_of(v).is_some())
}

fn merge_named(target: &mut Vec<Value>, patch: &[Value]) {
    for item in patch {
        let name = name_of(item).unwrap_or_default();
        let pos = target.iter().position(|t| name_of(t) == Some(name));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                target.remove(i);
            }
            (Some(i), false) => {
                if let Some(t) = target.get_mut(i) {
                    smp(t, item);
                }
            }
            (None, true) => {}
            (None, false) => {
                let mut fresh = Value::Null;
                smp(&mut fresh, item);
                target.push(fresh);
            }
        }
    }
}
