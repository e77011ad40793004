//! Field ownership (`metadata.managedFields`) as structured-merge-diff keeps it: the
//! field set of a value, comparisons of two values, the apply merge, the `FieldsV1`
//! encoding, and ownership transfer on `Update` operations.
//!
//! A path is a list of path elements in their `FieldsV1` spelling (structured-merge-diff
//! `fieldpath/serialize-pe.go`): `f:<name>` for a field or map key, `k:{"name":"x"}` for the
//! item of a `map` list (key fields sorted by name), `v:<json>` for the item of a `set` list.
//! A set is encoded as nested objects; a path that is a member and also has members below
//! it carries `".": {}` (`fieldpath/serialize.go`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::merge_types::{Cursor, ListType, Shape, Types};
use super::resources::ResourceType;
use super::store::{Part, now_rfc3339};

/// A path of `FieldsV1` path elements (`f:`, `k:`, `v:`) from the root to a field.
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

/// The field set of an object for `part` (structured-merge-diff `typed/tofieldset.go`):
/// scalars, atomic maps and atomic lists are members; granular maps are walked, their
/// entries that are empty maps (and map entries of `additionalProperties` maps) being members
/// too; the items of `map` and `set` lists are members and `map` items are walked. `null`
/// owns nothing here (it removes the field).
pub(crate) fn field_set(obj: &Value, part: Part, rt: &ResourceType, types: &Types) -> FieldSet {
    let mut out = FieldSet::new();
    walk_set(
        &user_fields(obj, part, rt),
        &types.root(),
        Vec::new(),
        &mut out,
    );
    out
}

fn insert(out: &mut FieldSet, path: &FieldPath) {
    if !path.is_empty() {
        out.insert(path.clone());
    }
}

fn child(path: &FieldPath, pe: String) -> FieldPath {
    let mut p = path.clone();
    p.push(pe);
    p
}

fn walk_set(v: &Value, cursor: &Cursor<'_>, path: FieldPath, out: &mut FieldSet) {
    match (cursor.shape(v), v) {
        (Shape::Map { atomic: false }, Value::Object(map)) => {
            if map.is_empty() {
                insert(out, &path);
            }
            for (k, c) in map.iter().filter(|(_, c)| !c.is_null()) {
                let p = child(&path, format!("f:{k}"));
                walk_set(c, &cursor.field(k), p.clone(), out);
                if c.as_object().is_some_and(Map::is_empty) || cursor.is_map_entry(k) {
                    insert(out, &p);
                }
            }
        }
        (Shape::List(ListType::Set), Value::Array(items)) => {
            for item in items {
                insert(out, &child(&path, value_pe(item)));
            }
        }
        (Shape::List(ListType::Map(keys)), Value::Array(items)) => {
            let ic = cursor.item();
            for item in items {
                let p = child(&path, key_pe(item, &keys, &ic));
                walk_set(item, &ic, p.clone(), out);
                insert(out, &p);
            }
        }
        _ => insert(out, &path),
    }
}

/// The `v:` path element of a `set` list item.
fn value_pe(item: &Value) -> String {
    format!("v:{item}")
}

/// The `k:` path element of a `map` list item: its key fields, sorted by name; a missing
/// key takes its default where the type has one.
fn key_pe(item: &Value, keys: &[String], cursor: &Cursor<'_>) -> String {
    let fields: BTreeMap<&str, Value> = keys
        .iter()
        .filter_map(|k| {
            item.get(k)
                .filter(|v| !v.is_null())
                .cloned()
                .or_else(|| cursor.key_default(k))
                .map(|v| (k.as_str(), v))
        })
        .collect();
    format!("k:{}", json!(fields))
}

/// The item of a list a path element names.
fn find_item<'a>(items: &'a [Value], pe: &str) -> Option<(usize, &'a Value)> {
    if let Some(v) = pe.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        return items.iter().enumerate().find(|(_, i)| **i == want);
    }
    let keys: Map<String, Value> = serde_json::from_str(pe.strip_prefix("k:")?).ok()?;
    items.iter().enumerate().find(|(_, item)| {
        keys.iter().all(|(k, want)| {
            item.get(k)
                .filter(|v| !v.is_null())
                .cloned()
                .or_else(|| super::merge_types::key_default(true, k))
                .as_ref()
                == Some(want)
        })
    })
}

