//! Every builtin query of every provider, evaluated by Prometheus' own engine (`promtool test
//! rules`, from the Debian `prometheus` package) against series shaped as the real exporters
//! write them: one target per pod (or per ingress controller pod), the exporters' full label
//! sets, series of other workloads, hosts, backends and directions that must not be counted,
//! failed scrapes (staleness markers), counter resets after restarts, a canary that answers only
//! server errors, and histograms with a known P99.
//!
//! The label sets follow the exporters' sources: Istio's standard metrics (`istio_requests_total`
//! and `istio_request_duration_milliseconds`, reported by the destination's sidecar, scraped
//! through the merged endpoint with the pod's `namespace` and `pod` added); ingress-nginx's
//! socket collector (`status, method, path, namespace, ingress, service, canary, host` and the
//! controller's own labels; a canary request keeps the main Ingress's `ingress` and `service`
//! and names the canary upstream `<namespace>-<service>-<port>` in `canary`); Envoy's stats as
//! Kuma's data plane exposes them (`envoy_cluster_upstream_rq{envoy_response_code,
//! envoy_cluster_name}` with the inbound cluster `localhost_<port>`, or `self_inbound_dp_<port>`
//! under unified resource naming, next to outbound clusters of the same pod).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "support/prometheus.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use canary_core::ProviderKind;
use canary_core::analysis::queries::{
    MetricFamily, Version, builtin, counted_series, render, variables,
};
use canary_core::api::plan::BuiltinMetric;
use canary_core::engine::providers::QueryContext;
use jiff::{SignedDuration, Timestamp};
use support::TempDir;

/// One scrape every `interval`; every expression is evaluated at 5m with a 1m window.
struct Input {
    interval: &'static str,
    series: Vec<(String, String)>,
}

impl Input {
    fn new(interval: &'static str) -> Self {
        Input {
            interval,
            series: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, labels: &[(&str, &str)], values: &str) {
        let labels: Vec<String> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        self.series
            .push((format!("{name}{{{}}}", labels.join(",")), values.to_owned()));
    }
}

/// The variables of podinfo's rollout in namespace `test`, with a 1m window.
fn vars(provider: ProviderKind) -> BTreeMap<String, String> {
    let context = QueryContext {
        metrics: provider.descriptor().metrics_for(&Default::default()),
        namespace: "test".into(),
        target: "podinfo-canary".into(),
        stable: "podinfo".into(),
        service: "podinfo".into(),
        ingress: Some("podinfo".into()),
        route: Some("podinfo".into()),
        window: SignedDuration::from_mins(1),
        at: Timestamp::UNIX_EPOCH,
        scrape_interval: SignedDuration::from_secs(30),
        query_offset: SignedDuration::from_secs(10),
    };
    variables(&context, &BTreeMap::new())
}

fn query(provider: ProviderKind, metric: BuiltinMetric) -> String {
    render(&builtin(&family(provider), metric), &vars(provider)).unwrap()
}

fn family(provider: ProviderKind) -> canary_core::analysis::queries::MetricFamily {
    provider
        .descriptor()
        .metrics_for(&Default::default())
        .unwrap_or_else(|| panic!("{provider:?} has no metric family"))
}

/// The per-second request rate of the series the sequential judge counts for `version`.
fn counted_rate(provider: ProviderKind, version: Version) -> String {
    let series = counted_series(&family(provider), version);
    let selector = render(&series.selector, &vars(provider)).unwrap();
    format!("sum(rate({selector}[1m]))")
}

/// Runs `promtool test rules`: each expression at 5m must give the value to a thousandth
/// (`None`: no series).
fn check(input: &Input, expectations: &[(String, Option<f64>)]) {
    let dir = TempDir::new("promtool");
    let mut yaml = format!(
        "rule_files: []\nevaluation_interval: 15s\ntests:\n- interval: {}\n  input_series:\n",
        input.interval
    );
    for (series, values) in &input.series {
        writeln!(yaml, "  - series: '{series}'\n    values: '{values}'").unwrap();
    }
    yaml.push_str("  promql_expr_test:\n");
    for (expr, value) in expectations {
        // promtool compares exactly; sums of rates differ in the last bit with their order.
        let expr = format!("round({expr}, 0.001)").replace('\'', "''");
        write!(
            yaml,
            "  - expr: '{expr}'\n    eval_time: 5m\n    exp_samples:"
        )
        .unwrap();
        match value {
            Some(value) => writeln!(yaml, "\n    - labels: '{{}}'\n      value: {value}").unwrap(),
            None => yaml.push_str(" []\n"),
        }
    }
    let file = dir.0.join("test.yml");
    std::fs::write(&file, &yaml).unwrap();
    let output = Command::new(support::binary("promtool"))
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool: {}\n{}\n--- the test file ---\n{yaml}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Istio's buckets (milliseconds) below `le`=100 hold nothing, 95% of requests are at most
/// 100 ms and all at most 250 ms: the P99 interpolates to 100 + 150 × 4/5 = 220 ms.
fn histogram(
    input: &mut Input,
    name: &str,
    bounds: &[&str],
    p99_bucket: usize,
    labels: &[(&str, &str)],
    per_scrape: u32,
) {
    for (i, le) in bounds.iter().chain(["+Inf"].iter()).enumerate() {
        let count = match i.cmp(&p99_bucket) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Equal => per_scrape * 95 / 100,
            std::cmp::Ordering::Greater => per_scrape,
        };
        let mut labels = labels.to_vec();
        labels.push(("le", le));
        input.add(name, &labels, &format!("0+{count}x20"));
    }
}

const ENVOY_MS: [&str; 19] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000",
];

