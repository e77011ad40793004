//! Validation: every example passes, every rule reports its field path and what is allowed,
//! providers refuse what they cannot route, and no input makes the loader panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::path::Path;

use canary_core::api::load::{from_yaml, plan_from_yaml};
use canary_core::api::validate::validate;
use canary_core::{Error, ProviderKind};
use proptest::prelude::*;

const BASE: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
";

/// The validation errors of a Rollout made of `BASE` and `rest`, as `path: message` lines.
fn errors(rest: &str) -> Vec<String> {
    match plan_from_yaml(&format!("{BASE}{rest}")) {
        Ok(_) => Vec::new(),
        Err(Error::Invalid(errors)) => errors.0.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("not a validation error: {other}"),
    }
}

fn has(errors: &[String], path: &str, words: &str) -> bool {
    errors
        .iter()
        .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(words))
}

/// The example rollouts (files named `*-objects.yaml` hold the cluster objects some of them
/// build on).
fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rollouts");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| !path.to_string_lossy().ends_with("-objects.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_valid() {
    let files = examples();
    assert!(
        files.len() >= 8,
        "examples/rollouts holds the seed scenarios"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(error) = plan_from_yaml(&text) {
            panic!("{}: {error}", file.display());
        }
    }
}

#[test]
fn the_broken_example_reports_every_error_with_its_path() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid/podinfo-broken.yaml");
    let Err(Error::Invalid(errors)) = plan_from_yaml(&std::fs::read_to_string(path).unwrap())
    else {
        panic!("the broken example was accepted");
    };
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "metadata.name",
        "spec.workloadRef",
        "spec.service.port",
        "spec.newVersion.version",
        "spec.newVersion.replicas",
        "spec.newVersion.containers[0].name",
        "spec.newVersion.containers[0].livenessProbe.successThreshold",
        "spec.newVersion.containers[0].livenessProbe.periodSeconds",
        "spec.trafficRouting",
        "spec.strategy.canary.steps[0].pause.duration",
        "spec.strategy.canary.steps[1].weight",
        "spec.analysis.interval",
        "spec.analysis.failureLimit",
        "spec.analysis.metrics[0].thresholdRange",
        "spec.analysis.metrics[0].name",
        "spec.analysis.metrics[1].prometheus.address",
        "spec.analysis.metrics[1].prometheus.query",
        "spec.progressDeadline",
    ] {
        assert!(
            paths.contains(&expected),
            "no error at {expected}: {paths:?}"
        );
    }
}

#[test]
fn weights_and_steps_that_cannot_progress_are_refused() {
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy: {canary: {steps: [{weight: 120}, {weight: -1}]}}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.canary.steps[0].weight",
            "120 is not within 0..=100"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.canary.steps[1].weight",
            "-1 is not within 0..=100"
        ),
        "{e:?}"
    );
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy: {canary: {stepWeight: 0, maxWeight: 50}}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.canary.stepWeight",
            "never reaches maxWeight"
        ),
        "{e:?}"
    );
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy: {canary: {stepWeight: 60, maxWeight: 50}}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.canary.stepWeight",
            "overshoots maxWeight 50"
        ),
        "{e:?}"
    );
    let e = errors("  trafficRouting: {kuma: {}}\n  strategy: {canary: {stepWeight: 10}}\n");
    assert!(has(&e, "spec.strategy.canary", "go together"), "{e:?}");
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy: {canary: {stepWeight: 10, maxWeight: 20, steps: [{weight: 5}]}}\n",
    );
    assert!(has(&e, "spec.strategy.canary", "not both"), "{e:?}");
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy: {canary: {steps: [{weight: 0}, {pause: {}}]}}\n",
    );
    assert!(
        has(&e, "spec.strategy.canary", "no step sends traffic"),
        "{e:?}"
    );
}

#[test]
fn the_shorthand_caps_the_last_step_at_max_weight() {
    let plan = plan_from_yaml(&format!(
        "{BASE}  trafficRouting: {{kuma: {{}}}}\n  strategy: {{canary: {{stepWeight: 20, maxWeight: 50}}}}\n"
    ))
    .unwrap();
    let weights: Vec<u32> = plan.steps.iter().map(|s| s.route.weight).collect();
    assert_eq!(weights, [20, 40, 50]);
}

