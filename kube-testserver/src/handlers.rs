//! Verb handlers for resource paths: get, list, watch, create, replace, patch, delete.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::State;
use super::apply::{self, ApplyRequest};
use super::errors::{ApiError, ApiResult};
use super::fields;
use super::http::Body;
use super::merge_types::Types;
use super::patch::{self, PatchKind};
use super::requests::Verb;
use super::routes::Target;
use super::selectors::Selector;
use super::store::{DeleteOptions, Inner, Owner, Part, meta_mut, meta_str};
use super::watch::{self, WatchSpec};
use super::writes::{self, Via, Write};

/// A handler's answer.
pub(crate) enum Reply {
    /// A JSON document with an HTTP code.
    Json(u16, Value),
    /// A JSON document with an HTTP code and `Warning` headers.
    Warned(u16, Value, Vec<String>),
    /// A watch stream (HTTP 200).
    Stream(Body),
}

/// Everything a handler needs from the request.
pub(crate) struct Call<'a> {
    /// The classified verb.
    pub verb: Verb,
    /// The parsed resource path.
    pub target: &'a Target,
    /// Decoded query parameters.
    pub query: &'a HashMap<String, String>,
    /// `Content-Type` header (empty if absent).
    pub content_type: &'a str,
    /// Field manager for non-apply writes (`fieldManager` or derived from the user agent).
    pub manager: &'a str,
    /// Request body.
    pub body: &'a [u8],
}

/// Dispatches a resource request.
pub(crate) fn handle(state: &Arc<State>, call: &Call<'_>) -> ApiResult<Reply> {
    let t = call.target;
    let name = t.name.as_deref();
    match (call.verb, name) {
        (Verb::Get, Some(name)) => get(state, t, name),
        (Verb::List, None) => list(state, call),
        (Verb::Watch, None) => watch(state, call),
        (Verb::Create, None) if !t.rt.namespaced || t.ns.is_some() => create(state, call),
        (Verb::Update, Some(name)) => replace(state, call, name),
        (Verb::Patch, Some(name)) => patch(state, call, name),
        (Verb::Delete, Some(name)) => delete(state, call, name),
        (Verb::Delete, None) => delete_collection(state, call),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({:?})",
            call.verb
        ))),
    }
}

fn part(t: &Target) -> Part {
    if t.status { Part::Status } else { Part::Main }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })?;
    if value.is_object() || value.is_array() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ))
    }
}

fn require_object(value: Value) -> ApiResult<Value> {
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ))
    }
}

fn get(state: &State, t: &Target, name: &str) -> ApiResult<Reply> {
    let inner = state.store.lock();
    let obj = inner
        .get(&t.rt, t.ns.as_deref(), name)
        .ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    Ok(Reply::Json(200, obj.clone()))
}

fn selector(query: &HashMap<String, String>) -> ApiResult<Selector> {
    Selector::parse(
        query.get("labelSelector").map(String::as_str),
        query.get("fieldSelector").map(String::as_str),
    )
}

fn list_doc(t: &Target, rv: u64, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", t.rt.kind),
        "apiVersion": t.rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn list(state: &State, call: &Call<'_>) -> ApiResult<Reply> {
    let t = call.target;
    let selector = selector(call.query)?;
    let inner = state.store.lock();
    let items = inner
        .objects_of(&t.rt, t.ns.as_deref())
        .filter(|o| selector.matches(o))
        .map(|o| Value::clone(o))
        .collect();
    Ok(Reply::Json(200, list_doc(t, inner.rv(), items)))
}

fn watch(state: &Arc<State>, call: &Call<'_>) -> ApiResult<Reply> {
    let q = call.query;
    let t = call.target;
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let initial = flag("sendInitialEvents");
    let from = match q.get("resourceVersion").map(String::as_str) {
        _ if initial => None,
        None | Some("" | "0") => None,
        Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {rv:?}: not a number"))
        })?),
    };
    let timeout = match q.get("timeoutSeconds") {
        Some(s) => Some(Duration::from_secs(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {s:?}"))
        })?)),
        None => None,
    };
    let spec = WatchSpec {
        rt: t.rt.clone(),
        ns: t.ns.clone(),
        selector: selector(q)?,
        from,
        initial_end_bookmark: initial,
        bookmarks: flag("allowWatchBookmarks"),
        timeout,
    };
    Ok(Reply::Stream(watch::start(Arc::clone(state), spec)))
}

