//! `apps/v1` Deployments and ReplicaSets, after kubernetes `pkg/apis/apps/validation/validation.go`
//! (`ValidateDeploymentSpec`, `ValidateDeploymentStrategy`, `ValidateRollingUpdateDeployment`,
//! `ValidatePositiveIntOrPercent`, `IsNotMoreThan100Percent`, `ValidateReplicaSetSpec`,
//! `ValidatePodTemplateSpecForReplicaSet`) and `pkg/registry/apps/{deployment,replicaset}/strategy.go`
//! `ValidateUpdate` (the selector is immutable in `apps/v1`).

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

/// The selector (required, valid, non-empty) and the template it must match
/// (`ValidatePodTemplateSpecForReplicaSet`), shared by Deployments and ReplicaSets.
fn selector_and_template(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector = &spec["selector"];
    let template = &spec["template"];
    let labels = &template["metadata"]["labels"];
    if selector.is_null() {
        errs.push(FieldError::required(&path.child("selector"), ""));
    } else {
        errs.extend(validate_label_selector(selector, &path.child("selector")));
        let count = |k: &str| {
            selector[k]
                .as_object()
                .map(|m| m.len())
                .or_else(|| selector[k].as_array().map(Vec::len))
                .unwrap_or(0)
        };
        if count("matchLabels") + count("matchExpressions") == 0 {
            errs.push(FieldError::invalid(
                &path.child("selector"),
                selector,
                "empty selector is invalid for deployment",
            ));
        } else if !selector_matches(selector, labels) {
            errs.push(FieldError::invalid(
                &path.child("template").child("metadata").child("labels"),
                labels,
                "`selector` does not match template `labels`",
            ));
        }
    }
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

/// The value of an int-or-percent, as `getIntOrPercentValue` reads it (a percent's number).
fn int_or_percent_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(_) => int(value),
        Value::String(s) => s.strip_suffix('%').and_then(|n| n.parse().ok()),
        _ => None,
    }
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
            let unavailable = if ru["maxUnavailable"].is_null() {
                &default
            } else {
                &ru["maxUnavailable"]
            };
            let surge = if ru["maxSurge"].is_null() {
                &default
            } else {
                &ru["maxSurge"]
            };
            errs.extend(positive_int_or_percent(
                unavailable,
                &p.child("maxUnavailable"),
            ));
            errs.extend(positive_int_or_percent(surge, &p.child("maxSurge")));
            if int_or_percent_value(unavailable) == Some(0)
                && int_or_percent_value(surge) == Some(0)
            {
                errs.push(FieldError::invalid(
                    &p.child("maxUnavailable"),
                    unavailable,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
            if unavailable.is_string() && int_or_percent_value(unavailable).is_some_and(|v| v > 100)
            {
                errs.push(FieldError::invalid(
                    &p.child("maxUnavailable"),
                    unavailable,
                    "must not be greater than 100%",
                ));
            }
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
    errs.extend(selector_and_template(spec, path));
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
    errs.extend(selector_and_template(spec, &path));
    errs.extend(immutable_selector(object, old));
    errs
}
