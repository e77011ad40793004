//! What users' requests get: the lanes canary renders for the mocka → mockb → mockc chain, put
//! in a cluster with the chain's stable pods (in the base lane) and mocka's canary pods (in the
//! canary lane), and served by the model of ASM lanes (`canary_core::sim::dataplane::asm`, written
//! from ASM's and Istio's semantics, not from this crate) through the probe every caller kind
//! sends its requests with.
//!
//! In which order ASM lists the two lanes' gateway routes is not documented (see
//! `render::ingress_rule`), so each release runs with the canary lane's routes first and with
//! the base lane's first: users without a route header must be served by the stable pods under
//! both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary_core::k8s::objects::Objects;
use canary_core::sim::dataplane::World;
use canary_core::sim::dataplane::probe::{CallerProbe, Probe, RequestClass, probe};
use canary_core::{RolloutPlan, RouteState};
use serde_json::{Value, json};

const EPS: f64 = 1e-9;

fn example(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../examples/rollouts/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn plan_from(text: &str) -> RolloutPlan {
    canary_core::api::load::plan_from_yaml(text).unwrap()
}

/// mocka's example as it is: one step routing requests with `x-asm-prefer-tag: canary`.
fn header_plan() -> RolloutPlan {
    plan_from(&example("mocka-asm.yaml"))
}

/// mocka's example with `ingress` replaced by `ingress` (YAML flow text).
fn header_plan_with_ingress(ingress: &str) -> RolloutPlan {
    let text = example("mocka-asm.yaml").replace(
        "      ingress: {uri: {exact: /mock}}",
        &format!("      ingress: {ingress}"),
    );
    assert!(text.contains(ingress));
    plan_from(&text)
}

/// mocka's example with weighted lanes and steps of 20 % and 50 %.
fn weighted_plan() -> RolloutPlan {
    let text = example("mocka-asm.yaml")
        .replace(
            "      ingress: {uri: {exact: /mock}}",
            "      ingress: {uri: {exact: /mock}}\n      mode: weighted",
        )
        .replace(
            "      - matches:\n        - headers: {x-asm-prefer-tag: {exact: canary}}\n        pause: {}",
            "      - {weight: 20, pause: {}}\n      - {weight: 50, pause: {}}",
        );
    assert!(text.contains("mode: weighted") && text.contains("weight: 50"));
    plan_from(&text)
}

/// A ReplicaSet of `deployment` and `count` ready pods of it carrying `labels`.
fn pods(deployment: &str, hash: &str, count: usize, labels: &Value) -> Vec<Value> {
    let rs = format!("{deployment}-{hash}");
    let mut labels = labels.clone();
    labels["pod-template-hash"] = json!(hash);
    let mut objects = vec![json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": rs, "namespace": "default", "labels": labels,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "controller": true}]}
    })];
    for i in 0..count {
        objects.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{rs}-{i}"), "namespace": "default", "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "controller": true}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
    }
    objects
}

/// The chain's example objects (Services, stable Deployments) with two ready pods of each
/// stable Deployment, as its pod template labels them.
fn chain() -> Objects {
    let mut objects =
        canary_core::api::load::objects_from_yaml(&example("asm-chain-objects.yaml")).unwrap();
    let stable: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .cloned()
        .collect();
    assert_eq!(stable.len(), 3);
    for deployment in stable {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        objects.extend(pods(name, "stable1", 2, labels));
    }
    objects
}

/// mocka's canary Deployment with `count` ready pods in the canary lane.
fn with_canary(objects: &Objects, plan: &RolloutPlan, count: usize) -> Objects {
    let mut objects = objects.clone();
    let name = plan.canary_workload();
    let labels = json!({"app": "mocka", "version": "v2", "ASM_TRAFFIC_TAG": "canary"});
    objects.insert(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": count, "selector": {"matchLabels": labels.clone()},
                 "template": {"metadata": {"labels": labels.clone()}}}
    }));
    objects.extend(pods(&name, "canary1", count, &labels));
    objects
}

