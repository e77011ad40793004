//! The provider against the API test server: the canary Service, the MeshHTTPRoute (or the
//! legacy TrafficRoute) and the narrowed stable Service, applied, read back, verified and
//! removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_core::RouteState;
use canary_core::api::spec::{RequestMatch, StringMatch};
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::TrafficProvider;
use canary_kube::fixtures::TestCluster;
use canary_kuma::KumaTraffic;
use kube_testserver::{ResourceType, Verb};
use serde_json::{Value, json};

fn example() -> String {
    std::fs::read_to_string(format!(
        "{}/../examples/rollouts/podinfo-kuma.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn cluster() -> TestCluster {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    cluster.server.register(ResourceType::new(
        "kuma.io",
        "v1alpha1",
        "MeshHTTPRoute",
        "meshhttproutes",
        true,
        false,
    ));
    cluster.server.register(ResourceType::new(
        "kuma.io",
        "v1alpha1",
        "TrafficRoute",
        "trafficroutes",
        false,
        false,
    ));
    let file = canary_core::api::load::rollout_file(&example()).unwrap();
    for object in file.objects.iter() {
        cluster.put(object.clone());
    }
    cluster.put_replicaset("webapp", "backend", "7d4b", json!({"app": "backend"}));
    cluster
}

fn provider(cluster: &TestCluster, text: &str) -> KumaTraffic {
    let rollout = canary_core::api::load::from_yaml(text).unwrap();
    KumaTraffic::new(
        cluster.client.clone(),
        canary_core::api::validate::validate(&rollout).unwrap(),
    )
}

fn route(cluster: &TestCluster) -> Option<Value> {
    cluster.server.get(
        "kuma.io/v1alpha1",
        "MeshHTTPRoute",
        Some("webapp"),
        "backend-canary",
    )
}

fn service(cluster: &TestCluster, name: &str) -> Option<Value> {
    cluster.server.get("v1", "Service", Some("webapp"), name)
}

#[tokio::test]
async fn the_route_and_canary_service_come_and_go_and_the_stable_service_ends_as_it_was() {
    let cluster = cluster().await;
    let before = service(&cluster, "backend").unwrap();
    let traffic = provider(&cluster, &example());
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::stable())
    );

    let weighted = RouteState::weighted(30);
    assert!(traffic.apply(&weighted).await.unwrap());
    let object = route(&cluster).unwrap();
    assert_eq!(
        object["metadata"]["managedFields"][0]["manager"],
        "canary-kuma"
    );
    assert_eq!(
        object["spec"]["to"][0]["rules"][0]["default"]["backendRefs"][1]["weight"],
        30
    );
    assert_eq!(
        service(&cluster, "backend-canary").unwrap()["spec"]["selector"]["canary.rs/role"],
        "canary"
    );
    assert_eq!(
        service(&cluster, "backend").unwrap(),
        before,
        "the stable Service is never written"
    );
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(weighted.clone())
    );
    assert_eq!(
        traffic.observe(&weighted).await.unwrap().verified,
        Verification::Yes
    );

    cluster.server.clear_requests();
    assert!(!traffic.apply(&weighted).await.unwrap());
    let writes = cluster
        .server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Patch)
        .count();
    assert_eq!(writes, 0);

    // Weights edited by hand are read as they are.
    let mut edited = route(&cluster).unwrap();
    edited["spec"]["to"][0]["rules"][0]["default"]["backendRefs"][0]["weight"] = json!(50);
    edited["spec"]["to"][0]["rules"][0]["default"]["backendRefs"][1]["weight"] = json!(50);
    cluster.put(edited);
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::weighted(50))
    );
    assert_eq!(
        traffic.observe(&weighted).await.unwrap().verified,
        Verification::No
    );

    let matched = RouteState {
        matches: vec![RequestMatch {
            headers: [("x-canary".into(), StringMatch::exact("insider"))].into(),
            ..RequestMatch::default()
        }],
        ..RouteState::weighted(10)
    };
    assert!(traffic.apply(&matched).await.unwrap());
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(matched)
    );

    traffic.finalize().await.unwrap();
    assert!(route(&cluster).is_none());
    assert!(service(&cluster, "backend-canary").is_none());
    let after = service(&cluster, "backend").unwrap();
    assert_eq!(after["spec"], before["spec"]);
}

