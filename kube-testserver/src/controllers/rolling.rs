//! The arithmetic of a Deployment's rollout, as k8s.io/kubernetes
//! pkg/controller/deployment/util/deployment_util.go computes it: surge and unavailability
//! budgets, the new ReplicaSet's next size, proportional scaling.

use serde_json::Value;

use super::meta;

/// A Deployment's `spec.replicas` (default 1).
pub(super) fn desired(deployment: &Value) -> i64 {
    meta::int(deployment, "/spec/replicas", 1).max(0)
}

/// Whether the Deployment rolls with `RollingUpdate` (the default strategy).
pub(super) fn is_rolling(deployment: &Value) -> bool {
    deployment["spec"]["strategy"]["type"]
        .as_str()
        .is_none_or(|t| t != "Recreate")
}

/// An int-or-percent against `total`: percentages round up or down as asked
/// (apimachinery `intstr.GetScaledValueFromIntOrPercent`). Missing values take `default`.
pub(super) fn scaled(value: &Value, total: i64, round_up: bool, default: &str) -> i64 {
    let value = if value.is_null() {
        Value::String(default.to_owned())
    } else {
        value.clone()
    };
    if let Some(n) = value.as_i64() {
        return n.max(0);
    }
    let text = value.as_str().unwrap_or(default);
    match text.strip_suffix('%').map(str::parse::<i64>) {
        Some(Ok(percent)) => {
            let product = percent.max(0) * total;
            if round_up {
                (product + 99) / 100
            } else {
                product / 100
            }
        }
        // A string without `%` is refused by validation; read it as a number if it is one.
        _ => text.parse::<i64>().unwrap_or(0).max(0),
    }
}

/// `(maxSurge, maxUnavailable)` for `desired` replicas (deployment_util.go
/// `ResolveFenceposts`): surge rounds up, unavailability down, defaults 25% each, and when
/// both come to 0 one pod may be unavailable so the rollout can move.
pub(super) fn fenceposts(deployment: &Value, desired: i64) -> (i64, i64) {
    let rolling = &deployment["spec"]["strategy"]["rollingUpdate"];
    let surge = scaled(&rolling["maxSurge"], desired, true, "25%");
    let unavailable = scaled(&rolling["maxUnavailable"], desired, false, "25%");
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// deployment_util.go `MaxSurge`: 0 unless rolling.
pub(super) fn max_surge(deployment: &Value) -> i64 {
    if !is_rolling(deployment) {
        return 0;
    }
    fenceposts(deployment, desired(deployment)).0
}

/// deployment_util.go `MaxUnavailable`: 0 unless rolling or with no replicas, never more than
/// the replicas.
pub(super) fn max_unavailable(deployment: &Value) -> i64 {
    let desired = desired(deployment);
    if !is_rolling(deployment) || desired == 0 {
        return 0;
    }
    fenceposts(deployment, desired).1.min(desired)
}

/// deployment_util.go `NewRSNewReplicas` for a rolling update: the new ReplicaSet grows by what
/// the surge budget leaves (`current` is the sum of every ReplicaSet's `spec.replicas`),
/// never past `desired`.
pub(super) fn new_rs_replicas(desired: i64, surge: i64, current: i64, new_replicas: i64) -> i64 {
    let max_total = desired + surge;
    if current >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - current).min(desired - new_replicas);
    new_replicas + scale_up.max(0)
}

/// pkg/controller/deployment/rolling.go `reconcileOldReplicaSets`: how many old pods may go
/// at most, given every ReplicaSet's `spec.replicas` sum, the minimum available and the new
/// ReplicaSet's unavailable pods.
pub(super) fn max_scaled_down(all_pods: i64, min_available: i64, new_unavailable: i64) -> i64 {
    all_pods - min_available - new_unavailable
}

/// deployment_util.go `getReplicaSetFraction`: the share of a proportional scaling that goes to
/// a ReplicaSet of `size` pods, given the Deployment's new size plus surge (`target`) and the
/// size the ReplicaSet was last scaled for (`annotated`, its `max-replicas` annotation).
pub(super) fn fraction(size: i64, desired: i64, target: i64, annotated: i64) -> i64 {
    if desired == 0 {
        return -size;
    }
    if annotated <= 0 {
        return 0;
    }
    // Go's math.Round rounds halves away from zero; so does f64::round.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let new_size = ((size * target) as f64 / annotated as f64).round() as i64;
    new_size - size
}

/// deployment_util.go `GetProportion`: the fraction, capped by what is left to add (or to
/// remove).
pub(super) fn proportion(size: i64, fraction: i64, to_add: i64, added: i64) -> i64 {
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let d = deployment(10, Value::Null, Value::Null);
        assert_eq!(fenceposts(&d, 10), (3, 2));
        let d = deployment(2, Value::Null, Value::Null);
        assert_eq!(fenceposts(&d, 2), (1, 0));
        let d = deployment(3, json!(0), json!("10%"));
        assert_eq!(
            fenceposts(&d, 3),
            (0, 1),
            "both zero: one may be unavailable"
        );
        let d = deployment(4, json!(2), json!(1));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (2, 1));
        let d = deployment(2, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 2, "never more than the replicas");
        let recreate = json!({"spec": {"replicas": 4, "strategy": {"type": "Recreate"}}});
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn the_new_replicaset_grows_within_the_surge() {
        assert_eq!(new_rs_replicas(4, 1, 4, 0), 1);
        assert_eq!(new_rs_replicas(4, 1, 5, 1), 1);
        assert_eq!(new_rs_replicas(4, 2, 4, 0), 2);
        assert_eq!(new_rs_replicas(4, 10, 4, 0), 4);
        assert_eq!(max_scaled_down(5, 4, 1), 0);
        assert_eq!(max_scaled_down(5, 3, 0), 2);
    }

    #[test]
    fn proportions_follow_the_last_scaled_size() {
        // A Deployment of 10 (+3 surge) scaled to 20 (+5): a ReplicaSet of 6 pods gets 4 more.
        assert_eq!(fraction(6, 20, 25, 13), 6);
        assert_eq!(proportion(6, 6, 12, 10), 2);
        assert_eq!(proportion(6, -3, -5, 0), -3);
        assert_eq!(proportion(6, -3, -5, -4), -1);
        assert_eq!(fraction(6, 0, 0, 13), -6);
    }
}
