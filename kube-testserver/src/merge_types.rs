//! How each field of an object merges: the structure server-side apply, field ownership and
//! strategic merge patch walk.
//!
//! Custom resources take it from their CRD's `openAPIV3Schema` markers
//! (`x-kubernetes-map-type`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`); the
//! built-in kinds from a table of the `+mapType`/`+structType`/`+listType`/`+listMapKey`
//! markers and `patchStrategy`/`patchMergeKey` tags of their Go types (k8s.io/api
//! `core/v1/types.go`, `apps/v1/types.go`, `networking/v1/types.go`; k8s.io/apimachinery
//! `pkg/apis/meta/v1/types.go`). A field neither describes is "deduced" as
//! structured-merge-diff deduces an untyped value (`schema.Deduced`): objects are granular
//! maps, lists atomic, everything else a scalar.

use std::sync::Arc;

use serde_json::Value;

use super::resources::ResourceType;
use super::schema::CrdSchema;

/// How a list merges (structured-merge-diff `schema.List.ElementRelationship` and keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced whole and owned whole (`atomic`, the default).
    Atomic,
    /// Items are scalars merged by value (`set`), owned as `v:<value>`.
    Set,
    /// Items are objects merged by these key fields (`map`), owned as `k:{...}`.
    Map(Vec<String>),
}

/// The merge shape of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A scalar (or a value of the wrong shape for its schema): one value.
    Scalar,
    /// An object; `atomic` ones are replaced and owned whole.
    Map {
        /// `x-kubernetes-map-type: atomic` / `+mapType=atomic` / `+structType=atomic`.
        atomic: bool,
    },
    /// A list.
    List(ListType),
}

/// How a strategic merge patch treats a list (the `patchStrategy`/`patchMergeKey` tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchList {
    /// No strategy: the patch's list replaces the live one.
    Replace,
    /// `patchStrategy=merge` on a list of scalars: union by value.
    MergeValues,
    /// `patchStrategy=merge` with `patchMergeKey`: items merged by that field.
    MergeBy(&'static str),
}

/// One row of the built-in table: a path (field names, `[]` for a list item) relative to
/// its table's root, its shape and its strategic-merge-patch strategy.
struct Rule {
    path: &'static str,
    shape: Kind,
    patch: PatchList,
}

/// The shape of a built-in field, in `const` form.
#[derive(Clone, Copy)]
enum Kind {
    AtomicMap,
    AtomicList,
    Set,
    Keyed(&'static [&'static str]),
}

const fn rule(path: &'static str, shape: Kind, patch: PatchList) -> Rule {
    Rule { path, shape, patch }
}

use Kind::{AtomicList, AtomicMap, Keyed, Set};
use PatchList::{MergeBy, MergeValues, Replace};

/// `ObjectMeta` (k8s.io/apimachinery `pkg/apis/meta/v1/types.go`): `finalizers` is
/// `+listType=set` with `patchStrategy=merge`; `ownerReferences` is `+listType=map`
/// `+listMapKey=uid`, `patchMergeKey=uid`; `managedFields` is `+listType=atomic`; `labels` and
/// `annotations` are granular maps.
const META: &[Rule] = &[
    rule("finalizers", Set, MergeValues),
    rule("ownerReferences", Keyed(&["uid"]), MergeBy("uid")),
    rule("managedFields", AtomicList, Replace),
];

/// `Container` (k8s.io/api `core/v1/types.go`): `ports` is `+listType=map`
/// `+listMapKey=containerPort` `+listMapKey=protocol` with `patchMergeKey=containerPort`;
/// `env` is keyed by `name`; `volumeMounts` by `mountPath`; `envFrom`, `command`, `args` are
/// `+listType=atomic`.
const CONTAINER: &[Rule] = &[
    rule(
        "ports",
        Keyed(&["containerPort", "protocol"]),
        MergeBy("containerPort"),
    ),
    rule("env", Keyed(&["name"]), MergeBy("name")),
    rule("volumeMounts", Keyed(&["mountPath"]), MergeBy("mountPath")),
    rule("envFrom", AtomicList, Replace),
    rule("command", AtomicList, Replace),
    rule("args", AtomicList, Replace),
];

