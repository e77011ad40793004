//! The simulated kube-controller-manager and kubelet of the API test server: Deployments,
//! ReplicaSets, Pods and garbage collection, stepped in virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_testserver::{ApiServer, ControllerManager, ResourceType};
use serde_json::{Value, json};

const STARTUP: Duration = Duration::from_secs(10);

fn t0() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn deployment(name: &str, replicas: i64, image: &str, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": {"note": "x"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn get(server: &ApiServer, api_version: &str, kind: &str, name: &str) -> Value {
    server
        .get(api_version, kind, Some("default"), name)
        .unwrap_or(Value::Null)
}

fn controlled_by(object: &Value, owner: &Value) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == true && r["uid"] == owner["metadata"]["uid"])
        })
}

/// The ReplicaSets of Deployment `name`, oldest first.
fn replicasets(server: &ApiServer, name: &str) -> Vec<Value> {
    let d = get(server, "apps/v1", "Deployment", name);
    let mut rss: Vec<Value> = server
        .list("apps/v1", "ReplicaSet")
        .into_iter()
        .filter(|rs| controlled_by(rs, &d))
        .collect();
    rss.sort_by_key(|rs| {
        rs["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    rss
}

fn pods_of(server: &ApiServer, rs: &Value) -> Vec<Value> {
    server
        .list("v1", "Pod")
        .into_iter()
        .filter(|p| controlled_by(p, rs))
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn condition<'a>(d: &'a Value, kind: &str) -> &'a Value {
    d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
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

/// Every pod event since resource version `from`, in order.
async fn pod_events(server: &ApiServer, from: u64) -> Vec<WatchEvent<Pod>> {
    let api: Api<Pod> = Api::default_namespaced(server.client());
    let until = server.resource_version();
    let stream = api
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .unwrap();
    let mut stream = Box::pin(stream);
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let rv = match &event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => p
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default()
                .parse::<u64>()
                .unwrap_or(0),
            _ => continue,
        };
        events.push(event);
        if rv >= until {
            break;
        }
    }
    events
}

type PodStates = BTreeMap<String, (String, bool)>;

/// The pods now: name → (pod-template-hash, ready).
fn pod_states(server: &ApiServer) -> PodStates {
    server
        .list("v1", "Pod")
        .iter()
        .map(|p| {
            let hash = p["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .unwrap_or_default();
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                (hash.to_owned(), ready(p)),
            )
        })
        .collect()
}

/// The pods after each event, from `pods`: name → (pod-template-hash, ready).
fn replay(mut pods: PodStates, events: &[WatchEvent<Pod>]) -> Vec<PodStates> {
    let mut states = Vec::new();
    for event in events {
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                let v = serde_json::to_value(p).unwrap();
                let hash = v["metadata"]["labels"]["pod-template-hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                pods.insert(p.metadata.name.clone().unwrap(), (hash, ready(&v)));
            }
            WatchEvent::Deleted(p) => {
                pods.remove(p.metadata.name.as_ref().unwrap());
            }
            _ => continue,
        }
        states.push(pods.clone());
    }
    states
}

