//! Istio's validating webhook (`validation.istio.io`) for `networking.istio.io`
//! VirtualServices and DestinationRules, after istio `pkg/config/validation/validation.go`
//! (`ValidateVirtualService`, `ValidateDestinationRule`, `validateHTTPRouteDestinations`,
//! `validateRouteDestinations`, `validateDestination`, `validateSubsetName`, `validateWeight`),
//! `pkg/config/validation/virtualservice.go` (`validateHTTPRoute`, `validateHTTPRouteConflict`,
//! `validateHTTPRouteMatchRequest`), `pkg/config/validation/agent/validation.go`
//! (`ValidateWildcardDomain`, `ValidateDNS1123Labels`, `ValidatePort`) and
//! `pkg/config/labels/instance.go` (`IsDNS1123Label` — upper case allowed —, `Instance.Validate`).
//!
//! Not refused, as Istio does not refuse it: a route to a subset no DestinationRule defines
//! (it is accepted and answers 503), and weights that do not add up to 100 (Istio only
//! refuses a negative weight and, with several destinations, a total of 0).
//!
//! A refusal is the webhook server's (`pkg/webhooks/validation/server/server.go`):
//! `configuration is invalid: <errors>` with no code (so 400) and no reason; several errors
//! are listed as go-multierror does.

use std::collections::HashSet;

use serde_json::Value;

use super::{AdmissionHook, AdmissionRequest, Denial};

/// The `validation.istio.io` webhook.
#[derive(Debug, Clone, Copy, Default)]
pub struct IstioValidation;

impl AdmissionHook for IstioValidation {
    fn name(&self) -> &str {
        "validation.istio.io"
    }

    fn reads_peers(&self) -> bool {
        false
    }

    fn handles(&self, group: &str, kind: &str) -> bool {
        group == "networking.istio.io" && matches!(kind, "VirtualService" | "DestinationRule")
    }

    fn review(&self, request: &AdmissionRequest<'_>) -> Result<(), Denial> {
        let spec = &request.object["spec"];
        let errors = match request.kind {
            "VirtualService" => virtual_service(spec),
            _ => destination_rule(spec),
        };
        if errors.is_empty() {
            return Ok(());
        }
        Err(Denial::new(
            400,
            "",
            format!("configuration is invalid: {}", multierror(&errors)),
        ))
    }
}

/// go-multierror's default format (one error alone as itself).
fn multierror(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => {
            let points: Vec<String> = many.iter().map(|e| format!("* {e}")).collect();
            format!(
                "{} errors occurred:\n\t{}\n\n",
                many.len(),
                points.join("\n\t")
            )
        }
    }
}

/// istio `labels.IsDNS1123Label`: `[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?`, at most 63.
pub(crate) fn is_istio_dns1123_label(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.len() <= 63
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// istio `labels.IsWildcardDNS1123Label`: `*`, or a label optionally prefixed by `*` or `*-`.
fn is_wildcard_label(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s
        .strip_prefix("*-")
        .or_else(|| s.strip_prefix('*'))
        .unwrap_or(s);
    s.len() <= 63 && is_istio_dns1123_label(rest)
}

/// agent `ValidateWildcardDomain`.
fn wildcard_domain(domain: &str) -> Option<String> {
    if domain.len() > 255 {
        return Some(format!("domain name {domain:?} too long (max 255)"));
    }
    if domain.is_empty() {
        return Some("empty domain name not allowed".to_owned());
    }
    let (first, rest) = match domain.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (domain, None),
    };
    if !is_wildcard_label(first) {
        return Some(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    rest.and_then(dns1123_labels)
}

/// agent `ValidateDNS1123Labels`.
fn dns1123_labels(domain: &str) -> Option<String> {
    let parts: Vec<&str> = domain.split('.').collect();
    let tld = parts.last().copied().unwrap_or_default();
    if !tld.is_empty() && tld.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!(
            "domain name {domain:?} invalid (top level domain {tld:?} cannot be all-numeric)"
        ));
    }
    let last = parts.len().saturating_sub(1);
    for (i, label) in parts.iter().enumerate() {
        if i == last && label.is_empty() {
            return None;
        }
        if !is_istio_dns1123_label(label) {
            return Some(format!(
                "domain name {domain:?} invalid (label {label:?} invalid)"
            ));
        }
    }
    None
}

/// `validateSubsetName`.
pub(crate) fn subset_name(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("subset name cannot be empty".to_owned())
    } else if !is_istio_dns1123_label(name) {
        Some(format!("subset name is invalid: {name}"))
    } else {
        None
    }
}

/// `validateDestination`.
fn destination(d: &Value, errs: &mut Vec<String>) {
    if d.is_null() {
        return;
    }
    let host = d["host"].as_str().unwrap_or_default();
    if host == "*" {
        errs.push(format!("invalid destination host {host}"));
    } else {
        errs.extend(wildcard_domain(host));
    }
    if let Some(subset) = d["subset"].as_str().filter(|s| !s.is_empty()) {
        errs.extend(subset_name(subset));
    }
    if let Some(port) = d["port"]["number"].as_i64()
        && !(1..=65535).contains(&port)
    {
        errs.push(format!("port number {port} must be in the range 1..65535"));
    }
}

