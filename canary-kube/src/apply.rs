//! The writes traffic providers make: server-side apply of what differs, and deletes that
//! find nothing to delete as good as done.

use canary_core::k8s::objects::includes;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The bounds of the object types the helpers work with (typed or dynamic).
pub trait Object: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug {}

impl<K> Object for K where K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug
{}

/// The field managers of the GitOps tools that apply objects from Git again and again: Flux's
/// (kustomize-controller, helm-controller: their `--manager` defaults) and Argo CD's
/// (`argocd-controller`, argo-cd `common.ArgoCDSSAManager`; its client-side apply writes as
/// that manager too).
pub const GITOPS_MANAGERS: [&str; 3] = [
    "kustomize-controller",
    "helm-controller",
    "argocd-controller",
];

/// The GitOps tool whose manager owns fields under `path` (e.g. `["f:spec"]`) of `object`
/// (as JSON, with its `metadata.managedFields`), if one does: it applies them from Git again
/// whenever they differ, so a value canary writes there does not stay, and writing it would
/// start a fight.
pub fn gitops_applier(object: &Value, path: &[&str]) -> Option<String> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .filter(|entry| {
            entry["manager"]
                .as_str()
                .is_some_and(|manager| GITOPS_MANAGERS.contains(&manager))
        })
        .find(|entry| {
            path.iter()
                .try_fold(&entry["fieldsV1"], |fields, key| fields.get(*key))
                .is_some_and(Value::is_object)
        })
        .and_then(|entry| entry["manager"].as_str().map(str::to_owned))
}

/// The object `name`, as JSON, if it exists.
pub async fn get_json<K: Object>(api: &Api<K>, name: &str) -> kube::Result<Option<Value>> {
    Ok(api
        .get_opt(name)
        .await?
        .map(|object| serde_json::to_value(&object).unwrap_or(Value::Null)))
}

/// Applies `patch` (server-side, forced, as `manager`) to the object it names.
pub async fn apply<K: Object>(api: &Api<K>, patch: &Value, manager: &str) -> kube::Result<()> {
    let name = patch["metadata"]["name"].as_str().unwrap_or_default();
    let params = PatchParams::apply(manager).force();
    api.patch(name, &params, &Patch::Apply(patch)).await?;
    Ok(())
}

/// Applies `desired` when `live` does not already hold it. Returns whether it wrote.
pub async fn apply_if_changed<K: Object>(
    api: &Api<K>,
    live: Option<&Value>,
    desired: &Value,
    manager: &str,
) -> kube::Result<bool> {
    if live.is_some_and(|live| includes(live, desired)) {
        return Ok(false);
    }
    apply(api, desired, manager).await?;
    Ok(true)
}

/// Deletes `live` when there is one. Returns whether it deleted.
pub async fn delete_if_present<K: Object>(
    api: &Api<K>,
    live: Option<&Value>,
) -> kube::Result<bool> {
    let Some(name) = live.and_then(|live| live["metadata"]["name"].as_str()) else {
        return Ok(false);
    };
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// A label selector (`a=b,c=d`) from a map of labels.
pub fn label_selector(labels: &Value) -> String {
    labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}
