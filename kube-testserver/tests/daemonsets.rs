//! DaemonSets and Nodes in the API test server: validation, placement of daemon pods on the
//! matching nodes, status, RollingUpdate (with and without surge) and OnDelete updates, and
//! deletion, through a kube::Client with the controllers stepped in virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube_testserver::{ApiServer, ControllerManager};
use serde_json::{Value, json};

const STARTUP: Duration = Duration::from_secs(10);
const HASH: &str = "controller-revision-hash";

fn t0() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

/// Steps at `now`, then at every next event, until nothing is pending; returns the last
/// instant.
fn settle(kcm: &ControllerManager, mut now: Timestamp) -> Timestamp {
    kcm.step(now);
    while let Some(next) = kcm.next_event() {
        assert!(next > now, "events move forward");
        now = next;
        kcm.step(now);
    }
    now
}

fn nodes(server: &ApiServer) -> Api<Node> {
    Api::all(server.client())
}

fn daemonsets(server: &ApiServer) -> Api<DaemonSet> {
    Api::default_namespaced(server.client())
}

/// A DaemonSet `name` of one container `agent` running `image`, selecting `app: name`.
fn daemonset_json(name: &str, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": image}]},
            },
        },
    })
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

async fn create_daemonset(server: &ApiServer, ds: Value) -> DaemonSet {
    daemonsets(server)
        .create(&PostParams::default(), &typed(ds))
        .await
        .unwrap()
}

async fn create_node(server: &ApiServer, name: &str, labels: Value, spec: Value) -> Node {
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels}, "spec": spec});
    nodes(server)
        .create(&PostParams::default(), &typed(node))
        .await
        .unwrap()
}

/// `count` plain nodes `node-1`..
async fn plain_nodes(server: &ApiServer, count: usize) {
    for i in 1..=count {
        create_node(server, &format!("node-{i}"), json!({}), json!({})).await;
    }
}

/// The pods of DaemonSet `app` (by its label), by node.
async fn pods_by_node(server: &ApiServer, app: &str) -> BTreeMap<String, Vec<Pod>> {
    let api: Api<Pod> = Api::default_namespaced(server.client());
    let list = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    let mut out: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in list.items {
        let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
        out.entry(node).or_default().push(pod);
    }
    out
}

/// The one pod on each node.
async fn pod_per_node(server: &ApiServer, app: &str) -> BTreeMap<String, Pod> {
    pods_by_node(server, app)
        .await
        .into_iter()
        .map(|(node, mut pods)| {
            assert_eq!(pods.len(), 1, "one pod on {node}: {pods:?}");
            (node, pods.remove(0))
        })
        .collect()
}

fn hash_of(pod: &Pod) -> String {
    pod.metadata.labels.as_ref().unwrap()[HASH].clone()
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap()
}

async fn status(server: &ApiServer, name: &str) -> Value {
    let ds = daemonsets(server).get(name).await.unwrap();
    serde_json::to_value(&ds).unwrap()["status"].clone()
}

async fn generation(server: &ApiServer, name: &str) -> i64 {
    daemonsets(server)
        .get(name)
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap()
}

/// Every count of a settled DaemonSet on `n` nodes, all of them updated.
fn settled_status(n: i64, generation: i64) -> Value {
    json!({
        "currentNumberScheduled": n,
        "desiredNumberScheduled": n,
        "numberMisscheduled": 0,
        "numberReady": n,
        "numberAvailable": n,
        "updatedNumberScheduled": n,
        "observedGeneration": generation,
    })
}