/// `validateHTTPRouteDestinations` / `validateRouteDestinations`.
fn route_destinations(routes: &[Value], errs: &mut Vec<String>) {
    let mut total = 0;
    for r in routes {
        if r.is_null() {
            errs.push("weight may not be nil".to_owned());
            continue;
        }
        if r["destination"].is_null() {
            errs.push("destination is required".to_owned());
        }
        destination(&r["destination"], errs);
        let weight = r["weight"].as_i64().unwrap_or(0);
        if weight < 0 {
            errs.push(format!("weight {weight} < 0"));
        }
        total += weight;
    }
    if routes.len() > 1 && total == 0 {
        errs.push("total destination weight = 0".to_owned());
    }
}

fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// `validateHTTPRoute` (conflicts, match requests, mirror, destinations).
fn http_route(http: &Value, delegate: bool, errs: &mut Vec<String>) {
    let root = !delegate && !http["delegate"].is_null();
    let routes = array(&http["route"]);
    if root {
        let name = http["name"].as_str().unwrap_or_default();
        if !http["redirect"].is_null() {
            errs.push(format!("root HTTP route {name} must not specify redirect"));
        }
        if !http["route"].is_null() {
            errs.push(format!("root HTTP route {name} must not specify route"));
        }
    } else {
        if delegate && !http["delegate"].is_null() {
            errs.push("delegate HTTP route cannot contain delegate".to_owned());
        }
        if !http["redirect"].is_null() {
            if !routes.is_empty() {
                errs.push("HTTP route cannot contain both route and redirect".to_owned());
            }
        } else if !http["directResponse"].is_null() {
            if !routes.is_empty() {
                errs.push("HTTP route cannot contain both route and direct_response".to_owned());
            }
        } else if routes.is_empty() {
            errs.push("HTTP route, redirect or direct_response is required".to_owned());
        }
    }
    for m in array(&http["match"]) {
        if let Some(ns) = m["sourceNamespace"].as_str().filter(|s| !s.is_empty())
            && !is_istio_dns1123_label(ns)
        {
            errs.push(format!("sourceNamespace match {ns} is invalid"));
        }
        if let Some(port) = m["port"].as_i64().filter(|p| *p != 0)
            && !(1..=65535).contains(&port)
        {
            errs.push(format!("port number {port} must be in the range 1..65535"));
        }
    }
    if let Some(pct) = http["mirrorPercentage"]["value"].as_f64() {
        if pct > 100.0 {
            errs.push(format!(
                "mirror_percentage must have a max value of 100 (it has {pct:.6})"
            ));
        }
        if pct < 0.0 {
            errs.push(format!(
                "mirror_percentage must have a min value of 0 (it has {pct:.6})"
            ));
        }
    }
    destination(&http["mirror"], errs);
    route_destinations(&routes, errs);
}

/// `ValidateVirtualService`.
fn virtual_service(spec: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let hosts: Vec<String> = array(&spec["hosts"])
        .iter()
        .filter_map(|h| h.as_str().map(str::to_owned))
        .collect();
    let gateways = array(&spec["gateways"]);
    let delegate = hosts.is_empty();
    if delegate && !gateways.is_empty() {
        errs.push("delegate virtual service must have no gateways specified".to_owned());
    }
    let applies_to_mesh = gateways.is_empty() || gateways.iter().any(|g| g == "mesh");
    let mut all_valid = true;
    for host in &hosts {
        match wildcard_domain(host) {
            Some(e) if host.parse::<std::net::IpAddr>().is_err() => {
                errs.push(e);
                all_valid = false;
            }
            Some(_) => {}
            None if applies_to_mesh && host == "*" => {
                errs.push(
                    "wildcard host * is not allowed for virtual services bound to the mesh gateway"
                        .to_owned(),
                );
                all_valid = false;
            }
            None => {}
        }
    }
    if all_valid {
        for (i, a) in hosts.iter().enumerate() {
            for b in hosts.iter().skip(i + 1) {
                if a == b {
                    errs.push(format!("duplicate hosts in virtual service: {a} & {b}"));
                }
            }
        }
    }
    let http = array(&spec["http"]);
    if http.is_empty() && array(&spec["tcp"]).is_empty() && array(&spec["tls"]).is_empty() {
        errs.push("http, tcp or tls must be provided in virtual service".to_owned());
    }
    for route in &http {
        if route.is_null() {
            errs.push("http route may not be null".to_owned());
        } else {
            http_route(route, delegate, &mut errs);
        }
    }
    for route in array(&spec["tcp"]) {
        route_destinations(&array(&route["route"]), &mut errs);
    }
    errs
}

/// `ValidateDestinationRule`: the host, and each subset's name (unique, a DNS-1123 label)
/// and labels (`labels.Instance.Validate`).
fn destination_rule(spec: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    errs.extend(wildcard_domain(spec["host"].as_str().unwrap_or_default()));
    let mut names = HashSet::new();
    for subset in array(&spec["subsets"]) {
        if subset.is_null() {
            errs.push("subset may not be null".to_owned());
            continue;
        }
        let name = subset["name"].as_str().unwrap_or_default();
        if !names.insert(name.to_owned()) {
            errs.push(format!("duplicate subset names: {name}"));
        }
        errs.extend(subset_name(name));
        if let Some(labels) = subset["labels"].as_object() {
            for (key, value) in labels {
                if !crate::validation::names::qualified_name(key).is_empty() {
                    errs.push(format!("invalid tag key: {key:?}"));
                }
                let value = value.as_str().unwrap_or_default();
                if !crate::validation::names::label_value(value).is_empty() && !value.is_empty() {
                    errs.push(format!("invalid tag value: {value:?}"));
                }
            }
        }
    }
    errs
}
