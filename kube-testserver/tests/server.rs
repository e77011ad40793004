//! Behaviour of the in-memory test API server, exercised through a real `kube::Client`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube_testserver::{ApiServer, ResourceType, Verb};
use serde_json::{Value, json};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "data": {"k": "v"},
    }))
    .unwrap()
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }))
    .unwrap()
}

/// The `(code, reason)` of an API error.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<K: kube::ResourceExt>(items: &[K]) -> Vec<String> {
    items.iter().map(|o| o.name_any()).collect()
}

async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test]
async fn create_get_list_with_selectors() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let a = api
        .create(&pp, &cm("a", &[("app", "web"), ("tier", "fe")]))
        .await
        .unwrap();
    api.create(&pp, &cm("b", &[("app", "api")])).await.unwrap();
    api.create(&pp, &cm("c", &[])).await.unwrap();
    Api::<ConfigMap>::namespaced(server.client(), "other")
        .create(&pp, &cm("d", &[("app", "web")]))
        .await
        .unwrap();

    assert_eq!(a.metadata.generation, Some(1));
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
    let got = api.get("a").await.unwrap();
    assert_eq!(got.metadata.resource_version, a.metadata.resource_version);

    let list = |sel: &'static str| {
        let api = api.clone();
        async move {
            names(
                &api.list(&ListParams::default().labels(sel))
                    .await
                    .unwrap()
                    .items,
            )
        }
    };
    assert_eq!(list("app=web").await, ["a"]);
    assert_eq!(list("app==web,tier").await, ["a"]);
    assert_eq!(list("app!=web").await, ["b", "c"]);
    assert_eq!(list("app in (web,api)").await, ["a", "b"]);
    assert_eq!(list("app notin (web)").await, ["b", "c"]);
    assert_eq!(list("!app").await, ["c"]);
    assert_eq!(list("app").await, ["a", "b"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(names(&by_name.items), ["b"]);
    let all = Api::<ConfigMap>::all(server.client())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(names(&all.items), ["a", "b", "c", "d"]);
    let in_other = Api::<ConfigMap>::all(server.client())
        .list(&ListParams::default().fields("metadata.namespace=other"))
        .await
        .unwrap();
    assert_eq!(names(&in_other.items), ["d"]);
    assert!(all.metadata.resource_version.is_some());

    assert_eq!(
        api_error(api.get("missing").await),
        (404, "NotFound".into())
    );
    assert_eq!(
        api_error(api.create(&pp, &cm("a", &[])).await),
        (409, "AlreadyExists".into())
    );
    assert_eq!(
        api_error(api.create(&pp, &ConfigMap::default()).await),
        (422, "Invalid".into())
    );
    let mut generated = ConfigMap::default();
    generated.metadata.generate_name = Some("gen-".into());
    let generated = api.create(&pp, &generated).await.unwrap();
    assert!(generated.metadata.name.unwrap().starts_with("gen-"));
    assert_eq!(
        api_error(api.list(&ListParams::default().labels("app in web")).await).0,
        400
    );
}

#[tokio::test]
async fn replace_with_stale_resource_version_conflicts() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let original = api.create(&pp, &cm("a", &[])).await.unwrap();
    let mut changed = original.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "w".to_string())]));
    let replaced = api.replace("a", &pp, &changed).await.unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        original.metadata.resource_version
    );
    assert_eq!(
        api_error(api.replace("a", &pp, &changed).await),
        (409, "Conflict".into())
    );
    assert_eq!(
        api_error(api.replace("zzz", &pp, &cm("zzz", &[])).await).0,
        404
    );
    // Without a resourceVersion the write is unconditional.
    let mut blind = cm("a", &[]);
    blind.data = Some(BTreeMap::from([("k".to_string(), "x".to_string())]));
    assert_eq!(
        api.replace("a", &pp, &blind).await.unwrap().data.unwrap()["k"],
        "x"
    );
}

#[tokio::test]
async fn merge_and_json_patch() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &deployment("web", 1, "nginx:1"))
        .await
        .unwrap();
    let pp = PatchParams::default();

    let labelled = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.labels.unwrap()["a"], "b");
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    let scaled = api
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(scaled.spec.replicas, Some(3));
    assert_eq!(scaled.metadata.generation, Some(2));

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
    ]))
    .unwrap();
    let patched = api
        .patch("web", &pp, &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.spec.replicas, Some(4));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 99}]))
            .unwrap();
    assert_eq!(
        api_error(api.patch("web", &pp, &Patch::Json::<()>(failing)).await),
        (422, "Invalid".into())
    );
    assert_eq!(
        api_error(
            api.patch("nope", &pp, &Patch::Merge(json!({"spec": {}})))
                .await
        ),
        (404, "NotFound".into())
    );
    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}});
    assert_eq!(
        api_error(api.patch("web", &pp, &Patch::Merge(stale)).await).0,
        409
    );
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let mut d = deployment("web", 1, "nginx:1");
    d.spec
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers
        .push(serde_json::from_value(json!({"name": "sidecar", "image": "envoy:1"})).unwrap());
    api.create(&PostParams::default(), &d).await.unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = patched.spec.template.spec.unwrap().containers;
    let images: Vec<_> = containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap()))
        .collect();
    assert_eq!(images, [("app", "nginx:2"), ("sidecar", "envoy:1")]);
}

