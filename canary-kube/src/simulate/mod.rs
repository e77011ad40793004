//! A rollout simulated through a cluster: the real controller reconcile (finalizer, the
//! Deployment workload provider, the Rollout's traffic provider, the status subresource)
//! against the strict in-memory API server holding the user's objects, its
//! kube-controller-manager and kubelet stepped in virtual time, and the data-plane model of
//! the Rollout's provider deciding which pods answer the synthetic traffic.
//!
//! The cluster first runs the user's objects (the stable Deployment rolled out), the
//! controller adopts the stable workload, then a new revision is released: the Rollout's
//! `newVersion`, or else a changed pod template as `kubectl rollout restart` makes. Time
//! moves from one thing that happens to the next: the controller's requeue, a pod becoming
//! ready, the simulated operator's approval. After every step of the cluster or the
//! controller the data plane is asked who answers users' requests; the requests of each
//! second follow that answer, and the metrics analysis reads them.
//!
//! Beyond the in-memory simulation's report, rows carry the served shares and the summary
//! says how many requests nobody answered, how far the canary's served share exceeded its
//! route weight, and how many requests canary pods answered while the route sent the canary
//! nothing.

mod cluster;
mod gitops;
mod kuma;
mod served;

use std::sync::{Arc, Mutex};

use canary_core::analysis::destinations::Destinations;
use canary_core::api::spec::RequestMatch;
use canary_core::engine::driver::Reconciled;
use canary_core::engine::memory::InMemoryWebhooks;
use canary_core::engine::providers::{Clock, ManualClock};
use canary_core::sim::dataplane::World;
use canary_core::sim::dataplane::probe::invariants::{self, Expectation, Rule};
use canary_core::sim::dataplane::probe::{self, Probe};
use canary_core::sim::{Recorder, START, SimConfig, SimMetrics, SimReport};
use canary_core::{Command, RolloutPlan, RolloutStatus};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

pub use gitops::{GitOps, GitOpsTool, Ignored};
pub use served::ServedHistory;

use crate::controller::{Context, PassObserver, TrafficFactory, reconcile};
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Reconcile passes in a row that may fail before virtual time moves on (a restarted
/// controller tries again at once).
const RETRIES: u32 = 3;

/// How long the cluster is watched after the rollout ends, while the controller cleans up
/// (the data-plane measures include it).
const SETTLE: SignedDuration = SignedDuration::from_mins(5);

/// The reason of the timeline events that say the data plane broke a rule of what users'
/// requests may get.
pub const BROKEN_RULE: &str = "TrafficRuleBroken";

/// How long every pass may fail before the simulation stops.
const GIVE_UP: SignedDuration = SignedDuration::from_mins(10);

/// Passes at one instant, each woken by what the previous one made the cluster do.
const WAKEUPS: u32 = 4;

/// The controller name events are reported under.
const CONTROLLER: &str = "canary-simulate";

/// A rollout to simulate through a cluster.
pub struct ClusterSimulation<'p> {
    plan: &'p RolloutPlan,
    objects: Vec<Value>,
    config: SimConfig,
    restarting: bool,
    gitops: Option<GitOps>,
}

impl<'p> ClusterSimulation<'p> {
    /// A simulation of `plan` on a cluster holding `objects` (the stable Deployment, its
    /// Service, the provider's objects…), in the world `config` describes. The config's
    /// `stable_replicas` does not apply (the replicas are the Deployment's); its
    /// `crash_at_call` fails the controller's n-th write to the API server after the release
    /// begins, and the controller restarts.
    pub fn new(plan: &'p RolloutPlan, objects: Vec<Value>, config: SimConfig) -> Self {
        ClusterSimulation {
            plan,
            objects,
            config,
            restarting: false,
            gitops: None,
        }
    }

    /// This simulation with the user's objects and the Rollout kept in Git and applied by
    /// `gitops`: the release is a commit, and the tool corrects drift every interval.
    pub fn gitops(mut self, gitops: GitOps) -> Self {
        self.gitops = Some(gitops);
        self
    }

