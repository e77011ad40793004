//! Kubernetes Gateway API (standard channel v1.6.1): an HTTPRoute (or GRPCRoute) whose rules
//! weight the stable and canary Services as two `backendRefs`, a rule for the request matches,
//! and `RequestMirror` filters.
//!
//! The rules below are the route CRDs' own (`httproutes.yaml`, `grpcroutes.yaml` of the
//! standard channel, v1.6.1): a request match has at most 16 header and 16 query-parameter
//! conditions, `Exact` or `RegularExpression`; a path is `Exact`, `PathPrefix` or
//! `RegularExpression`, and an `Exact` or `PathPrefix` path is absolute with no `//`, `/./`,
//! `/../`, `%2f`, `#`, nor a trailing `/.` or `/..`; a header or parameter name is an HTTP token.
//! A GRPCRoute matches headers only (its method match names gRPC services, not HTTP methods).

use super::{Capabilities, MatchKinds, Metrics, ProviderDescriptor, no_labels};
use crate::analysis::queries::MetricFamily;
use crate::api::names;
use crate::api::spec::{
    GatewayImplementation, GatewayRouteKind, GatewayRouting, JudgeKind, RequestMatch, RolloutSpec,
    StringMatch, TrafficRouting,
};
use crate::api::validate::Checker;

/// The Gateway API's descriptor.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    name: "gatewayAPI",
    named_in: Some(|routing| routing.gateway_api.is_some()),
    capabilities,
    routes_by_service: true,
    metrics: Metrics::BySettings(metrics),
    canary_pod_labels: no_labels,
    check_settings,
    check_match,
    check_spec,
};

/// Istio's gateway reports every request it proxies with `reporter="source"` (Istio's standard
/// metrics: a gateway is a client-side reporter), naming the destination by Service, which
/// stays known when the backends have no sidecar (their workload then reads `unknown`).
pub const ISTIO_METRICS: MetricFamily = MetricFamily {
    requests: "istio_requests_total",
    duration_bucket: "istio_request_duration_milliseconds_bucket",
    to_millis: "",
    canary: r#"reporter="source",destination_service_namespace="{{ namespace }}",destination_service_name="{{ service }}-canary""#,
    stable: r#"reporter="source",destination_service_namespace="{{ namespace }}",destination_service_name="{{ service }}""#,
    code: "response_code",
};

/// Envoy Gateway names a backend's own upstream cluster
/// `<kind>/<route namespace>/<route name>/rule/<rule index>/backend/<backend index>` (a rule
/// gets one cluster per backend when a backend has filters: canary gives the canary backend
/// one and puts it first, stable second; see `canary_gateway::render`).
pub const ENVOY_GATEWAY_METRICS: MetricFamily = MetricFamily {
    requests: "envoy_cluster_upstream_rq",
    duration_bucket: "envoy_cluster_upstream_rq_time_bucket",
    to_millis: "",
    canary: r#"envoy_cluster_name=~"(httproute|grpcroute)/{{ namespace }}/{{ route }}/rule/[0-9]+/backend/0""#,
    stable: r#"envoy_cluster_name=~"(httproute|grpcroute)/{{ namespace }}/{{ route }}/rule/[0-9]+/backend/1""#,
    code: "envoy_response_code",
};

/// The cookie of a sticky canary when the Rollout gives no name.
pub const DEFAULT_COOKIE: &str = "canary-session";

/// How long a sticky canary's cookie lives when the Rollout does not say.
pub const DEFAULT_COOKIE_MAX_AGE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The longest a sticky canary's cookie may live.
const MAX_COOKIE_MAX_AGE: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// The cookie of a sticky canary: its name and `Max-Age`, when the settings ask for one.
pub fn sticky_cookie(settings: &GatewayRouting) -> Option<(String, jiff::SignedDuration)> {
    let affinity = settings.session_affinity.as_ref()?;
    let name = affinity
        .cookie_name
        .clone()
        .unwrap_or_else(|| DEFAULT_COOKIE.to_owned());
    let max_age = affinity
        .max_age
        .as_deref()
        .and_then(|text| crate::api::duration::parse_duration(text).ok())
        .unwrap_or(DEFAULT_COOKIE_MAX_AGE);
    Some((name, max_age))
}

