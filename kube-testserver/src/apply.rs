//! Server-side apply (`application/apply-patch+yaml`), after structured-merge-diff
//! `merge/update.go` `Updater.Apply` and each field's merge type (see `merge_types`):
//! - the applied configuration is merged into the live object: granular maps key by key,
//!   `map` lists item by key, `set` lists by value, atomic maps, structs and lists replaced
//!   whole (`null` removes);
//! - a field another manager owns that the merge adds or modifies is a 409 Conflict listing
//!   the fields and managers, unless `force=true`, which takes ownership; equal values are
//!   co-owned;
//! - the manager then owns exactly the field set of its configuration; what it owned before
//!   and no longer applies is removed unless another manager owns it or something below it
//!   (whole `map` list items included);
//! - a missing object is created.

use std::sync::Arc;

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::fields::{self, Entry, FieldPath, FieldSet};
use super::merge_types::Types;
use super::resources::ResourceType;
use super::store::{Inner, Owner, Part, meta_mut, meta_str};
use crate::error::Error;

/// Checks (and may prune or default) an object about to be stored, given the live one.
pub(crate) type Check<'a> = dyn Fn(&Inner, Value, Option<&Value>) -> ApiResult<Value> + 'a;

/// One apply request.
pub(crate) struct ApplyRequest<'a> {
    /// The target type.
    pub rt: &'a ResourceType,
    /// Namespace from the path.
    pub ns: Option<&'a str>,
    /// Name from the path.
    pub name: &'a str,
    /// Main resource or status.
    pub part: Part,
    /// The `fieldManager` query parameter.
    pub manager: &'a str,
    /// The `force` query parameter.
    pub force: bool,
    /// Checks (and may prune or default) the object to be stored, given the live one.
    pub check: &'a Check<'a>,
    /// The merge structure of the type.
    pub types: &'a Types,
}