    /// This simulation with a controller restarted before every pass: nothing it keeps in
    /// memory (provider state included) outlives a pass.
    pub fn restarting(mut self) -> Self {
        self.restarting = true;
        self
    }

    /// Runs the rollout to its end (or `max_duration`), routing with the providers `traffic`
    /// makes for the cluster's client (called again for every restart of the controller). A
    /// refused object or Rollout is [`Error::Refused`], objects the rollout needs missing
    /// [`Error::Unusable`]; a simulation setting out of range is a core simulation error.
    pub async fn run(
        &self,
        traffic: impl Fn() -> Arc<dyn TrafficFactory> + Send + Sync + 'static,
    ) -> Result<SimReport> {
        self.config.check()?;
        let cluster = cluster::Cluster::start(self.config.pod_startup).await?;
        let mut git = self
            .gitops
            .clone()
            .map(|gitops| gitops::Repository::new(gitops, &self.objects));
        match &mut git {
            Some(git) => {
                git.sync(&cluster, START, true).await?;
            }
            None => {
                for object in &self.objects {
                    cluster.create(object).await?;
                }
            }
        }
        cluster.check_needs(self.plan)?;
        cluster.boot(START).await;
        let rollouts = match &mut git {
            Some(git) => {
                git.commit(cluster::Cluster::rollout_manifest(self.plan)?);
                git.sync(&cluster, START, true).await?;
                kube::Api::namespaced(cluster.client.clone(), &self.plan.namespace)
            }
            None => cluster.create_rollout(self.plan).await?,
        };

        let clock = ManualClock::new(START);
        let history = ServedHistory::default();
        let model = self.config.traffic_model();
        let passes: Arc<Mutex<Vec<Reconciled>>> = Arc::default();
        let seen = Arc::clone(&passes);
        let client = cluster.client.clone();
        let metrics = Arc::new(SimMetrics::new(model.clone(), Arc::new(history.clone())));
        let observer: PassObserver = Arc::new(move |pass: &Reconciled| {
            if let Ok(mut passes) = seen.lock() {
                passes.push(pass.clone());
            }
        });
        let controller = clock.clone();
        // Nothing is sent in a simulation: the destinations the Rollout names are allowed.
        let destinations = Destinations::named_by(self.plan);
        // A controller as it starts: fresh providers, nothing remembered.
        let start_controller = move || {
            Arc::new(
                Context::new(
                    client.clone(),
                    traffic(),
                    metrics.clone(),
                    Arc::new(InMemoryWebhooks::default()),
                    Arc::new(controller.clone()) as Arc<dyn Clock>,
                    Metrics::register(&mut prometheus_client::registry::Registry::default()),
                    CONTROLLER,
                )
                // Passes run in virtual time, each right after the simulated cluster has
                // moved on: a read must see the cluster as it is then, not as a watch has
                // brought it so far (in real time), or runs of one seed would differ.
                .without_cache()
                .with_destinations(destinations.clone())
                .with_observer(observer.clone()),
            )
        };
        let mut run = Run {
            plan: self.plan,
            config: &self.config,
            cluster: &cluster,
            rollouts: &rollouts,
            context: start_controller(),
            start_controller: Box::new(start_controller),
            restarting: self.restarting,
            passes,
            history,
            recorder: Recorder::new(self.plan),
            matches: plan_matches(self.plan),
            max_excess: 0.0,
            interrupted: false,
            broken: Vec::new(),
            unserved_because: None,
            stable_pods: StablePods::default(),
        };

        // Adoption: the controller takes the stable workload as it runs.
        let mut now = START;
        run.look(now).await?;
        for _ in 0..RETRIES {
            if run.pass(now).await.is_some() {
                break;
            }
        }
        run.stable_pods
            .remember(self.plan, cluster.server.snapshot());
        match &mut git {
            Some(git) => {
                cluster.release_in_git(self.plan, now, git).await?;
                git.count_corrections();
            }
            None => cluster.release(self.plan, now).await?,
        }
        cluster
            .server
            .faults()
            .fail_write(self.config.crash_at_call);
        let end = START.checked_add(self.config.max_duration).unwrap_or(START);
        let mut failures_in_a_row = 0;
        let mut ended = None;
        let mut failing_since = None;
        loop {
            if let Some(at) = self.config.approval_due(self.plan, &run.status().await?)
                && at <= now
            {
                let id = u64::try_from(now.as_millisecond()).unwrap_or(u64::MAX);
                crate::ctl::send(&rollouts, &self.plan.name, Command::Promote, id).await?;
            }
            let requeue = match run.pass(now).await {
                Some(pass) => {
                    failures_in_a_row = 0;
                    failing_since = None;
                    if pass.status.phase.is_terminal() && ended.is_none() {
                        ended = Some(now);
                    }
                    pass.requeue_after
                        .and_then(|after| now.checked_add(after).ok())
                }
                None => {
                    failures_in_a_row += 1;
                    if failures_in_a_row < RETRIES {
                        continue;
                    }
                    failures_in_a_row = 0;
                    // The controller's error policy: again in 5 s; a controller that fails
                    // for long gets nowhere, and the simulation stops.
                    let since = *failing_since.get_or_insert(now);
                    if now.duration_since(since) >= GIVE_UP {
                        run.recorder.note(
                            now,
                            &format!(
                                "Stopped: every pass failed for {}",
                                canary_core::api::duration::format_duration(GIVE_UP)
                            ),
                        );
                        break;
                    }
                    now.checked_add(SignedDuration::from_secs(5)).ok()
                }
            };
            let approval = self.config.approval_due(self.plan, &run.status().await?);
            let correction = git.as_ref().and_then(gitops::Repository::next_due);
            let next = [
                requeue,
                approval,
                cluster.controllers.next_event(),
                correction,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            // Virtual time moves on by at least a second, so a wait always ends.
            let next = next.max(
                now.checked_add(SignedDuration::from_secs(1))
                    .unwrap_or(next),
            );
            let limit = match ended {
                Some(ended) => ended.checked_add(SETTLE).unwrap_or(ended).min(end),
                None => end,
            };
            if next > limit {
                break;
            }
            now = next;
            clock.set(now);
            if let Some(git) = &mut git {
                match git.sync(&cluster, now, false).await {
                    Ok(corrected) => {
                        for what in corrected {
                            run.recorder.note(
                                now,
                                &format!(
                                    "GitOps: {} applied {what} again: it had drifted from Git",
                                    git.tool()
                                ),
                            );
                        }
                    }
                    Err(error) => run.recorder.error(now, &error),
                }
            }
            cluster.step(now).await;
            run.look(now).await?;
        }
        let finished = ended.unwrap_or(now).min(end);
        let settled = now.max(finished);
        let status = run.status().await?;
        let history = run.history.clone();
        let excess = run.max_excess;
        let stable_replaced = run.stable_pods.replaced();
        let mut report = run.recorder.finish(
            &status,
            finished,
            status.routing.route.weight,
            &history,
            &model,
        );
        let summary = &mut report.summary;
        let (unserved, outside) = history.unserved_and_outside_release(&model, settled);
        summary.unserved_requests = Some(unserved);
        summary.max_canary_excess = Some((excess * 100.0).round() / 100.0);
        summary.canary_requests_outside_release = Some(outside);
        summary.stable_pods_replaced_before_promotion = Some(stable_replaced);
        if let Some(git) = &git {
            summary.gitops_corrections = Some(git.corrections());
            summary.left_on_user_objects = Some(git.left_on_user_objects(&cluster).await?);
        }
        Ok(report)
    }
}

/// The state of one simulation run.
struct Run<'a> {
    plan: &'a RolloutPlan,
    config: &'a SimConfig,
    cluster: &'a cluster::Cluster,
    rollouts: &'a kube::Api<crate::crd::Rollout>,
    /// The running controller's context.
    context: Arc<Context>,
    /// Starts the controller afresh.
    start_controller: Box<dyn Fn() -> Arc<Context> + Send + Sync>,
    /// Whether the controller restarts before every pass.
    restarting: bool,
    /// The passes the controller completed, not yet recorded.
    passes: Arc<Mutex<Vec<Reconciled>>>,
    history: ServedHistory,
    recorder: Recorder,
    /// Every request match of the plan: what users who carry one send, all along.
    matches: Vec<RequestMatch>,
    /// The largest canary excess seen, in percentage points.
    max_excess: f64,
    /// Whether the last pass failed half-way (its status saved, its actions not all done).
    interrupted: bool,
    /// The rules the data plane broke at the last look, to say each once.
    broken: Vec<String>,
    /// Why some requests were last answered by nobody, to say it once per change.
    unserved_because: Option<String>,
    /// The stable pods that ran when the release was asked for.
    stable_pods: StablePods,
}

