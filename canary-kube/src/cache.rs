//! Reads from watch caches: a [`kube::Client`] whose reads of objects are answered from the
//! objects watches keep in memory, and whose writes go to the API server (and update what is
//! kept, so a pass reads what it wrote).
//!
//! Every part of the controller reads through one client, so no part has to know of caches:
//! the workload provider, each traffic provider (plugins included), the status store. A GET
//! of one object, or a list selected by labels only, is answered from the cache of its
//! resource type once that cache holds the whole first list; the first read of a type starts
//! its watch (so memory follows what canary reads, not the cluster). Anything else goes to the
//! API server: watches, writes, other selectors, subresources, the types left out below, and
//! every read of a type whose watch the controller may not run (a 403 or 404 on its list).
//!
//! What is kept, and how:
//! - with namespaces given ([`Cache::scope_to`]), one watch per type and namespace (the
//!   rights of a namespaced install suffice) and one per cluster-scoped type read, nothing of
//!   other namespaces; without, one watch per type across the cluster;
//! - objects as the API server sent them, as compact JSON (not parsed trees);
//! - Secrets as metadata only: their data never reaches the controller (and only metadata
//!   reads of them are answered);
//! - Pods only as far as they carry canary's role label `canary=…` (the canary's pods are all
//!   the controller lists); other lists of Pods go to the API server;
//! - never Leases (leader election must read the API server), Events, or reviews.
//!
//! A kept object is replaced only by a newer one: a watch event older than the answer to
//! this process's own write is left out. Reads are eventually consistent, as with any
//! informer cache; writes that must not be based on a stale read carry the resource version
//! that was read, and fail with a conflict when it is not current.

mod entry;
pub mod request;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use http::{Method, Request, Response, StatusCode};
use kube::api::{ApiResource, DynamicObject};
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde_json::json;
use tokio::task::AbortHandle;

use entry::Entry;
pub use entry::Touched;
use request::{Kind, Read, Target};

/// Watch caches, and the client that reads from them.
#[derive(Clone)]
pub struct Cache {
    shared: Arc<Shared>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("namespaces", &self.shared.namespaces.get())
            .field("serving", &self.shared.serving)
            .finish_non_exhaustive()
    }
}

/// One watch: a resource type in a namespace (or across the cluster when `None`).
type Scope = (Kind, Option<String>);

struct Shared {
    /// The client of the API server itself, which the watches use.
    api: Client,
    /// The namespaces watched (set once; every namespace when unset or empty).
    namespaces: OnceLock<Vec<String>>,
    /// Whether reads are answered from the caches (otherwise every read goes to the API
    /// server and the watches only wake the controller).
    serving: bool,
    entries: Mutex<HashMap<Scope, Arc<Entry>>>,
    watches: Mutex<Vec<AbortHandle>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for watch in self
            .watches
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            watch.abort();
        }
    }
}

impl Cache {
    /// Caches over `api`, the client of the API server.
    pub fn new(api: Client) -> Self {
        Self::with_serving(api, true)
    }

    /// Watches that answer no read: every read of [`Cache::client`] goes to the API server
    /// (to measure what the caches save).
    pub fn passthrough(api: Client) -> Self {
        Self::with_serving(api, false)
    }

    fn with_serving(api: Client, serving: bool) -> Self {
        Cache {
            shared: Arc::new(Shared {
                api,
                namespaces: OnceLock::new(),
                serving,
                entries: Mutex::default(),
                watches: Mutex::default(),
            }),
        }
    }

    /// Watches the namespaces `namespaces` only (every namespace when empty). Only the first
    /// call counts; call it before the first read.
    pub fn scope_to(&self, namespaces: &[String]) {
        let _ = self.shared.namespaces.set(namespaces.to_vec());
    }

    /// The client reading from these caches and writing to the API server.
    pub fn client(&self) -> Client {
        let default = self.shared.api.default_namespace().to_owned();
        Client::new(
            Caching {
                shared: self.shared.clone(),
            },
            default,
        )
    }

    /// The client of the API server itself.
    pub fn api(&self) -> &Client {
        &self.shared.api
    }

    /// The objects of `kind` in `namespace` the cache's watch brings from now on (a watch is
    /// started if none runs); `None` when the namespace is not watched. A receiver that falls
    /// too far behind is told how many it missed.
    pub fn touched(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
    ) -> Option<tokio::sync::broadcast::Receiver<Touched>> {
        let scope = self.shared.scope(kind, namespace, false)?;
        Some(self.shared.entry(&scope).subscribe())
    }