/// The value at a path, if present.
pub(crate) fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |node, pe| match pe.strip_prefix("f:") {
            Some(field) => node.get(field),
            None => find_item(node.as_array()?, pe).map(|(_, item)| item),
        })
}

/// Removes the field or list item at a path, if present.
pub(crate) fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents
        .iter()
        .try_fold(v, |node, pe| match pe.strip_prefix("f:") {
            Some(field) => node.get_mut(field),
            None => {
                let (i, _) = find_item(node.as_array()?, pe)?;
                node.as_array_mut()?.get_mut(i)
            }
        });
    match (parent, last.strip_prefix("f:")) {
        (Some(Value::Object(map)), Some(field)) => {
            map.remove(field);
        }
        (Some(Value::Array(items)), None) => {
            if let Some((i, _)) = find_item(items, last) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// A path as structured-merge-diff prints it in conflicts (`fieldpath/element.go`
/// `PathElement.String`): `.spec.selector`, `[name="app"]`, `[="x"]`.
pub(crate) fn path_string(path: &[String]) -> String {
    path.iter()
        .map(|pe| {
            if let Some(f) = pe.strip_prefix("f:") {
                format!(".{f}")
            } else if let Some(v) = pe.strip_prefix("v:") {
                format!("[={v}]")
            } else {
                let keys: Map<String, Value> = pe
                    .strip_prefix("k:")
                    .and_then(|k| serde_json::from_str(k).ok())
                    .unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
        })
        .collect()
}

/// Whether `path` is `prefix` or below it.
pub(crate) fn under(path: &[String], prefix: &[String]) -> bool {
    path.starts_with(prefix)
}

/// Encodes a field set as `FieldsV1`.
pub(crate) fn encode(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for seg in path {
            node = match node.entry(seg.clone()).or_insert_with(|| json!({})) {
                Value::Object(m) => m,
                _ => break,
            };
        }
    }
    // A member with members below it is marked with ".".
    fn mark(node: &mut Map<String, Value>, path: &mut FieldPath, set: &FieldSet) {
        for (k, v) in node.iter_mut() {
            path.push(k.clone());
            if let Value::Object(m) = v
                && !m.is_empty()
            {
                let member = set.contains(path);
                mark(m, path, set);
                if member {
                    m.insert(".".into(), json!({}));
                }
            }
            path.pop();
        }
    }
    mark(&mut root, &mut Vec::new(), set);
    Value::Object(root)
}

/// Decodes `FieldsV1` (`f:`, `k:`, `v:` and `.`).
pub(crate) fn decode(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: FieldPath, out: &mut FieldSet) {
        let Some(map) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| *k != ".").collect();
        if (children.is_empty() || map.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, c) in children {
            walk(c, child(&path, k.clone()), out);
        }
    }
    let mut out = FieldSet::new();
    walk(v, Vec::new(), &mut out);
    out
}

/// What changed between two values (structured-merge-diff `typed/compare.go`).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Comparison {
    /// Paths only in the new value.
    pub added: FieldSet,
    /// Paths in both whose (leaf) values differ.
    pub modified: FieldSet,
    /// Paths only in the old value.
    pub removed: FieldSet,
}

impl Comparison {
    /// Added and modified paths.
    pub(crate) fn changed(&self) -> FieldSet {
        self.added.union(&self.modified).cloned().collect()
    }
}

/// Compares the user-owned parts (`part`) of two objects.
pub(crate) fn compare(
    old: &Value,
    new: &Value,
    part: Part,
    rt: &ResourceType,
    types: &Types,
) -> Comparison {
    let mut out = Comparison::default();
    let (old, new) = (user_fields(old, part, rt), user_fields(new, part, rt));
    walk_compare(Some(&old), Some(&new), &types.root(), Vec::new(), &mut out);
    out
}

