//! ingress-nginx: a canary Ingress beside the user's, weighted or matched by one header or
//! cookie through ingress-nginx's canary annotations; metrics from the controller's
//! `nginx_ingress_controller_*` families.
//!
//! What ingress-nginx accepts in the canary annotations a match becomes:
//!
//! ingress-nginx checks annotation values before it uses them
//! (internal/ingress/annotations/canary/main.go: `canaryAnnotations`; the validators in
//! internal/ingress/annotations/parser/validators.go). A value that fails is logged and taken
//! as empty, so the canary would silently stop matching: canary refuses such values up front.
//!
//! - `canary-by-header`, `canary-by-header-value` and `canary-by-cookie` go through
//!   `BasicCharsRegex` (letters, digits and `/-._~:`), spaces removed before the check.
//! - `canary-by-header-pattern` goes through `IsValidRegex`: those characters and
//!   `^$[](){}*+?|&=\`, spaces included in the check.

use super::{Capabilities, MatchKinds, Metrics, ProviderDescriptor, no_labels, no_rules};
use crate::analysis::queries::MetricFamily;
use crate::api::names;
use crate::api::spec::{RequestMatch, TrafficRouting};
use crate::api::validate::Checker;

/// ingress-nginx's descriptor.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    name: "nginx",
    named_in: Some(|routing| routing.nginx.is_some()),
    capabilities,
    routes_by_service: true,
    metrics: Metrics::Family(MetricFamily {
        requests: "nginx_ingress_controller_requests",
        duration_bucket: "nginx_ingress_controller_response_duration_seconds_bucket",
        to_millis: " * 1000",
        canary: r#"namespace="{{ namespace }}",ingress="{{ ingress }}",service="{{ service }}",canary!="""#,
        stable: r#"namespace="{{ namespace }}",ingress="{{ ingress }}",service="{{ service }}",canary="""#,
        code: "status",
    }),
    canary_pod_labels: no_labels,
    check_settings,
    check_match: check_request,
    check_spec: no_rules,
};

/// What the canary annotations can say: a weight, and one header (exact value or pattern) or
/// one cookie (`always`).
fn capabilities(_: &TrafficRouting) -> Capabilities {
    Capabilities {
        summary: "weights; one match on one header (exact value or regex) or on one \
                  cookie (value `always`), not both; no URI, query, method or mirroring",
        weights: true,
        max_matches: 1,
        max_headers: 1,
        headers: MatchKinds::new(true, false, true),
        cookie: true,
        cookie_value: false,
        header_with_cookie: false,
        uri: MatchKinds::NONE,
        query: MatchKinds::NONE,
        method: false,
        mirror: false,
    }
}

fn check_settings(c: &mut Checker, routing: &TrafficRouting) {
    let Some(nginx) = &routing.nginx else { return };
    c.check(
        "spec.trafficRouting.nginx.ingress",
        names::dns1123_subdomain(&nginx.ingress),
    );
    if let Some(prefix) = &nginx.annotation_prefix {
        c.check(
            "spec.trafficRouting.nginx.annotationPrefix",
            names::dns1123_subdomain(prefix),
        );
    }
}

/// The characters of `BasicCharsRegex` besides ASCII letters and digits.
const BASIC: &str = "/-._~:";
/// The characters `IsValidRegex` adds to those.
const REGEX: &str = "^$[](){}*+?|&=\\";

fn basic(c: char) -> bool {
    c.is_ascii_alphanumeric() || BASIC.contains(c)
}

/// `value` passes `BasicCharsRegex` (spaces are not checked, as ingress-nginx removes them
/// first).
fn basic_chars(value: &str) -> Result<(), String> {
    match value.chars().find(|&c| c != ' ' && !basic(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "`{value}` has `{c}`, which ingress-nginx refuses in this annotation: it takes \
             letters, digits and /-._~:"
        )),
    }
}

/// `pattern` passes `IsValidRegex`.
fn regex_chars(pattern: &str) -> Result<(), String> {
    match pattern.chars().find(|&c| !basic(c) && !REGEX.contains(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "`{pattern}` has `{c}`, which ingress-nginx refuses in a header pattern: it takes \
             letters, digits and /-._~:^$[](){{}}*+?|&=\\"
        )),
    }
}

/// Checks the header names, values and patterns and the cookie name of `request` (at `here`)
/// against what ingress-nginx accepts.
fn check_request(c: &mut Checker, here: &str, request: &RequestMatch) {
    for (name, condition) in &request.headers {
        c.check(format!("{here}.headers"), basic_chars(name));
        if let Some(value) = &condition.exact {
            c.check(format!("{here}.headers.{name}.exact"), basic_chars(value));
        }
        if let Some(pattern) = &condition.regex {
            c.check(format!("{here}.headers.{name}.regex"), regex_chars(pattern));
        }
    }
    if let Some(cookie) = &request.cookie {
        c.check(format!("{here}.cookie.name"), basic_chars(&cookie.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_character_sets_are_ingress_nginxs() {
        assert!(basic_chars("a-Z_0.9~/:").is_ok());
        assert!(basic_chars("two words").is_ok(), "spaces are removed first");
        for bad in ["a;b", "a\"b", "a,b", "a\nb", "a=b", "é"] {
            assert!(basic_chars(bad).is_err(), "{bad}");
        }
        assert!(regex_chars("^(?:eu-[a-z]+|us)$").is_ok());
        assert!(regex_chars("a\\d{2}&b=c").is_ok());
        for bad in ["a b", "a,b", "a!b", "a#b", "a\nb", "a'b"] {
            assert!(regex_chars(bad).is_err(), "{bad}");
        }
    }
}
