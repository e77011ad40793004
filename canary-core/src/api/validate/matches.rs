//! Request matches: well-formed, and routable by the chosen provider.

use super::Checker;
use super::traffic::Chosen;
use crate::api::names;
use crate::api::spec::{RequestMatch, StringMatch};

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

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

/// Checks a list of matches at `path` (e.g. `spec.strategy.abTest.matches`), including that
/// `provider` can route them.
pub(super) fn check_matches(
    c: &mut Checker,
    path: &str,
    matches: &[RequestMatch],
    provider: Option<Chosen>,
) {
    c.at_most(path, matches.len(), super::limits::MAX_MATCHES, "matches");
    let capabilities = provider.map(|chosen| chosen.capabilities);
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
                caps
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
            c.check(format!("{here}.headers"), names::header_name(name));
            check_string_match(c, &format!("{here}.headers.{name}"), condition);
        }
        if let Some(cookie) = &request.cookie
            && cookie.name.is_empty()
        {
            c.error(format!("{here}.cookie.name"), "must not be empty");
        }
        if let Some(uri) = &request.uri {
            check_string_match(c, &format!("{here}.uri"), uri);
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
        if let Some(chosen) = provider {
            (chosen.descriptor.check_match)(c, &here, request);
        }
        if let (Some(provider), Some(caps)) = (provider, capabilities) {
            for (field, what) in caps.refusals(request) {
                c.error(
                    format!("{here}.{field}"),
                    format!(
                        "{} cannot route {what}; {} supports {}",
                        provider.name(),
                        provider.name(),
                        caps
                    ),
                );
            }
        }
    }
}