#[tokio::test]
async fn server_side_apply_tracks_field_ownership() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let apply = |manager: &'static str, force: bool, body: Value| {
        let api = api.clone();
        async move {
            let mut pp = PatchParams::apply(manager);
            pp.force = force;
            api.patch("cfg", &pp, &Patch::Apply(body)).await
        }
    };
    let body = |data: Value, labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": labels}, "data": data});

    // Apply creates, then updates.
    let created = apply(
        "alice",
        false,
        body(json!({"a": "1", "b": "2"}), json!({"x": "1"})),
    )
    .await
    .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let managed = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed.len(), 1);
    assert_eq!(managed[0].manager.as_deref(), Some("alice"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&managed[0].fields_v1).unwrap();
    assert_eq!(
        fields,
        json!({"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
    );

    // Another manager setting a field to a different value conflicts...
    let err = apply("bob", false, body(json!({"a": "9"}), json!({}))).await;
    match &err {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("alice") && s.message.contains(".data.a"),
                "{}",
                s.message
            );
        }
        other => panic!("expected conflict, got {other:?}"),
    }
    // ...the same value is co-owned...
    apply("bob", false, body(json!({"b": "2"}), json!({"y": "bob"})))
        .await
        .unwrap();
    // ...and force takes ownership.
    let forced = apply(
        "bob",
        true,
        body(json!({"a": "9", "b": "2"}), json!({"y": "bob"})),
    )
    .await
    .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");

    // Alice drops `a` (now Bob's) and `b` (co-owned by Bob) and label x (hers alone):
    let after = apply("alice", false, body(json!({"c": "3"}), json!({})))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("9"), "owned by bob");
    assert_eq!(
        data.get("b").map(String::as_str),
        Some("2"),
        "still owned by bob"
    );
    assert_eq!(data.get("c").map(String::as_str), Some("3"));
    let labels = after.metadata.labels.unwrap_or_default();
    assert!(
        !labels.contains_key("x"),
        "alice's label is removed: {labels:?}"
    );
    assert_eq!(labels["y"], "bob");

    // Update operations take ownership too: a merge patch of `c` by another manager
    // means alice re-applying a different `c` conflicts.
    let pp = PatchParams {
        field_manager: Some("kubectl".into()),
        ..Default::default()
    };
    api.patch("cfg", &pp, &Patch::Merge(json!({"data": {"c": "4"}})))
        .await
        .unwrap();
    let (code, _) = api_error(apply("alice", false, body(json!({"c": "5"}), json!({}))).await);
    assert_eq!(code, 409);
}

#[tokio::test]
async fn apply_requires_field_manager_and_json() {
    let server = ApiServer::start().await.unwrap();
    let client = server.client();
    let request = |content_type: &str, uri: &str, body: &str| {
        hyper::Request::patch(uri)
            .header("content-type", content_type)
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let apply = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    let uri = "/api/v1/namespaces/default/configmaps/x";
    let err = client
        .request::<Value>(request("application/apply-patch+yaml", uri, apply))
        .await;
    assert_eq!(api_error(err), (422, "Invalid".into()));
    let err = client
        .request::<Value>(request("application/merge-patch+json", uri, "{not json"))
        .await;
    assert_eq!(api_error(err), (400, "BadRequest".into()));
    let err = client
        .request::<Value>(request("text/plain", uri, "{}"))
        .await;
    assert_eq!(api_error(err), (415, "UnsupportedMediaType".into()));
    let created = client
        .request::<Value>(request(
            "application/apply-patch+yaml",
            &format!("{uri}?fieldManager=m"),
            apply,
        ))
        .await
        .unwrap();
    assert_eq!(created["metadata"]["name"], "x");
    let post = hyper::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(b"[1,2".to_vec())
        .unwrap();
    assert_eq!(api_error(client.request::<Value>(post).await).0, 400);
}

#[tokio::test]
async fn status_subresource_is_isolated() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let mut d = deployment("web", 2, "nginx:1");
    d.status = serde_json::from_value(json!({"replicas": 7})).unwrap();
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    assert!(created.status.is_none(), "create drops status");

    let pp = PatchParams::default();
    let status = api
        .patch_status(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 2}, "spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(status.status.as_ref().unwrap().replicas, Some(2));
    assert_eq!(status.spec.replicas, Some(2), "status patch ignores spec");
    assert_eq!(status.metadata.generation, Some(1));

    let main = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"status": {"replicas": 9}, "spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.status.as_ref().unwrap().replicas,
        Some(2),
        "main patch ignores status"
    );
    assert_eq!(main.spec.replicas, Some(3));
    assert_eq!(main.metadata.generation, Some(2));

    let mut replaced = main.clone();
    replaced.status.as_mut().unwrap().ready_replicas = Some(1);
    let replaced = api
        .replace_status("web", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(replaced.status.unwrap().ready_replicas, Some(1));
    assert_eq!(replaced.metadata.generation, Some(2));
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut obj = cm("f", &[]);
    obj.metadata.finalizers = Some(vec!["canary.rs/cleanup".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();

    let deleted = api.delete("f", &DeleteParams::default()).await.unwrap();
    let marked = deleted.left().expect("object returned");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let still = api.get("f").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(api.get("f").await).0, 404);
    assert_eq!(
        api_error(api.delete("f", &DeleteParams::default()).await).0,
        404
    );

    api.create(&PostParams::default(), &cm("plain", &[]))
        .await
        .unwrap();
    assert!(
        api.delete("plain", &DeleteParams::default())
            .await
            .unwrap()
            .is_left()
    );
    assert!(
        server
            .get("v1", "ConfigMap", Some("default"), "plain")
            .is_none()
    );
}

#[tokio::test]
async fn watcher_sees_events_in_order() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("pre", &[]))
        .await
        .unwrap();
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Init => seen.push("init".to_string()),
            watcher::Event::InitApply(o) => seen.push(format!("init-apply {}", o.name_any())),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["init", "init-apply pre"]);

    let pp = PostParams::default();
    api.create(&pp, &cm("a", &[])).await.unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::Apply(o) => {
                seen.push(format!("apply {} {}", o.name_any(), o.data.unwrap()["k"]))
            }
            watcher::Event::Delete(o) => seen.push(format!("delete {}", o.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["apply a v", "apply a 2", "delete a"]);
}

