//! A traffic provider written outside canary, end to end: a weights-only router (standing in
//! for Traefik's weighted `TraefikService`) registered under its own name, a Rollout that names
//! it, a healthy and a failing release through the driver, and the same router under the
//! simulation's synthetic traffic.
//!
//! ```text
//! cargo run --example custom_provider
//! ```
//!
//! It uses only `canary-core`'s public API, as a program depending on that crate alone would.

use std::sync::{Arc, Mutex, PoisonError};

use canary_core::analysis::queries::MetricFamily;
use canary_core::api::load::plan_from_yaml_with;
use canary_core::api::spec::TrafficRouting;
use canary_core::api::validate::Checker;
use canary_core::engine::driver::Driver;
use canary_core::engine::memory::{Faults, InMemoryMetrics, InMemoryStatusStore, InMemoryWorkload};
use canary_core::engine::providers::{
    ManualClock, MetricOutcome, TrafficObservation, TrafficProvider, Verification,
};
use canary_core::jiff::{SignedDuration, Timestamp};
use canary_core::sim::{SimConfig, Simulation};
use canary_core::traffic::{Capabilities, ProviderDescriptor, Registry};
use canary_core::{Phase, RolloutPlan, RouteState, async_trait};

/// What canary knows of the router: its name in a Rollout, that it splits by weight and nothing
/// else, the metrics Traefik exports per service (`traefik_service_requests_total` and
/// `traefik_service_request_duration_seconds`, the service label naming
/// `<namespace>-<service>-<port>@<provider>`), and a rule for its `config`.
static TRAEFIK: ProviderDescriptor =
    ProviderDescriptor::plugin("traefik", |_| Capabilities::weights_only())
        .with_metrics(MetricFamily {
            requests: "traefik_service_requests_total",
            duration_bucket: "traefik_service_request_duration_seconds_bucket",
            to_millis: " * 1000",
            canary: r#"service=~"{{ namespace }}-{{ service }}-canary-[0-9]+@.+""#,
            stable: r#"service=~"{{ namespace }}-{{ service }}-[0-9]+@.+""#,
            code: "code",
        })
        .with_settings_rules(check_config);

/// `config.traefikService` names the weighted service to manage.
fn check_config(c: &mut Checker, routing: &TrafficRouting) {
    let named = routing
        .plugin_config()
        .and_then(|config| config.get("traefikService"))
        .and_then(|name| name.as_str())
        .is_some_and(|name| !name.is_empty());
    if !named {
        c.error(
            "spec.trafficRouting.plugin.config.traefikService",
            "the weighted TraefikService to manage: a name is required",
        );
    }
}

const ROLLOUT: &str = r#"
apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {name: shop, namespace: web}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: shop}
  service: {name: shop, port: 8080}
  trafficRouting:
    plugin:
      name: traefik
      config: {traefikService: shop-weighted}
  strategy:
    canary: {stepWeight: 25, maxWeight: 75}
  analysis:
    interval: 1m
    failureLimit: 1
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
"#;

/// A weighted service held in memory: stable's and the canary's weights in Traefik's own units
/// (any integers; thousandths here), as a real client would read and write them.
#[derive(Clone)]
struct WeightedService {
    weights: Arc<Mutex<(u32, u32)>>,
}

impl WeightedService {
    fn new() -> Self {
        WeightedService {
            weights: Arc::new(Mutex::new((1000, 0))),
        }
    }

