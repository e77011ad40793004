//! An in-memory, stateful Kubernetes API server for tests of code that uses [`kube`].
//!
//! [`ApiServer::start`] binds `127.0.0.1:0` and serves the Kubernetes REST API over plain
//! HTTP/1.1 from a background tokio task, so that a real [`kube::Client`] (from
//! [`ApiServer::client`]) talks to it as to a cluster; the test then reads and seeds the
//! stored objects directly ([`ApiServer::get`], [`ApiServer::list`], [`ApiServer::put`],
//! [`ApiServer::apply_as`]) and inspects every request the client made
//! ([`ApiServer::requests`]).
//!
//! ```
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::Api;
//! use kube::api::PostParams;
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = kube_testserver::ApiServer::start().await?;
//! let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
//! let settings = serde_json::from_value(json!({
//!     "metadata": {"name": "settings"},
//!     "data": {"mode": "fast"},
//! }))?;
//! configmaps.create(&PostParams::default(), &settings).await?;
//!
//! let stored = server.get("v1", "ConfigMap", None, "settings");
//! assert_eq!(stored.map(|o| o["data"]["mode"].clone()), Some(json!("fast")));
//! assert_eq!(server.requests().len(), 1);
//! // The server stops when its last handle is dropped.
//! # Ok(())
//! # }
//! ```
//!
//! # What it implements
//!
//! - Reads and writes: get, list (label and field selectors), watch (history replay,
//!   `410 Gone` on compacted versions, bookmarks, timeouts), create (incl. `generateName`),
//!   replace (optimistic concurrency), delete (finalizers, preconditions), the `status`
//!   subresource, discovery, and `dryRun=All` on every write.
//! - Patches: JSON merge patch, JSON patch, strategic merge patch by each list's merge key
//!   (built-in types only; 415 for custom resources), and server-side apply with each field's
//!   merge type (CRD markers, the built-in types' `+listType`/`+mapType` markers) and
//!   per-manager field ownership in `metadata.managedFields` in the `FieldsV1` shape
//!   (conflicts, `force`).
//! - Validation as the API server validates writes: the built-in kinds by their upstream
//!   validation rules (422 Invalid with field causes; 400 for what would not decode), custom
//!   resources registered with [`ApiServer::register_crd`] by their CRD's structural schema
//!   (pruning, defaults, `fieldValidation`, unknown-field warnings). Objects stored with
//!   [`ApiServer::put`] are not checked.
//! - Admission: validating and mutating hooks ([`ApiServer::add_admission_hook`],
//!   [`ApiServer::add_mutating_hook`]) called as the API server calls webhooks, and imitations
//!   of the Istio, ingress-nginx and Kuma validating webhooks ([`ApiServer::admit_like_upstream`]).
//! - Simulated controllers: a kube-controller-manager and kubelet (Deployments → ReplicaSets →
//!   Pods with rolling updates and Deployment status; DaemonSets → one Pod per matching Node,
//!   by node selector, required node affinity and taints, with `RollingUpdate` (incl.
//!   `maxSurge`) and `OnDelete` updates and DaemonSet status; pods becoming ready; garbage
//!   collection of owned objects) running in real time with [`ApiServer::simulate_deployments`]
//!   or stepped in virtual time through [`ApiServer::controllers`]. Nodes are objects a test
//!   writes like any other (e.g. with [`ApiServer::put`]: name, labels, `spec.taints`); the
//!   DaemonSet controller reads them, and nothing reports on them (no node status, no
//!   eviction of other pods).
//! - Fault injection ([`Faults`]) and a request log ([`LoggedRequest`]) for tests of retries
//!   and of API economy.
//!
//! Built-in types: core `v1` Pods, Services, ConfigMaps, Secrets, Events, Namespaces, Nodes;
//! `apps/v1` Deployments, ReplicaSets and DaemonSets; `networking.k8s.io/v1` Ingresses;
//! `coordination.k8s.io/v1` Leases; `events.k8s.io/v1` Events. Custom resources are added
//! with [`ApiServer::register`] (no schema) or [`ApiServer::register_crd`] (from a
//! `CustomResourceDefinition` document the caller loads).
//!
//! Not modelled: authentication/authorisation, namespace existence, pagination
//! (lists are returned whole), API version conversion, unknown fields of built-in kinds, and
//! CEL rules (`x-kubernetes-validations`) of CRDs.

