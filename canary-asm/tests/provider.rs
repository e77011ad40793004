//! The provider against the API test server: three Rollouts of one chain sharing the lanes,
//! changing them at the same time, restarting, and cleaning up after the last.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::time::Duration;

use canary_asm::AsmTraffic;
use canary_core::RouteState;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::TrafficProvider;
use canary_kube::fixtures::TestCluster;
use kube_testserver::ResourceType;
use serde_json::{Value, json};

const LANES: &str = "istio.alibabacloud.com/v1";

async fn cluster() -> TestCluster {
    let cluster = TestCluster::start(Duration::from_millis(200)).await;
    let register = |kind: &str, plural: &str| {
        cluster.server.register(ResourceType::new(
            "istio.alibabacloud.com",
            "v1",
            kind,
            plural,
            false,
            true,
        ));
    };
    register("ASMSwimLaneGroup", "asmswimlanegroups");
    register("ASMSwimLane", "asmswimlanes");
    for service in ["mocka", "mockb", "mockc"] {
        cluster.put(stable(
            service,
            json!({"app": service, "version": "v1", "ASM_TRAFFIC_TAG": "base"}),
        ));
    }
    cluster
}

/// The seed's stable Deployment of `service`, its pods labelled `labels`.
fn stable(service: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": format!("{service}-v1"), "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": service}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "default", "image": "go-http-sample:1.0"}]}}},
    })
}