/// What the cluster holds after `plan` applied `route` over `objects`.
fn apply(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Objects {
    let rendered = canary_asm::render(plan, route, objects).unwrap();
    let mut next = objects.clone();
    next.extend(rendered.objects());
    next
}

/// The chain's lanes as mockb's and mockc's Rollouts registered them (all traffic on stable),
/// with `entry`'s ingress routing strategy (the Rollouts of a group must agree on it).
fn registered(objects: &Objects, entry: &RolloutPlan) -> Objects {
    let mode = entry
        .rollout
        .spec
        .traffic_routing
        .asm
        .as_ref()
        .and_then(|asm| asm.mode)
        .map(|mode| serde_json::to_value(mode).unwrap());
    let mut objects = objects.clone();
    for name in ["mockb-asm.yaml", "mockc-asm.yaml"] {
        let mut text = example(name);
        if let Some(mode) = &mode {
            text = text
                .replace(
                    "      traceHeader: my-request-id",
                    &format!(
                        "      traceHeader: my-request-id\n      mode: {}",
                        mode.as_str().unwrap()
                    ),
                )
                .replace(
                    "      - matches:\n        - headers: {x-asm-prefer-tag: {exact: canary}}\n        pause: {}",
                    "      - {weight: 20, pause: {}}",
                );
        }
        let plan = plan_from(&text);
        objects = apply(&plan, &RouteState::stable(), &objects);
    }
    objects
}

/// Which lane's gateway routes ASM lists first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Canary,
    Base,
}

/// `objects` as the data plane sees them, the lane listed first created first.
fn world(objects: &Objects, first: First) -> World {
    let (early, late) = ("2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z");
    let lanes = match first {
        First::Canary => [("canary", early), ("base", late)],
        First::Base => [("base", early), ("canary", late)],
    };
    let mut objects = objects.clone();
    for (lane, at) in lanes {
        let mut object = objects.get("ASMSwimLane", "", lane).unwrap().clone();
        object["metadata"]["creationTimestamp"] = json!(at);
        objects.insert(object);
    }
    World::new(objects.iter().cloned().collect())
}

fn what(plan: &RolloutPlan, world: &World, route: &RouteState) -> Probe {
    probe(plan, world, &route.matches)
}

fn gateway(entry: &CallerProbe) -> bool {
    entry.caller.starts_with("gateway ")
}

/// Every entry of `class` is answered in full by the stable pods.
fn all_stable(probe: &Probe, class: RequestClass, when: &str) {
    let entries: Vec<&CallerProbe> = probe.of(class).collect();
    assert!(
        !entries.is_empty(),
        "{when}: no {class} requests: {probe:#?}"
    );
    assert!(
        entries.iter().any(|e| gateway(e)),
        "{when}: no gateway caller: {probe:#?}"
    );
    for entry in entries {
        assert!(
            (entry.stable - 1.0).abs() < EPS && entry.none < EPS,
            "{when}: {class} request from {} gets stable {}, canary {}, nobody {} ({:?})",
            entry.caller,
            entry.stable,
            entry.canary,
            entry.none,
            entry.unserved_because
        );
    }
}

/// Nobody is left unanswered and no canary pod answers anyone.
fn nobody_on_canary(probe: &Probe, when: &str) {
    assert!(probe.worst_unserved().is_none(), "{when}: {probe:#?}");
    for class in [
        RequestClass::Plain,
        RequestClass::Matched,
        RequestClass::Lane,
    ] {
        assert!(
            probe.max_canary(class) < EPS,
            "{when}: {class} requests reach the canary: {probe:#?}"
        );
    }
}

