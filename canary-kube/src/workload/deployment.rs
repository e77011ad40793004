//! Deployments: held by `spec.paused` (the Deployment controller makes no new ReplicaSet for a
//! paused Deployment, kubernetes `pkg/controller/deployment/sync.go` `sync`), sized by
//! `spec.replicas`.

use std::collections::BTreeMap;

use canary_core::engine::machine::WorkloadState;
use canary_core::workload::WorkloadDescriptor;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};

use super::Kind;

impl Kind for Deployment {
    const DESCRIPTOR: &'static WorkloadDescriptor = &canary_core::workload::deployment::DESCRIPTOR;

    fn template(&self) -> &PodTemplateSpec {
        &self.spec.template
    }

    fn match_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.spec.selector.match_labels.as_ref()
    }

    fn frozen(&self) -> bool {
        self.spec.paused.unwrap_or(false)
    }

    fn observed(&self) -> bool {
        let status = self.status.as_ref();
        status.and_then(|status| status.observed_generation) >= self.metadata.generation
    }

    fn rolled_out(&self) -> bool {
        let updated = self
            .status
            .as_ref()
            .and_then(|status| status.updated_replicas);
        self.observed() && updated.unwrap_or(0) >= self.spec.replicas.unwrap_or(1)
    }

    fn freeze(&self) -> Value {
        json!({"spec": {"paused": true}})
    }

    fn thaw(&self) -> Value {
        json!({"spec": {"paused": false}})
    }

    /// Ready and available count only pods of the current template, once the Deployment
    /// controller has seen the current generation. The status counts ready and available pods
    /// of every ReplicaSet, so while pods of an older template remain (a rolling update), they
    /// are assumed ready and available and taken off: a Deployment is only as far along as
    /// `kubectl rollout status` would say (Kubernetes `DeploymentComplete`: updated, available
    /// and total replicas all at the desired count).
    fn state(&self, revision: String) -> WorkloadState {
        let desired = self.spec.replicas.unwrap_or(1);
        let status = self.status.clone().unwrap_or_default();
        let current = status
            .observed_generation
            .is_some_and(|seen| Some(seen) >= self.metadata.generation);
        let updated = status.updated_replicas.unwrap_or(0);
        let older = status.replicas.unwrap_or(0).saturating_sub(updated).max(0);
        let count = |n: Option<i32>| {
            if current {
                u32::try_from(n.unwrap_or(0).saturating_sub(older).min(updated)).unwrap_or(0)
            } else {
                0
            }
        };
        WorkloadState {
            revision,
            desired: u32::try_from(desired).unwrap_or(0),
            ready: count(status.ready_replicas),
            available: count(status.available_replicas),
            stale: !current,
        }
    }

    fn sized(&self, replicas: u32) -> bool {
        self.spec.replicas == Some(i32::try_from(replicas).unwrap_or(i32::MAX))
    }

    fn canary_spec(
        _stable: &Self,
        replicas: u32,
        selector: &BTreeMap<String, String>,
        template: Value,
    ) -> Value {
        json!({
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": template,
        })
    }
}