#[tokio::test]
async fn streaming_list_watcher_and_selectors() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("in", &[("app", "web")]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("out", &[("app", "db")]))
        .await
        .unwrap();
    let config = watcher::Config::default()
        .streaming_lists()
        .labels("app=web");
    let mut events = watcher(api.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::InitApply(o) => initial.push(o.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["in"]);
    // Relabelling moves objects in and out of the selector.
    let pp = PatchParams::default();
    api.patch(
        "out",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "in",
        &pp,
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    let first = events.try_next().await.unwrap().unwrap();
    assert!(
        matches!(&first, watcher::Event::Apply(o) if o.name_any() == "out"),
        "{first:?}"
    );
    let second = events.try_next().await.unwrap().unwrap();
    assert!(
        matches!(&second, watcher::Event::Delete(o) if o.name_any() == "in"),
        "{second:?}"
    );
}

#[tokio::test]
async fn compacted_history_answers_gone_and_watcher_relists() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let first = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    // Replay from history works before compaction.
    let mut stream = api
        .watch(&WatchParams::default().timeout(1), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "b"),
        other => panic!("unexpected {other:?}"),
    }
    server.compact_history();
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("unexpected {other:?}"),
    }

    // A live watcher whose resume point is compacted away gets 410 and relists.
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("init-done") {
        if let watcher::Event::InitDone = events.try_next().await.unwrap().unwrap() {
            seen.push("init-done".to_string());
        }
    }
    // Direct writes do not yield, so the watch cannot observe them before compaction.
    let mut a = server.get("v1", "ConfigMap", None, "a").unwrap();
    a["data"]["k"] = json!("changed");
    server.put(a);
    server.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"},
    }));
    server.compact_history();
    let mut seen = Vec::new();
    loop {
        let step = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .unwrap()
            .unwrap();
        match step {
            Err(watcher::Error::WatchError(e)) => seen.push(format!("error {}", e.code)),
            Ok(watcher::Event::Init) => seen.push("init".into()),
            Ok(watcher::Event::InitApply(o)) => seen.push(format!(
                "init-apply {} {}",
                o.name_any(),
                o.data.unwrap()["k"]
            )),
            Ok(watcher::Event::InitDone) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            "error 410",
            "init",
            "init-apply a changed",
            "init-apply b v",
            "init-apply c v"
        ]
    );
}

#[tokio::test]
async fn fault_injection() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    let faults = server.faults();
    faults.set_seed(7);

    faults.set_conflict_rate(1.0);
    for _ in 0..3 {
        assert_eq!(
            api_error(api.create(&PostParams::default(), &cm("b", &[])).await),
            (409, "Conflict".into())
        );
        let patch = Patch::Merge(json!({"data": {"k": "x"}}));
        assert_eq!(
            api_error(api.patch("a", &PatchParams::default(), &patch).await).0,
            409
        );
        assert_eq!(
            api_error(api.delete("a", &DeleteParams::default()).await).0,
            409
        );
    }
    assert!(api.get("a").await.is_ok(), "reads are unaffected");
    assert!(
        server.get("v1", "ConfigMap", None, "b").is_none(),
        "failed writes are not applied"
    );
    faults.set_conflict_rate(0.0);

    faults.set_error_rate(1.0);
    assert_eq!(
        api_error(api.create(&PostParams::default(), &cm("b", &[])).await),
        (500, "InternalError".into())
    );
    faults.set_error_rate(0.5);
    let mut failures = 0;
    for i in 0..40 {
        if api
            .create(&PostParams::default(), &cm(&format!("r{i}"), &[]))
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    assert!((5..35).contains(&failures), "about half fail: {failures}");
    faults.set_error_rate(0.0);

    faults.set_latency(Duration::from_millis(50));
    let started = std::time::Instant::now();
    api.get("a").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
    faults.set_latency(Duration::ZERO);

    // Dropped watches: the watcher re-watches and still sees every final state.
    faults.set_drop_watch_rate(0.5);
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let writer = async {
        for i in 0..20 {
            api.patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"k": i.to_string()}})),
            )
            .await
            .unwrap();
        }
    };
    let reader = async {
        loop {
            if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) =
                events.next().await.unwrap()
                && o.name_any() == "a"
                && o.data.unwrap()["k"] == "19"
            {
                break;
            }
        }
    };
    tokio::time::timeout(
        Duration::from_secs(10),
        futures::future::join(writer, reader),
    )
    .await
    .unwrap();
    let watches = server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Watch)
        .count();
    assert!(
        watches >= 2,
        "the stream was re-established ({watches} watches)"
    );
}

#[tokio::test]
async fn request_log_classifies_verbs() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Pod> = Api::default_namespaced(server.client());
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}}))
    .unwrap();
    server.clear_requests();
    api.create(&PostParams::default(), &pod).await.unwrap();
    api.get("p").await.unwrap();
    api.list(&ListParams::default()).await.unwrap();
    api.patch(
        "p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();
    let got = api.get("p").await.unwrap();
    api.replace("p", &PostParams::default(), &got)
        .await
        .unwrap();
    let _ = api.get("nope").await;
    api.delete("p", &DeleteParams::default()).await.unwrap();
    let log = server.requests();
    let verbs: Vec<Verb> = log.iter().map(|r| r.verb).collect();
    let expected = [
        Verb::Create,
        Verb::Get,
        Verb::List,
        Verb::Patch,
        Verb::Get,
        Verb::Update,
        Verb::Get,
        Verb::Delete,
    ];
    assert_eq!(verbs, expected);
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 200, 200, 200, 200, 200, 404, 200]);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/api/v1/namespaces/default/pods");
    assert_eq!(log.iter().filter(|r| r.verb.is_write()).count(), 4);
    server.clear_requests();
    assert!(server.requests().is_empty());
}

fn rollout_type() -> ResourceType {
    ResourceType {
        group: "canary.rs".into(),
        version: "v1alpha1".into(),
        kind: "Rollout".into(),
        plural: "rollouts".into(),
        namespaced: true,
        status_subresource: true,
    }
}

