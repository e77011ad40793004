//! Request matches: well-formed, and routable by the chosen provider.

use super::Checker;
use crate::route::ProviderKind;
use crate::spec::{RequestMatch, StringMatch};

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// A header name as meshes match it: a lowercase HTTP token.
pub(super) fn header_name(name: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("`{name}` is not an HTTP header name"));
    }
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("`{name}`: write header names in lowercase"));
    }
    Ok(())
}

fn check_string_match(c: &mut Checker, path: &str, condition: &StringMatch) {
    let set = [&condition.exact, &condition.prefix, &condition.regex]
        .into_iter()
        .filter(|value| value.is_some())
        .count();
    if set != 1 {
        c.error(path, "exactly one of exact, prefix, regex must be set");
    }
    if let Some(pattern) = &condition.regex
        && let Err(error) = regex::Regex::new(pattern)
    {
        let reason = error
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        c.error(
            format!("{path}.regex"),
            format!("`{pattern}` is not a regular expression: {reason}"),
        );
    }
}

/// A MeshHTTPRoute path as Kuma's validator takes it (`validatePath` in Kuma's
/// `pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go`, 2.x): exact and prefix
/// paths are absolute, and a prefix other than `/` has no trailing `/`, because Kuma matches
/// prefixes by whole `/`-separated segments (`/api` matches `/api` and `/api/…`, not `/apis`).
fn check_kuma_path(c: &mut Checker, path: &str, uri: &StringMatch) {
    for (kind, value) in [("exact", &uri.exact), ("prefix", &uri.prefix)] {
        let Some(value) = value else { continue };
        if !value.starts_with('/') {
            c.error(
                format!("{path}.{kind}"),
                format!("`{value}`: Kuma takes absolute paths only; write `/{value}`"),
            );
        } else if kind == "prefix" && value.len() > 1 && value.ends_with('/') {
            let segments = value.trim_end_matches('/');
            let segments = if segments.is_empty() { "/" } else { segments };
            c.error(
                format!("{path}.{kind}"),
                format!(
                    "`{value}`: Kuma matches path prefixes by whole segments and refuses a \
                     trailing `/`; write `{segments}` (it matches `{segments}` and the paths \
                     under it)"
                ),
            );
        }
    }
}

/// Checks a list of matches at `path` (e.g. `spec.strategy.abTest.matches`), including that
/// `provider` can route them.
pub(super) fn check_matches(
    c: &mut Checker,
    path: &str,
    matches: &[RequestMatch],
    provider: Option<ProviderKind>,
) {
    c.at_most(path, matches.len(), super::limits::MAX_MATCHES, "matches");
    let capabilities = provider.map(ProviderKind::capabilities);
    if let (Some(provider), Some(caps)) = (provider, capabilities)
        && matches.len() > caps.max_matches
    {
        c.error(
            path,
            format!(
                "{} matches, but {} routes at most {}; {} supports {}",
                matches.len(),
                provider.name(),
                caps.max_matches,
                provider.name(),
                caps.summary
            ),
        );
    }
    for (i, request) in matches.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if request.is_empty() {
            c.error(
                &here,
                "a match needs at least one condition (headers, cookie, uri, queryParams, method)",
            );
        }
        for (name, condition) in &request.headers {
            c.check(format!("{here}.headers"), header_name(name));
            check_string_match(c, &format!("{here}.headers.{name}"), condition);
        }
        if let Some(cookie) = &request.cookie
            && cookie.name.is_empty()
        {
            c.error(format!("{here}.cookie.name"), "must not be empty");
        }
        if let Some(uri) = &request.uri {
            check_string_match(c, &format!("{here}.uri"), uri);
            if provider == Some(ProviderKind::Kuma) {
                check_kuma_path(c, &format!("{here}.uri"), uri);
            }
        }
        for (name, condition) in &request.query_params {
            if name.is_empty() {
                c.error(
                    format!("{here}.queryParams"),
                    "parameter names must not be empty",
                );
            }
            check_string_match(c, &format!("{here}.queryParams.{name}"), condition);
        }
        if let Some(method) = &request.method
            && !METHODS.contains(&method.as_str())
        {
            c.error(
                format!("{here}.method"),
                format!("`{method}` is not one of {}", METHODS.join(", ")),
            );
        }
        if provider == Some(ProviderKind::Nginx) {
            super::nginx::check_request(c, &here, request);
        }
        if let (Some(provider), Some(caps)) = (provider, capabilities) {
            for (field, what) in caps.refusals(request) {
                c.error(
                    format!("{here}.{field}"),
                    format!(
                        "{} cannot route {what}; {} supports {}",
                        provider.name(),
                        provider.name(),
                        caps.summary
                    ),
                );
            }
        }
    }
}