async fn set_image(server: &ApiServer, name: &str, image: &str) {
    let containers = json!([{"name": "agent", "image": image}]);
    let patch = json!({"spec": {"template": {"spec": {"containers": containers}}}});
    daemonsets(server)
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn daemon_pods_land_exactly_on_the_matching_nodes() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    let gpu_taint = json!({"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]});
    create_node(&server, "a", json!({"zone": "a"}), json!({})).await;
    create_node(&server, "b", json!({"zone": "b"}), json!({})).await;
    create_node(&server, "gpu", json!({"zone": "a"}), gpu_taint.clone()).await;
    create_node(
        &server,
        "cordoned",
        json!({"zone": "a"}),
        json!({"unschedulable": true,
               "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}),
    )
    .await;
    // `agent`: zone a, not tolerating the gpu taint.
    let mut agent = daemonset_json("agent", "agent:1", Value::Null);
    agent["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
    create_daemonset(&server, agent).await;
    // `driver`: zone b or node `gpu` by name, tolerating its taint.
    let mut driver = daemonset_json("driver", "driver:1", Value::Null);
    driver["spec"]["template"]["spec"]["tolerations"] =
        json!([{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]);
    driver["spec"]["template"]["spec"]["affinity"] = json!({"nodeAffinity": {
    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu"]}]},
    ]}}});
    create_daemonset(&server, driver).await;
    assert!(kcm.step(t0()));

    let agents = pod_per_node(&server, "agent").await;
    assert_eq!(
        agents.keys().collect::<Vec<_>>(),
        ["a", "cordoned"],
        "not on b (selector) nor gpu (taint); on the cordoned node"
    );
    let drivers = pod_per_node(&server, "driver").await;
    assert_eq!(drivers.keys().collect::<Vec<_>>(), ["b", "gpu"]);

    let ds = daemonsets(&server).get("agent").await.unwrap();
    let pod = &agents["a"];
    let name = name_of(pod);
    let suffix = name.strip_prefix("agent-").unwrap();
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .bytes()
            .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)),
        "{name}"
    );
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "DaemonSet");
    assert_eq!(owner.uid, ds.metadata.uid.clone().unwrap());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "agent");
    assert!(!labels[HASH].is_empty());
    let spec = serde_json::to_value(pod.spec.as_ref().unwrap()).unwrap();
    assert_eq!(spec["nodeName"], "a");
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["a"]}]}]})
    );
    let tolerated: Vec<String> = spec["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap(),
                t["effect"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        tolerated,
        [
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/disk-pressure:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/pid-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
        ]
    );
    // The driver's own toleration comes first, the node affinity is replaced by the node's name.
    let driver_spec = serde_json::to_value(drivers["gpu"].spec.as_ref().unwrap()).unwrap();
    assert_eq!(driver_spec["tolerations"][0]["key"], "gpu");
    assert_eq!(
        driver_spec
            .pointer(
                "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution\
             /nodeSelectorTerms/0/matchFields/0/values"
            )
            .unwrap(),
        &json!(["gpu"])
    );

    // Before the pods are ready: scheduled, none ready or available.
    assert_eq!(
        status(&server, "agent").await,
        json!({"currentNumberScheduled": 2, "desiredNumberScheduled": 2, "numberMisscheduled": 0,
               "numberReady": 0, "numberUnavailable": 2, "updatedNumberScheduled": 2,
               "observedGeneration": 1})
    );
    let mut now = settle(&kcm, t0());
    assert_eq!(status(&server, "agent").await, settled_status(2, 1));
    assert_eq!(status(&server, "driver").await, settled_status(2, 1));

    // A NoExecute taint added later evicts; a NoSchedule one keeps the pod (misscheduled).
    let taint =
        |effect: &str| json!({"spec": {"taints": [{"key": "maintenance", "effect": effect}]}});
    nodes(&server)
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(&taint("NoExecute")),
        )
        .await
        .unwrap();
    nodes(&server)
        .patch(
            "cordoned",
            &PatchParams::default(),
            &Patch::Merge(&taint("NoSchedule")),
        )
        .await
        .unwrap();
    now = settle(&kcm, now + SignedDuration::from_secs(1));
    let agents = pod_per_node(&server, "agent").await;
    assert_eq!(agents.keys().collect::<Vec<_>>(), ["cordoned"]);
    assert_eq!(
        status(&server, "agent").await,
        json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 1,
               "numberReady": 0, "observedGeneration": 1})
    );

    // A new matching node gets a pod; a node that goes takes its pod with it.
    create_node(&server, "c", json!({"zone": "a"}), json!({})).await;
    nodes(&server)
        .delete("gpu", &DeleteParams::default())
        .await
        .unwrap();
    settle(&kcm, now + SignedDuration::from_secs(1));
    assert_eq!(
        pod_per_node(&server, "agent")
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["c", "cordoned"]
    );
    assert_eq!(
        pod_per_node(&server, "driver")
            .await
            .keys()
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(status(&server, "driver").await, settled_status(1, 1));
}