/// The write description of a call.
fn write<'a>(call: &'a Call<'a>, name: Option<&'a str>, via: Via) -> Write<'a> {
    let t = call.target;
    Write {
        rt: &t.rt,
        ns: t.ns.as_deref(),
        name,
        part: part(t),
        via,
        query: call.query,
    }
}

/// A JSON reply, with warnings when there are some.
fn reply(code: u16, value: Value, warnings: Vec<String>) -> Reply {
    if warnings.is_empty() {
        Reply::Json(code, value)
    } else {
        Reply::Warned(code, value, warnings)
    }
}

/// The merge structure of a call's type.
fn types(state: &State, t: &Target) -> Types {
    Types::new(&t.rt, state.registry.schema(&t.rt))
}

/// Whether the call is a `dryRun=All` write (apiserver `metav1` `ValidateDryRun`: `All` is
/// the only value; anything else is 422 Invalid).
fn dry_run(call: &Call<'_>, options: &str) -> ApiResult<bool> {
    match call.query.get("dryRun").map(String::as_str) {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!(
            "{options}.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: \
             []string{{{other:?}}}: supported values: \"All\""
        ))),
    }
}

/// Runs a write against the store, or as a dry run that stores nothing
/// (apiserver `registry/generic/registry/dryrun.go`: the object is returned as it would be
/// stored, a created one without a resourceVersion, an updated one with the live one's).
fn run_write<T>(
    inner: &mut Inner,
    dry: bool,
    f: impl FnOnce(&mut Inner) -> ApiResult<T>,
) -> ApiResult<T> {
    if dry { inner.dry_run(f) } else { f(inner) }
}

/// Fixes the resourceVersion of a dry run's answer: the live one's, or none on create.
fn dry_rv(mut obj: Value, live_rv: Option<&str>) -> Value {
    if let Some(meta) = meta_mut(&mut obj) {
        match live_rv {
            Some(rv) => meta.insert("resourceVersion".into(), Value::String(rv.to_owned())),
            None => meta.remove("resourceVersion"),
        };
    }
    obj
}

/// `obj` (checked, its managed fields recorded) as the mutating admission hooks leave it,
/// checked again when they changed it; the fields they set are no manager's.
fn admitted(
    state: &State,
    inner: &Inner,
    call: &Call<'_>,
    live: Option<&Value>,
    obj: Value,
    warnings: Vec<String>,
) -> ApiResult<(Value, Vec<String>)> {
    let via = if live.is_some() {
        Via::Patch
    } else {
        Via::Body
    };
    let w = write(call, meta_str(&obj, "name"), via);
    match writes::mutate(&state.registry, inner, &w, &obj, live)? {
        Some(mutated) => {
            let (checked, more) = writes::check(&state.registry, inner, &w, mutated, live)?;
            Ok((checked, warnings.into_iter().chain(more).collect()))
        }
        None => Ok((obj, warnings)),
    }
}

/// `obj` with the managed fields an `Update` by the call's manager leaves (structured-merge-
/// diff `Updater.Update`, the manager named by `fieldManager` or, without one, by the user
/// agent as apiserver `endpoints/handlers/rest.go` `prefixFromUserAgent` derives it).
fn with_update_owner(
    call: &Call<'_>,
    types: &Types,
    live: Option<&Value>,
    mut obj: Value,
) -> Value {
    let t = call.target;
    let mut entries = live.map(fields::read_entries).unwrap_or_default();
    fields::record_update(
        &mut entries,
        live.unwrap_or(&Value::Null),
        &obj,
        call.manager,
        part(t),
        &t.rt,
        types,
    );
    fields::write_entries(&mut obj, &entries, &t.rt);
    obj
}