/// An Istio series as the destination's sidecar reports it, scraped from `pod`.
fn istio(
    reporter: &str,
    namespace: &str,
    workload: &str,
    pod: &str,
    code: &str,
) -> Vec<(&'static str, String)> {
    // The scraped pod: the destination's, or for the caller's own report, the caller's.
    let scraped_namespace = if reporter == "source" {
        "web"
    } else {
        namespace
    };
    vec![
        ("job", "kubernetes-pods".into()),
        ("instance", format!("{pod}:15020")),
        ("namespace", scraped_namespace.into()),
        ("pod", pod.into()),
        ("reporter", reporter.into()),
        ("source_workload", "frontend".into()),
        ("source_workload_namespace", "web".into()),
        (
            "source_principal",
            "spiffe://cluster.local/ns/web/sa/frontend".into(),
        ),
        ("source_app", "frontend".into()),
        ("source_version", "unknown".into()),
        ("source_canonical_service", "frontend".into()),
        ("source_canonical_revision", "latest".into()),
        ("source_cluster", "Kubernetes".into()),
        ("destination_workload", workload.into()),
        ("destination_workload_namespace", namespace.into()),
        (
            "destination_principal",
            format!("spiffe://cluster.local/ns/{namespace}/sa/podinfo"),
        ),
        ("destination_app", "podinfo".into()),
        ("destination_version", "unknown".into()),
        (
            "destination_service",
            format!("podinfo.{namespace}.svc.cluster.local"),
        ),
        ("destination_service_name", "podinfo".into()),
        ("destination_service_namespace", namespace.into()),
        ("destination_canonical_service", "podinfo".into()),
        ("destination_canonical_revision", "latest".into()),
        ("destination_cluster", "Kubernetes".into()),
        ("request_protocol", "http".into()),
        ("response_code", code.into()),
        ("grpc_response_status", "".into()),
        ("response_flags", "-".into()),
        ("connection_security_policy", "mutual_tls".into()),
    ]
}

fn borrowed<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    labels.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn istio_input() -> Input {
    let mut input = Input::new("15s");
    let requests = "istio_requests_total";
    // Canary pod a: 3.6 ok and 0.4 errors a second; its scrape at 4m30s failed (stale).
    let a = istio(
        "destination",
        "test",
        "podinfo-canary",
        "podinfo-canary-a",
        "200",
    );
    input.add(requests, &borrowed(&a), "0+54x17 stale 1026+54x1");
    let a = istio(
        "destination",
        "test",
        "podinfo-canary",
        "podinfo-canary-a",
        "503",
    );
    input.add(requests, &borrowed(&a), "0+6x17 stale 114+6x1");
    // Canary pod b: restarted just before 4m30s, its counters from 0 again.
    let b = istio(
        "destination",
        "test",
        "podinfo-canary",
        "podinfo-canary-b",
        "200",
    );
    input.add(requests, &borrowed(&b), "0+27x17 0+27x2");
    let b = istio(
        "destination",
        "test",
        "podinfo-canary",
        "podinfo-canary-b",
        "503",
    );
    input.add(requests, &borrowed(&b), "0+3x17 0+3x2");
    // What must not be counted: the caller's own report of the same requests, half failed;
    // stable; another namespace's canary, all failing.
    let source = istio("source", "test", "podinfo-canary", "frontend-x", "503");
    input.add(requests, &borrowed(&source), "0+60x20");
    for (code, per) in [("200", "300"), ("503", "3")] {
        let stable = istio("destination", "test", "podinfo", "podinfo-s1", code);
        input.add(requests, &borrowed(&stable), &format!("0+{per}x20"));
    }
    let other = istio(
        "destination",
        "staging",
        "podinfo-canary",
        "podinfo-canary-z",
        "500",
    );
    input.add(requests, &borrowed(&other), "0+90x20");
    // Durations: the canary's P99 is 220 ms, stable's far lower.
    let canary = istio(
        "destination",
        "test",
        "podinfo-canary",
        "podinfo-canary-a",
        "200",
    );
    let bucket = "istio_request_duration_milliseconds_bucket";
    histogram(&mut input, bucket, &ENVOY_MS, 6, &borrowed(&canary), 60);
    let stable = istio("destination", "test", "podinfo", "podinfo-s1", "200");
    histogram(&mut input, bucket, &ENVOY_MS, 3, &borrowed(&stable), 300);
    input
}