#[tokio::test]
async fn a_deployment_gets_a_hashed_replicaset_and_pods_that_become_ready() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment("web", 3, "nginx:1", Value::Null));
    assert!(kcm.step(t0()));
    assert!(!kcm.step(t0()), "a fixed point: nothing more to do");

    let d = get(&server, "apps/v1", "Deployment", "web");
    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert!(
        hash.bytes()
            .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)),
        "{hash}"
    );
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["labels"]["app"], "web");
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"],
        json!({"app": "web", "pod-template-hash": hash})
    );
    assert_eq!(
        rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        hash
    );
    assert_eq!(rs["spec"]["replicas"], 3);
    let owner = &rs["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].clone(),
            owner["name"].clone(),
            owner["uid"].clone(),
            owner["controller"].clone()
        ),
        (
            json!("Deployment"),
            json!("web"),
            d["metadata"]["uid"].clone(),
            json!(true)
        )
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );

    let pods = pods_of(&server, rs);
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let suffix = name.strip_prefix(&format!("web-{hash}-")).unwrap();
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", "pod-template-hash": hash})
        );
        assert_eq!(pod["metadata"]["annotations"]["note"], "x");
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["startTime"], t0().to_string());
        assert!(!ready(pod));
    }
    assert_eq!(d["status"]["observedGeneration"], 1);
    assert_eq!(d["status"]["replicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 0);
    assert_eq!(d["status"]["unavailableReplicas"], 3);
    assert_eq!(condition(&d, "Available")["status"], "False");
    assert_eq!(condition(&d, "Progressing")["status"], "True");

    // Ready exactly `STARTUP` after the start, not a moment before.
    let ready_at = t0() + SignedDuration::try_from(STARTUP).unwrap();
    assert_eq!(kcm.next_event(), Some(ready_at));
    kcm.step(ready_at - SignedDuration::from_millis(1));
    assert!(pods_of(&server, rs).iter().all(|p| !ready(p)));
    kcm.step(ready_at);
    assert!(
        pods_of(&server, rs)
            .iter()
            .all(|p| ready(p) && p["status"]["phase"] == "Running")
    );
    assert_eq!(kcm.next_event(), None);
    let d = get(&server, "apps/v1", "Deployment", "web");
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(d["status"][field], 3, "{field}: {}", d["status"]);
    }
    assert_eq!(d["status"]["unavailableReplicas"], 0);
    assert_eq!(
        condition(&d, "Available")["reason"],
        "MinimumReplicasAvailable"
    );
    assert_eq!(
        condition(&d, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
    let rs = &replicasets(&server, "web")[0];
    assert_eq!(
        (
            rs["status"]["replicas"].clone(),
            rs["status"]["readyReplicas"].clone(),
            rs["status"]["availableReplicas"].clone()
        ),
        (json!(3), json!(3), json!(3))
    );
}

/// Rolls `replicas` pods from one image to another with the given budgets, checking after every
/// single pod event that at least `replicas - max_unavailable` pods are ready and at most
/// `replicas + max_surge` exist.
async fn roll(
    replicas: i64,
    surge: Value,
    unavailable: Value,
    max_surge: usize,
    max_unavailable: usize,
) {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment(
        "web",
        replicas,
        "nginx:1",
        rolling(surge, unavailable),
    ));
    let mut now = settle(&kcm, t0());
    let first = replicasets(&server, "web");
    assert_eq!(first.len(), 1);
    let old_hash = first[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let from = server.resource_version();
    let before = pod_states(&server);

    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    now = settle(&kcm, now + SignedDuration::from_secs(1));

    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 2, "the old ReplicaSet stays, scaled to 0");
    assert_eq!(rss[0]["spec"]["replicas"], 0);
    assert_eq!(rss[1]["spec"]["replicas"], replicas);
    assert_eq!(
        rss[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let new_hash = rss[1]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_hash, old_hash);
    let d = get(&server, "apps/v1", "Deployment", "web");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(d["status"]["updatedReplicas"], replicas);
    assert_eq!(d["status"]["availableReplicas"], replicas);
    assert_eq!(
        condition(&d, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
    assert!(now > t0());

    let events = pod_events(&server, from).await;
    let states = replay(before, &events);
    assert!(!states.is_empty());
    let want = usize::try_from(replicas).unwrap();
    let mut saw_both = false;
    for pods in &states {
        let ready_count = pods.values().filter(|(_, r)| *r).count();
        assert!(
            ready_count + max_unavailable >= want,
            "{ready_count} ready of {want} (max unavailable {max_unavailable}): {pods:?}"
        );
        assert!(
            pods.len() <= want + max_surge,
            "{} pods: {pods:?}",
            pods.len()
        );
        saw_both |= pods.values().any(|(h, _)| *h == old_hash)
            && pods.values().any(|(h, _)| *h == new_hash);
    }
    assert!(saw_both, "old and new pods overlapped during the rollout");
    let last = states.last().unwrap();
    assert_eq!(last.len(), want);
    assert!(last.values().all(|(h, r)| *h == new_hash && *r));
}

#[tokio::test]
async fn rolling_updates_keep_the_minimum_available_at_every_pod_event() {
    // Defaults (25%/25%) on 4: surge 1, unavailable 1.
    roll(4, Value::Null, Value::Null, 1, 1).await;
    // 10 replicas at 25%: surge rounds up to 3, unavailable down to 2.
    roll(10, json!("25%"), json!("25%"), 3, 2).await;
    // No unavailability allowed: one surge pod at a time.
    roll(3, json!(1), json!(0), 1, 0).await;
    // No surge: one pod down at a time.
    roll(3, json!(0), json!(1), 0, 1).await;
}

#[tokio::test]
async fn recreate_removes_every_old_pod_before_the_first_new_one() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment("web", 3, "nginx:1", json!({"type": "Recreate"})));
    let now = settle(&kcm, t0());
    let from = server.resource_version();
    let before = pod_states(&server);
    let mut d = get(&server, "apps/v1", "Deployment", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    server.put(d);
    settle(&kcm, now + SignedDuration::from_secs(1));
    let states = replay(before, &pod_events(&server, from).await);
    let hashes = |pods: &PodStates| {
        pods.values()
            .map(|(h, _)| h.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        states.iter().all(|pods| hashes(pods).len() <= 1),
        "never old and new pods together"
    );
    assert!(
        states.iter().any(BTreeMap::is_empty),
        "a moment with no pods at all"
    );
    let d = get(&server, "apps/v1", "Deployment", "web");
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
}

#[tokio::test]
async fn a_paused_deployment_holds_its_template_but_scales() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment("web", 2, "nginx:1", Value::Null));
    let mut now = settle(&kcm, t0());
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let pp = PatchParams::default();
    let merge = |v: Value| Patch::Merge(v);
    api.patch("web", &pp, &merge(json!({"spec": {"paused": true}})))
        .await
        .unwrap();
    api.patch(
        "web",
        &pp,
        &merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}})),
    )
    .await
    .unwrap();
    now = settle(&kcm, now + SignedDuration::from_secs(1));
    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 1, "no new ReplicaSet while paused");
    let d = get(&server, "apps/v1", "Deployment", "web");
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(
        d["status"]["updatedReplicas"], 0,
        "no pod runs the paused template"
    );
    assert_eq!(d["status"]["availableReplicas"], 2);
    assert_eq!(condition(&d, "Progressing")["reason"], "DeploymentPaused");
    assert_eq!(condition(&d, "Progressing")["status"], "Unknown");

    // Scaling still happens while paused, on the old template.
    api.patch("web", &pp, &merge(json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();
    now = settle(&kcm, now + SignedDuration::from_secs(1));
    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 1);
    let pods = pods_of(&server, &rss[0]);
    assert_eq!(pods.len(), 5);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1" && ready(p))
    );
    assert_eq!(
        get(&server, "apps/v1", "Deployment", "web")["status"]["availableReplicas"],
        5
    );

    // Resumed: the held template rolls out.
    api.patch("web", &pp, &merge(json!({"spec": {"paused": false}})))
        .await
        .unwrap();
    settle(&kcm, now + SignedDuration::from_secs(1));
    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 2);
    let pods = pods_of(&server, &rss[1]);
    assert_eq!(pods.len(), 5);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2" && ready(p))
    );
    assert!(pods_of(&server, &rss[0]).is_empty());
    let d = get(&server, "apps/v1", "Deployment", "web");
    assert_eq!(
        condition(&d, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
}

#[tokio::test]
async fn scaling_down_removes_unready_pods_first_and_scaling_up_adds_pods() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment("web", 2, "nginx:1", Value::Null));
    let now = settle(&kcm, t0());
    let mut d = get(&server, "apps/v1", "Deployment", "web");
    d["spec"]["replicas"] = json!(4);
    server.put(d.clone());
    let later = now + SignedDuration::from_secs(1);
    kcm.step(later);
    let rs = replicasets(&server, "web").remove(0);
    let pods = pods_of(&server, &rs);
    assert_eq!(pods.len(), 4);
    let old: Vec<String> = pods
        .iter()
        .filter(|p| ready(p))
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(old.len(), 2, "two new pods still starting");

    d = get(&server, "apps/v1", "Deployment", "web");
    d["spec"]["replicas"] = json!(2);
    server.put(d);
    kcm.step(later);
    let left: Vec<String> = pods_of(&server, &rs)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, old, "the unready pods went first");
    let d = get(&server, "apps/v1", "Deployment", "web");
    assert_eq!(d["status"]["replicas"], 2);
    assert_eq!(d["status"]["availableReplicas"], 2);

    // Down to zero and back.
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let pp = PatchParams::default();
    api.patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 0}})))
        .await
        .unwrap();
    kcm.step(later);
    assert!(pods_of(&server, &rs).is_empty());
    api.patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    settle(&kcm, later);
    assert_eq!(pods_of(&server, &rs).len(), 3);
    assert_eq!(
        replicasets(&server, "web").len(),
        1,
        "scaling makes no new ReplicaSet"
    );
}

