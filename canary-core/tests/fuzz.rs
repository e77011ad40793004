//! No input makes loading, validation or simulation panic, hang or blow up: arbitrary YAML,
//! the example rollouts with one field broken (huge numbers, NaN, negatives, wrong types, deep
//! nesting, alias bombs), and a table of the inputs that once did. Every refusal is a clean
//! error that names a field path or a line.
//!
//! The properties run `PROPTEST_CASES` cases (64 by default, so the suite stays fast); a long
//! run is `PROPTEST_CASES=10000 cargo test -p canary-core --test fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canary_core::Error;
use canary_core::api::load::{objects_from_yaml, rollout_file};
use canary_core::api::validate::validate;
use canary_core::sim::{SimConfig, Simulation};
use jiff::SignedDuration;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The most one case may take, loading, validating and simulating included.
const PER_CASE: Duration = Duration::from_secs(10);

/// Cases per property: `PROPTEST_CASES`, else 64.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(64)
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rollouts");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter(|path| !path.to_string_lossy().ends_with("-objects.yaml"))
        .collect();
    files.sort();
    files
}

/// What became of one input.
#[derive(Debug)]
enum Outcome {
    /// Refused while reading, at a line.
    Parse(String),
    /// Refused by validation, each error at a field path.
    Invalid(Vec<String>),
    /// Valid and simulated (or refused by the simulation's own checks).
    Ran,
}

/// Loads, validates and (when valid) simulates `text` for at most `until` of virtual time,
/// checking what every refusal says; fails when it takes longer than [`PER_CASE`].
fn run(text: &str, until: SignedDuration) -> Outcome {
    let started = Instant::now();
    let outcome = match rollout_file(text) {
        Err(Error::Parse { message, line, .. }) => {
            assert!(!message.trim().is_empty(), "a parse error says nothing");
            if let Some(line) = line {
                // YAML breaks lines at `\n`, `\r\n` and a lone `\r`.
                let lone_cr = text.replace("\r\n", "\n").matches('\r').count();
                let lines = (text.matches('\n').count() + lone_cr) as u64 + 1;
                assert!(line <= lines, "line {line} of {lines}: {message}");
            }
            Outcome::Parse(message)
        }
        Err(other) => panic!("loading gave a non-parse error: {other}"),
        Ok(file) => match validate(&file.rollout) {
            Err(errors) => {
                assert!(!errors.0.is_empty(), "invalid without an error");
                for error in &errors.0 {
                    assert!(!error.path.is_empty(), "an error without a path: {error}");
                    assert!(!error.message.is_empty(), "an error without a message");
                }
                Outcome::Invalid(errors.0.iter().map(ToString::to_string).collect())
            }
            Ok(plan) => {
                let config = SimConfig {
                    max_duration: until,
                    ..SimConfig::default()
                };
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                match runtime.block_on(Simulation::new(&plan, config).run()) {
                    Ok(report) => assert_finite(&report),
                    Err(Error::Simulation(_)) => {}
                    Err(other) => panic!("the simulation failed: {other}"),
                }
                Outcome::Ran
            }
        },
    };
    let _ = objects_from_yaml(text);
    assert!(
        started.elapsed() < PER_CASE,
        "took {:?} for:\n{}",
        started.elapsed(),
        excerpt(text)
    );
    outcome
}

/// Nothing non-finite is ever reported: JSON would write it as `null`, which does not read
/// back as a number. (YAML spells what JSON cannot, so the check reads YAML.)
fn assert_finite(report: &canary_core::sim::SimReport) {
    let yaml = serde_saphyr::to_string(report).unwrap();
    assert!(
        !yaml.contains(".nan") && !yaml.contains(".inf"),
        "a non-finite number in the report:\n{}",
        excerpt(&yaml)
    );
}

