//! The Rollout CRD, the upstream CRDs of `crds/` and the example rollouts as the API test
//! server serves them: validated by their schemas, and accepted with the mesh webhooks on.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube_testserver::ApiServer;
use serde_json::{Value, json};

/// One raw POST: `(code, body, Warning headers)`.
async fn post(server: &ApiServer, path: &str, body: &Value) -> (u16, Value, Vec<String>) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .header("content-type", "application/json")
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

#[tokio::test]
async fn the_rollout_and_upstream_crds_validate_with_their_schemas() {
    let server = ApiServer::start().await.unwrap();
    canary_kube::fixtures::register_rollout_crd(&server);
    canary_kube::fixtures::register_upstream_crds(&server);
    let gvk = GroupVersionKind::gvk("canary.rs", "v1alpha1", "Rollout");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "rollouts");
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), "prod", &ar);
    let mut obj = DynamicObject::new("r1", &ar).within("prod");
    obj.data = json!({"spec": {"workload": {"name": 7}}});
    let refused = api.create(&PostParams::default(), &obj).await;
    let Err(kube::Error::Api(status)) = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .starts_with("Rollout.canary.rs \"r1\" is invalid: "),
        "{}",
        status.message
    );
    // An Istio VirtualService loses a field its CRD does not declare.
    let (code, stored, warnings) = post(
        &server,
        "/apis/networking.istio.io/v1/namespaces/default/virtualservices",
        &json!({"metadata": {"name": "vs"}, "spec": {"hosts": ["web"], "http": [{"route": [
            {"destination": {"host": "web"}, "wieght": 100}]}]}}),
    )
    .await;
    assert_eq!(code, 201, "{stored}");
    assert!(
        stored["spec"]["http"][0]["route"][0]
            .get("wieght")
            .is_none()
    );
    assert_eq!(
        warnings,
        ["299 - \"unknown field \\\"spec.http[0].route[0].wieght\\\"\""]
    );
}

#[tokio::test]
async fn every_example_rollout_and_its_objects_are_accepted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rollouts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut created = 0;
    for path in files {
        // A cluster per file: examples may build on the same objects.
        let server = ApiServer::start().await.unwrap();
        canary_kube::fixtures::register_rollout_crd(&server);
        canary_kube::fixtures::register_upstream_crds(&server);
        server.admit_like_upstream();
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in documents.into_iter().filter(|d| d.is_object()) {
            let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
            let plural = match doc["kind"].as_str().unwrap() {
                "Ingress" => "ingresses".to_owned(),
                kind => format!("{}s", kind.to_lowercase()),
            };
            let api_version = doc["apiVersion"].as_str().unwrap();
            let prefix = if api_version.contains('/') {
                "apis"
            } else {
                "api"
            };
            let namespaced = server
                .resource(api_version, doc["kind"].as_str().unwrap())
                .is_none_or(|resource| resource.namespaced);
            let url = if namespaced {
                format!("/{prefix}/{api_version}/namespaces/{ns}/{plural}")
            } else {
                format!("/{prefix}/{api_version}/{plural}")
            };
            let mut doc = doc.clone();
            // Rollouts of different files may share a name.
            if doc["kind"] == "Rollout" {
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                doc["metadata"]["name"] = json!(stem);
            }
            let (code, body, warnings) = post(&server, &url, &doc).await;
            assert_eq!(code, 201, "{}: {body}", path.display());
            assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
            created += 1;
        }
    }
    assert!(created >= 15, "{created}");
}