    /// How many objects the caches keep, by resource type and namespace.
    pub fn sizes(&self) -> BTreeMap<String, usize> {
        let entries = self
            .shared
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .map(|((kind, namespace), entry)| {
                let name = match namespace {
                    Some(namespace) => {
                        format!("{}/{} in {namespace}", kind.api_version(), kind.plural)
                    }
                    None => format!("{}/{}", kind.api_version(), kind.plural),
                };
                (name, entry.len())
            })
            .collect()
    }
}

/// How a resource type is kept: `None` when never.
struct Keeping {
    metadata_only: bool,
    selector: BTreeMap<String, String>,
}

fn keeping(kind: &Kind) -> Option<Keeping> {
    let plain = Keeping {
        metadata_only: false,
        selector: BTreeMap::new(),
    };
    match (kind.group.as_str(), kind.plural.as_str()) {
        ("coordination.k8s.io", _)
        | ("events.k8s.io", _)
        | ("", "events")
        | ("authentication.k8s.io", _)
        | ("authorization.k8s.io", _) => None,
        ("", "secrets") => Some(Keeping {
            metadata_only: true,
            ..plain
        }),
        ("", "pods") => Some(Keeping {
            selector: [(crate::workload::ROLE.to_owned(), "canary".to_owned())].into(),
            ..plain
        }),
        _ => Some(plain),
    }
}

impl Shared {
    /// The watch that covers `kind` in `namespace`, if one may: with namespaces given, one
    /// of them, or a cluster-scoped type (`cluster_scoped`; its objects are in no namespace).
    fn scope(&self, kind: &Kind, namespace: Option<&str>, cluster_scoped: bool) -> Option<Scope> {
        let watched = self.namespaces.get().filter(|n| !n.is_empty());
        match (watched, namespace) {
            (None, _) => Some((kind.clone(), None)),
            (Some(watched), Some(namespace)) if watched.iter().any(|n| n == namespace) => {
                Some((kind.clone(), Some(namespace.to_owned())))
            }
            (Some(_), None) if cluster_scoped => Some((kind.clone(), None)),
            _ => None,
        }
    }

    /// The watch that covers the objects of `target`: an object named without a namespace is
    /// of a cluster-scoped type (a namespaced one is always named in its namespace).
    fn scope_of(&self, target: &Target) -> Option<Scope> {
        let cluster_scoped = target.namespace.is_none() && target.name.is_some();
        self.scope(&target.kind, target.namespace.as_deref(), cluster_scoped)
    }

    /// The entry of `scope`, its watch started if it is new.
    fn entry(self: &Arc<Self>, scope: &Scope) -> Arc<Entry> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(scope) {
            return entry.clone();
        }
        let Some(keeping) = keeping(&scope.0) else {
            let entry = Arc::new(Entry::new(false, BTreeMap::new()));
            entry.give_up();
            entries.insert(scope.clone(), entry.clone());
            return entry;
        };
        let entry = Arc::new(Entry::new(keeping.metadata_only, keeping.selector));
        entries.insert(scope.clone(), entry.clone());
        let (kind, namespace) = scope;
        let resource = ApiResource {
            group: kind.group.clone(),
            version: kind.version.clone(),
            api_version: kind.api_version(),
            kind: String::new(),
            plural: kind.plural.clone(),
        };
        let mut config = watcher::Config::default();
        if !entry.selector.is_empty() {
            let selector: Vec<String> = entry
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            config = config.labels(&selector.join(","));
        }
        let what = format!("{}/{}", kind.api_version(), kind.plural);
        let task = if entry.metadata_only {
            let api: Api<PartialObjectMeta<DynamicObject>> =
                api_of(&self.api, namespace.as_deref(), &resource);
            tokio::spawn(keep(entry.clone(), watcher::watcher(api, config), what))
        } else {
            let api: Api<DynamicObject> = api_of(&self.api, namespace.as_deref(), &resource);
            tokio::spawn(keep(entry.clone(), watcher::watcher(api, config), what))
        };
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task.abort_handle());
        entry
    }

    /// The entry answering reads of `target`, when it holds the whole list.
    fn serving(self: &Arc<Self>, target: &Target) -> Option<Arc<Entry>> {
        if !self.serving {
            return None;
        }
        let scope = self.scope_of(target)?;
        let entry = self.entry(&scope);
        entry.synced().then_some(entry)
    }

    /// The entry keeping objects of `target`, if one runs already.
    fn kept(&self, target: &Target) -> Option<Arc<Entry>> {
        let scope = self.scope_of(target)?;
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&scope).cloned()
    }
}

