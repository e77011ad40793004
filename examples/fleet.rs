//! A fleet of rollouts released at once, in virtual time: every rollout of the fleet is in
//! flight together, each with its own in-memory workloads, routes and status, all reconciled
//! by the real driver and engine as a controller would (each pass when its rollout asks to be
//! looked at again), until every one has succeeded. Prints, for fleets of growing size, the
//! wall time, the time per rollout and the peak memory of the process.
//!
//! ```text
//! cargo run --release --example fleet               # 100, 1 000 and 10 000 rollouts
//! cargo run --release --example fleet -- 10000      # one size
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use canary::engine::driver::Driver;
use canary::engine::machine::MetricOutcome;
use canary::engine::memory::{
    Faults, InMemoryMetrics, InMemoryStatusStore, InMemoryTraffic, InMemoryWebhooks,
    InMemoryWorkload,
};
use canary::engine::providers::{Clock, ManualClock};
use canary::{Phase, RolloutPlan};
use jiff::{SignedDuration, Timestamp};

/// The policy every rollout of the fleet runs: Flagger's default canary.
const ROLLOUT: &str = include_str!("rollouts/podinfo-threshold.yaml");
/// Worker threads (the machine has two cores).
const SHARDS: usize = 2;

/// One rollout's world.
struct Member {
    traffic: InMemoryTraffic,
    workload: InMemoryWorkload,
    store: InMemoryStatusStore,
}

/// What a shard did.
struct Outcome {
    passes: u64,
    succeeded: usize,
    virtual_end: Timestamp,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plan = canary::api::load::plan_from_yaml(ROLLOUT)?;
    let sizes: Vec<usize> = match std::env::args().nth(1) {
        Some(n) => vec![n.parse()?],
        None => vec![100, 1_000, 10_000],
    };
    println!(
        "{:>8}  {:>9}  {:>12}  {:>10}  {:>13}  {:>14}",
        "rollouts", "wall", "per rollout", "passes", "virtual time", "peak memory"
    );
    for size in sizes {
        let started = Instant::now();
        let outcomes = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..SHARDS)
                .map(|shard| {
                    let count = size / SHARDS + usize::from(shard < size % SHARDS);
                    let plan = &plan;
                    scope.spawn(move || run_shard(plan, count))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| "a shard panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let wall = started.elapsed();
        let outcomes = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
        let passes: u64 = outcomes.iter().map(|o| o.passes).sum();
        let succeeded: usize = outcomes.iter().map(|o| o.succeeded).sum();
        if succeeded != size {
            return Err(format!("{succeeded} of {size} rollouts succeeded").into());
        }
        let virtual_end = outcomes
            .iter()
            .map(|o| o.virtual_end)
            .max()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let span = virtual_end.duration_since(start());
        println!(
            "{size:>8}  {:>8.2}s  {:>10.1}µs  {passes:>10}  {:>12}m  {:>10} MiB",
            wall.as_secs_f64(),
            wall.as_secs_f64() * 1e6 / size as f64,
            span.as_secs() / 60,
            peak_memory_mib().map_or("?".to_owned(), |m| m.to_string()),
        );
    }
    println!(
        "(every rollout: {}, stable at 5 replicas, pods ready 20 s after they start, healthy \
         metrics; {SHARDS} threads)",
        plan.rollout.metadata.name
    );
    Ok(())
}

fn start() -> Timestamp {
    Timestamp::UNIX_EPOCH
}

/// Releases `count` rollouts at once and reconciles them in virtual time until all are done.
fn run_shard(plan: &RolloutPlan, count: usize) -> Result<Outcome, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let clock = ManualClock::new(start());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let metrics = InMemoryMetrics::default();
        metrics.set("request-success-rate", MetricOutcome::Value(99.9));
        let webhooks = InMemoryWebhooks::default();
        let fleet: Vec<Member> = (0..count)
            .map(|_| {
                let workload = InMemoryWorkload::new(
                    "rev-1",
                    5,
                    SignedDuration::from_secs(20),
                    shared.clone(),
                    Faults::default(),
                );
                workload.set_desired_revision("rev-2");
                Member {
                    traffic: InMemoryTraffic::new(
                        plan.capabilities(),
                        shared.clone(),
                        Faults::default(),
                    ),
                    workload,
                    store: InMemoryStatusStore::new(Faults::default()),
                }
            })
            .collect();
        // When each rollout is next looked at.
        let mut due: BinaryHeap<Reverse<(Timestamp, usize)>> =
            (0..count).map(|i| Reverse((start(), i))).collect();
        let mut passes = 0;
        let mut succeeded = 0;
        let mut now = start();
        while let Some(Reverse((at, index))) = due.pop() {
            now = now.max(at);
            clock.set(now);
            let member = &fleet[index];
            let driver = Driver::new(plan, &member.traffic, &member.workload, &member.store)
                .metrics(&metrics)
                .webhooks(&webhooks);
            let pass = driver.reconcile(now).await.map_err(|e| e.to_string())?;
            passes += 1;
            match pass.status.phase {
                Phase::Succeeded => succeeded += 1,
                phase if phase.is_terminal() => {
                    return Err(format!(
                        "rollout {index} ended {phase:?}: {}",
                        pass.status.message
                    ));
                }
                _ => {
                    let wait = pass.requeue_after.unwrap_or(SignedDuration::from_secs(30));
                    let next = now
                        .checked_add(wait.max(SignedDuration::from_secs(1)))
                        .map_err(|e| e.to_string())?;
                    due.push(Reverse((next, index)));
                }
            }
        }
        Ok(Outcome {
            passes,
            succeeded,
            virtual_end: now,
        })
    })
}

/// The process's peak resident memory (`VmHWM`), in MiB, where `/proc` tells it.
fn peak_memory_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