#[tokio::test]
async fn registered_crd_works_with_dynamic_objects() {
    let server = ApiServer::start().await.unwrap();
    server.register(rollout_type());
    let gvk = GroupVersionKind::gvk("canary.rs", "v1alpha1", "Rollout");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "rollouts");
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), "prod", &ar);

    let mut obj = DynamicObject::new("r1", &ar).within("prod");
    obj.data = json!({"spec": {"steps": [{"weight": 10}]}});
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let status = api
        .patch_status(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Progressing"}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["phase"], "Progressing");
    assert_eq!(status.metadata.generation, Some(1));

    let applied = api
        .patch(
            "r1",
            &PatchParams::apply("canary"),
            &Patch::Apply(json!({
                "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "r1"}, "spec": {"steps": [{"weight": 50}]},
            })),
        )
        .await;
    // The POST's manager owns `.spec.steps`, so a different value conflicts.
    assert_eq!(api_error(applied).0, 409);
    let applied = api
        .patch(
            "r1",
            &PatchParams::apply("canary").force(),
            &Patch::Apply(json!({
                "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
                "metadata": {"name": "r1"}, "spec": {"steps": [{"weight": 50}]},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["steps"][0]["weight"], 50);
    assert_eq!(applied.data["status"]["phase"], "Progressing");
    assert_eq!(applied.metadata.generation, Some(2));

    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let strategic = api
        .patch(
            "r1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await;
    assert_eq!(api_error(strategic), (415, "UnsupportedMediaType".into()));
    assert!(
        server
            .get("canary.rs/v1alpha1", "Rollout", Some("prod"), "r1")
            .is_some()
    );
    assert_eq!(server.list("canary.rs/v1alpha1", "Rollout").len(), 1);

    // Discovery finds the registered type.
    let discovery = kube::Discovery::new(server.client()).run().await.unwrap();
    let (found, caps) = discovery.resolve_gvk(&gvk).expect("rollouts discovered");
    assert_eq!(found.plural, "rollouts");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .is_some()
    );
}

#[tokio::test]
async fn direct_access_and_cluster_scoped_types() {
    let server = ApiServer::start().await.unwrap();
    server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "seeded", "namespace": "prod"},
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "readyReplicas": 1},
    }));
    let api: Api<Deployment> = Api::namespaced(server.client(), "prod");
    let got = api.get("seeded").await.unwrap();
    assert_eq!(
        got.status.unwrap().ready_replicas,
        Some(1),
        "seeding keeps status"
    );
    assert!(got.metadata.uid.is_some());
    let rv_before = server.resource_version();
    server.put(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "seeded", "namespace": "prod"},
        "spec": {"replicas": 2},
    }));
    assert!(server.resource_version() > rv_before);
    let direct = server
        .get("apps/v1", "Deployment", Some("prod"), "seeded")
        .unwrap();
    assert_eq!(direct["spec"]["replicas"], 2);
    assert_eq!(direct["metadata"]["generation"], 2);
    assert_eq!(server.list("apps/v1", "Deployment").len(), 1);
    assert!(server.list("nope/v1", "Nothing").is_empty());

    let namespaces: Api<Namespace> = Api::all(server.client());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "prod"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(
        namespaces.get("prod").await.unwrap().metadata.namespace,
        None
    );
    assert!(server.get("v1", "Namespace", None, "prod").is_some());
}

#[tokio::test]
async fn deployment_simulator_rolls_out_and_respects_pause() {
    let server = ApiServer::start().await.unwrap();
    server.simulate_deployments(Duration::from_millis(500));
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &deployment("web", 2, "nginx:1"))
        .await
        .unwrap();
    let status = |s: &ApiServer| {
        s.get("apps/v1", "Deployment", None, "web")
            .and_then(|d| d.get("status").cloned())
            .unwrap_or(Value::Null)
    };

    assert!(
        eventually(
            Duration::from_secs(2),
            || status(&server)["observedGeneration"] == 1
        )
        .await
    );
    let early = status(&server);
    assert_eq!(early["availableReplicas"], 0, "{early}");
    assert_eq!(early["readyReplicas"], 0, "{early}");
    assert!(
        eventually(
            Duration::from_secs(2),
            || status(&server)["availableReplicas"] == 2
        )
        .await
    );
    let ready = status(&server);
    assert_eq!(
        (ready["replicas"].clone(), ready["updatedReplicas"].clone()),
        (json!(2), json!(2))
    );

    // A template change: a new ReplicaSet grows by the surge (1 of 2) while the old pods stay
    // available (25% of 2 rounds down to 0 unavailable).
    let pp = PatchParams::default();
    let image = |i: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": i}]}}}});
    api.patch("web", &pp, &Patch::Merge(image("nginx:2")))
        .await
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(2),
            || status(&server)["observedGeneration"] == 2
        )
        .await
    );
    let rolling = status(&server);
    assert!(rolling["updatedReplicas"].as_i64() < Some(2), "{rolling}");
    assert_eq!(rolling["availableReplicas"], 2, "{rolling}");
    let rolled = |s: &ApiServer| {
        let status = status(s);
        status["updatedReplicas"] == 2
            && status["replicas"] == 2
            && status["availableReplicas"] == 2
    };
    assert!(eventually(Duration::from_secs(3), || rolled(&server)).await);

    // Paused: observedGeneration follows, the rollout does not: no pod runs the new template
    // (no ReplicaSet is made for it), the old pods stay.
    api.patch("web", &pp, &Patch::Merge(json!({"spec": {"paused": true}})))
        .await
        .unwrap();
    api.patch("web", &pp, &Patch::Merge(image("nginx:3")))
        .await
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(2),
            || status(&server)["observedGeneration"] == 4
        )
        .await
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let paused = status(&server);
    assert_eq!(
        (
            paused["updatedReplicas"].clone(),
            paused["availableReplicas"].clone()
        ),
        (json!(0), json!(2))
    );

    // Resuming rolls the template changed while paused.
    api.patch(
        "web",
        &pp,
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await
    .unwrap();
    assert!(
        eventually(
            Duration::from_secs(2),
            || status(&server)["observedGeneration"] == 5
        )
        .await
    );
    assert!(status(&server)["updatedReplicas"].as_i64() < Some(2));
    assert!(eventually(Duration::from_secs(3), || rolled(&server)).await);
}

