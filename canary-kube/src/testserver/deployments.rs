//! A built-in "deployment controller + kubelet": writes `apps/v1` Deployment status as
//! if ReplicaSets and Pods were rolled out and became ready `ready_after` a spec change.
//!
//! On every new generation the status is written at once with `observedGeneration`
//! and the rollout in progress: a pod template change (or a new Deployment) sets
//! `updatedReplicas` to 0 and keeps the previous ready/available counts; other spec
//! changes keep the previous counts (capped at the new replica count). Once
//! `ready_after` has passed, every count equals `spec.replicas` (default 1). A paused
//! Deployment only gets `observedGeneration`; its counts stay as they were, and a
//! template change made while paused rolls out when it is resumed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::resources::ResourceType;
use super::store::{Inner, Owner, Part, meta_str};
use super::{State, wait_shutdown};

/// The field manager the simulator writes status as.
const MANAGER: &str = "deployment-controller";

#[derive(Debug)]
struct Track {
    uid: String,
    generation: i64,
    since: Instant,
    rolled_template: Option<Value>,
}

/// Runs the simulator until shutdown.
pub(crate) async fn run(state: Arc<State>, ready_after: Duration) {
    let Some(rt) = state.registry.by_plural("apps", "v1", "deployments") else {
        return;
    };
    let tick = (ready_after / 4).clamp(Duration::from_millis(5), Duration::from_millis(50));
    let mut tracked: HashMap<(String, String), Track> = HashMap::new();
    let mut changes = state.store.subscribe();
    let mut shutdown = state.shutdown.clone();
    loop {
        changes.borrow_and_update();
        step(&mut state.store.lock(), &rt, &mut tracked, ready_after);
        tokio::select! {
            () = tokio::time::sleep(tick) => {}
            changed = changes.changed() => if changed.is_err() { return },
            () = wait_shutdown(&mut shutdown) => return,
        }
    }
}

fn count(status: &Value, field: &str) -> i64 {
    status.get(field).and_then(Value::as_i64).unwrap_or(0)
}

fn conditions(available: bool, progress_reason: &str) -> Value {
    let (avail_status, avail_reason) = if available {
        ("True", "MinimumReplicasAvailable")
    } else {
        ("False", "MinimumReplicasUnavailable")
    };
    json!([
        {"type": "Available", "status": avail_status, "reason": avail_reason},
        {"type": "Progressing", "status": "True", "reason": progress_reason},
    ])
}

fn step(
    inner: &mut Inner,
    rt: &ResourceType,
    tracked: &mut HashMap<(String, String), Track>,
    ready_after: Duration,
) {
    let now = Instant::now();
    let deployments = inner.list(rt, None);
    let key_of = |d: &Value| {
        let ns = meta_str(d, "namespace").unwrap_or_default().to_owned();
        (ns, meta_str(d, "name").unwrap_or_default().to_owned())
    };
    tracked.retain(|k, _| deployments.iter().any(|d| key_of(d) == *k));
    for d in deployments {
        let key = key_of(&d);
        let uid = meta_str(&d, "uid").unwrap_or_default().to_owned();
        let generation = d
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec = d.get("spec").cloned().unwrap_or_else(|| json!({}));
        let replicas = spec.get("replicas").and_then(Value::as_i64).unwrap_or(1);
        let paused = spec.get("paused").and_then(Value::as_bool).unwrap_or(false);
        let template = spec.get("template").cloned().unwrap_or(Value::Null);
        let prev = d.get("status").cloned().unwrap_or_else(|| json!({}));

        let track = tracked.get(&key).filter(|t| t.uid == uid);
        if track.is_none() && count(&prev, "observedGeneration") == generation {
            // Already reconciled before the simulator saw it: treat as settled.
            let since = now.checked_sub(ready_after).unwrap_or(now);
            tracked.insert(
                key,
                Track {
                    uid,
                    generation,
                    since,
                    rolled_template: Some(template),
                },
            );
            continue;
        }
        let status = match track {
            Some(t) if t.generation == generation => {
                if paused || now.duration_since(t.since) < ready_after {
                    continue;
                }
                json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "conditions": conditions(true, "NewReplicaSetAvailable"),
                })
            }
            _ => {
                let rolled = track.and_then(|t| t.rolled_template.clone());
                let mut next = Track {
                    uid,
                    generation,
                    since: now,
                    rolled_template: rolled.clone(),
                };
                let status = if paused {
                    let mut status = prev.clone();
                    if let Some(map) = status.as_object_mut() {
                        map.insert("observedGeneration".into(), json!(generation));
                    }
                    status
                } else {
                    let template_changed = rolled.as_ref() != Some(&template);
                    next.rolled_template = Some(template);
                    let updated = if template_changed {
                        0
                    } else {
                        count(&prev, "updatedReplicas").min(replicas)
                    };
                    let available = count(&prev, "availableReplicas").min(replicas);
                    json!({
                        "observedGeneration": generation,
                        "replicas": replicas,
                        "updatedReplicas": updated,
                        "readyReplicas": count(&prev, "readyReplicas").min(replicas),
                        "availableReplicas": available,
                        "unavailableReplicas": (replicas - available).max(0),
                        "conditions": conditions(available >= replicas, "ReplicaSetUpdated"),
                    })
                };
                tracked.insert(key.clone(), next);
                status
            }
        };
        if status == prev {
            continue;
        }
        let mut candidate = d.clone();
        if let Some(map) = candidate.as_object_mut() {
            map.insert("status".into(), status);
        }
        let ns = (!key.0.is_empty()).then_some(key.0.as_str());
        // The object was read under the same lock, so the write cannot conflict; an error
        // would only mean the object vanished, and the next step re-reads the store.
        let _ = inner.update(
            rt,
            ns,
            &key.1,
            candidate,
            Part::Status,
            &Owner::Update(MANAGER.into()),
        );
    }
}
