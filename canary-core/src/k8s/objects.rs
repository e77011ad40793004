//! Cluster objects a traffic provider builds on (the stable Deployment, its Service, an
//! existing VirtualService or Ingress), as JSON, so that rendering stays pure: the CLI reads
//! them from files and the Kubernetes layer from the API server.

use serde_json::Value;

/// A set of Kubernetes objects, looked up by kind and name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects(Vec<Value>);

impl Objects {
    /// The objects of `items`.
    pub fn new(items: Vec<Value>) -> Self {
        Objects(items)
    }

    /// Adds `items`; an object of the same kind, namespace and name as one already held
    /// replaces it.
    pub fn extend(&mut self, items: impl IntoIterator<Item = Value>) {
        for item in items {
            let wanted = key(&item);
            match self.0.iter_mut().find(|held| key(held) == wanted) {
                Some(held) => *held = item,
                None => self.0.push(item),
            }
        }
    }

    /// Adds one object (replacing a held one of the same kind, namespace and name).
    pub fn insert(&mut self, item: Value) {
        self.extend([item]);
    }

    /// The object of `kind` named `name` in `namespace`. An object written without a namespace
    /// (as in a file meant for `kubectl apply -n …`) is in every namespace, but one that names
    /// `namespace` comes first; of two alike, the one added last counts.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        let named = |item: &&Value| {
            item.get("kind").and_then(Value::as_str) == Some(kind)
                && item.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        };
        let held = |item: &Value| {
            item.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        self.0
            .iter()
            .rev()
            .filter(named)
            .find(|item| held(item).as_deref() == Some(namespace))
            .or_else(|| {
                self.0
                    .iter()
                    .rev()
                    .filter(named)
                    .find(|item| held(item).is_none())
            })
    }

    /// Every object of `kind` in `namespace` (or written without one).
    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.0
            .iter()
            .filter(move |item| in_kind(item, kind, namespace))
    }

    /// The `pod-template-hash` of `deployment`'s current ReplicaSet in `namespace` among these
    /// objects: the one it owns with its revision number (`deployment.kubernetes.io/revision`),
    /// else the highest-numbered one it owns. `None` when none is held.
    pub fn pod_template_hash(&self, deployment: &Value, namespace: &str) -> Option<String> {
        let uid = deployment.pointer("/metadata/uid").and_then(Value::as_str);
        let name = deployment.pointer("/metadata/name").and_then(Value::as_str);
        let revision = revision_number(deployment);
        let owned = |rs: &&Value| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|owners| {
                    owners.iter().any(|owner| {
                        owner["kind"] == "Deployment"
                            && owner["name"].as_str() == name
                            && uid.is_none_or(|uid| owner["uid"].as_str().is_none_or(|u| u == uid))
                    })
                })
        };
        let owned: Vec<&Value> = self
            .of_kind("ReplicaSet", namespace)
            .filter(owned)
            .collect();
        let current = match revision {
            Some(revision) => owned
                .iter()
                .find(|rs| revision_number(rs) == Some(revision)),
            None => owned.iter().max_by_key(|rs| revision_number(rs)),
        }?;
        current
            .pointer("/metadata/labels")
            .and_then(|labels| labels.get(POD_TEMPLATE_HASH))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// All the objects.
    pub fn iter(&self) -> impl Iterator<Item = &Value> {
        self.0.iter()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The label canary puts on the objects it generates, and its value.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "canary");
/// The label naming the Rollout a generated object belongs to.
pub const ROLLOUT_LABEL: &str = "canary.rs/rollout";

/// True when canary generated `object` (and may replace or delete it whole).
pub fn generated(object: &Value) -> bool {
    object
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(MANAGED_BY.0))
        .and_then(Value::as_str)
        == Some(MANAGED_BY.1)
}

/// The metadata of an object named `name` that canary generates for `plan`.
pub fn generated_metadata(plan: &crate::RolloutPlan, name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "namespace": plan.namespace,
        "labels": {MANAGED_BY.0: MANAGED_BY.1, ROLLOUT_LABEL: plan.name},
    })
}

/// `object` without what the API server sets (status, uid, resource version, managed
/// fields…): what a client would write.
pub fn clean(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
            ] {
                metadata.remove(field);
            }
        }
    }
    out
}

/// True when `live` holds everything `desired` sets: maps key by key, lists item by item,
/// values equal. Fields the API server fills in (defaults, cluster IPs) are not compared.
pub fn includes(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired
            .iter()
            .all(|(key, want)| live.get(key).is_some_and(|have| includes(have, want))),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| includes(l, d))
        }
        (live, desired) => live == desired,
    }
}

/// The JSON type a field of an object must have for canary to read or write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A mapping (a JSON object).
    Mapping,
    /// A mapping whose values are all strings (labels, annotations, selectors).
    MappingOfStrings,
    /// A list of mappings.
    ListOfMappings,
    /// A string.
    Text,
}