#[tokio::test]
async fn discovery_endpoints() {
    let server = ApiServer::start().await.unwrap();
    let client = server.client();
    let get = |path: &str| hyper::Request::get(path).body(Vec::new()).unwrap();
    let core: Value = client.request(get("/api")).await.unwrap();
    assert_eq!(core["versions"], json!(["v1"]));
    let groups: Value = client.request(get("/apis")).await.unwrap();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"apps") && names.contains(&"coordination.k8s.io"));
    let apps: Value = client.request(get("/apis/apps/v1")).await.unwrap();
    assert_eq!(apps["kind"], "APIResourceList");
    assert!(
        apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "deployments/status")
    );
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    assert_eq!(
        api_error(client.request::<Value>(get("/apis/nope/v1/things")).await).0,
        404
    );
}

#[tokio::test]
async fn watch_ends_at_timeout_and_server_stops_on_drop() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let started = std::time::Instant::now();
    let stream = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(5), stream.collect())
        .await
        .unwrap();
    // Bookmarks are allowed by default: the only event is the closing bookmark.
    assert!(
        matches!(events.as_slice(), [Ok(WatchEvent::Bookmark(_))]),
        "{events:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    let client = server.client();
    let watching = api.watch(&WatchParams::default(), "0").await.unwrap();
    drop(api);
    drop(server);
    let ended: Vec<_> = tokio::time::timeout(Duration::from_secs(5), watching.collect())
        .await
        .unwrap();
    assert!(ended.iter().all(Result::is_err), "{ended:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        client.apiserver_version().await.is_err(),
        "the server is gone"
    );
}

#[tokio::test]
async fn a_null_test_on_a_missing_path_passes_as_in_kubernetes() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Patch, PatchParams, PostParams};
    let server = kube_testserver::ApiServer::start().await.unwrap();
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(server.client(), "default");
    let map: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "m"}})).unwrap();
    api.create(&PostParams::default(), &map).await.unwrap();
    let ops: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}
    ]))
    .unwrap();
    let patched = api
        .patch("m", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(patched.metadata.finalizers, Some(vec!["x".to_owned()]));
    let failing: json_patch::Patch = serde_json::from_value(
        serde_json::json!([{"op": "test", "path": "/metadata/name", "value": null}]),
    )
    .unwrap();
    let refused = api
        .patch("m", &PatchParams::default(), &Patch::Json::<()>(failing))
        .await
        .unwrap_err();
    assert!(matches!(refused, kube::Error::Api(status) if status.code == 422));
}

// ---------------------------------------------------------------------------------------
// Validation: what a real API server refuses, refused the same way.

/// One raw request: `(code, body, Warning headers)`.
async fn raw(
    server: &ApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> (u16, Value, Vec<String>) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = client
        .request(method, format!("{}{path}", server.url()))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (code, body, warnings)
}

async fn post(server: &ApiServer, path: &str, body: &Value) -> (u16, Value, Vec<String>) {
    raw(server, "POST", path, "application/json", body).await
}

/// Asserts a 422 Invalid with exactly `message`, and returns the causes' fields.
fn assert_invalid(answer: &(u16, Value, Vec<String>), message: &str) -> Vec<String> {
    let (code, status, _) = answer;
    assert_eq!(*code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid", "{status}");
    assert_eq!(status["message"], message, "{status}");
    status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_owned())
        .collect()
}

