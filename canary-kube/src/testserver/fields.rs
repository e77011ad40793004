//! Field ownership (`metadata.managedFields`): leaf field paths, the `FieldsV1`
//! encoding, and ownership transfer on `Update` operations.
//!
//! Encoding: every owned leaf is a nested `{"f:<key>": {...}}` path ending in `{}`.
//! Lists are atomic (a list is one leaf), as are scalars; maps are walked key by key.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::resources::ResourceType;
use super::store::{Part, now_rfc3339};

/// A path of object keys from the root to a field.
pub(crate) type FieldPath = Vec<String>;
/// A set of owned field paths.
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// The metadata fields that are user-owned and tracked.
const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    /// When the entry's fields last changed.
    pub time: String,
    /// Owned leaf paths.
    pub fields: FieldSet,
}

impl Entry {
    /// A new entry stamped with the current time.
    pub(crate) fn new(manager: &str, operation: &str, part: Part, fields: FieldSet) -> Self {
        Self {
            manager: manager.to_owned(),
            operation: operation.to_owned(),
            subresource: subresource_name(part).to_owned(),
            time: now_rfc3339(),
            fields,
        }
    }
}

/// The `subresource` value of managed-fields entries for a part.
pub(crate) fn subresource_name(part: Part) -> &'static str {
    match part {
        Part::Main => "",
        Part::Status => "status",
    }
}

/// Whether a path belongs to the part of an object a write to `part` may change.
fn in_part(path: &[String], part: Part, rt: &ResourceType) -> bool {
    let is_status = path.first().is_some_and(|p| p == "status");
    match part {
        Part::Status => is_status,
        Part::Main => !(rt.status_subresource && is_status),
    }
}

/// The user-owned part of an object for `part`: tracked metadata plus the rest,
/// without `apiVersion`/`kind` and without the fields of the other part.
pub(crate) fn user_fields(obj: &Value, part: Part, rt: &ResourceType) -> Value {
    let mut out = Map::new();
    let Some(map) = obj.as_object() else {
        return Value::Object(out);
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let meta: Map<String, Value> = TRACKED_METADATA
                    .iter()
                    .filter_map(|f| v.get(*f).map(|x| ((*f).to_owned(), x.clone())))
                    .collect();
                if !meta.is_empty() && part == Part::Main {
                    out.insert(k.clone(), Value::Object(meta));
                }
            }
            _ if in_part(std::slice::from_ref(k), part, rt) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// The owned leaf paths of an object for `part` (null values own nothing).
pub(crate) fn leaf_paths(obj: &Value, part: Part, rt: &ResourceType) -> FieldSet {
    let mut out = FieldSet::new();
    collect(&user_fields(obj, part, rt), Vec::new(), &mut out);
    out
}

fn collect(v: &Value, path: FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(map) if !map.is_empty() || path.is_empty() => {
            for (k, child) in map {
                let mut p = path.clone();
                p.push(k.clone());
                collect(child, p, out);
            }
        }
        Value::Null => {}
        _ => {
            out.insert(path);
        }
    }
}

/// The value at a path, if present.
pub(crate) fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |node, k| node.get(k))
}

/// Removes the field at a path, if present.
pub(crate) fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents.iter().try_fold(v, |node, k| node.get_mut(k));
    if let Some(Value::Object(map)) = parent {
        map.remove(last);
    }
}

/// Whether one path is a prefix of the other (they name overlapping fields).
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Encodes a field set as `FieldsV1`.
pub(crate) fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for seg in path {
            node = match node.entry(format!("f:{seg}")).or_insert_with(|| json!({})) {
                Value::Object(m) => m,
                _ => break,
            };
        }
    }
    Value::Object(root)
}

/// Decodes `FieldsV1` (only `f:` keys are understood).
pub(crate) fn decode(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: FieldPath, out: &mut FieldSet) {
        let children: Vec<(&str, &Value)> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, c)| k.strip_prefix("f:").map(|s| (s, c)))
                    .collect()
            })
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path);
            }
            return;
        }
        for (k, c) in children {
            let mut p = path.clone();
            p.push(k.to_owned());
            walk(c, p, out);
        }
    }
    let mut out = FieldSet::new();
    walk(v, Vec::new(), &mut out);
    out
}

/// The managed-fields entries of an object.
pub(crate) fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let text = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    list.iter()
        .map(|e| Entry {
            manager: text(e, "manager"),
            operation: text(e, "operation"),
            subresource: text(e, "subresource"),
            time: text(e, "time"),
            fields: e.get("fieldsV1").map(decode).unwrap_or_default(),
        })
        .collect()
}

/// Writes entries to `metadata.managedFields` (removing it when there are none).
pub(crate) fn write_entries(obj: &mut Value, entries: &[Entry], rt: &ResourceType) {
    let Some(meta) = super::store::meta_mut(obj) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
        return;
    }
    let list = entries
        .iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": rt.api_version(),
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(&e.fields),
            });
            if let (false, Some(map)) = (e.subresource.is_empty(), v.as_object_mut()) {
                map.insert("subresource".into(), Value::String(e.subresource.clone()));
            }
            v
        })
        .collect();
    meta.insert("managedFields".into(), Value::Array(list));
}

/// Records an `Update` by `manager` that turned `old` into `new`: the manager takes
/// the fields whose values changed; removed fields are dropped from every entry.
pub(crate) fn record_update(
    entries: &mut Vec<Entry>,
    old: &Value,
    new: &Value,
    manager: &str,
    part: Part,
    rt: &ResourceType,
) {
    let new_paths = leaf_paths(new, part, rt);
    let changed: FieldSet = new_paths
        .iter()
        .filter(|p| value_at(old, p) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = leaf_paths(old, part, rt)
        .into_iter()
        .filter(|p| value_at(new, p).is_none_or(Value::is_null))
        .collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| !removed.contains(p) && !changed.iter().any(|c| overlaps(c, p)));
    }
    if !changed.is_empty() {
        let sub = subresource_name(part);
        match entries
            .iter_mut()
            .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now_rfc3339();
            }
            None => entries.push(Entry::new(manager, "Update", part, changed)),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
}
