//! Shards: a controller given a shard acts on its Rollouts and leaves every other alone, and
//! shards run at once, each under a Lease of its own with its own standby replicas.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_core::engine::providers::SystemClock;
use canary_kube::controller::{Context, FINALIZER, run};
use canary_kube::fixtures::TestCluster;
use canary_kube::leader::{LeaderElection, Timing};
use canary_kube::shard::Shard;
use canary_kube::traffic::MemoryTraffic;
use serde_json::json;

/// Twelve Rollouts in namespace `shop`; their names.
fn rollouts(cluster: &TestCluster) -> Vec<String> {
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
    names
}

/// Whether a controller acted on Rollout `shop/name`: it carries the finalizer first of all.
fn finalized(cluster: &TestCluster, name: &str) -> bool {
    cluster
        .server
        .get("canary.rs/v1alpha1", "Rollout", Some("shop"), name)
        .is_some_and(|r| r["metadata"]["finalizers"].to_string().contains(FINALIZER))
}

/// A controller context of `shard` on the cluster.
fn context(cluster: &TestCluster, shard: Shard) -> Context {
    let traffic = Arc::new(MemoryTraffic::new(Arc::new(SystemClock)));
    Arc::into_inner(cluster.context(traffic))
        .unwrap()
        .with_shard(shard)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_reconciles_its_rollouts_only_and_the_shards_cover_them_all() {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    let names = rollouts(&cluster);
    let finalized = |name: &str| finalized(&cluster, name);
    let mut acted = Vec::new();
    for index in 0..2 {
        let shard = Shard::new(index, 2).unwrap();
        let ours: Vec<&String> = names.iter().filter(|n| shard.owns("shop", n)).collect();
        assert!(
            !ours.is_empty() && ours.len() < names.len(),
            "a split of 12: {ours:?}"
        );
        let context = context(&cluster, shard);
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

#[tokio::test(flavor = "multi_thread")]
async fn shards_lead_at_once_under_leases_of_their_own_and_fail_over_alone() {
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    let names = rollouts(&cluster);
    // A 3 s lease, 2 s renew deadline, attempts 100 ms apart.
    let timing = Timing::new(
        Duration::from_secs(3),
        Duration::from_secs(2),
        Duration::from_millis(100),
    )
    .unwrap();
    let shards = [Shard::new(0, 2).unwrap(), Shard::new(1, 2).unwrap()];
    let lease = |shard: Shard| Shard::lease(Some(shard), "canary-controller");
    assert_ne!(lease(shards[0]), lease(shards[1]));
    assert_eq!(Shard::lease(None, "canary-controller"), "canary-controller");
    let holder = |shard: Shard| {
        cluster
            .server
            .get(
                "coordination.k8s.io/v1",
                "Lease",
                Some("canary-system"),
                &lease(shard),
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    // Two replicas of each shard, as two Deployments' pods would be, each electing within its
    // shard and running that shard's controller while it leads.
    let mut replicas = Vec::new();
    for shard in shards {
        for replica in ["a", "b"] {
            let identity = format!("shard-{}-{replica}", shard.index());
            let election = LeaderElection::new(
                cluster.server.client(),
                "canary-system",
                &lease(shard),
                &identity,
                Duration::from_secs(3),
            )
            .with_timing(timing);
            let context = Arc::new(context(&cluster, shard));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let clock = SystemClock;
                let term = election.acquire(&clock).await;
                let work = run(context, Vec::new(), async {
                    let _ = stopped.await;
                });
                let _ = election.while_leading(&clock, term, work).await;
                election.step_down().await.unwrap();
            });
            replicas.push((identity, stop, task));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !names.iter().all(|name| finalized(&cluster, name)) {
        assert!(
            Instant::now() < deadline,
            "the shards did not act on every Rollout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One leader per shard, at the same time, each a replica of its own shard.
    let leaders: Vec<String> = shards.iter().map(|s| holder(*s).unwrap()).collect();
    for (shard, leader) in shards.iter().zip(&leaders) {
        assert!(
            leader.starts_with(&format!("shard-{}-", shard.index())),
            "shard {shard} is led by {leader}"
        );
    }
    // Shard 0's leader stops: its standby takes shard 0 over, and shard 1 keeps its leader.
    let position = replicas
        .iter()
        .position(|(identity, _, _)| *identity == leaders[0])
        .unwrap();
    let (_, stop, task) = replicas.remove(position);
    let _ = stop.send(());
    task.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = holder(shards[0]);
        if now.as_ref().is_some_and(|h| *h != leaders[0]) {
            assert!(now.unwrap().starts_with("shard-0-"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shard 0's standby did not take over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(holder(shards[1]).as_deref(), Some(leaders[1].as_str()));
    for (_, stop, task) in replicas {
        let _ = stop.send(());
        task.abort();
    }
}