fn walk_compare(
    old: Option<&Value>,
    new: Option<&Value>,
    cursor: &Cursor<'_>,
    path: FieldPath,
    out: &mut Comparison,
) {
    let old = old.filter(|v| !v.is_null());
    let new = new.filter(|v| !v.is_null());
    let (shape, other) = match (old, new) {
        (None, None) => return,
        (Some(v), None) | (None, Some(v)) => (cursor.shape(v), None),
        (Some(a), Some(b)) => (cursor.shape(b), Some(cursor.shape(a))),
    };
    let leaf = |out: &mut Comparison| {
        if path.is_empty() {
            return;
        }
        match (old, new) {
            (None, Some(_)) => out.added.insert(path.clone()),
            (Some(_), None) => out.removed.insert(path.clone()),
            (Some(a), Some(b)) if a != b => out.modified.insert(path.clone()),
            _ => false,
        };
    };
    if other.is_some_and(|o| o != shape) {
        return leaf(out);
    }
    let empty = Map::new();
    fn as_list(v: Option<&Value>) -> &[Value] {
        v.and_then(Value::as_array).map_or(&[][..], Vec::as_slice)
    }
    match shape {
        Shape::Map { atomic: false } => {
            let a = old.and_then(Value::as_object).unwrap_or(&empty);
            let b = new.and_then(Value::as_object).unwrap_or(&empty);
            if a.is_empty() && b.is_empty() {
                return leaf(out);
            }
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                walk_compare(
                    a.get(k),
                    b.get(k),
                    &cursor.field(k),
                    child(&path, format!("f:{k}")),
                    out,
                );
            }
        }
        Shape::List(ListType::Set) => {
            let (a, b) = (as_list(old), as_list(new));
            for item in a.iter().filter(|i| !b.contains(i)) {
                out.removed.insert(child(&path, value_pe(item)));
            }
            for item in b.iter().filter(|i| !a.contains(i)) {
                out.added.insert(child(&path, value_pe(item)));
            }
        }
        Shape::List(ListType::Map(keys)) => {
            let ic = cursor.item();
            let index = |items: &[Value]| -> BTreeMap<String, Value> {
                items
                    .iter()
                    .map(|i| (key_pe(i, &keys, &ic), i.clone()))
                    .collect()
            };
            let (a, b) = (index(as_list(old)), index(as_list(new)));
            let pes: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for pe in pes {
                let p = child(&path, pe.clone());
                match (a.get(pe), b.get(pe)) {
                    (None, Some(_)) => out.added.insert(p.clone()),
                    (Some(_), None) => out.removed.insert(p.clone()),
                    _ => false,
                };
                walk_compare(a.get(pe), b.get(pe), &ic, p, out);
            }
        }
        _ => leaf(out),
    }
}

/// Merges an applied configuration into the live object (structured-merge-diff
/// `typed/merge.go` with the apply rule: the configuration wins): granular maps key by key
/// (`null` removes), `map` lists item by key (shared items in the configuration's order,
/// the live object's other items kept in place), `set` lists by value; anything atomic is
/// replaced.
pub(crate) fn merge(live: &Value, config: &Value, cursor: &Cursor<'_>) -> Value {
    match (cursor.shape(config), live, config) {
        (Shape::Map { atomic: false }, Value::Object(l), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                let fc = cursor.field(k);
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, &fc),
                    None => merge(&empty_like(cv), cv, &fc),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::List(ListType::Set), Value::Array(l), Value::Array(c)) => {
            let mut out = l.clone();
            out.extend(c.iter().filter(|i| !l.contains(i)).cloned());
            Value::Array(out)
        }
        (Shape::List(ListType::Map(keys)), Value::Array(l), Value::Array(c)) => {
            Value::Array(merge_keyed(l, c, &keys, &cursor.item()))
        }
        (Shape::Map { atomic: false }, _, Value::Object(_)) => merge(&json!({}), config, cursor),
        _ => config.clone(),
    }
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::Object(_) => json!({}),
        Value::Array(_) => json!([]),
        other => other.clone(),
    }
}