#[test]
fn exactly_one_strategy_and_one_provider() {
    let e = errors("  trafficRouting: {}\n  strategy: {}\n");
    assert!(has(&e, "spec.trafficRouting", "found none"), "{e:?}");
    assert!(has(&e, "spec.strategy", "found none"), "{e:?}");
    let e = errors(
        "  trafficRouting: {istio: {}, kuma: {}}\n  strategy: {blueGreen: {}, mirror: {}}\n",
    );
    assert!(has(&e, "spec.trafficRouting", "found istio, kuma"), "{e:?}");
    assert!(has(&e, "spec.strategy", "found blueGreen, mirror"), "{e:?}");
}

#[test]
fn a_plugin_must_be_registered_and_its_config_bounded() {
    let e = errors("  trafficRouting: {plugin: {name: traefik}}\n  strategy: {canary: {}}\n");
    assert!(
        has(
            &e,
            "spec.trafficRouting.plugin.name",
            "`traefik` is not a registered traffic provider (none is registered; built in: \
             istio, nginx, kuma, asm, gatewayAPI)"
        ),
        "{e:?}"
    );
    let e = errors("  trafficRouting: {plugin: {name: kuma}}\n  strategy: {canary: {}}\n");
    assert!(
        has(
            &e,
            "spec.trafficRouting.plugin.name",
            "`kuma` is built in: set spec.trafficRouting.kuma instead"
        ),
        "{e:?}"
    );

    static WEIGHTS: canary_core::traffic::ProviderDescriptor =
        canary_core::traffic::ProviderDescriptor::plugin("weights", |_| {
            canary_core::Capabilities::weights_only()
        });
    let registry = canary_core::traffic::Registry::builtin()
        .register(&WEIGHTS)
        .unwrap();
    let big = "x".repeat(canary_core::api::validate::limits::MAX_PLUGIN_CONFIG_BYTES);
    let yaml = format!(
        "{BASE}  trafficRouting: {{plugin: {{name: weights, config: {{blob: {big}}}}}}}\n  strategy: {{canary: {{stepWeight: 50, maxWeight: 100}}}}\n"
    );
    let rollout = from_yaml(&yaml).unwrap();
    let e = canary_core::api::validate::validate_with(&rollout, &registry).unwrap_err();
    assert!(
        e.to_string()
            .contains("spec.trafficRouting.plugin.config: 16395 bytes as JSON: at most 16384"),
        "{e}"
    );
    let plan = canary_core::api::validate::validate_with(
        &from_yaml(&format!(
            "{BASE}  trafficRouting: {{plugin: {{name: weights, config: {{any: [1, {{deep: true}}]}}}}}}\n  strategy: {{canary: {{stepWeight: 50, maxWeight: 100}}}}\n"
        ))
        .unwrap(),
        &registry,
    )
    .unwrap();
    assert_eq!(plan.provider.name, "weights");
    // The config reaches the provider as written.
    assert_eq!(
        plan.rollout
            .spec
            .traffic_routing
            .plugin_config()
            .map(|c| c["any"][1]["deep"].clone()),
        Some(canary_core::serde_json::Value::Bool(true))
    );
}

#[test]
fn gateway_api_settings_name_one_route_and_follow_the_route_crds() {
    let canary = "  strategy: {canary: {stepWeight: 20, maxWeight: 60}}\n";
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{httpRoute: shop, grpcRoute: pay}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI",
            "found httpRoute, grpcRoute"
        ),
        "{e:?}"
    );
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{httpRoute: shop, hostnames: [shop.example.com]}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.hostnames",
            "only for a generated route"
        ),
        "{e:?}"
    );
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{parentRefs: [{{name: public}}], hostnames: ['10.0.0.1']}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.hostnames[0]",
            "not a hostname"
        ),
        "{e:?}"
    );
    let ab = |routing: &str, matches: &str| {
        errors(&format!(
            "  trafficRouting: {{gatewayAPI: {routing}}}\n  strategy: {{abTest: {{matches: [{matches}]}}}}\n"
        ))
    };
    let e = ab("{httpRoute: shop}", "{uri: {prefix: '/a//b'}}");
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].uri",
            "must not hold `//`"
        ),
        "{e:?}"
    );
    let e = ab("{grpcRoute: pay}", "{uri: {prefix: /pay}}");
    assert!(
        has(&e, "spec.strategy.abTest.matches[0].uri", "a GRPCRoute"),
        "{e:?}"
    );
    assert!(
        ab(
            "{httpRoute: shop}",
            "{headers: {x-beta: {regex: 'on|yes'}}, method: GET}"
        )
        .is_empty()
    );
    let e = ab(
        "{parentRefs: [{name: public}], routeKind: GRPCRoute}",
        "{method: GET}",
    );
    assert!(
        has(&e, "spec.strategy.abTest.matches[0].method", "a GRPCRoute"),
        "{e:?}"
    );
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{httpRoute: shop, routeKind: GRPCRoute}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.routeKind",
            "only for a generated route"
        ),
        "{e:?}"
    );
}