#[tokio::test]
async fn scaling_mid_rollout_is_proportional() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment(
        "web",
        10,
        "nginx:1",
        rolling(json!(3), json!(2)),
    ));
    let now = settle(&kcm, t0());
    let mut d = get(&server, "apps/v1", "Deployment", "web");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    server.put(d);
    kcm.step(now + SignedDuration::from_secs(1));
    // Old 8, new 5 (10 + 3 surge, 2 unavailable).
    let sizes = |server: &ApiServer| -> Vec<i64> {
        replicasets(server, "web")
            .iter()
            .map(|rs| rs["spec"]["replicas"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(sizes(&server), vec![8, 5]);
    let mut d = get(&server, "apps/v1", "Deployment", "web");
    d["spec"]["replicas"] = json!(20);
    server.put(d);
    kcm.step(now + SignedDuration::from_secs(2));
    // 20 + 3 surge = 23 pods allowed, 10 more spread 8:5 over the two (deployment_util.go
    // GetProportion: round(8 × 23 / 13) = 14, round(5 × 23 / 13) = 9).
    assert_eq!(sizes(&server), vec![14, 9]);
    settle(&kcm, now + SignedDuration::from_secs(2));
    assert_eq!(sizes(&server), vec![0, 20]);
}

#[tokio::test]
async fn owned_objects_are_collected_when_their_owner_goes() {
    let server = ApiServer::start().await.unwrap();
    server.register(ResourceType::new(
        "example.com",
        "v1",
        "Owner",
        "owners",
        true,
        false,
    ));
    let kcm = server.controllers(STARTUP);
    server.put(json!({"apiVersion": "example.com/v1", "kind": "Owner", "metadata": {"name": "boss", "namespace": "default"}}));
    let boss = get(&server, "example.com/v1", "Owner", "boss");
    let mut owned = deployment("canary", 2, "nginx:1", Value::Null);
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "example.com/v1", "kind": "Owner",
        "name": "boss", "uid": boss["metadata"]["uid"], "controller": true}]);
    server.put(owned);
    server.put(deployment("stable", 1, "nginx:1", Value::Null));
    // A ConfigMap with two owners, one of them missing: only the reference goes.
    server.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": "default",
        "ownerReferences": [
            {"apiVersion": "example.com/v1", "kind": "Owner", "name": "boss", "uid": boss["metadata"]["uid"]},
            {"apiVersion": "example.com/v1", "kind": "Owner", "name": "gone", "uid": "nope"}]}}));
    let now = settle(&kcm, t0());
    assert_eq!(server.list("apps/v1", "ReplicaSet").len(), 2);
    assert_eq!(server.list("v1", "Pod").len(), 3);
    let shared = get(&server, "v1", "ConfigMap", "shared");
    assert_eq!(
        shared["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let owners = Api::<kube::api::DynamicObject>::namespaced_with(
        server.client(),
        "default",
        &kube::api::ApiResource {
            group: "example.com".into(),
            version: "v1".into(),
            api_version: "example.com/v1".into(),
            kind: "Owner".into(),
            plural: "owners".into(),
        },
    );
    owners
        .delete("boss", &DeleteParams::background())
        .await
        .unwrap();
    kcm.step(now);
    assert!(
        server
            .get("apps/v1", "Deployment", Some("default"), "canary")
            .is_none()
    );
    assert!(
        server
            .get("v1", "ConfigMap", Some("default"), "shared")
            .is_none()
    );
    let left: Vec<String> = server
        .list("apps/v1", "ReplicaSet")
        .iter()
        .map(|rs| rs["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].starts_with("stable-"), "{left:?}");
    assert_eq!(server.list("v1", "Pod").len(), 1);

    // Deleting a Deployment takes its ReplicaSets and pods.
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    api.delete("stable", &DeleteParams::background())
        .await
        .unwrap();
    kcm.step(now);
    assert!(server.list("apps/v1", "ReplicaSet").is_empty());
    assert!(server.list("v1", "Pod").is_empty());
}

/// Everything a run produced that does not depend on the wall clock.
fn snapshot(server: &ApiServer) -> Vec<Value> {
    let mut out = Vec::new();
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "Pod"),
    ] {
        for object in server.list(api_version, kind) {
            out.push(json!({
                "name": object["metadata"]["name"],
                "labels": object["metadata"]["labels"],
                "annotations": object["metadata"]["annotations"],
                "spec": object["spec"],
                "status": object["status"],
            }));
        }
    }
    out
}

