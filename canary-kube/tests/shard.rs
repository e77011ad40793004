//! Shards: a controller given a shard acts on its Rollouts and leaves every other alone.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_core::engine::providers::SystemClock;
use canary_kube::controller::{FINALIZER, run};
use canary_kube::fixtures::TestCluster;
use canary_kube::shard::Shard;
use canary_kube::traffic::MemoryTraffic;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_reconciles_its_rollouts_only_and_the_shards_cover_them_all() {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    let names: Vec<String> = (0..12).map(|i| format!("app-{i}")).collect();
    for name in &names {
        cluster.put(json!({
            "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"name": name, "port": 80},
                "trafficRouting": {"kuma": {}},
                "strategy": {"canary": {"steps": [{"weight": 10}]}},
            },
        }));
    }
    // A Rollout a controller acts on carries its finalizer first of all.
    let finalized = |name: &str| {
        cluster
            .server
            .get("canary.rs/v1alpha1", "Rollout", Some("shop"), name)
            .is_some_and(|r| r["metadata"]["finalizers"].to_string().contains(FINALIZER))
    };
    let mut acted = Vec::new();
    for index in 0..2 {
        let shard = Shard::new(index, 2).unwrap();
        let ours: Vec<&String> = names.iter().filter(|n| shard.owns("shop", n)).collect();
        assert!(
            !ours.is_empty() && ours.len() < names.len(),
            "a split of 12: {ours:?}"
        );
        let traffic = Arc::new(MemoryTraffic::new(Arc::new(SystemClock)));
        let context = Arc::into_inner(cluster.context(traffic))
            .unwrap()
            .with_shard(shard);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(run(Arc::new(context), Vec::new(), async {
            let _ = stopped.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ours.iter().all(|name| finalized(name)) {
            assert!(
                Instant::now() < deadline,
                "shard {shard} did not act on {ours:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(());
        controller.await.unwrap();
        let now: Vec<&String> = names.iter().filter(|name| finalized(name)).collect();
        let theirs: Vec<&&String> = now
            .iter()
            .filter(|name| !ours.contains(name))
            .filter(|name| !acted.contains(**name))
            .collect();
        assert!(theirs.is_empty(), "shard {shard} acted on {theirs:?}");
        acted.extend(ours.into_iter().cloned());
    }
    acted.sort();
    let mut all = names.clone();
    all.sort();
    assert_eq!(acted, all, "every Rollout is in one shard");
}