mod admission;
mod apply;
mod controllers;
mod discovery;
mod error;
mod errors;
mod faults;
mod fields;
mod handlers;
mod http;
mod merge_types;
mod patch;
mod requests;
mod resources;
mod routes;
mod schema;
mod selectors;
mod store;
mod validation;
mod watch;
mod writes;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use admission::{
    AdmissionHook, AdmissionRequest, Denial, IstioValidation, KumaValidation, MutatingHook,
    NginxAdmission, Operation, nginx_ignored_canary_annotations,
};
pub use controllers::ControllerManager;
pub use error::{Error, Result};
pub use faults::Faults;
pub use requests::{LoggedRequest, Verb};
pub use resources::ResourceType;

use resources::Registry;
use store::{Owner, Part, Store, lock, meta_str};

/// State shared by the server's tasks.
#[derive(Debug)]
pub(crate) struct State {
    registry: Registry,
    store: Store,
    faults: Faults,
    log: Mutex<Vec<LoggedRequest>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    addr: String,
}

/// Resolves when shutdown is signalled or every [`ApiServer`] handle is gone.
pub(crate) async fn wait_shutdown(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

struct Shared {
    state: Arc<State>,
    url: String,
    client: kube::Client,
    shutdown: tokio::sync::watch::Sender<bool>,
    simulator: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = lock(&self.simulator).take() {
            task.abort();
        }
    }
}

/// A running test API server. Clones are handles to the same server; it stops when
/// the last handle is dropped or [`ApiServer::shutdown`] is called.
#[derive(Clone)]
pub struct ApiServer {
    shared: Arc<Shared>,
}

