//! What users' requests may get during a rollout, judged against the route the engine says is
//! in effect: the rules every release must keep at every moment, whatever the provider, the
//! strategy, a restart or a failure.
//!
//! Given a [`Probe`] of the world and what the engine claims ([`Expectation`]: the route of
//! the Rollout's status, whether the canary Deployment is fully available, which request
//! matches the probe's matched requests carry), [`violations`] lists every broken rule:
//!
//! - **(a) [`Rule::Unserved`]**: a request answered by no pod, whatever the class, ever.
//! - **(b) [`Rule::CanaryAboveWeight`]**: plain requests reach the canary more often than the
//!   route's canary weight (the probe's shares are exact, so beyond [`TOLERANCE`]);
//!   **[`Rule::CanaryOffWeight`]**: once the canary Deployment is fully available, the plain
//!   requests' canary share differs from the weight.
//! - **(c) [`Rule::CanaryOutsideRelease`]**: canary pods answer any request while the route
//!   sends the canary nothing (weight 0 and no matches): before the first route step, after a
//!   rollback, an abort or a promotion put the route back on stable. Mirrored copies are not
//!   answers; [`Rule::MirrorOutsideRoute`] holds them to the route's mirror percent.
//! - **(d) [`Rule::MatchedWithoutMatch`]**: matched requests reach the canary beyond the
//!   weight while the route has no matches; **[`Rule::MatchedMissCanary`]**: once the canary is
//!   fully available, requests carrying one of the route's matches are not all answered by it.
//! - **[`Rule::UnownedPods`]** (when [`Expectation::only_rollout_pods`]): pods of neither
//!   Deployment answer, such as canary pods whose ReplicaSet was collected before them and that
//!   the stable Service selects again.
//!
//! What the engine legitimately does stays within these rules: promotion first routes weight
//! 100 to a canary at full size, so the plain share is 1 and matches the route while stable
//! rolls; blue-green switches with weight 100; A/B steps route matches with weight 0; mirror
//! steps copy requests with weight 0.
//!
//! Two exceptions come from the data planes themselves, not from leniency:
//!
//! - ASM lane requests ([`RequestClass::Lane`]) already travel the canary lane: they are held
//!   to (a) and (c) only (outside a release, the canary lane does not list the service and
//!   they fall back to the base lane).
//! - Under ASM's weighted mode the weight splits the ingress gateway's requests; a sidecar's
//!   request without the route header stays in the base lane by design (Alibaba's lane
//!   fallback), so only gateway callers must match the weight (sidecars are still held to the
//!   upper bound).
//!
//! ```
//! use canary_core::sim::dataplane::probe::invariants::{Expectation, Rule, violations};
//! use canary_core::sim::dataplane::probe::{CallerProbe, Probe, RequestClass};
//! use canary_core::api::load::plan_from_yaml;
//! use canary_core::RouteState;
//!
//! let plan = plan_from_yaml("
//! apiVersion: canary.rs/v1alpha1
//! kind: Rollout
//! metadata: {name: web, namespace: shop}
//! spec:
//!   workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
//!   service: {name: web, port: 80}
//!   trafficRouting: {kuma: {}}
//!   strategy: {canary: {steps: [{weight: 20}]}}
//! ").unwrap();
//! let probe = Probe {
//!     callers: vec![CallerProbe {
//!         caller: "sidecar in shop → web:80/".into(),
//!         class: RequestClass::Plain,
//!         request: "GET web:80/".into(),
//!         stable: 0.7,
//!         canary: 0.3,
//!         other: 0.0,
//!         none: 0.0,
//!         mirrored_to_canary: 0.0,
//!         unserved_because: None,
//!     }],
//!     unbuilt: Vec::new(),
//! };
//! let route = RouteState::weighted(20);
//! let found = violations(&plan, &Expectation::new(&route), &probe);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].rule, Rule::CanaryAboveWeight);
//! ```

use std::fmt;

use crate::api::plan::RolloutPlan;
use crate::api::spec::RequestMatch;
use crate::traffic::RouteState;

use super::super::{PodRef, World};
use super::{CallerProbe, EPSILON, Probe, RequestClass};

/// How far an exact share may stray from what the route asks (rounding of weights spread over
/// pods, never sampling: the probe's shares are exact).
pub const TOLERANCE: f64 = 1e-6;

