//! The traits the driver works through. Each has an in-memory implementation in
//! [`crate::engine::memory`]; the Kubernetes and mesh crates implement them for real clusters.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::api::plan::{MetricPlan, WebhookPlan};
use crate::engine::machine::{MetricOutcome, Verification, WorkloadObservation};
use crate::engine::status::RolloutStatus;
use crate::error::Result;
use crate::traffic::RouteState;

/// Moves traffic between stable and canary.
#[async_trait]
pub trait TrafficProvider: Send + Sync {
    /// Applies `route`; idempotent. Returns whether anything changed.
    async fn apply(&self, route: &RouteState) -> Result<bool>;
    /// The route as it really is, and whether `applied` (the route last applied) is in
    /// effect: one read of the world per pass.
    async fn observe(&self, applied: &RouteState) -> Result<TrafficObservation>;
    /// All traffic to stable, no matches, no mirror. Returns whether anything changed.
    async fn reset(&self) -> Result<bool> {
        self.apply(&RouteState::stable()).await
    }
    /// Removes what the provider created and restores what it changed.
    async fn finalize(&self) -> Result<()>;
}

/// What a traffic provider sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficObservation {
    /// The route as it really is; `None` when the provider cannot read it back.
    pub route: Option<RouteState>,
    /// Whether the route last applied is in effect.
    pub verified: Verification,
}

/// Runs the stable and canary workloads.
#[async_trait]
pub trait WorkloadProvider: Send + Sync {
    /// The revisions and replica counts of both workloads.
    async fn observe(&self) -> Result<WorkloadObservation>;
    /// Makes the canary run `revision` at `replicas`. Returns whether anything changed.
    async fn ensure_canary(&self, revision: &str, replicas: u32) -> Result<bool>;
    /// Makes the stable workload run `revision`. Returns whether anything changed.
    async fn promote(&self, revision: &str) -> Result<bool>;
    /// Scales the canary down and removes it. Returns whether anything changed.
    async fn remove_canary(&self) -> Result<bool>;
}

/// What a metric query needs besides the metric: the `{{ … }}` variables and the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryContext {
    /// The traffic provider, whose metric families the builtin metrics query.
    pub provider: crate::traffic::ProviderKind,
    /// The Rollout's namespace (`{{ namespace }}`).
    pub namespace: String,
    /// The canary workload (`{{ target }}`).
    pub target: String,
    /// The stable workload.
    pub stable: String,
    /// The Service (`{{ service }}`).
    pub service: String,
    /// The stable Ingress, for nginx (`{{ ingress }}`).
    pub ingress: Option<String>,
    /// The window's length (`{{ interval }}`).
    pub window: SignedDuration,
    /// The end of the window.
    pub at: Timestamp,
    /// How often Prometheus scrapes the metrics.
    pub scrape_interval: SignedDuration,
    /// How far behind `at` metrics are read, so that what they hold has been stored.
    pub query_offset: SignedDuration,
}

impl QueryContext {
    /// The context of `plan`'s metrics for the window of `window` ending at `at`.
    pub fn new(
        plan: &crate::api::plan::RolloutPlan,
        window: SignedDuration,
        at: Timestamp,
    ) -> Self {
        let spec = &plan.rollout.spec;
        QueryContext {
            provider: plan.provider,
            namespace: plan.namespace.clone(),
            target: plan.canary_workload(),
            stable: spec.workload_ref.name.clone(),
            service: spec.service.name.clone(),
            ingress: spec
                .traffic_routing
                .nginx
                .as_ref()
                .map(|nginx| nginx.ingress.clone()),
            window,
            at,
            scrape_interval: plan.analysis.scrape_interval,
            query_offset: plan.analysis.query_offset,
        }
    }

    /// The instant queries read at: `at`, `query_offset` earlier.
    pub fn read_at(&self) -> Result<Timestamp, String> {
        self.at.checked_sub(self.query_offset).map_err(|e| {
            format!(
                "cannot read metrics {} before {}: {e}",
                self.query_offset, self.at
            )
        })
    }
}

/// Measures metrics.
#[async_trait]
pub trait MetricProvider: Send + Sync {
    /// Measures `metric` over its window ending at `context.at`. Never fails: a failure is an
    /// outcome ([`MetricOutcome::Error`]) the judge decides on.
    async fn measure(&self, metric: &MetricPlan, context: &QueryContext) -> MetricOutcome;
}

/// The JSON body of a webhook call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HookPayload {
    /// The Rollout's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its phase.
    pub phase: String,
    /// The revision being released.
    pub revision: String,
    /// The webhook's metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// What a webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// A 2xx answer.
    Pass,
    /// A non-2xx answer.
    Fail(String),
    /// No answer (timeout, connection refused).
    Error(String),
}

/// Calls webhooks.
#[async_trait]
pub trait WebhookRunner: Send + Sync {
    /// Calls `hook` with `payload`, within the hook's timeout.
    async fn call(&self, hook: &WebhookPlan, payload: &HookPayload) -> HookOutcome;
}

/// Keeps the status between passes.
#[async_trait]
pub trait StatusStore: Send + Sync {
    /// The last saved status, if any.
    async fn load(&self) -> Result<Option<RolloutStatus>>;
    /// Saves `status`.
    async fn save(&self, status: &RolloutStatus) -> Result<()>;
}

/// A source of the current time, for shells.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A hand-moved clock for tests and simulation, shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock(std::sync::Arc<std::sync::Mutex<Timestamp>>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(std::sync::Arc::new(std::sync::Mutex::new(start)))
    }

    /// Moves the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        if let Ok(mut now) = self.0.lock() {
            *now = to;
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        if let Ok(mut now) = self.0.lock() {
            *now = now.checked_add(by).unwrap_or(*now);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.0
            .lock()
            .map(|now| *now)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}
