//! Server-side apply (`application/apply-patch+yaml`).
//!
//! The applied object is the manager's whole intent for the part it targets (main
//! resource or `/status`):
//! - fields it sets are merged into the live object (maps key by key, lists atomic,
//!   `null` removes);
//! - fields it owned before but no longer sets are removed, unless another manager
//!   owns them too;
//! - setting a field another manager owns to a different value is a 409 Conflict
//!   listing the fields and managers, unless `force=true`, which takes ownership;
//! - equal values are co-owned;
//! - a missing object is created.

use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::fields::{self, Entry, FieldPath, FieldSet, value_at};
use super::resources::ResourceType;
use super::store::{Inner, Owner, Part, meta_mut, meta_str};

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
    let new_paths = fields::leaf_paths(body, part, rt);

    let Some(live) = inner.get(rt, ns, name).cloned() else {
        if part == Part::Status {
            return Err(ApiError::not_found(rt, name));
        }
        let mut obj = intent;
        if let Some(meta) = meta_mut(&mut obj) {
            meta.insert("name".into(), Value::String(name.to_owned()));
        }
        let entries = [Entry::new(manager, "Apply", part, new_paths)];
        fields::write_entries(&mut obj, &entries, rt);
        let obj = check(inner, obj, None)?;
        return Ok((201, inner.create(rt, ns, obj, false, &Owner::Apply)?));
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
    let mut entries = fields::read_entries(&live);
    let conflicts: Vec<(String, FieldPath)> = entries
        .iter()
        .filter(|e| e.manager != manager && e.subresource == sub)
        .flat_map(|e| {
            new_paths
                .iter()
                .filter(|p| e.fields.iter().any(|q| contends(p, q, &intent, &live)))
                .filter(|p| value_at(&live, p) != value_at(&intent, p))
                .map(|p| (e.manager.clone(), p.clone()))
        })
        .collect();
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts));
        }
        for e in entries.iter_mut().filter(|e| e.manager != manager) {
            let manager = e.manager.clone();
            e.fields.retain(|q| {
                !conflicts
                    .iter()
                    .any(|(m, p)| *m == manager && contends(p, q, &intent, &live))
            });
        }
    }

    let is_own = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == sub;
    let previous: FieldSet = entries
        .iter()
        .find(|e| is_own(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut merged = live.clone();
    // Drop what this manager no longer sets, unless someone else owns it (or a part of
    // it); the merge below then re-creates everything the intent sets.
    for p in previous.difference(&new_paths) {
        let shared = entries
            .iter()
            .any(|e| !is_own(e) && e.fields.iter().any(|q| q.starts_with(p)));
        if !shared {
            fields::remove_at(&mut merged, p);
        }
    }
    json_patch::merge(&mut merged, &intent);

    match entries.iter_mut().find(|e| is_own(e)) {
        Some(e) if e.fields != new_paths => *e = Entry::new(manager, "Apply", part, new_paths),
        Some(_) => {}
        None => entries.push(Entry::new(manager, "Apply", part, new_paths)),
    }
    entries.retain(|e| !e.fields.is_empty());
    fields::write_entries(&mut merged, &entries, rt);
    let merged = check(inner, merged, Some(&live))?;
    Ok((
        200,
        inner.update(rt, ns, name, merged, part, &Owner::Apply)?,
    ))
}

/// Whether my field `mine` and another manager's field `theirs` claim the same value:
/// the same path, or one inside the other where the outer one is an atomic (non-map)
/// value. Owning a map (e.g. `labels: {}`) does not contend with owning its entries.
fn contends(mine: &[String], theirs: &[String], intent: &Value, live: &Value) -> bool {
    let atomic = |v: Option<&Value>| v.is_some_and(|v| !v.is_object());
    mine == theirs
        || (theirs.starts_with(mine) && atomic(value_at(intent, mine)))
        || (mine.starts_with(theirs) && atomic(value_at(live, theirs)))
}

fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let field = |p: &FieldPath| format!(".{}", p.join("."));
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": {}", field(p)))
        .collect();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": field(p)})
        })
        .collect();
    let plural = if conflicts.len() == 1 { "" } else { "s" };
    ApiError::conflict(format!(
        "Apply failed with {} conflict{plural}: {}",
        conflicts.len(),
        lines.join("\n")
    ))
    .with_details(json!({"causes": causes}))
}
