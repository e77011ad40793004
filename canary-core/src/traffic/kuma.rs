//! Kuma: a MeshHTTPRoute (or the legacy TrafficRoute) splitting between the stable and canary
//! Services' `kuma.io/service` tags; metrics from the data planes' Envoy
//! `envoy_cluster_upstream_rq*` families.

use super::{Capabilities, MatchKinds, Metrics, ProviderDescriptor, no_labels, no_rules};
use crate::analysis::queries::MetricFamily;
use crate::api::names;
use crate::api::spec::{KumaRouteKind, RequestMatch, StringMatch, TrafficRouting};
use crate::api::validate::Checker;

/// Kuma's descriptor.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    name: "kuma",
    named_in: Some(|routing| routing.kuma.is_some()),
    capabilities,
    routes_by_service: true,
    metrics: Metrics::Family(MetricFamily {
        requests: "envoy_cluster_upstream_rq",
        duration_bucket: "envoy_cluster_upstream_rq_time_bucket",
        to_millis: "",
        canary: r#"kuma_io_service=~"{{ service }}-canary_{{ namespace }}_svc_[0-9]+",envoy_cluster_name=~"localhost_[0-9]+|self_inbound_.+""#,
        stable: r#"kuma_io_service=~"{{ service }}_{{ namespace }}_svc_[0-9]+",envoy_cluster_name=~"localhost_[0-9]+|self_inbound_.+""#,
        code: "envoy_response_code",
    }),
    canary_pod_labels: no_labels,
    check_settings,
    check_match,
    check_spec: no_rules,
};

/// Whether `routing` asks for the legacy TrafficRoute rather than a MeshHTTPRoute.
pub fn traffic_route(routing: &TrafficRouting) -> bool {
    routing
        .kuma
        .as_ref()
        .is_some_and(|kuma| kuma.route_kind == Some(KumaRouteKind::TrafficRoute))
}

/// A MeshHTTPRoute matches headers, paths, query parameters and methods, and mirrors; the
/// legacy TrafficRoute only splits.
fn capabilities(routing: &TrafficRouting) -> Capabilities {
    if traffic_route(routing) {
        return Capabilities::weights_only().with_summary(
            "the legacy TrafficRoute: weights only (set trafficRouting.kuma.routeKind: \
             MeshHTTPRoute for matches and mirroring)",
        );
    }
    Capabilities {
        summary: "weights; matches on headers (exact, prefix or regex), path (exact \
                  or prefix), query parameters (exact or regex) and method; mirroring; \
                  no cookie",
        weights: true,
        max_matches: usize::MAX,
        max_headers: usize::MAX,
        headers: MatchKinds::ALL,
        cookie: false,
        cookie_value: false,
        header_with_cookie: true,
        uri: MatchKinds::EXACT_OR_PREFIX,
        query: MatchKinds::new(true, false, true),
        method: true,
        mirror: true,
    }
}

fn check_settings(c: &mut Checker, routing: &TrafficRouting) {
    if let Some(mesh) = routing.kuma.as_ref().and_then(|kuma| kuma.mesh.as_ref()) {
        c.check(
            "spec.trafficRouting.kuma.mesh",
            names::dns1123_subdomain(mesh),
        );
    }
}

fn check_match(c: &mut Checker, here: &str, request: &RequestMatch) {
    if let Some(uri) = &request.uri {
        check_path(c, &format!("{here}.uri"), uri);
    }
}

/// A MeshHTTPRoute path as Kuma's validator takes it (`validatePath` in Kuma's
/// `pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go`, 2.x): exact and prefix
/// paths are absolute, and a prefix other than `/` has no trailing `/`, because Kuma matches
/// prefixes by whole `/`-separated segments (`/api` matches `/api` and `/api/…`, not `/apis`).
fn check_path(c: &mut Checker, path: &str, uri: &StringMatch) {
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
