//! The traits the driver works through, and what the driver expects of each. Each has an
//! in-memory implementation in [`crate::engine::memory`]; the Kubernetes and mesh crates
//! implement them for real clusters, and a program embedding canary implements them for its
//! own router or workloads.
//!
//! The rules every provider follows:
//!
//! - **Called from saved state.** The driver saves the status *before* it calls a mutating
//!   method, so after a crash or an error the same call comes again: every mutating method is
//!   idempotent, and its `bool` ("anything changed") is informational (the driver does not
//!   branch on it).
//! - **Errors retry the pass.** An `Err` stops the pass; the next pass observes and decides
//!   again from the saved status. Give an error its [`crate::ErrorClass`] with
//!   [`crate::Error::provider`] or [`crate::Error::provider_failed`] (which keeps your error as
//!   the source), so a shell knows how soon to retry.
//! - **Units.** Routes weigh the canary in `weight` of `total` (the engine applies out of 100;
//!   a provider may read back in its own units);
//!   metric values are what the metric measures (the builtin success rate is in percent,
//!   0–100; durations in milliseconds).

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::api::plan::{MetricPlan, WebhookPlan};
pub use crate::engine::machine::{
    ErrorCounts, MetricOutcome, Verification, WorkloadObservation, WorkloadState,
};
use crate::engine::status::RolloutStatus;
use crate::error::Result;
use crate::traffic::RouteState;

/// Moves traffic between stable and canary: one implementation per router.
///
/// **When it is called.** The driver reads the route with [`observe`](Self::observe) before
/// each decision (a pass may decide several times in a row; a user's command is decided
/// first). When the engine decides another route (the next step, a rollback, promotion through full
/// weight, the route back to stable at the end, a repair of drift) the driver calls
/// [`apply`](Self::apply) with it, after saving the status that names it. The driver never
/// calls [`reset`](Self::reset) or [`finalize`](Self::finalize): a release ends by *applying*
/// the all-stable route; `reset` and `finalize` are for the shell that removes a rollout (the
/// Kubernetes controller calls them, in that order, when a Rollout is deleted).
///
/// **What `observe` must return.** `route` is the route as the router really has it, mapped
/// back into a [`RouteState`], or `None` when the router cannot be read back. The engine
/// compares it with the route it applied by meaning ([`RouteState::same_as`]: `1` of `4` is
/// `25` of `100`, matches in any order, no mirror is a mirror of 0%); a route that means
/// something else is drift, which the engine overrules by applying its route again (and says
/// so in an event). `verified` says whether `applied` is *in effect* (the router's data plane
/// took it, not only its configuration): [`Verification::No`] holds the step until it is;
/// [`Verification::Unknown`] (a router that cannot tell) counts as in effect.
///
/// **What `apply` must do.** Route as `route` says, whatever was there before (it may be
/// called again with the same route), and when the route sends nothing to the canary (weight
/// 0, no matches, no mirror), stop depending on the canary: remove what it made for it, so the
/// canary workload can go. It is only asked for what its plan's
/// [`crate::traffic::Capabilities`] allow: validation refused the rest.
#[async_trait]
pub trait TrafficProvider: Send + Sync {
    /// Applies `route`; idempotent. Returns whether anything changed (informational).
    async fn apply(&self, route: &RouteState) -> Result<bool>;
    /// The route as it really is, and whether `applied` (the route last applied) is in
    /// effect.
    async fn observe(&self, applied: &RouteState) -> Result<TrafficObservation>;
    /// All traffic to stable, no matches, no mirror, whatever the route was. Returns whether
    /// anything changed.
    async fn reset(&self) -> Result<bool> {
        self.apply(&RouteState::stable()).await
    }
    /// Removes what the provider created and gives back what it changed (a user's route as it
    /// was), once the route is back on stable and the canary is gone. Idempotent.
    async fn finalize(&self) -> Result<()>;
}

/// What a traffic provider sees: see [`TrafficProvider::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficObservation {
    /// The route as it really is; `None` when the provider cannot read it back.
    pub route: Option<RouteState>,
    /// Whether the route last applied is in effect.
    pub verified: Verification,
    /// Why it is not in effect yet, in words, when the provider can tell (a parent refusing
    /// the route, a backend it cannot resolve): written in the Rollout's `RouteInEffect`
    /// condition while the step waits.
    pub pending: Option<String>,
}

