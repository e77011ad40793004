//! A kubelet for every pod: the pod starts when it is first seen (`status.startTime`, phase
//! `Pending`, not ready) and becomes ready `pod_startup` later (phase `Running`, conditions
//! `Ready` and `ContainersReady` true, with that instant as their transition time). Containers
//! never fail or restart. Pods being deleted are not touched (the store removes pods without
//! finalizers at once, so there is no grace period to model).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::super::store::Part;
use super::{Pass, meta};

/// The field manager the kubelet writes as.
const MANAGER: &str = "kubelet";

/// When a pod started at `start` becomes ready.
pub(super) fn ready_at(start: Timestamp, startup: SignedDuration) -> Timestamp {
    start.checked_add(startup).unwrap_or(Timestamp::MAX)
}

/// Updates every pod's status once.
pub(super) fn sync_all(pass: &mut Pass<'_>) {
    let kind = pass.kinds.pods.clone();
    let startup = pass.startup();
    // Only the pods still starting are copied.
    let starting: Vec<Arc<Value>> = pass
        .inner
        .objects_of(&kind, None)
        .filter(|pod| {
            !(meta::terminating(pod)
                || matches!(
                    pod["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed")
                )
                || meta::pod_ready(pod))
        })
        .cloned()
        .collect();
    for pod in starting {
        let start = meta::time(&pod, "/status/startTime").unwrap_or(pass.now);
        let ready = ready_at(start, startup);
        let status = if ready <= pass.now {
            status(&pod, start, Some(ready))
        } else {
            status(&pod, start, None)
        };
        if status == pod["status"] {
            continue;
        }
        let mut next = (*pod).clone();
        meta::set(&mut next, &["status"], status);
        pass.update(&kind, next, Part::Status, MANAGER);
    }
}

/// A pod's status, started at `start` and ready since `ready` if it is.
fn status(pod: &Value, start: Timestamp, ready: Option<Timestamp>) -> Value {
    let started = meta::stamp(start);
    let condition = |kind: &str, at: Option<Timestamp>| match at {
        Some(at) => json!({"type": kind, "status": "True", "lastTransitionTime": meta::stamp(at)}),
        None => json!({"type": kind, "status": "False", "reason": "ContainersNotReady",
                       "lastTransitionTime": started}),
    };
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let state = match ready {
                Some(_) => json!({"running": {"startedAt": started}}),
                None => json!({"waiting": {"reason": "ContainerCreating"}}),
            };
            json!({
                "name": c["name"],
                "image": c["image"],
                "ready": ready.is_some(),
                "started": ready.is_some(),
                "restartCount": 0,
                "state": state,
            })
        })
        .collect();
    json!({
        "phase": if ready.is_some() { "Running" } else { "Pending" },
        "startTime": started,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": containers,
    })
}