#[test]
fn a_sticky_canary_needs_an_http_route_and_a_cookie_name() {
    let canary = "  strategy: {canary: {stepWeight: 20, maxWeight: 60}}\n";
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{grpcRoute: pay, sessionAffinity: {{}}}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.sessionAffinity",
            "gRPC clients keep no cookies"
        ),
        "{e:?}"
    );
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{httpRoute: shop, sessionAffinity: {{cookieName: 'a b', maxAge: 200h}}}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.sessionAffinity.cookieName",
            "not a cookie name"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.sessionAffinity.maxAge",
            "at most 168h"
        ),
        "{e:?}"
    );
    assert!(
        errors(&format!(
            "  trafficRouting: {{gatewayAPI: {{httpRoute: shop, sessionAffinity: {{cookieName: beta}}}}}}\n{canary}"
        ))
        .is_empty()
    );
}

#[test]
fn gateway_api_parents_and_regex_paths_follow_the_route_crds() {
    let canary = "  strategy: {canary: {stepWeight: 20, maxWeight: 60}}\n";
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{parentRefs: [{{name: public}}, {{name: public, sectionName: https}}]}}}}\n{canary}"
    ));
    assert!(
        has(
            &e,
            "spec.trafficRouting.gatewayAPI.parentRefs[1]",
            "a sectionName of its own"
        ),
        "{e:?}"
    );
    assert!(
        errors(&format!(
            "  trafficRouting: {{gatewayAPI: {{parentRefs: [{{name: public, sectionName: http}}, {{name: public, sectionName: https}}]}}}}\n{canary}"
        ))
        .is_empty()
    );
    let long = "a".repeat(1025);
    let e = errors(&format!(
        "  trafficRouting: {{gatewayAPI: {{httpRoute: shop}}}}\n  strategy: {{abTest: {{matches: [{{uri: {{regex: '{long}'}}}}]}}}}\n"
    ));
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].uri.regex",
            "1024 characters"
        ),
        "{e:?}"
    );
}

#[test]
fn gateway_api_builtin_metrics_need_a_known_implementation() {
    let rollout = |implementation: &str, metric: &str| {
        errors(&format!(
            "  trafficRouting: {{gatewayAPI: {{httpRoute: shop{implementation}}}}}\n  strategy: {{canary: {{stepWeight: 20, maxWeight: 60}}}}\n  analysis:\n    metrics:\n    - {metric}\n"
        ))
    };
    let builtin = "{name: request-success-rate, thresholdRange: {min: 99}}";
    for implementation in ["", ", implementation: other"] {
        let e = rollout(implementation, builtin);
        assert!(
            has(
                &e,
                "spec.trafficRouting.gatewayAPI.implementation",
                "set `istio` or `envoy-gateway`"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "spec.analysis.metrics[0]",
                "`gatewayAPI` has none for these settings"
            ),
            "{e:?}"
        );
        let custom = "{name: errors, thresholdRange: {max: 1}, prometheus: {query: 'sum(rate(x{route=\"{{ route }}\"}[1m]))'}}";
        assert!(
            rollout(implementation, custom).is_empty(),
            "{implementation}: {:?}",
            rollout(implementation, custom)
        );
    }
    for implementation in [", implementation: istio", ", implementation: envoy-gateway"] {
        assert!(
            rollout(implementation, builtin).is_empty(),
            "{implementation}"
        );
    }
}