/// `PodSpec` (k8s.io/api `core/v1/types.go`): `containers`, `initContainers`,
/// `ephemeralContainers`, `volumes` and `imagePullSecrets` are `+listType=map`
/// `+listMapKey=name` with `patchMergeKey=name`; `hostAliases` keyed by `ip`; `nodeSelector`
/// is `+mapType=atomic`; `tolerations` is `+listType=atomic`.
const POD_SPEC: &[Rule] = &[
    rule("containers", Keyed(&["name"]), MergeBy("name")),
    rule("initContainers", Keyed(&["name"]), MergeBy("name")),
    rule("ephemeralContainers", Keyed(&["name"]), MergeBy("name")),
    rule("volumes", Keyed(&["name"]), MergeBy("name")),
    rule("imagePullSecrets", Keyed(&["name"]), MergeBy("name")),
    rule("hostAliases", Keyed(&["ip"]), MergeBy("ip")),
    rule("nodeSelector", AtomicMap, Replace),
    rule("tolerations", AtomicList, Replace),
];

/// `PodStatus` (k8s.io/api `core/v1/types.go`): `conditions` keyed by `type`; the container
/// statuses are `+listType=atomic`.
const POD_STATUS: &[Rule] = &[
    rule("conditions", Keyed(&["type"]), MergeBy("type")),
    rule("containerStatuses", AtomicList, Replace),
    rule("initContainerStatuses", AtomicList, Replace),
    rule("podIPs", Keyed(&["ip"]), MergeBy("ip")),
];

/// `DeploymentSpec`/`ReplicaSetSpec`/`DaemonSetSpec` and their statuses (k8s.io/api
/// `apps/v1/types.go`):
/// `selector` is a `LabelSelector`, `+structType=atomic` (k8s.io/apimachinery
/// `pkg/apis/meta/v1/types.go`); `status.conditions` is `+listType=map` `+listMapKey=type`.
const WORKLOAD: &[Rule] = &[
    rule("spec.selector", AtomicMap, Replace),
    rule("status.conditions", Keyed(&["type"]), MergeBy("type")),
];

/// `ServiceSpec` (k8s.io/api `core/v1/types.go`): `selector` is `+mapType=atomic`; `ports` is
/// `+listType=map` `+listMapKey=port` `+listMapKey=protocol` with `patchMergeKey=port`;
/// `clusterIPs`, `externalIPs`, `ipFamilies` are `+listType=atomic`; `status.conditions` is
/// keyed by `type`.
const SERVICE: &[Rule] = &[
    rule("spec.selector", AtomicMap, Replace),
    rule("spec.ports", Keyed(&["port", "protocol"]), MergeBy("port")),
    rule("spec.clusterIPs", AtomicList, Replace),
    rule("spec.externalIPs", AtomicList, Replace),
    rule("spec.ipFamilies", AtomicList, Replace),
    rule("status.conditions", Keyed(&["type"]), MergeBy("type")),
    rule("status.loadBalancer.ingress", AtomicList, Replace),
];

/// `IngressSpec` (k8s.io/api `networking/v1/types.go`): `rules`, `tls`, `tls[].hosts` and
/// `http.paths` are `+listType=atomic`.
const INGRESS: &[Rule] = &[
    rule("spec.rules", AtomicList, Replace),
    rule("spec.tls", AtomicList, Replace),
    rule("status.loadBalancer.ingress", AtomicList, Replace),
];

/// `NamespaceSpec.finalizers` is `+listType=atomic` (k8s.io/api `core/v1/types.go`).
const NAMESPACE: &[Rule] = &[rule("spec.finalizers", AtomicList, Replace)];

