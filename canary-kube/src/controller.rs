//! The controller: `kube::runtime::Controller` over Rollouts, running the core driver against
//! the Deployment workload provider, a traffic provider per Rollout, and the status
//! subresource.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use canary_core::analysis::destinations::Destinations;
use canary_core::engine::driver::{Driver, Reconciled};
use canary_core::engine::machine::EventKind;
use canary_core::engine::machine::Verification;
use canary_core::engine::providers::{Clock, MetricProvider, TrafficProvider, WebhookRunner};
use canary_core::traffic::Registry;
use canary_core::workload::WorkloadKind;
use canary_core::{RolloutPlan, RolloutStatus, RouteState};
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::request::Kind;
use crate::cache::{Cache, Touched};
use crate::command;
use crate::crd::{Rollout, SPEC_KEEPER};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::retry::Backoff;
use crate::shard::Shard;
use crate::store::KubeStatusStore;
use crate::workload::{ClusterWorkload, FIELD_MANAGER, Hold, ROLE, ROLLOUT};

/// The finalizer that resets routes and removes the canary when a Rollout is deleted.
pub const FINALIZER: &str = "canary.rs/cleanup";

/// How often an idle Rollout is looked at again without a change, by default.
pub const RESYNC: Duration = Duration::from_secs(300);

/// How many Rollouts are reconciled at once, per namespace the controller is given (one
/// controller for a cluster-wide install; Argo Rollouts runs 10 workers by default). A pass
/// that reads from the caches takes well under a millisecond of work plus its writes' round
/// trips; unbounded, a resync of thousands of Rollouts would put thousands of passes in flight
/// at once against the API server, and the runtime's scheduler would rescan its held
/// requests on every wake-up.
pub const CONCURRENCY: u16 = 32;

/// Makes the traffic provider of a Rollout.
pub trait TrafficFactory: Send + Sync {
    /// The provider for `plan` (the same state for the same Rollout across passes), talking
    /// through `client` (the controller's: it reads from the watch caches, see
    /// [`crate::cache`]).
    fn provider(&self, client: &Client, plan: &RolloutPlan) -> Result<Arc<dyn TrafficProvider>>;

    /// The providers a Rollout may name: the built-in ones, and the plugins this factory
    /// makes providers for.
    fn registry(&self) -> Registry {
        Registry::builtin()
    }
}

/// Sees every reconcile pass the driver completes (e.g. to draw a simulation's timeline).
pub type PassObserver = Arc<dyn Fn(&Reconciled) + Send + Sync>;

/// Everything a reconcile pass needs.
pub struct Context {
    /// The cluster: reads from the watch caches of `cache`, writes to the API server.
    pub client: Client,
    /// The watch caches the client reads from.
    pub cache: Cache,
    /// The share of the Rollouts this controller reconciles (all of them when `None`).
    pub shard: Option<Shard>,
    /// How often an idle Rollout is looked at again without a change ([`RESYNC`]).
    pub resync: Duration,
    /// Traffic providers.
    pub traffic: Arc<dyn TrafficFactory>,
    /// Metric measurements.
    pub measurements: Arc<dyn MetricProvider>,
    /// Webhook calls.
    pub webhooks: Arc<dyn WebhookRunner>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Told of every pass the driver completes, if set.
    pub observer: Option<PassObserver>,
    /// The Prometheus servers and webhooks Rollouts may name; a Rollout naming any other is
    /// refused before anything is sent or changed. Allows nothing unless set.
    pub destinations: Destinations,
    /// Failed passes in a row per Rollout, for the delay before the next try.
    pub retries: Backoff<ObjectRef<Rollout>>,
}

