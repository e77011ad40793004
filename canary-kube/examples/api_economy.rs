//! API requests a rollout costs, from the API test server's request log: per weight step and
//! per idle reconcile, reads and writes apart.
//!
//! `cargo run --release -p canary-kube --features test-util --example api_economy`

use std::sync::Arc;
use std::time::Duration;

use canary_core::machine::MetricOutcome;
use canary_core::memory::{InMemoryMetrics, InMemoryWebhooks};
use canary_core::providers::SystemClock;
use canary_kube::controller::{Context, reconcile};
use canary_kube::crd::Rollout;
use canary_kube::metrics::Metrics;
use canary_kube::testserver::{ApiServer, LoggedRequest, ResourceType};
use canary_kube::traffic::MemoryTraffic;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use prometheus_client::registry::Registry;

const ROLLOUT: &str = "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: podinfo, namespace: test}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 9898}
  newVersion: {containers: [{name: podinfo, image: 'podinfo:6.1.0'}]}
  trafficRouting: {kuma: {}}
  strategy: {canary: {stepWeight: 10, maxWeight: 50}}
  analysis:
    interval: 1s
    metrics: [{name: request-success-rate, thresholdRange: {min: 99}}]
";

/// (reads, writes) in `log`, events apart: (reads, writes, events).
fn tally(log: &[LoggedRequest]) -> (usize, usize, usize) {
    let events = log.iter().filter(|r| r.path.contains("/events")).count();
    let writes = log
        .iter()
        .filter(|r| r.verb.is_write() && !r.path.contains("/events"))
        .count();
    (log.len() - writes - events, writes, events)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = ApiServer::start().await?;
    server.register(ResourceType::new(
        "canary.rs",
        "v1alpha1",
        "Rollout",
        "rollouts",
        true,
        true,
    ));
    server.simulate_deployments(Duration::from_millis(200));
    let client = server.client();
    let stable: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "podinfo"}},
                 "template": {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0"}]}}}
    }))?;
    Api::<Deployment>::namespaced(client.clone(), "test")
        .create(&PostParams::default(), &stable)
        .await?;
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), "test");
    rollouts
        .create(&PostParams::default(), &serde_saphyr::from_str(ROLLOUT)?)
        .await?;
    let metrics = InMemoryMetrics::default();
    metrics.set("request-success-rate", MetricOutcome::Value(99.9));
    let context = Arc::new(Context::new(
        client,
        Arc::new(MemoryTraffic::new(Arc::new(SystemClock))),
        Arc::new(metrics),
        Arc::new(InMemoryWebhooks::default()),
        Arc::new(SystemClock),
        Metrics::register(&mut Registry::default()),
        "api-economy",
    ));
    println!(
        "{:<28} {:>6} {:>7} {:>7} {:>7}",
        "span", "passes", "reads", "writes", "events"
    );
    let mut last_weight = None;
    let mut passes = 0;
    server.clear_requests();
    loop {
        let rollout = rollouts.get("podinfo").await?;
        let status = rollout.status.clone().unwrap_or_default();
        let at_gate = status.stage == canary_core::status::StepStage::Gating;
        if at_gate && last_weight != Some(status.route.weight) || status.phase.is_terminal() {
            let log = server.requests();
            let (reads, writes, events) = tally(&log);
            let span = match last_weight {
                None => format!("start -> gate at {}%", status.route.weight),
                Some(from) if status.phase.is_terminal() => {
                    format!("gate at {from}% -> {}", status.phase)
                }
                Some(from) => format!("gate at {from}% -> gate at {}%", status.route.weight),
            };
            println!("{span:<28} {passes:>6} {reads:>7} {writes:>7} {events:>7}");
            server.clear_requests();
            passes = 0;
            last_weight = Some(status.route.weight);
            if status.phase.is_terminal() {
                break;
            }
        }
        reconcile(Arc::new(rollout), context.clone()).await?;
        passes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        let rollout = rollouts.get("podinfo").await?;
        reconcile(Arc::new(rollout), context.clone()).await?;
    }
    let (reads, writes, events) = tally(&server.requests());
    println!(
        "{:<28} {:>6} {reads:>7} {writes:>7} {events:>7}",
        "10 idle passes", 10
    );
    println!("(reads include the controller's GET of the Rollout before each pass)");
    Ok(())
}