#[test]
fn nginx_refuses_what_it_cannot_route_and_says_what_it_can() {
    let e = errors(
        "  trafficRouting: {nginx: {ingress: podinfo}}\n  strategy:\n    abTest:\n      matches:\n      - headers: {x-a: {exact: '1'}, x-b: {exact: '2'}}\n        uri: {prefix: /api}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].headers",
            "nginx cannot route"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].uri",
            "nginx supports weights; one match"
        ),
        "{e:?}"
    );
    let e = errors("  trafficRouting: {nginx: {ingress: podinfo}}\n  strategy: {mirror: {}}\n");
    assert!(
        has(&e, "spec.strategy.mirror", "nginx cannot mirror traffic"),
        "{e:?}"
    );
    let e = errors(
        "  trafficRouting: {nginx: {ingress: podinfo}}\n  strategy: {abTest: {matches: [{headers: {x-a: {exact: '1'}}}, {cookie: {name: c}}]}}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches",
            "2 matches, but nginx routes at most 1"
        ),
        "{e:?}"
    );
    // nginx tries the header, then the cookie, each alone: it cannot require both.
    let e = errors(
        "  trafficRouting: {nginx: {ingress: podinfo}}\n  strategy: {abTest: {matches: [{headers: {x-a: {regex: '^v[0-9]+$'}}, cookie: {name: canary}}]}}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].cookie",
            "a header and a cookie condition in one match"
        ),
        "{e:?}"
    );
    for one in [
        "{headers: {x-a: {regex: '^v[0-9]+$'}}}",
        "{cookie: {name: canary}}",
    ] {
        assert!(
            errors(&format!("  trafficRouting: {{nginx: {{ingress: podinfo}}}}\n  strategy: {{abTest: {{matches: [{one}]}}}}\n")).is_empty(),
            "{one} is what nginx does"
        );
    }
}

#[test]
fn other_providers_refuse_what_they_cannot_route() {
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy: {abTest: {matches: [{cookie: {name: beta}}]}}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].cookie",
            "kuma cannot route cookie"
        ),
        "{e:?}"
    );
    let asm = "  trafficRouting: {asm: {laneGroup: g, canaryLane: canary, baseLane: base, routeHeader: x-asm-prefer-tag}}\n";
    let e = errors(&format!(
        "{asm}  strategy: {{canary: {{stepWeight: 10, maxWeight: 50}}}}\n"
    ));
    assert!(
        has(&e, "spec.strategy.canary", "asm cannot route by weight"),
        "{e:?}"
    );
    let weighted = asm.replace("x-asm-prefer-tag}", "x-asm-prefer-tag, mode: weighted}");
    assert!(
        errors(&format!(
            "{weighted}  strategy: {{canary: {{stepWeight: 10, maxWeight: 50}}}}\n"
        ))
        .is_empty()
    );
    assert!(ProviderKind::Istio.capabilities(&Default::default()).mirror);
}

#[test]
fn matches_are_well_formed() {
    let e = errors(
        "  trafficRouting: {istio: {}}\n  strategy:\n    abTest:\n      matches:\n      - headers: {X-Canary: {exact: a}}\n      - headers: {x-b: {exact: a, prefix: b}}\n      - uri: {regex: '(unclosed'}\n      - {}\n      - method: FETCH\n",
    );
    assert!(
        has(&e, "spec.strategy.abTest.matches[0].headers", "lowercase"),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[1].headers.x-b",
            "exactly one of exact, prefix, regex"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[2].uri.regex",
            "not a regular expression"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[3]",
            "at least one condition"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[4].method",
            "`FETCH` is not one of"
        ),
        "{e:?}"
    );
}

#[test]
fn kuma_paths_are_absolute_and_prefixes_whole_segments() {
    let e = errors(
        "  trafficRouting: {kuma: {}}\n  strategy:\n    abTest:\n      matches:\n      - uri: {prefix: /api/}\n      - uri: {prefix: api}\n      - uri: {exact: login}\n      - uri: {prefix: /}\n      - uri: {prefix: /api}\n      - uri: {exact: /login/}\n",
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].uri.prefix",
            "write `/api` (it matches `/api` and the paths under it)"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[1].uri.prefix",
            "absolute paths only; write `/api`"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[2].uri.exact",
            "absolute paths only"
        ),
        "{e:?}"
    );
    assert_eq!(
        e.len(),
        3,
        "`/`, `/api` and an exact `/login/` are fine: {e:?}"
    );
    // Only Kuma reads prefixes by segment.
    let istio = errors(
        "  trafficRouting: {istio: {}}\n  strategy: {abTest: {matches: [{uri: {prefix: /api/}}]}}\n",
    );
    assert!(istio.is_empty(), "{istio:?}");
}