/// `NodeSpec`/`NodeStatus` (k8s.io/api `core/v1/types.go`): `taints` is `+listType=atomic`;
/// `podCIDRs` is `+listType=set` with `patchStrategy=merge`; `status.conditions` and
/// `status.addresses` are merged by `type` (`patchMergeKey=type`); `images`,
/// `volumesAttached` and `volumesInUse` are `+listType=atomic`.
const NODE: &[Rule] = &[
    rule("spec.taints", AtomicList, Replace),
    rule("spec.podCIDRs", Set, MergeValues),
    rule("status.conditions", Keyed(&["type"]), MergeBy("type")),
    rule("status.addresses", Keyed(&["type"]), MergeBy("type")),
    rule("status.images", AtomicList, Replace),
    rule("status.volumesAttached", AtomicList, Replace),
    rule("status.volumesInUse", AtomicList, Replace),
];

/// The default of a list-map key field a built-in item may omit (`protocol` defaults to
/// `TCP` in the OpenAPI schema, and structured-merge-diff fills key defaults in).
pub(crate) fn key_default(builtin: bool, key: &str) -> Option<Value> {
    (builtin && key == "protocol").then(|| Value::String("TCP".into()))
}

/// The merge structure of one resource type.
#[derive(Debug, Clone)]
pub(crate) struct Types {
    kind: String,
    builtin: bool,
    schema: Option<Arc<CrdSchema>>,
}

impl Types {
    /// The structure of `rt`, from its CRD schema when it has one.
    pub(crate) fn new(rt: &ResourceType, schema: Option<Arc<CrdSchema>>) -> Self {
        Self {
            kind: rt.kind.clone(),
            builtin: rt.is_builtin(),
            schema,
        }
    }

    /// The cursor at the object's root.
    pub(crate) fn root(&self) -> Cursor<'_> {
        match (&self.schema, self.builtin) {
            (_, true) => Cursor::Builtin {
                kind: &self.kind,
                path: String::new(),
            },
            (schema, false) => Cursor::Schema {
                node: schema.as_deref().map(CrdSchema::root),
                kind: &self.kind,
                root: true,
            },
        }
    }
}

/// A position in an object's type, moved with [`Cursor::field`] and [`Cursor::item`].
#[derive(Debug, Clone)]
pub(crate) enum Cursor<'a> {
    /// A built-in kind, at `path` (dot-separated, `[]` for list items).
    Builtin {
        /// The kind.
        kind: &'a str,
        /// The path from the root.
        path: String,
    },
    /// A CRD schema node (`None`: not described, deduced from the value).
    Schema {
        /// The schema node.
        node: Option<&'a Value>,
        /// The kind (for `metadata`).
        kind: &'a str,
        /// Whether this is the object's root.
        root: bool,
    },
}

/// The rules of a built-in kind whose root holds `path`, and the path relative to them.
fn table<'p>(kind: &str, path: &'p str) -> (&'static [Rule], &'p str) {
    let pod_spec = match kind {
        "Pod" => Some("spec."),
        "Deployment" | "ReplicaSet" | "DaemonSet" => Some("spec.template.spec."),
        _ => None,
    };
    if let Some(rest) = pod_spec.and_then(|p| path.strip_prefix(p)) {
        for (prefix, rules) in [
            ("containers[].", CONTAINER),
            ("initContainers[].", CONTAINER),
            ("ephemeralContainers[].", CONTAINER),
        ] {
            if let Some(inner) = rest.strip_prefix(prefix) {
                return (rules, inner);
            }
        }
        return (POD_SPEC, rest);
    }
    for prefix in ["metadata.", "spec.template.metadata."] {
        if let Some(rest) = path.strip_prefix(prefix) {
            return (META, rest);
        }
    }
    if kind == "Pod"
        && let Some(rest) = path.strip_prefix("status.")
    {
        return (POD_STATUS, rest);
    }
    let rules = match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" => WORKLOAD,
        "Service" => SERVICE,
        "Ingress" => INGRESS,
        "Namespace" => NAMESPACE,
        "Node" => NODE,
        _ => &[],
    };
    (rules, path)
}

