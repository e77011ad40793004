//! `apps/v1` Deployments, ReplicaSets and DaemonSets, after kubernetes
//! `pkg/apis/apps/validation/validation.go` (`ValidateDeploymentSpec`,
//! `ValidateDeploymentStrategy`, `ValidateRollingUpdateDeployment`, `ValidatePositiveIntOrPercent`,
//! `IsNotMoreThan100Percent`, `ValidateReplicaSetSpec`, `ValidatePodTemplateSpecForReplicaSet`,
//! `ValidateDaemonSetSpec`, `ValidateDaemonSetUpdateStrategy`, `ValidateRollingUpdateDaemonSet`)
//! and `pkg/registry/apps/{deployment,replicaset,daemonset}/strategy.go` `ValidateUpdate` (the
//! selector is immutable in `apps/v1`). Fields the API server defaults
//! (`pkg/apis/apps/v1/defaults.go`) are read with their defaults.

use serde_json::{Value, json};

use super::core::validate_pod_template;
use super::names::{selector_matches, validate_label_selector};
use super::{FieldError, Path, int};

const NONNEGATIVE: &str = "must be greater than or equal to 0";

/// apiserver `ValidateNonnegativeField`.
fn nonnegative(value: &Value, path: &Path) -> Vec<FieldError> {
    match int(value) {
        Some(n) if n < 0 => vec![FieldError::invalid(path, value, NONNEGATIVE)],
        _ => Vec::new(),
    }
}

/// The workload kinds whose selector and template are checked here. ReplicaSets are checked as
/// Deployments (upstream reports their empty selector as "invalid for deployment" too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// A Deployment or a ReplicaSet.
    Deployment,
    /// A DaemonSet.
    DaemonSet,
}

/// The selector (valid, non-empty, matching the template's labels) and the template
/// (`ValidatePodTemplateSpec`, `restartPolicy: Always`), shared by the workload kinds.
fn selector_and_template(spec: &Value, path: &Path, kind: Workload) -> Vec<FieldError> {
    let template = &spec["template"];
    let mut errs = match kind {
        Workload::Deployment => deployment_selector(spec, path),
        Workload::DaemonSet => daemon_set_selector(spec, path),
    };
    errs.extend(validate_pod_template(template, &path.child("template")));
    let restart = template["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always");
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            &path.child("template").child("spec").child("restartPolicy"),
            &json!(restart),
            &["Always"],
        ));
    }
    errs
}

