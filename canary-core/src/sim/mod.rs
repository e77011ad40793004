//! Simulation: a rollout run by the real driver and engine against in-memory providers and
//! synthetic traffic, in virtual time. Deterministic for a seed.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use canary_core::sim::{SimConfig, Simulation};
//! let plan = canary_core::api::load::plan_from_yaml(include_str!("../../../examples/rollouts/podinfo-kuma.yaml")).unwrap();
//! let bad = SimConfig { canary_error_rate: Some(0.2), ..SimConfig::default() };
//! let report = Simulation::new(&plan, bad).run().await.unwrap();
//! assert_eq!(report.summary.phase, canary_core::Phase::Failed);
//! assert_eq!(report.summary.canary_weight, 0);
//! # });
//! ```

pub mod dataplane;
mod metrics;
mod observed;
mod report;
pub mod rng;
pub mod traffic;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

pub use metrics::SimMetrics;
pub use observed::{ObservedTraffic, RouteHistory};
pub use report::{Recorder, Row, ServedShares, SimReport, Summary};
pub use traffic::{Answers, SecondCounts, Split, Splits, TrafficModel};

use crate::api::plan::{MetricQuery, PlanPause, RolloutPlan};
use crate::engine::driver::{Driver, Reconciled};
use crate::engine::machine::Command;
use crate::engine::memory::{
    Faults, InMemoryStatusStore, InMemoryTraffic, InMemoryWebhooks, InMemoryWorkload,
};
use crate::engine::providers::{ManualClock, MetricProvider, TrafficProvider, WorkloadProvider};
use crate::engine::status::{Phase, RolloutStatus, StepStage};
use crate::error::{Error, Result};

/// The virtual time a simulation starts at: 2026-01-01T00:00:00Z.
pub const START: Timestamp = Timestamp::constant(1_767_225_600, 0);

/// The stable revision in a simulation.
pub const STABLE_REVISION: &str = "rev-1";
/// The revision a simulation releases.
pub const NEW_REVISION: &str = "rev-2";

/// The most user requests per second a simulation models: a million, which keeps every count
/// of a day's traffic far below `u64::MAX`.
pub const MAX_RPS: u64 = 1_000_000;

/// The most stable replicas a simulation models (the largest canary replica count a Rollout
/// may ask for, too).
pub const MAX_STABLE_REPLICAS: u32 = 10_000;

/// The longest median latency a simulation models, in milliseconds: an hour.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// The longest a simulated pod may take to start: an hour.
pub const MAX_POD_STARTUP: SignedDuration = SignedDuration::from_hours(1);

/// The longest a simulation runs: 30 days of virtual time.
pub const MAX_SIM_DURATION: SignedDuration = SignedDuration::from_hours(30 * 24);

/// How a simulation's world behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// User requests per second.
    pub rps: u64,
    /// Error rate of stable, as a fraction of its requests (`0.001` is 0.1%; a success-rate
    /// metric reads it as a percent, 99.9).
    pub baseline_error_rate: f64,
    /// Error rate of the canary, as a fraction; the baseline's when `None`.
    pub canary_error_rate: Option<f64>,
    /// Median latency of stable, in milliseconds.
    pub baseline_latency_ms: f64,
    /// Median latency of the canary; the baseline's when `None`.
    pub canary_latency_ms: Option<f64>,
    /// Share of requests an A/B match selects.
    pub match_share: f64,
    /// Random seed.
    pub seed: u64,
    /// Stable replicas.
    pub stable_replicas: u32,
    /// How long a new pod takes to become available.
    pub pod_startup: SignedDuration,
    /// How long the simulated operator takes to approve a manual step; `None` never approves.
    pub approve_after: Option<SignedDuration>,
    /// When to stop if the rollout has not ended.
    pub max_duration: SignedDuration,
    /// Crash the driver at its n-th mutating call (0 never), to check that it resumes.
    pub crash_at_call: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            rps: 100,
            baseline_error_rate: 0.001,
            canary_error_rate: None,
            baseline_latency_ms: 40.0,
            canary_latency_ms: None,
            match_share: 0.1,
            seed: 1,
            stable_replicas: 5,
            pod_startup: SignedDuration::from_secs(20),
            approve_after: Some(SignedDuration::from_mins(2)),
            max_duration: SignedDuration::from_hours(24),
            crash_at_call: 0,
        }
    }
}

