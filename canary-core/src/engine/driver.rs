//! The driver: one reconcile pass, observe → transition → persist → act → requeue. Simulation
//! and the Kubernetes controller both run it; only the providers and the clock differ.
//!
//! The status is saved *before* the actions run. Every action is idempotent and follows from the
//! saved status, so a pass that stops anywhere (a crash, a provider error) leaves a status from
//! which the next pass redoes exactly what was missed.

use jiff::{SignedDuration, Timestamp};

use crate::error::Result;
use std::collections::BTreeMap;

use crate::api::plan::{MetricPlan, RolloutPlan, WebhookPlan};
use crate::api::spec::HookType;
use crate::engine::machine::{
    Action, AnalysisResults, Command, Event, HookResult, Input, MetricOutcome, MetricRequest,
    MetricResult, Observation, Transition, transition,
};
use crate::engine::providers::{
    HookOutcome, HookPayload, MetricProvider, QueryContext, StatusStore, TrafficProvider,
    WebhookRunner, WorkloadProvider,
};
use crate::engine::status::RolloutStatus;

/// How many observe → transition rounds one pass may take when each asks to look again at once.
const MAX_ROUNDS: usize = 8;

/// One rollout's plan and the providers it runs with.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use canary_core::engine::driver::Driver;
/// use canary_core::engine::memory::{Faults, InMemoryStatusStore, InMemoryTraffic, InMemoryWorkload};
/// use canary_core::engine::providers::ManualClock;
///
/// let plan = canary_core::api::load::plan_from_yaml(include_str!("../../../examples/rollouts/podinfo-kuma.yaml")).unwrap();
/// let clock = ManualClock::new(canary_core::sim::START);
/// let traffic = InMemoryTraffic::new(plan.capabilities(), clock.clone(), Faults::default());
/// let workload = InMemoryWorkload::new("rev-1", 3, jiff::SignedDuration::ZERO, clock, Faults::default());
/// let store = InMemoryStatusStore::new(Faults::default());
/// let driver = Driver::new(&plan, &traffic, &workload, &store);
/// let pass = driver.reconcile(canary_core::sim::START).await.unwrap();
/// assert_eq!(pass.status.stable_revision.as_deref(), Some("rev-1"));
/// # });
/// ```
pub struct Driver<'a> {
    plan: &'a RolloutPlan,
    traffic: &'a dyn TrafficProvider,
    workload: &'a dyn WorkloadProvider,
    metrics: &'a dyn MetricProvider,
    webhooks: &'a dyn WebhookRunner,
    store: &'a dyn StatusStore,
}

impl<'a> Driver<'a> {
    /// A driver of `plan` that moves traffic with `traffic`, runs the workloads with
    /// `workload` and keeps the status in `store`. It has no metric provider (every metric
    /// measures an error, so a plan with metrics needs [`Driver::metrics`]) and no webhook
    /// runner (every webhook call fails: a plan with webhooks needs [`Driver::webhooks`]).
    pub fn new(
        plan: &'a RolloutPlan,
        traffic: &'a dyn TrafficProvider,
        workload: &'a dyn WorkloadProvider,
        store: &'a dyn StatusStore,
    ) -> Self {
        Driver {
            plan,
            traffic,
            workload,
            metrics: &NoMetrics,
            webhooks: &NoWebhooks,
            store,
        }
    }

    /// The same driver, measuring metrics with `metrics`.
    pub fn metrics(mut self, metrics: &'a dyn MetricProvider) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same driver, calling webhooks with `webhooks`.
    pub fn webhooks(mut self, webhooks: &'a dyn WebhookRunner) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// The plan it runs.
    pub fn plan(&self) -> &'a RolloutPlan {
        self.plan
    }
}

/// No metric provider: every metric measures an error.
struct NoMetrics;

#[async_trait::async_trait]
impl MetricProvider for NoMetrics {
    async fn measure(&self, metric: &MetricPlan, _: &QueryContext) -> MetricOutcome {
        MetricOutcome::Error(format!(
            "no metric provider to measure `{}` (Driver::metrics)",
            metric.name
        ))
    }
}

/// No webhook runner: every call fails.
struct NoWebhooks;

#[async_trait::async_trait]
impl WebhookRunner for NoWebhooks {
    async fn call(&self, hook: &WebhookPlan, _: &HookPayload) -> HookOutcome {
        HookOutcome::Error(format!(
            "no webhook runner to call `{}` (Driver::webhooks)",
            hook.name
        ))
    }
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    /// The status at the end of the pass (as saved).
    pub status: RolloutStatus,
    /// When to run again; `None` means on the next change.
    pub requeue_after: Option<SignedDuration>,
    /// Events raised during the pass.
    pub events: Vec<Event>,
    /// Whether an analysis run was judged during the pass.
    pub analysed: bool,
    /// Every (phase, step, weight) the rollout went through during the pass, in order; the
    /// last is where it ended.
    pub trail: Vec<Waypoint>,
}

/// Where a rollout was after one transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waypoint {
    /// The phase.
    pub phase: crate::engine::status::Phase,
    /// The step (0-based).
    pub step: u32,
    /// The canary weight applied.
    pub weight: u32,
}