#[test]
fn new_version_settings_follow_the_kubesphere_rules() {
    let strategy = "  trafficRouting: {istio: {}}\n  strategy: {blueGreen: {}}\n";
    let e = errors(&format!(
        "  newVersion:
    version: v2-canary-build-0001
    replicas: 0
    containers:
    - name: app
      imagePullPolicy: Sometimes
      env: [{{name: A, value: x}}, {{name: A, value: y}}]
      resources: {{requests: {{cpu: '2', memory: 1Gi}}, limits: {{cpu: 500m, memory: lots}}}}
      readinessProbe: {{httpGet: {{port: 8080}}, successThreshold: 3, timeoutSeconds: -1}}
      startupProbe: {{exec: {{command: [true]}}, tcpSocket: {{port: 1}}, successThreshold: 2}}
    - name: app
      image: 'bad image'
{strategy}"
    ));
    let c = "spec.newVersion.containers";
    assert!(
        has(
            &e,
            "spec.newVersion.version",
            "1 to 16 lowercase letters and digits"
        ),
        "{e:?}"
    );
    assert!(
        has(&e, "spec.newVersion.replicas", "must be at least 1"),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{c}[0].imagePullPolicy"),
            "Always, IfNotPresent, Never"
        ),
        "{e:?}"
    );
    assert!(
        has(&e, &format!("{c}[0].env[1].name"), "given twice"),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{c}[0].resources.requests.cpu"),
            "larger than the limit"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{c}[0].resources.limits.memory"),
            "not a quantity"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{c}[0].readinessProbe.timeoutSeconds"),
            "must be at least 0"
        ),
        "{e:?}"
    );
    assert!(
        !e.iter()
            .any(|x| x.contains("readinessProbe.successThreshold")),
        "readiness may need 3 successes"
    );
    assert!(
        has(
            &e,
            &format!("{c}[0].startupProbe"),
            "exactly one of httpGet, exec, tcpSocket"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{c}[0].startupProbe.successThreshold"),
            "must be 1"
        ),
        "{e:?}"
    );
    assert!(has(&e, &format!("{c}[1].name"), "given twice"), "{e:?}");
    assert!(has(&e, &format!("{c}[1].image"), "without spaces"), "{e:?}");
    let long = "a".repeat(64);
    let e = errors(&format!(
        "  newVersion: {{containers: [{{name: {long}}}]}}\n{strategy}"
    ));
    assert!(has(&e, &format!("{c}[0].name"), "longer than 63"), "{e:?}");
}

#[test]
fn names_follow_kubernetes_rules() {
    let long = "a".repeat(254);
    let text =
        format!("{BASE}  trafficRouting: {{istio: {{}}}}\n  strategy: {{blueGreen: {{}}}}\n")
            .replace(
                "name: podinfo, namespace",
                &format!("name: {long}, namespace"),
            );
    let Err(Error::Invalid(e)) = plan_from_yaml(&text) else {
        panic!("accepted")
    };
    assert_eq!(e.0[0].path, "metadata.name");
    assert!(e.0[0].message.contains("longer than 253"));

    // A valid object name, but too long for the label that names the Rollout on its pods.
    let label = text.replace(&long, &"a".repeat(64));
    let Err(Error::Invalid(e)) = plan_from_yaml(&label) else {
        panic!("accepted")
    };
    assert_eq!(e.0[0].path, "metadata.name");
    assert!(
        e.0[0].message.contains("longer than 63"),
        "{}",
        e.0[0].message
    );
    assert!(plan_from_yaml(&text.replace(&long, &"a".repeat(63))).is_ok());
}

#[test]
fn unknown_fields_and_broken_yaml_are_located() {
    let Err(Error::Parse { message, line, .. }) = from_yaml(&format!(
        "{BASE}  trafficRouting: {{istio: {{virtualServise: {{name: x}}}}}}\n"
    )) else {
        panic!("accepted")
    };
    assert!(message.contains("virtualServise"), "{message}");
    assert_eq!(line, Some(7));
    let Err(Error::Parse { line, column, .. }) = from_yaml("spec:\n  a: [1, 2\n  b: 3\n") else {
        panic!("accepted")
    };
    assert!(line.is_some() && column.is_some());
}

