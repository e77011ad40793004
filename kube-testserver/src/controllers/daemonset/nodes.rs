//! Which nodes a DaemonSet's pods belong on, after k8s.io/kubernetes pkg/controller/daemon
//! daemon_controller.go `NodeShouldRunDaemonPod`, `predicates` and `NewPod`, with
//! util/daemonset_util.go `AddOrUpdateDaemonPodTolerations`, component-helpers
//! `nodeaffinity.GetRequiredNodeAffinity(...).Match`, core/v1 `Toleration.ToleratesTaint` and
//! helper `FindMatchingUntoleratedTaint`.
//!
//! A node fits when the template names no other node (`spec.nodeName`), its labels satisfy the
//! template's `nodeSelector` and required node affinity, and the pod (with the default daemon
//! tolerations) tolerates its `NoSchedule` and `NoExecute` taints. A pod already there may stay
//! unless a `NoExecute` taint is not tolerated. Cordoned nodes (`spec.unschedulable`) are not
//! special: their `node.kubernetes.io/unschedulable` taint is tolerated.

use serde_json::{Value, json};

use super::super::meta;

/// The tolerations every daemon pod gets (`AddOrUpdateDaemonPodTolerations`): key and effect,
/// operator `Exists`.
const DEFAULT_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// The toleration a `hostNetwork` daemon pod gets besides.
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// The field a node selector's `matchFields` may name.
const NAME_FIELD: &str = "metadata.name";

/// What a node is for a DaemonSet (`NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placement {
    /// A pod is to be created there when it has none (`shouldRun`).
    pub(super) should_run: bool,
    /// A pod there may stay (`shouldContinueRunning`).
    pub(super) should_continue: bool,
}

/// The nodes a DaemonSet's pods are checked against: its template's spec and tolerations as
/// `NewPod` makes them (the template's, with the default daemon tolerations).
pub(super) struct DaemonPod<'a> {
    /// The template's pod spec.
    spec: &'a Value,
    /// Its tolerations with the default daemon ones.
    tolerations: Vec<Value>,
}

impl<'a> DaemonPod<'a> {
    /// The pod of a template's `spec`.
    pub(super) fn new(spec: &'a Value) -> Self {
        Self {
            spec,
            tolerations: daemon_tolerations(spec),
        }
    }

    /// `NodeShouldRunDaemonPod` for `node`.
    pub(super) fn placement(&self, node: &Value) -> Placement {
        let never = Placement {
            should_run: false,
            should_continue: false,
        };
        let name = meta::name(node);
        let pinned = self.spec["nodeName"].as_str().unwrap_or_default();
        if !(pinned.is_empty() || pinned == name) {
            return never;
        }
        if !(matches_node_selector(self.spec, node) && matches_required_affinity(self.spec, node)) {
            return never;
        }
        if self.untolerated(node, &["NoSchedule", "NoExecute"]) {
            return Placement {
                should_run: false,
                should_continue: !self.untolerated(node, &["NoExecute"]),
            };
        }
        Placement {
            should_run: true,
            should_continue: true,
        }
    }

    /// `FindMatchingUntoleratedTaint`: whether a taint of `node` with one of `effects` is
    /// tolerated by none of the pod's tolerations.
    fn untolerated(&self, node: &Value, effects: &[&str]) -> bool {
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|taint| effects.contains(&text(taint, "effect")))
            .any(|taint| !self.tolerations.iter().any(|t| tolerates(t, taint)))
    }
}

/// A string field, or empty.
fn text<'v>(value: &'v Value, field: &str) -> &'v str {
    value[field].as_str().unwrap_or_default()
}

/// `Toleration.ToleratesTaint`: the effect (if given) and key (if given) match, and the value
/// equals (operator `Equal`, the default) or the operator is `Exists`.
fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = text(toleration, "effect");
    if !effect.is_empty() && effect != text(taint, "effect") {
        return false;
    }
    let key = text(toleration, "key");
    if !key.is_empty() && key != text(taint, "key") {
        return false;
    }
    match text(toleration, "operator") {
        "" | "Equal" => text(toleration, "value") == text(taint, "value"),
        "Exists" => true,
        _ => false,
    }
}

/// `AddOrUpdateDaemonPodTolerations`: the tolerations of pod spec `spec` with the default
/// daemon ones added (in that order, after the template's).
pub(super) fn daemon_tolerations(spec: &Value) -> Vec<Value> {
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for (key, effect) in DEFAULT_TOLERATIONS {
        add_or_update(&mut tolerations, key, effect);
    }
    if spec["hostNetwork"] == true {
        let (key, effect) = NETWORK_UNAVAILABLE;
        add_or_update(&mut tolerations, key, effect);
    }
    tolerations
}

