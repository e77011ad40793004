//! A whole rollout through the controller with the Kuma provider, on the API test server: the
//! Kurator seed's progression (+10% up to 50%) on a MeshHTTPRoute, promotion, and no canary
//! object left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::Phase;
use canary_kube::crd::Rollout;
use canary_kube::fixtures::TestCluster;
use canary_kube::traffic::{Backends, ClusterBackend};
use kube_testserver::ResourceType;

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_progression_runs_on_a_mesh_http_route_to_promotion() {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    cluster.server.register(ResourceType::new(
        "kuma.io",
        "v1alpha1",
        "MeshHTTPRoute",
        "meshhttproutes",
        true,
        false,
    ));
    let text = std::fs::read_to_string(format!(
        "{}/../examples/rollouts/podinfo-kuma.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .replace("interval: 90s", "interval: 1s\n    scrapeInterval: 1s")
    .replace("thresholdRange: {min: 99}", "interval: 2s\n      thresholdRange: {min: 99}")
    .replace("progressDeadline: 10m", "progressDeadline: 30s")
    .replace("  trafficRouting:", "  newVersion: {containers: [{name: backend, image: 'ghcr.io/stefanprodan/podinfo:6.0.1'}]}\n  trafficRouting:");
    let file = canary_core::api::load::rollout_file(&text).unwrap();
    for object in file.objects.iter() {
        cluster.put(object.clone());
    }
    // The simulated controllers give the Deployment its ReplicaSet and ready pods.
    cluster
        .wait_rolled_out("webapp", "backend", Duration::from_secs(10))
        .await;
    let service_before = cluster
        .server
        .get("v1", "Service", Some("webapp"), "backend")
        .unwrap();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    let rollout: Rollout = serde_json::from_value(documents[0].clone()).unwrap();
    cluster.create_rollout(&rollout).await;
    let context = cluster.context(Arc::new(Backends::new([
        &canary_kuma::Kuma as &dyn ClusterBackend
    ])));
    let at = ("webapp", "backend");
    let route = || {
        cluster.server.get(
            "kuma.io/v1alpha1",
            "MeshHTTPRoute",
            Some("webapp"),
            "backend-canary",
        )
    };

    for weight in [10, 20, 30, 40, 50] {
        cluster
            .reconcile_until(&context, at, Duration::from_secs(20), |s| {
                s.routing.route.weight == weight
            })
            .await;
        let backends = &route().unwrap()["spec"]["to"][0]["rules"][0]["default"]["backendRefs"];
        assert_eq!(backends[0]["weight"], 100 - weight);
        assert_eq!(backends[1]["weight"], weight);
    }
    let end = cluster
        .reconcile_until(&context, at, Duration::from_secs(30), |s| {
            s.phase.is_terminal()
        })
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    cluster
        .reconcile_until(&context, at, Duration::from_secs(10), |_| {
            cluster
                .server
                .get("v1", "Service", Some("webapp"), "backend")
                .unwrap()["spec"]
                == service_before["spec"]
        })
        .await;
    assert!(route().is_none(), "no route once all traffic is on stable");
    assert!(
        cluster
            .server
            .get("v1", "Service", Some("webapp"), "backend-canary")
            .is_none()
    );
}