/// The order of structured-merge-diff `typed/merge.go` `visitListItems`: walking both lists,
/// live-only items are taken where they stand, shared items in the configuration's order,
/// new items where the configuration has them.
fn merge_keyed(live: &[Value], config: &[Value], keys: &[String], ic: &Cursor<'_>) -> Vec<Value> {
    let lpes: Vec<String> = live.iter().map(|i| key_pe(i, keys, ic)).collect();
    let rpes: Vec<String> = config.iter().map(|i| key_pe(i, keys, ic)).collect();
    let in_r = |pe: &String| rpes.contains(pe);
    let shared: Vec<&String> = rpes.iter().filter(|pe| lpes.contains(pe)).collect();
    let mut next_shared = shared.iter();
    let mut next = next_shared.next();
    let mut merged_r: BTreeSet<&String> = BTreeSet::new();
    let live_of = |pe: &String| lpes.iter().position(|p| p == pe).and_then(|i| live.get(i));
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut li, mut ri) = (0, 0);
    while li < live.len() || ri < config.len() {
        if let (Some(lpe), Some(rpe)) = (lpes.get(li), rpes.get(ri)) {
            if lpe == rpe {
                merged_r.insert(rpe);
                if let (Some(l), Some(r)) = (live.get(li), config.get(ri)) {
                    out.push(merge(l, r, ic));
                }
                li += 1;
                ri += 1;
                next = next_shared.next();
                continue;
            }
            if in_r(lpe) && next.is_some_and(|n| *n != lpe) {
                li += 1;
                continue;
            }
        }
        if let Some(lpe) = lpes.get(li) {
            if !in_r(lpe) {
                if let Some(l) = live.get(li) {
                    out.push(l.clone());
                }
                li += 1;
                continue;
            } else if merged_r.contains(lpe) {
                li += 1;
            }
        }
        if let (Some(rpe), Some(r)) = (rpes.get(ri), config.get(ri)) {
            merged_r.insert(rpe);
            out.push(match live_of(rpe) {
                Some(l) => merge(l, r, ic),
                None => merge(&empty_like(r), r, ic),
            });
            ri += 1;
            if next.is_some_and(|n| *n == rpe) {
                next = next_shared.next();
            }
        }
    }
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

/// Drops the paths at or below any of `removed` from a set.
pub(crate) fn drop_removed(set: &mut FieldSet, removed: &FieldSet) {
    set.retain(|p| !removed.iter().any(|r| under(p, r)));
}