async fn scripted_run() -> Vec<Vec<Value>> {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(Duration::from_millis(1500));
    server.put(deployment("web", 5, "nginx:1", Value::Null));
    let mut snapshots = Vec::new();
    let mut now = t0();
    for second in 0..40 {
        if second == 5 {
            let mut d = get(&server, "apps/v1", "Deployment", "web");
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
            server.put(d);
        }
        if second == 6 {
            let mut d = get(&server, "apps/v1", "Deployment", "web");
            d["spec"]["replicas"] = json!(7);
            server.put(d);
        }
        kcm.step(now);
        snapshots.push(snapshot(&server));
        now += SignedDuration::from_millis(700);
    }
    snapshots
}

#[tokio::test]
async fn virtual_time_stepping_is_deterministic() {
    let a = scripted_run().await;
    let b = scripted_run().await;
    assert_eq!(a, b);
    assert_ne!(a.first(), a.last(), "the run went somewhere");
}

#[tokio::test]
async fn named_replicasets_keep_their_pods_and_templateless_ones_are_left_alone() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment("web", 2, "nginx:1", Value::Null));
    let now = settle(&kcm, t0());
    let pods_before: Vec<Value> = server.list("v1", "Pod");
    assert!(server.name_current_replicaset("default", "web", "6c9f", &json!({"team": "a"})));
    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    assert_eq!(rs["metadata"]["name"], "web-6c9f");
    assert_eq!(
        rs["metadata"]["labels"],
        json!({"app": "web", "pod-template-hash": "6c9f", "team": "a"})
    );
    let pods = pods_of(&server, rs);
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| ready(p) && p["metadata"]["labels"]["pod-template-hash"] == "6c9f")
    );
    let names = |ps: &[Value]| {
        ps.iter()
            .map(|p| p["metadata"]["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&pods), names(&pods_before));

    // A hand-made ReplicaSet without a template is neither adopted nor scaled.
    let d = get(&server, "apps/v1", "Deployment", "web");
    server.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-old", "namespace": "default", "labels": {"app": "web", "pod-template-hash": "old"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": d["metadata"]["uid"]}]}}));
    assert!(!kcm.step(now), "nothing to do");
    let manual = get(&server, "apps/v1", "ReplicaSet", "web-old");
    assert!(
        manual["spec"].is_null() && manual["status"].is_null(),
        "{manual}"
    );
    assert_eq!(replicasets(&server, "web").len(), 1);
    assert_eq!(
        get(&server, "apps/v1", "Deployment", "web")["status"]["availableReplicas"],
        2
    );
    // The Deployment's revision is the renamed ReplicaSet's, whose hash label is the new one.
    let revision =
        |o: &Value| o["metadata"]["annotations"]["deployment.kubernetes.io/revision"].clone();
    let deployment_revision = revision(&get(&server, "apps/v1", "Deployment", "web"));
    assert!(deployment_revision.is_string(), "{deployment_revision}");
    let current: Vec<Value> = replicasets(&server, "web")
        .into_iter()
        .filter(|rs| revision(rs) == deployment_revision)
        .collect();
    assert_eq!(current.len(), 1, "{current:?}");
    assert_eq!(
        current[0]["metadata"]["labels"]["pod-template-hash"],
        "6c9f"
    );
}