impl Context {
    /// A context reporting events as `controller` (e.g. the Deployment's name), reading
    /// through watch caches over `client` (the API server's).
    pub fn new(
        client: Client,
        traffic: Arc<dyn TrafficFactory>,
        measurements: Arc<dyn MetricProvider>,
        webhooks: Arc<dyn WebhookRunner>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        controller: &str,
    ) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let cache = Cache::new(client);
        Context {
            recorder: Recorder::new(cache.api().clone(), reporter),
            client: cache.client(),
            cache,
            shard: None,
            resync: RESYNC,
            traffic,
            measurements,
            webhooks,
            clock,
            metrics,
            observer: None,
            destinations: Destinations::default(),
            retries: Backoff::default(),
        }
    }

    /// This context, letting Rollouts name the Prometheus servers and webhooks `destinations`
    /// allows.
    pub fn with_destinations(mut self, destinations: Destinations) -> Self {
        self.destinations = destinations;
        self
    }

    /// This context, reading every object from the API server in every pass (its watches
    /// only wake the controller): what the controller costs without caches.
    pub fn without_cache(mut self) -> Self {
        self.cache = Cache::passthrough(self.cache.api().clone());
        self.client = self.cache.client();
        self
    }

    /// This context, looking at an idle Rollout again every `resync` (at least a second).
    pub fn with_resync(mut self, resync: Duration) -> Self {
        self.resync = resync.max(Duration::from_secs(1));
        self
    }

    /// This context, reconciling only the Rollouts of `shard`.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }

    /// This context, telling `observer` of every pass the driver completes.
    pub fn with_observer(mut self, observer: PassObserver) -> Self {
        self.observer = Some(observer);
        self
    }
}

/// Runs the controller until `shutdown` completes: every Rollout in `namespaces` (every
/// namespace when empty) and in the context's shard, woken by changes to it, to its canary
/// Deployment and to its stable Deployment. With namespaces given, every watch is
/// namespaced, so the controller needs rights in those namespaces only (see
/// `deploy/rbac-namespaced.yaml`). Passes read from the watch caches of the context, which
/// keep these namespaces only.
pub async fn run(
    context: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    context.cache.scope_to(&namespaces);
    let shutdown = shutdown.shared();
    if namespaces.is_empty() {
        run_in(context, None, shutdown).await;
        return;
    }
    futures::future::join_all(
        namespaces
            .iter()
            .map(|namespace| run_in(context.clone(), Some(namespace), shutdown.clone())),
    )
    .await;
}

/// The resource of the workload kind `kind`, as the caches name it.
fn workloads_of(kind: WorkloadKind) -> Kind {
    let descriptor = kind.descriptor();
    let (group, version) = descriptor
        .api_version
        .split_once('/')
        .unwrap_or(("", descriptor.api_version));
    Kind {
        group: group.to_owned(),
        version: version.to_owned(),
        plural: descriptor.plural.to_owned(),
    }
}

/// The controller over the Rollouts of `namespace` (all namespaces when `None`).
async fn run_in(
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let rollouts = match namespace {
        Some(namespace) => Api::<Rollout>::namespaced(context.cache.api().clone(), namespace),
        None => Api::<Rollout>::all(context.cache.api().clone()),
    };
    let (store, writer) = reflector::store();
    let workloads = Arc::new(Workloads::default());
    let index = workloads.clone();
    let shard = context.shard;
    let ours = move |event: &watcher::Event<Rollout>| match event {
        watcher::Event::Apply(rollout)
        | watcher::Event::InitApply(rollout)
        | watcher::Event::Delete(rollout) => shard.is_none_or(|shard| {
            shard.owns(
                rollout.namespace().as_deref().unwrap_or_default(),
                &rollout.name_any(),
            )
        }),
        watcher::Event::Init | watcher::Event::InitDone => true,
    };
    let rollout_events = reflector(
        writer,
        watcher(rollouts, watcher::Config::default())
            .default_backoff()
            .try_filter(move |event| std::future::ready(ours(event)))
            .inspect_ok(move |event| index.record(event)),
    )
    .touched_objects();
    // Workloads (of every kind) wake their Rollouts from the cache's own watch, after the
    // cache has kept the change: a pass woken by an edit reads the edit.
    let woken = futures::stream::select_all(WorkloadKind::ALL.into_iter().filter_map(|kind| {
        let touched = context.cache.touched(&workloads_of(kind), namespace)?;
        Some(wake_ups(touched, store.clone(), workloads.clone()).boxed())
    }));
    let passes = context.clone();
    Controller::for_stream(rollout_events, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            match result {
                Ok((rollout, _)) => passes.retries.succeeded(&rollout),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
            std::future::ready(())
        })
        .await;
}

