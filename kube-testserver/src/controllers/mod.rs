//! A simulated kube-controller-manager and kubelet over the test server's store: the
//! Deployment, ReplicaSet, DaemonSet and garbage-collector controllers and a kubelet that
//! starts pods.
//!
//! Deployments get ReplicaSets named `<deployment>-<pod-template-hash>`, ReplicaSets get pods
//! named `<replicaset>-<suffix>`, DaemonSets get a pod `<daemonset>-<suffix>` bound to every
//! Node that should run one (Nodes are plain objects: no kubelet reports on them, and a pod's
//! node is not checked by the kubelet), pods become ready `pod_startup` after they start, and
//! objects whose owners are gone (or are deleted in the foreground) are deleted, references to
//! orphaning owners removed; each module cites the upstream code it follows.
//! Deleted pods go away at once (no grace period: a pod is either serving or gone).
//!
//! One *pass* runs the kubelet, the ReplicaSet controller, the DaemonSet controller, the
//! Deployment controller and the garbage collector once each, at one instant, under the
//! store's lock. Time is injected: [`ControllerManager::step`] runs passes at a given
//! (virtual) instant until nothing changes, and [`run`] drives passes in real time, one per
//! short tick while things change, so that clients see the intermediate states a real cluster
//! shows.
//!
//! The store stamps `creationTimestamp` with the wall clock; the controllers never read it for
//! timing (a pod's start is its `status.startTime`, written at the pass's instant), only to
//! order objects by creation together with their uids.

mod daemonset;
mod deployment;
mod gateway;
mod gc;
mod hash;
mod kubelet;
mod meta;
mod replicaset;
mod rolling;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::resources::{Registry, ResourceType};
use super::store::{DeleteOptions, Event, EventType, Inner, Owner, Part, Propagation, lock};
use super::{State, wait_shutdown};

/// The most passes one [`ControllerManager::step`] runs before it gives up on reaching a fixed
/// point (every pass that changes something moves pods or statuses towards the specs, so this
/// is never reached in practice).
const MAX_PASSES: usize = 10_000;

/// The kinds the controllers work on.
pub(super) struct Kinds {
    deployments: ResourceType,
    replicasets: ResourceType,
    daemonsets: ResourceType,
    pods: ResourceType,
    nodes: ResourceType,
}

impl Kinds {
    fn resolve(registry: &Registry) -> Option<Kinds> {
        Some(Kinds {
            deployments: registry.by_plural("apps", "v1", "deployments")?,
            replicasets: registry.by_plural("apps", "v1", "replicasets")?,
            daemonsets: registry.by_plural("apps", "v1", "daemonsets")?,
            pods: registry.by_plural("", "v1", "pods")?,
            nodes: registry.by_plural("", "v1", "nodes")?,
        })
    }
}

/// One pass: the store (locked), the kinds, the instant and the pod start-up time.
pub(super) struct Pass<'a> {
    inner: &'a mut Inner,
    registry: &'a Registry,
    kinds: &'a Kinds,
    now: Timestamp,
    pod_startup: Duration,
}

impl Pass<'_> {
    /// The pod start-up time as a signed duration.
    fn startup(&self) -> SignedDuration {
        SignedDuration::try_from(self.pod_startup).unwrap_or(SignedDuration::MAX)
    }

    fn ns(object: &Value) -> Option<&str> {
        Some(meta::namespace(object)).filter(|ns| !ns.is_empty())
    }

    /// Writes `object` (as the manager), returning the stored object; `None` on refusal
    /// (the next pass reads the store again).
    fn update(
        &mut self,
        kind: &ResourceType,
        object: Value,
        part: Part,
        manager: &str,
    ) -> Option<Arc<Value>> {
        let name = meta::name(&object).to_owned();
        let ns = Self::ns(&object).map(str::to_owned);
        self.inner
            .update(
                kind,
                ns.as_deref(),
                &name,
                object,
                part,
                &Owner::Update(manager.to_owned()),
            )
            .ok()
    }

    /// Creates `object` (as the manager).
    fn create(&mut self, kind: &ResourceType, object: Value, manager: &str) -> Option<Arc<Value>> {
        let ns = Self::ns(&object).map(str::to_owned);
        self.inner
            .create(
                kind,
                ns.as_deref(),
                object,
                false,
                &Owner::Update(manager.to_owned()),
            )
            .ok()
    }

    /// Deletes `object` with its kind's default propagation (finalizers are honoured by the
    /// store).
    fn delete(&mut self, kind: &ResourceType, object: &Value) {
        let ns = Self::ns(object);
        // A refusal (already gone) needs nothing more.
        let _ = self.inner.delete(kind, ns, meta::name(object), None);
    }

    /// Deletes `object` with `propagation`.
    fn delete_with(&mut self, kind: &ResourceType, object: &Value, propagation: Propagation) {
        let ns = Self::ns(object);
        let options = DeleteOptions {
            precondition_rv: None,
            precondition_uid: None,
            propagation: Some(propagation),
        };
        // A refusal (already gone) needs nothing more.
        let _ = self
            .inner
            .delete_with(kind, ns, meta::name(object), &options);
    }

    /// Runs every controller once. Returns whether anything was written.
    fn run(&mut self) -> bool {
        let before = self.inner.rv();
        kubelet::sync_all(self);
        replicaset::sync_all(self);
        daemonset::sync_all(self);
        deployment::sync_all(self);
        gateway::sync_all(self);
        gc::sync_all(self);
        self.inner.rv() != before
    }
}