#[tokio::test]
async fn the_real_time_simulator_rolls_deployments_out() {
    let server = ApiServer::start().await.unwrap();
    server.simulate_deployments(Duration::from_millis(100));
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let d: Deployment =
        serde_json::from_value(deployment("web", 3, "nginx:1", Value::Null)).unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = get(&server, "apps/v1", "Deployment", "web")["status"].clone();
        if status["availableReplicas"] == 3 && status["updatedReplicas"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pods = server.list("v1", "Pod");
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(ready));
}

#[tokio::test]
async fn a_taken_name_bumps_the_collision_count_and_the_hash() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    server.put(deployment("web", 1, "nginx:1", Value::Null));
    let now = settle(&kcm, t0());
    let first = replicasets(&server, "web").remove(0);
    let taken = first["metadata"]["name"].as_str().unwrap().to_owned();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    api.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    kcm.step(now);
    assert!(server.list("apps/v1", "ReplicaSet").is_empty());

    // Someone else's ReplicaSet (another template, labels the selector does not match) holds
    // the name the template hashes to.
    server.put(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": taken, "namespace": "default", "labels": {"app": "other"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "other"}},
                 "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "o", "image": "o"}]}}}}));
    server.put(deployment("web", 1, "nginx:1", Value::Null));
    settle(&kcm, now);
    let d = get(&server, "apps/v1", "Deployment", "web");
    assert_eq!(d["status"]["collisionCount"], 1);
    let rss = replicasets(&server, "web");
    assert_eq!(rss.len(), 1);
    assert_ne!(rss[0]["metadata"]["name"], taken.as_str());
    assert_eq!(d["status"]["availableReplicas"], 1);
    let other = get(&server, "apps/v1", "ReplicaSet", &taken);
    assert_eq!(other["metadata"]["labels"]["app"], "other", "left alone");
}

