//! The legacy TrafficRoute: for each `kuma.io/service` outbound of a caller, the one most
//! specific TrafficRoute whose `sources` match the caller and whose `destinations` match the
//! service, and where its `conf` sends a request.

use std::collections::BTreeMap;

use serde_json::Value;

use super::super::{Request, Served, World, string_map};
use super::policy::Proxy;
use super::resources::{Mesh, NAMESPACE_TAG, SERVICE_TAG, str_at, tagged_endpoints};
use super::routes::full_match;

/// The specificity of a tag selector: exact tags, then wildcard ones
/// (api/mesh/v1alpha1/dataplane_helpers.go: `TagSelectorRank`, `CompareTo`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rank {
    exact: usize,
    wildcard: usize,
}

impl Rank {
    fn of(selector: &BTreeMap<String, String>) -> Rank {
        let wildcard = selector.values().filter(|v| *v == "*").count();
        Rank {
            exact: selector.len() - wildcard,
            wildcard,
        }
    }

    fn plus(self, other: Rank) -> Rank {
        Rank {
            exact: self.exact + other.exact,
            wildcard: self.wildcard + other.wildcard,
        }
    }

    fn compare(self, other: Rank) -> std::cmp::Ordering {
        let (a, b) = (self.exact + self.wildcard, other.exact + other.wildcard);
        if a == b {
            self.exact.cmp(&other.exact)
        } else {
            a.cmp(&b)
        }
    }
}

/// True when `selector` matches the caller: a caller is known by its namespace only, so a
/// selector on any other tag matches only with `*` on `kuma.io/service`.
fn source_matches(selector: &BTreeMap<String, String>, proxy: &Proxy) -> bool {
    selector.iter().all(|(k, v)| match k.as_str() {
        SERVICE_TAG => v == "*",
        NAMESPACE_TAG => v == "*" || *v == proxy.namespace,
        "kuma.io/mesh" | "kuma.io/zone" => true,
        _ => false,
    })
}

fn destination_matches(selector: &BTreeMap<String, String>, tag: &str) -> bool {
    selector
        .iter()
        .all(|(k, v)| k == SERVICE_TAG && (v == "*" || v == tag))
}

fn selectors(spec: &Value, key: &str) -> Vec<BTreeMap<String, String>> {
    spec.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|s| string_map(s.get("match"))).collect())
        .unwrap_or_default()
}

/// The TrafficRoute of `mesh` in `world` that routes `proxy`'s outbound to `tag`: the one whose
/// best source plus best destination selector rank highest, on a tie the one created last,
/// among them the first by name (pkg/core/policy/connection_matcher.go:
/// `SelectConnectionPolicies`).
pub(super) fn select<'a>(
    world: &'a World,
    mesh: &Mesh,
    proxy: &Proxy,
    tag: &str,
) -> Option<&'a Value> {
    let mut routes: Vec<&Value> = all(world, mesh);
    routes.sort_by_key(|r| str_at(r, "/metadata/name").unwrap_or_default().to_owned());
    let mut best: Option<(&Value, Rank)> = None;
    for route in routes {
        let spec = spec(route);
        let Some(source) = selectors(spec, "sources")
            .iter()
            .filter(|s| source_matches(s, proxy))
            .map(Rank::of)
            .max_by(|a, b| a.compare(*b))
        else {
            continue;
        };
        for destination in selectors(spec, "destinations") {
            if !destination_matches(&destination, tag) {
                continue;
            }
            let rank = Rank::of(&destination).plus(source);
            let created = |r: &Value| {
                str_at(r, "/metadata/creationTimestamp")
                    .unwrap_or_default()
                    .to_owned()
            };
            let better = match best {
                None => true,
                Some((current, current_rank)) => match rank.compare(current_rank) {
                    std::cmp::Ordering::Greater => true,
                    std::cmp::Ordering::Equal => created(route) > created(current),
                    std::cmp::Ordering::Less => false,
                },
            };
            if better {
                best = Some((route, rank));
            }
        }
    }
    best.map(|(route, _)| route)
}

/// Every TrafficRoute of `mesh`.
pub(super) fn all<'a>(world: &'a World, mesh: &Mesh) -> Vec<&'a Value> {
    world
        .all("TrafficRoute")
        .filter(|r| mesh.holds(r))
        .collect()
}

/// The part holding `sources`, `destinations` and `conf` (`spec` on Kubernetes).
fn spec(route: &Value) -> &Value {
    match route.get("spec") {
        Some(spec) if spec.is_object() => spec,
        _ => route,
    }
}

/// Who answers `request` sent on the outbound to `tag` under `route`: the first `conf.http`
/// entry whose match the request meets, else `conf`; its `destination`, or its `split` by
/// weight. Destination tags `*` take the outbound's value
/// (pkg/xds/topology/router.go: `resolveTrafficRouteWildcards`).
pub(super) fn serve(world: &World, route: &Value, tag: &str, request: &Request) -> Served {
    let conf = &spec(route)["conf"];
    let chosen = conf
        .get("http")
        .and_then(Value::as_array)
        .and_then(|entries| entries.iter().find(|e| http_matches(&e["match"], request)))
        .unwrap_or(conf);
    let mut served = Served::default();
    let route_name = str_at(route, "/metadata/name").unwrap_or_default();
    let targets: Vec<(f64, BTreeMap<String, String>)> = match chosen.get("destination") {
        Some(destination) if destination.is_object() => vec![(1.0, string_map(Some(destination)))],
        _ => chosen
            .get("split")
            .and_then(Value::as_array)
            .map(|split| {
                split
                    .iter()
                    .map(|s| {
                        (
                            s.get("weight").and_then(Value::as_f64).unwrap_or(0.0),
                            string_map(s.get("destination")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    let total: f64 = targets.iter().map(|(w, _)| w).sum();
    if total <= 0.0 {
        return Served::nobody(format!("TrafficRoute {route_name} sends {tag} nowhere"));
    }
    for (weight, tags) in targets {
        let mut tags: BTreeMap<String, String> =
            tags.into_iter().filter(|(_, v)| v != "*").collect();
        tags.entry(SERVICE_TAG.to_owned())
            .or_insert_with(|| tag.to_owned());
        let endpoints = tagged_endpoints(world, &tags);
        served.spread(weight / total, &endpoints, || {
            format!("no endpoints for {tags:?} (TrafficRoute {route_name})")
        });
    }
    served
}

/// True when `request` meets a TrafficRoute `http.match`: `path` and header values by `exact`,
/// `prefix` or `regex`, and `method`.
fn http_matches(matched: &Value, request: &Request) -> bool {
    let string = |m: &Value, got: Option<&str>| {
        let Some(got) = got else { return false };
        if let Some(exact) = m.get("exact").and_then(Value::as_str) {
            got == exact
        } else if let Some(prefix) = m.get("prefix").and_then(Value::as_str) {
            got.starts_with(prefix)
        } else if let Some(regex) = m.get("regex").and_then(Value::as_str) {
            full_match(regex, got)
        } else {
            true
        }
    };
    let path_ok = matched
        .get("path")
        .is_none_or(|p| string(p, Some(&request.path)));
    let method_ok = matched
        .get("method")
        .is_none_or(|m| string(m, Some(&request.method)));
    let sent = request.proxy_headers();
    let headers_ok = matched
        .get("headers")
        .and_then(Value::as_object)
        .is_none_or(|headers| {
            headers.iter().all(|(name, m)| {
                string(m, sent.get(&name.to_ascii_lowercase()).map(String::as_str))
            })
        });
    path_ok && method_ok && headers_ok
}
