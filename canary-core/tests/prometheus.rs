//! Analysis against a real Prometheus server (the Debian `prometheus` binary, started by each
//! test on a free loopback port): the client's answers for every kind of result, custom CAs,
//! and whole rollouts whose metrics come from live synthetic traffic scraped by Prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "support/prometheus.rs"]
mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary_core::analysis::prometheus::{PrometheusMetrics, client_trusting};
use canary_core::api::load::plan_from_yaml;
use canary_core::engine::driver::Driver;
use canary_core::engine::memory::{
    Faults, InMemoryStatusStore, InMemoryTraffic, InMemoryWebhooks, InMemoryWorkload,
};
use canary_core::engine::providers::{Clock, SystemClock};
use canary_core::{Phase, RolloutStatus};
use jiff::{SignedDuration, Timestamp};
use support::{Load, Pods, Prometheus, TempDir};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
  trafficRouting: {istio: {}}
  strategy: {canary: {steps: [{weight: 30}, {weight: 60}]}}
  analysis:
";

/// Threshold analysis every 5s of the success rate over 10s, at 1s scrapes.
const THRESHOLD: &str = "    interval: 5s
    scrapeInterval: 1s
    failureLimit: 2
    metrics:
    - {name: request-success-rate, interval: 10s, thresholdRange: {min: 95}}
";

/// Stable pods with long lives: four and a half million requests each, and an old incident's
/// half a million errors.
const STABLE_PODS: [(&str, u64, u64); 3] = [
    ("podinfo-s1", 4_500_000, 500_000),
    ("podinfo-s2", 4_500_000, 500_000),
    ("podinfo-s3", 4_500_000, 500_000),
];
const CANARY_PODS: [&str; 2] = ["podinfo-canary-a", "podinfo-canary-b"];

/// One rollout in real time: in-memory workloads and routes, metrics from Prometheus scraping
/// every pod.
struct Live {
    plan: canary_core::RolloutPlan,
    traffic: InMemoryTraffic,
    workload: InMemoryWorkload,
    store: InMemoryStatusStore,
    metrics: PrometheusMetrics,
    pods: Pods,
}

impl Live {
    fn new(analysis: &str, canary_errors: f64) -> (Self, Prometheus) {
        Self::with_steps(
            "{canary: {steps: [{weight: 30}, {weight: 60}]}}",
            analysis,
            "1s",
            canary_errors,
        )
    }

    fn with_steps(
        strategy: &str,
        analysis: &str,
        scrape_interval: &str,
        canary_errors: f64,
    ) -> (Self, Prometheus) {
        let rollout = ROLLOUT.replace("{canary: {steps: [{weight: 30}, {weight: 60}]}}", strategy);
        let plan = plan_from_yaml(&format!("{rollout}{analysis}")).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let traffic = InMemoryTraffic::new(plan.capabilities(), clock.clone(), Faults::default());
        let workload = InMemoryWorkload::new(
            "rev-1",
            4,
            SignedDuration::from_millis(500),
            clock,
            Faults::default(),
        );
        let load = Load {
            rps: 400,
            stable_errors: 0.002,
            canary_errors,
        };
        let pods = Pods::start(traffic.clone(), load, &STABLE_PODS, &CANARY_PODS);
        let prometheus = Prometheus::launch(pods.targets(), scrape_interval, None, None);
        let metrics = PrometheusMetrics::new(reqwest::Client::new())
            .with_default_address(prometheus.address.clone());
        let live = Live {
            plan,
            traffic,
            workload,
            store: InMemoryStatusStore::default(),
            metrics,
            pods,
        };
        (live, prometheus)
    }

    /// Reconciles in real time until `done` or `limit`.
    async fn run(&self, limit: Duration, done: impl Fn(&RolloutStatus) -> bool) -> RolloutStatus {
        let webhooks = InMemoryWebhooks::default();
        let driver = Driver::new(&self.plan, &self.traffic, &self.workload, &self.store)
            .metrics(&self.metrics)
            .webhooks(&webhooks);
        let deadline = std::time::Instant::now() + limit;
        loop {
            let pass = driver.reconcile(Timestamp::now()).await.unwrap();
            if done(&pass.status) || std::time::Instant::now() >= deadline {
                return pass.status;
            }
            let wait = pass.requeue_after.unwrap_or(SignedDuration::from_secs(1));
            let wait = wait.clamp(
                SignedDuration::from_millis(100),
                SignedDuration::from_secs(1),
            );
            tokio::time::sleep(wait.unsigned_abs()).await;
        }
    }

