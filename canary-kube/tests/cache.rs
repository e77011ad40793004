//! The watch caches of `canary_kube::cache` against the API test server: which reads reach
//! the server, what a read returns after writes of this process and of others, and what is
//! never kept.

use std::time::{Duration, Instant};

use canary_kube::cache::Cache;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube_testserver::{ApiServer, Verb};
use serde_json::json;

fn config_map(name: &str, value: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "test"}, "data": {"key": value}})
}

/// The requests of `verb` the server logged for `path`.
fn logged(server: &ApiServer, verb: Verb, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.verb == verb && r.path == path)
        .count()
}

/// Reads through `read` until it returns `Some` that `done` accepts.
async fn eventually<T>(
    what: &str,
    mut read: impl AsyncFnMut() -> Option<T>,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = read().await
            && done(&value)
        {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const PATH: &str = "/api/v1/namespaces/test/configmaps/app";

#[tokio::test]
async fn reads_come_from_the_watch_once_it_holds_the_list_and_see_every_write() {
    let server = ApiServer::start().await.unwrap();
    server.put(config_map("app", "1"));
    let cache = Cache::new(server.client());
    let maps: Api<ConfigMap> = Api::namespaced(cache.client(), "test");
    // The first read starts the watch and goes to the server.
    assert_eq!(maps.get("app").await.unwrap().data.unwrap()["key"], "1");
    assert_eq!(logged(&server, Verb::Get, PATH), 1);
    // Once the list is kept, no read reaches the server, also not of a missing object.
    eventually(
        "the cache answers",
        async || {
            server.clear_requests();
            maps.get("app").await.ok();
            Some(logged(&server, Verb::Get, PATH))
        },
        |gets| *gets == 0,
    )
    .await;
    server.clear_requests();
    assert!(maps.get_opt("missing").await.unwrap().is_none());
    assert!(
        server.requests().iter().all(|r| r.verb != Verb::Get),
        "{:?}",
        server.requests()
    );

    // This process's write is read back at once (from the write's answer).
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"key": "2"}});
    maps.patch(
        "app",
        &PatchParams::apply("test").force(),
        &Patch::Apply(&patch),
    )
    .await
    .unwrap();
    assert_eq!(maps.get("app").await.unwrap().data.unwrap()["key"], "2");
    // A dry run changes nothing, in the server or in the cache.
    let mut dry = PatchParams::apply("test").force();
    dry.dry_run = true;
    let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"key": "dry"}});
    maps.patch("app", &dry, &Patch::Apply(&patch))
        .await
        .unwrap();
    assert_eq!(maps.get("app").await.unwrap().data.unwrap()["key"], "2");
    // Another writer's change is read once the watch brings it.
    server.put(config_map("app", "3"));
    eventually(
        "another writer's change",
        async || maps.get("app").await.ok(),
        |m| m.data.as_ref().unwrap()["key"] == "3",
    )
    .await;
    // A create by this process, and a delete by another.
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(config_map("new", "1")).unwrap(),
    )
    .await
    .unwrap();
    assert!(maps.get_opt("new").await.unwrap().is_some());
    Api::<ConfigMap>::namespaced(server.client(), "test")
        .delete("app", &Default::default())
        .await
        .unwrap();
    eventually(
        "the delete",
        async || Some(maps.get_opt("app").await.unwrap()),
        Option::is_none,
    )
    .await;
    assert_eq!(
        logged(&server, Verb::Get, PATH),
        0,
        "none of it read the server"
    );
}

#[tokio::test]
async fn an_expired_watch_relists_and_the_cache_stays_current() {
    let server = ApiServer::start().await.unwrap();
    server.put(config_map("app", "1"));
    let cache = Cache::new(server.client());
    let maps: Api<ConfigMap> = Api::namespaced(cache.client(), "test");
    maps.get("app").await.unwrap();
    eventually(
        "synced",
        async || Some(cache.sizes().values().sum::<usize>()),
        |n| *n == 1,
    )
    .await;
    // The watch is dropped and its resource version compacted away: a relist (410) follows.
    server.faults().set_drop_watch_rate(1.0);
    server.put(config_map("app", "2"));
    server.compact_history();
    server.faults().clear();
    server.put(config_map("app", "3"));
    server.put(config_map("other", "1"));
    eventually(
        "after the relist",
        async || maps.get("app").await.ok(),
        |m| m.data.as_ref().unwrap()["key"] == "3",
    )
    .await;
    eventually(
        "a new object",
        async || maps.get_opt("other").await.unwrap(),
        |_| true,
    )
    .await;
}

#[tokio::test]
async fn secrets_are_kept_as_metadata_and_only_canary_pods_are_kept() {
    let server = ApiServer::start().await.unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "test"},
                      "data": {"token": "c2VjcmV0"}}));
    for (name, role) in [("web-1", "stable"), ("web-canary-1", "canary")] {
        server.put(json!({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": name, "namespace": "test", "labels": {"canary.rs/role": role, "canary.rs/rollout": "web"}},
                          "spec": {"containers": [{"name": "app", "image": "app"}]}}));
    }
    let cache = Cache::new(server.client());
    let secrets: Api<Secret> = Api::namespaced(cache.client(), "test");
    let pods: Api<Pod> = Api::namespaced(cache.client(), "test");
    let canary = ListParams::default().labels("canary.rs/role=canary,canary.rs/rollout=web");
    secrets.get_metadata("token").await.unwrap();
    pods.list(&canary).await.unwrap();
    eventually(
        "synced",
        async || Some(cache.sizes().values().sum::<usize>()),
        |n| *n == 2,
    )
    .await;
    server.clear_requests();
    // Metadata from the cache; the data only from the server (the cache never had it).
    let meta = secrets.get_metadata("token").await.unwrap();
    assert!(meta.metadata.resource_version.is_some());
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert!(secrets.get("token").await.unwrap().data.is_some());
    assert_eq!(
        logged(&server, Verb::Get, "/api/v1/namespaces/test/secrets/token"),
        1
    );
    // Canary pods from the cache; other pods from the server.
    server.clear_requests();
    let listed = pods.list(&canary).await.unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["web-canary-1"]);
    assert_eq!(pods.list_metadata(&canary).await.unwrap().items.len(), 1);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
    assert_eq!(
        pods.get("web-1").await.unwrap().metadata.name.as_deref(),
        Some("web-1")
    );
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
}

#[tokio::test]
async fn what_cannot_be_watched_and_what_is_not_in_scope_is_read_from_the_server() {
    let server = ApiServer::start().await.unwrap();
    server.put(config_map("app", "1"));
    let cache = Cache::new(server.client());
    cache.scope_to(&["other".to_owned()]);
    let maps: Api<ConfigMap> = Api::namespaced(cache.client(), "test");
    for _ in 0..3 {
        maps.get("app").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        logged(&server, Verb::Get, PATH),
        3,
        "not a watched namespace"
    );
    assert!(server.requests().iter().all(|r| r.verb == Verb::Get));
    // A type the server does not serve: its watch gives up, and every read goes through.
    let unknown = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::namespaced_with(cache.client(), "other", &unknown);
    for _ in 0..3 {
        assert!(widgets.get_opt("w").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        logged(
            &server,
            Verb::Get,
            "/apis/example.com/v1/namespaces/other/widgets/w"
        ),
        3
    );
}