/// The family of the implementation the settings name.
fn metrics(routing: &TrafficRouting) -> Option<MetricFamily> {
    match routing.gateway_api.as_ref()?.implementation? {
        GatewayImplementation::Istio => Some(ISTIO_METRICS),
        GatewayImplementation::EnvoyGateway => Some(ENVOY_GATEWAY_METRICS),
        GatewayImplementation::Other => None,
    }
}

/// The route a Rollout routes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: GatewayRouteKind,
    /// Its name, in the Rollout's namespace.
    pub name: String,
    /// Whether canary generates it (named after the Service), rather than editing the user's.
    pub generated: bool,
}

/// The route of `settings` for the Service `service`.
pub fn route_of(settings: &GatewayRouting, service: &str) -> RouteRef {
    match (&settings.http_route, &settings.grpc_route) {
        (Some(name), _) => RouteRef {
            kind: GatewayRouteKind::HttpRoute,
            name: name.clone(),
            generated: false,
        },
        (None, Some(name)) => RouteRef {
            kind: GatewayRouteKind::GrpcRoute,
            name: name.clone(),
            generated: false,
        },
        (None, None) => RouteRef {
            kind: settings.route_kind.unwrap_or_default(),
            name: service.to_owned(),
            generated: true,
        },
    }
}

/// The most header (and query-parameter) conditions of one route match.
const MAX_CONDITIONS: usize = 16;

/// The most hostnames and parents of a route.
const MAX_HOSTNAMES: usize = 16;
const MAX_PARENTS: usize = 32;

/// Whether `routing` routes with a GRPCRoute.
fn grpc(routing: &TrafficRouting) -> bool {
    routing
        .gateway_api
        .as_ref()
        .is_some_and(|gateway| route_of(gateway, "").kind == GatewayRouteKind::GrpcRoute)
}

/// Builtin metrics need an implementation whose family canary knows.
fn check_spec(c: &mut Checker, spec: &RolloutSpec) {
    if metrics(&spec.traffic_routing).is_some() {
        return;
    }
    let builtin = spec
        .analysis
        .iter()
        .flat_map(|analysis| &analysis.metrics)
        .any(|metric| {
            metric.judge == Some(JudgeKind::Sequential)
                || metric
                    .prometheus
                    .as_ref()
                    .is_none_or(|prometheus| prometheus.query.is_none())
        });
    if builtin {
        c.error(
            "spec.trafficRouting.gatewayAPI.implementation",
            "builtin metrics read the implementation's own metrics: set `istio` or \
             `envoy-gateway`, or give every metric a custom `query` (another implementation's \
             metrics are not known to canary)",
        );
    }
}

/// An HTTPRoute matches headers and query parameters (exact or regex), the path (exact, prefix
/// or regex) and the method, and mirrors; a GRPCRoute matches headers and mirrors.
fn capabilities(routing: &TrafficRouting) -> Capabilities {
    let headers = MatchKinds::new(true, false, true);
    if grpc(routing) {
        return Capabilities {
            max_matches: crate::api::validate::limits::MAX_MATCHES,
            max_headers: MAX_CONDITIONS,
            headers,
            mirror: true,
            ..Capabilities::weights_only()
        }
        .with_summary(
            "a GRPCRoute: weights; matches on headers (exact or regex); mirroring; no path, \
             query, method or cookie",
        );
    }
    Capabilities {
        max_matches: crate::api::validate::limits::MAX_MATCHES,
        max_headers: MAX_CONDITIONS,
        headers,
        uri: MatchKinds::ALL,
        query: MatchKinds::new(true, false, true),
        method: true,
        mirror: true,
        ..Capabilities::weights_only()
    }
    .with_summary(
        "weights; matches on headers and query parameters (exact or regex), the path (exact, \
         prefix or regex) and the method; mirroring; no cookie",
    )
}