#[tokio::test]
async fn min_ready_seconds_delay_availability_not_readiness() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    plain_nodes(&server, 3).await;
    let mut ds = daemonset_json("agent", "agent:1", Value::Null);
    ds["spec"]["minReadySeconds"] = json!(30);
    create_daemonset(&server, ds).await;
    kcm.step(t0());
    let ready_at = t0() + SignedDuration::from_secs(10);
    assert_eq!(kcm.next_event(), Some(ready_at));
    kcm.step(ready_at);
    let s = status(&server, "agent").await;
    assert_eq!(s["numberReady"], 3);
    assert!(s["numberAvailable"].is_null(), "0 is left out: {s}");
    assert_eq!(s["numberUnavailable"], 3);
    let available_at = ready_at + SignedDuration::from_secs(30);
    assert_eq!(kcm.next_event(), Some(available_at));
    kcm.step(available_at);
    assert_eq!(status(&server, "agent").await, settled_status(3, 1));
    assert_eq!(kcm.next_event(), None);
}

/// The pods after each event: name → (node, hash, ready).
type PodStates = BTreeMap<String, (String, String, bool)>;

fn state_of(pod: &Pod) -> (String, String, bool) {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
    (node, hash_of(pod), ready)
}

async fn pod_states(server: &ApiServer) -> PodStates {
    pods_by_node(server, "agent")
        .await
        .into_values()
        .flatten()
        .map(|p| (name_of(&p), state_of(&p)))
        .collect()
}

/// The pod states after every pod event since resource version `from`, starting from `pods`.
async fn replay(server: &ApiServer, mut pods: PodStates, from: u64) -> Vec<PodStates> {
    let api: Api<Pod> = Api::default_namespaced(server.client());
    let until = server.resource_version();
    let stream = api
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .unwrap();
    let mut stream = Box::pin(stream);
    let mut states = Vec::new();
    while let Some(event) = stream.next().await {
        let pod = match event.unwrap() {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                pods.insert(name_of(&p), state_of(&p));
                p
            }
            WatchEvent::Deleted(p) => {
                pods.remove(&name_of(&p));
                p
            }
            _ => continue,
        };
        states.push(pods.clone());
        let rv: u64 = pod.metadata.resource_version.unwrap().parse().unwrap();
        if rv >= until {
            break;
        }
    }
    states
}

/// Per node of `nodes`: how many pods, and whether one is ready.
fn per_node(pods: &PodStates, nodes: usize) -> Vec<(usize, bool)> {
    (1..=nodes)
        .map(|i| {
            let node = format!("node-{i}");
            let on: Vec<_> = pods.values().filter(|(n, _, _)| *n == node).collect();
            (on.len(), on.iter().any(|(_, _, ready)| *ready))
        })
        .collect()
}

/// Creates DaemonSet `agent` with `strategy` on `n` nodes, settles it, changes its image and
/// settles again; returns the pod states after every pod event of the update, the old and new
/// hashes.
async fn update(n: usize, strategy: Value) -> (ApiServer, Vec<PodStates>, String, String) {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    plain_nodes(&server, n).await;
    create_daemonset(&server, daemonset_json("agent", "agent:1", strategy)).await;
    let now = settle(&kcm, t0());
    let before = pod_states(&server).await;
    let old_hash = before.values().next().unwrap().1.clone();
    let from = server.resource_version();
    set_image(&server, "agent", "agent:2").await;
    settle(&kcm, now + SignedDuration::from_secs(1));
    let states = replay(&server, before, from).await;
    let pods = pod_per_node(&server, "agent").await;
    assert_eq!(pods.len(), n);
    let new_hash = hash_of(pods.values().next().unwrap());
    assert_ne!(new_hash, old_hash);
    assert!(pods.values().all(|p| hash_of(p) == new_hash));
    let count = i64::try_from(n).unwrap();
    assert_eq!(status(&server, "agent").await, settled_status(count, 2));
    (server, states, old_hash, new_hash)
}