/// Records an `Update` by `manager` that turned `old` into `new` (structured-merge-diff
/// `merge/update.go` `Updater.Update`): every other manager loses the fields that were added
/// or modified (updates always force) and the removed ones; the manager's `Update` entry
/// gains the added and modified fields.
pub(crate) fn record_update(
    entries: &mut Vec<Entry>,
    old: &Value,
    new: &Value,
    manager: &str,
    part: Part,
    rt: &ResourceType,
    types: &Types,
) {
    let cmp = compare(old, new, part, rt, types);
    let changed = cmp.changed();
    if changed.is_empty() && cmp.removed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        e.fields.retain(|p| !changed.contains(p));
        drop_removed(&mut e.fields, &cmp.removed);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn svc_types() -> (ResourceType, Types) {
        let rt = ResourceType::new("", "v1", "Service", "services", true, true);
        let types = Types::new(&rt, None);
        (rt, types)
    }

    fn path(parts: &[&str]) -> FieldPath {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    /// structured-merge-diff fieldpath/serialize.go: a member with members below it carries
    /// `"."`; a leaf member is `{}`.
    #[test]
    fn fields_v1_round_trips_with_item_markers() {
        let item = r#"k:{"name":"app"}"#;
        let set: FieldSet = [
            path(&["f:spec", "f:containers", item]),
            path(&["f:spec", "f:containers", item, "f:image"]),
            path(&["f:metadata", "f:finalizers", r#"v:"a""#]),
        ]
        .into();
        let encoded = encode(&set);
        assert_eq!(
            encoded,
            json!({
                "f:spec": {"f:containers": {item: {".": {}, "f:image": {}}}},
                "f:metadata": {"f:finalizers": {"v:\"a\"": {}}},
            })
        );
        assert_eq!(decode(&encoded), set);
    }

    /// structured-merge-diff fieldpath/element.go `PathElement.String`.
    #[test]
    fn paths_print_as_in_conflicts() {
        let p = path(&[
            "f:spec",
            "f:ports",
            r#"k:{"port":80,"protocol":"TCP"}"#,
            "f:name",
        ]);
        assert_eq!(
            path_string(&p),
            r#".spec.ports[port=80,protocol="TCP"].name"#
        );
        assert_eq!(path_string(&path(&["f:x", r#"v:"a""#])), r#".x[="a"]"#);
    }

    #[test]
    fn an_atomic_map_compares_as_one_value_and_a_granular_one_by_key() {
        let (rt, types) = svc_types();
        let old = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"selector": {"app": "web"}}});
        let new = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"selector": {"app": "web", "h": "x"}}});
        let cmp = compare(&old, &new, Part::Main, &rt, &types);
        assert_eq!(
            cmp.modified,
            [path(&["f:spec", "f:selector"])].into_iter().collect()
        );
        assert_eq!(
            cmp.added,
            [path(&["f:metadata", "f:labels", "f:b"])]
                .into_iter()
                .collect()
        );
        assert!(cmp.removed.is_empty());
        let owned = field_set(&new, Part::Main, &rt, &types);
        assert!(owned.contains(&path(&["f:spec", "f:selector"])));
        assert!(!owned.contains(&path(&["f:spec", "f:selector", "f:app"])));
    }

    /// structured-merge-diff typed/merge.go `visitListItems` ordering.
    #[test]
    fn keyed_lists_merge_in_structured_merge_diff_order() {
        let (_, types) = svc_types();
        let ports = types.root().field("spec").field("ports");
        let p = |n: i64| json!({"port": n, "name": format!("p{n}")});
        let merged = merge(&json!([p(1), p(2)]), &json!([p(3), p(1)]), &ports);
        let order: Vec<i64> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["port"].as_i64().unwrap())
            .collect();
        assert_eq!(order, [3, 1, 2]);
        let merged = merge(&json!([p(1), p(2)]), &json!([p(2), p(1)]), &ports);
        let order: Vec<i64> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["port"].as_i64().unwrap())
            .collect();
        assert_eq!(order, [2, 1], "shared items follow the configuration");
    }

    #[test]
    fn items_are_found_and_removed_by_key_with_defaults() {
        let mut obj = json!({"spec": {"ports": [{"port": 80}, {"port": 81, "protocol": "UDP"}]}});
        let key = path(&["f:spec", "f:ports", r#"k:{"port":80,"protocol":"TCP"}"#]);
        assert_eq!(value_at(&obj, &key), Some(&json!({"port": 80})));
        remove_at(&mut obj, &key);
        assert_eq!(
            obj["spec"]["ports"],
            json!([{"port": 81, "protocol": "UDP"}])
        );
    }

    /// structured-merge-diff merge/update.go `Updater.Update`: the updater takes what it
    /// adds or modifies from every other manager; removed fields are no one's.
    #[test]
    fn updates_move_changed_fields_and_forget_removed_ones() {
        let (rt, types) = svc_types();
        let old = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let new = json!({"metadata": {"labels": {"a": "9"}}});
        let mut entries = vec![Entry::new(
            "gitops",
            "Apply",
            Part::Main,
            field_set(&old, Part::Main, &rt, &types),
        )];
        record_update(&mut entries, &old, &new, "kubectl", Part::Main, &rt, &types);
        assert_eq!(
            entries.len(),
            1,
            "gitops owns nothing any more: {entries:?}"
        );
        let kubectl = entries.iter().find(|e| e.manager == "kubectl").unwrap();
        assert_eq!(
            kubectl.fields,
            [path(&["f:metadata", "f:labels", "f:a"])]
                .into_iter()
                .collect()
        );
    }
}
