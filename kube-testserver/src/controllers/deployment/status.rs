//! A Deployment's status: the counts summed over its ReplicaSets and the Available and
//! Progressing conditions (pkg/controller/deployment sync.go `calculateStatus`, progress.go
//! `syncRolloutStatus`, util/deployment_util.go condition helpers).

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::super::super::store::Part;
use super::super::{Pass, meta, rolling};
use super::{DEFAULT_PROGRESS_DEADLINE, MANAGER, Sync, size, status_count};

/// A condition of a status by type.
pub(super) fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

pub(super) fn new_condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": meta::stamp(now),
        "lastTransitionTime": meta::stamp(now),
    })
}

/// deployment_util.go `SetDeploymentCondition`: nothing changes when status and reason are the
/// same; the transition time stays when only the reason changes; the condition goes last.
pub(super) fn set_condition(status: &mut Value, mut cond: Value) {
    let kind = cond["type"].clone();
    if let Some(current) = condition(status, kind.as_str().unwrap_or_default()) {
        if current["status"] == cond["status"] && current["reason"] == cond["reason"] {
            return;
        }
        if current["status"] == cond["status"] {
            cond["lastTransitionTime"] = current["lastTransitionTime"].clone();
        }
    }
    replace_condition(status, cond);
}

fn replace_condition(status: &mut Value, cond: Value) {
    let mut conditions: Vec<Value> = status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != cond["type"])
        .collect();
    conditions.push(cond);
    meta::set(status, &["conditions"], Value::Array(conditions));
}

fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(conditions) = status["conditions"].as_array() {
        let kept: Vec<Value> = conditions
            .iter()
            .filter(|c| c["type"] != kind)
            .cloned()
            .collect();
        meta::set(status, &["conditions"], Value::Array(kept));
    }
}

/// sync.go `calculateStatus`: counts summed over the ReplicaSets' statuses (`updatedReplicas`
/// from the new one), `unavailableReplicas` from their sizes, and the Available condition
/// (at least `replicas - maxUnavailable` available).
pub(super) fn calculate_status(s: &Sync, new: Option<usize>, now: Timestamp) -> Value {
    let sum = |field: &str| -> i64 { s.rss.iter().map(|rs| status_count(rs, field)).sum() };
    let available = sum("availableReplicas");
    let total: i64 = s.rss.iter().map(|rs| size(rs)).sum();
    let updated = new
        .and_then(|i| s.rss.get(i))
        .map_or(0, |rs| status_count(rs, "replicas"));
    let mut status = json!({
        "observedGeneration": meta::int(&s.d, "/metadata/generation", 1),
        "replicas": sum("replicas"),
        "updatedReplicas": updated,
        "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
    });
    if let Some(count) = s.d["status"].get("collisionCount") {
        meta::set(&mut status, &["collisionCount"], count.clone());
    }
    if let Some(conditions) = s.d["status"].get("conditions") {
        meta::set(&mut status, &["conditions"], conditions.clone());
    }
    if let Some(progress) = &s.progress {
        set_condition(&mut status, progress.clone());
    }
    let minimum = rolling::desired(&s.d) - rolling::max_unavailable(&s.d);
    let cond = if available >= minimum {
        new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now,
        )
    } else {
        new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now,
        )
    };
    set_condition(&mut status, cond);
    status
}

/// deployment_util.go `DeploymentComplete`.
pub(super) fn complete(d: &Value, status: &Value) -> bool {
    let desired = rolling::desired(d);
    let count = |f: &str| status[f].as_i64().unwrap_or(0);
    count("updatedReplicas") == desired
        && count("replicas") == desired
        && count("availableReplicas") == desired
        && count("observedGeneration") >= meta::int(d, "/metadata/generation", 1)
}

/// deployment_util.go `DeploymentProgressing`: more updated, fewer old, more ready or more
/// available pods than the last status.
fn progressing(d: &Value, status: &Value) -> bool {
    let old = &d["status"];
    let count = |s: &Value, f: &str| s[f].as_i64().unwrap_or(0);
    let old_old = count(old, "replicas") - count(old, "updatedReplicas");
    let new_old = count(status, "replicas") - count(status, "updatedReplicas");
    count(status, "updatedReplicas") > count(old, "updatedReplicas")
        || new_old < old_old
        || count(status, "readyReplicas") > count(old, "readyReplicas")
        || count(status, "availableReplicas") > count(old, "availableReplicas")
}

fn progress_deadline(d: &Value) -> i64 {
    meta::int(
        d,
        "/spec/progressDeadlineSeconds",
        DEFAULT_PROGRESS_DEADLINE,
    )
}

/// deployment_util.go `HasProgressDeadline`: `progressDeadlineSeconds` is not the maximum int32.
pub(super) fn has_progress_deadline(d: &Value) -> bool {
    progress_deadline(d) != i64::from(i32::MAX)
}

/// deployment_util.go `DeploymentTimedOut`.
fn timed_out(d: &Value, status: &Value, now: Timestamp) -> bool {
    let Some(cond) = condition(status, "Progressing") else {
        return false;
    };
    match cond["reason"].as_str() {
        Some("NewReplicaSetAvailable") => return false,
        Some("ProgressDeadlineExceeded") => return true,
        _ => {}
    }
    let Some(from) = meta::time(cond, "/lastUpdateTime") else {
        return false;
    };
    from.checked_add(SignedDuration::from_secs(progress_deadline(d)))
        .is_ok_and(|deadline| deadline < now)
}

/// Writes the status (sync.go `syncDeploymentStatus`; with `rollout`, progress.go
/// `syncRolloutStatus`'s Progressing condition too).
pub(super) fn write_status(pass: &mut Pass<'_>, s: &mut Sync, new: Option<usize>, rollout: bool) {
    let mut status = calculate_status(s, new, pass.now);
    if rollout {
        let subject = match new.and_then(|i| s.rss.get(i)) {
            Some(rs) => format!("ReplicaSet \"{}\"", meta::name(rs)),
            None => format!("Deployment \"{}\"", meta::name(&s.d)),
        };
        if !has_progress_deadline(&s.d) {
            remove_condition(&mut status, "Progressing");
        }
        let current = condition(&status, "Progressing").cloned();
        let settled = status["replicas"] == status["updatedReplicas"]
            && current
                .as_ref()
                .is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
        if has_progress_deadline(&s.d) && !settled {
            if complete(&s.d, &status) {
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!("{subject} has successfully progressed."),
                        pass.now,
                    ),
                );
            } else if progressing(&s.d, &status) {
                let mut cond = new_condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("{subject} is progressing."),
                    pass.now,
                );
                if let Some(current) = current.filter(|c| c["status"] == "True") {
                    cond["lastTransitionTime"] = current["lastTransitionTime"].clone();
                }
                replace_condition(&mut status, cond);
            } else if timed_out(&s.d, &status, pass.now) {
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        &format!("{subject} has timed out progressing."),
                        pass.now,
                    ),
                );
            }
        }
    }
    s.progress = None;
    if status == s.d["status"] {
        return;
    }
    let mut next = Value::clone(&s.d);
    meta::set(&mut next, &["status"], status);
    if let Some(written) = pass.update(&pass.kinds.deployments.clone(), next, Part::Status, MANAGER)
    {
        s.d = written;
    }
}
