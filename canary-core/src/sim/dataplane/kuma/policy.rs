//! MeshHTTPRoute policies as the control plane reads them: target references, the policy role,
//! which proxies a policy selects, and how the `to` entries of the selected policies merge into
//! one ordered list of rules for a destination.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use super::super::{World, string_map};
use super::resources::{
    DISPLAY_NAME, Mesh, MeshService, NAMESPACE_TAG, SERVICE_TAG, SYSTEM_NAMESPACE,
    parse_service_tag, str_at,
};

/// A `targetRef` (api/common/v1alpha1/targetref.go: `TargetRef`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct TargetRef {
    /// `kind` (`Mesh` when the reference is omitted).
    pub kind: String,
    /// `name` (empty when unset).
    pub name: String,
    /// `namespace` (empty when unset).
    pub namespace: String,
    /// `sectionName` (empty when unset).
    pub section_name: String,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `tags` (MeshSubset, MeshServiceSubset, MeshGateway).
    pub tags: BTreeMap<String, String>,
    /// `proxyTypes` (`Sidecar`, `Gateway`; empty means both).
    pub proxy_types: Vec<String>,
}

impl TargetRef {
    /// The reference at `value`; an omitted top-level reference means the whole mesh
    /// (pkg/plugins/policies/core/matchers/dataplane.go: `DerefOr(..., Kind: Mesh)`).
    pub fn parse(value: Option<&Value>) -> TargetRef {
        let Some(value) = value.filter(|v| v.is_object()) else {
            return TargetRef {
                kind: "Mesh".to_owned(),
                ..TargetRef::default()
            };
        };
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        TargetRef {
            kind: value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("Mesh")
                .to_owned(),
            name: text("name"),
            namespace: text("namespace"),
            section_name: text("sectionName"),
            labels: string_map(value.get("labels")),
            tags: string_map(value.get("tags")),
            proxy_types: value
                .get("proxyTypes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The precedence of a `targetRef` kind (api/common/v1alpha1/targetref.go: `order`).
pub(super) fn kind_order(kind: &str) -> u8 {
    match kind {
        "Mesh" => 1,
        "Dataplane" => 2,
        "MeshSubset" => 3,
        "MeshGateway" => 4,
        "MeshService" => 5,
        "MeshExternalService" => 6,
        "MeshMultiZoneService" => 7,
        "MeshServiceSubset" => 8,
        "MeshHTTPRoute" => 9,
        _ => 0,
    }
}

/// A policy's role (`kuma.io/policy-role`), which decides whose proxies it configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Role {
    /// In the control plane's namespace: applies to the whole mesh.
    System,
    /// Every `to` entry names one MeshService of the policy's namespace by `name`: applies to
    /// every caller of that service.
    Producer,
    /// Other `to` entries: applies only to callers in the policy's namespace.
    Consumer,
    /// No `to` entries: applies to the policy's own workloads.
    WorkloadOwner,
}

/// The role the control plane computes for a policy in `namespace` with these `to` references,
/// or `None` when the admission webhook refuses the mix of producer and consumer entries
/// (Kuma 2.9–2.13 pkg/core/resources/model/resource.go: `ComputePolicyRole`).
pub(super) fn compute_role(namespace: &str, to: &[TargetRef]) -> Option<Role> {
    if namespace.is_empty() || namespace == SYSTEM_NAMESPACE {
        return Some(Role::System);
    }
    if to.is_empty() {
        return Some(Role::WorkloadOwner);
    }
    let producer = |r: &TargetRef| {
        matches!(r.kind.as_str(), "MeshService" | "MeshHTTPRoute")
            && !r.name.is_empty()
            && (r.namespace.is_empty() || r.namespace == namespace)
    };
    let producers = to.iter().filter(|r| producer(r)).count();
    if producers == to.len() {
        Some(Role::Producer)
    } else if producers == 0 {
        Some(Role::Consumer)
    } else {
        None
    }
}

/// The proxy a request leaves from, as far as policies can tell it apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Proxy {
    /// Its namespace.
    pub namespace: String,
    /// True for a gateway proxy (builtin or delegated), false for a sidecar.
    pub gateway: bool,
    /// The builtin MeshGateway it serves, if any.
    pub mesh_gateway: Option<String>,
}

/// One MeshHTTPRoute of the mesh, read.
#[derive(Debug, Clone)]
pub(super) struct Policy<'a> {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its role.
    pub role: Role,
    /// Its top-level `targetRef`.
    pub top: TargetRef,
    /// Its `to` entries.
    pub to: Vec<&'a Value>,
}

impl<'a> Policy<'a> {
    /// Every MeshHTTPRoute of `mesh` in `world` that admission accepts: not mixing producer and
    /// consumer entries, and with valid paths.
    pub fn all(world: &'a World, mesh: &Mesh) -> Vec<Policy<'a>> {
        world
            .all("MeshHTTPRoute")
            .filter(|p| mesh.holds(p))
            .filter(|p| valid_paths(p))
            .filter_map(|object| {
                let name = str_at(object, "/metadata/name")?.to_owned();
                let namespace = str_at(object, "/metadata/namespace")
                    .unwrap_or_default()
                    .to_owned();
                let to: Vec<&Value> = object
                    .pointer("/spec/to")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let refs: Vec<TargetRef> = to
                    .iter()
                    .map(|entry| TargetRef::parse(entry.get("targetRef")))
                    .collect();
                Some(Policy {
                    role: compute_role(&namespace, &refs)?,
                    top: TargetRef::parse(object.pointer("/spec/targetRef")),
                    name,
                    namespace,
                    to,
                })
            })
            .collect()
    }

    /// True when this policy configures `proxy`
    /// (pkg/plugins/policies/core/matchers/dataplane.go: `DppSelectedByPolicy` and
    /// `dppSelectedByNamespace`). A caller is known only by its namespace and proxy type, so a
    /// reference to other caller labels or names selects no caller.
    pub fn selects(&self, proxy: &Proxy) -> bool {
        if matches!(self.role, Role::Consumer | Role::WorkloadOwner)
            && self.namespace != proxy.namespace
        {
            return false;
        }
        let proxy_type = if proxy.gateway { "Gateway" } else { "Sidecar" };
        let typed =
            self.top.proxy_types.is_empty() || self.top.proxy_types.iter().any(|t| t == proxy_type);
        let known_tags = |tags: &BTreeMap<String, String>| {
            tags.iter().all(|(k, v)| match k.as_str() {
                NAMESPACE_TAG => *v == proxy.namespace,
                "kuma.io/mesh" | "kuma.io/zone" => true,
                _ => false,
            })
        };
        match self.top.kind.as_str() {
            "Mesh" => typed,
            "MeshSubset" => typed && known_tags(&self.top.tags),
            "Dataplane" => {
                proxy.mesh_gateway.is_none()
                    && self.top.name.is_empty()
                    && self.top.namespace.is_empty()
                    && known_tags(&self.top.labels)
            }
            "MeshGateway" => proxy
                .mesh_gateway
                .as_deref()
                .is_some_and(|g| g == self.top.name && known_tags(&self.top.tags)),
            _ => false,
        }
    }
}

/// True when every path match of `policy` is one admission accepts: an Exact or PathPrefix
/// value is absolute, and a PathPrefix other than `/` has no trailing `/`
/// (pkg/plugins/policies/meshhttproute/api/v1alpha1/validation.go: `validatePath`).
fn valid_paths(policy: &Value) -> bool {
    let entries = policy
        .pointer("/spec/to")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| e.get("rules").and_then(Value::as_array))
        .flatten()
        .filter_map(|r| r.get("matches").and_then(Value::as_array))
        .flatten()
        .filter_map(|m| m.get("path").filter(|p| p.is_object()))
        .all(|path| {
            let value = path
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match path
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("PathPrefix")
            {
                "Exact" => value.starts_with('/'),
                "PathPrefix" => value == "/" || (value.starts_with('/') && !value.ends_with('/')),
                _ => true,
            }
        })
}

/// Where a request goes, as routing rules name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outbound<'a> {
    /// A `kuma.io/service` outbound.
    Legacy {
        /// Its `kuma.io/service` value.
        tag: String,
    },
    /// A MeshService outbound on the port `section` names.
    Real {
        /// The MeshService's name.
        name: String,
        /// Its namespace.
        namespace: String,
        /// Its labels, as the control plane computes them.
        labels: &'a BTreeMap<String, String>,
        /// Its port, by number.
        port: u64,
        /// The port's section name.
        section: String,
    },
}

