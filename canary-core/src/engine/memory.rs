//! In-memory implementations of every provider trait, for tests and simulation. Clones share
//! state, so a test keeps one handle to inspect the world while the driver uses another.
//!
//! [`Faults`] makes the n-th mutating call (apply, ensure, promote, remove, save) fail, which is
//! how the tests crash the driver at any point of a pass.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};

use crate::api::plan::{MetricPlan, WebhookPlan};
use crate::engine::machine::{MetricOutcome, Verification, WorkloadObservation, WorkloadState};
use crate::engine::providers::{
    Clock, HookOutcome, HookPayload, MetricProvider, QueryContext, StatusStore, TrafficObservation,
    TrafficProvider, WebhookRunner, WorkloadProvider,
};
use crate::engine::status::RolloutStatus;
use crate::error::{Error, ErrorClass, Result};
use crate::traffic::{Capabilities, RouteState};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Fails the n-th mutating call across every provider that shares it (1-based); 0 never fails.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<AtomicU64>);

impl Faults {
    /// Makes the `n`-th mutating call from now fail.
    pub fn fail_call(&self, n: u64) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Counts one mutating call; an error if it is the one chosen to fail.
    fn tick(&self, provider: &'static str) -> Result<()> {
        let left = self.0.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        self.0.store(left - 1, Ordering::SeqCst);
        if left == 1 {
            Err(Error::provider(
                provider,
                ErrorClass::Transient,
                "injected crash",
            ))
        } else {
            Ok(())
        }
    }
}

/// A route held in memory, with the history of every change.
#[derive(Clone)]
pub struct InMemoryTraffic {
    inner: Arc<Mutex<TrafficState>>,
    capabilities: Capabilities,
    clock: Arc<dyn Clock>,
    faults: Faults,
}

struct TrafficState {
    route: RouteState,
    history: Vec<(Timestamp, RouteState)>,
    finalized: bool,
}

impl InMemoryTraffic {
    /// All traffic on stable, with the given capabilities; history stamped by `clock`.
    pub fn new(capabilities: Capabilities, clock: impl Clock + 'static, faults: Faults) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let state = TrafficState {
            route: RouteState::stable(),
            history: vec![(clock.now(), RouteState::stable())],
            finalized: false,
        };
        InMemoryTraffic {
            inner: Arc::new(Mutex::new(state)),
            capabilities,
            clock,
            faults,
        }
    }

    /// The same route, expressing what `capabilities` allow from now on (a Rollout whose
    /// provider settings changed).
    pub fn with_capabilities(&self, capabilities: Capabilities) -> Self {
        InMemoryTraffic {
            capabilities,
            ..self.clone()
        }
    }

    /// The route in effect.
    pub fn route(&self) -> RouteState {
        lock(&self.inner).route.clone()
    }

    /// Every route applied, with when (the first entry is the initial all-stable route).
    pub fn history(&self) -> Vec<(Timestamp, RouteState)> {
        lock(&self.inner).history.clone()
    }

    /// The route in effect at `at`.
    pub fn route_at(&self, at: Timestamp) -> RouteState {
        let state = lock(&self.inner);
        let index = state.history.partition_point(|(since, _)| *since <= at);
        state.history[..index]
            .last()
            .map(|(_, route)| route.clone())
            .unwrap_or_default()
    }

    /// The route in effect during unix second `second`, the interval `(second − 1, second]`:
    /// the one applied at or before its start.
    pub fn route_for_second(&self, second: i64) -> RouteState {
        match Timestamp::from_second(second - 1) {
            Ok(start) => self.route_at(start),
            Err(_) => RouteState::stable(),
        }
    }

    /// Changes the route behind the engine's back, as a person editing the object would.
    pub fn tamper(&self, route: RouteState) {
        let mut state = lock(&self.inner);
        state.route = route.clone();
        state.history.push((self.clock.now(), route));
    }

    /// An error when `route` asks for what these capabilities cannot express.
    fn expressible(&self, route: &RouteState) -> Result<()> {
        let capabilities = &self.capabilities;
        let refusal = if route.mirror.is_some() && !capabilities.mirror {
            Some("cannot mirror".to_owned())
        } else if route.matches.len() > capabilities.max_matches {
            Some(format!(
                "cannot route {} matches, at most {}",
                route.matches.len(),
                capabilities.max_matches
            ))
        } else {
            route
                .matches
                .iter()
                .flat_map(|request| capabilities.refusals(request))
                .next()
                .map(|(field, what)| format!("cannot route {what} ({field})"))
        };
        match refusal {
            Some(refusal) => Err(Error::provider(
                "traffic",
                ErrorClass::Invalid,
                format!("{refusal}; it supports {capabilities}"),
            )),
            None => Ok(()),
        }
    }

    /// Whether `finalize` ran.
    pub fn finalized(&self) -> bool {
        lock(&self.inner).finalized
    }
}

