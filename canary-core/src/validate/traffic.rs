//! `spec.trafficRouting`.

use super::Checker;
use crate::names;
use crate::route::ProviderKind;
use crate::spec::TrafficRouting;

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
    }
    ProviderKind::of(routing)
}