impl fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiServer")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Binds `127.0.0.1:0` and serves in a background tokio task.
    pub async fn start() -> std::io::Result<ApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let url = format!("http://{addr}");
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(State {
            registry: Registry::new(),
            store: Store::new(),
            faults: Faults::default(),
            log: Mutex::new(Vec::new()),
            shutdown: shutdown_rx,
            addr,
        });
        let uri: hyper::Uri = url.parse().map_err(std::io::Error::other)?;
        let config = kube::Config::new(uri);
        let client = kube::Client::try_from(config).map_err(std::io::Error::other)?;
        tokio::spawn(http::serve(listener, Arc::clone(&state)));
        let shared = Shared {
            state,
            url,
            client,
            shutdown,
            simulator: Mutex::new(None),
        };
        Ok(ApiServer {
            shared: Arc::new(shared),
        })
    }

    fn state(&self) -> &State {
        &self.shared.state
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// A client for this server: default namespace `default`, no authentication.
    pub fn client(&self) -> kube::Client {
        self.shared.client.clone()
    }

    /// Makes a resource type servable (replacing one with the same group/version/plural).
    pub fn register(&self, resource: ResourceType) {
        self.state().registry.register(resource);
    }

    /// The fault-injection settings, changeable at runtime.
    pub fn faults(&self) -> Faults {
        self.state().faults.clone()
    }

    /// Every request handled so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state().log).clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.state().log).clear();
    }

    /// Reads an object directly (no request is logged). `namespace` is ignored for
    /// cluster-scoped kinds; `None` means `default` for namespaced kinds.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let rt = self.state().registry.by_kind(api_version, kind)?;
        let ns = namespace.unwrap_or("default");
        self.state().store.lock().get(&rt, Some(ns), name).cloned()
    }

    /// Writes an object directly, e.g. to seed a test. A new object is created as by a
    /// POST (uid, resourceVersion, generation, creationTimestamp; unknown fields pruned and
    /// defaults filled in from its CRD's schema, as any write is stored) but keeps its
    /// `.status` and is not refused when invalid; an existing one is replaced (status
    /// included) without a resourceVersion check. Watches see the change. Objects of
    /// unregistered kinds, or without `apiVersion`, `kind` and `metadata.name`, are ignored.
    pub fn put(&self, mut object: Value) {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(rt) = self.state().registry.by_kind(api_version, kind) else {
            return;
        };
        let Some(name) = meta_str(&object, "name").map(str::to_owned) else {
            return;
        };
        let ns = meta_str(&object, "namespace")
            .unwrap_or("default")
            .to_owned();
        if let Some(meta) = store::meta_mut(&mut object) {
            meta.remove("resourceVersion");
        }
        if let Some(schema) = self.state().registry.schema(&rt) {
            // Stored as the server stores any write; a seed may be invalid on purpose.
            let _ = schema.check(&mut object, None);
        }
        let mut inner = self.state().store.lock();
        if inner.get(&rt, Some(&ns), &name).is_none() {
            let _ = inner.create(&rt, Some(&ns), object, true, &Owner::Untracked);
            return;
        }
        let has_status = object.get("status").is_some();
        let _ = inner.update(
            &rt,
            Some(&ns),
            &name,
            object.clone(),
            Part::Main,
            &Owner::Untracked,
        );
        if rt.status_subresource && has_status {
            let _ = inner.update(
                &rt,
                Some(&ns),
                &name,
                object,
                Part::Status,
                &Owner::Untracked,
            );
        }
    }

    /// Every object of a kind, across namespaces, ordered by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        self.with_objects(api_version, kind, |objects| {
            objects.map(|o| Value::clone(o)).collect()
        })
    }

    /// How many objects of a kind, across namespaces, satisfy `predicate` (looked at in place
    /// under the store's lock: with thousands of objects, cheaper than [`ApiServer::list`]).
    pub fn count(
        &self,
        api_version: &str,
        kind: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> usize {
        self.with_objects(api_version, kind, |objects| {
            objects.filter(|o| predicate(o)).count()
        })
    }

    /// `f` over the stored objects of a kind across namespaces, under the store's lock (no
    /// object when the kind is not served).
    fn with_objects<T>(
        &self,
        api_version: &str,
        kind: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = &Arc<Value>>) -> T,
    ) -> T {
        let rt = self.state().registry.by_kind(api_version, kind);
        let inner = self.state().store.lock();
        let mut objects = match &rt {
            Some(rt) => inner.objects_of(rt, None),
            None => Box::new(std::iter::empty()),
        };
        f(&mut objects)
    }

    /// The resource type served for `apiVersion` `api_version` and kind `kind`, if any.
    pub fn resource(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.state().registry.by_kind(api_version, kind)
    }

    /// Every stored object of every registered kind, read at one instant (under the store's
    /// lock, so no write lands half-way): what a data plane sees at that moment.
    pub fn snapshot(&self) -> Vec<Value> {
        let mut kinds = self.state().registry.all();
        // Versions of one kind share their objects.
        kinds.sort_by(|a, b| (&a.group, &a.plural).cmp(&(&b.group, &b.plural)));
        kinds.dedup_by(|a, b| (&a.group, &a.plural) == (&b.group, &b.plural));
        let inner = self.state().store.lock();
        kinds
            .iter()
            .flat_map(|rt| inner.objects_of(rt, None))
            .map(|o| Value::clone(o))
            .collect()
    }

    /// Starts (or restarts with a new delay) the simulated kube-controller-manager and kubelet
    /// in real time: Deployments get ReplicaSets, ReplicaSets get pods, DaemonSets get a pod on
    /// every Node that should run one, pods become ready `ready_after` they start, orphans are
    /// collected (see [`ControllerManager`]).
    pub fn simulate_deployments(&self, ready_after: Duration) {
        let task = tokio::spawn(controllers::run(
            Arc::clone(&self.shared.state),
            ready_after,
        ));
        if let Some(previous) = lock(&self.shared.simulator).replace(task) {
            previous.abort();
        }
    }

    /// The simulated kube-controller-manager and kubelet of this server, to be stepped in
    /// virtual time with [`ControllerManager::step`]; pods become ready `pod_startup` after
    /// they start. Not to be combined with [`ApiServer::simulate_deployments`].
    pub fn controllers(&self, pod_startup: Duration) -> ControllerManager {
        ControllerManager::new(Arc::clone(&self.shared.state), pod_startup)
    }

    /// Makes the current ReplicaSet of Deployment `namespace/deployment` (the one with its pod
    /// template) `<deployment>-<hash>`, with `pod-template-hash: hash` on it, its selector,
    /// template and pods, and `labels` on the ReplicaSet, as if the controller had hashed the
    /// template to `hash`; its pods keep running. Without a current ReplicaSet, one is made
    /// and the controllers give it pods. Returns false when the Deployment does not exist.
    pub fn name_current_replicaset(
        &self,
        namespace: &str,
        deployment: &str,
        hash: &str,
        labels: &Value,
    ) -> bool {
        ControllerManager::new(Arc::clone(&self.shared.state), Duration::ZERO)
            .name_current(namespace, deployment, hash, labels)
    }

    /// Drops the watch event history, as an etcd compaction would: watches resuming
    /// from an older resourceVersion get a 410 Gone `ERROR` event and must relist.
    pub fn compact_history(&self) {
        self.state().store.lock().compact();
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().store.lock().rv()
    }

    /// Stops serving: the accept loop, open watches and the simulator end.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        if let Some(task) = lock(&self.shared.simulator).take() {
            task.abort();
        }
    }
}
