//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge
//! patch by each list's `patchStrategy`/`patchMergeKey`. Server-side apply lives in
//! `apply.rs`.

use serde_json::{Map, Value};

use super::errors::{ApiError, ApiResult};
use super::merge_types::{Cursor, PatchList};

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

/// Applies a strategic merge patch (k8s.io/apimachinery `pkg/util/strategicpatch/patch.go`)
/// to a built-in object: maps merge key by key (`null` deletes a key; `"$patch": "replace"`
/// replaces the map, `"$patch": "delete"` deletes it; `$retainKeys` keeps only the listed
/// keys); a list merges by its `patchMergeKey` when its `patchStrategy` is `merge` (items
/// matched by that key are merged, new ones appended, `"$patch": "delete"` items remove
/// their namesake, a `{"$patch": "replace"}` item makes the rest of the list replace the
/// live one); a `merge` list of scalars is a union (`$deleteFromPrimitiveList/<field>`
/// removes values); other lists are replaced. `$setElementOrder` directives are ignored.
pub(crate) fn strategic(live: &Value, patch: &Value, cursor: &Cursor<'_>) -> Value {
    let mut out = live.clone();
    smp(&mut out, patch, cursor);
    out
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

fn without_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn smp(target: &mut Value, patch: &Value, cursor: &Cursor<'_>) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if directive(patch) == Some("replace") || !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        t.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    for (k, pv) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(drop)) = (t.get_mut(field), pv.as_array()) {
                list.retain(|v| !drop.contains(v));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() || (pv.is_object() && directive(pv) == Some("delete")) {
            t.remove(k);
            continue;
        }
        let fc = cursor.field(k);
        match (t.get_mut(k), pv) {
            (Some(Value::Array(tl)), Value::Array(pl)) => merge_list(tl, pl, &fc),
            (Some(tv), _) => smp(tv, pv, &fc),
            (None, Value::Array(pl)) => {
                let mut fresh = Vec::new();
                merge_list(&mut fresh, pl, &fc);
                t.insert(k.clone(), Value::Array(fresh));
            }
            (None, _) => {
                let mut fresh = Value::Null;
                smp(&mut fresh, pv, &fc);
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn merge_list(target: &mut Vec<Value>, patch: &[Value], cursor: &Cursor<'_>) {
    let ic = cursor.item();
    match cursor.patch_list() {
        PatchList::Replace => {
            *target = patch.iter().map(without_directives).collect();
        }
        PatchList::MergeValues => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        PatchList::MergeBy(key) => {
            if patch.iter().any(|i| directive(i) == Some("replace")) {
                *target = patch
                    .iter()
                    .filter(|i| directive(i) != Some("replace"))
                    .map(without_directives)
                    .collect();
                return;
            }
            for item in patch {
                let id = item.get(key);
                let pos = target.iter().position(|t| id.is_some() && t.get(key) == id);
                match (pos, directive(item) == Some("delete")) {
                    (Some(i), true) => {
                        target.remove(i);
                    }
                    (Some(i), false) => {
                        if let Some(t) = target.get_mut(i) {
                            smp(t, item, &ic);
                        }
                    }
                    (None, true) => {}
                    (None, false) => {
                        let mut fresh = Value::Null;
                        smp(&mut fresh, item, &ic);
                        target.push(fresh);
                    }
                }
            }
        }
    }
}
