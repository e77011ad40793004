//! API requests a rollout costs with each traffic provider, from the request log of the
//! in-memory Kubernetes API test server: per weight step and per idle reconcile, reads and
//! writes apart. Each provider runs the same release (podinfo, 10 replicas, +10% up to 50%,
//! builtin success rate every second) in a cluster of its own, reconciled the way the
//! controller does it.
//!
//! `cargo run --release --features controller,test-util --example api_economy`

use std::sync::Arc;
use std::time::Duration;

use canary::cluster::ClusterTraffic;
use canary::engine::providers::SystemClock;
use canary::engine::status::StepStage;
use canary::kube::controller::{TrafficFactory, reconcile};
use canary::kube::crd::Rollout;
use canary::kube::fixtures::TestCluster;
use canary::kube::traffic::MemoryTraffic;
use kube::Api;
use kube_testserver::{LoggedRequest, ResourceType};
use serde_json::{Value, json};

/// The rollout, routed by `routing`.
fn rollout(routing: &str) -> String {
    format!(
        "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {{name: podinfo, namespace: test}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{name: podinfo, port: 9898}}
  newVersion: {{version: v2, containers: [{{name: podinfo, image: 'podinfo:6.1.0'}}]}}
  trafficRouting: {routing}
  strategy: {{canary: {{stepWeight: 10, maxWeight: 50}}}}
  analysis:
    interval: 1s
    scrapeInterval: 1s
    metrics: [{{name: request-success-rate, interval: 2s, thresholdRange: {{min: 99}}}}]
"
    )
}

