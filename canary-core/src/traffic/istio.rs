//! Istio: a VirtualService splitting between the stable and canary Services (or subsets of a
//! DestinationRule), matching any request attribute, and mirroring; metrics from the
//! sidecars' `istio_*` families.

use super::{Capabilities, Metrics, ProviderDescriptor, no_labels, no_match_rules, no_rules};
use crate::analysis::queries::MetricFamily;
use crate::api::names;
use crate::api::spec::TrafficRouting;
use crate::api::validate::Checker;

/// Istio's descriptor.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    name: "istio",
    named_in: Some(|routing| routing.istio.is_some()),
    capabilities,
    routes_by_service: true,
    metrics: Metrics::Family(METRICS),
    canary_pod_labels: no_labels,
    check_settings,
    check_match: no_match_rules,
    check_spec: no_rules,
};

/// The sidecars' request counter and duration histogram, reported by the receiving side
/// (`reporter="destination"`) and told apart by workload. ASM's data plane is Istio's and
/// exports the same.
pub const METRICS: MetricFamily = MetricFamily {
    requests: "istio_requests_total",
    duration_bucket: "istio_request_duration_milliseconds_bucket",
    to_millis: "",
    canary: r#"reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}""#,
    stable: r#"reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ stable }}""#,
    code: "response_code",
};

/// A VirtualService's HTTP route takes everything.
fn capabilities(_: &TrafficRouting) -> Capabilities {
    Capabilities::everything().with_summary(
        "weights; any number of matches on headers, cookie, URI, query parameters and method \
         (exact, prefix or regex); mirroring",
    )
}

fn check_settings(c: &mut Checker, routing: &TrafficRouting) {
    let Some(istio) = &routing.istio else { return };
    if let Some(vs) = &istio.virtual_service {
        c.check(
            "spec.trafficRouting.istio.virtualService.name",
            names::dns1123_subdomain(&vs.name),
        );
        for (i, route) in vs.routes.iter().enumerate() {
            if route.is_empty() {
                c.error(
                    format!("spec.trafficRouting.istio.virtualService.routes[{i}]"),
                    "route names must not be empty",
                );
            }
        }
    }
    if let Some(dr) = &istio.destination_rule {
        c.check(
            "spec.trafficRouting.istio.destinationRule.name",
            names::dns1123_subdomain(&dr.name),
        );
    }
    for (field, values) in [("hosts", &istio.hosts), ("gateways", &istio.gateways)] {
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() || value.chars().any(char::is_whitespace) {
                c.error(
                    format!("spec.trafficRouting.istio.{field}[{i}]"),
                    format!("`{value}` is not a host or gateway name"),
                );
            }
        }
    }
}