fn builtin_rule(kind: &str, path: &str) -> Option<&'static Rule> {
    let (rules, rel) = table(kind, path);
    rules.iter().find(|r| r.path == rel)
}

fn deduced(value: &Value) -> Shape {
    match value {
        Value::Object(_) => Shape::Map { atomic: false },
        Value::Array(_) => Shape::List(ListType::Atomic),
        _ => Shape::Scalar,
    }
}

impl<'a> Cursor<'a> {
    /// The cursor of field `key` of this object.
    pub(crate) fn field(&self, key: &str) -> Cursor<'a> {
        match self {
            Cursor::Builtin { kind, path } => Cursor::Builtin {
                kind,
                path: if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                },
            },
            // `metadata` is `ObjectMeta` whatever the CRD says.
            Cursor::Schema {
                root: true, kind, ..
            } if key == "metadata" => Cursor::Builtin {
                kind,
                path: "metadata".into(),
            },
            Cursor::Schema { node, kind, .. } => {
                let child = node.and_then(|n| {
                    n.get("properties")
                        .and_then(|p| p.get(key))
                        .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
                });
                Cursor::Schema {
                    node: child,
                    kind,
                    root: false,
                }
            }
        }
    }

    /// The cursor of this list's items.
    pub(crate) fn item(&self) -> Cursor<'a> {
        match self {
            Cursor::Builtin { kind, path } => Cursor::Builtin {
                kind,
                path: format!("{path}[]"),
            },
            Cursor::Schema { node, kind, .. } => Cursor::Schema {
                node: node.and_then(|n| n.get("items")).filter(|i| i.is_object()),
                kind,
                root: false,
            },
        }
    }

    /// Whether the field is a key of a map (`additionalProperties`) rather than a declared
    /// field of a struct (structured-merge-diff owns map entries themselves).
    pub(crate) fn is_map_entry(&self, key: &str) -> bool {
        match self {
            Cursor::Schema { node: Some(n), .. } => {
                n.get("properties").and_then(|p| p.get(key)).is_none()
                    && n.get("additionalProperties").is_some_and(Value::is_object)
            }
            _ => false,
        }
    }

    /// The shape of `value` at this position.
    pub(crate) fn shape(&self, value: &Value) -> Shape {
        let shape = match self {
            Cursor::Builtin { kind, path } => match builtin_rule(kind, path).map(|r| r.shape) {
                Some(AtomicMap) => Shape::Map { atomic: true },
                Some(AtomicList) => Shape::List(ListType::Atomic),
                Some(Set) => Shape::List(ListType::Set),
                Some(Keyed(keys)) => Shape::List(ListType::Map(
                    keys.iter().map(|k| (*k).to_owned()).collect(),
                )),
                None => deduced(value),
            },
            Cursor::Schema { node: None, .. } => deduced(value),
            Cursor::Schema { node: Some(n), .. } => schema_shape(n, value),
        };
        // A value of the wrong shape is one value.
        match (&shape, value) {
            (Shape::Map { .. }, Value::Object(_)) | (Shape::List(_), Value::Array(_)) => shape,
            _ => Shape::Scalar,
        }
    }

    /// The strategic-merge-patch strategy of the list at this position.
    pub(crate) fn patch_list(&self) -> PatchList {
        match self {
            Cursor::Builtin { kind, path } => builtin_rule(kind, path).map_or(Replace, |r| r.patch),
            Cursor::Schema { .. } => Replace,
        }
    }

    /// Whether list-map key fields that are missing take a default (built-in kinds).
    pub(crate) fn key_default(&self, key: &str) -> Option<Value> {
        key_default(matches!(self, Cursor::Builtin { .. }), key)
    }
}