#[test]
fn plain_gateway_requests_reach_stable_pods_through_a_whole_header_release() {
    let plan = header_plan();
    for first in [First::Canary, First::Base] {
        let cluster = registered(&chain(), &plan);
        // Adopted: all traffic on stable, the canary's pods starting.
        let before = with_canary(&apply(&plan, &RouteState::stable(), &cluster), &plan, 1);
        let probe = what(&plan, &world(&before, first), &RouteState::stable());
        all_stable(&probe, RequestClass::Plain, "before the first step");
        all_stable(&probe, RequestClass::Lane, "before the first step");
        nobody_on_canary(&probe, "before the first step");
        // Every step.
        let mut objects = before;
        for (index, step) in plan.steps.iter().enumerate() {
            objects = apply(&plan, &step.route, &objects);
            let probe = what(&plan, &world(&objects, first), &step.route);
            let when = format!("step {} with the {first:?} lane's routes first", index + 1);
            all_stable(&probe, RequestClass::Plain, &when);
            assert!(probe.worst_unserved().is_none(), "{when}: {probe:#?}");
        }
        // Rolled back: the route back on stable while the bad canary's pods still run.
        let undone = apply(&plan, &RouteState::stable(), &objects);
        let probe = what(&plan, &world(&undone, first), &RouteState::stable());
        all_stable(&probe, RequestClass::Plain, "after rollback");
        all_stable(&probe, RequestClass::Lane, "after rollback");
        nobody_on_canary(&probe, "after rollback");
    }
}

#[test]
fn header_requests_reach_the_canary_only_at_the_steps_that_route_them() {
    let plan = header_plan();
    let cluster = with_canary(&registered(&chain(), &plan), &plan, 1);
    let before = apply(&plan, &RouteState::stable(), &cluster);
    let probe = what(&plan, &world(&before, First::Canary), &RouteState::stable());
    nobody_on_canary(&probe, "before the first step");
    let step = &plan.steps[0].route;
    assert!(!step.matches.is_empty());
    let routed = apply(&plan, step, &before);
    // With the canary lane's routes first (as with a catch-all entry, below), every caller's
    // header request reaches the canary and nothing else does.
    let probe = what(&plan, &world(&routed, First::Canary), step);
    assert!(probe.worst_unserved().is_none(), "{probe:#?}");
    for class in [RequestClass::Matched, RequestClass::Lane] {
        assert!(probe.of(class).any(gateway), "{probe:#?}");
        for entry in probe.of(class) {
            assert!(
                (entry.canary - 1.0).abs() < EPS,
                "{class} request from {}: {entry:?}",
                entry.caller
            );
        }
    }
    all_stable(&probe, RequestClass::Plain, "at the header step");
    // With the base lane's routes first, its rule (which names no header) also takes the
    // header requests at the gateway: they are served by stable pods, never by nobody; the
    // sidecars' header requests still reach the canary.
    let probe = what(&plan, &world(&routed, First::Base), step);
    assert!(probe.worst_unserved().is_none(), "{probe:#?}");
    for entry in probe.of(RequestClass::Lane) {
        let want = if gateway(entry) { 0.0 } else { 1.0 };
        assert!((entry.canary - want).abs() < EPS, "{entry:?}");
    }
    // Promoted or undone: back on stable, whatever the order.
    let undone = apply(&plan, &RouteState::stable(), &routed);
    for first in [First::Canary, First::Base] {
        let probe = what(&plan, &world(&undone, first), &RouteState::stable());
        nobody_on_canary(&probe, "after the release");
        all_stable(&probe, RequestClass::Lane, "after the release");
    }
}

#[test]
fn with_a_catch_all_entry_the_gateway_tries_the_canary_lane_first_whatever_the_order() {
    for ingress in ["{}", "{uri: {prefix: /}}"] {
        let plan = header_plan_with_ingress(ingress);
        let cluster = with_canary(&registered(&chain(), &plan), &plan, 1);
        let step = &plan.steps[0].route;
        let routed = apply(&plan, step, &apply(&plan, &RouteState::stable(), &cluster));
        for first in [First::Canary, First::Base] {
            let probe = what(&plan, &world(&routed, first), step);
            let when = format!("ingress {ingress}, the {first:?} lane's routes first");
            assert!(probe.worst_unserved().is_none(), "{when}: {probe:#?}");
            all_stable(&probe, RequestClass::Plain, &when);
            for entry in probe.of(RequestClass::Lane) {
                assert!((entry.canary - 1.0).abs() < EPS, "{when}: {entry:?}");
            }
            let undone = apply(&plan, &RouteState::stable(), &routed);
            let probe = what(&plan, &world(&undone, first), &RouteState::stable());
            nobody_on_canary(&probe, &when);
        }
    }
}

