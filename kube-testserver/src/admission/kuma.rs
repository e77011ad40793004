//! Kuma's validating webhook (`validator.kuma-admission.kuma.io`) for `kuma.io/v1alpha1`
//! MeshHTTPRoutes, after kuma 2.x `pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go`
//! (`validate`, `validateTop`, `validateToRef`, `validateTos`, `validateHostnames`,
//! `validateMatches`, `validatePath`, `validateHeaders`, `validateQueryParams`,
//! `validateBackendRefs`) and `pkg/core/resources/apis/mesh/validators.go`
//! (`ValidateTargetRef`, `disallowedField`, `requiredField`, `validateName`).
//!
//! A refusal is `pkg/plugins/runtime/k8s/webhooks/validation.go`'s
//! `convertValidationErrorOf`: 422 `Invalid`, the violations joined as
//! `<field>: <message>; <field>: <message>`, one cause per violation.

use std::collections::HashSet;

use serde_json::Value;

use super::{AdmissionHook, AdmissionRequest, Denial, details};

/// The namespace whose policies have Kuma's system role (`core_model.PolicyRole`).
const SYSTEM_NAMESPACE: &str = "kuma-system";

/// The `validator.kuma-admission.kuma.io` webhook.
#[derive(Debug, Clone, Copy, Default)]
pub struct KumaValidation;

impl AdmissionHook for KumaValidation {
    fn name(&self) -> &str {
        "validator.kuma-admission.kuma.io"
    }

    fn reads_peers(&self) -> bool {
        false
    }

    fn handles(&self, group: &str, kind: &str) -> bool {
        group == "kuma.io" && kind == "MeshHTTPRoute"
    }

    fn review(&self, request: &AdmissionRequest<'_>) -> Result<(), Denial> {
        let system = request.namespace() == SYSTEM_NAMESPACE;
        let violations = mesh_http_route(&request.object["spec"], system);
        if violations.is_empty() {
            return Ok(());
        }
        let message: Vec<String> = violations
            .iter()
            .map(|(field, m)| format!("{field}: {m}"))
            .collect();
        let mut denial = Denial::new(422, "Invalid", message.join("; "));
        denial.details = Some(details(request.name(), request.kind, &violations));
        Err(denial)
    }
}

type Violations = Vec<(String, String)>;

fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// `ValidateTargetRef` for the kinds this project writes.
fn target_ref(r: &Value, path: &str, supported: &[&str], out: &mut Violations) {
    let mut add = |field: &str, message: String| out.push((format!("{path}.{field}"), message));
    let kind = r["kind"].as_str().unwrap_or_default();
    if kind.is_empty() {
        add("kind", "must be defined".to_owned());
        return;
    }
    if !supported.contains(&kind) {
        add("kind", "value is not supported".to_owned());
        return;
    }
    let name = r["name"].as_str().unwrap_or_default();
    let labels = set(&r["labels"]);
    let disallowed = |field: &str| {
        set(&r[field]).then(|| {
            (
                field.to_owned(),
                format!("must not be set with kind {kind}"),
            )
        })
    };
    let mut extra: Vec<(String, String)> = Vec::new();
    match kind {
        "Mesh" => {
            if !name.is_empty() {
                extra.push((
                    "name".into(),
                    format!("using name with kind {kind} is not yet supported"),
                ));
            }
            extra.extend(
                ["mesh", "tags", "labels", "namespace", "sectionName"]
                    .iter()
                    .filter_map(|f| disallowed(f)),
            );
        }
        "MeshSubset" => {
            extra.extend(
                ["name", "mesh", "labels", "namespace", "sectionName"]
                    .iter()
                    .filter_map(|f| disallowed(f)),
            );
        }
        "MeshService" => {
            extra.extend(name_chars(name));
            extra.extend(
                ["mesh", "tags", "proxyTypes"]
                    .iter()
                    .filter_map(|f| disallowed(f)),
            );
            if !labels && name.is_empty() {
                extra.push(("name".into(), format!("must be set with kind {kind}")));
            }
            if labels && (!name.is_empty() || set(&r["namespace"])) {
                extra.push((
                    "labels".into(),
                    "either labels or name and namespace must be specified".into(),
                ));
            }
        }
        "MeshServiceSubset" | "MeshGateway" => {
            if name.is_empty() {
                extra.push(("name".into(), format!("must be set with kind {kind}")));
            }
            extra.extend(name_chars(name));
            extra.extend(
                ["mesh", "proxyTypes", "labels"]
                    .iter()
                    .filter_map(|f| disallowed(f)),
            );
        }
        "MeshMultiZoneService" | "MeshExternalService" => {
            extra.extend(name_chars(name));
            extra.extend(
                ["mesh", "tags", "proxyTypes"]
                    .iter()
                    .filter_map(|f| disallowed(f)),
            );
        }
        _ => {}
    }
    for (field, message) in extra {
        add(&field, message);
    }
}

