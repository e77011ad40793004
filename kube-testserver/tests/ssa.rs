//! Server-side apply, field ownership, strategic merge patch and `dryRun` of the test API
//! server, against the merge types of the Kubernetes API types and CRD markers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube_testserver::{ApiServer, Error};
use serde_json::{Value, json};

/// The `(code, message)` of an API error.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The `fieldsV1` of `manager`'s entry with `operation`.
fn fields_of(obj: &Value, manager: &str, operation: &str) -> Option<Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
}

async fn apply<K>(
    api: &Api<K>,
    name: &str,
    manager: &str,
    force: bool,
    body: Value,
) -> kube::Result<Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + serde::Serialize,
{
    let mut pp = PatchParams::apply(manager);
    pp.force = force;
    let obj = api.patch(name, &pp, &Patch::Apply(body)).await?;
    Ok(serde_json::to_value(obj).unwrap())
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": spec})
}

/// `ServiceSpec.selector` is `+mapType=atomic` (k8s.io/api core/v1/types.go): a manager that
/// applies any part of it while another owns it conflicts (structured-merge-diff
/// merge/update.go: the other's set intersects the modified `.spec.selector`); with force the
/// selector is replaced whole, and once that manager stops applying it, it is pruned.
#[tokio::test]
async fn an_atomic_service_selector_is_replaced_owned_and_pruned_whole() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Service> = Api::default_namespaced(server.client());
    let ports = json!([{"port": 80, "targetPort": 8080}]);
    let a = apply(
        &api,
        "web",
        "gitops",
        false,
        service(json!({"selector": {"app": "web"}, "ports": ports})),
    )
    .await
    .unwrap();
    assert_eq!(
        fields_of(&a, "gitops", "Apply").unwrap()["f:spec"]["f:selector"],
        json!({}),
        "an atomic map is one leaf"
    );
    let narrow = service(json!({"selector": {"pod-template-hash": "h1"}}));
    let (code, message) = api_error(apply(&api, "web", "canary", false, narrow.clone()).await);
    assert_eq!(code, 409);
    assert!(
        message.contains("conflict with \"gitops\"") && message.contains(".spec.selector"),
        "{message}"
    );
    let forced = apply(&api, "web", "canary", true, narrow).await.unwrap();
    assert_eq!(
        forced["spec"]["selector"],
        json!({"pod-template-hash": "h1"})
    );
    assert_eq!(
        forced["spec"]["ports"][0]["port"], 80,
        "the ports stay gitops'"
    );
    assert!(
        fields_of(&forced, "gitops", "Apply").unwrap()["f:spec"]
            .get("f:selector")
            .is_none(),
        "force moves the selector to canary"
    );
    // Applying without the selector prunes it: no one owns it any more.
    let given_back = apply(&api, "web", "canary", false, service(json!({})))
        .await
        .unwrap();
    assert!(given_back["spec"].get("selector").is_none(), "{given_back}");
    assert_eq!(given_back["spec"]["ports"][0]["port"], 80);
}

/// A granular map (`ConfigMap.data`, `metadata.labels`) merges key by key; an equal value
/// is shared without conflict (structured-merge-diff merge/update.go compares values).
#[tokio::test]
async fn granular_maps_merge_key_by_key() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
    apply(&api, "c", "a", false, cm(json!({"x": "1"})))
        .await
        .unwrap();
    let both = apply(&api, "c", "b", false, cm(json!({"y": "2", "x": "1"})))
        .await
        .unwrap();
    assert_eq!(both["data"], json!({"x": "1", "y": "2"}));
    // a drops x, b still owns it: kept.
    let kept = apply(&api, "c", "a", false, cm(json!({}))).await.unwrap();
    assert_eq!(kept["data"], json!({"x": "1", "y": "2"}));
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers},
            },
        },
    })
}