#[test]
fn istio_and_asm_queries_read_what_istio_reports() {
    for provider in [ProviderKind::Istio, ProviderKind::Asm] {
        check(
            &istio_input(),
            &[
                // (3.6 + 1.35) ok of (4.0 + 1.5) a second.
                (
                    query(provider, BuiltinMetric::RequestSuccessRate),
                    Some(90.0),
                ),
                (query(provider, BuiltinMetric::RequestDuration), Some(220.0)),
                (counted_rate(provider, Version::Canary), Some(5.5)),
                (counted_rate(provider, Version::Stable), Some(20.2)),
            ],
        );
    }
}

#[test]
fn a_canary_answering_only_server_errors_reads_zero_percent_everywhere() {
    for provider in [ProviderKind::Istio, ProviderKind::Nginx, ProviderKind::Kuma] {
        let mut input = Input::new("15s");
        let mut silent = Input::new("15s");
        match provider {
            ProviderKind::Istio => {
                let a = istio(
                    "destination",
                    "test",
                    "podinfo-canary",
                    "podinfo-canary-a",
                    "503",
                );
                input.add("istio_requests_total", &borrowed(&a), "0+15x20");
                let stable = istio("destination", "test", "podinfo", "podinfo-s1", "200");
                silent.add("istio_requests_total", &borrowed(&stable), "0+15x20");
            }
            ProviderKind::Nginx => {
                let canary = nginx(
                    "controller-a",
                    "podinfo",
                    "test-podinfo-canary-9898",
                    "/",
                    "502",
                );
                input.add(
                    "nginx_ingress_controller_requests",
                    &borrowed(&canary),
                    "0+15x20",
                );
                let stable = nginx("controller-a", "podinfo", "", "/", "200");
                silent.add(
                    "nginx_ingress_controller_requests",
                    &borrowed(&stable),
                    "0+15x20",
                );
            }
            _ => {
                let canary = kuma(
                    "podinfo-canary-a",
                    "podinfo-canary",
                    "localhost_9898",
                    "503",
                );
                input.add("envoy_cluster_upstream_rq", &borrowed(&canary), "0+15x20");
                let stable = kuma("podinfo-s1", "podinfo", "localhost_9898", "200");
                silent.add("envoy_cluster_upstream_rq", &borrowed(&stable), "0+15x20");
            }
        }
        let success = query(provider, BuiltinMetric::RequestSuccessRate);
        check(&input, &[(success.clone(), Some(0.0))]);
        // A canary that answered nothing is no data, not 0%.
        check(&silent, &[(success, None)]);
    }
}

/// A request as an ingress-nginx controller pod counts it.
fn nginx(
    controller: &str,
    service: &str,
    canary: &str,
    path: &str,
    status: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("job", "ingress-nginx-controller-metrics".into()),
        ("instance", format!("{controller}:10254")),
        ("controller_namespace", "ingress-nginx".into()),
        ("controller_class", "k8s.io/ingress-nginx".into()),
        ("controller_pod", controller.into()),
        ("host", "shop.example.com".into()),
        ("method", "GET".into()),
        ("path", path.into()),
        ("namespace", "test".into()),
        ("ingress", "podinfo".into()),
        ("service", service.into()),
        ("canary", canary.into()),
        ("status", status.into()),
    ]
}