#[tokio::test]
async fn a_rolling_update_replaces_one_node_at_a_time() {
    let (_server, states, _, _) = update(4, Value::Null).await;
    assert!(
        states.len() >= 12,
        "4 deletions, creations and readiness: {}",
        states.len()
    );
    for pods in &states {
        let nodes = per_node(pods, 4);
        assert!(nodes.iter().all(|(count, _)| *count <= 1), "{pods:?}");
        let down = nodes.iter().filter(|(_, ready)| !ready).count();
        assert!(down <= 1, "{down} nodes without a ready pod: {pods:?}");
    }
    // maxUnavailable 2 of 4 (50%, rounded up): two nodes at a time.
    let (_server, states, _, _) = update(
        4,
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}),
    )
    .await;
    let most_down = states
        .iter()
        .map(|pods| per_node(pods, 4).iter().filter(|(_, r)| !r).count())
        .max();
    assert_eq!(most_down, Some(2));
}

#[tokio::test]
async fn max_surge_runs_old_and_new_side_by_side_on_one_node_at_a_time() {
    let strategy = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    let (_server, states, old_hash, new_hash) = update(3, strategy).await;
    let mut side_by_side = 0;
    for pods in &states {
        let nodes = per_node(pods, 3);
        assert!(
            nodes.iter().all(|(_, ready)| *ready),
            "every node serves: {pods:?}"
        );
        let doubled = nodes.iter().filter(|(count, _)| *count == 2).count();
        assert!(doubled <= 1, "{pods:?}");
        assert!(nodes.iter().all(|(count, _)| *count <= 2), "{pods:?}");
        if doubled == 1 {
            side_by_side += 1;
            let hashes: Vec<&String> = pods.values().map(|(_, h, _)| h).collect();
            assert!(hashes.contains(&&old_hash) && hashes.contains(&&new_hash));
        }
    }
    assert!(side_by_side > 0, "old and new shared a node");
}