fn check_settings(c: &mut Checker, routing: &TrafficRouting) {
    let Some(gateway) = &routing.gateway_api else {
        return;
    };
    let here = "spec.trafficRouting.gatewayAPI";
    c.exactly_one(
        here,
        &[
            ("httpRoute", gateway.http_route.is_some()),
            ("grpcRoute", gateway.grpc_route.is_some()),
            ("parentRefs", !gateway.parent_refs.is_empty()),
        ],
    );
    for (field, name) in [
        ("httpRoute", &gateway.http_route),
        ("grpcRoute", &gateway.grpc_route),
    ] {
        if let Some(name) = name {
            c.check(format!("{here}.{field}"), names::dns1123_subdomain(name));
        }
    }
    c.at_most(
        &format!("{here}.parentRefs"),
        gateway.parent_refs.len(),
        MAX_PARENTS,
        "parents",
    );
    for (i, parent) in gateway.parent_refs.iter().enumerate() {
        let path = format!("{here}.parentRefs[{i}]");
        // The route CRDs: two references to one parent each name their own listener.
        let repeated = gateway.parent_refs.iter().take(i).any(|other| {
            other.name == parent.name
                && other.namespace == parent.namespace
                && (other.section_name.is_none()
                    || parent.section_name.is_none()
                    || other.section_name == parent.section_name)
        });
        if repeated {
            c.error(
                path.clone(),
                "names a Gateway named before: each reference to it needs a sectionName of its \
                 own",
            );
        }
        c.check(
            format!("{path}.name"),
            names::dns1123_subdomain(&parent.name),
        );
        if let Some(namespace) = &parent.namespace {
            c.check(format!("{path}.namespace"), names::dns1123_label(namespace));
        }
        if let Some(section) = &parent.section_name {
            c.check(
                format!("{path}.sectionName"),
                names::dns1123_subdomain(section),
            );
        }
    }
    if gateway.route_kind.is_some() && gateway.parent_refs.is_empty() {
        c.error(
            format!("{here}.routeKind"),
            "only for a generated route (parentRefs): httpRoute and grpcRoute name their kind",
        );
    }
    if let Some(affinity) = &gateway.session_affinity {
        let path = format!("{here}.sessionAffinity");
        if grpc(routing) {
            c.error(
                path.clone(),
                "a GRPCRoute has no sticky canary: gRPC clients keep no cookies",
            );
        }
        if let Some(name) = &affinity.cookie_name {
            c.check(format!("{path}.cookieName"), cookie_name(name));
        }
        c.duration(
            &format!("{path}.maxAge"),
            affinity.max_age.as_deref(),
            DEFAULT_COOKIE_MAX_AGE,
            jiff::SignedDuration::from_secs(1)..=MAX_COOKIE_MAX_AGE,
        );
    }
    if !gateway.hostnames.is_empty() && gateway.parent_refs.is_empty() {
        c.error(
            format!("{here}.hostnames"),
            "only for a generated route (parentRefs): a route you wrote keeps its own",
        );
    }
    c.at_most(
        &format!("{here}.hostnames"),
        gateway.hostnames.len(),
        MAX_HOSTNAMES,
        "hostnames",
    );
    for (i, host) in gateway.hostnames.iter().enumerate() {
        c.check(format!("{here}.hostnames[{i}]"), hostname(host));
    }
}