#[test]
fn a_plan_round_trips_through_yaml() {
    for file in examples() {
        let rollout = from_yaml(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let again = from_yaml(&serde_saphyr::to_string(&rollout).unwrap()).unwrap();
        assert_eq!(rollout, again, "{}", file.display());
        assert_eq!(validate(&rollout), validate(&again));
    }
}

proptest! {
    #[test]
    fn no_text_makes_the_loader_panic(text in ".{0,400}") {
        let _ = plan_from_yaml(&text);
    }

    #[test]
    fn no_damage_to_a_valid_file_makes_validation_panic(
        cut in 0usize..2000,
        len in 0usize..40,
        insert in "[ -~\n]{0,12}",
        which in 0usize..10,
    ) {
        let files = examples();
        let text = std::fs::read_to_string(&files[which % files.len()]).unwrap();
        let start = cut.min(text.len());
        let end = (start + len).min(text.len());
        if text.is_char_boundary(start) && text.is_char_boundary(end) {
            let damaged = format!("{}{insert}{}", &text[..start], &text[end..]);
            let _ = plan_from_yaml(&damaged);
        }
    }
}

#[test]
fn analysis_settings_are_checked() {
    let strategy =
        "  trafficRouting: {istio: {}}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n";
    let e = errors(&format!(
        "{strategy}  analysis:
    inconclusiveLimit: 0
    metrics:
    - {{name: request-success-rate, judge: sequential, thresholdRange: {{min: 99}}, sequential: {{alpha: 0.7, beta: 0, degradation: 1}}}}
    - {{name: request-duration, judge: sequential}}
    - {{name: request-duration, sequential: {{alpha: 0.1}}, thresholdRange: {{max: 100}}}}
    - name: errors
      prometheus:
        query: 'sum(rate(x{{app=\"{{{{ app }}}}\",ns=\"{{{{ namespace }}}}\"}}[{{{{ interval }}}}]))'
        variables: {{app: podinfo, namespace: other, bad-name: x}}
      thresholdRange: {{max: 1}}
    - name: p99
      prometheus: {{query: 'histogram_quantile(0.99, x{{a=\"{{{{ missing }}}}\"}})'}}
      thresholdRange: {{max: 1}}
"
    ));
    let m = "spec.analysis.metrics";
    assert!(
        has(
            &e,
            "spec.analysis.inconclusiveLimit",
            "0 is not within 1..=1000"
        ),
        "{e:?}"
    );
    assert!(
        has(&e, &format!("{m}[0].thresholdRange"), "takes no range"),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[0].sequential.alpha"),
            "above 0 and below 0.5"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[0].sequential.beta"),
            "above 0 and below 0.5"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[0].sequential.degradation"),
            "must be above 1"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[1].judge"),
            "use it with the builtin request-success-rate"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[2].sequential"),
            "only for `judge: sequential`"
        ),
        "{e:?}"
    );
    assert!(has(&e, &format!("{m}[2].name"), "given twice"), "{e:?}");
    assert!(
        has(
            &e,
            &format!("{m}[3].prometheus.variables.namespace"),
            "filled in by canary"
        ),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[3].prometheus.variables.bad-name"),
            "letters, digits and `_`"
        ),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|x| x.contains("{{ app }}")),
        "a user variable is known: {e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[4].prometheus.query"),
            "unknown variable `{{ missing }}`"
        ),
        "{e:?}"
    );
    let ok = errors(&format!(
        "{strategy}  analysis:\n    metrics:\n    - {{name: request-success-rate, judge: sequential}}\n    - {{name: request-duration, prometheus: {{address: 'https://prom:9090'}}, thresholdRange: {{max: 300}}}}\n"
    ));
    assert!(ok.is_empty(), "{ok:?}");
}