/// `PodSpec.containers` is `+listType=map` `+listMapKey=name`, `Container.env` keyed by
/// `name`, `Container.ports` by `containerPort`+`protocol` (k8s.io/api core/v1/types.go):
/// items merge by key, are owned as `k:{...}` with `.` for the item itself
/// (structured-merge-diff typed/tofieldset.go, fieldpath/serialize.go), and an item a
/// manager stops applying is removed.
#[tokio::test]
async fn keyed_lists_merge_by_key_and_prune_whole_items() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let app = json!({"name": "app", "image": "web:1", "ports": [{"containerPort": 8080}],
        "env": [{"name": "A", "value": "1"}]});
    let a = apply(&api, "web", "gitops", false, deployment(json!([app])))
        .await
        .unwrap();
    let owned = fields_of(&a, "gitops", "Apply").unwrap();
    let item = &owned["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
    assert_eq!(item["."], json!({}), "{owned}");
    assert_eq!(item["f:image"], json!({}));
    assert_eq!(
        item["f:ports"]["k:{\"containerPort\":8080,\"protocol\":\"TCP\"}"]["."],
        json!({}),
        "protocol defaults in the key: {item}"
    );
    assert_eq!(item["f:env"]["k:{\"name\":\"A\"}"]["f:value"], json!({}));
    // `LabelSelector` is `+structType=atomic` (apimachinery meta/v1/types.go).
    assert_eq!(owned["f:spec"]["f:selector"], json!({}));

    let sidecar = json!([{"name": "sidecar", "image": "proxy:1"},
        {"name": "app", "env": [{"name": "B", "value": "2"}]}]);
    let both = apply(&api, "web", "mesh", false, deployment(sidecar))
        .await
        .unwrap();
    let containers = &both["spec"]["template"]["spec"]["containers"];
    let names: Vec<&str> = containers
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sidecar", "app"],
        "shared items in the applied order"
    );
    let app_now = containers
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    assert_eq!(app_now["image"], "web:1");
    assert_eq!(
        app_now["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );

    // Setting another manager's field inside a keyed item conflicts at that field.
    let bump = deployment(json!([{"name": "app", "image": "web:2"}]));
    let (code, message) = api_error(apply(&api, "web", "mesh", false, bump).await);
    assert_eq!(code, 409);
    assert!(
        message.contains(".spec.template.spec.containers[name=\"app\"].image"),
        "{message}"
    );

    // mesh stops applying its sidecar and env var: both go, gitops' parts stay.
    let dropped = apply(&api, "web", "mesh", false, deployment(json!([])))
        .await
        .unwrap();
    let containers = dropped["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["name"], "app");
    assert_eq!(containers[0]["env"], json!([{"name": "A", "value": "1"}]));
    let mesh = fields_of(&dropped, "mesh", "Apply").unwrap();
    assert!(
        mesh["f:spec"]["f:template"]["f:spec"]
            .get("f:containers")
            .is_none(),
        "{mesh}"
    );
}

/// `metadata.finalizers` is `+listType=set` (apimachinery meta/v1/types.go): items merge by
/// value and are owned as `v:<value>`.
#[tokio::test]
async fn set_lists_merge_by_value() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let cm = |f: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": f}});
    apply(&api, "c", "a", false, cm(json!(["a.io/x"])))
        .await
        .unwrap();
    let both = apply(&api, "c", "b", false, cm(json!(["b.io/y"])))
        .await
        .unwrap();
    assert_eq!(both["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
    assert_eq!(
        fields_of(&both, "b", "Apply").unwrap()["f:metadata"]["f:finalizers"],
        json!({"v:\"b.io/y\"": {}})
    );
    let one = apply(&api, "c", "b", false, cm(json!([]))).await.unwrap();
    assert_eq!(one["metadata"]["finalizers"], json!(["a.io/x"]));
}

/// Ingress `rules` are `+listType=atomic` (k8s.io/api networking/v1/types.go): one value,
/// replaced and owned whole.
#[tokio::test]
async fn atomic_lists_are_one_value() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Ingress> = Api::default_namespaced(server.client());
    let ing = |host: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"},
            "spec": {"rules": [{"host": host}]}})
    };
    let a = apply(&api, "i", "a", false, ing("a.example"))
        .await
        .unwrap();
    assert_eq!(
        fields_of(&a, "a", "Apply").unwrap()["f:spec"]["f:rules"],
        json!({})
    );
    let (code, _) = api_error(apply(&api, "i", "b", false, ing("b.example")).await);
    assert_eq!(code, 409);
    let b = apply(&api, "i", "b", true, ing("b.example")).await.unwrap();
    assert_eq!(b["spec"]["rules"], json!([{"host": "b.example"}]));
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {
            "group": "example.io", "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "routes": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "weight": {"type": "integer"}}}},
                    "subsets": {"type": "array", "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"}, "labels": {"type": "object",
                                "additionalProperties": {"type": "string"}}}}},
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "ref": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {
                        "name": {"type": "string"}, "kind": {"type": "string"}}},
                }}},
            }}}],
        },
    })
}