fn provider(cluster: &TestCluster, name: &str) -> (AsmTraffic, RouteState) {
    let path = format!(
        "{}/../examples/rollouts/{name}-asm.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let plan =
        canary_core::api::load::plan_from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let route = plan.steps[0].route.clone();
    (AsmTraffic::new(cluster.client.clone(), plan), route)
}

fn members(cluster: &TestCluster, kind: &str, name: &str) -> Vec<String> {
    let object: Option<Value> = cluster.server.get(LANES, kind, None, name);
    object.unwrap()["spec"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

fn canary_lane(cluster: &TestCluster) -> Vec<String> {
    members(cluster, "ASMSwimLane", "canary")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_shares_the_lanes_through_concurrent_changes_restarts_and_cleanup() {
    let cluster = cluster().await;
    let (a, a_route) = provider(&cluster, "mocka");
    let (b, b_route) = provider(&cluster, "mockb");
    let (c, c_route) = provider(&cluster, "mockc");
    // mocka's canary alone.
    assert!(a.apply(&a_route).await.unwrap());
    assert_eq!(canary_lane(&cluster), ["mocka"]);
    assert_eq!(
        a.observe(&RouteState::stable()).await.unwrap().route,
        Some(a_route.clone())
    );
    assert_eq!(
        a.observe(&a_route).await.unwrap().verified,
        Verification::Yes
    );
    assert_eq!(
        b.observe(&RouteState::stable()).await.unwrap().route,
        Some(RouteState::stable())
    );
    let group = cluster
        .server
        .get(LANES, "ASMSwimLaneGroup", None, "rollout")
        .unwrap();
    assert_eq!(
        group["metadata"]["managedFields"][0]["manager"],
        "canary-asm"
    );

    // mockb and mockc join at the same moment: neither change is lost.
    let (joined_b, joined_c) = tokio::join!(b.apply(&b_route), c.apply(&c_route));
    assert!(joined_b.unwrap() && joined_c.unwrap());
    let mut lane = canary_lane(&cluster);
    lane.sort();
    assert_eq!(lane, ["mocka", "mockb", "mockc"]);
    let mut group = members(&cluster, "ASMSwimLaneGroup", "rollout");
    group.sort();
    assert_eq!(group, ["mocka", "mockb", "mockc"]);

    // A restarted controller: fresh providers read their membership back from the lanes.
    let (b, _) = provider(&cluster, "mockb");
    assert_eq!(
        b.observe(&RouteState::stable()).await.unwrap().route,
        Some(b_route.clone())
    );
    assert_eq!(
        b.observe(&b_route).await.unwrap().verified,
        Verification::Yes
    );
    assert!(!b.apply(&b_route).await.unwrap(), "nothing to change");

    // mockb approved: it leaves the canary lane, the others stay.
    assert!(b.reset().await.unwrap());
    let mut lane = canary_lane(&cluster);
    lane.sort();
    assert_eq!(lane, ["mocka", "mockc"]);
    assert_eq!(
        a.observe(&RouteState::stable()).await.unwrap().route,
        Some(a_route.clone())
    );

    // Rollouts deleted: the lanes stay while any uses them, and go with the last.
    a.finalize().await.unwrap();
    assert_eq!(canary_lane(&cluster), ["mockc"]);
    c.finalize().await.unwrap();
    assert!(canary_lane(&cluster).is_empty());
    assert_eq!(members(&cluster, "ASMSwimLane", "base"), ["mockb"]);
    b.finalize().await.unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn another_groups_lanes_are_refused_untouched_and_left_alone() {
    let cluster = cluster().await;
    let theirs = json!({
        "apiVersion": LANES, "kind": "ASMSwimLane",
        "metadata": {"name": "canary", "labels": {"swimlane-group": "shop"}},
        "spec": {"labelSelector": {"ASM_TRAFFIC_TAG": "canary"},
                 "services": [{"name": "cart", "namespace": "shop"}]},
    });
    cluster.put(theirs);
    let before = cluster
        .server
        .get(LANES, "ASMSwimLane", None, "canary")
        .unwrap();
    let (a, a_route) = provider(&cluster, "mocka");
    for route in [a_route, RouteState::stable()] {
        let error = a.apply(&route).await.unwrap_err().to_string();
        assert!(
            error.contains("ASMSwimLane canary belongs to lane group shop"),
            "{error}"
        );
        assert!(
            a.observe(&route).await.is_err(),
            "reported, not read as ours"
        );
    }
    assert!(
        cluster
            .server
            .get(LANES, "ASMSwimLaneGroup", None, "rollout")
            .is_none()
    );
    assert!(
        cluster
            .server
            .get(LANES, "ASMSwimLane", None, "base")
            .is_none()
    );
    // The Rollout deleted: their lane stays as it was.
    a.finalize().await.unwrap();
    assert_eq!(
        cluster
            .server
            .get(LANES, "ASMSwimLane", None, "canary")
            .unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stable_pods_outside_the_base_lane_are_refused_before_anything_is_written() {
    let cluster = cluster().await;
    let (a, a_route) = provider(&cluster, "mocka");
    cluster.put(stable("mocka", json!({"app": "mocka", "version": "v1"})));
    for route in [a_route.clone(), RouteState::stable()] {
        let error = a.apply(&route).await.unwrap_err().to_string();
        assert!(
            error.contains("Deployment default/mocka-v1 have no ASM_TRAFFIC_TAG label")
                && error.contains("base"),
            "{error}"
        );
    }
    assert!(
        cluster
            .server
            .get(LANES, "ASMSwimLaneGroup", None, "rollout")
            .is_none()
    );
    // No stable Deployment at all: nothing to check the pods of, so no canary traffic.
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        cluster.client.clone(),
        "default",
    )
    .delete("mocka-v1", &Default::default())
    .await
    .unwrap();
    let error = a.apply(&a_route).await.unwrap_err().to_string();
    assert!(
        error.contains("stable Deployment default/mocka-v1 is needed"),
        "{error}"
    );
    // Tagged: the canary joins.
    cluster.put(stable(
        "mocka",
        json!({"app": "mocka", "ASM_TRAFFIC_TAG": "base"}),
    ));
    assert!(a.apply(&a_route).await.unwrap());
    assert_eq!(canary_lane(&cluster), ["mocka"]);
}

/// Lanes the user keeps in Git, applied by Flux (`kustomize-controller` owns their spec): a
/// release that would write its service into them is refused, saying to take them out of
/// Git, instead of fighting Flux every interval; they are left exactly as Git has them, and
/// the Rollout's deletion leaves them too.
#[tokio::test(flavor = "multi_thread")]
async fn lanes_applied_from_git_are_refused_untouched_and_left_alone() {
    let cluster = cluster().await;
    let (a, a_route) = provider(&cluster, "mocka");
    // The lanes as the chain needs them before any canary, committed to Git without canary's
    // label, and applied by Flux.
    let path = format!(
        "{}/../examples/rollouts/mocka-asm.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let plan =
        canary_core::api::load::plan_from_yaml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let stable = canary_core::k8s::objects::Objects::new(vec![
        cluster
            .server
            .get("apps/v1", "Deployment", Some("default"), "mocka-v1")
            .unwrap(),
    ]);
    let rendered = canary_asm::render(&plan, &RouteState::stable(), &stable).unwrap();
    let mut kept = Vec::new();
    for mut object in rendered.objects() {
        object["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app.kubernetes.io/managed-by");
        kept.push(
            cluster
                .server
                .apply_as("kustomize-controller", &object, true)
                .unwrap(),
        );
    }
    let error = a.apply(&a_route).await.unwrap_err().to_string();
    assert!(
        error.contains("is applied from Git by kustomize-controller")
            && error.contains("remove it from Git"),
        "{error}"
    );
    // Git's lanes already hold the stable route: nothing to write, nothing refused.
    assert!(!a.apply(&RouteState::stable()).await.unwrap());
    a.finalize().await.unwrap();
    for object in &kept {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            cluster.server.get(LANES, kind, None, name).as_ref(),
            Some(object),
            "{kind} {name} is as Git has it"
        );
    }
}