impl Waypoint {
    fn of(status: &RolloutStatus) -> Self {
        Waypoint {
            phase: status.phase,
            step: status.step,
            weight: status.routing.route.weight,
        }
    }
}

impl Driver<'_> {
    /// Runs one reconcile pass at `now`.
    pub async fn reconcile(&self, now: Timestamp) -> Result<Reconciled> {
        let mut pass = Pass::start(self).await?;
        for _ in 0..MAX_ROUNDS {
            let seen = self.observe(&pass.status).await?;
            pass.stable_reported_as = seen.workload.stable_reported_as.clone();
            self.step(&mut pass, &Input::Observed(seen), now).await?;
            if pass.requeue_after != Some(SignedDuration::ZERO) {
                break;
            }
        }
        self.persist_at_end(&mut pass).await?;
        Ok(pass.finish())
    }

    /// Saves the status if it changed since it was last saved.
    async fn persist(&self, pass: &mut Pass) -> Result<()> {
        if pass.status != pass.saved {
            self.store.save(&pass.status).await?;
            pass.saved = pass.status.clone();
        }
        Ok(())
    }

    /// At the end of a pass: saves the status unless all that changed is what every pass
    /// observes again (that the route is in effect), which is then saved with the next write.
    async fn persist_at_end(&self, pass: &mut Pass) -> Result<()> {
        let mut observed = pass.saved.clone();
        observed.routing.route_verified = pass.status.routing.route_verified;
        if pass.status != observed {
            self.store.save(&pass.status).await?;
            pass.saved = pass.status.clone();
        }
        Ok(())
    }

    /// Applies user command `id` at `now`, then reconciles. Ids increase from one command to
    /// the next; delivering the same id again (after an error) applies it at most once.
    pub async fn command(&self, id: u64, command: Command, now: Timestamp) -> Result<Reconciled> {
        let mut pass = Pass::start(self).await?;
        self.step(&mut pass, &Input::Command { id, command }, now)
            .await?;
        self.persist(&mut pass).await?;
        let mut after = self.reconcile(now).await?;
        pass.events.append(&mut after.events);
        after.events = pass.events;
        pass.trail.extend(after.trail.into_iter().skip(1));
        after.trail = pass.trail;
        Ok(after)
    }

    /// The world now, as the providers report it.
    async fn observe(&self, status: &RolloutStatus) -> Result<Observation> {
        let traffic = self.traffic.observe(&status.routing.route).await?;
        Ok(Observation {
            workload: self.workload.observe().await?,
            route: traffic.route,
            verified: traffic.verified,
            route_pending: traffic.pending,
        })
    }

    /// One transition: save the new status, then carry out its actions.
    async fn step(&self, pass: &mut Pass, input: &Input, now: Timestamp) -> Result<()> {
        let Transition {
            status,
            actions,
            requeue_after,
        } = transition(self.plan, pass.status.clone(), input, now);
        pass.status = status;
        let here = Waypoint::of(&pass.status);
        if pass.trail.last() != Some(&here) {
            pass.trail.push(here);
        }
        pass.requeue_after = requeue_after;
        // Persist, then act: the status is saved before anything changes the world, so a pass
        // that stops anywhere leaves a status from which the next pass redoes what was missed.
        // Transitions that only move the status along are saved with the next write.
        let acts = actions
            .iter()
            .any(|action| !matches!(action, Action::Event(_) | Action::RunAnalysis { .. }));
        if acts {
            self.persist(pass).await?;
        }
        for action in actions {
            match action {
                Action::EnsureCanary { revision, replicas } => {
                    self.workload.ensure_canary(&revision, replicas).await?;
                }
                Action::SetRoute(route) => {
                    self.traffic.apply(&route).await?;
                }
                Action::PromoteStable { revision } => {
                    self.workload.promote(&revision).await?;
                }
                Action::RemoveCanary => {
                    self.workload.remove_canary().await?;
                }
                Action::Event(event) => {
                    self.tell_event_hooks(&pass.status, &event).await;
                    pass.events.push(event);
                }
                Action::RunAnalysis { metrics, gate } => {
                    let reported = pass.stable_reported_as.clone();
                    let results = self
                        .analyse(&pass.status, &metrics, gate, reported, now)
                        .await;
                    pass.analysed = true;
                    Box::pin(self.step(pass, &Input::Analysed(results), now)).await?;
                }
                Action::CallHooks {
                    hook_type,
                    revision,
                } => {
                    let results = self
                        .call_hooks(&[hook_type], &pass.status, &revision, &BTreeMap::new())
                        .await;
                    if hook_type.is_gate() {
                        let input = Input::Hooked {
                            hook_type,
                            revision,
                            results,
                        };
                        Box::pin(self.step(pass, &input, now)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Calls every webhook of the given types, in the plan's order.
    async fn call_hooks(
        &self,
        types: &[HookType],
        status: &RolloutStatus,
        revision: &str,
        extra: &BTreeMap<String, String>,
    ) -> Vec<HookResult> {
        let mut results = Vec::new();
        for hook in self
            .plan
            .analysis
            .webhooks
            .iter()
            .filter(|h| types.contains(&h.hook_type))
        {
            let mut metadata = hook.metadata.clone();
            metadata.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            let payload = HookPayload {
                name: self.plan.name.clone(),
                namespace: self.plan.namespace.clone(),
                phase: status.phase.to_string(),
                revision: revision.to_owned(),
                metadata,
            };
            let outcome = self.webhooks.call(hook, &payload).await;
            results.push(HookResult {
                name: hook.name.clone(),
                hook_type: hook.hook_type,
                outcome,
            });
        }
        results
    }

    /// Tells the `event` webhooks about an event (answers are ignored).
    async fn tell_event_hooks(&self, status: &RolloutStatus, event: &Event) {
        if !self
            .plan
            .analysis
            .webhooks
            .iter()
            .any(|h| h.hook_type == HookType::Event)
        {
            return;
        }
        let extra = BTreeMap::from([
            ("eventMessage".to_owned(), event.message.clone()),
            ("eventType".to_owned(), format!("{:?}", event.kind)),
            ("eventReason".to_owned(), event.reason.clone()),
        ]);
        let revision = status.release.canary_revision.clone().unwrap_or_default();
        self.call_hooks(&[HookType::Event], status, &revision, &extra)
            .await;
    }

    /// Measures the requested metrics over their windows ending at `now`; a gate run also calls
    /// the `rollout` and `rollback` webhooks.
    async fn analyse(
        &self,
        status: &RolloutStatus,
        requests: &[MetricRequest],
        gate: bool,
        stable_reported_as: Option<String>,
        now: Timestamp,
    ) -> AnalysisResults {
        let mut metrics = Vec::with_capacity(requests.len());
        for request in requests {
            let Some(metric) = self
                .plan
                .analysis
                .metrics
                .iter()
                .find(|m| m.name == request.metric)
            else {
                continue;
            };
            let mut context = QueryContext::new(self.plan, request.window, now);
            if let Some(name) = &stable_reported_as {
                context.stable.clone_from(name);
            }
            let outcome = self.metrics.measure(metric, &context).await;
            metrics.push(MetricResult {
                metric: metric.name.clone(),
                outcome,
            });
        }
        let hooks = if gate {
            let revision = status.release.canary_revision.clone().unwrap_or_default();
            let types = [HookType::Rollout, HookType::Rollback];
            self.call_hooks(&types, status, &revision, &BTreeMap::new())
                .await
        } else {
            Vec::new()
        };
        AnalysisResults {
            metrics,
            hooks,
            gate,
        }
    }
}

/// The state of one pass.
struct Pass {
    status: RolloutStatus,
    /// The status as last saved.
    saved: RolloutStatus,
    requeue_after: Option<SignedDuration>,
    events: Vec<Event>,
    analysed: bool,
    trail: Vec<Waypoint>,
    /// What the last observation said stable's pods are reported as, if not their workload.
    stable_reported_as: Option<String>,
}

impl Pass {
    async fn start(driver: &Driver<'_>) -> Result<Self> {
        let status = driver.store.load().await?.unwrap_or_default();
        Ok(Pass {
            trail: vec![Waypoint::of(&status)],
            saved: status.clone(),
            status,
            requeue_after: None,
            events: Vec::new(),
            analysed: false,
            stable_reported_as: None,
        })
    }

    fn finish(self) -> Reconciled {
        Reconciled {
            status: self.status,
            requeue_after: self.requeue_after,
            events: self.events,
            analysed: self.analysed,
            trail: self.trail,
        }
    }
}
