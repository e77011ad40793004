//! The ASM seed's call chain through the controller, on the API test server: mocka's canary
//! alone, then all three, mockb approved, mocka undone, a controller restart in the middle,
//! and the lanes gone with the last Rollout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::{Command, Phase};
use canary_kube::controller::{Context, reconcile};
use canary_kube::crd::Rollout;
use canary_kube::fixtures::TestCluster;
use canary_kube::traffic::{Backends, ClusterBackend};
use kube::Api;
use kube_testserver::ResourceType;
use serde_json::{Value, json};

const LANES: &str = "istio.alibabacloud.com/v1";

fn canary_lane(cluster: &TestCluster) -> Vec<String> {
    let lane: Value = cluster
        .server
        .get(LANES, "ASMSwimLane", None, "canary")
        .unwrap();
    let mut names: Vec<String> = lane["spec"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn deployment(cluster: &TestCluster, name: &str) -> Option<Value> {
    cluster
        .server
        .get("apps/v1", "Deployment", Some("default"), name)
}

async fn paused(cluster: &TestCluster, context: &Arc<Context>, name: &str) {
    let status = cluster
        .reconcile_until(context, ("default", name), Duration::from_secs(20), |s| {
            s.phase == Phase::Paused
        })
        .await;
    assert!(
        !status.routing.route.is_stable_only(),
        "{name} routes to its canary"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_chain_joins_and_leaves_the_canary_lane_service_by_service() {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    for (kind, plural) in [
        ("ASMSwimLaneGroup", "asmswimlanegroups"),
        ("ASMSwimLane", "asmswimlanes"),
    ] {
        cluster.server.register(ResourceType::new(
            "istio.alibabacloud.com",
            "v1",
            kind,
            plural,
            false,
            true,
        ));
    }
    for service in ["mocka", "mockb", "mockc"] {
        cluster.put(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("{service}-v1"), "namespace": "default"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": service}},
                     "template": {"metadata": {"labels": {"app": service, "version": "v1", "ASM_TRAFFIC_TAG": "base"}},
                                  "spec": {"containers": [{"name": "default", "image": "go-http-sample:1.0",
                                                           "env": [{"name": "version", "value": "v1"}]}]}}}
        }));
    }
    let rollouts = Api::<Rollout>::namespaced(cluster.client.clone(), "default");
    let create = |service: &'static str| {
        let cluster = &cluster;
        async move {
            let path = format!(
                "{}/../examples/rollouts/{service}-asm.yaml",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(path)
                .unwrap()
                .replace("  strategy:", "  progressDeadline: 30s\n  strategy:");
            let rollout: Rollout = serde_saphyr::from_str(&text).unwrap();
            cluster.create_rollout(&rollout).await;
        }
    };
    let context = cluster.context(Arc::new(Backends::new([
        &canary_asm::Asm as &dyn ClusterBackend
    ])));

    // mocka's canary alone: only mocka in the canary lane, its canary pods tagged for it.
    create("mocka").await;
    paused(&cluster, &context, "mocka").await;
    assert_eq!(canary_lane(&cluster), ["mocka"]);
    let canary = deployment(&cluster, "mocka-v1-canary").unwrap();
    assert_eq!(
        canary["spec"]["template"]["metadata"]["labels"]["ASM_TRAFFIC_TAG"],
        "canary"
    );

    // All three.
    create("mockb").await;
    create("mockc").await;
    paused(&cluster, &context, "mockb").await;
    paused(&cluster, &context, "mockc").await;
    assert_eq!(canary_lane(&cluster), ["mocka", "mockb", "mockc"]);

    // The controller restarts in the middle of the chain: membership is read back.
    let context = cluster.context(Arc::new(Backends::new([
        &canary_asm::Asm as &dyn ClusterBackend
    ])));
    for service in ["mocka", "mockb", "mockc"] {
        let rollout = rollouts.get(service).await.unwrap();
        reconcile(Arc::new(rollout), context.clone()).await.unwrap();
    }
    assert_eq!(canary_lane(&cluster), ["mocka", "mockb", "mockc"]);

    // mockb approved: it leaves the lane, its stable runs v2 and stays in the base lane.
    canary_kube::ctl::send(&rollouts, "mockb", Command::Promote, 1)
        .await
        .unwrap();
    let end = cluster
        .reconcile_until(
            &context,
            ("default", "mockb"),
            Duration::from_secs(30),
            |s| s.phase.is_terminal(),
        )
        .await;
    assert_eq!(end.phase, Phase::Succeeded, "{}", end.message);
    assert_eq!(canary_lane(&cluster), ["mocka", "mockc"]);
    let stable = deployment(&cluster, "mockb-v1").unwrap();
    let template = &stable["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["env"][0]["value"], "v2");
    assert_eq!(
        template["metadata"]["labels"]["ASM_TRAFFIC_TAG"], "base",
        "the stable pods stay in the base lane"
    );

    // mocka undone: its canary goes, the others are untouched.
    canary_kube::ctl::send(&rollouts, "mocka", Command::Abort, 1)
        .await
        .unwrap();
    cluster
        .reconcile_until(
            &context,
            ("default", "mocka"),
            Duration::from_secs(30),
            |s| s.phase.is_terminal(),
        )
        .await;
    cluster
        .reconcile_until(
            &context,
            ("default", "mocka"),
            Duration::from_secs(10),
            |_| deployment(&cluster, "mocka-v1-canary").is_none(),
        )
        .await;
    assert_eq!(canary_lane(&cluster), ["mockc"]);
    assert_eq!(
        rollouts.get("mockc").await.unwrap().status.unwrap().phase,
        Phase::Paused
    );
    assert!(deployment(&cluster, "mockc-v1-canary").is_some());

    // The Rollouts deleted: the lanes go with the last one.
    for service in ["mocka", "mockb", "mockc"] {
        assert!(
            cluster
                .server
                .get(LANES, "ASMSwimLaneGroup", None, "rollout")
                .is_some(),
            "in use until the last"
        );
        rollouts.delete(service, &Default::default()).await.unwrap();
        // The cleanup takes passes: a running canary is deleted in the foreground and waited
        // for until its pods are gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Some(held) = rollouts.get_opt(service).await.unwrap() {
            assert!(std::time::Instant::now() < deadline, "{service} still held");
            reconcile(Arc::new(held), context.clone()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (kind, name) in [
        ("ASMSwimLaneGroup", "rollout"),
        ("ASMSwimLane", "base"),
        ("ASMSwimLane", "canary"),
    ] {
        assert!(
            cluster.server.get(LANES, kind, None, name).is_none(),
            "{kind} {name} left behind"
        );
    }
}