/// The shape a CRD schema node declares (apiextensions-apiserver: lists are atomic unless
/// `x-kubernetes-list-type` says otherwise, objects granular unless
/// `x-kubernetes-map-type: atomic`).
fn schema_shape(node: &Value, value: &Value) -> Shape {
    let ty = node.get("type").and_then(Value::as_str);
    match (ty, value) {
        (Some("object"), _) | (None, Value::Object(_)) => Shape::Map {
            atomic: node.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic"),
        },
        (Some("array"), _) | (None, Value::Array(_)) => {
            let list = match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") => ListType::Map(
                    node.get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|keys| {
                            keys.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                _ => ListType::Atomic,
            };
            Shape::List(list)
        }
        _ => Shape::Scalar,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn builtin(kind: &str) -> Types {
        let rt = ResourceType::new("", "v1", kind, "x", true, true);
        Types {
            kind: rt.kind,
            builtin: true,
            schema: None,
        }
    }

    #[test]
    fn builtin_markers() {
        let svc = builtin("Service");
        let spec = svc.root().field("spec");
        assert_eq!(
            spec.field("selector").shape(&json!({"a": "b"})),
            Shape::Map { atomic: true }
        );
        assert_eq!(
            spec.field("ports").shape(&json!([])),
            Shape::List(ListType::Map(vec!["port".into(), "protocol".into()]))
        );
        assert_eq!(
            svc.root()
                .field("metadata")
                .field("labels")
                .shape(&json!({})),
            Shape::Map { atomic: false }
        );
        let dep = builtin("Deployment");
        let pod = dep.root().field("spec").field("template").field("spec");
        let env = pod.field("containers").item().field("env");
        assert_eq!(
            env.shape(&json!([])),
            Shape::List(ListType::Map(vec!["name".into()]))
        );
        assert_eq!(env.patch_list(), PatchList::MergeBy("name"));
        assert_eq!(
            dep.root().field("spec").field("selector").shape(&json!({})),
            Shape::Map { atomic: true }
        );
        assert_eq!(
            dep.root()
                .field("metadata")
                .field("finalizers")
                .shape(&json!([])),
            Shape::List(ListType::Set)
        );
        let ing = builtin("Ingress");
        assert_eq!(
            ing.root().field("spec").field("rules").shape(&json!([])),
            Shape::List(ListType::Atomic)
        );
        let ds = builtin("DaemonSet");
        let ds_spec = ds.root().field("spec");
        let containers = ds_spec.field("template").field("spec").field("containers");
        assert_eq!(
            containers.shape(&json!([])),
            Shape::List(ListType::Map(vec!["name".into()]))
        );
        assert_eq!(containers.patch_list(), PatchList::MergeBy("name"));
        assert_eq!(
            ds_spec.field("selector").shape(&json!({})),
            Shape::Map { atomic: true }
        );
        let node = builtin("Node");
        assert_eq!(
            node.root().field("spec").field("taints").shape(&json!([])),
            Shape::List(ListType::Atomic)
        );
        assert_eq!(
            node.root().field("status").field("conditions").patch_list(),
            PatchList::MergeBy("type")
        );
        // Unknown lists are atomic.
        assert_eq!(
            pod.field("readinessGates").shape(&json!([])),
            Shape::List(ListType::Atomic)
        );
    }

    #[test]
    fn crd_markers() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "http": {"type": "array", "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "routes": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object"}},
            "ref": {"type": "object", "x-kubernetes-map-type": "atomic"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }}}});
        let types = Types {
            kind: "X".into(),
            builtin: false,
            schema: Some(Arc::new(CrdSchema::new(schema))),
        };
        let spec = types.root().field("spec");
        assert_eq!(
            spec.field("http").shape(&json!([])),
            Shape::List(ListType::Atomic)
        );
        assert_eq!(
            spec.field("tags").shape(&json!([])),
            Shape::List(ListType::Set)
        );
        assert_eq!(
            spec.field("routes").shape(&json!([])),
            Shape::List(ListType::Map(vec!["name".into()]))
        );
        assert_eq!(
            spec.field("ref").shape(&json!({})),
            Shape::Map { atomic: true }
        );
        assert!(spec.field("labels").is_map_entry("a"));
        assert!(!spec.is_map_entry("http"));
        assert_eq!(spec.patch_list(), PatchList::Replace);
    }
}
