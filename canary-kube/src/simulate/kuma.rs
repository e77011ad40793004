//! The part of a Kuma control plane a simulated cluster needs: on a mesh whose
//! `spec.meshServices.mode` is not `Disabled`, Kuma generates a `MeshService` for every
//! Service that selects pods and keeps it in step with the Service (its selector, as
//! `dataplaneTags`, and its ports) — Kuma `pkg/plugins/runtime/k8s/controllers/`
//! `meshservice_controller.go`. Without it a mesh with MeshServices would have none, and
//! every route to one would resolve to nothing.

use canary_core::sim::dataplane::World;
use canary_core::sim::dataplane::kuma::mesh_of_namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject};
use kube::{Api, Client};
use kube_testserver::ApiServer;
use serde_json::{Value, json};

const API_VERSION: &str = "kuma.io/v1alpha1";
/// The label naming the Service a generated MeshService stands for.
const SERVICE_NAME: &str = "k8s.kuma.io/service-name";
/// The label naming a namespace's (or object's) mesh.
const MESH: &str = "kuma.io/mesh";
/// The dataplane tag holding a pod's namespace.
const NAMESPACE_TAG: &str = "k8s.kuma.io/namespace";

/// Brings the generated MeshServices in step with the Services. Returns whether anything
/// changed.
pub(super) async fn sync_mesh_services(server: &ApiServer, client: &Client) -> bool {
    let enabled: Vec<String> = server
        .list(API_VERSION, "Mesh")
        .iter()
        .filter(|mesh| {
            matches!(
                mesh.pointer("/spec/meshServices/mode")
                    .and_then(Value::as_str),
                Some("Everywhere" | "ReachableBackends" | "Exclusive")
            )
        })
        .filter_map(|mesh| mesh["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    if enabled.is_empty() || server.resource(API_VERSION, "MeshService").is_none() {
        return false;
    }
    // Which mesh each namespace's proxies join, by the data-plane model's own rule.
    let namespaces = World::new(server.list("v1", "Namespace"));
    let mut changed = false;
    let mut wanted = Vec::new();
    for service in server.list("v1", "Service") {
        let namespace = service["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let mesh = mesh_of_namespace(&namespaces, namespace);
        let mesh = mesh.as_str();
        let Some(generated) = mesh_service(&service, namespace, mesh) else {
            continue;
        };
        if !enabled.iter().any(|m| m == mesh) {
            continue;
        }
        let name = service["metadata"]["name"].as_str().unwrap_or_default();
        wanted.push((namespace.to_owned(), name.to_owned()));
        let live = server.get(API_VERSION, "MeshService", Some(namespace), name);
        let same = live.as_ref().is_some_and(|live| {
            live["spec"] == generated["spec"]
                && live["metadata"]["labels"] == generated["metadata"]["labels"]
        });
        if !same {
            server.put(generated);
            changed = true;
        }
    }
    let resource = ApiResource {
        group: "kuma.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: API_VERSION.to_owned(),
        kind: "MeshService".to_owned(),
        plural: "meshservices".to_owned(),
    };
    for stale in server.list(API_VERSION, "MeshService") {
        let generated = stale["metadata"]["labels"][SERVICE_NAME].is_string();
        let namespace = stale["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = stale["metadata"]["name"].as_str().unwrap_or_default();
        if generated && !wanted.iter().any(|(ns, n)| ns == namespace && n == name) {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &resource);
            // Already gone is as good.
            let _ = api.delete(name, &DeleteParams::default()).await;
            changed = true;
        }
    }
    changed
}

/// The MeshService Kuma makes of `service` in mesh `mesh`, when it selects pods.
fn mesh_service(service: &Value, namespace: &str, mesh: &str) -> Option<Value> {
    let selector = service["spec"]["selector"].as_object()?;
    if selector.is_empty() {
        return None;
    }
    let name = service["metadata"]["name"].as_str()?;
    let mut tags = selector.clone();
    tags.insert(NAMESPACE_TAG.to_owned(), json!(namespace));
    let ports: Vec<Value> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|port| {
            let mut out = json!({"port": port["port"], "appProtocol": port.get("appProtocol").cloned().unwrap_or(json!("tcp"))});
            for field in ["name", "targetPort"] {
                if let Some(value) = port.get(field) {
                    out[field] = value.clone();
                }
            }
            out
        })
        .collect();
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": "MeshService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MESH: mesh, SERVICE_NAME: name, NAMESPACE_TAG: namespace},
        },
        "spec": {"selector": {"dataplaneTags": tags}, "ports": ports},
    }))
}
