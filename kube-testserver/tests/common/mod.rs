//! Upstream CustomResourceDefinitions for the tests of the mesh webhooks: the workspace's
//! `crds/` directory holds Istio's and Kuma's published CRDs.

use std::path::{Path, PathBuf};

use kube_testserver::ApiServer;
use serde_json::Value;

/// Every `.yaml` file under `dir` (recursively), in path order.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Serves every CRD of the workspace's `crds/` directory on `server`, with its schema.
pub fn register_upstream_crds(server: &ApiServer) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut served = 0;
    for path in yaml_files(&dir) {
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for crd in documents
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
        {
            server
                .register_crd(crd)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            served += 1;
        }
    }
    assert!(served > 0, "no CRD in {}", dir.display());
}