#[tokio::test]
async fn on_delete_changes_pods_only_where_they_are_deleted_or_new() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    plain_nodes(&server, 3).await;
    // A leftover rollingUpdate block is accepted with OnDelete.
    let strategy = json!({"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 2}});
    create_daemonset(&server, daemonset_json("agent", "agent:1", strategy)).await;
    let mut now = settle(&kcm, t0());
    let first = pod_per_node(&server, "agent").await;
    let old_hash = hash_of(&first["node-1"]);
    let names = |pods: &BTreeMap<String, Pod>| pods.values().map(name_of).collect::<Vec<_>>();
    assert_eq!(generation(&server, "agent").await, 1);

    set_image(&server, "agent", "agent:2").await;
    assert_eq!(generation(&server, "agent").await, 2);
    now = settle(&kcm, now + SignedDuration::from_secs(1));
    let held = pod_per_node(&server, "agent").await;
    assert_eq!(names(&held), names(&first), "nothing restarts");
    assert!(held.values().all(|p| hash_of(p) == old_hash));
    let s = status(&server, "agent").await;
    assert_eq!(s["observedGeneration"], 2);
    assert!(s["updatedNumberScheduled"].is_null(), "0 is left out: {s}");
    assert_eq!(s["numberAvailable"], 3);
    // Status writes do not move the generation.
    assert_eq!(generation(&server, "agent").await, 2);

    // A new node gets the new template; so does a deleted pod's replacement.
    create_node(&server, "node-4", json!({}), json!({})).await;
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    pods.delete(&name_of(&held["node-1"]), &DeleteParams::default())
        .await
        .unwrap();
    now = settle(&kcm, now + SignedDuration::from_secs(1));
    let after = pod_per_node(&server, "agent").await;
    let new_hash = hash_of(&after["node-4"]);
    assert_ne!(new_hash, old_hash);
    assert_eq!(hash_of(&after["node-1"]), new_hash);
    assert_ne!(name_of(&after["node-1"]), name_of(&held["node-1"]));
    assert_eq!(hash_of(&after["node-2"]), old_hash);
    assert_eq!(hash_of(&after["node-3"]), old_hash);
    let s = status(&server, "agent").await;
    assert_eq!(s["updatedNumberScheduled"], 2);
    assert_eq!(s["desiredNumberScheduled"], 4);

    // Back to the first template: its hash again, and the pods still at it are up to date.
    set_image(&server, "agent", "agent:1").await;
    assert_eq!(generation(&server, "agent").await, 3);
    now = settle(&kcm, now + SignedDuration::from_secs(1));
    let s = status(&server, "agent").await;
    assert_eq!(s["updatedNumberScheduled"], 2, "node-2 and node-3: {s}");
    assert_eq!(s["observedGeneration"], 3);
    pods.delete(&name_of(&after["node-4"]), &DeleteParams::default())
        .await
        .unwrap();
    settle(&kcm, now + SignedDuration::from_secs(1));
    let reverted = pod_per_node(&server, "agent").await;
    assert_eq!(hash_of(&reverted["node-4"]), old_hash);
    assert_eq!(status(&server, "agent").await["updatedNumberScheduled"], 3);
}

#[tokio::test]
async fn a_rolling_update_reverted_gets_the_first_hash_back() {
    let (server, _, old_hash, _) = update(2, Value::Null).await;
    let kcm = server.controllers(STARTUP);
    set_image(&server, "agent", "agent:1").await;
    settle(&kcm, t0() + SignedDuration::from_secs(600));
    let pods = pod_per_node(&server, "agent").await;
    assert!(pods.values().all(|p| hash_of(p) == old_hash));
    assert_eq!(status(&server, "agent").await, settled_status(2, 3));
}

/// Asserts `result` is a 422 Invalid refusal with exactly `message`.
fn assert_invalid<T: std::fmt::Debug>(result: kube::Result<T>, message: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert_eq!(status.reason, "Invalid", "{status:?}");
            assert_eq!(status.message, message);
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn invalid_daemonsets_are_refused_with_the_field() {
    let server = ApiServer::start().await.unwrap();
    let api = daemonsets(&server);
    let create = |ds: Value| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &typed(ds)).await }
    };
    let base = daemonset_json("agent", "agent:1", Value::Null);
    let with = |path: &[&str], value: Value| {
        let mut ds = base.clone();
        let mut at = &mut ds;
        for key in path {
            at = &mut at[*key];
        }
        *at = value;
        ds
    };
    let prefix = "DaemonSet.apps \"agent\" is invalid: ";
    assert_invalid(
        create(with(
            &["spec", "template", "metadata", "labels"],
            json!({"app": "other"}),
        ))
        .await,
        &format!(
            "{prefix}spec.template.metadata.labels: Invalid value: {{\"app\":\"other\"}}: \
             `selector` does not match template `labels`"
        ),
    );
    let rolling = |update: Value| {
        with(
            &["spec", "updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": update}),
        )
    };
    assert_invalid(
        create(rolling(json!({"maxUnavailable": 0, "maxSurge": 0}))).await,
        &format!(
            "{prefix}spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be \
             0 when maxSurge is 0"
        ),
    );
    // maxUnavailable defaults to 1: a surge alone is one too many.
    assert_invalid(
        create(rolling(json!({"maxSurge": 1}))).await,
        &format!(
            "{prefix}spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be \
             set when maxUnavailable is non-zero"
        ),
    );
    assert_invalid(
        create(rolling(json!({"maxUnavailable": "150%"}))).await,
        &format!(
            "{prefix}spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": \
             must not be greater than 100%"
        ),
    );
    assert_invalid(
        create(rolling(json!({"maxUnavailable": 0, "maxSurge": "5x"}))).await,
        &format!(
            "{prefix}[spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"5x\": a valid \
             percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or \
             '93%', regex used for validation is '[0-9]+%'), \
             spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when \
             maxSurge is 0]"
        ),
    );
    assert_invalid(
        create(with(
            &["spec", "updateStrategy"],
            json!({"type": "Recreate"}),
        ))
        .await,
        &format!(
            "{prefix}spec.updateStrategy: Unsupported value: {{\"type\":\"Recreate\"}}: \
             supported values: \"RollingUpdate\", \"OnDelete\""
        ),
    );
    assert_invalid(
        create(with(
            &["spec", "template", "spec", "restartPolicy"],
            json!("Never"),
        ))
        .await,
        &format!(
            "{prefix}spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported \
             values: \"Always\""
        ),
    );
    assert_invalid(
        create(with(&["spec", "minReadySeconds"], json!(-1))).await,
        &format!(
            "{prefix}spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"
        ),
    );
    assert_invalid(
        create(with(&["spec", "selector"], json!({}))).await,
        &format!(
            "{prefix}spec.selector: Invalid value: {{}}: empty selector is invalid for daemonset"
        ),
    );
    // A percentage and a zero: accepted, as is OnDelete with a leftover rollingUpdate block.
    create(rolling(json!({"maxUnavailable": "100%", "maxSurge": 0})))
        .await
        .unwrap();
    api.delete("agent", &DeleteParams::default()).await.unwrap();
    create(with(
        &["spec", "updateStrategy"],
        json!({"type": "OnDelete", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}),
    ))
    .await
    .unwrap();

    // The selector may not change, even with the template's labels.
    let mut changed: DaemonSet = api.get("agent").await.unwrap();
    let mut value = serde_json::to_value(&changed).unwrap();
    value["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
    value["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    changed = typed(value);
    assert_invalid(
        api.replace("agent", &PostParams::default(), &changed).await,
        &format!(
            "{prefix}spec.selector: Invalid value: {{\"matchLabels\":{{\"app\":\"other\"}}}}: \
             field is immutable"
        ),
    );
    // An int32 field given a string cannot be decoded: 400.
    let url = format!(
        "{}/apis/apps/v1/namespaces/default/daemonsets",
        server.url()
    );
    let mut bad = base.clone();
    bad["metadata"]["name"] = json!("other");
    bad["spec"]["revisionHistoryLimit"] = json!("ten");
    let answer = reqwest::Client::new()
        .post(url)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
}

#[tokio::test]
async fn daemonsets_and_nodes_are_served_like_the_other_builtins() {
    let server = ApiServer::start().await.unwrap();
    let discovery = kube::Discovery::new(server.client()).run().await.unwrap();
    let find = |group: &str, kind: &str| {
        discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(r, _)| r.group == group && r.kind == kind)
            .unwrap_or_else(|| panic!("{kind} not discovered"))
    };
    let (ds, ds_caps) = find("apps", "DaemonSet");
    assert_eq!(ds.plural, "daemonsets");
    assert_eq!(ds_caps.scope, kube::discovery::Scope::Namespaced);
    let (node, node_caps) = find("", "Node");
    assert_eq!(node.plural, "nodes");
    assert_eq!(node_caps.scope, kube::discovery::Scope::Cluster);

    // Server-side apply, then a strategic merge patch keyed by container name.
    let mut applied = daemonset_json("agent", "agent:1", Value::Null);
    applied["spec"]
        .as_object_mut()
        .unwrap()
        .remove("updateStrategy");
    applied["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "agent", "image": "agent:1"}, {"name": "sidecar", "image": "side:1"}]);
    let api = daemonsets(&server);
    api.patch(
        "agent",
        &PatchParams::apply("test"),
        &Patch::Apply(&applied),
    )
    .await
    .unwrap();
    set_image(&server, "agent", "agent:2").await;
    let ds = api.get("agent").await.unwrap();
    let containers = ds.spec.template.spec.unwrap().containers;
    let images: Vec<_> = containers
        .iter()
        .map(|c| c.image.clone().unwrap())
        .collect();
    assert_eq!(images, ["agent:2", "side:1"]);
    assert_eq!(ds.metadata.generation, Some(2));

    // Nodes: cluster-scoped, merge-patched, listed and watched.
    let watch_from = server.resource_version();
    create_node(&server, "n1", json!({"zone": "a"}), json!({})).await;
    nodes(&server)
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await
        .unwrap();
    let listed = nodes(&server)
        .list(&ListParams::default().labels("disk=ssd"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].metadata.namespace, None);
    let stream = nodes(&server)
        .watch(&WatchParams::default().timeout(1), &watch_from.to_string())
        .await
        .unwrap();
    let events: Vec<_> = Box::pin(stream).take(2).collect().await;
    assert!(matches!(events[0], Ok(WatchEvent::Added(_))));
    assert!(matches!(events[1], Ok(WatchEvent::Modified(_))));
    assert_eq!(
        server.get("v1", "Node", None, "n1").unwrap()["metadata"]["labels"],
        json!({"zone": "a", "disk": "ssd"})
    );
}

#[tokio::test]
async fn deleting_a_daemonset_in_the_foreground_removes_its_pods_first() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    plain_nodes(&server, 3).await;
    create_daemonset(&server, daemonset_json("agent", "agent:1", Value::Null)).await;
    create_daemonset(&server, daemonset_json("other", "other:1", Value::Null)).await;
    let now = settle(&kcm, t0());
    let from = server.resource_version();
    let answer = daemonsets(&server)
        .delete("agent", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .expect("kept while its pods go");
    assert!(
        answer
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_owned())
    );
    kcm.step(now);
    assert!(server.get("apps/v1", "DaemonSet", None, "agent").is_none());
    assert!(pods_by_node(&server, "agent").await.is_empty());
    assert_eq!(
        pod_per_node(&server, "other").await.len(),
        3,
        "not another's pods"
    );

    // In the watch history, every pod went before the DaemonSet.
    let deleted_at = |event: &WatchEvent<Pod>| match event {
        WatchEvent::Deleted(p) => p.metadata.resource_version.clone(),
        _ => None,
    };
    let pods: Api<Pod> = Api::default_namespaced(server.client());
    let pod_stream = pods
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .unwrap();
    let pod_deletions: Vec<u64> = Box::pin(pod_stream)
        .take(3)
        .map(|e| deleted_at(&e.unwrap()).unwrap().parse::<u64>().unwrap())
        .collect()
        .await;
    let ds_stream = daemonsets(&server)
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .unwrap();
    let ds_deleted: u64 = Box::pin(ds_stream.filter_map(|e| async move {
        match e.unwrap() {
            WatchEvent::Deleted(ds) => ds.metadata.resource_version.unwrap().parse().ok(),
            _ => None,
        }
    }))
    .next()
    .await
    .unwrap();
    assert!(
        pod_deletions.iter().all(|rv| *rv < ds_deleted),
        "{pod_deletions:?} {ds_deleted}"
    );

    // In the background, the pods go after the DaemonSet.
    daemonsets(&server)
        .delete("other", &DeleteParams::background())
        .await
        .unwrap();
    assert!(server.get("apps/v1", "DaemonSet", None, "other").is_none());
    kcm.step(now);
    assert!(pods_by_node(&server, "other").await.is_empty());
}

#[tokio::test]
async fn the_real_time_simulator_places_pods_on_new_nodes() {
    let server = ApiServer::start().await.unwrap();
    server.simulate_deployments(Duration::from_millis(20));
    create_daemonset(&server, daemonset_json("agent", "agent:1", Value::Null)).await;
    plain_nodes(&server, 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(&server, "agent").await;
        if s["numberAvailable"] == 2 {
            assert_eq!(s, settled_status(2, 1));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never settled: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