#[test]
fn nginx_refuses_header_values_cookies_and_patterns_its_annotation_parser_would_drop() {
    let with = |one: &str| {
        errors(&format!(
            "  trafficRouting: {{nginx: {{ingress: podinfo}}}}\n  strategy: {{abTest: {{matches: [{one}]}}}}\n"
        ))
    };
    let e = with("{headers: {x-a: {exact: 'a;b'}}}");
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].headers.x-a.exact",
            "ingress-nginx refuses"
        ),
        "{e:?}"
    );
    let e = with("{headers: {x-a: {regex: 'a b|c,d'}}}");
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].headers.x-a.regex",
            "ingress-nginx refuses"
        ),
        "{e:?}"
    );
    let e = with("{cookie: {name: 'beta!'}}");
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].cookie.name",
            "ingress-nginx refuses"
        ),
        "{e:?}"
    );
    let e = with("{headers: {'x-a!': {exact: on}}}");
    assert!(
        has(
            &e,
            "spec.strategy.abTest.matches[0].headers",
            "ingress-nginx refuses"
        ),
        "{e:?}"
    );
    for fine in [
        "{headers: {x-a: {exact: 'eu-west/1:a.b_c~d'}}}",
        "{headers: {x-a: {regex: '^(eu|us)-[a-z]+\\d{2}$'}}}",
        "{cookie: {name: canary_beta}}",
    ] {
        assert!(with(fine).is_empty(), "{fine}: {:?}", with(fine));
    }
    // Other providers take these values.
    let e = errors(
        "  trafficRouting: {istio: {}}\n  strategy: {abTest: {matches: [{headers: {x-a: {exact: 'a;b'}}}]}}\n",
    );
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn analysis_windows_respect_the_scrape_interval() {
    let istio = "  trafficRouting: {istio: {}}\n  strategy: {canary: {steps: [{weight: 10}]}}\n";
    let analysis = |settings: &str, metric: &str| {
        errors(&format!(
            "{istio}  analysis:\n    interval: 30s\n{settings}    metrics:\n    - {metric}\n"
        ))
    };
    // A 30s rate window at the default 30s scrape sees one sample per series: no rate.
    let short = analysis(
        "",
        "{name: request-success-rate, thresholdRange: {min: 99}}",
    );
    assert!(
        has(&short, "spec.analysis.interval", "shorter than 1m")
            && has(&short, "spec.analysis.interval", "two scrapes"),
        "{short:?}"
    );
    let fine = analysis(
        "    scrapeInterval: 15s\n",
        "{name: request-success-rate, thresholdRange: {min: 99}}",
    );
    assert!(fine.is_empty(), "{fine:?}");
    let own = analysis(
        "    scrapeInterval: 15s\n",
        "{name: request-duration, interval: 20s, thresholdRange: {max: 500}}",
    );
    assert!(
        has(
            &own,
            "spec.analysis.metrics[0].interval",
            "shorter than 30s"
        ),
        "{own:?}"
    );
    // A custom query with its own window is not the scrape's business.
    let custom = analysis(
        "",
        "{name: errors, thresholdRange: {max: 1}, prometheus: {query: 'sum(rate(x[5m]))'}}",
    );
    assert!(custom.is_empty(), "{custom:?}");
    let templated = analysis(
        "",
        "{name: errors, thresholdRange: {max: 1}, prometheus: {query: 'sum(rate(x[{{interval}}]))'}}",
    );
    assert!(
        has(&templated, "spec.analysis.interval", "two scrapes"),
        "{templated:?}"
    );
    // The sequential judge measures at most once per scrape, by default exactly once.
    let sequential = analysis(
        "",
        "{name: request-success-rate, judge: sequential, interval: 10s}",
    );
    assert!(
        has(
            &sequential,
            "spec.analysis.metrics[0].interval",
            "at most once per scrape"
        ),
        "{sequential:?}"
    );
    let plan = plan_from_yaml(&format!(
        "{BASE}{istio}  analysis:\n    scrapeInterval: 15s\n    metrics:\n    - {{name: request-success-rate, judge: sequential}}\n"
    ))
    .unwrap();
    assert_eq!(
        plan.analysis.metrics[0].window,
        jiff::SignedDuration::from_secs(15)
    );
    // Metrics are read behind the clock: by default a scrape timeout, never more than a scrape.
    let offset = |settings: &str| {
        plan_from_yaml(&format!(
            "{BASE}{istio}  analysis:\n{settings}    metrics:\n    - {{name: request-success-rate, judge: sequential}}\n"
        ))
        .map(|plan| plan.analysis.query_offset.as_secs())
    };
    assert_eq!(offset("").unwrap(), 10);
    assert_eq!(offset("    scrapeInterval: 2s\n").unwrap(), 2);
    assert_eq!(offset("    queryOffset: 45s\n").unwrap(), 45);
    let late = analysis(
        "    queryOffset: 6m\n",
        "{name: request-success-rate, judge: sequential}",
    );
    assert!(
        has(&late, "spec.analysis.queryOffset", "at most 5m"),
        "{late:?}"
    );
    let slow = analysis(
        "    scrapeInterval: 11m\n",
        "{name: request-success-rate, judge: sequential, interval: 12m}",
    );
    assert!(
        has(&slow, "spec.analysis.scrapeInterval", "at most 10m"),
        "{slow:?}"
    );
}

#[test]
fn every_example_file_loads_with_its_objects_in_shape() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rollouts");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = if path.to_string_lossy().ends_with("-objects.yaml") {
            canary_core::api::load::objects_from_yaml(&text).map(drop)
        } else {
            canary_core::api::load::rollout_file(&text).map(drop)
        };
        if let Err(error) = loaded {
            panic!("{}: {error}", path.display());
        }
    }
}