#[test]
fn nginx_queries_read_what_the_controller_counts() {
    // The chart's ServiceMonitor scrapes every 30s: eight scrapes before 4m, the window holds
    // two more.
    let mut input = Input::new("30s");
    let requests = "nginx_ingress_controller_requests";
    let upstream = "test-podinfo-canary-9898";
    // Two controller pods serve the Ingress; the canary's requests keep the main Ingress's
    // `ingress` and `service` and name the canary upstream. Controller b missed a scrape.
    for (controller, values_ok, values_err) in [
        ("controller-a", "0+54x10", "0+6x10"),
        ("controller-b", "0+54x8 stale 540", "0+6x8 stale 60"),
    ] {
        let ok = nginx(controller, "podinfo", upstream, "/", "200");
        input.add(requests, &borrowed(&ok), values_ok);
        let err = nginx(controller, "podinfo", upstream, "/", "500");
        input.add(requests, &borrowed(&err), values_err);
        let stable = nginx(controller, "podinfo", "", "/", "200");
        input.add(requests, &borrowed(&stable), "0+600x10");
        // Another backend of the same Ingress (another path): never stable's.
        let other = nginx(controller, "checkout", "", "/checkout", "503");
        input.add(requests, &borrowed(&other), "0+300x10");
    }
    // Another namespace's Ingress of the same name.
    let mut elsewhere = nginx("controller-a", "podinfo", upstream, "/", "500");
    elsewhere[8] = ("namespace", "staging".into());
    input.add(requests, &borrowed(&elsewhere), "0+90x10");
    let bucket = "nginx_ingress_controller_response_duration_seconds_bucket";
    let seconds = [
        ".005", ".01", ".025", ".05", ".1", ".25", ".5", "1", "2.5", "5", "10",
    ];
    let canary = nginx("controller-a", "podinfo", upstream, "/", "200");
    histogram(&mut input, bucket, &seconds, 4, &borrowed(&canary), 60);
    let stable = nginx("controller-a", "podinfo", "", "/", "200");
    histogram(&mut input, bucket, &seconds, 1, &borrowed(&stable), 600);
    let p = ProviderKind::Nginx;
    check(
        &input,
        &[
            (query(p, BuiltinMetric::RequestSuccessRate), Some(90.0)),
            // 0.1 s + 0.15 s × 4/5, in milliseconds.
            (query(p, BuiltinMetric::RequestDuration), Some(220.0)),
            (counted_rate(p, Version::Canary), Some(4.0)),
            (counted_rate(p, Version::Stable), Some(40.0)),
        ],
    );
}

/// A response counted by the Envoy of a Kuma data plane, on its cluster `cluster`.
fn kuma(pod: &str, service: &str, cluster: &str, code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("job", "kuma-dataplanes".into()),
        ("instance", format!("{pod}:5670")),
        ("kuma_io_service", format!("{service}_test_svc_9898")),
        ("kuma_io_mesh", "default".into()),
        ("k8s_kuma_io_namespace", "test".into()),
        ("pod", pod.into()),
        ("envoy_cluster_name", cluster.into()),
        ("kuma_io_mesh_traffic", "true".into()),
        ("envoy_response_code", code.into()),
    ]
}

#[test]
fn kuma_queries_read_inbound_traffic_under_both_naming_schemes() {
    for inbound in ["localhost_9898", "self_inbound_dp_9898"] {
        let mut input = Input::new("15s");
        let requests = "envoy_cluster_upstream_rq";
        for (pod, ok, err) in [
            (
                "podinfo-canary-a",
                "0+54x17 stale 1026+54x1",
                "0+6x17 stale 114+6x1",
            ),
            ("podinfo-canary-b", "0+27x17 0+27x2", "0+3x17 0+3x2"),
        ] {
            input.add(
                requests,
                &borrowed(&kuma(pod, "podinfo-canary", inbound, "200")),
                ok,
            );
            input.add(
                requests,
                &borrowed(&kuma(pod, "podinfo-canary", inbound, "503")),
                err,
            );
            // The same pod's calls to its own backend, failing: outbound, never counted. Both
            // schemes' outbound names.
            for outbound in [
                "backend_test_svc_8080",
                "kri_msvc_default__test_backend_8080",
            ] {
                let call = kuma(pod, "podinfo-canary", outbound, "503");
                input.add(requests, &borrowed(&call), "0+60x20");
            }
        }
        for (code, per) in [("200", "300"), ("503", "3")] {
            let stable = kuma("podinfo-s1", "podinfo", inbound, code);
            input.add(requests, &borrowed(&stable), &format!("0+{per}x20"));
        }
        let bucket = "envoy_cluster_upstream_rq_time_bucket";
        let canary = kuma("podinfo-canary-a", "podinfo-canary", inbound, "");
        histogram(&mut input, bucket, &ENVOY_MS, 6, &borrowed(&canary), 60);
        let outbound = kuma(
            "podinfo-canary-a",
            "podinfo-canary",
            "backend_test_svc_8080",
            "",
        );
        histogram(&mut input, bucket, &ENVOY_MS, 12, &borrowed(&outbound), 60);
        let p = ProviderKind::Kuma;
        check(
            &input,
            &[
                (query(p, BuiltinMetric::RequestSuccessRate), Some(90.0)),
                (query(p, BuiltinMetric::RequestDuration), Some(220.0)),
                (counted_rate(p, Version::Canary), Some(5.5)),
                (counted_rate(p, Version::Stable), Some(20.2)),
            ],
        );
    }
}