/// One `to` entry of a selected policy.
#[derive(Debug, Clone)]
pub(super) struct Entry<'a> {
    /// The policy.
    pub policy: &'a Policy<'a>,
    /// Its `targetRef`.
    pub target: TargetRef,
    /// The entry.
    pub value: &'a Value,
}

impl Entry<'_> {
    /// True when this entry configures `outbound`: for a `kuma.io/service` outbound, its
    /// reference as a tag subset contains it (pkg/plugins/policies/core/rules/rules.go:
    /// `asSubset`; a MeshService reference is the tag `kuma.io/service: <name>`, so a
    /// `labels` reference names none); for a MeshService outbound, its reference resolves to
    /// that MeshService (pkg/plugins/policies/core/rules/resolve/targetref.go: `TargetRef`,
    /// which also reads a `name` of the `<svc>_<ns>_svc_<port>` form as that MeshService's
    /// port).
    pub fn configures(&self, outbound: &Outbound<'_>) -> bool {
        let target = &self.target;
        match outbound {
            Outbound::Legacy { tag } => match target.kind.as_str() {
                "Mesh" => true,
                "MeshService" => target.name == *tag,
                "MeshServiceSubset" => target.name == *tag && target.tags.is_empty(),
                "MeshSubset" => target
                    .tags
                    .iter()
                    .all(|(k, v)| k == SERVICE_TAG && v == tag),
                _ => false,
            },
            Outbound::Real {
                name,
                namespace,
                labels,
                port,
                section,
            } => match target.kind.as_str() {
                "Mesh" => true,
                "MeshService" => {
                    let section_ok = |wanted: &str| {
                        wanted.is_empty() || wanted == section || wanted == port.to_string()
                    };
                    if target.section_name.is_empty()
                        && let Some((svc, ns, p)) = parse_service_tag(&target.name)
                    {
                        return labels.get(DISPLAY_NAME) == Some(&svc)
                            && labels.get(NAMESPACE_TAG) == Some(&ns)
                            && p == *port;
                    }
                    if !target.labels.is_empty() {
                        return target.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                            && section_ok(&target.section_name);
                    }
                    let wanted_ns = if target.namespace.is_empty() {
                        &self.policy.namespace
                    } else {
                        &target.namespace
                    };
                    target.name == *name
                        && wanted_ns == namespace
                        && section_ok(&target.section_name)
                }
                _ => false,
            },
        }
    }
}

