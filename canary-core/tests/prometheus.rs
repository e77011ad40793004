//! Analysis against a real Prometheus server (the Debian `prometheus` binary, started by each
//! test on a free loopback port): the client's answers for every kind of result, custom CAs,
//! and whole rollouts whose metrics come from live synthetic traffic scraped by Prometheus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "support/prometheus.rs"]
mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary_core::driver::Driver;
use canary_core::load::plan_from_yaml;
use canary_core::memory::{
    Faults, InMemoryStatusStore, InMemoryTraffic, InMemoryWebhooks, InMemoryWorkload,
};
use canary_core::prometheus::{PrometheusMetrics, client_trusting};
use canary_core::providers::{Clock, SystemClock};
use canary_core::{Phase, RolloutStatus};
use jiff::{SignedDuration, Timestamp};
use support::{Exporter, Prometheus, TempDir};

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
  trafficRouting: {istio: {}}
  strategy: {canary: {steps: [{weight: 30}, {weight: 60}]}}
  analysis:
    interval: 5s
    failureLimit: 2
    metrics:
";

const THRESHOLD: &str =
    "    - {name: request-success-rate, interval: 10s, thresholdRange: {min: 95}}\n";
const SEQUENTIAL: &str = "    - {name: request-success-rate, judge: sequential, interval: 3s}\n";

/// One rollout in real time: in-memory workloads and routes, metrics from Prometheus.
struct Live {
    plan: canary_core::RolloutPlan,
    traffic: InMemoryTraffic,
    workload: InMemoryWorkload,
    store: InMemoryStatusStore,
    metrics: PrometheusMetrics,
    _exporter: Exporter,
}

impl Live {
    fn new(metrics_yaml: &str, canary_error_rate: f64) -> (Self, Prometheus) {
        Self::with_steps(
            "{canary: {steps: [{weight: 30}, {weight: 60}]}}",
            metrics_yaml,
            canary_error_rate,
        )
    }

    fn with_steps(
        strategy: &str,
        metrics_yaml: &str,
        canary_error_rate: f64,
    ) -> (Self, Prometheus) {
        let rollout = ROLLOUT.replace("{canary: {steps: [{weight: 30}, {weight: 60}]}}", strategy);
        let plan = plan_from_yaml(&format!("{rollout}{metrics_yaml}")).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let traffic = InMemoryTraffic::new(plan.capabilities(), clock.clone(), Faults::default());
        let workload = InMemoryWorkload::new(
            "rev-1",
            4,
            SignedDuration::from_millis(500),
            clock,
            Faults::default(),
        );
        let exporter = Exporter::start(traffic.clone(), 400, 0.002, canary_error_rate);
        let prometheus = Prometheus::start(std::slice::from_ref(&exporter.target), None);
        let metrics = PrometheusMetrics::new(reqwest::Client::new())
            .with_default_address(prometheus.address.clone());
        let live = Live {
            plan,
            traffic,
            workload,
            store: InMemoryStatusStore::default(),
            metrics,
            _exporter: exporter,
        };
        (live, prometheus)
    }

    /// Reconciles in real time until `done` or `limit`.
    async fn run(&self, limit: Duration, done: impl Fn(&RolloutStatus) -> bool) -> RolloutStatus {
        let webhooks = InMemoryWebhooks::default();
        let driver = Driver {
            plan: &self.plan,
            traffic: &self.traffic,
            workload: &self.workload,
            metrics: &self.metrics,
            webhooks: &webhooks,
            store: &self.store,
        };
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
    let values: Vec<f64> = end.measurements.iter().filter_map(|m| m.value).collect();
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
    let value = end.measurements.last().and_then(|m| m.value).unwrap();
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
        s.stage == canary_core::status::StepStage::Gating
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
    assert!(held.inconclusive >= 2, "{}", held.inconclusive);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_counts_feed_the_sequential_judge() {
    // The sequential judge guards the rollout without holding it: a step long enough for the
    // evidence to build up.
    let strategy = "{canary: {steps: [{weight: 30, pause: {duration: 60s}}]}}";
    let (live, _prometheus) = Live::with_steps(strategy, SEQUENTIAL, 0.1);
    live.start().await;
    let end = live
        .run(Duration::from_secs(90), |s| s.phase.is_terminal())
        .await;
    assert_eq!(end.phase, Phase::Failed, "{}", end.message);
    assert!(end.message.contains("sequential judge"), "{}", end.message);
    let judge = &end.sequential[0];
    assert!(
        judge.canary_requests > 0 && judge.stable_requests > judge.canary_requests,
        "{judge:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_answers_map_to_values_no_data_and_errors() {
    let traffic = InMemoryTraffic::new(
        canary_core::ProviderKind::Istio.capabilities(),
        Arc::new(SystemClock),
        Faults::default(),
    );
    traffic.tamper(canary_core::RouteState::weighted(50));
    let exporter = Exporter::start(traffic, 100, 0.0, 0.0);
    let prometheus = Prometheus::start(std::slice::from_ref(&exporter.target), None);
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
    use canary_core::prometheus::Auth;
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