/// core/v1 helper `AddOrUpdateTolerationInPodSpec` with toleration `key` `Exists` `effect`:
/// nothing when an equal one is there; otherwise those with the same key, operator, value and
/// effect (`MatchToleration`, e.g. with a `tolerationSeconds`) are replaced by it, or it is
/// appended.
fn add_or_update(tolerations: &mut Vec<Value>, key: &str, effect: &str) {
    let wanted = json!({"key": key, "operator": "Exists", "effect": effect});
    let matching = |t: &Value| {
        text(t, "key") == key
            && text(t, "operator") == "Exists"
            && text(t, "value").is_empty()
            && text(t, "effect") == effect
    };
    if tolerations
        .iter()
        .any(|t| matching(t) && t["tolerationSeconds"].is_null())
    {
        return;
    }
    let mut replaced = false;
    for t in tolerations.iter_mut().filter(|t| matching(t)) {
        *t = wanted.clone();
        replaced = true;
    }
    if !replaced {
        tolerations.push(wanted);
    }
}

/// `spec.nodeSelector`: every entry is a label of the node.
fn matches_node_selector(spec: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    spec["nodeSelector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value))
}

/// `spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`: one of its
/// `nodeSelectorTerms` matches (none when there are no terms); a term without requirements, or
/// with one that does not parse, matches nothing.
fn matches_required_affinity(spec: &Value, node: &Value) -> bool {
    let required =
        &spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    if required.is_null() {
        return true;
    }
    required["nodeSelectorTerms"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|term| term_matches(term, node))
}

/// One `NodeSelectorTerm`: its `matchExpressions` on the node's labels and its `matchFields`
/// on its name, all of them.
fn term_matches(term: &Value, node: &Value) -> bool {
    let expressions = term["matchExpressions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let fields = term["matchFields"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = &node["metadata"]["labels"];
    expressions
        .iter()
        .all(|e| label_requirement(e, labels[text(e, "key")].as_str()) == Some(true))
        && fields
            .iter()
            .all(|f| field_requirement(f, meta::name(node)) == Some(true))
}

/// The string values of a requirement.
fn values(requirement: &Value) -> Vec<&str> {
    requirement["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A `NodeSelectorRequirement` on a label whose value is `label` (apimachinery
/// `labels.Requirement.Matches`); `None` when it does not parse (`NewRequirement`: `In` and
/// `NotIn` need values, `Exists` and `DoesNotExist` none, `Gt` and `Lt` one integer).
fn label_requirement(requirement: &Value, label: Option<&str>) -> Option<bool> {
    let values = values(requirement);
    let as_int = |s: &str| s.parse::<i64>().ok();
    match text(requirement, "operator") {
        "In" if !values.is_empty() => Some(label.is_some_and(|l| values.contains(&l))),
        "NotIn" if !values.is_empty() => Some(label.is_none_or(|l| !values.contains(&l))),
        "Exists" if values.is_empty() => Some(label.is_some()),
        "DoesNotExist" if values.is_empty() => Some(label.is_none()),
        op @ ("Gt" | "Lt") => {
            let [bound] = values.as_slice() else {
                return None;
            };
            let bound = as_int(bound)?;
            Some(label.and_then(as_int).is_some_and(
                |v| {
                    if op == "Gt" { v > bound } else { v < bound }
                },
            ))
        }
        _ => None,
    }
}

/// A `matchFields` requirement on the node's name (`nodeSelectorRequirementsAsFieldSelector`:
/// only `metadata.name`, `In` or `NotIn` with one value); `None` when it does not parse.
fn field_requirement(requirement: &Value, name: &str) -> Option<bool> {
    let values = values(requirement);
    let ([value], NAME_FIELD) = (values.as_slice(), text(requirement, "key")) else {
        return None;
    };
    match text(requirement, "operator") {
        "In" => Some(*value == name),
        "NotIn" => Some(*value != name),
        _ => None,
    }
}

/// util `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity of pod spec
/// `spec` becomes one term selecting node `node` by name (other affinities are kept).
pub(super) fn pin_to_node(spec: &mut Value, node: &str) {
    let term = json!({"matchFields": [{"key": NAME_FIELD, "operator": "In", "values": [node]}]});
    meta::set(
        spec,
        &[
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        ],
        json!([term]),
    );
}

/// util `GetTargetNodeName`: the node a daemon pod is for, its `spec.nodeName` or else the name
/// its required node affinity selects.
pub(super) fn target_node(pod: &Value) -> Option<&str> {
    if let Some(name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()?
        .iter()
        .flat_map(|term| term["matchFields"].as_array().into_iter().flatten())
        .find(|f| text(f, "key") == NAME_FIELD && text(f, "operator") == "In")
        .and_then(|f| match values(f).as_slice() {
            [only] => Some(*only),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"taints": taints}})
    }

    fn place(spec: &Value, node: &Value) -> (bool, bool) {
        let p = DaemonPod::new(spec).placement(node);
        (p.should_run, p.should_continue)
    }

    #[test]
    fn node_selectors_and_affinity_pick_nodes() {
        let n = node(json!({"zone": "a", "cores": "8"}), json!([]));
        assert_eq!(place(&json!({}), &n), (true, true));
        assert_eq!(
            place(&json!({"nodeSelector": {"zone": "a"}}), &n),
            (true, true)
        );
        assert_eq!(
            place(&json!({"nodeSelector": {"zone": "b"}}), &n),
            (false, false)
        );
        assert_eq!(place(&json!({"nodeName": "n2"}), &n), (false, false));
        assert_eq!(place(&json!({"nodeName": "n1"}), &n), (true, true));
        let affinity = |terms: Value| {
            let required = json!({"nodeSelectorTerms": terms});
            json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": required}}})
        };
        let expr = |key: &str, op: &str, values: Value| {
            let requirement = json!({"key": key, "operator": op, "values": values});
            json!({"matchExpressions": [requirement]})
        };
        let runs = |terms: Value| place(&affinity(terms), &n).0;
        assert!(runs(json!([expr("zone", "In", json!(["a", "b"]))])));
        assert!(!runs(json!([expr("zone", "NotIn", json!(["a"]))])));
        assert!(runs(json!([expr("gpu", "DoesNotExist", Value::Null)])));
        assert!(!runs(json!([expr("gpu", "Exists", Value::Null)])));
        assert!(runs(json!([expr("cores", "Gt", json!(["4"]))])));
        assert!(!runs(json!([expr("cores", "Lt", json!(["4"]))])));
        assert!(
            !runs(json!([expr("zone", "Gt", json!(["4"]))])),
            "not an integer"
        );
        assert!(
            !runs(json!([expr("zone", "NotIn", json!([]))])),
            "does not parse"
        );
        // Terms are ORed; an empty term or list matches nothing.
        assert!(runs(json!([
            expr("zone", "In", json!(["b"])),
            expr("zone", "In", json!(["a"]))
        ])));
        assert!(!runs(json!([{}])));
        assert!(!runs(json!([])));
        let field = |op: &str, name: &str| {
            let requirement = json!({"key": "metadata.name", "operator": op, "values": [name]});
            json!({"matchFields": [requirement]})
        };
        assert!(runs(json!([field("In", "n1")])));
        assert!(!runs(json!([field("In", "n2")])));
        assert!(runs(json!([field("NotIn", "n2")])));
    }

    #[test]
    fn taints_stop_new_pods_and_no_execute_ones_evict() {
        let taint = |effect: &str| json!([{"key": "dedicated", "value": "db", "effect": effect}]);
        let no_schedule = node(json!({}), taint("NoSchedule"));
        let no_execute = node(json!({}), taint("NoExecute"));
        let soft = node(json!({}), taint("PreferNoSchedule"));
        assert_eq!(place(&json!({}), &no_schedule), (false, true));
        assert_eq!(place(&json!({}), &no_execute), (false, false));
        assert_eq!(place(&json!({}), &soft), (true, true));
        let tolerating = |t: Value| json!({"tolerations": [t]});
        for toleration in [
            json!({"key": "dedicated", "operator": "Equal", "value": "db"}),
            json!({"key": "dedicated", "value": "db", "effect": "NoExecute"}),
            json!({"key": "dedicated", "operator": "Exists"}),
            json!({"operator": "Exists"}),
        ] {
            assert_eq!(
                place(&tolerating(toleration.clone()), &no_execute),
                (true, true),
                "{toleration}"
            );
        }
        for toleration in [
            json!({"key": "dedicated", "value": "web"}),
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}),
            json!({"key": "other", "operator": "Exists"}),
        ] {
            assert_eq!(
                place(&tolerating(toleration.clone()), &no_execute),
                (false, false),
                "{toleration}"
            );
        }
        // Cordoned and not-ready nodes are tolerated by default.
        let cordoned = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
        );
        assert_eq!(place(&json!({}), &cordoned), (true, true));
        let network = node(
            json!({}),
            json!([{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]),
        );
        assert_eq!(place(&json!({}), &network), (false, true));
        assert_eq!(place(&json!({"hostNetwork": true}), &network), (true, true));
    }

    #[test]
    fn default_tolerations_are_added_once() {
        let spec = json!({"tolerations": [
            {"key": "x", "operator": "Exists"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 5},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        ]});
        let tolerations = daemon_tolerations(&spec);
        assert_eq!(tolerations.len(), 7, "{tolerations:?}");
        assert_eq!(tolerations[0], json!({"key": "x", "operator": "Exists"}));
        assert!(tolerations[1]["tolerationSeconds"].is_null(), "replaced");
        assert_eq!(
            tolerations[6],
            json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                   "effect": "NoSchedule"})
        );
        assert_eq!(daemon_tolerations(&json!({"hostNetwork": true})).len(), 7);
    }

    #[test]
    fn pods_are_pinned_and_found_on_their_node() {
        let mut spec = json!({"affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": []}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}],
            },
            "podAntiAffinity": {},
        }});
        pin_to_node(&mut spec, "n7");
        let affinity = &spec["affinity"];
        assert_eq!(affinity["podAntiAffinity"], json!({}));
        assert_eq!(
            affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
            json!([{"weight": 1}])
        );
        let pod = json!({"spec": spec});
        assert_eq!(target_node(&pod), Some("n7"));
        let bound = json!({"spec": {"nodeName": "n2", "affinity": spec["affinity"]}});
        assert_eq!(target_node(&bound), Some("n2"));
        assert_eq!(target_node(&json!({"spec": {}})), None);
    }
}
