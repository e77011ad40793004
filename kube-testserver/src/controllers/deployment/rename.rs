//! Naming a Deployment's current ReplicaSet by hand, for tests that need a known
//! `pod-template-hash`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::super::super::store::{Owner, Part};
use super::super::{Pass, meta, rolling};
use super::{HASH, MANAGER, REVISION, ReplicaSets, claim, find_new, revision};

/// Makes the current ReplicaSet of Deployment `namespace/deployment` (the one with its
/// template) `<deployment>-<hash>` with `pod-template-hash: hash`, plus `labels` on the
/// ReplicaSet: its pods move over to it as they are. Without one, a ReplicaSet of that name is
/// made for the Deployment as its controller would. Returns false when the Deployment does
/// not exist.
pub(in super::super) fn name_current(
    pass: &mut Pass<'_>,
    namespace: &str,
    deployment: &str,
    hash: &str,
    labels: &Value,
) -> bool {
    let Some(d) = pass
        .inner
        .get(&pass.kinds.deployments, Some(namespace), deployment)
        .cloned()
    else {
        return false;
    };
    let candidates = ReplicaSets::gather(pass, Some(namespace)).candidates(&d);
    let rss = claim(pass, &d, candidates);
    let name = format!("{deployment}-{hash}");
    let current = find_new(&d, &rss).and_then(|i| rss.get(i)).map(Arc::clone);
    if current.as_ref().is_some_and(|rs| meta::name(rs) == name) {
        return true;
    }
    let mut rs = match &current {
        Some(rs) => {
            let mut copy = Value::clone(rs);
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "generation",
                "managedFields",
            ] {
                meta::remove(&mut copy, &["metadata", field]);
            }
            copy
        }
        None => {
            let revision = meta::annotation(&d, REVISION)
                .and_then(|r| r.parse::<i64>().ok())
                .unwrap_or_else(|| rss.iter().map(|rs| revision(rs)).max().unwrap_or(0) + 1);
            json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "namespace": namespace,
                    "annotations": {REVISION: revision.to_string()},
                    "ownerReferences": [meta::controller_ref(&d)],
                },
                "spec": {
                    "replicas": rolling::desired(&d),
                    "minReadySeconds": meta::int(&d, "/spec/minReadySeconds", 0),
                    "selector": d["spec"]["selector"],
                    "template": d["spec"]["template"],
                },
            })
        }
    };
    meta::set(&mut rs, &["metadata", "name"], json!(name));
    meta::set(
        &mut rs,
        &["spec", "template", "metadata", "labels", HASH],
        json!(hash),
    );
    meta::set(
        &mut rs,
        &["spec", "selector", "matchLabels", HASH],
        json!(hash),
    );
    let mut rs_labels = rs["spec"]["template"]["metadata"]["labels"].clone();
    if let Some(extra) = labels.as_object() {
        for (key, value) in extra {
            meta::set(&mut rs_labels, &[key.as_str()], value.clone());
        }
    }
    meta::set(&mut rs, &["metadata", "labels"], rs_labels);
    let kind = pass.kinds.replicasets.clone();
    let Ok(created) = pass
        .inner
        .create(&kind, Some(namespace), rs, true, &Owner::Untracked)
    else {
        return false;
    };
    if let Some(old) = current {
        let pods = pass.kinds.pods.clone();
        for pod in pass.inner.list(&pods, Some(namespace)) {
            if !meta::controlled_by(&pod, &old) {
                continue;
            }
            let mut next = (*pod).clone();
            meta::set(&mut next, &["metadata", "labels", HASH], json!(hash));
            meta::set(
                &mut next,
                &["metadata", "ownerReferences"],
                json!([meta::controller_ref(&created)]),
            );
            pass.update(&pods, next, Part::Main, MANAGER);
        }
        pass.delete(&kind, &old);
    }
    true
}
