//! The controller's retries after failed passes: per Rollout, doubling, reset by a success.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::memory::{InMemoryMetrics, InMemoryWebhooks};
use canary_core::providers::{Clock, SystemClock};
use canary_kube::Error;
use canary_kube::controller::{Context, error_policy};
use canary_kube::crd::Rollout;
use canary_kube::metrics::Metrics;
use canary_kube::testserver::ApiServer;
use canary_kube::traffic::MemoryTraffic;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::registry::Registry;

fn rollout(name: &str) -> Arc<Rollout> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"name": name, "port": 80},
                "trafficRouting": {"kuma": {}},
                "strategy": {"canary": {"steps": [{"weight": 10}]}},
            },
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn failed_passes_back_off_per_rollout_and_a_success_starts_over() {
    let server = ApiServer::start().await.unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let context = Arc::new(Context::new(
        server.client(),
        Arc::new(MemoryTraffic::new(clock.clone())),
        Arc::new(InMemoryMetrics::default()),
        Arc::new(InMemoryWebhooks::default()),
        clock,
        Metrics::register(&mut Registry::default()),
        "canary-test",
    ));
    let (web, api) = (rollout("web"), rollout("api"));
    let error = Error::Invalid("the API server is away".to_owned());
    let fail = |rollout: &Arc<Rollout>| error_policy(rollout.clone(), &error, context.clone());
    let seconds = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(fail(&web), seconds(5));
    assert_eq!(fail(&web), seconds(10));
    assert_eq!(fail(&web), seconds(20));
    assert_eq!(
        fail(&api),
        seconds(5),
        "each Rollout counts its own failures"
    );
    for _ in 0..20 {
        fail(&web);
    }
    assert_eq!(fail(&web), seconds(300), "never more than 5 minutes");
    context.retries.succeeded(&ObjectRef::from_obj(&*web));
    assert_eq!(fail(&web), seconds(5), "a success starts over");
    assert_eq!(fail(&api), seconds(10));
}