/// Runs the stable and canary workloads.
///
/// **When it is called.** [`observe`](Self::observe) before each decision of a pass, then what
/// the engine decided: [`ensure_canary`](Self::ensure_canary) to start or scale the canary,
/// [`promote`](Self::promote) once the release passed and the canary carries all traffic
/// (where the router weighs; stable takes the new revision while the canary still serves), and [`remove_canary`](Self::remove_canary)
/// when the release is over (after promotion; on a rollback right after the all-stable route
/// is applied, so the route's own removal of the canary comes first).
///
/// **What `observe` must return.** `desired_revision` is the revision users ask for now: the
/// engine starts a release when it differs from stable's (the stable revision is adopted on
/// the first pass). `ready` and `available` count pods of the workload's *current* revision
/// only; traffic is sent to the canary only as far as its available pods can carry it. Set
/// `stale` while the workload's controller has not caught up with its spec: nothing is
/// concluded from its counts then. Revisions are opaque strings compared for equality.
#[async_trait]
pub trait WorkloadProvider: Send + Sync {
    /// The revisions and replica counts of both workloads.
    async fn observe(&self) -> Result<WorkloadObservation>;
    /// Makes the canary run `revision` at `replicas`; idempotent. Returns whether anything
    /// changed (informational).
    async fn ensure_canary(&self, revision: &str, replicas: u32) -> Result<bool>;
    /// Makes the stable workload run `revision`; idempotent. Returns whether anything changed
    /// (informational).
    async fn promote(&self, revision: &str) -> Result<bool>;
    /// Scales the canary down and removes it; idempotent. Returns whether anything changed
    /// (informational).
    async fn remove_canary(&self) -> Result<bool>;
}

/// What a metric query needs besides the metric: the `{{ … }}` variables and the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryContext {
    /// The traffic provider's metric family, which the builtin metrics and the sequential
    /// judges query; `None` when it has none (validation then allows neither).
    pub metrics: Option<crate::analysis::queries::MetricFamily>,
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
    /// The route object the Gateway API provider edits or generates (`{{ route }}`).
    pub route: Option<String>,
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
            metrics: plan.provider.metrics_for(&spec.traffic_routing),
            namespace: plan.namespace.clone(),
            target: plan.canary_workload(),
            stable: spec.workload_ref.name.clone(),
            service: spec.service.name.clone(),
            ingress: spec
                .traffic_routing
                .nginx
                .as_ref()
                .map(|nginx| nginx.ingress.clone()),
            route: spec
                .traffic_routing
                .gateway_api
                .as_ref()
                .map(|gateway| crate::traffic::gateway::route_of(gateway, &spec.service.name).name),
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
///
/// Called once per metric at each analysis run (at a step's gate; a sequentially judged
/// metric also as it measures, every `interval`, while the canary takes traffic), with the
/// window ending now.
/// A threshold-judged metric returns [`MetricOutcome::Value`] in the unit its `thresholdRange`
/// is written in (the builtin `request-success-rate` is in percent, 0–100;
/// `request-duration` in milliseconds), [`MetricOutcome::NoData`] when nothing was measured; a
/// sequentially judged metric returns [`MetricOutcome::Counts`] of both versions' requests and
/// errors in the window.
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
///
/// Called for each webhook of the plan when its moment comes (`confirm-rollout` before the
/// release starts, `pre-rollout` before the canary takes traffic, `rollout` and `rollback`
/// with each analysis run, `confirm-traffic-increase` and `confirm-promotion` at their gates,
/// `post-rollout` when the release ends and `event` on every event, whose answers are
/// ignored). A gate passes only on
/// [`HookOutcome::Pass`].
#[async_trait]
pub trait WebhookRunner: Send + Sync {
    /// Calls `hook` with `payload`, within the hook's timeout.
    async fn call(&self, hook: &WebhookPlan, payload: &HookPayload) -> HookOutcome;
}

/// Keeps the status between passes.
///
/// `load` starts every pass; `save` comes before the actions of a decision that changed the
/// status, and at the end of a pass whose status changed (a route found in effect again is
/// saved with the next write). What `load` returns must be what was last saved, whole: the engine
/// resumes from it after a crash. One driver at a time runs a rollout (the Kubernetes
/// controller holds a lease); the store need not arbitrate between two.
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

/// A shared clock is a clock.
impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
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