fn deployment_json(name: &str, selector: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            },
        },
    })
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn a_deployment_whose_selector_does_not_match_its_template_is_invalid() {
    let server = ApiServer::start().await.unwrap();
    let answer = post(
        &server,
        DEPLOYMENTS,
        &deployment_json(
            "web",
            json!({"matchLabels": {"app": "web", "version": "v1"}}),
            json!({"app": "web", "version": "v2"}),
        ),
    )
    .await;
    let fields = assert_invalid(
        &answer,
        "Deployment.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: \
         {\"app\":\"web\",\"version\":\"v2\"}: `selector` does not match template `labels`",
    );
    assert_eq!(fields, ["spec.template.metadata.labels"]);
    assert_eq!(answer.1["details"]["kind"], "Deployment");
    assert_eq!(answer.1["details"]["group"], "apps");
    assert_eq!(answer.1["details"]["name"], "web");
    assert_eq!(
        answer.1["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );
    // Through kube-rs, the same refusal.
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let mut bad = deployment("web", 1, "nginx");
    bad.spec.selector.match_labels = Some(BTreeMap::from([("app".to_owned(), "other".to_owned())]));
    assert_eq!(
        api_error(api.create(&PostParams::default(), &bad).await),
        (422, "Invalid".to_owned())
    );
    assert!(server.get("apps/v1", "Deployment", None, "web").is_none());
    // A matching one is accepted.
    api.create(&PostParams::default(), &deployment("web", 1, "nginx"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deployment_needs_a_selector_containers_and_images() {
    let server = ApiServer::start().await.unwrap();
    let mut no_selector = deployment_json("web", json!(null), json!({"app": "web"}));
    no_selector["spec"]
        .as_object_mut()
        .unwrap()
        .remove("selector");
    assert_invalid(
        &post(&server, DEPLOYMENTS, &no_selector).await,
        "Deployment.apps \"web\" is invalid: spec.selector: Required value",
    );
    let empty = deployment_json("web", json!({}), json!({"app": "web"}));
    assert_invalid(
        &post(&server, DEPLOYMENTS, &empty).await,
        "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {}: empty selector is \
         invalid for deployment",
    );
    let mut containers = deployment_json(
        "web",
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    containers["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "app", "image": "nginx"},
        {"name": "app", "image": ""},
        {"name": "Side_Car", "image": "envoy"},
    ]);
    let fields = assert_invalid(
        &post(&server, DEPLOYMENTS, &containers).await,
        "Deployment.apps \"web\" is invalid: [spec.template.spec.containers[1].name: Duplicate \
         value: \"app\", spec.template.spec.containers[1].image: Required value, \
         spec.template.spec.containers[2].name: Invalid value: \"Side_Car\": a lowercase RFC \
         1123 label must consist of lower case alphanumeric characters or '-', and must start \
         and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for \
         validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')]",
    );
    assert_eq!(fields.len(), 3);
    containers["spec"]["template"]["spec"]["containers"] = json!([]);
    assert_invalid(
        &post(&server, DEPLOYMENTS, &containers).await,
        "Deployment.apps \"web\" is invalid: spec.template.spec.containers: Required value",
    );
}

#[tokio::test]
async fn deployment_numbers_and_strategy_are_checked() {
    let server = ApiServer::start().await.unwrap();
    let base = deployment_json(
        "web",
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    );
    let with = |path: &[&str], value: Value| {
        let mut d = base.clone();
        let mut at = &mut d;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        d
    };
    assert_invalid(
        &post(
            &server,
            DEPLOYMENTS,
            &with(&["spec", "replicas"], json!(-1)),
        )
        .await,
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater \
         than or equal to 0",
    );
    // Beyond int32: the decoder refuses it with 400 before validation.
    let (code, status, _) = post(
        &server,
        DEPLOYMENTS,
        &with(&["spec", "replicas"], json!(3_000_000_000_i64)),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(status["reason"], "BadRequest");
    assert_eq!(
        status["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal \
         number 3000000000 into Go struct field DeploymentSpec.spec.replicas of type int32"
    );
    assert_invalid(
        &post(
            &server,
            DEPLOYMENTS,
            &with(
                &["spec", "strategy"],
                json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
            ),
        )
        .await,
        "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate.maxUnavailable: Invalid \
         value: \"0%\": may not be 0 when `maxSurge` is 0",
    );
    assert_invalid(
        &post(
            &server,
            DEPLOYMENTS,
            &with(
                &["spec", "strategy"],
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25x"}}),
            ),
        )
        .await,
        "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate.maxSurge: Invalid value: \
         \"25x\": a valid percent string must be a numeric string followed by an ending '%' (e.g. \
         '1%',  or '93%', regex used for validation is '[0-9]+%')",
    );
    assert_invalid(
        &post(
            &server,
            DEPLOYMENTS,
            &with(
                &["spec", "strategy"],
                json!({"type": "Recreate", "rollingUpdate": {}}),
            ),
        )
        .await,
        "Deployment.apps \"web\" is invalid: spec.strategy.rollingUpdate: Forbidden: may not be \
         specified when strategy `type` is 'Recreate'",
    );
    let mut slow = with(&["spec", "minReadySeconds"], json!(30));
    slow["spec"]["progressDeadlineSeconds"] = json!(30);
    assert_invalid(
        &post(&server, DEPLOYMENTS, &slow).await,
        "Deployment.apps \"web\" is invalid: spec.progressDeadlineSeconds: Invalid value: 30: must \
         be greater than minReadySeconds",
    );
    assert_invalid(
        &post(
            &server,
            DEPLOYMENTS,
            &with(&["spec", "revisionHistoryLimit"], json!(-2)),
        )
        .await,
        "Deployment.apps \"web\" is invalid: spec.revisionHistoryLimit: Invalid value: -2: must \
         be greater than or equal to 0",
    );
    assert_eq!(post(&server, DEPLOYMENTS, &base).await.0, 201);
}

#[tokio::test]
async fn a_deployment_selector_is_immutable() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &deployment("web", 1, "nginx"))
        .await
        .unwrap();
    // Changing selector and labels together (still matching) is refused, by patch and by PUT.
    let patch = json!({"spec": {
        "selector": {"matchLabels": {"app": "web", "version": "v2"}},
        "template": {"metadata": {"labels": {"app": "web", "version": "v2"}}},
    }});
    let answer = raw(
        &server,
        "PATCH",
        &format!("{DEPLOYMENTS}/web"),
        "application/merge-patch+json",
        &patch,
    )
    .await;
    assert_invalid(
        &answer,
        "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: \
         {\"matchLabels\":{\"app\":\"web\",\"version\":\"v2\"}}: field is immutable",
    );
    let mut live = api.get("web").await.unwrap();
    live.spec.selector.match_labels = Some(BTreeMap::from([("tier".to_owned(), "x".to_owned())]));
    assert_eq!(
        api_error(api.replace("web", &PostParams::default(), &live).await),
        (422, "Invalid".to_owned())
    );
    // Other changes go through.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn names_labels_and_annotations_follow_apimachinery() {
    let server = ApiServer::start().await.unwrap();
    let answer = post(
        &server,
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"name": "Bad_Name", "labels": {"bad key": "ok", "ok": "-bad"}}}),
    )
    .await;
    let fields = assert_invalid(
        &answer,
        "ConfigMap \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a \
         lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or \
         '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex \
         used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'), \
         metadata.labels: Invalid value: \"bad key\": name part must consist of alphanumeric \
         characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
         'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
         '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), metadata.labels: Invalid value: \"-bad\": a \
         valid label must be an empty string or consist of alphanumeric characters, '-', '_' or \
         '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or \
         'my_value',  or '12345', regex used for validation is \
         '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')]",
    );
    assert_eq!(
        fields,
        ["metadata.name", "metadata.labels", "metadata.labels"]
    );
    // Services take DNS-1035 labels: no leading digit, no dots.
    let service =
        |name: &str| json!({"metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
    let (code, status, _) = post(
        &server,
        "/api/v1/namespaces/default/services",
        &service("1web"),
    )
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("a DNS-1035 label must consist")
    );
    let (code, _, _) = post(
        &server,
        "/api/v1/namespaces/default/services",
        &service("web.v1"),
    )
    .await;
    assert_eq!(code, 422);
    let (code, _, _) = post(
        &server,
        "/api/v1/namespaces/default/services",
        &service("web"),
    )
    .await;
    assert_eq!(code, 201);
    // Annotation keys are qualified names; generateName may end in '-'.
    let (code, status, _) = post(
        &server,
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"generateName": "cfg-", "annotations": {"a/b/c": "x"}}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "metadata.annotations"
    );
    let (code, _, _) = post(
        &server,
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"generateName": "cfg-", "annotations": {"example.com/a": "x"}}}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, status, _) = post(
        &server,
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"name": "keys"}, "data": {"a/b": "x"}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "data[a/b]");
}