#[test]
fn analysis_names_and_queries_are_bounded() {
    let strategy =
        "  trafficRouting: {istio: {}}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n";
    let long = "n".repeat(64);
    let fits = "n".repeat(63);
    // A query that fits as written but not once its variable is filled in: 100 uses of a
    // 200-byte value.
    let value = "v".repeat(200);
    let uses = "{{ big }}+".repeat(100);
    let e = errors(&format!(
        "{strategy}  analysis:
    metrics:
    - {{name: {long}, prometheus: {{query: 'x'}}, thresholdRange: {{max: 1}}}}
    - {{name: {fits}, prometheus: {{query: 'x'}}, thresholdRange: {{max: 1}}}}
    - name: expanded
      prometheus: {{query: '{uses}0', variables: {{big: {value}}}}}
      thresholdRange: {{max: 1}}
    - name: short
      prometheus: {{query: '{{{{ namespace }}}}', variables: {{}}}}
      thresholdRange: {{max: 1}}
    webhooks:
    - {{name: {long}, type: rollout, url: 'http://hooks.example/check'}}
"
    ));
    let m = "spec.analysis.metrics";
    assert!(
        has(&e, &format!("{m}[0].name"), "at most 63 characters"),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|e| e.starts_with(&format!("{m}[1]"))),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            &format!("{m}[2].prometheus.query"),
            "20101 bytes once its variables are filled in; at most 16384"
        ),
        "{e:?}"
    );
    assert!(
        !e.iter().any(|e| e.starts_with(&format!("{m}[3]"))),
        "{e:?}"
    );
    assert!(
        has(
            &e,
            "spec.analysis.webhooks[0].name",
            "at most 63 characters"
        ),
        "{e:?}"
    );
}

/// A DaemonSet runs one pod per eligible node: replica counts are refused wherever a Rollout
/// may give one, each with its path and the reason, and every step runs the canary DaemonSet
/// on all the stable one's nodes.
#[test]
fn a_daemonset_rollout_refuses_replicas_and_runs_the_canary_on_every_node() {
    let daemonset = BASE.replace(
        "kind: Deployment, name: podinfo",
        "kind: DaemonSet, name: podinfo",
    );
    let errors_of = |rest: &str| -> Vec<String> {
        match plan_from_yaml(&format!("{daemonset}{rest}")) {
            Ok(_) => Vec::new(),
            Err(Error::Invalid(errors)) => errors.0.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("not a validation error: {other}"),
        }
    };
    let refused = errors_of(
        "  trafficRouting: {istio: {}}\n  newVersion: {replicas: 2}\n  strategy: {canary: {steps: [{weight: 10, replicas: 1}, {weight: 50}, {weight: 60, replicas: 50%}]}}\n",
    );
    assert!(
        has(
            &refused,
            "spec.newVersion.replicas",
            "one pod on every node"
        ),
        "{refused:?}"
    );
    assert!(
        has(
            &refused,
            "spec.strategy.canary.steps[0].replicas",
            "DaemonSet"
        ),
        "{refused:?}"
    );
    assert!(
        has(
            &refused,
            "spec.strategy.canary.steps[2].replicas",
            "DaemonSet"
        ),
        "{refused:?}"
    );
    assert!(
        !refused
            .iter()
            .any(|e| e.starts_with("spec.strategy.canary.steps[1]"))
    );

    for strategy in [
        "canary: {stepWeight: 20, maxWeight: 60}",
        "blueGreen: {}",
        "abTest: {matches: [{headers: {x-canary: {exact: \"on\"}}}]}",
        "mirror: {percent: 50}",
    ] {
        let plan = plan_from_yaml(&format!(
            "{daemonset}  trafficRouting: {{istio: {{}}}}\n  strategy: {{{strategy}}}\n"
        ))
        .unwrap_or_else(|e| panic!("{strategy}: {e}"));
        assert_eq!(plan.workload.kind, "DaemonSet");
        for step in &plan.steps {
            assert_eq!(step.replicas.resolve(7), 7, "{strategy}: every node");
        }
    }
    // A Deployment keeps its replica steps.
    let plan = plan_from_yaml(&format!(
        "{BASE}  trafficRouting: {{istio: {{}}}}\n  strategy: {{canary: {{steps: [{{weight: 10}}]}}}}\n"
    ))
    .unwrap();
    assert_eq!(plan.steps[0].replicas.resolve(10), 1);

    let other = errors("  trafficRouting: {istio: {}}\n  strategy: {blueGreen: {}}\n");
    assert!(other.is_empty());
    let statefulset = BASE.replace("kind: Deployment", "kind: StatefulSet");
    let Err(Error::Invalid(refused)) = plan_from_yaml(&format!(
        "{statefulset}  trafficRouting: {{istio: {{}}}}\n  strategy: {{blueGreen: {{}}}}\n"
    )) else {
        panic!("a StatefulSet was accepted");
    };
    let message = refused.to_string();
    assert!(
        message.contains("spec.workloadRef") && message.contains("apps/v1 DaemonSet"),
        "{message}"
    );
}