#[async_trait]
impl TrafficProvider for InMemoryTraffic {
    /// Refuses, as a real router would fail to, a route beyond its capabilities (matches it
    /// cannot express, a mirror it cannot make).
    async fn apply(&self, route: &RouteState) -> Result<bool> {
        self.faults.tick("traffic")?;
        self.expressible(route)?;
        let mut state = lock(&self.inner);
        if state.route == *route {
            return Ok(false);
        }
        state.route = route.clone();
        state.history.push((self.clock.now(), route.clone()));
        Ok(true)
    }

    async fn observe(&self, applied: &RouteState) -> Result<TrafficObservation> {
        let route = self.route();
        let verified = if route.same_as(applied) {
            Verification::Yes
        } else {
            Verification::No
        };
        Ok(TrafficObservation {
            route: Some(route),
            verified,
            pending: None,
        })
    }

    async fn finalize(&self) -> Result<()> {
        self.faults.tick("traffic")?;
        let mut state = lock(&self.inner);
        state.finalized = true;
        if !state.route.is_stable_only() {
            state.route = RouteState::stable();
            state.history.push((self.clock.now(), RouteState::stable()));
        }
        Ok(())
    }
}

/// Stable and canary Deployments held in memory, whose pods become available a while after
/// they are created.
#[derive(Clone)]
pub struct InMemoryWorkload {
    inner: Arc<Mutex<Deployments>>,
    clock: Arc<dyn Clock>,
    faults: Faults,
}

struct Pods {
    revision: String,
    /// When each pod becomes available; `None` for a pod that never does.
    available_at: Vec<Option<Timestamp>>,
}

impl Pods {
    fn state(&self, now: Timestamp) -> WorkloadState {
        let available = self
            .available_at
            .iter()
            .filter(|at| at.is_some_and(|at| at <= now))
            .count();
        let available = u32::try_from(available).unwrap_or(u32::MAX);
        WorkloadState {
            revision: self.revision.clone(),
            desired: u32::try_from(self.available_at.len()).unwrap_or(u32::MAX),
            ready: available,
            available,
            stale: false,
        }
    }
}

struct Deployments {
    desired_revision: String,
    stable: Pods,
    canary: Option<Pods>,
    startup: SignedDuration,
    canary_healthy: bool,
    promotions: Vec<String>,
}

impl InMemoryWorkload {
    /// A stable workload at `revision` with `replicas` available pods; new pods take `startup`
    /// to become available.
    pub fn new(
        revision: &str,
        replicas: u32,
        startup: SignedDuration,
        clock: impl Clock + 'static,
        faults: Faults,
    ) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let now = clock.now();
        let state = Deployments {
            desired_revision: revision.to_owned(),
            stable: Pods {
                revision: revision.to_owned(),
                available_at: vec![Some(now); replicas as usize],
            },
            canary: None,
            startup,
            canary_healthy: true,
            promotions: Vec::new(),
        };
        InMemoryWorkload {
            inner: Arc::new(Mutex::new(state)),
            clock,
            faults,
        }
    }

    /// The user asks for `revision` (a template change, or a revert).
    pub fn set_desired_revision(&self, revision: &str) {
        lock(&self.inner).desired_revision = revision.to_owned();
    }

    /// Whether canary pods created from now on ever become available.
    pub fn set_canary_healthy(&self, healthy: bool) {
        lock(&self.inner).canary_healthy = healthy;
    }

    /// Makes every canary pod unavailable, as a crash loop would.
    pub fn break_canary(&self) {
        if let Some(canary) = &mut lock(&self.inner).canary {
            canary.available_at.iter_mut().for_each(|at| *at = None);
        }
    }

    /// The stable and canary workloads now.
    pub fn snapshot(&self) -> WorkloadObservation {
        let now = self.clock.now();
        let state = lock(&self.inner);
        WorkloadObservation {
            desired_revision: state.desired_revision.clone(),
            stable: state.stable.state(now),
            canary: state.canary.as_ref().map(|canary| canary.state(now)),
            stable_reported_as: None,
        }
    }

    /// Every revision the stable workload was promoted to, in order.
    pub fn promotions(&self) -> Vec<String> {
        lock(&self.inner).promotions.clone()
    }
}

#[async_trait]
impl WorkloadProvider for InMemoryWorkload {
    async fn observe(&self) -> Result<WorkloadObservation> {
        Ok(self.snapshot())
    }

    async fn ensure_canary(&self, revision: &str, replicas: u32) -> Result<bool> {
        self.faults.tick("workload")?;
        let now = self.clock.now();
        let mut state = lock(&self.inner);
        let ready_at =
            (state.canary_healthy).then(|| now.checked_add(state.startup).unwrap_or(now));
        let pods = state.canary.get_or_insert_with(|| Pods {
            revision: revision.to_owned(),
            available_at: Vec::new(),
        });
        let mut changed = false;
        if pods.revision != revision {
            pods.revision = revision.to_owned();
            pods.available_at.clear();
            changed = true;
        }
        let replicas = replicas as usize;
        if pods.available_at.len() != replicas {
            pods.available_at.resize(replicas, ready_at);
            changed = true;
        }
        Ok(changed)
    }