#[tokio::test]
async fn services_need_valid_ports_and_keep_their_cluster_ip() {
    let server = ApiServer::start().await.unwrap();
    const SERVICES: &str = "/api/v1/namespaces/default/services";
    let svc = |spec: Value| json!({"metadata": {"name": "web"}, "spec": spec});
    assert_invalid(
        &post(&server, SERVICES, &svc(json!({"selector": {"app": "web"}}))).await,
        "Service \"web\" is invalid: spec.ports: Required value",
    );
    assert_invalid(
        &post(
            &server,
            SERVICES,
            &svc(json!({"ports": [{"port": 80}, {"port": 81, "name": "b"}]})),
        )
        .await,
        "Service \"web\" is invalid: spec.ports[0].name: Required value",
    );
    assert_invalid(
        &post(&server, SERVICES, &svc(json!({"ports": [{"port": 0}]}))).await,
        "Service \"web\" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and \
         65535, inclusive",
    );
    assert_invalid(
        &post(
            &server,
            SERVICES,
            &svc(json!({"ports": [{"port": 80, "targetPort": "web_port"}]})),
        )
        .await,
        "Service \"web\" is invalid: spec.ports[0].targetPort: Invalid value: \"web_port\": must \
         contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
    );
    let (code, status, _) = post(
        &server,
        SERVICES,
        &svc(json!({"ports": [{"port": 80}], "selector": {"app": "we b"}})),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(status["details"]["causes"][0]["field"], "spec.selector");
    // Headless Services need no ports.
    let (code, _, _) = post(
        &server,
        SERVICES,
        &json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None"}}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _, _) = post(
        &server,
        SERVICES,
        &svc(json!({"clusterIP": "10.0.0.10", "ports": [{"port": 80, "targetPort": "http"}]})),
    )
    .await;
    assert_eq!(code, 201);
    let answer = raw(
        &server,
        "PATCH",
        &format!("{SERVICES}/web"),
        "application/merge-patch+json",
        &json!({"spec": {"clusterIP": "10.0.0.11"}}),
    )
    .await;
    assert_invalid(
        &answer,
        "Service \"web\" is invalid: spec.clusterIP: Invalid value: \"10.0.0.11\": field is \
         immutable",
    );
}

#[tokio::test]
async fn ingresses_and_leases_are_checked() {
    let server = ApiServer::start().await.unwrap();
    const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    let ingress = |path: Value| {
        json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "web.example.com",
            "http": {"paths": [path]}}]}})
    };
    let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
    assert_invalid(
        &post(
            &server,
            INGRESSES,
            &ingress(json!({"path": "/", "backend": backend})),
        )
        .await,
        "Ingress.networking.k8s.io \"web\" is invalid: spec.rules[0].http.paths[0].pathType: \
         Required value: pathType must be specified",
    );
    assert_invalid(
        &post(
            &server,
            INGRESSES,
            &ingress(json!({"path": "api", "pathType": "Prefix", "backend": backend})),
        )
        .await,
        "Ingress.networking.k8s.io \"web\" is invalid: spec.rules[0].http.paths[0].path: Invalid \
         value: \"api\": must be an absolute path",
    );
    assert_invalid(
        &post(
            &server,
            INGRESSES,
            &ingress(json!({"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}})),
        )
        .await,
        "Ingress.networking.k8s.io \"web\" is invalid: spec.rules[0].http.paths[0].backend.service.port: \
         Invalid value: \"\": cannot set both port name & port number",
    );
    assert_invalid(
        &post(
            &server,
            INGRESSES,
            &ingress(
                json!({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web"}}}),
            ),
        )
        .await,
        "Ingress.networking.k8s.io \"web\" is invalid: spec.rules[0].http.paths[0].backend.service.port: \
         Required value: port name or number is required",
    );
    assert_invalid(
        &post(
            &server,
            INGRESSES,
            &json!({"metadata": {"name": "web"}, "spec": {}}),
        )
        .await,
        "Ingress.networking.k8s.io \"web\" is invalid: spec.rules: Invalid value: null: either \
         `defaultBackend` or `rules` must be specified",
    );
    let (code, _, _) = post(
        &server,
        INGRESSES,
        &ingress(json!({"path": "/", "pathType": "Prefix", "backend": backend})),
    )
    .await;
    assert_eq!(code, 201);

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    assert_invalid(
        &post(
            &server,
            LEASES,
            &json!({"metadata": {"name": "leader"}, "spec": {"leaseDurationSeconds": 0}}),
        )
        .await,
        "Lease.coordination.k8s.io \"leader\" is invalid: spec.leaseDurationSeconds: Invalid \
         value: 0: must be greater than 0",
    );
    let (code, _, _) = post(
        &server,
        LEASES,
        &json!({"metadata": {"name": "leader"}, "spec": {"leaseDurationSeconds": 15}}),
    )
    .await;
    assert_eq!(code, 201);
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                "port": {"x-kubernetes-int-or-string": true},
                                "name": {"type": "string", "pattern": "^[a-z]+$"},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                    },
                }},
            }],
        },
    })
}

const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