/// How many `matchLabels` and `matchExpressions` a selector has.
fn selector_terms(selector: &Value) -> usize {
    let count = |k: &str| {
        selector[k]
            .as_object()
            .map(serde_json::Map::len)
            .or_else(|| selector[k].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    count("matchLabels") + count("matchExpressions")
}

/// The path of a template's labels.
fn template_labels_path(path: &Path) -> Path {
    path.child("template").child("metadata").child("labels")
}

/// The detail of a selector that does not select its own template.
const MISMATCH: &str = "`selector` does not match template `labels`";

/// `ValidateDeploymentSpec`/`ValidateReplicaSetSpec` on the selector, and
/// `ValidatePodTemplateSpecForReplicaSet` on the labels: required, valid and non-empty, then
/// matching the template's labels.
fn deployment_selector(spec: &Value, path: &Path) -> Vec<FieldError> {
    let selector = &spec["selector"];
    let labels = &spec["template"]["metadata"]["labels"];
    if selector.is_null() {
        return vec![FieldError::required(&path.child("selector"), "")];
    }
    let mut errs = validate_label_selector(selector, &path.child("selector"));
    if selector_terms(selector) == 0 {
        errs.push(FieldError::invalid(
            &path.child("selector"),
            selector,
            "empty selector is invalid for deployment",
        ));
    } else if !selector_matches(selector, labels) {
        errs.push(FieldError::invalid(
            &template_labels_path(path),
            labels,
            MISMATCH,
        ));
    }
    errs
}

/// `ValidateDaemonSetSpec` on the selector: valid, matching the template's labels (a missing
/// selector matches nothing, an empty one everything), and not empty.
fn daemon_set_selector(spec: &Value, path: &Path) -> Vec<FieldError> {
    let selector = &spec["selector"];
    let labels = &spec["template"]["metadata"]["labels"];
    let mut errs = if selector.is_null() {
        Vec::new()
    } else {
        validate_label_selector(selector, &path.child("selector"))
    };
    // `LabelSelectorAsSelector` fails on what `ValidateLabelSelector` refuses: no match check.
    let matches = !selector.is_null() && selector_matches(selector, labels);
    if errs.is_empty() && !matches {
        errs.push(FieldError::invalid(
            &template_labels_path(path),
            labels,
            MISMATCH,
        ));
    }
    if !selector.is_null() && selector_terms(selector) == 0 {
        errs.push(FieldError::invalid(
            &path.child("selector"),
            selector,
            "empty selector is invalid for daemonset",
        ));
    }
    errs
}

/// A valid percentage's number (`getPercentValue`: `[0-9]+%`).
fn percent(value: &Value) -> Option<i64> {
    let digits = value.as_str()?.strip_suffix('%')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The value of an int-or-percent, as `getIntOrPercentValue` reads it: a valid percentage's
/// number, an integer, or what Go's `IntValue` makes of any other string (its decimal value,
/// else 0).
fn int_or_percent_value(value: &Value) -> i64 {
    match value {
        Value::String(s) => percent(value).or_else(|| s.parse().ok()).unwrap_or(0),
        _ => int(value).unwrap_or(0),
    }
}

/// apps validation `IsNotMoreThan100Percent`.
fn not_more_than_100_percent(value: &Value, path: &Path) -> Vec<FieldError> {
    match percent(value) {
        Some(p) if p > 100 => vec![FieldError::invalid(
            path,
            value,
            "must not be greater than 100%",
        )],
        _ => Vec::new(),
    }
}

/// `value`, or `default` when it is missing (a field the API server defaults).
fn or_default<'a>(value: &'a Value, default: &'a Value) -> &'a Value {
    if value.is_null() { default } else { value }
}

/// apps validation `ValidatePositiveIntOrPercent`.
fn positive_int_or_percent(value: &Value, path: &Path) -> Vec<FieldError> {
    match value {
        Value::String(s) => {
            let ok = s
                .strip_suffix('%')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if ok {
                Vec::new()
            } else {
                vec![FieldError::invalid(
                    path,
                    value,
                    "a valid percent string must be a numeric string followed by an ending '%' \
                     (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )]
            }
        }
        _ => nonnegative(value, path),
    }
}

/// apps validation `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`, with
/// the defaults `pkg/apis/apps/v1/defaults.go` applies first (RollingUpdate, 25%/25%).
fn strategy(strategy: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match strategy["type"].as_str().unwrap_or("RollingUpdate") {
        "Recreate" => {
            if !strategy["rollingUpdate"].is_null() {
                errs.push(FieldError::forbidden(
                    &path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            let ru = &strategy["rollingUpdate"];
            let p = path.child("rollingUpdate");
            let default = json!("25%");
            let unavailable = or_default(&ru["maxUnavailable"], &default);
            let surge = or_default(&ru["maxSurge"], &default);
            errs.extend(positive_int_or_percent(
                unavailable,
                &p.child("maxUnavailable"),
            ));
            errs.extend(positive_int_or_percent(surge, &p.child("maxSurge")));
            if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                errs.push(FieldError::invalid(
                    &p.child("maxUnavailable"),
                    unavailable,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            errs.extend(not_more_than_100_percent(
                unavailable,
                &p.child("maxUnavailable"),
            ));
        }
        _ => errs.push(FieldError::not_supported(
            path,
            strategy,
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

/// `ValidateDeploymentSpec`.
fn deployment_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = nonnegative(&spec["replicas"], &path.child("replicas"));
    errs.extend(selector_and_template(spec, path, Workload::Deployment));
    errs.extend(strategy(&spec["strategy"], &path.child("strategy")));
    errs.extend(nonnegative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
    ));
    errs.extend(nonnegative(
        &spec["revisionHistoryLimit"],
        &path.child("revisionHistoryLimit"),
    ));
    let deadline = &spec["progressDeadlineSeconds"];
    if let Some(d) = int(deadline) {
        errs.extend(nonnegative(
            deadline,
            &path.child("progressDeadlineSeconds"),
        ));
        let min_ready = int(&spec["minReadySeconds"]).unwrap_or(0);
        if d <= min_ready {
            errs.push(FieldError::invalid(
                &path.child("progressDeadlineSeconds"),
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// A label selector as the API server compares it (empty parts dropped).
fn normal_selector(selector: &Value) -> Value {
    let mut s = selector.clone();
    if let Some(map) = s.as_object_mut() {
        map.retain(|_, v| {
            !(v.is_null()
                || v.as_object().is_some_and(|m| m.is_empty())
                || v.as_array().is_some_and(Vec::is_empty))
        });
    }
    s
}

/// `ValidateImmutableField` on `spec.selector` (apps/v1 strategies' `ValidateUpdate`).
fn immutable_selector(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(old) = old else {
        return Vec::new();
    };
    let new = &object["spec"]["selector"];
    if normal_selector(new) == normal_selector(&old["spec"]["selector"]) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            &Path::new("spec").child("selector"),
            new,
            "field is immutable",
        )]
    }
}

/// `ValidateDeployment` / `ValidateDeploymentUpdate`.
pub(super) fn validate_deployment(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = deployment_spec(&object["spec"], &Path::new("spec"));
    errs.extend(immutable_selector(object, old));
    errs
}

/// `ValidateReplicaSet` / `ValidateReplicaSetUpdate`.
pub(super) fn validate_replica_set(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = &object["spec"];
    let path = Path::new("spec");
    let mut errs = nonnegative(&spec["replicas"], &path.child("replicas"));
    errs.extend(nonnegative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
    ));
    errs.extend(selector_and_template(spec, &path, Workload::Deployment));
    errs.extend(immutable_selector(object, old));
    errs
}

/// `ValidateDaemonSetUpdateStrategy` and `ValidateRollingUpdateDaemonSet`, with the defaults
/// `SetDefaults_DaemonSet` applies first (RollingUpdate; maxUnavailable 1, maxSurge 0).
/// `OnDelete` takes no further checks: a leftover `rollingUpdate` block is accepted.
fn daemon_set_strategy(strategy: &Value, path: &Path) -> Vec<FieldError> {
    match strategy["type"].as_str().unwrap_or("RollingUpdate") {
        "OnDelete" => Vec::new(),
        "RollingUpdate" => {
            let ru = &strategy["rollingUpdate"];
            let p = path.child("rollingUpdate");
            let (one, zero) = (json!(1), json!(0));
            let unavailable = or_default(&ru["maxUnavailable"], &one);
            let surge = or_default(&ru["maxSurge"], &zero);
            let mut errs = positive_int_or_percent(unavailable, &p.child("maxUnavailable"));
            errs.extend(positive_int_or_percent(surge, &p.child("maxSurge")));
            errs.extend(not_more_than_100_percent(
                unavailable,
                &p.child("maxUnavailable"),
            ));
            errs.extend(not_more_than_100_percent(surge, &p.child("maxSurge")));
            match (
                int_or_percent_value(unavailable) != 0,
                int_or_percent_value(surge) != 0,
            ) {
                (true, true) => errs.push(FieldError::invalid(
                    &p.child("maxSurge"),
                    surge,
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => errs.push(FieldError::required(
                    &p.child("maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
            errs
        }
        _ => vec![FieldError::not_supported(
            path,
            strategy,
            &["RollingUpdate", "OnDelete"],
        )],
    }
}

/// `ValidateDaemonSetSpec`.
fn daemon_set_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = selector_and_template(spec, path, Workload::DaemonSet);
    if !spec["template"]["spec"]["activeDeadlineSeconds"].is_null() {
        errs.push(FieldError::forbidden(
            &path
                .child("template")
                .child("spec")
                .child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    errs.extend(nonnegative(
        &spec["minReadySeconds"],
        &path.child("minReadySeconds"),
    ));
    errs.extend(nonnegative(
        &spec["templateGeneration"],
        &path.child("templateGeneration"),
    ));
    errs.extend(daemon_set_strategy(
        &spec["updateStrategy"],
        &path.child("updateStrategy"),
    ));
    errs.extend(nonnegative(
        &spec["revisionHistoryLimit"],
        &path.child("revisionHistoryLimit"),
    ));
    errs
}

/// `ValidateDaemonSet` / `ValidateDaemonSetUpdate` (the selector is immutable).
pub(super) fn validate_daemon_set(object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = daemon_set_spec(&object["spec"], &Path::new("spec"));
    errs.extend(immutable_selector(object, old));
    errs
}