    async fn promote(&self, revision: &str) -> Result<bool> {
        self.faults.tick("workload")?;
        let now = self.clock.now();
        let mut state = lock(&self.inner);
        if state.stable.revision == revision {
            return Ok(false);
        }
        let ready_at = Some(now.checked_add(state.startup).unwrap_or(now));
        state.stable.revision = revision.to_owned();
        state
            .stable
            .available_at
            .iter_mut()
            .for_each(|at| *at = ready_at);
        state.desired_revision = revision.to_owned();
        state.promotions.push(revision.to_owned());
        Ok(true)
    }

    async fn remove_canary(&self) -> Result<bool> {
        self.faults.tick("workload")?;
        Ok(lock(&self.inner).canary.take().is_some())
    }
}

/// Metric outcomes set by a test: a queue per metric, then a standing outcome.
#[derive(Clone, Default)]
pub struct InMemoryMetrics {
    inner: Arc<Mutex<BTreeMap<String, Script>>>,
}

/// Outcomes to return in order, then the standing one.
type Script = (VecDeque<MetricOutcome>, MetricOutcome);

impl InMemoryMetrics {
    /// From now on, `metric` measures `outcome`.
    pub fn set(&self, metric: &str, outcome: MetricOutcome) {
        let mut map = lock(&self.inner);
        let entry = map
            .entry(metric.to_owned())
            .or_insert_with(|| (VecDeque::new(), MetricOutcome::NoData));
        entry.0.clear();
        entry.1 = outcome;
    }

    /// The next measurements of `metric` are `outcomes`, in order, before the standing one.
    pub fn queue(&self, metric: &str, outcomes: impl IntoIterator<Item = MetricOutcome>) {
        let mut map = lock(&self.inner);
        let entry = map
            .entry(metric.to_owned())
            .or_insert_with(|| (VecDeque::new(), MetricOutcome::NoData));
        entry.0.extend(outcomes);
    }
}

#[async_trait]
impl MetricProvider for InMemoryMetrics {
    async fn measure(&self, metric: &MetricPlan, _context: &QueryContext) -> MetricOutcome {
        let mut map = lock(&self.inner);
        match map.get_mut(&metric.name) {
            Some((queue, standing)) => queue.pop_front().unwrap_or_else(|| standing.clone()),
            None => MetricOutcome::NoData,
        }
    }
}

/// Webhook answers set by a test (a pass unless told otherwise), and a log of the calls.
#[derive(Clone, Default)]
pub struct InMemoryWebhooks {
    inner: Arc<Mutex<HookBook>>,
}

/// Answers by hook name, and the calls made.
type HookBook = (BTreeMap<String, HookOutcome>, Vec<(String, HookPayload)>);

impl InMemoryWebhooks {
    /// From now on, the hook named `name` answers `outcome`.
    pub fn set(&self, name: &str, outcome: HookOutcome) {
        lock(&self.inner).0.insert(name.to_owned(), outcome);
    }

    /// Every call so far: hook name and payload.
    pub fn calls(&self) -> Vec<(String, HookPayload)> {
        lock(&self.inner).1.clone()
    }
}

#[async_trait]
impl WebhookRunner for InMemoryWebhooks {
    async fn call(&self, hook: &WebhookPlan, payload: &HookPayload) -> HookOutcome {
        let mut state = lock(&self.inner);
        state.1.push((hook.name.clone(), payload.clone()));
        state
            .0
            .get(&hook.name)
            .cloned()
            .unwrap_or(HookOutcome::Pass)
    }
}

/// A status held in memory, counting saves.
#[derive(Clone, Default)]
pub struct InMemoryStatusStore {
    inner: Arc<Mutex<(Option<RolloutStatus>, u64)>>,
    faults: Faults,
}

impl InMemoryStatusStore {
    /// An empty store failing as `faults` says.
    pub fn new(faults: Faults) -> Self {
        InMemoryStatusStore {
            inner: Arc::default(),
            faults,
        }
    }

    /// The saved status.
    pub fn status(&self) -> Option<RolloutStatus> {
        lock(&self.inner).0.clone()
    }

    /// How many times a status was saved.
    pub fn saves(&self) -> u64 {
        lock(&self.inner).1
    }
}

#[async_trait]
impl StatusStore for InMemoryStatusStore {
    async fn load(&self) -> Result<Option<RolloutStatus>> {
        Ok(self.status())
    }

    async fn save(&self, status: &RolloutStatus) -> Result<()> {
        self.faults.tick("status")?;
        let mut state = lock(&self.inner);
        state.0 = Some(status.clone());
        state.1 += 1;
        Ok(())
    }
}