fn create(state: &State, call: &Call<'_>) -> ApiResult<Reply> {
    let t = call.target;
    let dry = dry_run(call, "CreateOptions")?;
    let body = require_object(parse_body(call.body)?)?;
    let types = types(state, t);
    let mut inner = state.store.lock();
    let (body, warnings) = writes::check(
        &state.registry,
        &inner,
        &write(call, None, Via::Body),
        body,
        None,
    )?;
    let body = with_update_owner(call, &types, None, body);
    let (body, warnings) = admitted(state, &inner, call, None, body, warnings)?;
    let created = run_write(&mut inner, dry, |inner| {
        inner
            .create(&t.rt, t.ns.as_deref(), body, false, &Owner::Apply)
            .map(Arc::unwrap_or_clone)
    })?;
    let created = if dry { dry_rv(created, None) } else { created };
    Ok(reply(201, created, warnings))
}

fn replace(state: &State, call: &Call<'_>, name: &str) -> ApiResult<Reply> {
    let t = call.target;
    let dry = dry_run(call, "UpdateOptions")?;
    let body = require_object(parse_body(call.body)?)?;
    let types = types(state, t);
    let mut inner = state.store.lock();
    let live = inner
        .get(&t.rt, t.ns.as_deref(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    let (body, warnings) = writes::check(
        &state.registry,
        &inner,
        &write(call, Some(name), Via::Body),
        status_of_part(t, body, &live),
        Some(&live),
    )?;
    let body = with_update_owner(call, &types, Some(&live), body);
    let (body, warnings) = admitted(state, &inner, call, Some(&live), body, warnings)?;
    let updated = run_write(&mut inner, dry, |inner| {
        inner
            .update(&t.rt, t.ns.as_deref(), name, body, part(t), &Owner::Apply)
            .map(Arc::unwrap_or_clone)
    })?;
    Ok(reply(200, finish(updated, dry, &live), warnings))
}

/// A dry run's answer carries the live resourceVersion.
fn finish(obj: Value, dry: bool, live: &Value) -> Value {
    if dry {
        dry_rv(obj, meta_str(live, "resourceVersion"))
    } else {
        obj
    }
}

/// For a `/status` write, the live object with the written status (what is validated).
fn status_of_part(t: &Target, candidate: Value, live: &Value) -> Value {
    if !t.status {
        return candidate;
    }
    let mut next = live.clone();
    if let (Some(map), Some(status)) = (next.as_object_mut(), candidate.get("status")) {
        map.insert("status".into(), status.clone());
    }
    if let (Some(map), Some(rv)) = (
        next.get_mut("metadata").and_then(Value::as_object_mut),
        candidate["metadata"].get("resourceVersion"),
    ) {
        map.insert("resourceVersion".into(), rv.clone());
    }
    next
}

fn patch(state: &State, call: &Call<'_>, name: &str) -> ApiResult<Reply> {
    let t = call.target;
    let kind = PatchKind::from_content_type(call.content_type)?;
    if kind == PatchKind::Strategic && !t.rt.is_builtin() {
        // apiextensions-apiserver serves custom resources without strategic merge patch:
        // the 415 lists the patch types it accepts (kubernetes/kubernetes#97423).
        return Err(ApiError::unsupported_media(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let dry = dry_run(call, "PatchOptions")?;
    let body = parse_body(call.body).map_err(|e| match kind {
        PatchKind::Apply => ApiError::bad_request(format!(
            "{}; this test server accepts apply bodies as JSON only",
            e.message
        )),
        _ => e,
    })?;
    let types = types(state, t);
    let mut inner = state.store.lock();
    if kind == PatchKind::Apply {
        let manager = call
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is \
                 required for apply patch",
                )
            })?;
        let live_rv = inner
            .get(&t.rt, t.ns.as_deref(), name)
            .and_then(|l| meta_str(l, "resourceVersion").map(str::to_owned));
        let warnings = std::cell::RefCell::new(Vec::new());
        let w = write(call, Some(name), Via::Apply);
        let check = |inner: &Inner, candidate: Value, old: Option<&Value>| {
            // The managed fields are recorded already: what the mutating hooks set is no
            // one's.
            let candidate =
                writes::mutate(&state.registry, inner, &w, &candidate, old)?.unwrap_or(candidate);
            let (obj, found) = writes::check(&state.registry, inner, &w, candidate, old)?;
            warnings.borrow_mut().extend(found);
            Ok(obj)
        };
        let req = ApplyRequest {
            rt: &t.rt,
            ns: t.ns.as_deref(),
            name,
            part: part(t),
            manager,
            force: call.query.get("force").is_some_and(|v| v == "true"),
            check: &check,
            types: &types,
        };
        let body = require_object(body)?;
        let (code, obj) = run_write(&mut inner, dry, |inner| apply::apply(inner, &req, &body))?;
        let obj = if dry {
            dry_rv(obj, live_rv.as_deref())
        } else {
            obj
        };
        return Ok(reply(code, obj, warnings.into_inner()));
    }
    let live = inner
        .get(&t.rt, t.ns.as_deref(), name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    let patched = match kind {
        PatchKind::Merge => patch::merge(&live, &require_object(body)?),
        PatchKind::Json => patch::json(&live, &body)?,
        PatchKind::Strategic | PatchKind::Apply => {
            patch::strategic(&live, &require_object(body)?, &types.root())
        }
    };
    let (patched, warnings) = writes::check(
        &state.registry,
        &inner,
        &write(call, Some(name), Via::Patch),
        patched,
        Some(&live),
    )?;
    let patched = with_update_owner(call, &types, Some(&live), patched);
    let (patched, warnings) = admitted(state, &inner, call, Some(&live), patched, warnings)?;
    let updated = run_write(&mut inner, dry, |inner| {
        inner
            .update(
                &t.rt,
                t.ns.as_deref(),
                name,
                patched,
                part(t),
                &Owner::Apply,
            )
            .map(Arc::unwrap_or_clone)
    })?;
    Ok(reply(200, finish(updated, dry, &live), warnings))
}

/// Whether an optional `DeleteOptions` body asks for `dryRun: ["All"]` (clients such as
/// kube-rs send it there rather than in the query).
fn delete_dry_run(body: &[u8]) -> ApiResult<bool> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(false);
    }
    let options = parse_body(body)?;
    match options.get("dryRun").and_then(Value::as_array) {
        None => Ok(false),
        Some(values) if values.iter().all(|v| v == "All") => Ok(!values.is_empty()),
        Some(values) => Err(ApiError::invalid(format!(
            "DeleteOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: {values:?}: \
             supported values: \"All\""
        ))),
    }
}

fn delete(state: &State, call: &Call<'_>, name: &str) -> ApiResult<Reply> {
    let t = call.target;
    if t.status {
        return Err(ApiError::method_not_allowed(
            "DELETE is not allowed on the status subresource",
        ));
    }
    let options = DeleteOptions::parse(call.body, call.query)?;
    let dry = dry_run(call, "DeleteOptions")? || delete_dry_run(call.body)?;
    let mut inner = state.store.lock();
    let live_rv = inner
        .get(&t.rt, t.ns.as_deref(), name)
        .and_then(|l| meta_str(l, "resourceVersion").map(str::to_owned));
    let deleted = run_write(&mut inner, dry, |inner| {
        inner
            .delete_with(&t.rt, t.ns.as_deref(), name, &options)
            .map(Arc::unwrap_or_clone)
    })?;
    let deleted = if dry {
        dry_rv(deleted, live_rv.as_deref())
    } else {
        deleted
    };
    Ok(Reply::Json(200, deleted))
}

fn delete_collection(state: &State, call: &Call<'_>) -> ApiResult<Reply> {
    let t = call.target;
    let selector = selector(call.query)?;
    let options = DeleteOptions {
        precondition_rv: None,
        precondition_uid: None,
        ..DeleteOptions::parse(call.body, call.query)?
    };
    let dry = dry_run(call, "DeleteOptions")? || delete_dry_run(call.body)?;
    let mut inner = state.store.lock();
    let deleted = run_write(&mut inner, dry, |inner| {
        let mut deleted = Vec::new();
        for obj in inner
            .list(&t.rt, t.ns.as_deref())
            .into_iter()
            .filter(|o| selector.matches(o))
        {
            let ns = meta_str(&obj, "namespace").map(str::to_owned);
            let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
            let gone = inner.delete_with(&t.rt, ns.as_deref(), &name, &options)?;
            deleted.push(Arc::unwrap_or_clone(gone));
        }
        Ok(deleted)
    })?;
    Ok(Reply::Json(200, list_doc(t, inner.rv(), deleted)))
}
