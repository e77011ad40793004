//! A world for tests: the real driver and engine over in-memory providers, under a hand-moved
//! clock.
#![allow(dead_code)]

use std::sync::Arc;

use canary_core::engine::driver::{Driver, Reconciled};
use canary_core::engine::machine::{Command, MetricOutcome};
use canary_core::engine::memory::{
    Faults, InMemoryMetrics, InMemoryStatusStore, InMemoryTraffic, InMemoryWebhooks,
    InMemoryWorkload,
};
use canary_core::engine::providers::{Clock, ManualClock};
use canary_core::{RolloutPlan, RolloutStatus};
use jiff::{SignedDuration, Timestamp};

pub const T0: Timestamp = Timestamp::constant(1_700_000_000, 0);

pub struct World {
    pub plan: RolloutPlan,
    pub clock: ManualClock,
    pub traffic: InMemoryTraffic,
    pub workload: InMemoryWorkload,
    pub metrics: InMemoryMetrics,
    pub webhooks: InMemoryWebhooks,
    pub store: InMemoryStatusStore,
    pub faults: Faults,
    pub commands: std::sync::atomic::AtomicU64,
}

/// A Rollout of `podinfo` on `provider` with the given strategy and analysis YAML (indented
/// under `spec:`).
pub fn rollout(provider: &str, strategy: &str, extra: &str) -> String {
    format!(
        "apiVersion: canary.rs/v1alpha1\nkind: Rollout\nmetadata: {{name: podinfo, namespace: test}}\nspec:\n  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}\n  service: {{name: podinfo, port: 9898}}\n  trafficRouting: {{{provider}: {{}}}}\n  strategy: {strategy}\n{extra}"
    )
}

/// Analysis every minute on the success rate (>= 99), failing after `limit` failed checks.
pub fn success_rate(limit: u32) -> String {
    format!(
        "  analysis:\n    interval: 1m\n    failureLimit: {limit}\n    metrics:\n    - {{name: request-success-rate, thresholdRange: {{min: 99}}}}\n"
    )
}

impl World {
    pub fn new(yaml: &str) -> Self {
        let plan = canary_core::api::load::plan_from_yaml(yaml).unwrap_or_else(|e| panic!("{e}"));
        let clock = ManualClock::new(T0);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let faults = Faults::default();
        let world = World {
            traffic: InMemoryTraffic::new(plan.capabilities(), shared.clone(), faults.clone()),
            workload: InMemoryWorkload::new(
                "rev-1",
                5,
                SignedDuration::from_secs(10),
                shared,
                faults.clone(),
            ),
            metrics: InMemoryMetrics::default(),
            webhooks: InMemoryWebhooks::default(),
            store: InMemoryStatusStore::new(faults.clone()),
            plan,
            clock,
            faults,
            commands: Default::default(),
        };
        world
            .metrics
            .set("request-success-rate", MetricOutcome::Value(99.9));
        world
            .metrics
            .set("request-duration", MetricOutcome::Value(80.0));
        world
    }

    pub fn driver(&self) -> Driver<'_> {
        Driver::new(&self.plan, &self.traffic, &self.workload, &self.store)
            .metrics(&self.metrics)
            .webhooks(&self.webhooks)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn reconcile(&self) -> Reconciled {
        self.driver()
            .reconcile(self.now())
            .await
            .unwrap_or_else(|e| panic!("reconcile: {e}"))
    }

    pub async fn command(&self, command: Command) -> Reconciled {
        let id = self
            .commands
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.driver()
            .command(id, command, self.now())
            .await
            .unwrap_or_else(|e| panic!("command: {e}"))
    }

    pub fn status(&self) -> RolloutStatus {
        self.store.status().unwrap_or_default()
    }

    /// Adopts rev-1, then asks for rev-2.
    pub async fn start(&self) -> Reconciled {
        self.reconcile().await;
        self.workload.set_desired_revision("rev-2");
        self.reconcile().await
    }

    /// Reconciles whenever the engine asks (at least every second of virtual time) until `done`
    /// holds or `limit` of virtual time has passed; every pass is checked with `check`.
    pub async fn run_until(
        &self,
        limit: SignedDuration,
        mut done: impl FnMut(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        let end = self.now().checked_add(limit).unwrap();
        loop {
            let pass = self.reconcile().await;
            if done(&pass.status) || self.now() >= end {
                return pass.status;
            }
            let wait = pass.requeue_after.unwrap_or(SignedDuration::from_secs(30));
            self.clock.advance(wait.max(SignedDuration::from_secs(1)));
        }
    }

    /// Weights the traffic provider applied, in order, without repeats.
    pub fn weights(&self) -> Vec<u32> {
        let mut weights: Vec<u32> = self
            .traffic
            .history()
            .into_iter()
            .map(|(_, r)| r.weight)
            .collect();
        weights.dedup();
        weights
    }
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