impl SimConfig {
    /// The traffic model this configuration describes.
    pub fn traffic_model(&self) -> TrafficModel {
        TrafficModel {
            seed: self.seed,
            rps: self.rps,
            baseline_error_rate: self.baseline_error_rate,
            canary_error_rate: self.canary_error_rate.unwrap_or(self.baseline_error_rate),
            baseline_latency_ms: self.baseline_latency_ms,
            canary_latency_ms: self.canary_latency_ms.unwrap_or(self.baseline_latency_ms),
            match_share: self.match_share,
        }
    }

    /// When the simulated operator approves the manual step of `plan` that a rollout with
    /// `status` waits at, if any.
    pub fn approval_due(&self, plan: &RolloutPlan, status: &RolloutStatus) -> Option<Timestamp> {
        let after = self.approve_after?;
        let waiting = status.phase == Phase::Paused
            && status.stage == StepStage::Gating
            && !status.commands.user_paused
            && !status.gate.approved
            && plan
                .step(status.step)
                .is_some_and(|step| step.pause == Some(PlanPause::Manual));
        if !waiting {
            return None;
        }
        status.gate.gate_since?.checked_add(after).ok()
    }

    /// Checks the configuration: rates and shares within 0..=1, and every count and duration
    /// within the bounds above (a simulation must end, and quickly).
    pub fn check(&self) -> Result<()> {
        let refuse = |message: String| Err(Error::Simulation(message));
        if self.rps > MAX_RPS {
            return refuse(format!(
                "rps {} is not within 0..={MAX_RPS} (requests per second)",
                self.rps
            ));
        }
        let rate = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(Error::Simulation(format!(
                    "{name} {value} is not within 0..=1"
                )))
            }
        };
        rate("baseline error rate", self.baseline_error_rate)?;
        rate("canary error rate", self.canary_error_rate.unwrap_or(0.0))?;
        rate("match share", self.match_share)?;
        let latencies = [Some(self.baseline_latency_ms), self.canary_latency_ms];
        if latencies
            .into_iter()
            .flatten()
            .any(|ms| !(ms.is_finite() && ms > 0.0 && ms <= MAX_LATENCY_MS))
        {
            return refuse(format!(
                "latencies must be positive milliseconds, at most {MAX_LATENCY_MS}"
            ));
        }
        if !(1..=MAX_STABLE_REPLICAS).contains(&self.stable_replicas) {
            return refuse(format!(
                "stable replicas {} is not within 1..={MAX_STABLE_REPLICAS}",
                self.stable_replicas
            ));
        }
        let format = crate::api::duration::format_duration;
        for (name, duration, max) in [
            ("pod startup", self.pod_startup, MAX_POD_STARTUP),
            ("duration", self.max_duration, MAX_SIM_DURATION),
            (
                "approval delay",
                self.approve_after.unwrap_or_default(),
                MAX_SIM_DURATION,
            ),
        ] {
            if duration.is_negative() || duration > max {
                return refuse(format!(
                    "{name} {} is not within 0s..={}",
                    format(duration),
                    format(max)
                ));
            }
        }
        Ok(())
    }
}

/// A workload a simulation can release: besides running the workloads, it takes the new
/// revision when the simulation asks for it, as a new template deployed by a user would.
pub trait SimWorkload: WorkloadProvider {
    /// Makes `revision` the revision users ask for.
    fn release(&self, revision: &str);
}

impl SimWorkload for InMemoryWorkload {
    fn release(&self, revision: &str) {
        self.set_desired_revision(revision);
    }
}

/// One rollout to simulate.
///
/// By default everything is in memory: the traffic provider routes what the plan's provider
/// can ([`InMemoryTraffic`]), and the workloads' pods start after `pod_startup`
/// ([`InMemoryWorkload`]). [`Simulation::with_traffic`] and [`Simulation::with_workload`] run
/// a provider of your own instead; the synthetic traffic then follows the route your provider
/// reports through `observe`, and the virtual clock is [`Simulation::clock`]. Your providers
/// keep their state: run a simulation with them once.
pub struct Simulation<'p> {
    plan: &'p RolloutPlan,
    config: SimConfig,
    clock: ManualClock,
    traffic: Option<&'p dyn TrafficProvider>,
    workload: Option<&'p dyn SimWorkload>,
    metrics: Option<&'p dyn MetricProvider>,
}

impl<'p> Simulation<'p> {
    /// A simulation of `plan` in the world `config` describes.
    pub fn new(plan: &'p RolloutPlan, config: SimConfig) -> Self {
        Simulation {
            plan,
            config,
            clock: ManualClock::new(START),
            traffic: None,
            workload: None,
            metrics: None,
        }
    }

    /// The same simulation, moving traffic with `traffic`.
    pub fn with_traffic(mut self, traffic: &'p dyn TrafficProvider) -> Self {
        self.traffic = Some(traffic);
        self
    }

