//! Resource types the test server can serve, and the registry that holds them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::admission::{AdmissionHook, MutatingHook};
use super::schema::CrdSchema;
use super::store::read;

/// A group/version/kind the test server serves, with its REST name and shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group; empty for the core group (`v1`).
    pub group: String,
    /// API version within the group, e.g. `v1` or `v1alpha1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural REST name used in paths, e.g. `deployments`.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether `.status` is a separate subresource (`/status`).
    pub status_subresource: bool,
}

impl ResourceType {
    /// Describes a resource type; `namespaced` and `status_subresource` as given.
    pub fn new(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
        status_subresource: bool,
    ) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            status_subresource,
        }
    }

    /// The `apiVersion` string: `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether `api_version` (`group/version`, or `version` for the core group) names this
    /// type's group and version (compared in place: the garbage collector asks this for
    /// every owner reference of every object).
    pub(crate) fn has_api_version(&self, api_version: &str) -> bool {
        match api_version.split_once('/') {
            Some((group, version)) => self.group == group && self.version == version,
            None => self.group.is_empty() && self.version == api_version,
        }
    }

    /// Whether this is one of the built-in Kubernetes types (strategic merge patch allowed).
    pub(crate) fn is_builtin(&self) -> bool {
        builtins().iter().any(|b| b == self)
    }
}

fn builtins() -> Vec<ResourceType> {
    let t = ResourceType::new;
    vec![
        t("", "v1", "Pod", "pods", true, true),
        t("", "v1", "Service", "services", true, true),
        t("", "v1", "ConfigMap", "configmaps", true, false),
        t("", "v1", "Secret", "secrets", true, false),
        t("", "v1", "Event", "events", true, false),
        t("", "v1", "Namespace", "namespaces", false, true),
        t("", "v1", "Node", "nodes", false, true),
        t("apps", "v1", "Deployment", "deployments", true, true),
        t("apps", "v1", "ReplicaSet", "replicasets", true, true),
        t("apps", "v1", "DaemonSet", "daemonsets", true, true),
        t(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            true,
            true,
        ),
        t("coordination.k8s.io", "v1", "Lease", "leases", true, false),
        t("events.k8s.io", "v1", "Event", "events", true, false),
    ]
}

/// The set of served resource types.
#[derive(Debug)]
pub(crate) struct Registry {
    types: RwLock<Vec<ResourceType>>,
    /// CRD schemas by (group, version, plural); kept when a type is registered again
    /// without one.
    schemas: RwLock<HashMap<(String, String, String), Arc<CrdSchema>>>,
    /// Validating admission hooks, called in order.
    hooks: RwLock<Vec<Arc<dyn AdmissionHook>>>,
    /// Mutating admission hooks, called in order.
    mutators: RwLock<Vec<Arc<dyn MutatingHook>>>,
}

fn schema_key(rt: &ResourceType) -> (String, String, String) {
    (rt.group.clone(), rt.version.clone(), rt.plural.clone())
}

impl Registry {
    /// A registry holding the built-in types.
    pub(crate) fn new() -> Self {
        Self {
            types: RwLock::new(builtins()),
            schemas: RwLock::new(HashMap::new()),
            hooks: RwLock::new(Vec::new()),
            mutators: RwLock::new(Vec::new()),
        }
    }

    /// Attaches the structural schema its CRD declares to a type.
    pub(crate) fn set_schema(&self, rt: &ResourceType, schema: CrdSchema) {
        self.schemas
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(schema_key(rt), Arc::new(schema));
    }

    /// The structural schema of a type, if its CRD gave one.
    pub(crate) fn schema(&self, rt: &ResourceType) -> Option<Arc<CrdSchema>> {
        read(&self.schemas).get(&schema_key(rt)).cloned()
    }

    /// Adds a validating admission hook.
    pub(crate) fn add_hook(&self, hook: Arc<dyn AdmissionHook>) {
        self.hooks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    pub(crate) fn add_mutator(&self, hook: Arc<dyn MutatingHook>) {
        self.mutators
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(hook);
    }

    /// The mutating admission hooks for writes of `rt`.
    pub(crate) fn mutators_for(&self, rt: &ResourceType) -> Vec<Arc<dyn MutatingHook>> {
        read(&self.mutators)
            .iter()
            .filter(|h| h.handles(&rt.group, &rt.kind))
            .cloned()
            .collect()
    }

    /// The admission hooks that review writes of `rt`.
    pub(crate) fn hooks_for(&self, rt: &ResourceType) -> Vec<Arc<dyn AdmissionHook>> {
        read(&self.hooks)
            .iter()
            .filter(|h| h.handles(&rt.group, &rt.kind))
            .cloned()
            .collect()
    }

    /// Adds a type, replacing one with the same group, version and plural.
    pub(crate) fn register(&self, rt: ResourceType) {
        let mut types = self
            .types
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        types
            .retain(|t| !(t.group == rt.group && t.version == rt.version && t.plural == rt.plural));
        types.push(rt);
    }

    /// All served types, in registration order.
    pub(crate) fn all(&self) -> Vec<ResourceType> {
        read(&self.types).clone()
    }

    /// The type served at `group/version/plural`.
    pub(crate) fn by_plural(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<ResourceType> {
        read(&self.types)
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The type with this `apiVersion` and `kind`.
    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        read(&self.types)
            .iter()
            .find(|t| t.kind == kind && t.has_api_version(api_version))
            .cloned()
    }

    /// Whether any type is served under `group/version`.
    pub(crate) fn serves(&self, group: &str, version: &str) -> bool {
        read(&self.types)
            .iter()
            .any(|t| t.group == group && t.version == version)
    }
}
