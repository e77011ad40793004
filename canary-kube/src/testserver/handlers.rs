//! Verb handlers for resource paths: get, list, watch, create, replace, patch, delete.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::State;
use super::apply::{self, ApplyRequest};
use super::errors::{ApiError, ApiResult};
use super::http::Body;
use super::patch::{self, PatchKind};
use super::requests::Verb;
use super::routes::Target;
use super::selectors::Selector;
use super::store::{DeleteOptions, Owner, Part};
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
    if call.verb.is_write() && call.query.contains_key("dryRun") {
        return Err(ApiError::bad_request(
            "dryRun is not supported by the test server",
        ));
    }
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
        .list(&t.rt, t.ns.as_deref())
        .into_iter()
        .filter(|o| selector.matches(o))
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

fn create(state: &State, call: &Call<'_>) -> ApiResult<Reply> {
    let t = call.target;
    let body = require_object(parse_body(call.body)?)?;
    let owner = Owner::Update(call.manager.to_owned());
    let mut inner = state.store.lock();
    let (body, warnings) = writes::check(
        &state.registry,
        &inner,
        &write(call, None, Via::Body),
        body,
        None,
    )?;
    let created = inner.create(&t.rt, t.ns.as_deref(), body, false, &owner)?;
    Ok(reply(201, created, warnings))
}

fn replace(state: &State, call: &Call<'_>, name: &str) -> ApiResult<Reply> {
    let t = call.target;
    let body = require_object(parse_body(call.body)?)?;
    let owner = Owner::Update(call.manager.to_owned());
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
    let updated = inner.update(&t.rt, t.ns.as_deref(), name, body, part(t), &owner)?;
    Ok(reply(200, updated, warnings))
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
    let body = parse_body(call.body).map_err(|e| match kind {
        PatchKind::Apply => ApiError::bad_request(format!(
            "{}; this test server accepts apply bodies as JSON only",
            e.message
        )),
        _ => e,
    })?;
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
        let warnings = std::cell::RefCell::new(Vec::new());
        let w = write(call, Some(name), Via::Apply);
        let check = |inner: &super::store::Inner, candidate: Value, old: Option<&Value>| {
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
        };
        let (code, obj) = apply::apply(&mut inner, &req, &require_object(body)?)?;
        return Ok(reply(code, obj, warnings.into_inner()));
    }
    let live = inner
        .get(&t.rt, t.ns.as_deref(), name)
        .ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    let patched = match kind {
        PatchKind::Merge => patch::merge(live, &require_object(body)?),
        PatchKind::Json => patch::json(live, &body)?,
        PatchKind::Strategic if t.rt.is_builtin() => patch::strategic(live, &require_object(body)?),
        PatchKind::Strategic | PatchKind::Apply => {
            return Err(ApiError::unsupported_media(format!(
                "strategic merge patch is not supported for {}; use a merge patch or server-side apply",
                t.rt.kind
            )));
        }
    };
    let live = live.clone();
    let (patched, warnings) = writes::check(
        &state.registry,
        &inner,
        &write(call, Some(name), Via::Patch),
        patched,
        Some(&live),
    )?;
    let owner = Owner::Update(call.manager.to_owned());
    let updated = inner.update(&t.rt, t.ns.as_deref(), name, patched, part(t), &owner)?;
    Ok(reply(200, updated, warnings))
}

fn delete(state: &State, call: &Call<'_>, name: &str) -> ApiResult<Reply> {
    let t = call.target;
    if t.status {
        return Err(ApiError::method_not_allowed(
            "DELETE is not allowed on the status subresource",
        ));
    }
    let options = DeleteOptions::parse(call.body, call.query)?;
    let deleted = state
        .store
        .lock()
        .delete_with(&t.rt, t.ns.as_deref(), name, &options)?;
    Ok(Reply::Json(200, deleted))
}

fn delete_collection(state: &State, call: &Call<'_>) -> ApiResult<Reply> {
    let t = call.target;
    let selector = selector(call.query)?;
    let options = DeleteOptions {
        precondition_rv: None,
        ..DeleteOptions::parse(call.body, call.query)?
    };
    let mut inner = state.store.lock();
    let mut deleted = Vec::new();
    for obj in inner
        .list(&t.rt, t.ns.as_deref())
        .into_iter()
        .filter(|o| selector.matches(o))
    {
        let ns = super::store::meta_str(&obj, "namespace").map(str::to_owned);
        let name = super::store::meta_str(&obj, "name")
            .unwrap_or_default()
            .to_owned();
        deleted.push(inner.delete_with(&t.rt, ns.as_deref(), &name, &options)?);
    }
    Ok(Reply::Json(200, list_doc(t, inner.rv(), deleted)))
}