/// `validateName`: lower-case alphanumerics, `-`, `.` and `_`.
fn name_chars(name: &str) -> Option<(String, String)> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    (!ok).then(|| {
        (
            "name".to_owned(),
            "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'."
                .to_owned(),
        )
    })
}

/// `validatePath`: `PathPrefix` values are absolute and (except `/`) have no trailing `/`;
/// `Exact` values are absolute.
fn path_match(m: &Value, path: &str, out: &mut Violations) {
    if m.is_null() {
        return;
    }
    let value = m["value"].as_str().unwrap_or_default();
    let at = format!("{path}.value");
    match m["type"].as_str().unwrap_or_default() {
        "PathPrefix" if value != "/" => {
            if value.ends_with('/') {
                out.push((
                    at.clone(),
                    "does not need a trailing slash because only a `/`-separated prefix or an entire path is matched".to_owned(),
                ));
            }
            if !value.starts_with('/') {
                out.push((at, "must be an absolute path".to_owned()));
            }
        }
        "Exact" if !value.starts_with('/') => out.push((at, "must be an absolute path".to_owned())),
        _ => {}
    }
}

/// `validateMatches` (path, query parameters, headers).
fn matches(list: &[Value], path: &str, out: &mut Violations) {
    for (i, m) in list.iter().enumerate() {
        let p = format!("{path}[{i}]");
        path_match(&m["path"], &format!("{p}.path"), out);
        let mut names = HashSet::new();
        for (j, q) in array(&m["queryParams"]).iter().enumerate() {
            let name = q["name"].as_str().unwrap_or_default();
            if !names.insert(name.to_owned()) {
                out.push((
                    format!("{p}.queryParams[{j}].name"),
                    format!("multiple entries for name {name}"),
                ));
            }
        }
        for (j, h) in array(&m["headers"]).iter().enumerate() {
            let kind = h["type"].as_str().unwrap_or("Exact");
            if matches!(kind, "Present" | "Absent") && set(&h["value"]) {
                out.push((
                    format!("{p}.headers[{j}].value"),
                    "must not be defined".to_owned(),
                ));
            }
        }
    }
}

/// `validate`: the top-level `targetRef` and every `to` entry.
fn mesh_http_route(spec: &Value, system: bool) -> Violations {
    let mut out = Vec::new();
    let top = &spec["targetRef"];
    let mut top_kinds = vec![
        "Mesh",
        "MeshSubset",
        "MeshService",
        "MeshServiceSubset",
        "Dataplane",
    ];
    if system {
        top_kinds.push("MeshGateway");
    }
    if !top.is_null() {
        target_ref(top, "spec.targetRef", &top_kinds, &mut out);
    }
    let gateway = top["kind"] == "MeshGateway";
    for (i, to) in array(&spec["to"]).iter().enumerate() {
        let p = format!("spec.to[{i}]");
        let to_kinds: &[&str] = if gateway {
            &["Mesh"]
        } else {
            &["MeshService", "MeshExternalService", "MeshMultiZoneService"]
        };
        target_ref(
            &to["targetRef"],
            &format!("{p}.targetRef"),
            to_kinds,
            &mut out,
        );
        if !gateway && set(&to["hostnames"]) {
            out.push((format!("{p}.hostnames"), "must not be defined".to_owned()));
        }
        for (j, rule) in array(&to["rules"]).iter().enumerate() {
            let r = format!("{p}.rules[{j}]");
            matches(&array(&rule["matches"]), &format!("{r}.matches"), &mut out);
            let refs = array(&rule["default"]["backendRefs"]);
            if refs.is_empty() && gateway {
                out.push((
                    format!("{r}.default.backendRefs"),
                    "must not be empty".to_owned(),
                ));
            }
            for (k, backend) in refs.iter().enumerate() {
                let b = format!("{r}.default.backendRefs[{k}]");
                target_ref(
                    backend,
                    &b,
                    &[
                        "MeshService",
                        "MeshServiceSubset",
                        "MeshExternalService",
                        "MeshMultiZoneService",
                    ],
                    &mut out,
                );
                if backend["kind"] == "MeshMultiZoneService" && backend["port"].is_null() {
                    out.push((
                        format!("{b}.port"),
                        "must be defined with kind MeshMultiZoneService".to_owned(),
                    ));
                }
            }
        }
    }
    out
}