/// Applies `body` and returns the HTTP code (201 when created, 200 otherwise) and object.
pub(crate) fn apply(
    inner: &mut Inner,
    req: &ApplyRequest<'_>,
    body: &Value,
) -> ApiResult<(u16, Value)> {
    let ApplyRequest {
        rt,
        ns,
        name,
        part,
        manager,
        force,
        check,
        types,
    } = *req;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    if let Some(given) = meta_str(body, "name")
        && given != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "kind {kind} does not match {}",
            rt.kind
        )));
    }
    let intent = fields::user_fields(body, part, rt);
    let config_set = fields::field_set(body, part, rt, types);
    let root = types.root();

    let Some(live) = inner.get(rt, ns, name).cloned() else {
        if part == Part::Status {
            return Err(ApiError::not_found(rt, name));
        }
        let mut obj = fields::merge(&json!({}), &intent, &root);
        if let Some(meta) = meta_mut(&mut obj) {
            meta.insert("name".into(), Value::String(name.to_owned()));
        }
        let entries = [Entry::new(manager, "Apply", part, config_set)];
        fields::write_entries(&mut obj, &entries, rt);
        let obj = check(inner, obj, None)?;
        let created = inner.create(rt, ns, obj, false, &Owner::Apply)?;
        return Ok((201, Arc::unwrap_or_clone(created)));
    };

    if let Some(given) = meta_str(body, "resourceVersion").filter(|v| !v.is_empty())
        && Some(given) != meta_str(&live, "resourceVersion")
    {
        return Err(ApiError::conflict(format!(
            "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified",
            rt.plural, rt.group
        )));
    }

    let sub = fields::subresource_name(part);
    let is_own = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;
    let mut entries = fields::read_entries(&live);
    let mut merged = fields::merge(&live, &intent, &root);

    // Conflicts: other managers' fields this apply adds or modifies.
    let changed = fields::compare(&live, &merged, part, rt, types).changed();
    let conflicts: Vec<(&Entry, FieldPath)> = entries
        .iter()
        .filter(|e| !is_own(e))
        .flat_map(|e| e.fields.intersection(&changed).map(move |p| (e, p.clone())))
        .collect();
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts, rt));
        }
        for e in entries.iter_mut().filter(|e| !is_own(e)) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }

    let previous: FieldSet = entries
        .iter()
        .find(|e| is_own(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    match entries.iter_mut().find(|e| is_own(e)) {
        Some(e) if e.fields != config_set => {
            *e = Entry::new(manager, "Apply", part, config_set.clone());
        }
        Some(_) => {}
        None => entries.push(Entry::new(manager, "Apply", part, config_set.clone())),
    }
    // Prune what this manager applied before and no longer applies, unless someone owns
    // it or a field below it (structured-merge-diff `Updater.prune`).
    let owned: FieldSet = entries
        .iter()
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    for p in previous.difference(&config_set) {
        if owned.iter().any(|q| fields::under(q, p)) {
            continue;
        }
        fields::remove_at(&mut merged, p);
        drop_empty_parents(&mut merged, p, &owned, rt.is_builtin());
    }
    // Fields that are gone are no one's.
    let removed = fields::compare(&live, &merged, part, rt, types).removed;
    for e in entries.iter_mut() {
        fields::drop_removed(&mut e.fields, &removed);
    }
    entries.retain(|e| !e.fields.is_empty());
    fields::write_entries(&mut merged, &entries, rt);
    let merged = check(inner, merged, Some(&live))?;
    Ok((
        200,
        Arc::unwrap_or_clone(inner.update(rt, ns, name, merged, part, &Owner::Apply)?),
    ))
}

/// Removes the maps and lists that pruning `path` left empty and no one owns, as a built-in
/// kind's `omitempty` fields (and any object's `metadata`) are not stored empty; top-level
/// fields stay.
fn drop_empty_parents(obj: &mut Value, path: &[String], owned: &FieldSet, builtin: bool) {
    let mut end = path.len().saturating_sub(1);
    while end >= 2 {
        let Some(parent) = path.get(..end) else {
            return;
        };
        let in_meta = parent.first().is_some_and(|f| f == "f:metadata");
        let empty = fields::value_at(obj, parent).is_some_and(|v| {
            v.as_object().is_some_and(serde_json::Map::is_empty)
                || v.as_array().is_some_and(Vec::is_empty)
        });
        if !(builtin || in_meta) || !empty || owned.contains(parent) {
            return;
        }
        fields::remove_at(obj, parent);
        end -= 1;
    }
}

/// The apply conflict error (apiserver `managedfields/internal/conflict.go`): one cause per
/// field, the message naming each manager (`"m"`, `"m" using v1` for an update).
fn conflict_error(conflicts: &[(&Entry, FieldPath)], rt: &ResourceType) -> ApiError {
    let who = |e: &Entry| {
        let mut s = format!("{:?}", e.manager);
        if !e.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", e.subresource));
        }
        if e.operation == "Update" {
            s.push_str(&format!(" using {}", rt.api_version()));
        }
        s
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(e, p)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", who(e)), "field": fields::path_string(p)})
        })
        .collect();
    let message = if let [(e, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            who(e),
            fields::path_string(p)
        )
    } else {
        let mut by_manager: Vec<(String, Vec<String>)> = Vec::new();
        for (e, p) in conflicts {
            let m = who(e);
            match by_manager.iter_mut().find(|(n, _)| *n == m) {
                Some((_, paths)) => paths.push(fields::path_string(p)),
                None => by_manager.push((m, vec![fields::path_string(p)])),
            }
        }
        let parts: Vec<String> = by_manager
            .iter()
            .map(|(m, paths)| format!("conflicts with {m}:\n- {}", paths.join("\n- ")))
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            parts.join("\n")
        )
    };
    ApiError::conflict(message).with_details(json!({"causes": causes}))
}

impl super::ApiServer {
    /// Server-side applies `object` as field manager `manager`, directly (no request is logged
    /// and nothing is validated): seeds an object with another manager's ownership, e.g. one
    /// a GitOps tool applied. Returns the stored object.
    ///
    /// # Errors
    /// [`Error::NotServed`] when the kind is not served, [`Error::Invalid`] when the object
    /// has no name, [`Error::Refused`] with the server's code and message when the apply is
    /// refused (a conflict without `force`).
    pub fn apply_as(&self, manager: &str, object: &Value, force: bool) -> crate::Result<Value> {
        let text = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or_default();
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        let state = self.state();
        let rt = state
            .registry
            .by_kind(api_version, kind)
            .ok_or_else(|| Error::NotServed {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })?;
        let name = meta_str(object, "name")
            .ok_or_else(|| Error::Invalid("the object has no name".into()))?;
        let ns = rt
            .namespaced
            .then(|| meta_str(object, "namespace").unwrap_or("default"));
        let types = Types::new(&rt, state.registry.schema(&rt));
        let check = |_: &Inner, obj: Value, _: Option<&Value>| Ok(obj);
        let req = ApplyRequest {
            rt: &rt,
            ns,
            name,
            part: Part::Main,
            manager,
            force,
            check: &check,
            types: &types,
        };
        let mut inner = state.store.lock();
        apply(&mut inner, &req, object)
            .map(|(_, obj)| obj)
            .map_err(|e| Error::Refused {
                code: e.code,
                message: e.message,
            })
    }
}
