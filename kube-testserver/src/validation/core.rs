//! core/v1 Pods (and pod templates), Services, ConfigMaps and Secrets, after kubernetes
//! `pkg/apis/core/validation/validation.go` (`ValidatePodTemplateSpec`, `ValidatePodSpec`,
//! `validateContainers`, `validateContainerPorts`, `ValidateService`, `validateServicePort`,
//! `ValidateServiceUpdate`, `ValidateConfigMap`, `ValidateSecret`).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::names::{
    config_map_key, dns1123_label, invalid_each, port_name, port_num, validate_annotations,
    validate_labels,
};
use super::{FieldError, Path, int};

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];

/// `ValidatePodTemplateSpec`: template labels, annotations and pod spec.
pub(super) fn validate_pod_template(template: &Value, path: &Path) -> Vec<FieldError> {
    let meta = path.child("metadata");
    let mut errs = validate_labels(&template["metadata"]["labels"], &meta.child("labels"));
    errs.extend(validate_annotations(
        &template["metadata"]["annotations"],
        &meta.child("annotations"),
    ));
    errs.extend(pod_spec(&template["spec"], &path.child("spec")));
    errs
}

/// `ValidatePodCreate` (the spec part).
pub(super) fn validate_pod(object: &Value) -> Vec<FieldError> {
    pod_spec(&object["spec"], &Path::new("spec"))
}

/// `ValidatePodSpec`: containers (and init containers) and the restart policy.
fn pod_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut names = HashSet::new();
    let mut errs = Vec::new();
    let init = spec["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, c) in init.iter().enumerate() {
        errs.extend(container(
            c,
            &path.child("initContainers").index(i),
            &mut names,
        ));
    }
    match spec["containers"].as_array() {
        Some(list) if !list.is_empty() => {
            for (i, c) in list.iter().enumerate() {
                errs.extend(container(c, &path.child("containers").index(i), &mut names));
            }
        }
        _ => errs.push(FieldError::required(&path.child("containers"), "")),
    }
    if let Some(policy) = spec["restartPolicy"].as_str()
        && !["Always", "OnFailure", "Never"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            &path.child("restartPolicy"),
            &json!(policy),
            &["Always", "Never", "OnFailure"],
        ));
    }
    errs
}

/// `validateContainers` / `validateContainerCommon` for one container: name (a unique
/// DNS-1123 label), image (required), pull policy and ports.
fn container(c: &Value, path: &Path, names: &mut HashSet<String>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = c["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        errs.extend(invalid_each(&path.child("name"), name, dns1123_label(name)));
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&path.child("name"), &json!(name)));
        }
    }
    if c["image"].as_str().unwrap_or_default().trim().is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    if let Some(policy) = c["imagePullPolicy"].as_str()
        && !["Always", "IfNotPresent", "Never"].contains(&policy)
    {
        errs.push(FieldError::not_supported(
            &path.child("imagePullPolicy"),
            &json!(policy),
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    let ports = c["ports"].as_array().cloned().unwrap_or_default();
    let mut port_names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.child("ports").index(i);
        if let Some(name) = port["name"].as_str().filter(|n| !n.is_empty()) {
            errs.extend(invalid_each(&p.child("name"), name, port_name(name)));
            if !port_names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(&p.child("name"), &json!(name)));
            }
        }
        match int(&port["containerPort"]) {
            None | Some(0) => errs.push(FieldError::required(&p.child("containerPort"), "")),
            Some(n) => errs.extend(
                port_num(n)
                    .into_iter()
                    .map(|m| FieldError::invalid(&p.child("containerPort"), &json!(n), m)),
            ),
        }
        errs.extend(protocol(&port["protocol"], &p.child("protocol")));
    }
    errs
}

/// A port's protocol (defaulted to TCP when absent).
fn protocol(value: &Value, path: &Path) -> Vec<FieldError> {
    match value.as_str() {
        None => Vec::new(),
        Some(p) if PROTOCOLS.contains(&p) => Vec::new(),
        Some(p) => vec![FieldError::not_supported(path, &json!(p), &PROTOCOLS)],
    }
}