#[tokio::test]
async fn custom_resources_are_pruned_defaulted_and_validated_by_their_crd_schema() {
    let server = ApiServer::start().await.unwrap();
    // A CRD without its group registers nothing.
    let mut groupless = widget_crd();
    groupless["spec"]["group"] = json!("");
    assert!(matches!(
        server.register_crd(&groupless),
        Err(kube_testserver::Error::Invalid(message)) if message.contains("spec.group")
    ));
    assert!(server.resource("example.com/v1", "Widget").is_none());
    let types = server.register_crd(&widget_crd()).unwrap();
    assert_eq!(types.len(), 1);
    assert!(types[0].status_subresource);
    let widget = |name: &str, spec: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec});
    // Unknown fields are pruned, with a warning (what kube-rs gets by default).
    let (code, stored, warnings) = post(
        &server,
        WIDGETS,
        &widget(
            "a",
            json!({"size": 2, "shape": "round", "extra": {"any": {"thing": 1}}}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{stored}");
    assert!(stored["spec"].get("shape").is_none());
    assert_eq!(stored["spec"]["extra"]["any"]["thing"], 1);
    assert_eq!(stored["spec"]["color"], "red", "defaulted");
    assert_eq!(warnings, ["299 - \"unknown field \\\"spec.shape\\\"\""]);
    // fieldValidation=Strict refuses them; Ignore prunes silently.
    let (code, status, _) = post(
        &server,
        &format!("{WIDGETS}?fieldValidation=Strict"),
        &widget("b", json!({"size": 2, "shape": "round"})),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown \
         field \"spec.shape\""
    );
    let (code, _, warnings) = post(
        &server,
        &format!("{WIDGETS}?fieldValidation=Ignore"),
        &widget("b", json!({"size": 2, "shape": "round"})),
    )
    .await;
    assert_eq!((code, warnings.len()), (201, 0));
    // Values are checked against the schema.
    assert_invalid(
        &post(&server, WIDGETS, &widget("c", json!({"size": 11}))).await,
        "Widget.example.com \"c\" is invalid: spec.size: Invalid value: 11: spec.size in body \
         should be less than or equal to 10",
    );
    assert_invalid(
        &post(&server, WIDGETS, &widget("c", json!({"size": "2"}))).await,
        "Widget.example.com \"c\" is invalid: spec.size: Invalid value: \"string\": spec.size in \
         body must be of type integer: \"string\"",
    );
    assert_invalid(
        &post(&server, WIDGETS, &widget("c", json!({"color": "green"}))).await,
        "Widget.example.com \"c\" is invalid: [spec.size: Required value, spec.color: Unsupported \
         value: \"green\": supported values: \"red\", \"blue\"]",
    );
    assert_invalid(
        &post(
            &server,
            WIDGETS,
            &widget("c", json!({"size": 1, "name": "Big", "port": 1.5})),
        )
        .await,
        "Widget.example.com \"c\" is invalid: [spec.name: Invalid value: \"Big\": spec.name in \
         body should match '^[a-z]+$', spec.port: Invalid value: \"number\": spec.port in body \
         must be of type integer,string: \"number\"]",
    );
    let (code, _, _) = post(
        &server,
        WIDGETS,
        &widget("c", json!({"size": 1, "port": "http"})),
    )
    .await;
    assert_eq!(code, 201);
    // Custom resource names are DNS-1123 subdomains.
    let (code, _, _) = post(&server, WIDGETS, &widget("C_1", json!({"size": 1}))).await;
    assert_eq!(code, 422);
    // Patches, apply and the status subresource are checked too.
    let patch = raw(
        &server,
        "PATCH",
        &format!("{WIDGETS}/a"),
        "application/merge-patch+json",
        &json!({"spec": {"size": 0}}),
    )
    .await;
    assert_eq!(patch.0, 422);
    let applied = raw(
        &server,
        "PATCH",
        &format!("{WIDGETS}/a?fieldManager=test&fieldValidation=Strict&force=true"),
        "application/apply-patch+yaml",
        &widget("a", json!({"size": 3, "bogus": true})),
    )
    .await;
    assert_eq!(applied.0, 400, "{}", applied.1);
    assert_eq!(
        applied.1["message"],
        "failed to create typed patch object (example.com/v1, Kind=Widget): .spec.bogus: field \
         not declared in schema"
    );
    let status = raw(
        &server,
        "PATCH",
        &format!("{WIDGETS}/a/status"),
        "application/merge-patch+json",
        &json!({"status": {"ready": "yes"}}),
    )
    .await;
    assert_eq!(status.0, 422, "{}", status.1);
    let status = raw(
        &server,
        "PATCH",
        &format!("{WIDGETS}/a/status"),
        "application/merge-patch+json",
        &json!({"status": {"ready": true, "junk": 1}}),
    )
    .await;
    assert_eq!(status.0, 200, "{}", status.1);
    assert!(status.1["status"].get("junk").is_none());
    // Registering the type again without a schema keeps the schema.
    server.register(types[0].clone());
    assert_eq!(
        post(&server, WIDGETS, &widget("d", json!({"size": 99})))
            .await
            .0,
        422
    );
}

#[tokio::test]
async fn a_delete_for_another_uid_conflicts() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let first = api
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    api.delete("x", &DeleteParams::default()).await.unwrap();
    let second = api
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    assert_ne!(first.metadata.uid, second.metadata.uid);
    // A delete meant for the first object never removes the one made since under its name.
    let stale = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: first.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete("x", &stale).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 409);
            assert!(
                status.message.contains("Precondition failed: UID"),
                "{}",
                status.message
            );
        }
        other => panic!("{other:?}"),
    }
    let meta = api.get_metadata("x").await.unwrap();
    assert_eq!(meta.metadata.uid, second.metadata.uid);
    let current = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: second.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    api.delete("x", &current).await.unwrap();
    assert!(api.get_opt("x").await.unwrap().is_none());
}