fn excerpt(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// Every JSON pointer into `value`, keys escaped (`~0`, `~1`).
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(list) => {
            for (index, child) in list.iter().enumerate() {
                pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Raw YAML put in place of a marker string after serialising (values JSON cannot hold).
const RAW: &str = "__raw__";

/// A flow-style billion laughs: each level names the one before nine times.
fn alias_bomb() -> String {
    let mut levels = vec!["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]".to_owned()];
    for level in 1..10 {
        let previous = format!("*a{}", level - 1);
        let items = vec![previous; 9].join(", ");
        levels.push(format!("a{level}: &a{level} [{items}]"));
    }
    format!("{{{}}}", levels.join(", "))
}

/// The values a broken field gets.
fn breakage() -> impl Strategy<Value = (Value, Option<String>)> {
    let plain = prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(4_294_967_295u64)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(-1e-308)),
        Just(json!("2562047788015h")),
        Just(json!("9999999999999999999h")),
        Just(json!("106751991167d")),
        Just(json!("")),
        Just(json!("-5m")),
        Just(json!([])),
        Just(json!([1, "x", null])),
        Just(json!({})),
        Just(json!({"x": 1})),
        Just(json!(true)),
        Just(Value::Null),
        "[a-z0-9%.]{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
    ]
    .prop_map(|value| (value, None));
    let raw = prop_oneof![
        Just(".nan".to_owned()),
        Just(".inf".to_owned()),
        Just("-.inf".to_owned()),
        Just(alias_bomb()),
        (1usize..400).prop_map(|depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth))),
        (1usize..400).prop_map(|depth| format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth))),
    ]
    .prop_map(|raw| (json!(RAW), Some(raw)));
    prop_oneof![3 => plain, 1 => raw]
}

/// The example's text with the node at a chosen pointer (`pick` out of all of them) replaced.
fn broken_example(file: &Path, pick: usize, value: &Value, raw: Option<&str>) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    // The Rollout document; the objects documents before or after it stay as they are.
    let documents: Vec<&str> = text.split("\n---").collect();
    let at = documents
        .iter()
        .position(|document| document.lines().any(|line| line == "kind: Rollout"))
        .unwrap();
    let mut rollout: Value = serde_saphyr::from_str(documents[at]).unwrap();
    let mut all = Vec::new();
    pointers(&rollout, String::new(), &mut all);
    let pointer = &all[pick % all.len()];
    if pointer.is_empty() {
        rollout = value.clone();
    } else if let Some(node) = rollout.pointer_mut(pointer) {
        *node = value.clone();
    }
    let mut yaml = serde_saphyr::to_string(&rollout).unwrap();
    if let Some(raw) = raw {
        for marker in [format!("'{RAW}'"), format!("\"{RAW}\""), RAW.to_owned()] {
            yaml = yaml.replace(&marker, raw);
        }
    }
    let mut out: Vec<String> = documents.iter().map(|d| (*d).to_owned()).collect();
    out[at] = yaml;
    out.join("\n---\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Any text at all: read or refused, never a panic.
    #[test]
    fn any_text_is_read_or_refused(text in "(?s).{0,400}") {
        run(&text, SignedDuration::from_hours(1));
    }

    /// YAML-looking text from the Rollout's own words.
    #[test]
    fn yaml_made_of_rollout_words_is_read_or_refused(
        words in proptest::collection::vec(prop_oneof![
            Just("apiVersion: canary.rs/v1alpha1\n"), Just("kind: Rollout\n"), Just("metadata:\n"),
            Just("  name: x\n"), Just("spec:\n"), Just("  analysis:\n"), Just("    interval: "),
            Just("  strategy:\n"), Just("    canary: {steps: [{weight: "), Just("}]}\n"),
            Just("2562047788015h"), Just("4294967295"), Just(".nan"), Just("-1"), Just("&a "),
            Just("*a"), Just("[*a, *a, *a]"), Just("---\n"), Just("\n"), Just("  "), Just("- "),
            Just("{"), Just("}"), Just("["), Just("]"), Just(": "), Just("'"), Just("\""),
            Just("!!binary "), Just("<<: "), Just("? "),
        ], 0..60)
    ) {
        run(&words.concat(), SignedDuration::from_hours(1));
    }

    /// An example with one field broken: refused with the field's path, or still valid and
    /// simulated to its end (within the time bound).
    #[test]
    fn a_broken_field_of_an_example_is_refused_by_path_or_runs(
        example in any::<prop::sample::Index>(),
        pick in any::<usize>(),
        (value, raw) in breakage(),
    ) {
        let files = examples();
        let file = example.get(&files);
        let text = broken_example(file, pick, &value, raw.as_deref());
        run(&text, SignedDuration::from_hours(2));
    }
}

