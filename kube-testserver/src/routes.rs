//! Request paths: resource paths and discovery endpoints, plus query-string decoding.

use std::collections::HashMap;

use super::resources::{Registry, ResourceType};

/// Where a request path points.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// `/version`.
    Version,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/api/v1` or `/apis/{group}/{version}`.
    Resources {
        /// API group (empty for core).
        group: String,
        /// API version.
        version: String,
    },
    /// A collection, object or object subresource.
    Object(Target),
    /// Anything else.
    Unknown,
}

/// A resource path, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The resource type.
    pub rt: ResourceType,
    /// Namespace segment, if any.
    pub ns: Option<String>,
    /// Object name, if any.
    pub name: Option<String>,
    /// Whether the path ends in `/status`.
    pub status: bool,
}

/// Parses a request path against the registry.
pub(crate) fn parse(registry: &Registry, path: &str) -> Route {
    let owned: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| decode(s, false))
        .collect();
    let segs: Vec<&str> = owned.iter().map(String::as_str).collect();
    let group_version = |g: &str, v: &str| {
        if registry.serves(g, v) {
            Route::Resources {
                group: g.to_owned(),
                version: v.to_owned(),
            }
        } else {
            Route::Unknown
        }
    };
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", v] => group_version("", v),
        ["apis", g, v] => group_version(g, v),
        ["api", v, rest @ ..] => resource(registry, "", v, rest),
        ["apis", g, v, rest @ ..] => resource(registry, g, v, rest),
        _ => Route::Unknown,
    }
}

fn resource(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Route {
    let (ns, rest) = match rest {
        ["namespaces", ns, tail @ ..]
            if tail
                .first()
                .is_some_and(|p| registry.by_plural(group, version, p).is_some()) =>
        {
            (Some((*ns).to_owned()), tail)
        }
        _ => (None, rest),
    };
    let Some((plural, tail)) = rest.split_first() else {
        return Route::Unknown;
    };
    let Some(rt) = registry.by_plural(group, version, plural) else {
        return Route::Unknown;
    };
    let (name, sub) = match tail {
        [] => (None, None),
        [name] => (Some((*name).to_owned()), None),
        [name, sub] => (Some((*name).to_owned()), Some(*sub)),
        _ => return Route::Unknown,
    };
    let status = match sub {
        None => false,
        Some("status") if rt.status_subresource => true,
        Some(_) => return Route::Unknown,
    };
    if (ns.is_some() && !rt.namespaced) || (name.is_some() && ns.is_none() && rt.namespaced) {
        return Route::Unknown;
    }
    Route::Object(Target {
        rt,
        ns,
        name,
        status,
    })
}

/// Percent-decodes a path segment or query component (`+` is a space in queries).
fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a query string into its parameters (the last value of a key wins).
pub(crate) fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}