/// CRD lists without `x-kubernetes-list-type` are atomic; `map` lists merge by
/// `x-kubernetes-list-map-keys`; `set` lists by value; `x-kubernetes-map-type: atomic`
/// objects are one value (apiextensions-apiserver structural schema to
/// structured-merge-diff types).
#[tokio::test]
async fn crd_markers_decide_how_fields_merge() {
    let server = ApiServer::start().await.unwrap();
    server.register_crd(&widget_crd()).unwrap();
    let gvk = GroupVersionKind::gvk("example.io", "v1", "Widget");
    let api: Api<DynamicObject> =
        Api::default_namespaced_with(server.client(), &ApiResource::from_gvk(&gvk));
    let w = |spec: Value| json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec});
    apply(
        &api,
        "w",
        "user",
        false,
        w(
            json!({"routes": [{"name": "r", "weight": 100}], "subsets": [{"name": "v1"}],
            "tags": ["a"], "ref": {"name": "x", "kind": "K"}}),
        ),
    )
    .await
    .unwrap();
    let merged = apply(
        &api,
        "w",
        "canary",
        false,
        w(json!({"subsets": [{"name": "v2", "labels": {"v": "2"}}], "tags": ["b"]})),
    )
    .await
    .unwrap();
    assert_eq!(
        merged["spec"]["subsets"],
        json!([{"name": "v1"}, {"name": "v2", "labels": {"v": "2"}}])
    );
    assert_eq!(merged["spec"]["tags"], json!(["a", "b"]));
    let owned = fields_of(&merged, "canary", "Apply").unwrap();
    assert_eq!(
        owned["f:spec"]["f:subsets"]["k:{\"name\":\"v2\"}"]["f:labels"]["f:v"],
        json!({}),
        "{owned}"
    );
    // An atomic list and an atomic object: any change conflicts as a whole.
    let (code, message) = api_error(
        apply(
            &api,
            "w",
            "canary",
            false,
            w(json!({"routes": [{"name": "r", "weight": 90}]})),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(message.contains(".spec.routes"), "{message}");
    let (code, message) =
        api_error(apply(&api, "w", "canary", false, w(json!({"ref": {"name": "x"}}))).await);
    assert_eq!(code, 409);
    assert!(message.contains(".spec.ref"), "{message}");
    let forced = apply(&api, "w", "canary", true, w(json!({"ref": {"name": "y"}})))
        .await
        .unwrap();
    assert_eq!(
        forced["spec"]["ref"],
        json!({"name": "y"}),
        "replaced whole"
    );
    assert_eq!(
        forced["spec"]["subsets"],
        json!([{"name": "v1"}]),
        "canary's subset pruned"
    );

    // Strategic merge patch is refused for custom resources (kubernetes/kubernetes#97423).
    let (code, message) = api_error(
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await,
    );
    assert_eq!(code, 415);
    assert_eq!(
        message,
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
}

/// Update operations (PUT, merge, JSON and strategic patches) move the fields they change
/// to their manager (structured-merge-diff merge/update.go `Updater.Update`), named by
/// `fieldManager` or, without it, by the user agent's product (apiserver
/// endpoints/handlers/rest.go `prefixFromUserAgent`); an apply then conflicts with that
/// `Update` manager.
#[tokio::test]
async fn updates_take_ownership_of_what_they_change() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Service> = Api::default_namespaced(server.client());
    apply(
        &api,
        "web",
        "gitops",
        false,
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
    )
    .await
    .unwrap();
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"track": "stable"}}})),
        )
        .await
        .unwrap();
    let patched = serde_json::to_value(patched).unwrap();
    let updaters: Vec<&Value> = patched["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "Update")
        .collect();
    assert_eq!(updaters.len(), 1, "{patched}");
    let agent = updaters[0]["manager"].as_str().unwrap();
    assert!(!agent.is_empty() && !agent.contains('/'), "{agent}");
    assert_eq!(updaters[0]["fieldsV1"]["f:spec"]["f:selector"], json!({}));
    assert!(
        fields_of(&patched, "gitops", "Apply").unwrap()["f:spec"]
            .get("f:selector")
            .is_none()
    );
    // gitops re-applying its selector now conflicts with the updater.
    let (code, message) = api_error(
        apply(
            &api,
            "web",
            "gitops",
            false,
            service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(
        message.contains(&format!("\"{agent}\" using v1")),
        "{message}"
    );

    // A strategic merge patch with a field manager: ports are merged by `port`.
    let pp = PatchParams {
        field_manager: Some("ops".into()),
        ..Default::default()
    };
    let smp = api
        .patch(
            "web",
            &pp,
            &Patch::Strategic(
                json!({"spec": {"ports": [{"port": 81, "name": "b"}, {"port": 80, "name": "a"}]}}),
            ),
        )
        .await
        .unwrap();
    let smp = serde_json::to_value(smp).unwrap();
    assert_eq!(smp["spec"]["ports"].as_array().unwrap().len(), 2, "{smp}");
    let ops = fields_of(&smp, "ops", "Update").unwrap();
    assert_eq!(
        ops["f:spec"]["f:ports"]["k:{\"port\":80,\"protocol\":\"TCP\"}"]["f:name"],
        json!({}),
        "{ops}"
    );
    assert!(ops["f:spec"]["f:ports"]["k:{\"port\":81,\"protocol\":\"TCP\"}"]["."].is_object());
}

/// Strategic merge patch by each list's `patchStrategy`/`patchMergeKey` (k8s.io/api
/// core/v1/types.go tags; apimachinery pkg/util/strategicpatch): containers and env by
/// `name`, `$patch: delete` and `$patch: replace`, maps merged (even the atomic
/// `selector`), lists without a strategy replaced.
#[tokio::test]
async fn strategic_merge_patch_follows_merge_keys_and_directives() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let d = deployment(json!([
        {"name": "app", "image": "web:1", "args": ["a", "b"], "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ]));
    api.create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "args": ["c"], "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]},
        {"name": "sidecar", "$patch": "delete"},
    ]}}}});
    let out = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let out = serde_json::to_value(out).unwrap();
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 1, "{containers}");
    assert_eq!(containers[0]["image"], "web:1");
    assert_eq!(containers[0]["args"], json!(["c"]), "args have no strategy");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
    );
    let replace = json!({"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "x:1"}]}}}});
    let out = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(replace))
        .await
        .unwrap();
    let out = serde_json::to_value(out).unwrap();
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "x:1"}])
    );

    let svc: Api<Service> = Api::default_namespaced(server.client());
    apply(
        &svc,
        "web",
        "gitops",
        false,
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
    )
    .await
    .unwrap();
    let out = svc
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"selector": {"v": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(out).unwrap()["spec"]["selector"],
        json!({"app": "web", "v": "2"}),
        "strategic merge patch merges maps whatever their apply type"
    );
}