/// The stable pods that ran when the new revision was asked for, and those of them gone before
/// the release began promoting.
#[derive(Default)]
struct StablePods {
    /// The uids of the stable workload's pods when the release was asked for.
    running: std::collections::BTreeSet<String>,
    /// Of those, the ones gone before promotion.
    gone: std::collections::BTreeSet<String>,
    /// Whether the release has begun promoting: pods going after that are promotion's.
    promoting: bool,
}

impl StablePods {
    /// Remembers the stable workload's pods among `objects`.
    fn remember(&mut self, plan: &RolloutPlan, objects: Vec<Value>) {
        self.running = stable_pod_uids(plan, &World::new(objects));
    }

    /// Looks at the pods of `world` in `phase`.
    fn look(&mut self, phase: canary_core::Phase, world: &World) {
        self.promoting |= matches!(
            phase,
            canary_core::Phase::Promoting
                | canary_core::Phase::Finalising
                | canary_core::Phase::Succeeded
        );
        if self.promoting || self.running.is_empty() {
            return;
        }
        let live: std::collections::BTreeSet<&str> = world
            .all("Pod")
            .filter_map(|pod| pod.pointer("/metadata/uid").and_then(Value::as_str))
            .collect();
        for uid in &self.running {
            if !live.contains(uid.as_str()) {
                self.gone.insert(uid.clone());
            }
        }
    }