/// The Rollouts to reconcile when workloads change: a canary workload's, by its label (it has
/// no owner reference, see `crate::workload`); a stable workload's, by the Rollouts naming
/// it. When the wake-ups fall behind, every Rollout.
fn wake_ups(
    touched: tokio::sync::broadcast::Receiver<Touched>,
    rollouts: reflector::Store<Rollout>,
    workloads: Arc<Workloads>,
) -> impl futures::Stream<Item = ObjectRef<Rollout>> + Send {
    futures::stream::unfold(touched, move |mut touched| {
        let rollouts = rollouts.clone();
        let workloads = workloads.clone();
        async move {
            let refs = match touched.recv().await {
                Ok(deployment) => {
                    let mut refs = workloads.naming(&deployment.namespace, &deployment.name);
                    if deployment.labels.get(ROLE).map(String::as_str) == Some("canary")
                        && let Some(name) = deployment.labels.get(ROLLOUT)
                    {
                        refs.push(ObjectRef::new(name).within(&deployment.namespace));
                    }
                    refs
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "workload changes came faster than they were read: every Rollout is looked at");
                    rollouts
                        .state()
                        .iter()
                        .map(|rollout| ObjectRef::from_obj(&**rollout))
                        .collect()
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            Some((futures::stream::iter(refs), touched))
        }
    })
    .flatten()
}

/// Which Rollouts name which stable Deployment (`workloadRef`), kept from the Rollouts' watch.
#[derive(Default)]
struct Workloads {
    index: Mutex<WorkloadIndex>,
}

/// `(namespace, name)` keys both ways.
#[derive(Default)]
struct WorkloadIndex {
    rollouts: HashMap<(String, String), BTreeSet<String>>,
    workload: HashMap<(String, String), String>,
}

impl Workloads {
    fn record(&self, event: &watcher::Event<Rollout>) {
        let (rollout, keep) = match event {
            watcher::Event::Apply(rollout) | watcher::Event::InitApply(rollout) => (rollout, true),
            watcher::Event::Delete(rollout) => (rollout, false),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let namespace = rollout.namespace().unwrap_or_default();
        let name = rollout.name_any();
        // A Rollout may have changed the Deployment it names.
        if let Some(before) = index.workload.remove(&(namespace.clone(), name.clone())) {
            let key = (namespace.clone(), before);
            if let Some(names) = index.rollouts.get_mut(&key) {
                names.remove(&name);
                if names.is_empty() {
                    index.rollouts.remove(&key);
                }
            }
        }
        if keep {
            let workload = rollout.spec.spec.workload_ref.name.clone();
            index
                .rollouts
                .entry((namespace.clone(), workload.clone()))
                .or_default()
                .insert(name.clone());
            index.workload.insert((namespace, name), workload);
        }
    }

    fn naming(&self, namespace: &str, deployment: &str) -> Vec<ObjectRef<Rollout>> {
        let index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        index
            .rollouts
            .get(&(namespace.to_owned(), deployment.to_owned()))
            .into_iter()
            .flatten()
            .map(|name| ObjectRef::new(name).within(namespace))
            .collect()
    }
}

/// One pass over one Rollout.
pub async fn reconcile(rollout: Arc<Rollout>, context: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let api = Api::<Rollout>::namespaced(context.client.clone(), &namespace);
    if rollout.meta().deletion_timestamp.is_some() {
        let outcome = finalize(&rollout, &api, &context).await;
        context.metrics.reconciled(started.elapsed().as_secs_f64());
        return outcome;
    }
    // A Rollout refused (an invalid spec, a destination not allowed) is not acted on at all:
    // not even the finalizer is added, so deleting it later never undoes anything for it.
    let plan = match admitted(&rollout, &context) {
        Ok(plan) => plan,
        Err((reason, why)) => {
            let outcome = refuse(&rollout, &api, reason, &why, &context)
                .await
                .map(|()| Action::await_change());
            context.metrics.reconciled(started.elapsed().as_secs_f64());
            return outcome;
        }
    };
    let outcome = finalizer(&api, FINALIZER, rollout, |event| async {
        match event {
            Finalizer::Apply(rollout) => apply(&rollout, plan, &context).await,
            // Not reached: a Rollout being deleted is finalized above.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        kube::runtime::finalizer::Error::AddFinalizer(error)
        | kube::runtime::finalizer::Error::RemoveFinalizer(error) => Error::Kube(error),
        other => Error::Finalizer(other.to_string()),
    });
    context.metrics.reconciled(started.elapsed().as_secs_f64());
    outcome
}

/// What the controller does after a failed pass: count it by the class of its error, and try
/// again after a delay that doubles with each failure of this Rollout in a row (5 s up to
/// 5 min), sooner for a first conflict, at least [`crate::retry::INVALID_RETRY`] for an
/// object that is not as needed, the longest for a fatal error (see
/// [`crate::retry::delay_for`]).
pub fn error_policy(rollout: Arc<Rollout>, error: &Error, context: Arc<Context>) -> Action {
    let class = error.class();
    context.metrics.failed(class.label());
    let key = ObjectRef::from_obj(&*rollout);
    let backoff = context.retries.failed(key.clone());
    Action::requeue(crate::retry::delay_for(
        class,
        context.retries.failures(&key),
        backoff,
    ))
}

/// The Rollout as the core engine reads it.
fn plan_of(
    rollout: &Rollout,
    registry: &Registry,
) -> std::result::Result<RolloutPlan, canary_core::api::validate::ValidationErrors> {
    plan_with(rollout, rollout.spec.spec.clone(), registry)
}

/// The Rollout with `spec` as the core engine reads it.
fn plan_with(
    rollout: &Rollout,
    spec: canary_core::api::spec::RolloutSpec,
    registry: &Registry,
) -> std::result::Result<RolloutPlan, canary_core::api::validate::ValidationErrors> {
    let file = canary_core::Rollout {
        api_version: canary_core::api::spec::API_VERSION.to_owned(),
        kind: canary_core::api::spec::KIND.to_owned(),
        metadata: canary_core::api::spec::Metadata {
            name: rollout.name_any(),
            namespace: rollout.namespace(),
            labels: rollout.labels().clone(),
            annotations: BTreeMap::new(),
        },
        spec,
    };
    canary_core::api::validate::validate_with(&file, registry)
}

/// The plan of the last spec the controller acted on (kept in the status), when the spec as
/// it is now does not validate.
fn last_valid_plan(rollout: &Rollout, registry: &Registry) -> Option<RolloutPlan> {
    let kept = rollout.status.as_ref()?.last_valid_spec.clone()?;
    let spec = serde_json::from_value(kept).ok()?;
    plan_with(rollout, spec, registry).ok()
}

/// Keeps the spec the controller is about to act on in the status (see
/// [`crate::crd::RolloutStatus::last_valid_spec`]); no write when it is kept already.
async fn keep_valid_spec(rollout: &Rollout, api: &Api<Rollout>) -> Result<()> {
    let spec = serde_json::to_value(&rollout.spec.spec)
        .map_err(|e| Error::Invalid(format!("cannot encode the spec: {e}")))?;
    let kept = rollout
        .status
        .as_ref()
        .and_then(|status| status.last_valid_spec.as_ref());
    if kept == Some(&spec) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "canary.rs/v1alpha1",
        "kind": "Rollout",
        "status": {"lastValidSpec": spec},
    });
    api.patch_status(
        &rollout.name_any(),
        &PatchParams::apply(SPEC_KEEPER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// The plan of a Rollout the controller may act on, or why not (a reason and the errors): its
/// spec must validate and name only destinations this controller allows.
fn admitted(
    rollout: &Rollout,
    context: &Context,
) -> std::result::Result<RolloutPlan, (&'static str, String)> {
    let plan = plan_of(rollout, &context.traffic.registry())
        .map_err(|errors| ("InvalidSpec", errors.to_string()))?;
    let refused = context.destinations.refused(&plan);
    if !refused.is_empty() {
        let why: Vec<String> = refused.iter().map(ToString::to_string).collect();
        return Err(("DestinationNotAllowed", why.join("; ")));
    }
    Ok(plan)
}

async fn apply(rollout: &Rollout, plan: RolloutPlan, context: &Context) -> Result<Action> {
    let name = rollout.name_any();
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let api = Api::<Rollout>::namespaced(context.client.clone(), &namespace);
    keep_valid_spec(rollout, &api).await?;
    let workload = crate::workload::for_plan(
        context.client.clone(),
        &plan,
        rollout
            .status
            .as_ref()
            .and_then(|status| status.stable_revision.clone()),
    );
    if workload.hold().await? == Hold::HeldLate {
        publish(
            context,
            rollout,
            EventKind::Warning,
            "StableRolledBeforeHold",
            &format!(
                "the stable {} {namespace}/{} began rolling its new pod template before \
                 canary held it: its new pods serve the stable share untested until the release \
                 ends (install canary's admission webhook to hold it in the same request)",
                plan.workload.kind, plan.rollout.spec.workload_ref.name
            ),
        )
        .await;
    }
    let traffic = context.traffic.provider(&context.client, &plan)?;
    let store = KubeStatusStore::new(api, &name);
    let driver = Driver::new(&plan, &*traffic, &*workload, &store)
        .metrics(&*context.measurements)
        .webhooks(&*context.webhooks);
    let now = context.clock.now();
    let before = rollout
        .status
        .clone()
        .map(|status| status.engine)
        .unwrap_or_default();
    let pass = match command::pending(rollout.annotations().into()) {
        Some(Ok((id, command))) if id > before.commands.last_command => {
            driver.command(id, command, now).await?
        }
        Some(Err(why)) => {
            publish(context, rollout, EventKind::Warning, "CommandRefused", &why).await;
            driver.reconcile(now).await?
        }
        _ => driver.reconcile(now).await?,
    };
    if let Some(observer) = &context.observer {
        observer(&pass);
    }
    for event in &pass.events {
        publish(context, rollout, event.kind, &event.reason, &event.message).await;
    }
    let step_ended = (pass.status.step != before.step || pass.status.phase != before.phase)
        .then(|| {
            before
                .gate
                .gate_since
                .map(|since| now.duration_since(since).as_secs_f64())
        })
        .flatten();
    context
        .metrics
        .rollout(&namespace, &name, &pass.status, step_ended);
    Ok(next(&pass, context.resync))
}

/// When to look again: when the engine says, else after `resync`.
fn next(pass: &Reconciled, resync: Duration) -> Action {
    match pass.requeue_after {
        Some(after) => Action::requeue(after.unsigned_abs().max(Duration::from_millis(200))),
        None => Action::requeue(resync),
    }
}

/// A Rollout whose spec breaks the rules, or names a destination this controller does not
/// allow: say so (`reason`, `errors`) in its status and an event, touch nothing.
async fn refuse(
    rollout: &Rollout,
    api: &Api<Rollout>,
    reason: &str,
    errors: &str,
    context: &Context,
) -> Result<()> {
    let before = rollout.status.as_ref().map(|status| &status.engine);
    let mut status: RolloutStatus = before.cloned().unwrap_or_default();
    let now = context.clock.now();
    status.set_condition("Valid", false, reason, errors, now);
    status.message = match reason {
        "InvalidSpec" => format!("the spec is invalid: {errors}"),
        _ => format!("refused: {errors}"),
    };
    if before != Some(&status) {
        let patch =
            json!({"apiVersion": "canary.rs/v1alpha1", "kind": "Rollout", "status": status});
        api.patch_status(
            &rollout.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        publish(context, rollout, EventKind::Warning, reason, errors).await;
    }
    Ok(())
}

/// How often a Rollout being deleted is looked at while its cleanup waits (for the route to
/// be in effect, or the canary's pods to go).
const CLEANUP_POLL: Duration = Duration::from_secs(1);

/// A Rollout being deleted: its cleanup, step by step over passes, then its finalizer removed
/// (on condition that the Rollout is still as read, so a finalizer added since is kept).
/// Without the finalizer there is nothing left to do.
async fn finalize(rollout: &Rollout, api: &Api<Rollout>, context: &Context) -> Result<Action> {
    let finalizers = rollout.finalizers();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if let Cleanup::Waiting(why) = cleanup(rollout, context).await? {
        tracing::debug!(rollout = %rollout.name_any(), why, "cleanup waits");
        return Ok(Action::requeue(CLEANUP_POLL));
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch = json!({"metadata": {
        "finalizers": kept,
        "resourceVersion": rollout.resource_version(),
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    match api
        .patch(&rollout.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        // Gone already: another pass finished first.
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => return Err(error.into()),
    }
    Ok(Action::await_change())
}

/// Where a Rollout's cleanup is.
enum Cleanup {
    /// Everything is undone.
    Done,
    /// A step is not over yet (why): look again soon.
    Waiting(String),
}

/// The Rollout is being deleted: undone in the only order that never leaves a request without
/// a backend nor lets the stable Service select canary pods:
///
/// 1. the route back to stable, and seen in effect (the canary gets no traffic);
/// 2. the canary Deployment deleted in the foreground, and waited for until its pods are gone
///    (while they run, the stable Service stays narrowed to stable pods: they carry its labels);
/// 3. the stable Deployment let go;
/// 4. the provider's objects removed and the stable Service's selector given back.
///
/// The canary Deployment has no owner reference to the Rollout, so however the Rollout is
/// deleted (Argo CD deletes in the foreground) the garbage collector never removes the canary
/// before step 1.
///
/// When the user's stable Deployment or Service went with the Rollout (an Argo CD Application
/// deleted whole), the route is still sent back to stable where its objects remain, but not
/// waited for, and what the provider cannot find to give back is not an error: a cleanup
/// never waits on objects that will not come back. A Rollout is cleaned up from the last spec
/// the controller acted on (kept in its status), whatever its spec says now (it may no longer
/// validate, or name other objects); one never acted on routed and held nothing: only a canary
/// carrying its labels, if any, is removed.
async fn cleanup(rollout: &Rollout, context: &Context) -> Result<Cleanup> {
    let namespace = rollout.namespace().unwrap_or_else(|| "default".to_owned());
    let name = rollout.name_any();
    // What was acted on: the spec kept when the controller last acted. A Rollout from before
    // the spec was kept is cleaned up from its spec if it would be acted on now.
    let kept = rollout
        .status
        .as_ref()
        .and_then(|status| status.last_valid_spec.as_ref());
    let (plan, note) = match last_valid_plan(rollout, &context.traffic.registry()) {
        Some(plan) => {
            let current = serde_json::to_value(&rollout.spec.spec).ok();
            let note = if current.as_ref() == kept {
                String::new()
            } else {
                " (from the last spec acted on: the spec changed since)".to_owned()
            };
            (Some(plan), note)
        }
        None if kept.is_none() => match admitted(rollout, context) {
            Ok(plan) => (Some(plan), String::new()),
            Err((_, why)) => (None, format!(" (nothing else was ever acted on: {why})")),
        },
        None => (
            None,
            " (the spec kept in the status does not validate)".to_owned(),
        ),
    };
    let Some(plan) = plan else {
        // Nothing was acted on for this Rollout: only a canary carrying its labels is removed,
        // and no route nor stable Deployment is touched (they may be another Rollout's).
        let target = &rollout.spec.spec.workload_ref;
        let kind = WorkloadKind::named(&target.api_version, &target.kind)
            .unwrap_or(WorkloadKind::Deployment);
        let workload = crate::workload::for_kind_without_plan(
            kind,
            context.client.clone(),
            &namespace,
            &name,
            &target.name,
        );
        if let Some(waiting) = remove_canary(&*workload, false).await? {
            return Ok(waiting);
        }
        context.metrics.forget(&namespace, &name);
        let message = format!("canary removed{note}");
        publish(context, rollout, EventKind::Normal, "Deleted", &message).await;
        return Ok(Cleanup::Done);
    };
    let traffic = context.traffic.provider(&context.client, &plan)?;
    let workload = crate::workload::for_plan(context.client.clone(), &plan, None);
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(context.client.clone(), &namespace);
    let stable_gone = !workload.stable_exists().await?
        || services
            .get_opt(&plan.rollout.spec.service.name)
            .await?
            .is_none();
    match traffic.reset().await {
        Ok(_) => {}
        Err(error) if stable_gone => {
            tracing::warn!(rollout = %name, %error, "the stable objects are gone; the route cannot be reset");
        }
        Err(error) => return Err(error.into()),
    }
    if !stable_gone {
        // In effect as the engine counts it: not refused (`Unknown` is a router that cannot
        // tell), and read back, when it can be, as all on stable.
        let seen = traffic.observe(&RouteState::stable()).await?;
        let back = seen.verified != Verification::No
            && seen.route.as_ref().is_none_or(RouteState::is_stable_only);
        if !back {
            return Ok(Cleanup::Waiting(
                "the route back to stable is not in effect yet".to_owned(),
            ));
        }
    }
    if let Some(waiting) = remove_canary(&*workload, true).await? {
        return Ok(waiting);
    }
    match traffic.finalize().await {
        Ok(()) => {}
        Err(error) if stable_gone => {
            tracing::warn!(rollout = %name, %error, "the stable objects are gone; what is left of the route stays");
        }
        Err(error) => return Err(error.into()),
    }
    context.metrics.forget(&namespace, &name);
    let message = format!(
        "routes reset, canary removed, stable {} released{note}",
        plan.workload.kind
    );
    publish(context, rollout, EventKind::Normal, "Deleted", &message).await;
    Ok(Cleanup::Done)
}

/// Removes the canary and, with `release`, lets the stable Deployment go; `Some` while the
/// canary's pods are still going.
async fn remove_canary(workload: &dyn ClusterWorkload, release: bool) -> Result<Option<Cleanup>> {
    workload.remove_canary().await?;
    if !workload.canary_gone().await? {
        return Ok(Some(Cleanup::Waiting(
            "the canary workload and its pods are going".to_owned(),
        )));
    }
    if release {
        workload.release().await?;
    }
    Ok(None)
}

/// Publishes an event on the Rollout; a failure to publish is logged, never fatal.
async fn publish(
    context: &Context,
    rollout: &Rollout,
    kind: EventKind,
    reason: &str,
    message: &str,
) {
    let event = Event {
        type_: match kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        },
        reason: reason.chars().take(128).collect(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &rollout.object_ref(&()))
        .await
    {
        tracing::warn!(%error, reason, "cannot publish an event");
    }
}
