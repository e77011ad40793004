//! The Rollout CRD: a structural schema that accepts every example rollout, and the committed
//! `deploy/crd.yaml` is what `crdgen` prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use kube::CustomResourceExt;
use serde_json::Value;

fn schema() -> Value {
    let crd = serde_json::to_value(canary_kube::crd::Rollout::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_crd_schema_accepts_every_example_rollout() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples/rollouts")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with("-objects.yaml") {
            continue; // the cluster objects some rollouts build on
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // A file may carry the objects the rollout builds on; the Rollout is checked.
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let rollout = documents
            .into_iter()
            .find(|d| d["kind"] == "Rollout")
            .unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&rollout)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        checked += 1;
    }
    assert!(checked >= 10);
}

#[test]
fn the_crd_schema_refuses_what_the_spec_refuses_by_type() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let bad = serde_json::json!({
        "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout", "metadata": {"name": "x"},
        "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment"}, "service": {"name": "x", "port": "http"},
                 "trafficRouting": {}, "strategy": {}}
    });
    let errors: Vec<String> = validator
        .iter_errors(&bad)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert!(
        errors.iter().any(|p| p == "/spec/service/port"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|p| p == "/spec/workloadRef"),
        "name is required: {errors:?}"
    );
}

/// Kubernetes only serves structural schemas: every node typed (or int-or-string), no
/// `additionalProperties: false` next to `properties`, no `$ref`.
#[test]
fn the_crd_schema_is_structural() {
    fn walk(node: &Value, path: &str, problems: &mut Vec<String>) {
        let Some(map) = node.as_object() else { return };
        if map.contains_key("$ref") {
            problems.push(format!("{path}: $ref"));
        }
        if map.contains_key("properties")
            && map.get("additionalProperties") == Some(&Value::Bool(false))
        {
            problems.push(format!(
                "{path}: additionalProperties false beside properties"
            ));
        }
        let typed = map.contains_key("type")
            || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !typed && !path.is_empty() {
            problems.push(format!("{path}: no type"));
        }
        for (name, child) in map
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            walk(child, &format!("{path}.{name}"), problems);
        }
        if let Some(items) = map.get("items") {
            walk(items, &format!("{path}[]"), problems);
        }
        if let Some(values) = map.get("additionalProperties").filter(|v| v.is_object()) {
            walk(values, &format!("{path}{{}}"), problems);
        }
    }
    let mut problems = Vec::new();
    walk(&schema(), "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn deploy_crd_yaml_is_what_crdgen_prints() {
    let committed = std::fs::read_to_string(root().join("deploy/crd.yaml")).unwrap();
    let generated = serde_saphyr::to_string(&canary_kube::crd::Rollout::crd()).unwrap();
    assert_eq!(
        committed, generated,
        "run `cargo run --example crdgen > deploy/crd.yaml`"
    );
}

#[test]
fn the_crd_shows_phase_weight_step_and_age() {
    let crd = serde_json::to_value(canary_kube::crd::Rollout::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Phase", "Weight", "Step", "Age"]);
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    assert_eq!(crd["spec"]["group"], "canary.rs");
}