#[tokio::test]
async fn min_ready_seconds_delay_availability_not_readiness() {
    let server = ApiServer::start().await.unwrap();
    let kcm = server.controllers(STARTUP);
    let mut d = deployment("web", 2, "nginx:1", Value::Null);
    d["spec"]["minReadySeconds"] = json!(30);
    server.put(d);
    kcm.step(t0());
    let ready_at = t0() + SignedDuration::try_from(STARTUP).unwrap();
    assert_eq!(kcm.next_event(), Some(ready_at));
    kcm.step(ready_at);
    let status = get(&server, "apps/v1", "Deployment", "web")["status"].clone();
    assert_eq!(
        (
            status["readyReplicas"].clone(),
            status["availableReplicas"].clone()
        ),
        (json!(2), json!(0))
    );
    let available_at = ready_at + SignedDuration::from_secs(30);
    assert_eq!(kcm.next_event(), Some(available_at));
    kcm.step(available_at);
    let status = get(&server, "apps/v1", "Deployment", "web")["status"].clone();
    assert_eq!(status["availableReplicas"], 2, "{status}");
    assert_eq!(kcm.next_event(), None);
}

/// The API resource of `kind` (`example.com/v1` Owners, or a built-in kind) for dynamic calls.
fn api_resource(api_version: &str, kind: &str, plural: &str) -> kube::api::ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The resource version at which each object of `kinds` was deleted since `from`, by
/// `Kind/name`.
async fn deletions(
    server: &ApiServer,
    from: u64,
    kinds: &[(&str, &str, &str)],
) -> BTreeMap<String, u64> {
    let until = server.resource_version();
    let mut out = BTreeMap::new();
    for (api_version, kind, plural) in kinds {
        let api = Api::<kube::api::DynamicObject>::namespaced_with(
            server.client(),
            "default",
            &api_resource(api_version, kind, plural),
        );
        let stream = api
            .watch(&WatchParams::default().timeout(1), &from.to_string())
            .await
            .unwrap();
        let mut stream = Box::pin(stream);
        while let Some(event) = stream.next().await {
            let (object, deleted) = match event.unwrap() {
                WatchEvent::Deleted(o) => (o, true),
                WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                _ => continue,
            };
            let rv: u64 = object
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default()
                .parse()
                .unwrap_or(0);
            if deleted {
                out.insert(
                    format!(
                        "{kind}/{}",
                        object.metadata.name.clone().unwrap_or_default()
                    ),
                    rv,
                );
            }
            if rv >= until {
                break;
            }
        }
    }
    out
}