/// What the engine says is in effect when a probe is taken.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The route in effect: the route of the Rollout's status (the engine saves it before it
    /// applies it, and a pass that ends applies it).
    pub route: &'a RouteState,
    /// Every desired replica of the canary Deployment is ready (see
    /// [`canary_fully_available`]): then the canary's shares must equal the route's, not only
    /// stay below them.
    pub canary_available: bool,
    /// The request matches the probe's matched requests were built from.
    pub probed_matches: &'a [RequestMatch],
    /// Only the stable and canary Deployments run pods the Rollout's callers can reach: any
    /// other pod answering is a leftover (a pod whose ReplicaSet is gone).
    pub only_rollout_pods: bool,
}

impl<'a> Expectation<'a> {
    /// `route` in effect, the canary not known to be fully available, no matched requests
    /// probed, other pods allowed.
    pub fn new(route: &'a RouteState) -> Self {
        Expectation {
            route,
            canary_available: false,
            probed_matches: &[],
            only_rollout_pods: false,
        }
    }
}

/// The rules of what users' requests may get (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// (a) Some requests are answered by no pod.
    Unserved,
    /// (b) Plain requests reach the canary more than the route's weight.
    CanaryAboveWeight,
    /// (b) The canary is fully available and the plain requests' canary share is not the
    /// route's weight.
    CanaryOffWeight,
    /// (c) Canary pods answer while the route sends the canary nothing.
    CanaryOutsideRelease,
    /// (c) Copies are mirrored to the canary while the route mirrors nothing, or more than it
    /// mirrors.
    MirrorOutsideRoute,
    /// (d) Matched requests reach the canary beyond the weight while the route has no matches.
    MatchedWithoutMatch,
    /// (d) The canary is fully available and requests carrying the route's matches are not
    /// all answered by it.
    MatchedMissCanary,
    /// Pods of neither Deployment answer.
    UnownedPods,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Unserved => "unserved",
            Rule::CanaryAboveWeight => "canary-above-weight",
            Rule::CanaryOffWeight => "canary-off-weight",
            Rule::CanaryOutsideRelease => "canary-outside-release",
            Rule::MirrorOutsideRoute => "mirror-outside-route",
            Rule::MatchedWithoutMatch => "matched-without-match",
            Rule::MatchedMissCanary => "matched-miss-canary",
            Rule::UnownedPods => "unowned-pods",
        })
    }
}

/// One broken rule for one caller and kind of request.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// What the requests got.
    pub entry: CallerProbe,
    /// Why it breaks the rule: what the route allows against what the requests got.
    pub why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.entry;
        write!(
            f,
            "[{}] {} ({} request `{}`): stable {:.4}, canary {:.4}, other {:.4}, none {:.4}, \
             mirrored to canary {:.4}: {}",
            self.rule,
            e.caller,
            e.class,
            e.request,
            e.stable,
            e.canary,
            e.other,
            e.none,
            e.mirrored_to_canary,
            self.why
        )?;
        if let Some(because) = &e.unserved_because {
            write!(f, " (unserved because {because})")?;
        }
        Ok(())
    }
}