    /// How many stable pods went before promotion.
    fn replaced(&self) -> u64 {
        u64::try_from(self.gone.len()).unwrap_or(u64::MAX)
    }
}

/// The uids of the pods of `plan`'s stable workload in `world`.
fn stable_pod_uids(plan: &RolloutPlan, world: &World) -> std::collections::BTreeSet<String> {
    let stable = plan.rollout.spec.workload_ref.name.as_str();
    world
        .all("Pod")
        .filter(|pod| {
            pod.pointer("/metadata/namespace").and_then(Value::as_str)
                == Some(plan.namespace.as_str())
        })
        .filter_map(|pod| {
            let reference = canary_core::sim::dataplane::PodRef {
                namespace: plan.namespace.clone(),
                name: pod.pointer("/metadata/name")?.as_str()?.to_owned(),
            };
            (world.workload_of(&reference, plan.workload).as_deref() == Some(stable))
                .then(|| pod.pointer("/metadata/uid")?.as_str().map(str::to_owned))
                .flatten()
        })
        .collect()
}

impl Run<'_> {
    /// The Rollout's status now.
    async fn status(&self) -> Result<RolloutStatus> {
        Ok(self
            .rollouts
            .get(&self.plan.name)
            .await?
            .status
            .map(|status| status.engine)
            .unwrap_or_default())
    }

    /// Controller passes at `now`, with the cluster moving on after each: a pass whose writes
    /// make the kube-controller-manager change something is followed by another, as the
    /// controller's watches would wake it. The last pass the driver completed, if it did (a
    /// pass that only adds the finalizer, or fails, completes none).
    async fn pass(&mut self, now: Timestamp) -> Option<Reconciled> {
        let mut last = None;
        for _ in 0..WAKEUPS {
            last = self.pass_once(now).await;
            let changed = self.cluster.step(now).await;
            if let Err(error) = self.look(now).await {
                self.recorder.error(now, &error);
            }
            if !changed || last.is_none() {
                break;
            }
        }
        last
    }

    /// One controller pass at `now`.
    async fn pass_once(&mut self, now: Timestamp) -> Option<Reconciled> {
        self.cluster.step(now).await;
        if self.restarting {
            self.context = (self.start_controller)();
        }
        let outcome = match self.rollouts.get(&self.plan.name).await {
            Ok(rollout) => reconcile(Arc::new(rollout), Arc::clone(&self.context))
                .await
                .map(|_| ()),
            Err(error) => Err(Error::from(error)),
        };
        let completed: Vec<Reconciled> = self
            .passes
            .lock()
            .map(|mut passes| passes.drain(..).collect())
            .unwrap_or_default();
        for pass in &completed {
            self.recorder.record(now, pass);
        }
        self.interrupted = outcome.is_err();
        if let Err(error) = &outcome {
            self.recorder.error(now, error);
            // A controller whose pass failed half-way starts again, as a crashed one would.
            self.context = (self.start_controller)();
        }
        completed.into_iter().last().filter(|_| outcome.is_ok())
    }

    /// Asks the data plane who answers users' requests at `now`, and records it.
    async fn look(&mut self, now: Timestamp) -> Result<()> {
        let status = self.status().await?;
        let world = World::new(self.cluster.server.snapshot());
        self.stable_pods.look(status.phase, &world);
        let probe = probe::probe(self.plan, &world, &self.matches);
        let split = served::split_of(&probe);
        self.history
            .observe(now, split, served::route_sends_canary(&status));
        // The status is saved before the pass acts on it, so a pass that failed half-way
        // leaves a route the status no longer shows until the pass is retried.
        if !self.interrupted {
            self.max_excess = self.max_excess.max(served::canary_excess(&probe, &status));
            self.note_broken_rules(now, &world, &probe, &status);
        }
        self.recorder
            .observe(now, served::shares_of(&split, self.config.match_share));
        self.note_unserved(now, &probe);
        Ok(())
    }

    /// Says in the timeline which rules of what users' requests may get the data plane breaks
    /// (see [`invariants`]), when that starts or changes; unanswered requests are told apart.
    fn note_broken_rules(
        &mut self,
        now: Timestamp,
        world: &World,
        probe: &Probe,
        status: &RolloutStatus,
    ) {
        let expected = Expectation {
            route: &status.routing.route,
            canary_available: invariants::canary_fully_available(self.plan, world),
            probed_matches: &self.matches,
            only_rollout_pods: false,
        };
        let broken: Vec<String> = invariants::violations(self.plan, &expected, probe)
            .into_iter()
            .filter(|v| v.rule != Rule::Unserved)
            .map(|v| format!("{BROKEN_RULE}: {v}"))
            .collect();
        if broken != self.broken {
            for rule in broken.iter().filter(|b| !self.broken.contains(b)) {
                self.recorder.note(now, rule);
            }
            self.broken = broken;
        }
    }

    /// Says in the timeline why requests go unanswered, when that starts or changes.
    fn note_unserved(&mut self, now: Timestamp, probe: &Probe) {
        let why = probe.worst_unserved().map(|worst| {
            format!(
                "Unserved: {} ({}): {}% answered by nobody: {}",
                worst.caller,
                worst.request,
                (worst.none * 1000.0).round() / 10.0,
                worst
                    .unserved_because
                    .as_deref()
                    .unwrap_or("no reason given")
            )
        });
        if why != self.unserved_because {
            if let Some(why) = &why {
                self.recorder.note(now, why);
            }
            self.unserved_because = why;
        }
    }
}

/// Every request match of `plan`'s steps, once each.
fn plan_matches(plan: &RolloutPlan) -> Vec<RequestMatch> {
    let mut matches: Vec<RequestMatch> = Vec::new();
    for step in &plan.steps {
        for wanted in &step.route.matches {
            if !matches.contains(wanted) {
                matches.push(wanted.clone());
            }
        }
    }
    matches
}