    async fn start(&self) {
        self.run(Duration::from_secs(5), |_| true).await;
        self.workload.set_desired_revision("rev-2");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_judges_a_healthy_canary_to_promotion() {
    let (live, _prometheus) = Live::new(THRESHOLD, 0.002);
    live.start().await;
    let end = live
        .run(Duration::from_secs(90), |s| s.phase.is_terminal())
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    let values: Vec<f64> = end
        .analysis
        .measurements
        .iter()
        .filter_map(|m| m.value)
        .collect();
    assert!(
        values.len() >= 2 && values.iter().all(|v| *v > 99.0),
        "success rates from Prometheus: {values:?}"
    );
    assert_eq!(live.workload.promotions(), ["rev-2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_judges_a_bad_canary_to_rollback() {
    let (live, _prometheus) = Live::new(THRESHOLD, 0.2);
    live.start().await;
    let end = live
        .run(Duration::from_secs(90), |s| s.phase.is_terminal())
        .await;
    assert_eq!(end.phase, Phase::Failed, "{}", end.message);
    let value = end
        .analysis
        .measurements
        .last()
        .and_then(|m| m.value)
        .unwrap();
    assert!(
        (value - 80.0).abs() < 5.0,
        "about 80% success measured by Prometheus: {value}"
    );
    assert!(live.traffic.route().is_stable_only());
    assert!(live.workload.promotions().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_killed_mid_analysis_blocks_promotion_and_says_why() {
    let (live, mut prometheus) = Live::new(THRESHOLD, 0.002);
    live.start().await;
    live.run(Duration::from_secs(60), |s| {
        s.stage == canary_core::engine::status::StepStage::Gating
    })
    .await;
    prometheus.kill();
    let held = live
        .run(Duration::from_secs(12), |s| s.phase.is_terminal())
        .await;
    assert_eq!(held.phase, Phase::Progressing, "{}", held.message);
    assert!(
        live.workload.promotions().is_empty(),
        "no promotion without evidence"
    );
    let condition = held.condition("Analysis").expect("an Analysis condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "Inconclusive")
    );
    assert!(
        condition.message.contains("cannot reach Prometheus"),
        "{}",
        condition.message
    );
    assert!(
        held.analysis.inconclusive >= 2,
        "{}",
        held.analysis.inconclusive
    );
}

/// The sequential judge at Prometheus' realistic pace: every pod scraped every 30s at its own
/// offset, measured once a scrape (the default), its windows trailing the clock by 10s.
const SEQUENTIAL_30S: &str = "    scrapeInterval: 30s
    metrics:
    - {name: request-success-rate, judge: sequential}
";

/// A canary ten times worse than stable is rolled back, although a stable pod misses two
/// scrapes as the release starts: its lifetime (with its old incident) never lands in one
/// window, where it would have passed the canary for good.
#[tokio::test(flavor = "multi_thread")]
async fn the_sequential_judge_catches_a_bad_canary_at_30s_scrapes() {
    let strategy = "{canary: {steps: [{weight: 50, pause: {duration: 5m}}]}}";
    let (live, _prometheus) = Live::with_steps(strategy, SEQUENTIAL_30S, "30s", 0.02);
    live.start().await;
    live.pods.fail_scrapes("podinfo-s1", 2);
    let end = live
        .run(Duration::from_secs(200), |s| s.phase.is_terminal())
        .await;
    assert_eq!(end.phase, Phase::Failed, "{}", end.message);
    assert!(end.message.contains("sequential judge"), "{}", end.message);
    assert!(live.workload.promotions().is_empty());
    let judge = &end.analysis.sequential[0];
    let (served, _) = live.pods.served();
    assert!(
        judge.stable_requests <= served[0] && judge.canary_requests <= served[1],
        "never more than was answered: {judge:?}, served {served:?}"
    );
}

/// A healthy canary goes through a missed scrape of a canary pod and restarts of a stable and
/// a canary sidecar, and is promoted; the judge never counts more than the pods answered.
#[tokio::test(flavor = "multi_thread")]
async fn the_sequential_judge_passes_a_healthy_canary_through_a_failed_scrape_and_restarts() {
    let strategy = "{canary: {steps: [{weight: 50, pause: {duration: 150s}}]}}";
    let (live, _prometheus) = Live::with_steps(strategy, SEQUENTIAL_30S, "30s", 0.002);
    live.start().await;
    live.pods.fail_scrapes("podinfo-s2", 1);
    let during = live
        .run(Duration::from_secs(45), |s| s.phase.is_terminal())
        .await;
    assert_eq!(during.phase, Phase::Progressing, "{}", during.message);
    live.pods.fail_scrapes("podinfo-canary-a", 1);
    live.pods.restart("podinfo-s3");
    live.pods.restart("podinfo-canary-b");
    let end = live
        .run(Duration::from_secs(200), |s| s.phase.is_terminal())
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    assert_eq!(live.workload.promotions(), ["rev-2"]);
    let judge = &end.analysis.sequential[0];
    let (served, _) = live.pods.served();
    assert!(
        judge.canary_requests > 0
            && judge.stable_requests <= served[0]
            && judge.canary_requests <= served[1],
        "never more than was answered: {judge:?}, served {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_answers_map_to_values_no_data_and_errors() {
    let traffic = InMemoryTraffic::new(
        canary_core::ProviderKind::Istio.capabilities(&Default::default()),
        Arc::new(SystemClock),
        Faults::default(),
    );
    traffic.tamper(canary_core::RouteState::weighted(50));
    let load = Load {
        rps: 100,
        stable_errors: 0.0,
        canary_errors: 0.0,
    };
    let pods = Pods::start(traffic, load, &STABLE_PODS, &CANARY_PODS);
    let prometheus = Prometheus::start(pods.targets(), None);
    let client = PrometheusMetrics::new(reqwest::Client::new());
    let at = || Timestamp::now();
    let address = prometheus.address.as_str();
    // Wait until the window holds enough scrapes for a settled rate.
    let mut value = None;
    for _ in 0..100 {
        value = client
            .instant(address, "sum(rate(istio_requests_total[5s]))", at())
            .await
            .unwrap();
        if value.is_some_and(|v| (v - 100.0).abs() < 30.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        value.is_some_and(|v| (v - 100.0).abs() < 30.0),
        "about 100 requests a second: {value:?}"
    );
    assert_eq!(
        client.instant(address, "absent_metric_total", at()).await,
        Ok(None),
        "empty is no data"
    );
    assert_eq!(
        client
            .instant(address, "sum(rate(absent_total[5s])) / 0", at())
            .await,
        Ok(None)
    );
    assert_eq!(
        client.instant(address, "0/0", at()).await,
        Ok(None),
        "NaN is no data"
    );
    assert_eq!(
        client.instant(address, "1/0", at()).await,
        Ok(None),
        "infinity is no data"
    );
    assert_eq!(
        client.instant(address, "42", at()).await,
        Ok(Some(42.0)),
        "a scalar"
    );
    let many = client
        .instant(address, "istio_requests_total", at())
        .await
        .unwrap_err();
    assert!(
        many.contains("series, not one") && many.contains("istio_requests_total"),
        "{many}"
    );
    let bad = client
        .instant(address, "sum(rate(istio_requests_total[5s]", at())
        .await
        .unwrap_err();
    assert!(
        bad.contains("bad_data") && bad.contains("parse error"),
        "the server's message: {bad}"
    );
    let range = client
        .instant(address, "istio_requests_total[5s]", at())
        .await
        .unwrap_err();
    assert!(range.contains("range vector"), "{range}");
    let gone = client
        .instant("http://127.0.0.1:1", "up", at())
        .await
        .unwrap_err();
    assert!(
        gone.contains("cannot reach Prometheus at http://127.0.0.1:1"),
        "{gone}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_over_tls_is_trusted_through_a_custom_ca() {
    let dir = TempDir::new("tls");
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=canary test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.0.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        dir.0.join("server.pem").display(),
        dir.0.join("server.key").display()
    );
    let prometheus = Prometheus::start(&[], Some(&web));
    let ca = std::fs::read(dir.0.join("ca.pem")).unwrap();
    let trusted = PrometheusMetrics::new(client_trusting(&ca).unwrap());
    // Prometheus answers 503 until its storage is open.
    let mut answer = Err(String::new());
    for _ in 0..300 {
        answer = trusted
            .instant(&prometheus.address, "7", Timestamp::now())
            .await;
        if !answer.as_ref().is_err_and(|e| e.contains("503")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, Ok(Some(7.0)));
    let untrusted = PrometheusMetrics::new(reqwest::Client::new());
    let refused = untrusted
        .instant(&prometheus.address, "7", Timestamp::now())
        .await
        .unwrap_err();
    assert!(refused.contains("cannot reach Prometheus"), "{refused}");
    assert!(client_trusting(b"not a certificate").is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_credentials_are_sent() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buffer = [0u8; 4096];
            let n = stream.read(&mut buffer).unwrap();
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buffer[..n]).to_string());
            let body = r#"{"status":"success","data":{"resultType":"scalar","result":[0,"1"]}}"#;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(reply.as_bytes()).unwrap();
        }
    });
    use canary_core::analysis::prometheus::Auth;
    let bearer = PrometheusMetrics::new(reqwest::Client::new())
        .with_auth(address.clone(), Auth::Bearer("s3cret".into()));
    assert_eq!(
        bearer.instant(&address, "1", Timestamp::now()).await,
        Ok(Some(1.0))
    );
    let basic = PrometheusMetrics::new(reqwest::Client::new()).with_auth(
        address.clone(),
        Auth::Basic {
            username: "ops".into(),
            password: "pw".into(),
        },
    );
    assert_eq!(
        basic.instant(&address, "1", Timestamp::now()).await,
        Ok(Some(1.0))
    );
    let heads = heads.lock().unwrap();
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret"),
        "{}",
        heads[0]
    );
    // "ops:pw" in base64.
    assert!(
        heads[1]
            .to_ascii_lowercase()
            .contains("authorization: basic b3bzonb3"),
        "{}",
        heads[1]
    );
    assert!(
        heads[0].starts_with("GET /api/v1/query?query=1&time="),
        "{}",
        heads[0]
    );
    assert!(
        !format!("{:?}", Auth::Bearer("s3cret".into())).contains("s3cret"),
        "secrets stay out of logs"
    );
}

/// What Istio sidecars exposed at each scrape, as a real Prometheus stores it (backfilled at
/// known times), counted window by window as the sequential judge does: a stable pod with a
/// lifetime of five million requests and an old incident misses two scrapes, another restarts,
/// a canary pod's error series appears late, a second canary pod appears mid-release. Every
/// window holds only its own requests, and all windows together hold exactly what the pods'
/// counters grew by.
#[tokio::test(flavor = "multi_thread")]
async fn sequential_counts_follow_each_series_through_gaps_restarts_and_new_pods() {
    // Scrapes from t0 (three hours ago, within retention): (pod, workload, offset within a 30s
    // interval, [(code, value at scrape k or None)]).
    let t0 = (Timestamp::now().as_second() - 3 * 3600) / 60 * 60;
    type Counter = Box<dyn Fn(i64) -> Option<i64>>;
    type ScrapedPod = (
        &'static str,
        &'static str,
        i64,
        Vec<(&'static str, Counter)>,
    );
    let pods: Vec<ScrapedPod> = vec![
        // Missed the scrapes k = 4 and 5.
        (
            "podinfo-s1",
            "podinfo",
            3,
            vec![
                (
                    "200",
                    Box::new(|k| (k != 4 && k != 5).then_some(4_600_000 + 600 * k)),
                ),
                (
                    "503",
                    Box::new(|k| (k != 4 && k != 5).then_some(400_000 + 2 * k)),
                ),
            ],
        ),
        // Restarted after scrape 6: 200 requests by scrape 7, its first error by scrape 8.
        (
            "podinfo-s2",
            "podinfo",
            17,
            vec![
                (
                    "200",
                    Box::new(|k| {
                        Some(if k <= 6 {
                            1_000_000 + 600 * k
                        } else {
                            200 + 600 * (k - 7)
                        })
                    }),
                ),
                (
                    "503",
                    Box::new(|k| match k {
                        0..=6 => Some(1_000 + k),
                        7 => None,
                        _ => Some(k - 7),
                    }),
                ),
            ],
        ),
        // A long-lived pod whose series all change labels at scrape 8 (a relabelling, here a
        // `team` label added): the new series start with its whole history.
        (
            "podinfo-s3",
            "podinfo",
            21,
            vec![
                ("200", Box::new(|k| Some(4_500_000 + 600 * k))),
                ("503", Box::new(|k| Some(500_000 + 2 * k))),
            ],
        ),
        // Traffic from just before scrape 2; its first errors by scrape 5.
        (
            "podinfo-canary-1",
            "podinfo-canary",
            9,
            vec![
                ("200", Box::new(|k| (k >= 2).then_some(150 + 300 * (k - 2)))),
                ("503", Box::new(|k| (k >= 5).then_some(4 + 3 * (k - 5)))),
            ],
        ),
        // A pod first scraped at 6, with what it answered since it started.
        (
            "podinfo-canary-2",
            "podinfo-canary",
            24,
            vec![
                ("200", Box::new(|k| (k >= 6).then_some(90 + 300 * (k - 6)))),
                ("503", Box::new(|k| (k >= 6).then_some(2 + 3 * (k - 6)))),
            ],
        ),
    ];
    // At 15s and at 30s scrapes, each pod at its own offset within the interval.
    for interval in [15i64, 30] {
        let mut text = String::from(
            "# HELP istio_requests_total Requests.\n# TYPE istio_requests_total unknown\n",
        );
        for (pod, workload, offset, series) in &pods {
            for (code, value) in series {
                for k in 0..=12 {
                    if let Some(v) = value(k) {
                        let team = if *pod == "podinfo-s3" && k >= 8 {
                            "team=\"web\","
                        } else {
                            ""
                        };
                        text.push_str(&format!(
                            "istio_requests_total{{{team}job=\"kubernetes-pods\",instance=\"{pod}:15020\",pod=\"{pod}\",reporter=\"destination\",source_workload=\"frontend\",destination_workload=\"{workload}\",destination_workload_namespace=\"test\",response_code=\"{code}\"}} {v} {}\n",
                            t0 + interval * k + offset * interval / 30
                        ));
                    }
                }
            }
        }
        text.push_str("# EOF\n");
        let prometheus = Prometheus::backfilled(&text);
        let analysis = SEQUENTIAL_30S.replace("30s", &format!("{interval}s"));
        let plan = plan_from_yaml(&format!("{ROLLOUT}{analysis}")).unwrap();
        let metric = &plan.analysis.metrics[0];
        assert_eq!(metric.window.as_secs(), interval, "one window a scrape");
        let metrics = PrometheusMetrics::new(reqwest::Client::new())
            .with_default_address(prometheus.address.clone());
        // The judge's windows, the last ending after the last scrape; its clock runs
        // `queryOffset` (10s by default) ahead of the windows.
        let settle = plan.analysis.query_offset;
        assert_eq!(settle, SignedDuration::from_secs(10));
        let mut total = canary_core::engine::machine::ErrorCounts::default();
        for j in 0..13 {
            let end = Timestamp::from_second(t0 + interval * (j + 1)).unwrap();
            let context = canary_core::engine::providers::QueryContext::new(
                &plan,
                metric.window,
                end.checked_add(settle).unwrap(),
            );
            use canary_core::engine::providers::MetricProvider;
            let outcome = metrics.measure(metric, &context).await;
            let canary_core::engine::machine::MetricOutcome::Counts(counts) = outcome else {
                panic!("{interval}s, window {j}: {outcome:?}");
            };
            // One scrape of each pod per window, s1's after its gap carrying three: never a
            // lifetime.
            assert!(
                counts.stable_requests <= 1_806 + 601 + 602 + 1_000
                    && counts.canary_requests <= 2 * 303,
                "{interval}s, window {j}: {counts:?}"
            );
            total = total.plus(counts);
        }
        // Canary: pod 1 grew 3000 from its first sample and its error series, new on a pod
        // scraped before, counts whole (25); pod 2's first sample is its base (+1800, +18).
        // Stable: s1 grew 7200 + 24 across its gap; s2 3600 + 6 before its restart, then 200
        // and 3000, and 1 + 4 errors; s3 4200 + 14 before its relabelling, whose new series are
        // a base, and 2400 + 8 after.
        assert_eq!(
            total,
            canary_core::engine::machine::ErrorCounts {
                canary_requests: 3000 + 25 + 1800 + 18,
                canary_errors: 25 + 18,
                stable_requests: 7200 + 24 + 3600 + 6 + 200 + 3000 + 5 + 4200 + 14 + 2400 + 8,
                stable_errors: 24 + 6 + 5 + 14 + 8,
            },
            "{interval}s scrapes"
        );
        // Past the last scrape, nothing is stored yet (as when Prometheus lags, or no pod can
        // be scraped): an error that keeps the window, never zeros that would lose it.
        let later = Timestamp::from_second(t0 + interval * 13 + 120).unwrap();
        let context =
            canary_core::engine::providers::QueryContext::new(&plan, metric.window, later);
        use canary_core::engine::providers::MetricProvider;
        match metrics.measure(metric, &context).await {
            canary_core::engine::machine::MetricOutcome::Error(message) => {
                assert!(message.contains("queryOffset"), "{message}")
            }
            other => panic!("{interval}s: counted a window Prometheus has not stored: {other:?}"),
        }
    }
}