    fn weights(&self) -> (u32, u32) {
        *self.weights.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl TrafficProvider for WeightedService {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        let canary = route.weight.saturating_mul(1000) / route.total.max(1);
        let wanted = (1000 - canary.min(1000), canary.min(1000));
        let mut weights = self.weights.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = *weights != wanted;
        *weights = wanted;
        Ok(changed)
    }

    /// The weights as Traefik holds them, in its units: the engine compares routes by meaning,
    /// so 250 of 1000 is the 25% it applied.
    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        let (stable, canary) = self.weights();
        let route = RouteState {
            weight: canary,
            total: stable + canary,
            ..RouteState::stable()
        };
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

    async fn finalize(&self) -> canary_core::Result<()> {
        self.apply(&RouteState::stable()).await.map(drop)
    }
}

/// Releases `rev-2` of `plan` through the driver, the success rate measuring `success`, until
/// the release ends; the phase it ends in.
async fn release(plan: &RolloutPlan, success: f64) -> canary_core::Result<Phase> {
    let start = Timestamp::UNIX_EPOCH;
    let clock = ManualClock::new(start);
    let router = WeightedService::new();
    let workload = InMemoryWorkload::new(
        "rev-1",
        4,
        SignedDuration::from_secs(10),
        clock.clone(),
        Faults::default(),
    );
    let metrics = InMemoryMetrics::default();
    metrics.set("request-success-rate", MetricOutcome::Value(success));
    let store = InMemoryStatusStore::new(Faults::default());
    let driver = Driver::new(plan, &router, &workload, &store).metrics(&metrics);
    let mut now = start;
    driver.reconcile(now).await?;
    workload.set_desired_revision("rev-2");
    for _ in 0..200 {
        let pass = driver.reconcile(now).await?;
        if pass.status.phase.is_terminal() {
            println!(
                "  ended {:?} at {}s; Traefik weights (stable, canary) = {:?}",
                pass.status.phase,
                now.duration_since(start).as_secs(),
                router.weights()
            );
            return Ok(pass.status.phase);
        }
        now = now
            .checked_add(pass.requeue_after.unwrap_or(SignedDuration::from_secs(10)))
            .map_err(|e| canary_core::Error::Simulation(e.to_string()))?;
        clock.set(now);
    }
    Err(canary_core::Error::Simulation(
        "the release did not end".into(),
    ))
}

/// Everything the example shows, with the outcome of each part.
async fn run() -> Result<Outcomes, Box<dyn std::error::Error>> {
    let registry = Registry::builtin().register(&TRAEFIK)?;
    let plan = plan_from_yaml_with(ROLLOUT, &registry)?;
    println!("`{}` routes with `{}`", plan.name, plan.provider.name);

    let ab_test = ROLLOUT.replace(
        "canary: {stepWeight: 25, maxWeight: 75}",
        "abTest: {matches: [{headers: {x-canary: {exact: \"on\"}}}]}",
    );
    let refused = plan_from_yaml_with(&ab_test, &registry)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    println!("an A/B test on it is refused:\n  {refused}");

    println!("a healthy release:");
    let healthy = release(&plan, 99.9).await?;
    println!("a failing release:");
    let failing = release(&plan, 80.0).await?;

    let router = WeightedService::new();
    let simulated = Simulation::new(&plan, SimConfig::default())
        .with_traffic(&router)
        .run()
        .await?;
    let bad = SimConfig {
        canary_error_rate: Some(0.2),
        ..SimConfig::default()
    };
    let simulated_bad = Simulation::new(&plan, bad)
        .with_traffic(&WeightedService::new())
        .run()
        .await?;
    println!(
        "simulated: healthy {:?} ({} of {} requests on the canary), bad {:?} ({} canary errors)",
        simulated.summary.phase,
        simulated.summary.canary_requests,
        simulated.summary.requests_total,
        simulated_bad.summary.phase,
        simulated_bad.summary.canary_errors,
    );
    Ok(Outcomes {
        refused,
        healthy,
        failing,
        simulated: simulated.summary.phase,
        simulated_canary_requests: simulated.summary.canary_requests,
        simulated_bad: simulated_bad.summary.phase,
        final_weights: router.weights(),
    })
}

/// What `run` found.
#[derive(Debug)]
struct Outcomes {
    refused: String,
    healthy: Phase,
    failing: Phase,
    simulated: Phase,
    simulated_canary_requests: u64,
    simulated_bad: Phase,
    final_weights: (u32, u32),
}

impl Outcomes {
    /// What a working plugin gives: the A/B test refused with the router's capabilities, the
    /// healthy release promoted and the failing one rolled back, through the driver and under
    /// simulation, the simulated router left all on stable.
    fn check(&self) -> Result<(), String> {
        let expected = self
            .refused
            .contains("spec.strategy.abTest.matches[0].headers")
            && self.refused.contains("traefik supports weights")
            && self.healthy == Phase::Succeeded
            && self.failing == Phase::Failed
            && self.simulated == Phase::Succeeded
            && self.simulated_canary_requests > 0
            && self.simulated_bad == Phase::Failed
            && self.final_weights == (1000, 0);
        if expected {
            Ok(())
        } else {
            Err(format!("unexpected outcomes: {self:?}"))
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(run())?.check()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plugin_router_is_validated_released_and_simulated_under_its_own_name() {
        run().await.unwrap().check().unwrap();
    }

    #[test]
    fn the_plugin_config_is_checked_by_the_plugin_rules() {
        let registry = Registry::builtin().register(&TRAEFIK).unwrap();
        let broken = ROLLOUT.replace("{traefikService: shop-weighted}", "{}");
        let error = plan_from_yaml_with(&broken, &registry).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("spec.trafficRouting.plugin.config.traefikService"),
            "{error}"
        );
    }
}