/// The variables of podinfo's rollout routed by the Gateway API route `podinfo` of namespace
/// `test`.
fn gateway_query(family: &MetricFamily, metric: BuiltinMetric) -> String {
    render(&builtin(family, metric), &vars(ProviderKind::Gateway)).unwrap()
}

fn gateway_counted(family: &MetricFamily, version: Version) -> String {
    let series = counted_series(family, version);
    let selector = render(&series.selector, &vars(ProviderKind::Gateway)).unwrap();
    format!("sum(rate({selector}[1m]))")
}

/// A request the Istio gateway proxied, as it reports it: `reporter="source"` (a gateway is a
/// client-side reporter), scraped from the gateway's pod, the backends without sidecars (their
/// workload `unknown`), the destination named by Service.
fn istio_gateway(
    pod: &str,
    namespace: &str,
    service: &str,
    code: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("job", "kubernetes-pods".into()),
        ("instance", format!("{pod}:15020")),
        ("namespace", "infra".into()),
        ("pod", pod.into()),
        ("reporter", "source".into()),
        ("source_workload", "public-istio".into()),
        ("source_workload_namespace", "infra".into()),
        ("source_canonical_service", "public-istio".into()),
        ("destination_workload", "unknown".into()),
        ("destination_workload_namespace", "unknown".into()),
        (
            "destination_service",
            format!("{service}.{namespace}.svc.cluster.local"),
        ),
        ("destination_service_name", service.into()),
        ("destination_service_namespace", namespace.into()),
        ("destination_canonical_service", "unknown".into()),
        ("request_protocol", "http".into()),
        ("response_code", code.into()),
        ("response_flags", "-".into()),
        ("connection_security_policy", "unknown".into()),
    ]
}

#[test]
fn gateway_queries_on_istio_read_what_its_gateway_reports() {
    let family = canary_core::traffic::gateway::ISTIO_METRICS;
    let mut input = Input::new("15s");
    let requests = "istio_requests_total";
    // Two gateway pods proxy to the canary Service; gateway b restarted just before 4m30s,
    // and gateway a's scrape at 4m30s failed (stale).
    for (pod, code, values) in [
        ("public-istio-a", "200", "0+54x17 stale 1026+54x1"),
        ("public-istio-a", "503", "0+6x17 stale 114+6x1"),
        ("public-istio-b", "200", "0+27x17 0+27x2"),
        ("public-istio-b", "503", "0+3x17 0+3x2"),
    ] {
        let labels = istio_gateway(pod, "test", "podinfo-canary", code);
        input.add(requests, &borrowed(&labels), values);
    }
    for (code, per) in [("200", "300"), ("503", "3")] {
        let labels = istio_gateway("public-istio-a", "test", "podinfo", code);
        input.add(requests, &borrowed(&labels), &format!("0+{per}x20"));
    }
    // Not counted: the canary Service of another namespace, failing; the canary pods' own
    // sidecar report of the same requests, where they have a sidecar.
    let other = istio_gateway("public-istio-a", "staging", "podinfo-canary", "500");
    input.add(requests, &borrowed(&other), "0+90x20");
    let inbound = istio(
        "destination",
        "test",
        "podinfo-canary",
        "podinfo-canary-a",
        "503",
    );
    input.add(requests, &borrowed(&inbound), "0+60x20");
    let bucket = "istio_request_duration_milliseconds_bucket";
    let canary = istio_gateway("public-istio-a", "test", "podinfo-canary", "200");
    histogram(&mut input, bucket, &ENVOY_MS, 6, &borrowed(&canary), 60);
    let stable = istio_gateway("public-istio-a", "test", "podinfo", "200");
    histogram(&mut input, bucket, &ENVOY_MS, 3, &borrowed(&stable), 300);
    check(
        &input,
        &[
            (
                gateway_query(&family, BuiltinMetric::RequestSuccessRate),
                Some(90.0),
            ),
            (
                gateway_query(&family, BuiltinMetric::RequestDuration),
                Some(220.0),
            ),
            (gateway_counted(&family, Version::Canary), Some(5.5)),
            (gateway_counted(&family, Version::Stable), Some(20.2)),
        ],
    );
}

