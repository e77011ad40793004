//! `networking.k8s.io/v1` Ingresses, after kubernetes `pkg/apis/networking/validation/validation.go`
//! (`ValidateIngressCreate`, `ValidateIngressSpec`, `validateIngressRules`,
//! `validateHTTPIngressRuleValue`, `validateHTTPIngressPath`, `validateIngressBackend`,
//! `validateIngressTLS`).

use serde_json::{Value, json};

use super::names::{
    dns1035_label, dns1123_subdomain, invalid_each, is_ip, port_name, port_num,
    wildcard_dns1123_subdomain,
};
use super::{FieldError, Path, int};

const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: [&str; 2] = ["/..", "/."];
const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// `ValidateIngressCreate` / `ValidateIngressUpdate`.
pub(super) fn validate_ingress(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = &object["spec"];
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() && spec["defaultBackend"].is_null() {
        errs.push(FieldError::invalid(
            &path.child("rules"),
            &spec["rules"],
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if !spec["defaultBackend"].is_null() {
        errs.extend(backend(
            &spec["defaultBackend"],
            &path.child("defaultBackend"),
        ));
    }
    for (i, rule) in rules.iter().enumerate() {
        errs.extend(ingress_rule(rule, &path.child("rules").index(i)));
    }
    let tls = spec["tls"].as_array().cloned().unwrap_or_default();
    for (i, entry) in tls.iter().enumerate() {
        let hosts = entry["hosts"].as_array().cloned().unwrap_or_default();
        for (j, host) in hosts.iter().enumerate() {
            let host = host.as_str().unwrap_or_default();
            let p = path.child("tls").index(i).child("hosts").index(j);
            errs.extend(host_errors(host, &p));
        }
    }
    if let Some(class) = spec["ingressClassName"].as_str() {
        errs.extend(invalid_each(
            &path.child("ingressClassName"),
            class,
            dns1123_subdomain(class),
        ));
        // `ValidateIngressCreate`: the legacy class annotation may not name another class.
        let annotation = object["metadata"]["annotations"][INGRESS_CLASS_ANNOTATION].as_str();
        if old.is_none()
            && let Some(annotated) = annotation
            && annotated != class
        {
            errs.push(FieldError::invalid(
                &Path::new("annotations").child(INGRESS_CLASS_ANNOTATION),
                &json!(annotated),
                "can not be set when the class field is also set",
            ));
        }
    }
    errs
}

/// A rule's or TLS entry's host: a DNS name (a wildcard only as the first label), not an IP.
fn host_errors(host: &str, path: &Path) -> Vec<FieldError> {
    if host.is_empty() {
        return Vec::new();
    }
    if is_ip(host) {
        return vec![FieldError::invalid(
            path,
            &json!(host),
            "must be a DNS name, not an IP address",
        )];
    }
    if host.contains('*') {
        invalid_each(path, host, wildcard_dns1123_subdomain(host))
    } else {
        invalid_each(path, host, dns1123_subdomain(host))
    }
}

/// `validateIngressRules` for one rule.
fn ingress_rule(rule: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = host_errors(
        rule["host"].as_str().unwrap_or_default(),
        &path.child("host"),
    );
    if rule["http"].is_null() {
        return errs;
    }
    let http = path.child("http");
    let paths = rule["http"]["paths"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if paths.is_empty() {
        errs.push(FieldError::required(&http.child("paths"), ""));
    }
    for (i, p) in paths.iter().enumerate() {
        errs.extend(http_path(p, &http.child("paths").index(i)));
    }
    errs
}

/// `validateHTTPIngressPath`.
fn http_path(p: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let value = p["path"].as_str().unwrap_or_default();
    let vpath = path.child("path");
    match p["pathType"].as_str() {
        None => errs.push(FieldError::required(
            &path.child("pathType"),
            "pathType must be specified",
        )),
        Some("Exact" | "Prefix") => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    &vpath,
                    &json!(value),
                    "must be an absolute path",
                ));
            }
            if !value.is_empty() {
                for seq in INVALID_PATH_SEQUENCES {
                    if value.contains(seq) {
                        errs.push(FieldError::invalid(
                            &vpath,
                            &json!(value),
                            format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suffix in INVALID_PATH_SUFFIXES {
                    if value.ends_with(suffix) {
                        errs.push(FieldError::invalid(
                            &vpath,
                            &json!(value),
                            format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    &vpath,
                    &json!(value),
                    "must be an absolute path",
                ));
            }
        }
        Some(other) => errs.push(FieldError::not_supported(
            &path.child("pathType"),
            &json!(other),
            &PATH_TYPES,
        )),
    }
    errs.extend(backend(&p["backend"], &path.child("backend")));
    errs
}

/// `validateIngressBackend`: exactly one of a service (name and one of port number or name)
/// or a resource.
fn backend(b: &Value, path: &Path) -> Vec<FieldError> {
    let service = &b["service"];
    let resource = &b["resource"];
    let empty = json!("");
    match (service.is_null(), resource.is_null()) {
        (false, false) => vec![FieldError::invalid(
            path,
            &empty,
            "cannot set both resource and service backends",
        )],
        (true, false) => {
            let mut errs = Vec::new();
            for field in ["kind", "name"] {
                if resource[field].as_str().unwrap_or_default().is_empty() {
                    errs.push(FieldError::required(
                        &path.child("resource").child(field),
                        "",
                    ));
                }
            }
            errs
        }
        (false, true) => {
            let mut errs = Vec::new();
            let sp = path.child("service");
            match service["name"].as_str().unwrap_or_default() {
                "" => errs.push(FieldError::required(&sp.child("name"), "")),
                name => errs.extend(invalid_each(&sp.child("name"), name, dns1035_label(name))),
            }
            let port = &service["port"];
            let name = port["name"].as_str().unwrap_or_default();
            let number = int(&port["number"]).unwrap_or(0);
            match (name.is_empty(), number == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    &sp.child("port"),
                    &empty,
                    "cannot set both port name & port number",
                )),
                (false, true) => errs.extend(invalid_each(
                    &sp.child("port").child("name"),
                    name,
                    port_name(name),
                )),
                (true, false) => errs.extend(port_num(number).into_iter().map(|m| {
                    FieldError::invalid(&sp.child("port").child("number"), &json!(number), m)
                })),
                (true, true) => errs.push(FieldError::required(
                    &sp.child("port"),
                    "port name or number is required",
                )),
            }
            errs
        }
        (true, true) => vec![FieldError::invalid(
            path,
            &empty,
            "resource or service backend is required",
        )],
    }
}
