//! Alibaba ASM traffic lanes: a lane group with a base and a canary lane, entered by a route
//! header or by ingress weight; ASM's data plane is Istio's, and so are its metrics.

use std::collections::BTreeMap;

use super::{Capabilities, MatchKinds, Metrics, ProviderDescriptor, no_match_rules};
use crate::api::names;
use crate::api::spec::{AsmRoutingMode, RequestMatch, RolloutSpec, StringMatch, TrafficRouting};
use crate::api::validate::Checker;

/// ASM's descriptor.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    name: "asm",
    named_in: Some(|routing| routing.asm.is_some()),
    capabilities,
    routes_by_service: false,
    metrics: Metrics::Family(super::istio::METRICS),
    canary_pod_labels,
    check_settings,
    check_match: no_match_rules,
    check_spec: check_lanes,
};

/// The pod label ASM lanes select their pods by.
pub const LANE_TAG: &str = "ASM_TRAFFIC_TAG";

/// Whether `routing` sends ingress traffic into the canary lane by weight rather than by
/// header.
pub fn weighted(routing: &TrafficRouting) -> bool {
    routing
        .asm
        .as_ref()
        .is_some_and(|asm| asm.mode == Some(AsmRoutingMode::Weighted))
}

/// The labels the canary pods need to be in the canary lane.
pub fn canary_pod_labels(routing: &TrafficRouting) -> BTreeMap<String, String> {
    routing
        .asm
        .iter()
        .map(|asm| (LANE_TAG.to_owned(), asm.canary_lane.clone()))
        .collect()
}

/// Lanes entered by header match headers (exact) and URI (exact or prefix), one match; lanes
/// entered by weight only split.
fn capabilities(routing: &TrafficRouting) -> Capabilities {
    if weighted(routing) {
        return Capabilities::weights_only()
            .with_summary("lanes routed by ingress weight: weights only");
    }
    Capabilities {
        summary: "lanes routed by header: matches on headers (exact) and URI (exact \
                  or prefix); no weights, cookie, query, method or mirroring \
                  (set trafficRouting.asm.mode: weighted for weights)",
        weights: false,
        max_matches: 1,
        max_headers: usize::MAX,
        headers: MatchKinds::new(true, false, false),
        cookie: false,
        cookie_value: false,
        header_with_cookie: true,
        uri: MatchKinds::EXACT_OR_PREFIX,
        query: MatchKinds::NONE,
        method: false,
        mirror: false,
    }
}

fn check_settings(c: &mut Checker, routing: &TrafficRouting) {
    let Some(asm) = &routing.asm else { return };
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
        names::header_name(&asm.route_header),
    );
    if let Some(trace) = &asm.trace_header {
        c.check(
            "spec.trafficRouting.asm.traceHeader",
            names::header_name(trace),
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

/// What lanes can express: the canary lane is entered by its route header alone, and the
/// canary pods carry the canary lane's tag.
fn check_lanes(c: &mut Checker, spec: &RolloutSpec) {
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