fn api_of<K: Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>>(
    client: &Client,
    namespace: Option<&str>,
    resource: &ApiResource,
) -> Api<K> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Keeps what `events` bring in `entry`, until the watch cannot run (no right to list or
/// watch the type, or no such type) before its first list is complete.
async fn keep<K>(
    entry: Arc<Entry>,
    events: impl Stream<Item = watcher::Result<Event<K>>> + Send,
    what: String,
) where
    K: Resource + Serialize,
{
    let mut events = std::pin::pin!(events.default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => entry.list_started(),
            Ok(Event::InitApply(object)) => entry.listed(object.meta(), json_of(&object)),
            Ok(Event::InitDone) => entry.list_done(),
            Ok(Event::Apply(object)) => entry.applied(object.meta(), json_of(&object)),
            Ok(Event::Delete(object)) => entry.deleted(object.meta()),
            Err(error) if !entry.synced() && refused(&error) => {
                tracing::info!(%error, kind = what, "not cached: its reads go to the API server");
                entry.give_up();
                return;
            }
            Err(error) => tracing::debug!(%error, kind = what, "watch interrupted"),
        }
    }
}

fn json_of(object: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(object).unwrap_or_default()
}

/// Whether the API server refuses to list the type at all (forbidden, unknown, not listable).
fn refused(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => {
            (403..=405).contains(&status.code)
        }
        _ => false,
    }
}

/// The client's service: reads answered from the caches, everything else sent on.
#[derive(Clone)]
struct Caching {
    shared: Arc<Shared>,
}

impl tower_service::Service<Request<Body>> for Caching {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.handle(request).await })
    }
}

impl Shared {
    async fn handle(self: Arc<Self>, request: Request<Body>) -> kube::Result<Response<Body>> {
        let target = request::target(request.uri().path());
        let method = request.method().clone();
        // A dry run's answer is what the object would be, not what it is.
        let dry_run = request
            .uri()
            .query()
            .is_some_and(|query| query.contains("dryRun="));
        if method == Method::GET
            && let Some(target) = &target
            && let Some(answer) = self.answer(target, &request)
        {
            return Ok(answer);
        }
        let response = self.api.send(request).await?;
        let written = matches!(method, Method::POST | Method::PUT | Method::PATCH)
            && response.status().is_success()
            && !dry_run;
        match target {
            Some(target)
                if written
                    && target.subresource.as_deref().is_none_or(|s| s == "status")
                    && let Some(entry) = self.kept(&target) =>
            {
                let (parts, body) = response.into_parts();
                let bytes = body.collect_bytes().await?;
                remember(&entry, &bytes);
                Ok(Response::from_parts(parts, Body::from(bytes)))
            }
            _ => Ok(response),
        }
    }

    /// The answer to a GET from the caches, if they can give it.
    fn answer(
        self: &Arc<Self>,
        target: &Target,
        request: &Request<Body>,
    ) -> Option<Response<Body>> {
        let read = request::read(target, request.uri().query())?;
        let metadata_only = request::wants_metadata(
            request
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|accept| accept.to_str().ok()),
        );
        let entry = self.serving(target)?;
        if entry.metadata_only && !metadata_only {
            return None;
        }
        let namespace = target.namespace.as_deref();
        match read {
            Read::Get => {
                let name = target.name.as_deref()?;
                if !entry.selector.is_empty() {
                    // Not every object of the type is kept.
                    return None;
                }
                Some(
                    match entry.get(namespace.unwrap_or_default(), name, metadata_only) {
                        Some(json) => respond(StatusCode::OK, json),
                        None => not_found(target, name),
                    },
                )
            }
            Read::List(labels) => {
                let covered = entry
                    .selector
                    .iter()
                    .all(|(key, value)| labels.get(key) == Some(value));
                covered.then(|| {
                    respond(
                        StatusCode::OK,
                        entry.list(
                            &target.kind.api_version(),
                            namespace,
                            &labels,
                            metadata_only,
                        ),
                    )
                })
            }
        }
    }
}

/// Keeps the object a write answered with.
fn remember(entry: &Entry, bytes: &Bytes) {
    if entry.metadata_only {
        return;
    }
    if let Ok(object) = serde_json::from_slice::<DynamicObject>(bytes)
        && object
            .types
            .as_ref()
            .is_none_or(|types| types.kind != "Status")
        && object.metadata.name.is_some()
    {
        entry.written(&object.metadata, bytes.to_vec());
    }
}

fn respond(status: StatusCode, json: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The API server's answer to a GET of an object that does not exist.
fn not_found(target: &Target, name: &str) -> Response<Body> {
    let resource = if target.kind.group.is_empty() {
        target.kind.plural.clone()
    } else {
        format!("{}.{}", target.kind.plural, target.kind.group)
    };
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{resource} \"{name}\" not found"), "reason": "NotFound",
        "details": {"name": name, "group": target.kind.group, "kind": target.kind.plural},
        "code": 404,
    });
    respond(
        StatusCode::NOT_FOUND,
        Bytes::from(serde_json::to_vec(&status).unwrap_or_default()),
    )
}