/// `dryRun=All` (apiserver registry/generic/registry/dryrun.go): the write is checked and
/// answered as it would be stored, and nothing is stored: no resourceVersion bump, no event.
#[tokio::test]
async fn dry_run_writes_store_nothing() {
    let server = ApiServer::start().await.unwrap();
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "v"}})).unwrap();
    let dry_post = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let rv = server.resource_version();
    let created = api.create(&dry_post, &cm).await.unwrap();
    assert_eq!(created.data.unwrap()["k"], "v");
    assert!(created.metadata.resource_version.is_none());
    assert!(server.get("v1", "ConfigMap", None, "c").is_none());
    assert_eq!(server.resource_version(), rv);
    // Invalid objects are refused in a dry run too.
    let bad: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "Not_Valid"}})).unwrap();
    assert_eq!(api_error(api.create(&dry_post, &bad).await).0, 422);

    let live = api.create(&PostParams::default(), &cm).await.unwrap();
    let live_rv = live.metadata.resource_version.clone().unwrap();
    let rv = server.resource_version();
    let mut changed = live.clone();
    changed.data = Some([("k".to_owned(), "w".to_owned())].into());
    let put = api.replace("c", &dry_post, &changed).await.unwrap();
    assert_eq!(put.data.unwrap()["k"], "w");
    assert_eq!(
        put.metadata.resource_version.as_deref(),
        Some(live_rv.as_str())
    );
    let dry_patch = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let merged = api
        .patch("c", &dry_patch, &Patch::Merge(json!({"data": {"k": "m"}})))
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["k"], "m");
    let mut dry_apply = PatchParams::apply("flux").force();
    dry_apply.dry_run = true;
    let applied = api
        .patch(
            "c",
            &dry_apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "a"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "a");
    assert!(
        applied
            .metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|e| e.manager.as_deref() == Some("flux")),
        "the answer shows the ownership it would store"
    );
    let applied_new = api
        .patch(
            "d",
            &dry_apply,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "d"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied_new.metadata.name.as_deref(), Some("d"));
    let dry_delete = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    api.delete("c", &dry_delete).await.unwrap();
    assert_eq!(server.resource_version(), rv, "nothing was written");
    let stored = server.get("v1", "ConfigMap", None, "c").unwrap();
    assert_eq!(stored["data"]["k"], "v");
    assert_eq!(stored["metadata"]["resourceVersion"], live_rv);
    assert!(server.get("v1", "ConfigMap", None, "d").is_none());

    // `All` is the only value.
    let uri = "/api/v1/namespaces/default/configmaps?dryRun=Some";
    let req = hyper::Request::post(uri)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&cm).unwrap())
        .unwrap();
    let (code, _) = api_error(server.client().request::<Value>(req).await);
    assert_eq!(code, 422);
}