/// Every rule `probe` breaks, given what `expected` says is in effect under `plan`.
pub fn violations(plan: &RolloutPlan, expected: &Expectation<'_>, probe: &Probe) -> Vec<Violation> {
    let route = expected.route;
    let weight = route.weight_percent() / 100.0;
    let sends_nothing = route.weight == 0 && route.matches.is_empty();
    let routed_matches = !expected.probed_matches.is_empty()
        && expected
            .probed_matches
            .iter()
            .all(|m| route.matches.contains(m));
    let mut out = Vec::new();
    for entry in &probe.callers {
        let mut broken = |rule: Rule, why: String| {
            out.push(Violation {
                rule,
                entry: entry.clone(),
                why,
            });
        };
        if entry.none > EPSILON {
            broken(
                Rule::Unserved,
                format!("{:.4} of these requests are answered by no pod", entry.none),
            );
        }
        if expected.only_rollout_pods && entry.other > EPSILON {
            broken(
                Rule::UnownedPods,
                format!(
                    "{:.4} of these requests are answered by pods of neither the stable nor the \
                     canary Deployment",
                    entry.other
                ),
            );
        }
        if sends_nothing && entry.canary > EPSILON {
            broken(
                Rule::CanaryOutsideRelease,
                format!(
                    "the route sends the canary nothing (weight 0, no matches), yet canary pods \
                     answer {:.4}",
                    entry.canary
                ),
            );
        }
        match route.mirror {
            None if entry.mirrored_to_canary > EPSILON => broken(
                Rule::MirrorOutsideRoute,
                format!(
                    "the route mirrors nothing, yet {:.4} of these requests are copied to the canary",
                    entry.mirrored_to_canary
                ),
            ),
            Some(percent) if entry.mirrored_to_canary > f64::from(percent) / 100.0 + TOLERANCE => {
                broken(
                    Rule::MirrorOutsideRoute,
                    format!(
                        "the route mirrors {percent}%, yet {:.4} of these requests are copied to the canary",
                        entry.mirrored_to_canary
                    ),
                );
            }
            _ => {}
        }
        match entry.class {
            RequestClass::Plain => {
                if entry.canary > weight + TOLERANCE {
                    broken(
                        Rule::CanaryAboveWeight,
                        format!(
                            "the route's canary weight is {weight:.4}, yet the canary answers {:.4}",
                            entry.canary
                        ),
                    );
                } else if expected.canary_available
                    && must_match_weight(plan, entry)
                    && (entry.canary - weight).abs() > TOLERANCE
                {
                    broken(
                        Rule::CanaryOffWeight,
                        format!(
                            "the canary Deployment is fully available and the route's canary \
                             weight is {weight:.4}, yet the canary answers {:.4}",
                            entry.canary
                        ),
                    );
                }
            }
            RequestClass::Matched => {
                if route.matches.is_empty() && !sends_nothing && entry.canary > weight + TOLERANCE {
                    broken(
                        Rule::MatchedWithoutMatch,
                        format!(
                            "the route has no matches and a canary weight of {weight:.4}, yet the \
                             canary answers {:.4} of the matched requests",
                            entry.canary
                        ),
                    );
                } else if routed_matches
                    && expected.canary_available
                    && entry.canary < 1.0 - TOLERANCE
                {
                    broken(
                        Rule::MatchedMissCanary,
                        format!(
                            "the route sends requests with this match to the canary, which is \
                             fully available, yet it answers {:.4} of them",
                            entry.canary
                        ),
                    );
                }
            }
            // Requests already in the canary lane: (a) and (c) only.
            RequestClass::Lane => {}
        }
    }
    out
}

/// True when the plain requests of `entry` must get exactly the weight once the canary is
/// available: every caller, except sidecars under ASM's weighted mode, whose requests without
/// the route header stay in the base lane (the weight splits the ingress gateway's requests).
fn must_match_weight(plan: &RolloutPlan, entry: &CallerProbe) -> bool {
    !(crate::traffic::asm::weighted(&plan.rollout.spec.traffic_routing)
        && entry.caller.starts_with("sidecar "))
}

