//! Whole Istio releases on a VirtualService the user keeps in Git, with Flux or Argo CD putting
//! Git's objects back while the release runs (`simulate --cluster --gitops`): the release
//! completes, every request is served, the canary never gets more than the route's weight
//! (Git's route sends it nothing: its pods are no endpoints of the service host), and once it
//! is over nothing of canary's is left on the user's VirtualService and DestinationRule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use canary::kube::simulate::{GitOps, GitOpsTool};
use canary::objects::Objects;
use canary::sim::{SimConfig, SimReport};
use canary::{Phase, RolloutPlan};

const ROLLOUT: &str = "
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: api, namespace: prod}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  service: {name: api, port: 8000}
  trafficRouting: {istio: {virtualService: {name: api}, destinationRule: {name: api}}}
  strategy: {canary: {stepWeight: 10, maxWeight: 50}}
  analysis: {interval: 45s, metrics: [{name: request-success-rate, thresholdRange: {min: 99}}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: prod}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: api, image: 'api:1'}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: prod}
spec:
  selector: {app: api}
  ports: [{name: http, port: 8000, targetPort: 8000}]
";

/// The user's VirtualService: one route to the bare service host.
const VIRTUAL_SERVICE: &str = "
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: prod}
spec:
  hosts: [api]
  http:
  - name: primary
    route:
    - destination: {host: api}
";

/// The user's DestinationRule for the service host, with a traffic policy.
const DESTINATION_RULE: &str = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: prod}
spec:
  host: api
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100}}
";

fn load(text: &str) -> (RolloutPlan, Objects) {
    let loaded = canary::load::rollout_file(text).unwrap();
    let plan = canary::validate::validate(&loaded.rollout).unwrap();
    (plan, loaded.objects)
}

async fn release(text: &str, tool: GitOpsTool, config: SimConfig) -> SimReport {
    let (plan, objects) = load(text);
    let gitops = GitOps::new(tool, jiff::SignedDuration::from_mins(1)).unwrap();
    canary::cluster::simulate(&plan, &objects, config, Some(gitops))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The summary's traffic truths, and nothing of canary's left on the user's Istio objects.
fn assert_truthful(what: &str, report: &SimReport) {
    let summary = &report.summary;
    assert_eq!(summary.unserved_requests, Some(0), "{what}");
    assert_eq!(summary.canary_requests_outside_release, Some(0), "{what}");
    assert_eq!(summary.max_canary_excess, Some(0.0), "{what}");
    let left = summary.left_on_user_objects.clone().unwrap();
    assert!(
        !left
            .iter()
            .any(|l| l.starts_with("VirtualService") || l.starts_with("DestinationRule")),
        "{what}: {left:#?}"
    );
}

#[tokio::test]
async fn a_release_on_a_virtual_service_kept_in_git_succeeds_under_flux_and_argo_cd() {
    let text = format!("{ROLLOUT}{VIRTUAL_SERVICE}");
    for tool in [GitOpsTool::Flux, GitOpsTool::ArgoCd] {
        let report = release(&text, tool, SimConfig::default()).await;
        let what = format!("{tool}");
        assert_eq!(
            report.summary.phase,
            Phase::Succeeded,
            "{what}: {}",
            report.summary.message
        );
        assert!(report.summary.canary_requests > 0, "{what}");
        assert!(
            report.summary.gitops_corrections.unwrap() > 0,
            "{what}: the tool put Git's route back mid-release"
        );
        assert_truthful(&what, &report);
        // Once it is over the tool finds nothing to correct on the VirtualService.
        let ended = report
            .rows
            .iter()
            .position(|row| row.phase == Phase::Succeeded)
            .unwrap();
        let corrected: Vec<&String> = report.rows[ended..]
            .iter()
            .flat_map(|row| &row.events)
            .filter(|e| e.starts_with("GitOps") && e.contains("VirtualService"))
            .collect();
        assert!(corrected.is_empty(), "{what}: {corrected:#?}");
    }
}

#[tokio::test]
async fn a_users_destination_rule_is_never_edited_and_a_failed_release_leaves_nothing_either() {
    let text = format!("{ROLLOUT}{VIRTUAL_SERVICE}{DESTINATION_RULE}");
    for tool in [GitOpsTool::Flux, GitOpsTool::ArgoCd] {
        let report = release(&text, tool, SimConfig::default()).await;
        let what = format!("{tool}");
        assert_eq!(
            report.summary.phase,
            Phase::Succeeded,
            "{what}: {}",
            report.summary.message
        );
        assert_truthful(&what, &report);
        let dr_corrections = report
            .rows
            .iter()
            .flat_map(|row| &row.events)
            .filter(|e| e.starts_with("GitOps") && e.contains("DestinationRule"))
            .count();
        assert_eq!(
            dr_corrections, 0,
            "{what}: the DestinationRule never drifts"
        );

        let failing = SimConfig {
            canary_error_rate: Some(0.3),
            ..SimConfig::default()
        };
        let report = release(&text, tool, failing).await;
        assert_eq!(report.summary.phase, Phase::Failed, "{what}");
        assert_truthful(&format!("{what}, failed"), &report);
    }
}
