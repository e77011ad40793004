//! The controller's retries after failed passes: per Rollout, doubling, reset by a success.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::Duration;

use canary_core::ErrorClass;
use canary_core::engine::memory::{InMemoryMetrics, InMemoryWebhooks};
use canary_core::engine::providers::{Clock, SystemClock};
use canary_kube::Error;
use canary_kube::controller::{Context, error_policy, run};
use canary_kube::crd::Rollout;
use canary_kube::metrics::Metrics;
use canary_kube::traffic::MemoryTraffic;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube_testserver::{ApiServer, ResourceType};
use prometheus_client::registry::Registry;

fn context(server: &ApiServer) -> Arc<Context> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Arc::new(Context::new(
        server.client(),
        Arc::new(MemoryTraffic::new(clock.clone())),
        Arc::new(InMemoryMetrics::default()),
        Arc::new(InMemoryWebhooks::default()),
        clock,
        Metrics::register(&mut Registry::default()),
        "canary-test",
    ))
}

fn rollout(name: &str) -> Arc<Rollout> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "service": {"name": name, "port": 80},
                "newVersion": {"containers": [{"name": name, "image": format!("{name}:2")}]},
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
    let context = context(&server);
    let (web, api) = (rollout("web"), rollout("api"));
    let error = Error::Core(canary_core::Error::provider(
        "traffic",
        ErrorClass::Transient,
        "the API server is away",
    ));
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

#[tokio::test]
async fn the_class_of_a_failure_sets_the_retry() {
    let server = ApiServer::start().await.unwrap();
    let context = context(&server);
    let seconds = |s| Action::requeue(Duration::from_secs(s));
    let conflict = Error::Kube(kube::Error::Api(Box::new(
        kube::core::Status::failure("the object has been modified", "Conflict").with_code(409),
    )));
    let web = rollout("web");
    assert_eq!(
        error_policy(web.clone(), &conflict, context.clone()),
        seconds(1),
        "a conflict is retried at once"
    );
    assert_eq!(
        error_policy(web.clone(), &conflict, context.clone()),
        seconds(10),
        "conflicts again and again back off"
    );
    let refused = Error::Refused("spec.template: Invalid value".to_owned());
    let api = rollout("api");
    assert_eq!(
        error_policy(api.clone(), &refused, context.clone()),
        seconds(15),
        "an invalid object waits for a person"
    );
    let forbidden = Error::Kube(kube::Error::Api(Box::new(
        kube::core::Status::failure("forbidden", "Forbidden").with_code(403),
    )));
    assert_eq!(
        error_policy(rollout("db"), &forbidden, context.clone()),
        seconds(300),
        "no permission is not retried soon"
    );
}

/// Waits up to `within` for `done`.
async fn eventually(within: Duration, done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_controller_forgets_the_failures_of_a_rollout_that_passes() {
    let server = ApiServer::start().await.unwrap();
    server.register(ResourceType::new(
        "canary.rs",
        "v1alpha1",
        "Rollout",
        "rollouts",
        true,
        true,
    ));
    server.simulate_deployments(Duration::from_millis(100));
    let context = context(&server);
    let web = rollout("web");
    let key = ObjectRef::from_obj(&*web);
    Api::<Rollout>::namespaced(server.client(), "shop")
        .create(&PostParams::default(), &web)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(context.clone(), Vec::new(), async move {
        let _ = stopped.await;
    }));
    assert!(
        eventually(Duration::from_secs(10), || context.retries.failures(&key)
            >= 1)
        .await,
        "its stable Deployment is missing: the pass fails"
    );
    let stable: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "web:1"}]}},
        },
    }))
    .unwrap();
    Api::<Deployment>::namespaced(server.client(), "shop")
        .create(&PostParams::default(), &stable)
        .await
        .unwrap();
    let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Service>::namespaced(server.client(), "shop")
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), || context.retries.failures(&key)
            == 0)
        .await,
        "a pass that succeeds clears the count ({} failures)",
        context.retries.failures(&key)
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), controller).await;
}