/// True when the canary workload of `plan` exists in `world` wanting at least one pod, and at least that many of its pods are ready and not terminating (the serving
/// endpoints a data plane sends the canary's share to).
pub fn canary_fully_available(plan: &RolloutPlan, world: &World) -> bool {
    let canary = plan.canary_workload();
    let Some(workload) = world.get(plan.workload.kind, &plan.namespace, &canary) else {
        return false;
    };
    let desired = (plan.workload.desired_pods)(workload);
    if desired == 0 {
        return false;
    }
    let ready = world
        .all("Pod")
        .filter(|pod| World::ready(pod))
        .filter_map(|pod| {
            Some(PodRef {
                namespace: pod.pointer("/metadata/namespace")?.as_str()?.to_owned(),
                name: pod.pointer("/metadata/name")?.as_str()?.to_owned(),
            })
        })
        .filter(|pod| pod.namespace == plan.namespace)
        .filter(|pod| world.workload_of(pod, plan.workload).as_deref() == Some(canary.as_str()))
        .count();
    ready as u64 >= desired
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::load::plan_from_yaml;

    fn plan(provider: &str) -> RolloutPlan {
        plan_from_yaml(&format!(
            "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: shop}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  service: {{name: web, port: 80}}
  trafficRouting: {provider}
  strategy: {{canary: {{steps: [{{weight: 20}}]}}}}
"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn entry(caller: &str, class: RequestClass, stable: f64, canary: f64) -> CallerProbe {
        CallerProbe {
            caller: caller.to_owned(),
            class,
            request: "GET web:80/".to_owned(),
            stable,
            canary,
            other: 0.0,
            none: (1.0 - stable - canary).max(0.0),
            mirrored_to_canary: 0.0,
            unserved_because: None,
        }
    }

    fn probe(entries: Vec<CallerProbe>) -> Probe {
        Probe {
            callers: entries,
            unbuilt: Vec::new(),
        }
    }

    fn rules(found: &[Violation]) -> Vec<Rule> {
        found.iter().map(|v| v.rule).collect()
    }

    fn header_match() -> RequestMatch {
        serde_json::from_value(json!({"headers": {"x-canary": {"exact": "yes"}}}))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const SIDECAR: &str = "sidecar in shop → web:80/";

    #[test]
    fn unanswered_requests_break_the_first_rule_and_say_why() {
        let mut unserved = entry(SIDECAR, RequestClass::Plain, 0.5, 0.0);
        unserved.unserved_because = Some("no endpoints for shop/web".to_owned());
        let route = RouteState::stable();
        let found = violations(
            &plan("{kuma: {}}"),
            &Expectation::new(&route),
            &probe(vec![unserved]),
        );
        assert_eq!(rules(&found), [Rule::Unserved]);
        let text = found[0].to_string();
        assert!(text.contains(SIDECAR), "{text}");
        assert!(text.contains("none 0.5000"), "{text}");
        assert!(text.contains("no endpoints for shop/web"), "{text}");
    }

    #[test]
    fn the_canary_share_stays_under_the_weight_and_equals_it_once_available() {
        let plan = plan("{kuma: {}}");
        let route = RouteState::weighted(20);
        let under = probe(vec![entry(SIDECAR, RequestClass::Plain, 0.9, 0.1)]);
        let exact = probe(vec![entry(SIDECAR, RequestClass::Plain, 0.8, 0.2)]);
        let over = probe(vec![entry(SIDECAR, RequestClass::Plain, 0.7, 0.3)]);
        let warming = Expectation::new(&route);
        let available = Expectation {
            canary_available: true,
            ..warming
        };
        assert!(violations(&plan, &warming, &under).is_empty());
        assert!(violations(&plan, &warming, &exact).is_empty());
        assert_eq!(
            rules(&violations(&plan, &warming, &over)),
            [Rule::CanaryAboveWeight]
        );
        assert_eq!(
            rules(&violations(&plan, &available, &under)),
            [Rule::CanaryOffWeight]
        );
        assert!(violations(&plan, &available, &exact).is_empty());
        // Promotion: all traffic to a canary at full size.
        let all = RouteState::weighted(100);
        let promoting = probe(vec![entry(SIDECAR, RequestClass::Plain, 0.0, 1.0)]);
        let expected = Expectation {
            canary_available: true,
            ..Expectation::new(&all)
        };
        assert!(violations(&plan, &expected, &promoting).is_empty());
    }

    #[test]
    fn canary_pods_answer_nobody_while_the_route_sends_them_nothing() {
        let plan = plan("{kuma: {}}");
        let stable = RouteState::stable();
        let leaked = probe(vec![
            entry(SIDECAR, RequestClass::Plain, 0.75, 0.25),
            entry(SIDECAR, RequestClass::Matched, 0.0, 1.0),
        ]);
        let expected = Expectation {
            probed_matches: &[],
            ..Expectation::new(&stable)
        };
        let found = rules(&violations(&plan, &expected, &leaked));
        assert_eq!(
            found,
            [
                Rule::CanaryOutsideRelease,
                Rule::CanaryAboveWeight,
                Rule::CanaryOutsideRelease
            ]
        );
        let clean = probe(vec![entry(SIDECAR, RequestClass::Plain, 1.0, 0.0)]);
        assert!(violations(&plan, &expected, &clean).is_empty());
    }

    #[test]
    fn mirrored_copies_are_not_answers_but_stay_within_the_routes_mirror() {
        let plan = plan("{istio: {}}");
        let mut copied = entry(SIDECAR, RequestClass::Plain, 1.0, 0.0);
        copied.mirrored_to_canary = 0.5;
        let mirror = RouteState {
            mirror: Some(50),
            ..RouteState::stable()
        };
        let less = RouteState {
            mirror: Some(20),
            ..RouteState::stable()
        };
        let probe = probe(vec![copied]);
        assert!(violations(&plan, &Expectation::new(&mirror), &probe).is_empty());
        assert_eq!(
            rules(&violations(&plan, &Expectation::new(&less), &probe)),
            [Rule::MirrorOutsideRoute]
        );
        let stable = RouteState::stable();
        assert_eq!(
            rules(&violations(&plan, &Expectation::new(&stable), &probe)),
            [Rule::MirrorOutsideRoute]
        );
    }

    #[test]
    fn matched_requests_reach_the_canary_only_while_the_route_matches() {
        let plan = plan("{istio: {}}");
        let matches = [header_match()];
        let weighted = RouteState::weighted(30);
        let ab = RouteState {
            matches: matches.to_vec(),
            ..RouteState::stable()
        };
        let to_canary = probe(vec![
            entry(SIDECAR, RequestClass::Plain, 1.0, 0.0),
            entry(SIDECAR, RequestClass::Matched, 0.0, 1.0),
        ]);
        let by_weight = probe(vec![
            entry(SIDECAR, RequestClass::Plain, 0.7, 0.3),
            entry(SIDECAR, RequestClass::Matched, 0.7, 0.3),
        ]);
        let at = |route| Expectation {
            canary_available: true,
            probed_matches: &matches,
            ..Expectation::new(route)
        };
        // An A/B step: matched requests all to the canary, plain ones to stable.
        assert!(violations(&plan, &at(&ab), &to_canary).is_empty());
        assert_eq!(
            rules(&violations(&plan, &at(&ab), &by_weight)),
            [Rule::CanaryAboveWeight, Rule::MatchedMissCanary]
        );
        // A weighted step without matches: matched requests get the weight, no more.
        assert!(violations(&plan, &at(&weighted), &by_weight).is_empty());
        assert_eq!(
            rules(&violations(&plan, &at(&weighted), &to_canary)),
            [Rule::CanaryOffWeight, Rule::MatchedWithoutMatch]
        );
    }

    #[test]
    fn asm_lanes_and_weighted_sidecars_follow_the_lane_semantics() {
        let weighted = plan(
            "{asm: {laneGroup: g, canaryLane: canary, baseLane: base, routeHeader: x-tag, \
             mode: weighted, ingress: {uri: {exact: /}}}}",
        );
        let route = RouteState::weighted(40);
        let gateway = "gateway istio-system/ingressgateway → www.example.com/";
        let probe = probe(vec![
            entry(gateway, RequestClass::Plain, 0.6, 0.4),
            entry(SIDECAR, RequestClass::Plain, 1.0, 0.0),
            entry(SIDECAR, RequestClass::Lane, 0.0, 1.0),
        ]);
        let expected = Expectation {
            canary_available: true,
            ..Expectation::new(&route)
        };
        assert!(violations(&weighted, &expected, &probe).is_empty());
        // Outside a release the canary lane must not answer lane requests either.
        let stable = RouteState::stable();
        let found = violations(&weighted, &Expectation::new(&stable), &probe);
        assert_eq!(
            rules(&found),
            [
                Rule::CanaryOutsideRelease,
                Rule::CanaryAboveWeight,
                Rule::CanaryOutsideRelease
            ]
        );
    }

    #[test]
    fn pods_of_neither_deployment_break_the_rule_only_when_asked() {
        let plan = plan("{kuma: {}}");
        let mut orphaned = entry(SIDECAR, RequestClass::Plain, 0.5, 0.0);
        orphaned.other = 0.5;
        orphaned.none = 0.0;
        let route = RouteState::stable();
        let probe = probe(vec![orphaned]);
        assert!(violations(&plan, &Expectation::new(&route), &probe).is_empty());
        let strict = Expectation {
            only_rollout_pods: true,
            ..Expectation::new(&route)
        };
        assert_eq!(
            rules(&violations(&plan, &strict, &probe)),
            [Rule::UnownedPods]
        );
    }

    fn canary_world(desired: u64, ready: usize, terminating: bool) -> World {
        let mut objects = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web-canary", "namespace": "shop"},
                   "spec": {"replicas": desired}}),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "web-canary-c1", "namespace": "shop",
                                "ownerReferences": [{"kind": "Deployment", "name": "web-canary"}]}}),
        ];
        for i in 0..2 {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-canary-c1-{i}"), "namespace": "shop",
                             "ownerReferences": [{"kind": "ReplicaSet", "name": "web-canary-c1"}]},
                "status": {"conditions": [{"type": "Ready",
                                           "status": if i < ready { "True" } else { "False" }}]}});
            if terminating && i == 0 {
                pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
            objects.push(pod);
        }
        World::new(objects)
    }

    #[test]
    fn the_canary_is_fully_available_when_every_desired_replica_serves() {
        let plan = plan("{kuma: {}}");
        assert!(canary_fully_available(&plan, &canary_world(2, 2, false)));
        assert!(!canary_fully_available(&plan, &canary_world(2, 1, false)));
        assert!(!canary_fully_available(&plan, &canary_world(2, 2, true)));
        assert!(canary_fully_available(&plan, &canary_world(1, 1, false)));
        assert!(!canary_fully_available(&plan, &canary_world(0, 2, false)));
        assert!(!canary_fully_available(&plan, &World::default()));
    }
}