/// A route hostname as the CRD takes it: a DNS name, lowercase, its first label possibly `*`;
/// no IP address.
fn hostname(host: &str) -> Result<(), String> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let labels_ok = !name.is_empty()
        && host.len() <= 253
        && name
            .split('.')
            .all(|label| names::dns1123_label(label).is_ok());
    let ip = name.parse::<std::net::IpAddr>().is_ok();
    if labels_ok && !ip {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a hostname (lowercase DNS labels, the first may be `*`; no IP \
             address)"
        ))
    }
}

fn check_match(c: &mut Checker, here: &str, request: &RequestMatch) {
    for (name, condition) in &request.headers {
        c.check(format!("{here}.headers.{name}"), token(name));
        c.check(format!("{here}.headers.{name}"), value_len(condition, 4096));
    }
    for (name, condition) in &request.query_params {
        c.check(format!("{here}.queryParams.{name}"), token(name));
        c.check(
            format!("{here}.queryParams.{name}"),
            value_len(condition, 1024),
        );
    }
    if let Some(uri) = &request.uri {
        for value in [&uri.exact, &uri.prefix].into_iter().flatten() {
            c.check(format!("{here}.uri"), path(value));
        }
        if let Some(pattern) = &uri.regex
            && pattern.len() > 1024
        {
            c.error(
                format!("{here}.uri.regex"),
                "longer than the 1024 characters a route's path takes",
            );
        }
    }
}

/// A cookie name: an RFC 6265 token of at most 64 characters.
fn cookie_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a cookie name (letters, digits and !#$%&'*+-.^_`|~, at most 64)"
        ))
    }
}

/// An HTTP token (RFC 7230), as the CRD's name pattern says.
fn token(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an HTTP token (at most 256 characters)"
        ))
    }
}

fn value_len(condition: &StringMatch, max: usize) -> Result<(), String> {
    let value = condition
        .exact
        .as_deref()
        .or(condition.regex.as_deref())
        .or(condition.prefix.as_deref())
        .unwrap_or_default();
    if value.is_empty() || value.len() > max {
        return Err(format!("the value must have 1 to {max} characters"));
    }
    Ok(())
}

/// An `Exact` or `PathPrefix` path as the HTTPRoute CRD's rules take it.
fn path(value: &str) -> Result<(), String> {
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || "-/._~!$&'()*+,;=:@%".contains(ch);
    let refusal = if !value.starts_with('/') {
        Some("must start with `/`")
    } else if value.len() > 1024 {
        Some("is longer than 1024 characters")
    } else if ["//", "/./", "/../", "%2f", "%2F", "#"]
        .iter()
        .any(|bad| value.contains(bad))
        || value.ends_with("/..")
        || value.ends_with("/.")
    {
        Some("must not hold `//`, `/./`, `/../`, `%2f`, `#` nor end in `/.` or `/..`")
    } else if !value.chars().all(allowed) {
        Some("holds a character a URL path cannot (percent-encode it)")
    } else {
        None
    };
    match refusal {
        Some(why) => Err(format!("`{value}` {why}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_crd_rules() {
        assert!(path("/api/v1").is_ok());
        for bad in [
            "api", "/a//b", "/a/./b", "/a/../b", "/a%2fb", "/a#b", "/a/..", "/a/.", "/a b",
        ] {
            assert!(path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames_are_dns_names_with_an_optional_wildcard() {
        assert!(hostname("shop.example.com").is_ok());
        assert!(hostname("*.example.com").is_ok());
        for bad in ["Shop.example.com", "10.0.0.1", "*", "a.*.com", ""] {
            assert!(hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_grpc_route_matches_headers_only() {
        let grpc = TrafficRouting {
            gateway_api: Some(crate::api::spec::GatewayRouting {
                grpc_route: Some("payments".into()),
                ..Default::default()
            }),
            ..TrafficRouting::default()
        };
        let caps = capabilities(&grpc);
        assert!(caps.weights && caps.mirror && !caps.method && !caps.uri.exact);
        let http = capabilities(&TrafficRouting::default());
        assert!(http.method && http.uri.regex && !http.cookie);
    }
}