/// A server with the namespaced `example.com/v1` Owner kind, and its simulated controllers.
async fn owner_server() -> (ApiServer, ControllerManager) {
    let server = ApiServer::start().await.unwrap();
    server.register(ResourceType::new(
        "example.com",
        "v1",
        "Owner",
        "owners",
        true,
        false,
    ));
    let kcm = server.controllers(STARTUP);
    (server, kcm)
}

fn owners(server: &ApiServer) -> Api<kube::api::DynamicObject> {
    Api::namespaced_with(
        server.client(),
        "default",
        &api_resource("example.com/v1", "Owner", "owners"),
    )
}

/// Owner `boss` (with `finalizers`), the Deployment `web` it owns (`blockOwnerDeletion`) with
/// its ReplicaSet and two pods, and the ConfigMap `loose` it owns without blocking.
fn owned_world(server: &ApiServer, kcm: &ControllerManager, finalizers: Value) -> Timestamp {
    server.put(json!({"apiVersion": "example.com/v1", "kind": "Owner",
        "metadata": {"name": "boss", "namespace": "default", "finalizers": finalizers}}));
    let boss = get(server, "example.com/v1", "Owner", "boss");
    let reference = |block: bool| {
        json!([{"apiVersion": "example.com/v1", "kind": "Owner", "name": "boss",
                "uid": boss["metadata"]["uid"], "controller": true, "blockOwnerDeletion": block}])
    };
    let mut web = deployment("web", 2, "nginx:1", Value::Null);
    web["metadata"]["ownerReferences"] = reference(true);
    server.put(web);
    server.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "loose", "namespace": "default", "ownerReferences": reference(false)}}));
    let now = settle(kcm, t0());
    assert_eq!(server.list("v1", "Pod").len(), 2);
    now
}

/// Foreground deletion (apiserver registry/store.go `deletionFinalizersForGarbageCollection`;
/// garbagecollector.go `attemptToDeleteItem`, `processDeletingDependentsItem`): the owner gets
/// a `deletionTimestamp` and the `foregroundDeletion` finalizer and stays; every dependent is
/// deleted (those with dependents of their own in the foreground too, so pods go before their
/// ReplicaSet, which goes before its Deployment); the owner goes last, and only once its other
/// finalizers are removed.
#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let (server, kcm) = owner_server().await;
    let now = owned_world(&server, &kcm, json!(["example.com/hold"]));
    let from = server.resource_version();
    let answer = owners(&server)
        .delete("boss", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .expect("the owner is kept while it deletes its dependents");
    assert!(answer.metadata.deletion_timestamp.is_some());
    let finalizers = answer.metadata.finalizers.clone().unwrap_or_default();
    assert!(
        finalizers.contains(&"foregroundDeletion".to_owned()),
        "{finalizers:?}"
    );
    assert!(
        finalizers.contains(&"example.com/hold".to_owned()),
        "{finalizers:?}"
    );
    // Nothing is collected before the collector runs.
    assert!(!get(&server, "apps/v1", "Deployment", "web").is_null());

    kcm.step(now);
    assert!(get(&server, "apps/v1", "Deployment", "web").is_null());
    assert!(get(&server, "v1", "ConfigMap", "loose").is_null());
    assert!(server.list("apps/v1", "ReplicaSet").is_empty());
    assert!(server.list("v1", "Pod").is_empty());
    // The collector removed its own finalizer; the other one keeps the owner.
    let boss = get(&server, "example.com/v1", "Owner", "boss");
    assert_eq!(boss["metadata"]["finalizers"], json!(["example.com/hold"]));
    assert!(boss["metadata"]["deletionTimestamp"].is_string());

    owners(&server)
        .patch(
            "boss",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(get(&server, "example.com/v1", "Owner", "boss").is_null());

    let deleted = deletions(
        &server,
        from,
        &[
            ("example.com/v1", "Owner", "owners"),
            ("apps/v1", "Deployment", "deployments"),
            ("apps/v1", "ReplicaSet", "replicasets"),
            ("v1", "Pod", "pods"),
        ],
    )
    .await;
    let at = |prefix: &str| -> Vec<u64> {
        deleted
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, rv)| *rv)
            .collect()
    };
    let pods = at("Pod/");
    let rss = at("ReplicaSet/");
    assert_eq!((pods.len(), rss.len()), (2, 1), "{deleted:?}");
    assert!(pods.iter().all(|p| *p < rss[0]), "{deleted:?}");
    assert!(rss[0] < at("Deployment/web")[0], "{deleted:?}");
    assert!(at("Deployment/web")[0] < at("Owner/boss")[0], "{deleted:?}");
}

