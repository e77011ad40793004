//! The `canary` CLI as a user runs it: exit codes, messages, JSON lines, the SVG chart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `canary` example, built by `cargo test` next to this test's own binary.
fn canary(args: &[&str]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = dir
        .join("examples")
        .join(format!("canary{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test`, which builds the examples",
        bin.display()
    );
    Command::new(bin)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

const KUMA: &str = "examples/rollouts/podinfo-kuma.yaml";

#[test]
fn validate_says_valid() {
    let out = canary(&["validate", KUMA]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "valid\n");
}

#[test]
fn validate_lists_every_error_and_exits_2() {
    let out = canary(&["validate", "examples/invalid/podinfo-broken.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("18 errors"), "{err}");
    assert!(
        err.contains("  spec.strategy.canary.steps[1].weight: 120 is not within 0..=100"),
        "{err}"
    );
    assert!(
        err.contains("  spec.service.port: 70000 is not within 1..=65535"),
        "{err}"
    );
}

#[test]
fn unreadable_and_broken_files_exit_2_without_a_panic() {
    let dir = std::env::temp_dir().join(format!("canary-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("binary.yaml", &[0, 159, 146, 150, 255, 0, 1]),
        ("tabs.yaml", b"kind: Rollout\n\tspec: [\n"),
        ("list.yaml", b"- 1\n- 2\n"),
        ("empty.yaml", b""),
    ];
    for (name, bytes) in cases {
        let path: PathBuf = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        for command in ["validate", "simulate"] {
            let out = canary(&[command, path.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2), "{command} {name}");
            assert!(
                !stderr(&out).contains("panicked"),
                "{command} {name}: {}",
                stderr(&out)
            );
            assert!(
                stderr(&out).starts_with(path.to_str().unwrap()),
                "{}",
                stderr(&out)
            );
        }
    }
    let out = canary(&["validate", "no/such/file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"));
}

#[test]
fn simulate_json_ends_with_a_succeeded_summary() {
    let out = canary(&["simulate", KUMA, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let summary = lines.last().unwrap();
    assert_eq!(
        summary["summary"], true,
        "the last line is marked: {summary}"
    );
    assert_eq!(summary["phase"], "Succeeded");
    for field in [
        "canary_weight",
        "requests_total",
        "canary_requests",
        "canary_errors",
        "duration_s",
    ] {
        assert!(
            summary[field].is_u64() || summary[field].is_i64(),
            "{field} in {summary}"
        );
    }
    let weights: Vec<u64> = lines[..lines.len() - 1]
        .iter()
        .filter(|row| row["phase"] == "Progressing")
        .map(|row| row["canary_weight"].as_u64().unwrap())
        .collect();
    for weight in [10, 20, 30, 40, 50] {
        assert!(
            weights.contains(&weight),
            "weight {weight} missing from {weights:?}"
        );
    }
}

#[test]
fn simulate_a_bad_canary_fails_and_rolls_back() {
    let out = canary(&["simulate", KUMA, "--json", "--canary-error-rate", "0.2"]);
    let summary = json_lines(&out).pop().unwrap();
    assert_eq!(summary["phase"], "Failed");
    assert_eq!(summary["canary_weight"], 0);
    assert!(summary["canary_errors"].as_u64().unwrap() > 0);
}

#[test]
fn simulate_is_deterministic_for_a_seed() {
    let a = canary(&["simulate", KUMA, "--json", "--seed", "7"]);
    let b = canary(&["simulate", KUMA, "--json", "--seed", "7"]);
    let c = canary(&["simulate", KUMA, "--json", "--seed", "8"]);
    assert_eq!(stdout(&a), stdout(&b));
    assert_ne!(stdout(&a), stdout(&c));
}

#[test]
fn simulate_prints_a_readable_timeline_and_writes_a_chart() {
    let svg = std::env::temp_dir().join(format!("canary-chart-{}.svg", std::process::id()));
    let out = canary(&[
        "simulate",
        "examples/rollouts/echoserver-nginx.yaml",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("time  phase"), "{text}");
    assert!(text.contains("Paused"), "the manual step shows: {text}");
    assert!(text.contains("Succeeded after"), "{text}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("canary weight"),
        "{}",
        &chart[..100.min(chart.len())]
    );
}

#[test]
fn simulate_without_approval_stays_paused() {
    let out = canary(&[
        "simulate",
        "examples/rollouts/echoserver-nginx.yaml",
        "--json",
        "--approve-after",
        "never",
    ]);
    let summary = json_lines(&out).pop().unwrap();
    assert_eq!(summary["phase"], "Paused");
    assert_eq!(summary["canary_weight"], 20);
}

#[test]
fn bad_simulation_settings_exit_2() {
    let out = canary(&["simulate", KUMA, "--canary-error-rate", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("canary error rate 2 is not within 0..=1"),
        "{}",
        stderr(&out)
    );
    let out = canary(&["simulate", KUMA, "--approve-after", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_sequential_judge_fails_a_bad_canary_with_fewer_failed_requests() {
    let args = [
        "--json",
        "--canary-error-rate",
        "0.05",
        "--baseline-error-rate",
        "0.005",
        "--rps",
        "100",
    ];
    let run = |file: &str| {
        let mut all = vec!["simulate", file];
        all.extend(args);
        json_lines(&canary(&all)).pop().unwrap()
    };
    let threshold = run("examples/rollouts/podinfo-threshold.yaml");
    let sequential = run("examples/rollouts/podinfo-sequential.yaml");
    assert_eq!(threshold["phase"], "Failed");
    assert_eq!(sequential["phase"], "Failed");
    let (t, s) = (
        threshold["canary_errors"].as_u64().unwrap(),
        sequential["canary_errors"].as_u64().unwrap(),
    );
    assert!(s < t, "sequential {s} failed requests, threshold {t}");
}

fn yaml_documents(output: &Output) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(&stdout(output)).unwrap()
}

const BOOKINFO: &str = "examples/rollouts/bookinfo-istio.yaml";

#[test]
fn render_istio_prints_the_canary_service_and_the_bookinfo_seed_virtual_service() {
    let out = canary(&["render", BOOKINFO, "--provider", "istio", "--weight", "50"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let documents = yaml_documents(&out);
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Service", "VirtualService"]);
    assert_eq!(documents[0]["metadata"]["name"], "reviews-canary");
    let vs = &documents[1];
    assert_eq!(vs["spec"]["hosts"], serde_json::json!(["reviews"]));
    let route = &vs["spec"]["http"][0]["route"];
    for (i, host) in ["reviews", "reviews-canary"].into_iter().enumerate() {
        assert_eq!(route[i]["destination"]["host"], host);
        assert_eq!(route[i]["destination"]["port"]["number"], 9080);
        assert!(route[i]["destination"]["subset"].is_null());
        assert_eq!(route[i]["weight"], 50);
    }
    // Take-over: the last step sends everything to v2.
    let out = canary(&["render", BOOKINFO, "--provider", "istio", "--step", "2"]);
    let route = &yaml_documents(&out)[1]["spec"]["http"][0]["route"];
    assert_eq!(
        (route[0]["weight"].as_u64(), route[1]["weight"].as_u64()),
        (Some(0), Some(100))
    );
}

#[test]
fn render_builds_on_objects_given_and_refuses_what_it_cannot_do() {
    // An A/B rollout with its stable Deployment given by --objects: the match route first.
    let dir = std::env::temp_dir().join(format!("canary-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The mirror rollout without the objects its file carries.
    let mirror = std::fs::read_to_string("examples/rollouts/mirror-istio.yaml").unwrap();
    let mirror_alone = dir.join("mirror.yaml");
    std::fs::write(&mirror_alone, mirror.split("\n---\n").next().unwrap()).unwrap();
    let mirror_alone = mirror_alone.to_str().unwrap().to_owned();
    let objects = dir.join("objects.yaml");
    std::fs::write(
        &objects,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ratings-v1}\nspec:\n  template:\n    metadata: {labels: {app: ratings, version: v1}}\n",
    )
    .unwrap();
    let out = canary(&[
        "render",
        "examples/rollouts/abtest-istio.yaml",
        "--provider",
        "istio",
        "--objects",
        objects.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let http = &yaml_documents(&out)[1]["spec"]["http"];
    assert_eq!(http[0]["name"], "primary-canary-match");
    assert_eq!(
        http[0]["match"][0]["headers"]["x-user-group"]["exact"],
        "insider"
    );
    assert_eq!(http[0]["route"][0]["destination"]["host"], "ratings-canary");
    // No weight for the canary: the weighted route sends everything to the service host.
    let weighted = http[1]["route"].as_array().unwrap();
    assert_eq!(weighted.len(), 1);
    assert_eq!(weighted[0]["destination"]["host"], "ratings");

    for (args, expected) in [
        (
            vec!["render", BOOKINFO, "--provider", "kuma"],
            "routes with istio",
        ),
        (
            vec!["render", BOOKINFO, "--provider", "istio", "--weight", "101"],
            "0..=100",
        ),
        (
            vec!["render", BOOKINFO, "--provider", "istio", "--step", "3"],
            "steps 1..=2",
        ),
        (
            vec!["render", &mirror_alone, "--provider", "istio"],
            "the Service demo/details is needed",
        ),
    ] {
        let out = canary(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn render_nginx_prints_the_seeds_canary_service_and_ingress() {
    let out = canary(&[
        "render",
        "examples/rollouts/echoserver-nginx.yaml",
        "--provider",
        "nginx",
        "--weight",
        "20",
        "--objects",
        "examples/rollouts/echoserver-objects.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let documents = yaml_documents(&out);
    let names: Vec<(&str, &str)> = documents
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("Service", "echoserver-canary"),
            ("Ingress", "echoserver-canary")
        ]
    );
    let annotations = &documents[1]["metadata"]["annotations"];
    assert_eq!(annotations["nginx.ingress.kubernetes.io/canary"], "true");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/canary-weight"],
        "20"
    );
    assert_eq!(annotations["kubernetes.io/ingress.class"], "nginx");
    let backend = &documents[1]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "echoserver-canary");
    assert_eq!(backend["port"]["number"], 8080);
    assert_eq!(documents[0]["spec"]["selector"]["canary.rs/role"], "canary");
    // The stable Service is not among what canary writes.
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    // Without the stable Ingress there is nothing to clone.
    let out = canary(&[
        "render",
        "examples/rollouts/echoserver-nginx.yaml",
        "--provider",
        "nginx",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Service default/echoserver is needed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn simulate_reproduces_the_kurator_kuma_progression() {
    let out = canary(&["simulate", KUMA, "--json"]);
    let lines = json_lines(&out);
    let rows = &lines[..lines.len() - 1];
    // Progressing weights in order, each once, then the phases after them in order.
    let mut weights: Vec<u64> = Vec::new();
    let mut phases: Vec<String> = Vec::new();
    for row in rows {
        let phase = row["phase"].as_str().unwrap().to_owned();
        let weight = row["canary_weight"].as_u64().unwrap();
        if phase == "Progressing" && weight > 0 && weights.last() != Some(&weight) {
            weights.push(weight);
        }
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
    }
    assert_eq!(weights, [10, 20, 30, 40, 50]);
    let after: Vec<&str> = phases
        .iter()
        .map(String::as_str)
        .skip_while(|p| *p != "Promoting")
        .collect();
    assert_eq!(
        after,
        ["Promoting", "Finalising", "Succeeded"],
        "{phases:?}"
    );
}

#[test]
fn render_kuma_prints_a_mesh_http_route_at_70_30() {
    let out = canary(&["render", KUMA, "--provider", "kuma", "--weight", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let documents = yaml_documents(&out);
    let route = documents
        .iter()
        .find(|d| d["kind"] == "MeshHTTPRoute")
        .unwrap();
    assert_eq!(route["metadata"]["namespace"], "webapp");
    assert_eq!(route["metadata"]["labels"]["kuma.io/mesh"], "default");
    let backends = &route["spec"]["to"][0]["rules"][0]["default"]["backendRefs"];
    // A mesh without MeshServices (the Kurator seed's `default`): services by their
    // `kuma.io/service` tag.
    assert_eq!(backends[0]["name"], "backend_webapp_svc_9898");
    assert_eq!(backends[0]["weight"], 70);
    assert_eq!(backends[1]["name"], "backend-canary_webapp_svc_9898");
    assert_eq!(backends[1]["weight"], 30);
    assert!(
        documents
            .iter()
            .any(|d| d["kind"] == "Service" && d["metadata"]["name"] == "backend-canary")
    );
}

#[test]
fn render_asm_prints_the_lane_group_and_both_lanes() {
    let out = canary(&[
        "render",
        "examples/rollouts/mocka-asm.yaml",
        "--provider",
        "asm",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let documents = yaml_documents(&out);
    let kinds: Vec<(&str, &str)> = documents
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("ASMSwimLaneGroup", "rollout"),
            ("ASMSwimLane", "base"),
            ("ASMSwimLane", "canary")
        ]
    );
    let group = &documents[0]["spec"];
    assert_eq!(
        group["ingress"]["ingressRouting"]["ingressRoutingStrategy"],
        "rule_based"
    );
    assert_eq!(
        group["permissiveModeConfiguration"]["fallbackTarget"],
        "base"
    );
    assert_eq!(
        group["permissiveModeConfiguration"]["routeHeader"],
        "x-asm-prefer-tag"
    );
    for (lane, tag) in [(&documents[1], "base"), (&documents[2], "canary")] {
        assert_eq!(lane["metadata"]["labels"]["swimlane-group"], "rollout");
        assert_eq!(lane["spec"]["labelSelector"]["ASM_TRAFFIC_TAG"], tag);
        assert_eq!(lane["spec"]["services"][0]["name"], "mocka");
    }
    // The base lane admits every gateway request for the entry; the canary lane those whose
    // route header names it.
    let rule = |lane: &serde_json::Value| lane["spec"]["ingressRules"][0]["match"].clone();
    assert!(rule(&documents[1])["headers"].is_null(), "{}", documents[1]);
    assert_eq!(
        rule(&documents[2])["headers"]["x-asm-prefer-tag"]["exact"],
        "canary"
    );
}

#[test]
fn simulate_through_a_cluster_shows_who_answers_users() {
    let out = canary(&[
        "simulate",
        "examples/rollouts/echoserver-nginx.yaml",
        "--cluster",
        "--objects",
        "examples/rollouts/echoserver-objects.yaml",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = json_lines(&out);
    let (summary, rows) = lines.split_last().unwrap();
    assert_eq!(summary["phase"], "Succeeded", "{summary}");
    assert_eq!(summary["unserved_requests"], 0);
    assert_eq!(summary["canary_requests_outside_release"], 0);
    assert!(summary["max_canary_excess"].as_f64().unwrap() <= 1.0);
    // Every row says who answers, the shares adding up to 1; the canary answers some while
    // the release runs and nobody at its end.
    for row in rows {
        let served = &row["served"];
        let total: f64 = ["stable", "canary", "none"]
            .iter()
            .map(|k| served[k].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-3, "{row}");
    }
    assert!(
        rows.iter()
            .any(|r| r["served"]["canary"].as_f64().unwrap() > 0.0)
    );
    assert_eq!(rows.last().unwrap()["served"]["canary"], 0.0);

    let text = canary(&[
        "simulate",
        "examples/rollouts/podinfo-kuma.yaml",
        "--cluster",
        "--canary-error-rate",
        "0.3",
    ]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let text = stdout(&text);
    assert!(text.contains("served s/c/none"), "{text}");
    assert!(text.contains("90%/10%/0%"), "{text}");
    assert!(
        text.contains("data plane: 0 requests answered by nobody"),
        "{text}"
    );
}

#[test]
fn simulate_through_a_cluster_refuses_what_a_cluster_refuses() {
    let dir = std::env::temp_dir().join(format!("canary-cli-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A Deployment whose selector misses its template's labels.
    let objects = std::fs::read_to_string("examples/rollouts/echoserver-objects.yaml")
        .unwrap()
        .replace("matchLabels: {app: echoserver}", "matchLabels: {app: echo}");
    let path = dir.join("objects.yaml");
    std::fs::write(&path, objects).unwrap();
    let out = canary(&[
        "simulate",
        "examples/rollouts/echoserver-nginx.yaml",
        "--cluster",
        "--objects",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let message = stderr(&out);
    assert!(
        message.contains("the cluster refuses Deployment")
            && message.contains("`selector` does not match template `labels`"),
        "{message}"
    );
    // Without the objects the rollout builds on.
    let out = canary(&[
        "simulate",
        "examples/rollouts/echoserver-nginx.yaml",
        "--cluster",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the cluster has no Deployment"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn devices_huge_files_and_two_rollouts_in_one_file_are_refused_quickly() {
    let started = std::time::Instant::now();
    let out = canary(&["validate", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );

    let dir = std::env::temp_dir().join(format!("canary-cli-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let huge = dir.join("huge.yaml");
    std::fs::write(&huge, "# padding\n".repeat(500_000)).unwrap();
    for command in ["validate", "simulate"] {
        let out = canary(&[command, huge.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            stderr(&out).contains("larger than 4 MiB"),
            "{}",
            stderr(&out)
        );
    }
    let out = canary(&[
        "render",
        BOOKINFO,
        "--provider",
        "istio",
        "--objects",
        huge.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("larger than 4 MiB"),
        "{}",
        stderr(&out)
    );

    // The second Rollout is broken; reading only the first would say `valid`.
    let good = std::fs::read_to_string("examples/rollouts/podinfo-threshold.yaml").unwrap();
    let two = dir.join("two.yaml");
    let text = format!("{good}---\n{}", good.replace("port: 9898}", "port: 70000}"));
    std::fs::write(&two, &text).unwrap();
    let second = text
        .lines()
        .enumerate()
        .filter(|(_, line)| *line == "kind: Rollout")
        .nth(1)
        .unwrap()
        .0
        + 1;
    let out = canary(&["validate", two.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("one Rollout") && err.contains(&format!("two.yaml:{second}:")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn adversarial_inputs_exit_2_naming_the_field_or_the_place_quickly() {
    let dir = std::env::temp_dir().join(format!("canary-cli-adversarial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kuma = std::fs::read_to_string(KUMA).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let changed = |find: &str, replace: &str| {
        assert!(kuma.contains(find), "{find}");
        kuma.replacen(find, replace, 1)
    };
    let long_interval = write(
        "interval.yaml",
        &changed("interval: 90s", "interval: 2562047788015h"),
    );
    let replicas = write(
        "replicas.yaml",
        &changed(
            "  progressDeadline: 10m\n",
            "  newVersion: {replicas: 4294967295}\n",
        ),
    );
    let nan = write(
        "nan.yaml",
        &changed("thresholdRange: {min: 99}", "thresholdRange: {min: .nan}"),
    );
    let deadline = write(
        "deadline.yaml",
        &changed("progressDeadline: 10m", "progressDeadline: 106751991167h"),
    );
    let steps = write(
        "steps.yaml",
        &changed("maxWeight: 50", "maxWeight: 18446744073709551615"),
    );
    let deep = write(
        "deep.yaml",
        &format!("{kuma}\n---\nkind: List\nitems: {}\n", "[".repeat(100_000)),
    );
    let bomb = {
        let mut levels = vec!["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]".to_owned()];
        for level in 1..10 {
            let items = vec![format!("*a{}", level - 1); 9].join(", ");
            levels.push(format!("a{level}: &a{level} [{items}]"));
        }
        write(
            "bomb.yaml",
            &format!(
                "{kuma}\n---\nkind: ConfigMap\nmetadata: {{name: lol}}\ndata: {{{}}}\n",
                levels.join(", ")
            ),
        )
    };
    let cluster_replicas = write(
        "cluster-replicas.yaml",
        &changed("  replicas: 2\n", "  replicas: 2147483647\n"),
    );
    let dr_spec = write(
        "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: demo}\nspec: just a string\n",
    );
    let dr_subsets = write(
        "dr-subsets.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: demo}\nspec:\n  host: reviews\n  trafficPolicy: [1, 2]\n",
    );
    let labels = write(
        "labels.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: demo, labels: {app: 5}}\nspec: {}\n",
    );
    type Case<'a> = (Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["validate", &long_interval],
            "spec.analysis.interval: `2562047788015h` must be at most 1h (allowed: 1s..=1h)",
        ),
        (
            vec!["simulate", &long_interval],
            "spec.analysis.interval: `2562047788015h` must be at most 1h",
        ),
        (
            vec!["render", &long_interval, "--provider", "kuma"],
            "spec.analysis.interval: `2562047788015h` must be at most 1h",
        ),
        (
            vec!["simulate", &replicas],
            "spec.newVersion.replicas: 4294967295 replicas: must be at least 1 and at most 10000",
        ),
        (
            vec!["validate", &nan],
            "spec.analysis.metrics[0].thresholdRange.min: must be a finite number",
        ),
        (
            vec!["validate", &deadline],
            "spec.progressDeadline: `106751991167h` must be at most 24h",
        ),
        (vec!["validate", &steps], "steps.yaml:16"),
        (vec!["validate", &deep], "deep.yaml:"),
        (vec!["simulate", &bomb], "bomb.yaml:"),
        (
            vec!["simulate", &cluster_replicas, "--cluster"],
            "Deployment webapp/backend: spec.replicas 2147483647 is not within 0..=100",
        ),
        (
            vec!["simulate", KUMA, "--rps", "18446744073709551615"],
            "rps 18446744073709551615 is not within 0..=1000000",
        ),
        (
            vec!["simulate", KUMA, "--rps", "18446744073709551616"],
            "invalid value",
        ),
        (
            vec!["simulate", KUMA, "--canary-error-rate", "NaN"],
            "canary error rate NaN is not within 0..=1",
        ),
        (
            vec!["simulate", KUMA, "--canary-latency-ms", "1e300"],
            "latencies must be positive milliseconds",
        ),
        (
            vec!["simulate", KUMA, "--pod-startup", "2562047788015h"],
            "pod startup 2562047788015h is not within 0s..=1h",
        ),
        (
            vec!["simulate", KUMA, "--approve-after", "99999999999999999999h"],
            "--approve-after: `99999999999999999999h` is too long a duration",
        ),
        (
            vec!["simulate", KUMA, "--approve-after", "2562047788015h"],
            "approval delay 2562047788015h is not within 0s..=720h",
        ),
        (
            vec![
                "render",
                KUMA,
                "--provider",
                "kuma",
                "--step",
                "18446744073709551615",
            ],
            "--step 18446744073709551615: the strategy has steps 1..=5",
        ),
        (
            vec![
                "render",
                KUMA,
                "--provider",
                "kuma",
                "--weight",
                "4294967295",
            ],
            "--weight 4294967295: the weight is a percent",
        ),
        (
            vec![
                "render",
                BOOKINFO,
                "--provider",
                "istio",
                "--objects",
                &dr_spec,
            ],
            "dr.yaml:1: DestinationRule demo/reviews: spec is a string; it must be a mapping",
        ),
        (
            vec![
                "render",
                BOOKINFO,
                "--provider",
                "istio",
                "--weight",
                "20",
                "--objects",
                &dr_subsets,
            ],
            "DestinationRule demo/reviews: spec.trafficPolicy is a list; it must be a mapping",
        ),
        (
            vec![
                "render",
                BOOKINFO,
                "--provider",
                "istio",
                "--objects",
                &labels,
            ],
            "labels.yaml:1: Service demo/reviews: metadata.labels is a mapping with a value that is not a string",
        ),
    ];
    for (args, words) in cases {
        let started = std::time::Instant::now();
        let out = canary(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(words), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
    // Numbers at the far end that are fine run to the end, quickly.
    for args in [
        vec!["simulate", KUMA, "--seed", "18446744073709551615"],
        vec!["simulate", KUMA, "--rps", "1000000"],
        vec!["simulate", KUMA, "--rps", "0"],
    ] {
        let started = std::time::Instant::now();
        let out = canary(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{args:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A node agent released as a DaemonSet through the simulated cluster, its objects (nodes,
/// DaemonSet, Service) in a file of their own: healthy, it is promoted with every request
/// answered; bad, it is rolled back and no stable pod was restarted. `validate` refuses a
/// replica count for it, naming the field and why.
#[test]
fn a_daemonset_rollout_simulates_through_a_cluster_and_refuses_replicas() {
    let dir = std::env::temp_dir().join(format!("canary-cli-daemonset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rollout = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: edge, namespace: ingress}
spec:
  workloadRef: {apiVersion: apps/v1, kind: DaemonSet, name: edge}
  service: {name: edge, port: 80}
  newVersion: {containers: [{name: envoy, image: 'envoyproxy/envoy:v1.31.0'}]}
  trafficRouting: {kuma: {}}
  strategy: {blueGreen: {switch: AfterReady, iterations: 2}}
  analysis: {interval: 30s, scrapeInterval: 10s, metrics: [{name: request-success-rate, thresholdRange: {min: 99}}]}
";
    let objects = "apiVersion: v1
kind: Node
metadata: {name: edge-1, labels: {role: edge}}
---
apiVersion: v1
kind: Node
metadata: {name: edge-2, labels: {role: edge}}
---
apiVersion: v1
kind: Node
metadata: {name: compute-1, labels: {role: compute}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: edge, namespace: ingress}
spec:
  selector: {matchLabels: {app: edge}}
  template:
    metadata: {labels: {app: edge}}
    spec:
      nodeSelector: {role: edge}
      containers: [{name: envoy, image: 'envoyproxy/envoy:v1.30.0', ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: edge, namespace: ingress}
spec:
  selector: {app: edge}
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
";
    let rollout_file = dir.join("edge.yaml");
    let objects_file = dir.join("edge-objects.yaml");
    std::fs::write(&rollout_file, rollout).unwrap();
    std::fs::write(&objects_file, objects).unwrap();
    let (rollout_path, objects_path) = (
        rollout_file.to_str().unwrap(),
        objects_file.to_str().unwrap(),
    );
    for (bad, phase) in [(false, "Succeeded"), (true, "Failed")] {
        let mut args = vec![
            "simulate",
            rollout_path,
            "--cluster",
            "--objects",
            objects_path,
            "--json",
        ];
        if bad {
            args.extend(["--canary-error-rate", "0.3"]);
        }
        let out = canary(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let lines = json_lines(&out);
        let summary = lines.last().unwrap();
        assert_eq!(summary["phase"], phase, "{summary}");
        assert_eq!(summary["unserved_requests"], 0, "{summary}");
        assert_eq!(
            summary["stable_pods_replaced_before_promotion"], 0,
            "{summary}"
        );
        assert!(
            summary["canary_requests"].as_u64().unwrap() > 0,
            "{summary}"
        );
    }
    // Without its nodes the DaemonSet would run nowhere: refused, saying what is missing.
    let out = canary(&["simulate", rollout_path, "--cluster"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("no Node"), "{}", stderr(&out));

    let sized = rollout.replace("newVersion: {", "newVersion: {replicas: 2, ");
    std::fs::write(&rollout_file, sized).unwrap();
    let out = canary(&["validate", rollout_path]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("spec.newVersion.replicas: not allowed for a DaemonSet"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
