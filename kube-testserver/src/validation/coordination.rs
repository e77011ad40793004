//! `coordination.k8s.io/v1` Leases, after kubernetes
//! `pkg/apis/coordination/validation/validation.go` (`ValidateLeaseSpec`).

use serde_json::Value;

use super::{FieldError, Path, int};

/// `ValidateLease` (the spec part): a positive duration, non-negative transitions.
pub(super) fn validate_lease(object: &Value) -> Vec<FieldError> {
    let spec = &object["spec"];
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let duration = &spec["leaseDurationSeconds"];
    if int(duration).is_some_and(|d| d <= 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseDurationSeconds"),
            duration,
            "must be greater than 0",
        ));
    }
    let transitions = &spec["leaseTransitions"];
    if int(transitions).is_some_and(|t| t < 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseTransitions"),
            transitions,
            "must be greater than or equal to 0",
        ));
    }
    errs
}