#[test]
fn a_weighted_release_serves_everyone_and_gives_the_canary_the_steps_share() {
    let plan = weighted_plan();
    for first in [First::Canary, First::Base] {
        let cluster = with_canary(&registered(&chain(), &plan), &plan, 1);
        let mut objects = apply(&plan, &RouteState::stable(), &cluster);
        let probe = what(&plan, &world(&objects, first), &RouteState::stable());
        all_stable(&probe, RequestClass::Plain, "before the first step");
        nobody_on_canary(&probe, "before the first step");
        for step in &plan.steps {
            objects = apply(&plan, &step.route, &objects);
            let probe = what(&plan, &world(&objects, first), &step.route);
            let when = format!("at {} %", step.route.whole_percent());
            assert!(probe.worst_unserved().is_none(), "{when}: {probe:#?}");
            let share = f64::from(step.route.whole_percent()) / 100.0;
            for entry in probe.of(RequestClass::Plain).filter(|e| gateway(e)) {
                assert!(
                    (entry.canary - share).abs() < EPS
                        && (entry.stable + entry.canary - 1.0).abs() < EPS,
                    "{when}: {entry:?}"
                );
            }
        }
        let undone = apply(&plan, &RouteState::stable(), &objects);
        let probe = what(&plan, &world(&undone, first), &RouteState::stable());
        all_stable(&probe, RequestClass::Plain, "after rollback");
        nobody_on_canary(&probe, "after rollback");
    }
}

#[test]
fn a_downstream_canary_gets_header_requests_entering_at_the_stable_entry() {
    use canary_core::ProviderKind;
    use canary_core::sim::dataplane::{Caller, Request, serve};
    let mocka = header_plan();
    let mockb = plan_from(&example("mockb-asm.yaml"));
    let mut cluster = registered(&chain(), &mocka);
    cluster = apply(&mocka, &RouteState::stable(), &cluster);
    // mockb's canary pods, in the canary lane, and its header step.
    let labels = json!({"app": "mockb", "version": "v2", "ASM_TRAFFIC_TAG": "canary"});
    cluster.extend(pods("mockb-v1-canary", "canary1", 1, &labels));
    let step = mockb.steps[0].route.clone();
    let routed = apply(&mockb, &step, &cluster);
    let gateway = Caller::Gateway {
        namespace: "istio-system".into(),
        name: "ingressgateway".into(),
    };
    let from_mocka = Caller::Sidecar {
        namespace: "default".into(),
    };
    for first in [First::Canary, First::Base] {
        let world = world(&routed, first);
        let entering = |header: Option<&str>| {
            let request = Request::to("www.example.com", "/mock").from(gateway.clone());
            let request = match header {
                Some(lane) => request.header("x-asm-prefer-tag", lane),
                None => request,
            };
            serve(ProviderKind::Asm, &world, &request)
        };
        // Both enter at mocka's stable pods (mocka has no canary in the lane).
        for header in [None, Some("canary")] {
            let served = entering(header);
            assert!(
                served.unserved() < EPS
                    && served.share(|p| p.name.starts_with("mocka-v1")) > 1.0 - EPS,
                "{first:?} {header:?}: {served:?}"
            );
        }
        // mocka passes the header on: its call reaches mockb's canary; without it, mockb's
        // stable pods.
        let call = |header: Option<&str>| {
            let request = Request::to("mockb", "/").from(from_mocka.clone());
            let request = match header {
                Some(lane) => request.header("x-asm-prefer-tag", lane),
                None => request,
            };
            serve(ProviderKind::Asm, &world, &request)
        };
        let canary = call(Some("canary"));
        assert!(
            canary.share(|p| p.name.starts_with("mockb-v1-canary")) > 1.0 - EPS,
            "{canary:?}"
        );
        let plain = call(None);
        assert!(
            plain.share(|p| p.name.starts_with("mockb-v1-stable")) > 1.0 - EPS,
            "{plain:?}"
        );
    }
}