    /// The same simulation, running the workloads with `workload`, whose stable revision is
    /// [`STABLE_REVISION`]; it is asked to release [`NEW_REVISION`] once the rollout has
    /// adopted stable.
    pub fn with_workload(mut self, workload: &'p dyn SimWorkload) -> Self {
        self.workload = Some(workload);
        self
    }

    /// The same simulation, measuring metrics with `metrics` instead of computing the builtin
    /// ones from the synthetic traffic ([`SimMetrics`]): for a provider without a metric family,
    /// whose Rollouts can only have custom queries.
    pub fn with_metrics(mut self, metrics: &'p dyn MetricProvider) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The virtual clock the simulation moves, from [`START`]: give it to your own providers
    /// when they need the time.
    pub fn clock(&self) -> ManualClock {
        self.clock.clone()
    }

    /// Metrics simulation cannot compute (custom Prometheus queries): they measure no data.
    pub fn unsimulated_metrics(&self) -> Vec<&str> {
        self.plan
            .analysis
            .metrics
            .iter()
            .filter(|metric| matches!(metric.query, MetricQuery::Custom { .. }))
            .map(|metric| metric.name.as_str())
            .collect()
    }

    /// Runs the rollout from the stable revision to the end (or `max_duration`): adopts the
    /// stable workload, asks for the new revision, then reconciles whenever the engine asks,
    /// approving manual steps as configured.
    pub async fn run(&self) -> Result<SimReport> {
        self.config.check()?;
        let clock = self.clock.clone();
        clock.set(START);
        let faults = Faults::default();
        let memory_traffic =
            InMemoryTraffic::new(self.plan.capabilities(), clock.clone(), faults.clone());
        let memory_workload = InMemoryWorkload::new(
            STABLE_REVISION,
            self.config.stable_replicas,
            self.config.pod_startup,
            clock.clone(),
            faults.clone(),
        );
        let traffic = ObservedTraffic::new(self.traffic.unwrap_or(&memory_traffic), clock.clone());
        let workload = self.workload.unwrap_or(&memory_workload);
        let history = traffic.history();
        let synthetic = SimMetrics::new(self.config.traffic_model(), Arc::new(history.clone()));
        let metrics = self.metrics.unwrap_or(&synthetic);
        let webhooks = InMemoryWebhooks::default();
        let store = InMemoryStatusStore::new(faults.clone());
        let driver = Driver::new(self.plan, &traffic, workload, &store)
            .metrics(metrics)
            .webhooks(&webhooks);
        let mut report = Recorder::new(self.plan);
        let mut now = START;
        let initialised = driver.reconcile(now).await?;
        report.record(now, &initialised);
        workload.release(NEW_REVISION);
        faults.fail_call(self.config.crash_at_call);
        let end = START.checked_add(self.config.max_duration).unwrap_or(START);
        let mut failures_in_a_row = 0;
        loop {
            let approval = self
                .config
                .approval_due(self.plan, &store.status().unwrap_or_default());
            let pass = match approval {
                Some(at) if at <= now => {
                    let id = u64::try_from(now.as_millisecond()).unwrap_or(u64::MAX);
                    driver.command(id, Command::Promote, now).await
                }
                _ => driver.reconcile(now).await,
            };
            let next = match pass {
                Ok(pass) => {
                    failures_in_a_row = 0;
                    report.record(now, &pass);
                    if pass.status.phase.is_terminal() {
                        break;
                    }
                    self.next_wakeup(&pass, now)
                }
                Err(error) => {
                    report.error(now, &error);
                    // A restarted controller runs again at once; only a provider that keeps
                    // failing makes virtual time move on.
                    failures_in_a_row += 1;
                    if failures_in_a_row < 3 {
                        continue;
                    }
                    failures_in_a_row = 0;
                    Some(now)
                }
            };
            let approval = self
                .config
                .approval_due(self.plan, &store.status().unwrap_or_default());
            let next = match (next, approval) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(at) => at,
                    None => break,
                },
            };
            // Virtual time moves on by at least a second, so a wait always ends.
            now = next.max(
                now.checked_add(SignedDuration::from_secs(1))
                    .unwrap_or(next),
            );
            if now > end {
                break;
            }
            clock.set(now);
        }
        let status = store.status().unwrap_or_default();
        Ok(report.finish(
            &status,
            now.min(end),
            history.last().whole_percent(),
            &history,
            &self.config.traffic_model(),
        ))
    }

    fn next_wakeup(&self, pass: &Reconciled, now: Timestamp) -> Option<Timestamp> {
        pass.requeue_after
            .and_then(|after| now.checked_add(after).ok())
    }
}