/// The text of an example with the first `find` replaced.
fn with(example: &str, find: &str, replace: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/rollouts")
        .join(example);
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(find), "{example} has no `{find}`");
    text.replacen(find, replace, 1)
}

const MINIMAL: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {name: web, port: 80}
  trafficRouting: {kuma: {}}
";

#[test]
fn huge_durations_and_counts_are_refused_with_the_field_and_the_range() {
    let table: [(&str, &str, &str); 16] = [
        (
            "  analysis: {interval: 2562047788015h}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.interval",
            "at most 1h",
        ),
        (
            "  analysis: {interval: 9999999999999999999999h}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.interval",
            "too long",
        ),
        (
            "  analysis:\n    metrics: [{name: request-success-rate, thresholdRange: {min: 99}, interval: 2h}]\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.metrics[0].interval",
            "allowed: 1s..=1h",
        ),
        (
            "  analysis:\n    webhooks: [{name: w, type: rollout, url: 'http://w', timeout: 87600h}]\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.webhooks[0].timeout",
            "at most 5m",
        ),
        (
            "  strategy: {canary: {steps: [{weight: 10, pause: {duration: 8760h}}]}}\n",
            "spec.strategy.canary.steps[0].pause.duration",
            "at most 168h",
        ),
        (
            "  progressDeadline: 1000h\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.progressDeadline",
            "at most 24h",
        ),
        (
            "  newVersion: {replicas: 4294967295}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.newVersion.replicas",
            "at most 10000",
        ),
        (
            "  strategy: {canary: {steps: [{weight: 10, replicas: 2147483648}]}}\n",
            "spec.strategy.canary.steps[0].replicas",
            "at most 10000",
        ),
        (
            "  newVersion: {replicas: -3}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.newVersion.replicas",
            "at least 1",
        ),
        (
            "  analysis: {failureLimit: 4294967295}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.failureLimit",
            "1..=1000",
        ),
        (
            "  strategy: {blueGreen: {iterations: 9223372036854775807}}\n",
            "spec.strategy.blueGreen.iterations",
            "1..=10000",
        ),
        (
            "  strategy: {canary: {stepWeight: 10, maxWeight: 18446744073709551615}}\n",
            "",
            "",
        ),
        (
            "  analysis:\n    metrics: [{name: request-success-rate, thresholdRange: {min: .nan}}]\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.metrics[0].thresholdRange.min",
            "finite",
        ),
        (
            "  analysis:\n    metrics: [{name: request-success-rate, judge: sequential, sequential: {degradation: 1e300}}]\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.metrics[0].sequential.degradation",
            "at most 1000",
        ),
        (
            "  analysis:\n    metrics: [{name: request-success-rate, judge: sequential, sequential: {alpha: .nan}}]\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.metrics[0].sequential.alpha",
            "below 0.5",
        ),
        (
            "  analysis: {inconclusiveLimit: -9223372036854775808}\n  strategy: {canary: {stepWeight: 10, maxWeight: 50}}\n",
            "spec.analysis.inconclusiveLimit",
            "1..=1000",
        ),
    ];
    for (rest, path, words) in table {
        let started = Instant::now();
        let text = format!("{MINIMAL}{rest}");
        match run(&text, SignedDuration::from_hours(1)) {
            Outcome::Invalid(errors) if !path.is_empty() => assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(words)),
                "{path} / {words}: {errors:?}"
            ),
            // Beyond i64: refused by the reader, at its line.
            Outcome::Parse(message) if path.is_empty() => {
                assert!(!message.is_empty());
            }
            other => panic!("{rest}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{rest}");
    }
}