/// The simulated kube-controller-manager and kubelet of an [`super::ApiServer`], stepped by
/// hand in virtual time (see [`super::ApiServer::controllers`]). Do not step it while the
/// real-time simulator ([`super::ApiServer::simulate_deployments`]) runs on the same server.
#[derive(Clone)]
pub struct ControllerManager {
    state: Arc<State>,
    pod_startup: Duration,
    /// The instant of the last pass.
    last: Arc<Mutex<Option<Timestamp>>>,
}

impl fmt::Debug for ControllerManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerManager")
            .field("pod_startup", &self.pod_startup)
            .finish_non_exhaustive()
    }
}

impl ControllerManager {
    pub(super) fn new(state: Arc<State>, pod_startup: Duration) -> Self {
        Self {
            state,
            pod_startup,
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// How long a pod takes from its start to ready.
    pub fn pod_startup(&self) -> Duration {
        self.pod_startup
    }

    /// One pass of every controller at `now`, under the store's lock. Returns whether
    /// anything was written.
    fn pass(&self, inner: &mut Inner, now: Timestamp) -> bool {
        let Some(kinds) = Kinds::resolve(&self.state.registry) else {
            return false;
        };
        *lock(&self.last) = Some(now);
        Pass {
            inner,
            registry: &self.state.registry,
            kinds: &kinds,
            now,
            pod_startup: self.pod_startup,
        }
        .run()
    }

    /// Runs every controller at virtual time `now` until nothing changes: pods started at `t`
    /// are ready from `t + pod_startup`, ReplicaSets and Deployments are scaled, DaemonSets'
    /// pods placed and replaced, and their statuses written accordingly, orphans collected.
    /// Returns whether anything changed. The same objects and the same instants give the same
    /// results.
    pub fn step(&self, now: Timestamp) -> bool {
        let mut inner = self.state.store.lock();
        let mut changed = false;
        for _ in 0..MAX_PASSES {
            if !self.pass(&mut inner, now) {
                break;
            }
            changed = true;
        }
        changed
    }

    /// The next instant something happens by itself: the earliest time after the last pass
    /// that a started pod becomes ready, or a ready one available (the `minReadySeconds` of
    /// its ReplicaSet or DaemonSet). `None` when nothing is pending or nothing has run yet;
    /// objects written since the last [`ControllerManager::step`] are only seen by the next
    /// one.
    pub fn next_event(&self) -> Option<Timestamp> {
        let last = (*lock(&self.last))?;
        let inner = self.state.store.lock();
        let kinds = Kinds::resolve(&self.state.registry)?;
        let startup = SignedDuration::try_from(self.pod_startup).unwrap_or(SignedDuration::MAX);
        // Only ReplicaSets and DaemonSets with a minReadySeconds make a ready pod's time matter
        // (usually none: then ready pods are not looked at further).
        let slow: std::collections::HashMap<&str, (&Value, i64)> = inner
            .objects_of(&kinds.replicasets, None)
            .chain(inner.objects_of(&kinds.daemonsets, None))
            .filter_map(|owner| {
                let min_ready = meta::int(owner, "/spec/minReadySeconds", 0);
                (min_ready > 0).then(|| (meta::uid(owner), (&**owner, min_ready)))
            })
            .collect();
        inner
            .objects_of(&kinds.pods, None)
            .filter(|pod| !meta::terminating(pod))
            .filter_map(|pod| {
                if !meta::pod_ready(pod) {
                    return meta::time(pod, "/status/startTime")
                        .map(|start| kubelet::ready_at(start, startup));
                }
                // Ready at or before the pass that saw it ready (the kubelet stamps the
                // transition at most at its pass's instant): with no minReadySeconds to wait
                // for, nothing is due.
                if slow.is_empty() {
                    return None;
                }
                let (_, min_ready) = meta::controller_uid(pod)
                    .and_then(|uid| slow.get(uid))
                    .filter(|(owner, _)| meta::controlled_by(pod, owner))?;
                let since = meta::ready_since(pod)?;
                since
                    .checked_add(SignedDuration::from_secs(*min_ready))
                    .ok()
            })
            .filter(|at| *at > last)
            .min()
    }

    /// Makes the current ReplicaSet of Deployment `namespace/deployment` the one named
    /// `<deployment>-<hash>`, labelled `pod-template-hash: hash` and `labels`; see
    /// [`super::ApiServer::name_current_replicaset`].
    pub(super) fn name_current(
        &self,
        namespace: &str,
        deployment: &str,
        hash: &str,
        labels: &Value,
    ) -> bool {
        let mut inner = self.state.store.lock();
        let Some(kinds) = Kinds::resolve(&self.state.registry) else {
            return false;
        };
        let mut pass = Pass {
            inner: &mut inner,
            registry: &self.state.registry,
            kinds: &kinds,
            now: Timestamp::now(),
            pod_startup: self.pod_startup,
        };
        deployment::name_current(&mut pass, namespace, deployment, hash, labels)
    }
}

/// Runs the controllers in real time until shutdown: a pass whenever the store changes or a
/// pod becomes due, and while passes change things, one every `tick` (a fraction of
/// `pod_startup`, 5 to 50 ms). A pass holds the store's lock and looks at every object: after
/// one, at least three times its length goes by before the next, so that with thousands of
/// objects clients still get three quarters of the server's time.
pub(crate) async fn run(state: Arc<State>, pod_startup: Duration) {
    let manager = ControllerManager::new(Arc::clone(&state), pod_startup);
    let tick = (pod_startup / 10).clamp(Duration::from_millis(5), Duration::from_millis(50));
    let mut changes = state.store.subscribe();
    let mut shutdown = state.shutdown.clone();
    // The resource version the last pass saw, and whether a pass is due regardless of what
    // changed since (a pod becoming ready, the first pass, a pass that changed something).
    let mut seen = 0;
    let mut due = true;
    loop {
        let (changed, rest) = {
            let mut inner = state.store.lock();
            let started = std::time::Instant::now();
            let relevant = due || inner.changed_since(seen, concerns_controllers);
            let changed = relevant && manager.pass(&mut inner, Timestamp::now());
            seen = inner.rv();
            // The pass's own writes are not news.
            changes.borrow_and_update();
            let rest = if relevant {
                started.elapsed() * 3
            } else {
                Duration::ZERO
            };
            (changed, rest)
        };
        due = changed;
        if changed || rest > tick {
            tokio::select! {
                () = tokio::time::sleep(if changed { rest.max(tick) } else { rest }) => {}
                () = wait_shutdown(&mut shutdown) => return,
            }
            if changed {
                continue;
            }
        }
        let wait = manager
            .next_event()
            .map(|at| Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default())
            .map_or(Duration::from_secs(1), |d| {
                (d + Duration::from_millis(1)).min(Duration::from_secs(1))
            });
        tokio::select! {
            () = tokio::time::sleep(wait) => due = true,
            changed = changes.changed() => if changed.is_err() { return },
            () = wait_shutdown(&mut shutdown) => return,
        }
    }
}

/// Whether a change may give the controllers work: one to the kinds they manage or read
/// (workloads, pods, nodes, Services and the Gateway API's objects, namespaces), or the
/// deletion of anything (the garbage collector's work). Other writes, e.g. a custom resource's
/// status, wake no pass: with thousands of objects a pass is not free, and it runs under the
/// store's lock.
fn concerns_controllers(event: &Event) -> bool {
    let (group, plural) = (&event.key.0, &event.key.1);
    matches!(group.as_str(), "apps" | "gateway.networking.k8s.io")
        || (group.is_empty()
            && matches!(
                plural.as_str(),
                "pods" | "nodes" | "services" | "namespaces"
            ))
        || matches!(event.kind, EventType::Deleted)
        || meta::terminating(&event.object)
}