impl Shape {
    fn fits(self, value: &Value) -> bool {
        match self {
            Shape::Mapping => value.is_object(),
            Shape::MappingOfStrings => value
                .as_object()
                .is_some_and(|map| map.values().all(Value::is_string)),
            Shape::ListOfMappings => value
                .as_array()
                .is_some_and(|list| list.iter().all(Value::is_object)),
            Shape::Text => value.is_string(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Mapping => "a mapping",
            Shape::MappingOfStrings => "a mapping of strings",
            Shape::ListOfMappings => "a list of mappings",
            Shape::Text => "a string",
        }
    }
}

/// An object for messages: `Kind namespace/name`, or as much of it as it has.
pub fn describe(object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// What a JSON value is, for messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks that every field of `object` named by a JSON pointer in `fields` (`/spec/http`) is
/// absent, null or of its [`Shape`]; the error names the object and the field. Objects come
/// from users and from the cluster (a custom resource's schema may leave its fields open):
/// code that reads or writes a field checks its shape first, and never indexes blind.
///
/// ```
/// use canary_core::k8s::objects::{Shape, check_fields};
/// let dr = serde_json::json!({"kind": "DestinationRule", "metadata": {"name": "web"}, "spec": "x"});
/// let error = check_fields(&dr, &[("/spec", Shape::Mapping)]).unwrap_err();
/// assert_eq!(error, "DestinationRule web: spec is a string; it must be a mapping");
/// ```
pub fn check_fields(object: &Value, fields: &[(&str, Shape)]) -> Result<(), String> {
    if !object.is_object() {
        return Err(format!(
            "a Kubernetes object must be a mapping, not {}",
            type_name(object)
        ));
    }
    for (pointer, shape) in fields {
        match object.pointer(pointer) {
            None | Some(Value::Null) => {}
            Some(value) if shape.fits(value) => {}
            Some(value) => {
                let field = pointer.trim_start_matches('/').replace('/', ".");
                let what = match (shape, value) {
                    (Shape::MappingOfStrings, Value::Object(_)) => {
                        "a mapping with a value that is not a string"
                    }
                    (Shape::ListOfMappings, Value::Array(_)) => {
                        "a list with an item that is not a mapping"
                    }
                    _ => type_name(value),
                };
                return Err(format!(
                    "{}: {field} is {what}; it must be {}",
                    describe(object),
                    shape.name()
                ));
            }
        }
    }
    Ok(())
}

/// The fields every Kubernetes object canary reads must have in shape: `kind`, `metadata` and
/// its `name`, `namespace`, `labels`, `annotations` and `ownerReferences`, and `spec`.
pub const OBJECT_FIELDS: [(&str, Shape); 8] = [
    ("/kind", Shape::Text),
    ("/metadata", Shape::Mapping),
    ("/metadata/name", Shape::Text),
    ("/metadata/namespace", Shape::Text),
    ("/metadata/labels", Shape::MappingOfStrings),
    ("/metadata/annotations", Shape::MappingOfStrings),
    ("/metadata/ownerReferences", Shape::ListOfMappings),
    ("/spec", Shape::Mapping),
];

/// Checks the [`OBJECT_FIELDS`] of `object`.
pub fn check_object(object: &Value) -> Result<(), String> {
    check_fields(object, &OBJECT_FIELDS)
}

/// The label Kubernetes gives the pods of one ReplicaSet.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The revision number Kubernetes puts on a Deployment and its ReplicaSets.
fn revision_number(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/annotations")?
        .get("deployment.kubernetes.io/revision")?
        .as_str()?
        .parse()
        .ok()
}

fn in_kind(item: &Value, kind: &str, namespace: &str) -> bool {
    item.get("kind").and_then(Value::as_str) == Some(kind)
        && item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_none_or(|held| held == namespace)
}

fn key(item: &Value) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        item.get("kind").and_then(Value::as_str),
        item.pointer("/metadata/namespace").and_then(Value::as_str),
        item.pointer("/metadata/name").and_then(Value::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_are_checked_and_named() {
        let dr = |spec: Value| json!({"kind": "DestinationRule", "metadata": {"name": "r", "namespace": "ns"}, "spec": spec});
        assert!(check_object(&dr(json!({"subsets": []}))).is_ok());
        for (spec, words) in [
            (json!("text"), "spec is a string; it must be a mapping"),
            (json!([1]), "spec is a list; it must be a mapping"),
            (json!(7), "spec is a number"),
        ] {
            let error = check_object(&dr(spec)).unwrap_err();
            assert!(error.starts_with("DestinationRule ns/r: "), "{error}");
            assert!(error.contains(words), "{error}");
        }
        let fields = [("/spec/subsets", Shape::ListOfMappings)];
        let error = check_fields(&dr(json!({"subsets": [{}, "x"]})), &fields).unwrap_err();
        assert!(
            error.contains("spec.subsets is a list with an item"),
            "{error}"
        );
        let labels = json!({"kind": "Service", "metadata": {"name": "s", "labels": {"a": 1}}});
        assert!(
            check_object(&labels)
                .unwrap_err()
                .contains("metadata.labels")
        );
        assert!(check_object(&json!("x")).is_err());
    }

    #[test]
    fn includes_ignores_what_the_server_adds_but_not_what_differs() {
        let desired = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "a"}}});
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "a"}, "clusterIP": "10.0.0.1"}});
        assert!(includes(&live, &desired));
        let other =
            json!({"spec": {"ports": [{"port": 81, "protocol": "TCP"}], "selector": {"app": "a"}}});
        assert!(!includes(&other, &desired));
        let more =
            json!({"spec": {"ports": [{"port": 80}, {"port": 81}], "selector": {"app": "a"}}});
        assert!(!includes(&more, &desired));
    }

    #[test]
    fn lookup_is_by_kind_namespace_and_name_and_later_objects_replace_earlier() {
        let mut objects = Objects::new(vec![
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "a"}, "n": 1}),
            json!({"kind": "Service", "metadata": {"name": "web"}, "n": 2}),
            json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}}),
        ]);
        assert_eq!(objects.get("Service", "a", "web").unwrap()["n"], 1);
        assert_eq!(objects.get("Service", "b", "web").unwrap()["n"], 2);
        assert!(objects.get("Service", "a", "other").is_none());
        objects.insert(
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "a"}, "n": 3}),
        );
        assert_eq!(objects.get("Service", "a", "web").unwrap()["n"], 3);
        assert_eq!(objects.iter().count(), 3);
    }
}