/// `ValidateService` (and `ValidateServiceUpdate` for the cluster IP).
pub(super) fn validate_service(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = &object["spec"];
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let kind = spec["type"].as_str().unwrap_or("ClusterIP");
    const TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&kind) {
        errs.push(FieldError::not_supported(
            &path.child("type"),
            &json!(kind),
            &TYPES,
        ));
    }
    let headless = spec["clusterIP"].as_str() == Some("None");
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && !headless && kind != "ExternalName" {
        errs.push(FieldError::required(&path.child("ports"), ""));
    }
    let mut names = HashSet::new();
    let mut keys = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.child("ports").index(i);
        errs.extend(service_port(port, &p, ports.len() > 1, &mut names));
        let proto = port["protocol"].as_str().unwrap_or("TCP");
        let key = (int(&port["port"]).unwrap_or(0), proto.to_owned());
        if !keys.insert(key.clone()) {
            errs.push(FieldError::duplicate(
                &p,
                &json!({"port": key.0, "protocol": key.1}),
            ));
        }
    }
    errs.extend(validate_labels(&spec["selector"], &path.child("selector")));
    if let Some(old) = old {
        // `ValidateServiceUpdate`: an allocated cluster IP may not change (an empty one on
        // the update is filled from the old object, as the registry's `patchAllocatedValues`
        // does, so it is not a change).
        let old_ip = old["spec"]["clusterIP"].as_str().unwrap_or_default();
        let new_ip = spec["clusterIP"].as_str().unwrap_or_default();
        if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
            errs.push(FieldError::invalid(
                &path.child("clusterIP"),
                &json!(new_ip),
                "field is immutable",
            ));
        }
    }
    errs
}

/// `validateServicePort`.
fn service_port(
    port: &Value,
    path: &Path,
    require_name: bool,
    names: &mut HashSet<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = port["name"].as_str().unwrap_or_default();
    if require_name && name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(invalid_each(&path.child("name"), name, dns1123_label(name)));
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(&path.child("name"), &json!(name)));
        }
    }
    errs.extend(protocol(&port["protocol"], &path.child("protocol")));
    let number = int(&port["port"]).unwrap_or(0);
    errs.extend(
        port_num(number)
            .into_iter()
            .map(|m| FieldError::invalid(&path.child("port"), &json!(number), m)),
    );
    match &port["targetPort"] {
        // Defaulted to `port` when absent or zero (`SetDefaults_Service`).
        Value::Null => {}
        Value::Number(_) => {
            let n = int(&port["targetPort"]).unwrap_or(-1);
            if n != 0 {
                errs.extend(
                    port_num(n)
                        .into_iter()
                        .map(|m| FieldError::invalid(&path.child("targetPort"), &json!(n), m)),
                );
            }
        }
        Value::String(s) if s.is_empty() => {}
        Value::String(s) => errs.extend(invalid_each(&path.child("targetPort"), s, port_name(s))),
        other => errs.push(FieldError::invalid(
            &path.child("targetPort"),
            other,
            "must be an integer or a port name",
        )),
    }
    errs
}

/// Keys of `data` / `binaryData` (`IsConfigMapKey`), none in both.
fn keys(object: &Value, fields: [&str; 2]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = HashSet::new();
    for field in fields {
        let Some(map) = object[field].as_object() else {
            continue;
        };
        for key in map.keys() {
            let p = Path::new(field).key(key);
            errs.extend(invalid_each(&p, key, config_map_key(key)));
            if !seen.insert(key.clone()) {
                errs.push(FieldError::invalid(
                    &Path::new(field),
                    &json!(key),
                    format!("duplicate of key present in {}", fields[0]),
                ));
            }
        }
    }
    errs
}

/// `ValidateConfigMap`: keys of `data` and `binaryData`.
pub(super) fn validate_config_map(object: &Value) -> Vec<FieldError> {
    keys(object, ["data", "binaryData"])
}

/// `ValidateSecret`: keys of `data` (and of `stringData`, which is merged into it).
pub(super) fn validate_secret(object: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in ["data", "stringData"] {
        if let Some(map) = object[field].as_object() {
            for key in map.keys() {
                errs.extend(invalid_each(
                    &Path::new("data").key(key),
                    key,
                    config_map_key(key),
                ));
            }
        }
    }
    errs
}