#[tokio::test]
async fn the_legacy_traffic_route_is_cluster_wide_and_named_for_its_namespace() {
    let cluster = cluster().await;
    let text = example().replace(
        "kuma: {mesh: default}",
        "kuma: {mesh: default, routeKind: TrafficRoute}",
    );
    let traffic = provider(&cluster, &text);
    assert!(traffic.apply(&RouteState::weighted(20)).await.unwrap());
    let object = cluster
        .server
        .get("kuma.io/v1alpha1", "TrafficRoute", None, "backend.webapp")
        .unwrap();
    assert_eq!(object["mesh"], "default");
    assert_eq!(object["spec"]["conf"]["split"][1]["weight"], 20);
    assert_eq!(
        traffic.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::weighted(20))
    );
    assert_eq!(
        traffic
            .observe(&RouteState::weighted(20))
            .await
            .unwrap()
            .verified,
        Verification::Yes
    );
    traffic.finalize().await.unwrap();
    assert!(
        cluster
            .server
            .get("kuma.io/v1alpha1", "TrafficRoute", None, "backend.webapp")
            .is_none()
    );
}

#[tokio::test]
async fn the_route_names_services_as_the_mesh_resolves_them() {
    let cluster = cluster().await;
    let traffic = provider(&cluster, &example());
    let weighted = RouteState::weighted(20);
    let to = |cluster: &TestCluster| route(cluster).unwrap()["spec"]["to"][0].clone();
    let canary =
        |cluster: &TestCluster| to(cluster)["rules"][0]["default"]["backendRefs"][1].clone();

    // No Mesh to read (Kuma's resources are not even served): a mesh without MeshServices, as
    // the control plane creates `default`; services by `kuma.io/service` tag, for every caller.
    assert!(traffic.apply(&weighted).await.unwrap());
    assert_eq!(
        to(&cluster)["targetRef"],
        json!({"kind": "MeshService", "name": "backend_webapp_svc_9898"})
    );
    assert_eq!(
        canary(&cluster),
        json!({"kind": "MeshService", "name": "backend-canary_webapp_svc_9898", "weight": 20})
    );

    // The Kurator seed's Mesh: no MeshServices either, nothing to change.
    cluster.server.register(ResourceType::new(
        "kuma.io", "v1alpha1", "Mesh", "meshes", false, false,
    ));
    cluster.put(json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
        "spec": {"metrics": {"backends": [{"name": "prometheus-1", "type": "prometheus"}],
                             "enabledBackend": "prometheus-1"}}
    }));
    assert!(!traffic.apply(&weighted).await.unwrap());
    assert_eq!(
        traffic.observe(&weighted).await.unwrap().verified,
        Verification::Yes
    );

    // MeshServices turned on: the tags no longer reach a MeshService backend, so the route is
    // not in effect until it names the MeshServices on the service's port.
    cluster.put(json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
        "spec": {"meshServices": {"mode": "Exclusive"}}
    }));
    assert_eq!(
        traffic.observe(&weighted).await.unwrap().verified,
        Verification::No
    );
    assert!(traffic.apply(&weighted).await.unwrap());
    assert_eq!(
        canary(&cluster),
        json!({"kind": "MeshService", "name": "backend-canary", "namespace": "webapp", "port": 9898, "weight": 20})
    );
    let observed = traffic.observe(&weighted).await.unwrap();
    assert_eq!(
        (observed.route, observed.verified),
        (Some(weighted), Verification::Yes)
    );
    traffic.finalize().await.unwrap();
    assert!(route(&cluster).is_none());
}