#[test]
fn long_lists_are_refused_with_their_length_and_the_limit() {
    let steps = vec!["{weight: 10}"; 101].join(", ");
    let metrics = (0..21)
        .map(|i| format!("{{name: m{i}, thresholdRange: {{min: 1}}, prometheus: {{query: up}}}}"))
        .collect::<Vec<_>>()
        .join(", ");
    let matches = vec!["{headers: {x: {exact: y}}}"; 33].join(", ");
    for (rest, path, words) in [
        (
            format!("  strategy: {{canary: {{steps: [{steps}]}}}}\n"),
            "spec.strategy.canary.steps",
            "101 steps: at most 100",
        ),
        (
            format!(
                "  analysis: {{metrics: [{metrics}]}}\n  strategy: {{canary: {{stepWeight: 10, maxWeight: 50}}}}\n"
            ),
            "spec.analysis.metrics",
            "21 metrics: at most 20",
        ),
        (
            format!("  strategy: {{abTest: {{matches: [{matches}]}}}}\n"),
            "spec.strategy.abTest.matches",
            "33 matches: at most 32",
        ),
    ] {
        let text = format!("{MINIMAL}{rest}");
        match run(&text, SignedDuration::from_hours(1)) {
            Outcome::Invalid(errors) => assert!(
                errors
                    .iter()
                    .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(words)),
                "{path}: {errors:?}"
            ),
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused_quickly_at_a_line() {
    let bomb = format!(
        "{MINIMAL}  strategy: {{canary: {{stepWeight: 10, maxWeight: 50}}}}\nbomb: {}\n",
        alias_bomb()
    );
    let deep_flow = format!("{MINIMAL}  strategy: {}\n", "[".repeat(100_000));
    let deep_block: String = (0..5_000)
        .map(|depth| format!("{}a:\n", " ".repeat(depth)))
        .collect();
    let deep_list: String = (0..5_000)
        .map(|depth| format!("{}- \n", "  ".repeat(depth)))
        .collect();
    let many_aliases = format!("a: &a x\nb: [{}]\n", vec!["*a"; 200_000].join(", "));
    for (name, text) in [
        ("bomb", bomb),
        ("deep flow", deep_flow),
        ("deep block", deep_block),
        ("deep list", deep_list),
        ("many aliases", many_aliases),
    ] {
        let started = Instant::now();
        match run(&text, SignedDuration::from_hours(1)) {
            Outcome::Parse(message) => assert!(!message.is_empty()),
            other => panic!("{other:?} for\n{}", excerpt(&text)),
        }
        assert!(objects_from_yaml(&text).is_err());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn the_metric_interval_that_once_hung_simulate_is_refused() {
    let text = with(
        "podinfo-kuma.yaml",
        "interval: 90s",
        "interval: 2562047788015h",
    );
    match run(&text, SignedDuration::from_hours(24)) {
        Outcome::Invalid(errors) => assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.analysis.interval: ") && e.contains("1s..=1h")),
            "{errors:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn simulation_settings_beyond_their_bounds_are_refused() {
    let plan = canary_core::api::load::plan_from_yaml(&format!(
        "{MINIMAL}  strategy: {{canary: {{stepWeight: 10, maxWeight: 50}}}}\n"
    ))
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (config, words) in [
        (
            SimConfig {
                rps: u64::MAX,
                ..SimConfig::default()
            },
            "rps 18446744073709551615 is not within 0..=1000000",
        ),
        (
            SimConfig {
                stable_replicas: u32::MAX,
                ..SimConfig::default()
            },
            "stable replicas 4294967295 is not within 1..=10000",
        ),
        (
            SimConfig {
                canary_latency_ms: Some(1e300),
                ..SimConfig::default()
            },
            "latencies",
        ),
        (
            SimConfig {
                baseline_error_rate: f64::NAN,
                ..SimConfig::default()
            },
            "baseline error rate",
        ),
        (
            SimConfig {
                pod_startup: SignedDuration::from_hours(2_562_047),
                ..SimConfig::default()
            },
            "pod startup",
        ),
        (
            SimConfig {
                max_duration: SignedDuration::MAX,
                ..SimConfig::default()
            },
            "duration",
        ),
    ] {
        let started = Instant::now();
        match runtime.block_on(Simulation::new(&plan, config).run()) {
            Err(Error::Simulation(message)) => assert!(message.contains(words), "{message}"),
            other => panic!("{words}: {:?}", other.map(|r| r.summary)),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // The largest allowed values run, and quickly.
    let started = Instant::now();
    let config = SimConfig {
        rps: canary_core::sim::MAX_RPS,
        stable_replicas: canary_core::sim::MAX_STABLE_REPLICAS,
        ..SimConfig::default()
    };
    let report = runtime
        .block_on(Simulation::new(&plan, config).run())
        .unwrap();
    assert_finite(&report);
    assert!(started.elapsed() < PER_CASE, "{:?}", started.elapsed());
}

/// A status as the cluster may hold it, edited by anyone with access to the status
/// subresource: every counter at its largest. The engine adds to them without overflow and
/// saves nothing non-finite.
#[test]
fn a_status_with_every_counter_at_its_largest_never_panics_the_engine() {
    use canary_core::engine::providers::StatusStore;
    for (extra, sequential) in [
        (common::success_rate(3), false),
        (
            "  analysis:\n    interval: 1m\n    scrapeInterval: 15s\n    metrics:\n    - {name: request-success-rate, judge: sequential}\n".to_owned(),
            true,
        ),
    ] {
        let yaml = common::rollout(
            "kuma",
            "{canary: {steps: [{weight: 10}, {weight: 50, pause: {}}, {weight: 80}]}}",
            &extra,
        );
        let world = common::World::new(&yaml);
        if sequential {
            world.metrics.set(
                "request-success-rate",
                canary_core::engine::machine::MetricOutcome::Counts(canary_core::engine::machine::ErrorCounts {
                    canary_requests: u64::MAX,
                    canary_errors: u64::MAX / 2,
                    stable_requests: u64::MAX,
                    stable_errors: 1,
                }),
            );
        }
        common::block_on(async {
            world.start().await;
            world.clock.advance(SignedDuration::from_mins(2));
            world.reconcile().await;
            for step in [0, 1, 2, u32::MAX - 1, u32::MAX] {
                let mut status = world.status();
                status.step = step;
                status.gate.iterations = u32::MAX;
                status.analysis.failed_checks = u32::MAX;
                status.analysis.consecutive_failures = u32::MAX;
                status.analysis.inconclusive = u32::MAX;
                status.routing.routed_replicas = u32::MAX;
                status.commands.last_command = u64::MAX - 1;
                for state in &mut status.analysis.sequential {
                    state.llr = f64::MAX;
                    state.canary_requests = u64::MAX;
                    state.canary_errors = u64::MAX;
                    state.stable_requests = u64::MAX;
                    state.stable_errors = u64::MAX;
                }
                world.store.save(&status).await.unwrap();
                for _ in 0..5 {
                    world.clock.advance(SignedDuration::from_mins(1));
                    if let Ok(pass) = world.driver().reconcile(world.now()).await {
                        let yaml = serde_saphyr::to_string(&pass.status).unwrap();
                        assert!(!yaml.contains(".nan") && !yaml.contains(".inf"), "{yaml}");
                    }
                    let _ = world
                        .driver()
                        .command(u64::MAX, canary_core::Command::Promote, world.now())
                        .await;
                }
            }
        });
    }
}

/// Counts of synthetic traffic at the largest rate a model can hold add up without overflow
/// (a day of them at `u64::MAX` requests per second once panicked).
#[test]
fn traffic_counts_saturate_instead_of_overflowing() {
    use canary_core::sim::{SecondCounts, TrafficModel};
    let model = TrafficModel {
        seed: 1,
        rps: u64::MAX,
        baseline_error_rate: 0.5,
        canary_error_rate: 0.5,
        baseline_latency_ms: 40.0,
        canary_latency_ms: 40.0,
        match_share: 0.1,
    };
    let route = canary_core::RouteState::weighted(50);
    let mut totals = SecondCounts::default();
    for second in 0..3 {
        let counts = model.second(second, &route);
        assert!(counts.canary.saturating_add(counts.stable) <= counts.total);
        assert!(counts.canary_errors <= counts.canary);
        totals += counts;
    }
    assert_eq!(totals.total, u64::MAX);
    assert!(totals.canary <= totals.total && totals.stable <= totals.total);
}