/// What each provider's cluster holds before the release.
fn objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo", "namespace": "test"},
               "spec": {"replicas": 10, "selector": {"matchLabels": {"app": "podinfo"}},
                        "template": {"metadata": {"labels": {"app": "podinfo", "version": "v1", "ASM_TRAFFIC_TAG": "base"}},
                                     "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.0.0"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo", "namespace": "test"},
               "spec": {"selector": {"app": "podinfo"}, "ports": [{"name": "http", "port": 9898, "appProtocol": "http"}]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "podinfo", "namespace": "test"},
               "spec": {"rules": [{"host": "podinfo.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "podinfo", "port": {"number": 9898}}}}]}}]}}),
        json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "public", "namespace": "infra"},
               "spec": {"gatewayClassName": "example", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
    ]
}

/// The custom resources the providers write.
fn register(cluster: &TestCluster) {
    let types = [
        (
            "networking.istio.io",
            "v1",
            "VirtualService",
            "virtualservices",
            true,
        ),
        (
            "networking.istio.io",
            "v1",
            "DestinationRule",
            "destinationrules",
            true,
        ),
        (
            "kuma.io",
            "v1alpha1",
            "MeshHTTPRoute",
            "meshhttproutes",
            true,
        ),
        (
            "istio.alibabacloud.com",
            "v1",
            "ASMSwimLaneGroup",
            "asmswimlanegroups",
            false,
        ),
        (
            "istio.alibabacloud.com",
            "v1",
            "ASMSwimLane",
            "asmswimlanes",
            false,
        ),
    ];
    for (group, version, kind, plural, namespaced) in types {
        cluster.server.register(ResourceType::new(
            group, version, kind, plural, namespaced, false,
        ));
    }
}

/// (reads, writes) in `log`, events not counted.
fn tally(log: &[LoggedRequest]) -> (usize, usize) {
    let log: Vec<&LoggedRequest> = log.iter().filter(|r| !r.path.contains("/events")).collect();
    let writes = log.iter().filter(|r| r.verb.is_write()).count();
    (log.len() - writes, writes)
}

/// Requests of one release: per span between gates, then 10 idle passes.
struct Economy {
    /// (passes, reads, writes) from one gate to the next, for the steps in the middle.
    steps: Vec<(usize, usize, usize)>,
    /// (reads, writes) of 10 passes after the release.
    idle: (usize, usize),
}

async fn measure(
    routing: &str,
    traffic: Option<Arc<dyn TrafficFactory>>,
) -> Result<Economy, Box<dyn std::error::Error>> {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    register(&cluster);
    for object in objects() {
        cluster.put(object);
    }
    // The stable Deployment's current ReplicaSet (its pod-template hash selects stable pods).
    cluster.put_replicaset("test", "podinfo", "5d8f", json!({"app": "podinfo"}));
    let traffic = traffic.unwrap_or_else(|| Arc::new(ClusterTraffic::new()));
    let rollout: Rollout = serde_saphyr::from_str(&rollout(routing))?;
    cluster.create_rollout(&rollout).await;
    // Every read counted as the API server sees it without watch caches (the controller's
    // own, with caches, is in `controller_scale`: none at idle).
    let context = Arc::new(
        Arc::into_inner(cluster.context(traffic))
            .ok_or("the context is shared")?
            .without_cache(),
    );
    let rollouts: Api<Rollout> = Api::namespaced(cluster.client.clone(), "test");
    let mut steps = Vec::new();
    let mut last_weight = None;
    let mut passes = 0;
    loop {
        let rollout = rollouts.get("podinfo").await?;
        let status = rollout.status.clone().map(|s| s.engine).unwrap_or_default();
        let at_gate = status.stage == StepStage::Gating;
        if at_gate && last_weight != Some(status.routing.route.weight) || status.phase.is_terminal()
        {
            let (reads, writes) = tally(&cluster.server.requests());
            // The spans from one gate to the next in the middle of the release.
            if last_weight.is_some() && !status.phase.is_terminal() {
                steps.push((passes, reads, writes));
            }
            cluster.server.clear_requests();
            passes = 0;
            last_weight = Some(status.routing.route.weight);
            if status.phase.is_terminal() {
                break;
            }
        }
        reconcile(Arc::new(rollout), context.clone()).await?;
        passes += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the release settle (canary objects removed), then count idle passes.
    for _ in 0..5 {
        reconcile(Arc::new(rollouts.get("podinfo").await?), context.clone()).await?;
    }
    cluster.server.clear_requests();
    for _ in 0..10 {
        reconcile(Arc::new(rollouts.get("podinfo").await?), context.clone()).await?;
    }
    Ok(Economy {
        steps,
        idle: tally(&cluster.server.requests()),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let providers: [(&str, &str); 6] = [
        ("in memory (no route writes)", "{kuma: {}}"),
        ("istio", "{istio: {}}"),
        ("nginx", "{nginx: {ingress: podinfo}}"),
        ("kuma", "{kuma: {}}"),
        (
            "asm (weighted lanes)",
            "{asm: {laneGroup: chain, canaryLane: canary, baseLane: base, routeHeader: x-asm-prefer-tag, mode: weighted, ingress: {}}}",
        ),
        (
            "gateway (generated HTTPRoute)",
            "{gatewayAPI: {parentRefs: [{name: public, namespace: infra}], implementation: istio}}",
        ),
    ];
    println!(
        "{:<28} {:>12} {:>14} {:>13} {:>12} {:>12}",
        "provider", "weight steps", "writes / step", "reads / pass", "idle reads", "idle writes"
    );
    for (name, routing) in providers {
        let memory: Option<Arc<dyn TrafficFactory>> = name.starts_with("in memory").then(|| {
            Arc::new(MemoryTraffic::new(Arc::new(SystemClock))) as Arc<dyn TrafficFactory>
        });
        let economy = measure(routing, memory).await?;
        let steps = economy.steps.len();
        let passes: usize = economy.steps.iter().map(|s| s.0).sum();
        let reads: usize = economy.steps.iter().map(|s| s.1).sum();
        let writes: Vec<String> = economy.steps.iter().map(|s| s.2.to_string()).collect();
        println!(
            "{name:<28} {steps:>12} {:>14} {:>13.1} {:>12} {:>12}",
            writes.join(" "),
            reads as f64 / passes.max(1) as f64,
            economy.idle.0,
            economy.idle.1,
        );
    }
    println!(
        "(writes per step: each span from one gate to the next; idle: 10 passes after the release)"
    );
    Ok(())
}