/// Objects can be seeded with another manager's ownership (as a GitOps tool's apply would
/// leave them); the seeded manager's fields then conflict like any other.
#[tokio::test]
async fn seeded_ownership_conflicts_like_an_applied_one() {
    let server = ApiServer::start().await.unwrap();
    let seeded = server
        .apply_as(
            "kustomize-controller",
            &service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]})),
            false,
        )
        .unwrap();
    assert!(fields_of(&seeded, "kustomize-controller", "Apply").is_some());
    let api: Api<Service> = Api::default_namespaced(server.client());
    let (code, message) = api_error(
        apply(
            &api,
            "web",
            "canary",
            false,
            service(json!({"selector": {"app": "web", "track": "stable"}})),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(message.contains("\"kustomize-controller\""), "{message}");
    // Seeding refuses conflicts too, unless forced.
    let other = service(json!({"selector": {"x": "y"}}));
    let refused = server.apply_as("other", &other, false).unwrap_err();
    assert!(
        matches!(&refused, Error::Refused { code: 409, message } if message.contains("\"kustomize-controller\"")),
        "{refused:?}"
    );
    let forced = server.apply_as("other", &other, true).unwrap();
    assert_eq!(forced["spec"]["selector"], json!({"x": "y"}));
    // A kind the server does not serve, or an object without a name, is no apply at all.
    let unserved = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                          "metadata": {"name": "w"}});
    assert_eq!(
        server.apply_as("other", &unserved, false),
        Err(Error::NotServed {
            api_version: "example.com/v1".into(),
            kind: "Widget".into()
        })
    );
    let nameless = json!({"apiVersion": "v1", "kind": "Service", "metadata": {}});
    assert!(matches!(
        server.apply_as("other", &nameless, false),
        Err(Error::Invalid(_))
    ));
}
