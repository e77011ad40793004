//! `metadata` of every object, after apiserver `pkg/apis/core/validation/objectmeta.go`
//! `ValidateObjectMetaAccessor`: the name (or `generateName`) by the kind's name rule,
//! the namespace (a DNS-1123 label) for namespaced kinds, labels and annotations.

use serde_json::Value;

use super::names::{
    dns1035_label, dns1123_label, dns1123_subdomain, invalid_each, mask_trailing_dash,
    validate_annotations, validate_labels,
};
use super::{FieldError, Path};
use crate::resources::ResourceType;

/// The name rule of a kind: `ValidateServiceName` is `NameIsDNS1035Label`,
/// `ValidateNamespaceName` is `NameIsDNSLabel`; Deployments, ReplicaSets, DaemonSets, Pods,
/// Nodes, ConfigMaps, Secrets, Ingresses, Leases and custom resources use
/// `NameIsDNSSubdomain`.
fn name_rule(rt: &ResourceType) -> fn(&str) -> Vec<String> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Service") => dns1035_label,
        ("", "Namespace") => dns1123_label,
        _ => dns1123_subdomain,
    }
}

/// apiserver `ValidateObjectMetaAccessor`.
pub(super) fn validate_object_meta(rt: &ResourceType, object: &Value) -> Vec<FieldError> {
    let meta = &object["metadata"];
    let path = Path::new("metadata");
    let rule = name_rule(rt);
    let mut errs = Vec::new();
    let name = meta["name"].as_str().unwrap_or_default();
    let generate = meta["generateName"].as_str().unwrap_or_default();
    if !generate.is_empty() {
        errs.extend(invalid_each(
            &path.child("generateName"),
            generate,
            rule(&mask_trailing_dash(generate)),
        ));
    }
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                &path.child("name"),
                "name or generateName is required",
            ));
        }
    } else {
        errs.extend(invalid_each(&path.child("name"), name, rule(name)));
    }
    if rt.namespaced {
        match meta["namespace"].as_str().unwrap_or_default() {
            "" => errs.push(FieldError::required(&path.child("namespace"), "")),
            ns => errs.extend(invalid_each(
                &path.child("namespace"),
                ns,
                dns1123_label(ns),
            )),
        }
    }
    errs.extend(validate_labels(&meta["labels"], &path.child("labels")));
    errs.extend(validate_annotations(
        &meta["annotations"],
        &path.child("annotations"),
    ));
    errs
}
