//! The writes traffic providers make: server-side apply of what differs, and deletes that
//! find nothing to delete as good as done.

use canary_core::objects::includes;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The bounds of the object types the helpers work with (typed or dynamic).
pub trait Object: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug {}

impl<K> Object for K where K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug
{}

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
