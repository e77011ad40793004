//! What a write goes through before it is stored, in the API server's order: decoding (a
//! built-in kind's integer fields; a custom resource's unknown fields pruned, or refused
//! with `fieldValidation=Strict`), defaulting of custom resources, validation (422 Invalid)
//! and validating admission hooks.
//!
//! `fieldValidation` (apiserver `pkg/endpoints/handlers`, `create.go`/`update.go`/`patch.go`):
//! `Strict` refuses unknown fields with 400 `strict decoding error: unknown field "<path>"`;
//! `Warn` — what the API server does when the parameter is absent, as kube-rs sends it by
//! default (`PostParams`/`PatchParams::field_validation` is `None`) — prunes them and answers
//! with one `Warning` header per field; `Ignore` prunes them silently.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::admission::{self, AdmissionRequest, Operation};
use super::errors::{ApiError, ApiResult};
use super::resources::{Registry, ResourceType};
use super::store::{Inner, Part, meta_mut, meta_str};
use super::validation;

/// How a write reached the server (the strict-decoding error differs per path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// POST or PUT.
    Body,
    /// JSON, merge or strategic merge patch.
    Patch,
    /// Server-side apply.
    Apply,
}

/// One write to check.
pub(crate) struct Write<'a> {
    /// The target type.
    pub rt: &'a ResourceType,
    /// Namespace from the path.
    pub ns: Option<&'a str>,
    /// Name from the path (updates).
    pub name: Option<&'a str>,
    /// Main resource or status.
    pub part: Part,
    /// How it came.
    pub via: Via,
    /// The request's query parameters.
    pub query: &'a HashMap<String, String>,
}

/// The object as the store will see it: `apiVersion`, `kind`, namespace and name filled in.
fn normalised(w: &Write<'_>, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(w.rt.api_version()));
        map.insert("kind".into(), Value::String(w.rt.kind.clone()));
    }
    if let Some(meta) = meta_mut(&mut obj) {
        if w.rt.namespaced {
            let given = meta
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            if given.is_none() {
                let ns = w.ns.unwrap_or("default").to_owned();
                meta.insert("namespace".into(), Value::String(ns));
            }
        }
        if let Some(name) = w.name {
            meta.insert("name".into(), Value::String(name.to_owned()));
        }
    }
    obj
}

fn strict_error(w: &Write<'_>, unknown: &[String]) -> ApiError {
    match w.via {
        Via::Apply => {
            let fields: Vec<String> = unknown
                .iter()
                .map(|u| format!(".{u}: field not declared in schema"))
                .collect();
            ApiError::bad_request(format!(
                "failed to create typed patch object ({}, Kind={}): {}",
                w.rt.api_version(),
                w.rt.kind,
                fields.join("\n")
            ))
        }
        via => {
            let fields: Vec<String> = unknown
                .iter()
                .map(|u| format!("unknown field \"{u}\""))
                .collect();
            let strict = format!("strict decoding error: {}", fields.join(", "));
            if via == Via::Patch {
                ApiError::bad_request(strict)
            } else {
                validation::decode_error(w.rt, &strict)
            }
        }
    }
}

/// Checks `candidate` (the whole object to store; `old` the live one on updates) and
/// returns it as it is to be stored (pruned, defaulted) with the warnings to send.
pub(crate) fn check(
    registry: &Registry,
    inner: &Inner,
    w: &Write<'_>,
    candidate: Value,
    old: Option<&Value>,
) -> ApiResult<(Value, Vec<String>)> {
    let mut obj = normalised(w, candidate);
    let name = meta_str(&obj, "name")
        .or_else(|| meta_str(&obj, "generateName"))
        .unwrap_or_default()
        .to_owned();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    if let Some(schema) = registry.schema(w.rt) {
        if w.rt.status_subresource
            && w.part == Part::Main
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        let only = (w.part == Part::Status).then_some("status");
        let checked = schema.check(&mut obj, only);
        if !checked.unknown.is_empty() {
            match w.query.get("fieldValidation").map(String::as_str) {
                Some("Strict") => return Err(strict_error(w, &checked.unknown)),
                Some("Ignore") => {}
                _ => warnings.extend(
                    checked
                        .unknown
                        .iter()
                        .map(|u| format!("unknown field \"{u}\"")),
                ),
            }
        }
        errors.extend(checked.errors);
    } else if w.part == Part::Main && w.rt.is_builtin() {
        validation::decode_check(w.rt, &obj)
            .map_err(|detail| validation::decode_error(w.rt, &detail))?;
    }
    if w.part == Part::Main {
        let mut all = validation::validate(w.rt, &obj, old);
        all.extend(errors);
        errors = all;
    }
    if !errors.is_empty() {
        return Err(validation::invalid_error(w.rt, &name, &errors));
    }
    if w.part == Part::Main {
        let hooks = registry.hooks_for(w.rt);
        if !hooks.is_empty() {
            fn key(o: &Value) -> (&str, &str) {
                (
                    meta_str(o, "namespace").unwrap_or_default(),
                    meta_str(o, "name").unwrap_or_default(),
                )
            }
            let me = key(&obj);
            let peers: Vec<Arc<Value>> = if hooks.iter().any(|hook| hook.reads_peers()) {
                inner
                    .objects_of(w.rt, None)
                    .filter(|o| key(o) != me)
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            let request = AdmissionRequest {
                operation: Operation::of(old),
                group: &w.rt.group,
                kind: &w.rt.kind,
                object: &obj,
                old_object: old,
                peers: &peers,
            };
            admission::admit(&hooks, &request)?;
        }
    }
    Ok((obj, warnings))
}

/// `obj` (the object to store; `old` the live one on updates) as the mutating admission hooks
/// leave it, or `None` when none changed it (see [`admission::MutatingHook`]).
pub(crate) fn mutate(
    registry: &Registry,
    inner: &Inner,
    w: &Write<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> ApiResult<Option<Value>> {
    if w.part != Part::Main {
        return Ok(None);
    }
    let hooks = registry.mutators_for(w.rt);
    let mut mutated: Option<Value> = None;
    for hook in hooks {
        let current = mutated.as_ref().unwrap_or(obj);
        let ns = meta_str(current, "namespace").map(str::to_owned);
        let read: Vec<Arc<Value>> = hook
            .reads()
            .and_then(|(api_version, kind)| registry.by_kind(api_version, kind))
            .map(|rt| inner.list(&rt, ns.as_deref()))
            .unwrap_or_default();
        let request = AdmissionRequest {
            operation: Operation::of(old),
            group: &w.rt.group,
            kind: &w.rt.kind,
            object: current,
            old_object: old,
            peers: &[],
        };
        let patch = hook
            .mutate(&request, &read)
            .map_err(|denial| admission::denial_error(hook.name(), denial))?;
        if let Some(patch) = patch {
            let next = super::patch::json(current, &patch).map_err(|e| {
                ApiError::internal(format!(
                    "Internal error occurred: failed calling webhook {:?}: the patch does not \
                     apply: {}",
                    hook.name(),
                    e.message
                ))
            })?;
            mutated = Some(next);
        }
    }
    Ok(mutated)
}