/// Orphaning (`attemptToOrphanWorker`): the dependents lose their reference to the owner and
/// stay, then the owner goes.
#[tokio::test]
async fn orphan_deletion_keeps_the_dependents_without_the_reference() {
    let (server, kcm) = owner_server().await;
    let now = owned_world(&server, &kcm, json!([]));
    let answer = owners(&server)
        .delete("boss", &DeleteParams::orphan())
        .await
        .unwrap()
        .left()
        .expect("the owner waits for its dependents to be orphaned");
    assert_eq!(answer.metadata.finalizers, Some(vec!["orphan".to_owned()]));
    kcm.step(now);
    assert!(get(&server, "example.com/v1", "Owner", "boss").is_null());
    let web = get(&server, "apps/v1", "Deployment", "web");
    assert!(web["metadata"]["ownerReferences"].is_null(), "{web}");
    let loose = get(&server, "v1", "ConfigMap", "loose");
    assert!(loose["metadata"]["ownerReferences"].is_null(), "{loose}");
    assert_eq!(server.list("v1", "Pod").len(), 2);
}

/// Background deletion of an owner with a finalizer: the owner stays (being deleted) and is a
/// solid owner meanwhile, so nothing is collected; once its finalizer goes, so do its
/// dependents.
#[tokio::test]
async fn background_deletion_collects_dependents_only_once_the_owner_is_gone() {
    let (server, kcm) = owner_server().await;
    let now = owned_world(&server, &kcm, json!(["example.com/hold"]));
    owners(&server)
        .delete("boss", &DeleteParams::background())
        .await
        .unwrap();
    kcm.step(now);
    let boss = get(&server, "example.com/v1", "Owner", "boss");
    assert_eq!(boss["metadata"]["finalizers"], json!(["example.com/hold"]));
    assert!(!get(&server, "apps/v1", "Deployment", "web").is_null());
    assert_eq!(server.list("v1", "Pod").len(), 2);
    owners(&server)
        .patch(
            "boss",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    kcm.step(now);
    assert!(get(&server, "apps/v1", "Deployment", "web").is_null());
    assert!(get(&server, "v1", "ConfigMap", "loose").is_null());
    assert!(server.list("v1", "Pod").is_empty());
}

/// `DeleteOptions` validation (apimachinery meta/v1/validation `ValidateDeleteOptions`): an
/// unknown policy, or both `propagationPolicy` and `orphanDependents`, are refused with 422.
#[tokio::test]
async fn delete_options_are_validated() {
    let (server, _kcm) = owner_server().await;
    server.put(json!({"apiVersion": "example.com/v1", "kind": "Owner",
        "metadata": {"name": "boss", "namespace": "default"}}));
    let url = format!(
        "{}/apis/example.com/v1/namespaces/default/owners/boss",
        server.url()
    );
    let http = reqwest::Client::new();
    for (query, body) in [
        ("", json!({"propagationPolicy": "Sometimes"})),
        (
            "?orphanDependents=true",
            json!({"propagationPolicy": "Orphan"}),
        ),
    ] {
        let answer = http
            .delete(format!("{url}{query}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 422, "{query} {body}");
    }
    assert!(!get(&server, "example.com/v1", "Owner", "boss").is_null());
}
