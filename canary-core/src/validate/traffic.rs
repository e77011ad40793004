//! `spec.trafficRouting`.

use super::Checker;
use crate::names;
use crate::route::ProviderKind;
use crate::spec::{AsmRoutingMode, RequestMatch, RolloutSpec, StringMatch, TrafficRouting};

/// Checks the provider settings; the provider when exactly one is set.
pub(super) fn check_routing(c: &mut Checker, routing: &TrafficRouting) -> Option<ProviderKind> {
    c.exactly_one(
        "spec.trafficRouting",
        &[
            ("istio", routing.istio.is_some()),
            ("nginx", routing.nginx.is_some()),
            ("kuma", routing.kuma.is_some()),
            ("asm", routing.asm.is_some()),
        ],
    );
    if let Some(istio) = &routing.istio {
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
    if let Some(nginx) = &routing.nginx {
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
    if let Some(mesh) = routing.kuma.as_ref().and_then(|kuma| kuma.mesh.as_ref()) {
        c.check(
            "spec.trafficRouting.kuma.mesh",
            names::dns1123_subdomain(mesh),
        );
    }
    if let Some(asm) = &routing.asm {
        c.check(
            "spec.trafficRouting.asm.laneGroup",
            names::dns1123_subdomain(&asm.lane_group),
        );
        c.check(
            "spec.trafficRouting.asm.canaryLane",
            names::dns1123_subdomain(&asm.canary_lane),
        );
        c.check(
            "spec.trafficRouting.asm.baseLane",
            names::dns1123_subdomain(&asm.base_lane),
        );
        if asm.canary_lane == asm.base_lane {
            c.error(
                "spec.trafficRouting.asm.canaryLane",
                "must differ from baseLane",
            );
        }
        c.check(
            "spec.trafficRouting.asm.routeHeader",
            super::matches::header_name(&asm.route_header),
        );
        if let Some(trace) = &asm.trace_header {
            c.check(
                "spec.trafficRouting.asm.traceHeader",
                super::matches::header_name(trace),
            );
        }
        if let Some(gateway) = &asm.gateway {
            for (field, value) in [("name", &gateway.name), ("namespace", &gateway.namespace)] {
                if let Some(value) = value {
                    c.check(
                        format!("spec.trafficRouting.asm.gateway.{field}"),
                        names::dns1123_subdomain(value),
                    );
                }
            }
        }
    }
    ProviderKind::of(routing)
}

/// What lanes can express: the canary lane is entered by its route header alone, and the
/// canary pods carry the canary lane's tag.
pub(super) fn check_lanes(c: &mut Checker, spec: &RolloutSpec) {
    let Some(asm) = &spec.traffic_routing.asm else {
        return;
    };
    if let Some(tag) = spec
        .new_version
        .as_ref()
        .and_then(|new| new.pod_template_metadata.as_ref())
        .and_then(|metadata| metadata.labels.get(LANE_TAG))
        && *tag != asm.canary_lane
    {
        c.error(
            format!("spec.newVersion.podTemplateMetadata.labels.{LANE_TAG}"),
            format!(
                "`{tag}` would put the canary pods outside the canary lane `{}`; leave it out \
                 (canary pods get it) or make it the canary lane",
                asm.canary_lane
            ),
        );
    }
    if matches!(asm.mode, Some(AsmRoutingMode::Weighted)) {
        return;
    }
    let lane_header = RequestMatch {
        headers: [(
            asm.route_header.clone(),
            StringMatch::exact(asm.canary_lane.clone()),
        )]
        .into(),
        ..RequestMatch::default()
    };
    let mut lists: Vec<(String, &Vec<RequestMatch>)> = Vec::new();
    if let Some(ab) = &spec.strategy.ab_test {
        lists.push(("spec.strategy.abTest.matches".to_owned(), &ab.matches));
    }
    if let Some(canary) = &spec.strategy.canary {
        for (i, step) in canary.steps.iter().enumerate() {
            lists.push((
                format!("spec.strategy.canary.steps[{i}].matches"),
                &step.matches,
            ));
        }
    }
    for (path, matches) in lists {
        for (i, request) in matches.iter().enumerate() {
            if *request != lane_header {
                c.error(
                    format!("{path}[{i}]"),
                    format!(
                        "ASM lanes are entered by the route header alone: write \
                         `headers: {{{}: {{exact: {}}}}}`; the gateway's path and hosts go in \
                         spec.trafficRouting.asm.ingress",
                        asm.route_header, asm.canary_lane
                    ),
                );
            }
        }
    }
}

/// The pod label ASM lanes select by.
const LANE_TAG: &str = "ASM_TRAFFIC_TAG";