/// The order of increasing precedence of policies: top-level kind, role, then by name, later
/// names first (pkg/plugins/policies/core/matchers/dataplane.go: `SortByTargetRef`). The
/// entries of a `kuma.io/service` outbound merge in this order, each policy's in written order
/// (pkg/plugins/policies/core/rules/rules.go: `legacyBuildToRules`, `createRule`).
pub(super) fn policy_precedence(a: &Entry<'_>, b: &Entry<'_>) -> Ordering {
    kind_order(&a.policy.top.kind)
        .cmp(&kind_order(&b.policy.top.kind))
        .then(a.policy.role.cmp(&b.policy.role))
        .then_with(|| b.policy.name.cmp(&a.policy.name))
}

/// The order of increasing precedence of `to` entries for a MeshService outbound: top-level
/// kind, role, `to` kind, with a `sectionName` after without, then by name, later names first
/// (pkg/plugins/policies/core/rules/outbound/sort.go: `Sort`; rules/sort/sort.go).
pub(super) fn precedence(a: &Entry<'_>, b: &Entry<'_>) -> Ordering {
    kind_order(&a.policy.top.kind)
        .cmp(&kind_order(&b.policy.top.kind))
        .then(a.policy.role.cmp(&b.policy.role))
        .then(kind_order(&a.target.kind).cmp(&kind_order(&b.target.kind)))
        .then_with(|| {
            if a.target.kind == "MeshService" {
                (!a.target.section_name.is_empty()).cmp(&!b.target.section_name.is_empty())
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| b.policy.name.cmp(&a.policy.name))
}

/// One merged rule: its `matches` and its `default` (`backendRefs`, `filters`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Rule {
    /// `matches`.
    pub matches: Vec<Value>,
    /// `default.backendRefs`, when some policy set them.
    pub backend_refs: Option<Vec<Value>>,
    /// `default.filters`, when some policy set them.
    pub filters: Option<Vec<Value>>,
    /// The namespace of the policy the rule comes from (the most precedent one when merged):
    /// a backend reference without a namespace means this one.
    pub origin_namespace: String,
}

/// The rules the entries of `policies` selecting `proxy` give `outbound`, in the order the
/// control plane merges them: the entries sorted by precedence, rules with equal `matches`
/// merged (a later entry's fields replacing an earlier one's) and kept where the most
/// precedent entry put them, the most precedent entry's rules first, each in written order
/// (pkg/plugins/policies/core/rules/merge/merge.go: `mergeByKey`;
/// pkg/plugins/policies/meshhttproute/api/v1alpha1/helpers.go: `GetDefault`, `Transform`).
pub(super) fn merged_rules(
    policies: &[Policy<'_>],
    proxy: &Proxy,
    outbound: &Outbound<'_>,
) -> Vec<Rule> {
    let mut entries: Vec<Entry<'_>> = policies
        .iter()
        .filter(|p| p.selects(proxy))
        .flat_map(|policy| {
            policy.to.iter().map(move |value| Entry {
                policy,
                target: TargetRef::parse(value.get("targetRef")),
                value,
            })
        })
        .filter(|e| e.configures(outbound))
        .collect();
    match outbound {
        Outbound::Legacy { .. } => entries.sort_by(policy_precedence),
        Outbound::Real { .. } => entries.sort_by(precedence),
    }
    merge_entries(&entries)
}

/// The rules of `entries` (in increasing precedence) merged.
pub(super) fn merge_entries(entries: &[Entry<'_>]) -> Vec<Rule> {
    let mut reversed: Vec<Rule> = Vec::new();
    for entry in entries {
        let rules = entry
            .value
            .get("rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for rule in rules.iter().rev() {
            reversed.push(Rule {
                matches: rule
                    .get("matches")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                backend_refs: rule
                    .pointer("/default/backendRefs")
                    .and_then(Value::as_array)
                    .cloned(),
                filters: rule
                    .pointer("/default/filters")
                    .and_then(Value::as_array)
                    .cloned(),
                origin_namespace: entry.policy.namespace.clone(),
            });
        }
    }
    let mut merged: Vec<Option<Rule>> = Vec::new();
    for rule in reversed {
        let mut combined = rule;
        for slot in merged.iter_mut() {
            if let Some(earlier) = slot
                && earlier.matches == combined.matches
            {
                combined = Rule {
                    matches: combined.matches,
                    backend_refs: combined
                        .backend_refs
                        .or_else(|| earlier.backend_refs.clone()),
                    filters: combined.filters.or_else(|| earlier.filters.clone()),
                    origin_namespace: combined.origin_namespace,
                };
                *slot = None;
            }
        }
        merged.push(Some(combined));
    }
    let mut rules: Vec<Rule> = merged.into_iter().flatten().collect();
    rules.reverse();
    rules
}

/// The MeshServices of `all` whose labels include `labels`, oldest first (the one a `labels`
/// backend reference resolves to is the oldest: pkg/xds/context/context.go:
/// `ResolveResourceIdentifier`).
pub(super) fn oldest_with_labels<'a, 'b>(
    all: &'b [MeshService<'a>],
    labels: &BTreeMap<String, String>,
) -> Option<&'b MeshService<'a>> {
    all.iter()
        .filter(|m| labels.iter().all(|(k, v)| m.labels.get(k) == Some(v)))
        .min_by(|a, b| {
            a.created()
                .cmp(b.created())
                .then_with(|| a.name.cmp(&b.name))
        })
}