/// Envoy's upstream counter as an Envoy Gateway proxy pod exposes it.
fn envoy_gateway(pod: &str, cluster: &str, code: &str) -> Vec<(&'static str, String)> {
    vec![
        ("job", "envoy-gateway-proxies".into()),
        ("instance", format!("{pod}:19001")),
        ("namespace", "envoy-gateway-system".into()),
        ("pod", pod.into()),
        ("envoy_cluster_name", cluster.into()),
        ("envoy_response_code", code.into()),
    ]
}

#[test]
fn gateway_queries_on_envoy_gateway_read_the_canary_backends_clusters() {
    let family = canary_core::traffic::gateway::ENVOY_GATEWAY_METRICS;
    let mut input = Input::new("15s");
    let requests = "envoy_cluster_upstream_rq";
    // The canary is backend 0 of the weighted rule (0) and of the match rule (1); stable is
    // backend 1 of the weighted rule. Proxy b restarted just before 4m30s.
    for (pod, cluster, code, values) in [
        (
            "edge-a",
            "httproute/test/podinfo/rule/0/backend/0",
            "200",
            "0+54x20",
        ),
        (
            "edge-a",
            "httproute/test/podinfo/rule/0/backend/0",
            "503",
            "0+6x20",
        ),
        (
            "edge-b",
            "httproute/test/podinfo/rule/1/backend/0",
            "200",
            "0+27x17 0+27x2",
        ),
        (
            "edge-b",
            "httproute/test/podinfo/rule/1/backend/0",
            "503",
            "0+3x17 0+3x2",
        ),
        (
            "edge-a",
            "httproute/test/podinfo/rule/0/backend/1",
            "200",
            "0+300x20",
        ),
        (
            "edge-a",
            "httproute/test/podinfo/rule/0/backend/1",
            "503",
            "0+3x20",
        ),
        // Not counted: another route's backend, the same route name in another namespace,
        // the rule's shared cluster (before the release), the mirror's cluster.
        (
            "edge-a",
            "httproute/test/checkout/rule/0/backend/0",
            "500",
            "0+90x20",
        ),
        (
            "edge-a",
            "httproute/staging/podinfo/rule/0/backend/0",
            "500",
            "0+90x20",
        ),
        ("edge-a", "httproute/test/podinfo/rule/0", "500", "0+60x20"),
        (
            "edge-b",
            "httproute/test/podinfo/rule/0-mirror-0",
            "500",
            "0+60x20",
        ),
    ] {
        let labels = envoy_gateway(pod, cluster, code);
        input.add(requests, &borrowed(&labels), values);
    }
    let bucket = "envoy_cluster_upstream_rq_time_bucket";
    let mut timing = |cluster: &str, p99_bucket, per_scrape| {
        let labels: Vec<(&'static str, String)> = envoy_gateway("edge-a", cluster, "")
            .into_iter()
            .filter(|(name, _)| *name != "envoy_response_code")
            .collect();
        histogram(
            &mut input,
            bucket,
            &ENVOY_MS,
            p99_bucket,
            &borrowed(&labels),
            per_scrape,
        );
    };
    timing("httproute/test/podinfo/rule/0/backend/0", 6, 60);
    timing("httproute/test/podinfo/rule/0/backend/1", 3, 300);
    check(
        &input,
        &[
            (
                gateway_query(&family, BuiltinMetric::RequestSuccessRate),
                Some(90.0),
            ),
            (
                gateway_query(&family, BuiltinMetric::RequestDuration),
                Some(220.0),
            ),
            (gateway_counted(&family, Version::Canary), Some(5.5)),
            (gateway_counted(&family, Version::Stable), Some(20.2)),
        ],
    );
}
