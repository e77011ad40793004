//! The object store: objects per resource type, the global resource version counter,
//! the bounded event history that watches replay, and metadata bookkeeping on writes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::sync::watch;

use super::errors::{ApiError, ApiResult};
use super::fields;
use super::merge_types::Types;
use super::resources::ResourceType;

/// How many events of one resource type the history keeps before the oldest are compacted
/// away (the API server's watch cache is per resource type too: a busy type, pods, expires
/// no watch of another).
const HISTORY_LIMIT: usize = 10_000;

/// Locks a mutex, ignoring poisoning (the data stays usable for a test server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks an `RwLock`, ignoring poisoning.
pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

/// The current time as an RFC 3339 UTC timestamp with second precision.
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (proleptic Gregorian), after Howard Hinnant's published algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The main resource (`.status` is ignored if the type has a status subresource).
    Main,
    /// The `/status` subresource (only `.status` is taken).
    Status,
}

/// Who owns the fields a write changes, for `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// An `Update` operation by this field manager (built-in merge types; custom resources'
    /// fields deduced).
    Update(String),
    /// The candidate object already carries its managed fields (server-side apply, and
    /// updates whose ownership the handler computed with the type's CRD schema).
    Apply,
    /// Not tracked (direct seeding through the test API).
    Untracked,
}

/// The finalizer a foreground deletion puts on the object until its blocking dependents are
/// gone (apimachinery pkg/apis/meta/v1/types.go `FinalizerDeleteDependents`).
pub(crate) const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer an orphaning deletion puts on the object until the garbage collector has
/// removed every owner reference to it (`FinalizerOrphanDependents`).
pub(crate) const ORPHAN_FINALIZER: &str = "orphan";

/// What a delete does to the object's dependents (`DeleteOptions.propagationPolicy`,
/// apimachinery pkg/apis/meta/v1/types.go `DeletionPropagation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Propagation {
    /// The dependents' owner references to the object are removed; they stay.
    Orphan,
    /// The object goes at once; the garbage collector deletes the dependents after.
    Background,
    /// The object stays (`deletionTimestamp`, `foregroundDeletion` finalizer) until the
    /// garbage collector has deleted its dependents that block owner deletion.
    Foreground,
}

impl Propagation {
    fn parse(value: &str) -> ApiResult<Self> {
        match value {
            "Orphan" => Ok(Propagation::Orphan),
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            other => Err(delete_options_invalid(&format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \
                 \"Foreground\", \"Background\", \"Orphan\""
            ))),
        }
    }

    /// The default of a kind when a delete names no policy (the registry strategies'
    /// `DefaultGarbageCollectionPolicy`): batch/v1 Jobs and v1 ReplicationControllers orphan
    /// their dependents for backwards compatibility (pkg/registry/batch/job/strategy.go,
    /// pkg/registry/core/replicationcontroller/strategy.go); every other served kind deletes
    /// them in the background.
    pub(crate) fn default_for(rt: &ResourceType) -> Self {
        let legacy = (rt.group == "batch" && rt.version == "v1" && rt.kind == "Job")
            || (rt.group.is_empty() && rt.kind == "ReplicationController");
        if legacy {
            Propagation::Orphan
        } else {
            Propagation::Background
        }
    }
}

/// A 422 refusing a `DeleteOptions` (apimachinery pkg/apis/meta/v1/validation
/// `ValidateDeleteOptions`).
fn delete_options_invalid(message: &str) -> ApiError {
    ApiError::invalid(format!(
        "DeleteOptions.meta.k8s.io \"\" is invalid: {message}"
    ))
}

/// The options of a DELETE: its body (`DeleteOptions`) and query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeleteOptions {
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `propagationPolicy` (or the deprecated `orphanDependents`); `None` for the kind's
    /// default, or what the object's finalizers already ask for.
    pub propagation: Option<Propagation>,
}

impl DeleteOptions {
    /// The options of a request: an optional JSON `DeleteOptions` body, and the
    /// `propagationPolicy` / `orphanDependents` query parameters (the body wins). Setting both
    /// `propagationPolicy` and `orphanDependents` is refused, as an unknown policy is.
    pub(crate) fn parse(body: &[u8], query: &HashMap<String, String>) -> ApiResult<Self> {
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
            })?
        };
        if !options.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        let policy = options["propagationPolicy"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| query.get("propagationPolicy").cloned());
        let orphan = options["orphanDependents"]
            .as_bool()
            .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
        let propagation = match (policy, orphan) {
            (Some(_), Some(_)) => {
                return Err(delete_options_invalid(
                    "propagationPolicy: Invalid value: \"null\": orphanDependents and \
                     deletionPropagation cannot be both set",
                ));
            }
            (Some(policy), None) => Some(Propagation::parse(&policy)?),
            (None, Some(true)) => Some(Propagation::Orphan),
            (None, Some(false)) => Some(Propagation::Background),
            (None, None) => None,
        };
        Ok(DeleteOptions {
            precondition_rv: options["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_owned),
            precondition_uid: options["preconditions"]["uid"].as_str().map(str::to_owned),
            propagation,
        })
    }
}

/// The object's finalizers.
fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The finalizers of `live` once deleted with `options` (apiserver
/// pkg/registry/generic/registry/store.go `deletionFinalizersForGarbageCollection`,
/// `shouldOrphanDependents`, `shouldDeleteDependents`): an explicit policy wins, then what a
/// finalizer already on the object asks for, then the kind's default. Orphaning adds `orphan`,
/// foreground deletion `foregroundDeletion` (each dropping the other); background drops both.
fn finalizers_for_delete(rt: &ResourceType, live: &Value, options: &DeleteOptions) -> Vec<String> {
    let mut out = finalizers(live);
    let has = |name: &str| out.iter().any(|f| f == name);
    let policy = options.propagation.unwrap_or_else(|| {
        if has(ORPHAN_FINALIZER) {
            Propagation::Orphan
        } else if has(FOREGROUND_FINALIZER) {
            Propagation::Foreground
        } else {
            Propagation::default_for(rt)
        }
    });
    let (add, drop) = match policy {
        Propagation::Orphan => (Some(ORPHAN_FINALIZER), vec![FOREGROUND_FINALIZER]),
        Propagation::Foreground => (Some(FOREGROUND_FINALIZER), vec![ORPHAN_FINALIZER]),
        Propagation::Background => (None, vec![ORPHAN_FINALIZER, FOREGROUND_FINALIZER]),
    };
    out.retain(|f| !drop.contains(&f.as_str()));
    if let Some(add) = add
        && !out.iter().any(|f| f == add)
    {
        out.push(add.to_owned());
    }
    out
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    /// An object was created.
    Added,
    /// An object was changed.
    Modified,
    /// An object was removed.
    Deleted,
}

impl EventType {
    /// The wire name used in watch streams.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the history.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Resource version the change was written at.
    pub rv: u64,
    /// Storage key of the resource type (group, plural).
    pub key: (String, String),
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletes: the last state), shared with the store.
    pub object: Arc<Value>,
    /// The object before the change, if any.
    pub old: Option<Arc<Value>>,
}

/// The recent events of one resource type.
#[derive(Debug, Clone, Default)]
struct TypeHistory {
    events: VecDeque<Arc<Event>>,
    /// Every event of this type at or below this resource version may be missing.
    compacted: u64,
}

/// Outcome of reading the history from a resource version.
pub(crate) enum History {
    /// The events of the type after the requested version, oldest first, and the resource
    /// version they bring a watcher to (the store's current one).
    Events(Vec<Arc<Event>>, u64),
    /// The requested version has been compacted away.
    Expired,
}

/// The shared store (behind one mutex; all writes are serialised).
#[derive(Debug)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
    rv_rx: watch::Receiver<u64>,
}

impl Store {
    /// An empty store at resource version 1.
    pub(crate) fn new() -> Self {
        let (tx, rx) = watch::channel(1);
        let inner = Inner {
            rv: 1,
            uid_seq: 0,
            objects: HashMap::new(),
            history: HashMap::new(),
            compacted: 1,
            rv_tx: tx,
        };
        Self {
            inner: Mutex::new(inner),
            rv_rx: rx,
        }
    }

    /// Exclusive access for a read-modify-write.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// A receiver that changes whenever the resource version advances.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.rv_rx.clone()
    }
}

/// The stored objects of one resource type, by (namespace, name).
type Objects = BTreeMap<(String, String), Arc<Value>>;

/// The store's data.
#[derive(Debug)]
pub(crate) struct Inner {
    rv: u64,
    uid_seq: u64,
    /// The objects of each type by (namespace, name), shared with the history's events: a
    /// pass over every object, a list or a watch's initial events copies no object.
    objects: HashMap<(String, String), Objects>,
    /// The recent events by resource type (group, plural).
    history: HashMap<(String, String), TypeHistory>,
    /// Every event of any type at or below this resource version may be missing (a
    /// compaction of the whole history).
    compacted: u64,
    rv_tx: watch::Sender<u64>,
}

fn key(rt: &ResourceType) -> (String, String) {
    (rt.group.clone(), rt.plural.clone())
}

fn ns_key(rt: &ResourceType, ns: Option<&str>) -> String {
    if rt.namespaced {
        ns.unwrap_or_default().to_owned()
    } else {
        String::new()
    }
}

/// `metadata` of an object as a mutable map, created if missing.
pub(crate) fn meta_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Whether two objects are the same but for `metadata`, `status`, `apiVersion` and `kind`:
/// what `generation` tracks (compared in place, without copying either).
fn same_spec(a: &Value, b: &Value) -> bool {
    const UNTRACKED: [&str; 4] = ["metadata", "status", "apiVersion", "kind"];
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let tracked = |map: &'_ Map<String, Value>| {
        map.iter()
            .filter(|(k, _)| !UNTRACKED.contains(&k.as_str()))
            .count()
    };
    tracked(a) == tracked(b)
        && a.iter()
            .filter(|(k, _)| !UNTRACKED.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

fn meta_has_deletion(obj: &Value) -> bool {
    obj.get("metadata")
        .is_some_and(|m| m.get("deletionTimestamp").is_some())
}

fn has_finalizers(obj: &Value) -> bool {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl Inner {
    /// The current resource version.
    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub(crate) fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Option<&Value> {
        self.get_shared(rt, ns, name).map(|object| &**object)
    }

    /// One object, as shared with the history.
    pub(crate) fn get_shared(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Option<&Arc<Value>> {
        self.objects
            .get(&key(rt))?
            .get(&(ns_key(rt, ns), name.to_owned()))
    }

    /// Objects of a type, in one namespace or all, ordered by namespace then name (shared,
    /// not copied).
    pub(crate) fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.objects_of(rt, ns).cloned().collect()
    }

    /// The stored objects of a type, in one namespace or all, ordered by namespace then
    /// name, without copying them (a namespace is a range of the ordered keys).
    pub(crate) fn objects_of<'a>(
        &'a self,
        rt: &ResourceType,
        ns: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        let Some(objects) = self.objects.get(&key(rt)) else {
            return Box::new(std::iter::empty());
        };
        match ns.filter(|_| rt.namespaced) {
            Some(ns) => {
                let ns = ns.to_owned();
                let start = (ns.clone(), String::new());
                Box::new(
                    objects
                        .range(start..)
                        .take_while(move |((o_ns, _), _)| *o_ns == ns)
                        .map(|(_, v)| v),
                )
            }
            None => Box::new(objects.values()),
        }
    }

    /// Whether the changes after resource version `from` may concern `relevant` (a change
    /// the history no longer holds may concern anything).
    pub(crate) fn changed_since(&self, from: u64, relevant: impl Fn(&Event) -> bool) -> bool {
        if from >= self.rv {
            return false;
        }
        if from < self.compacted {
            return true;
        }
        self.history.values().any(|history| {
            from < history.compacted || {
                let start = history.events.partition_point(|e| e.rv <= from);
                history.events.range(start..).any(|event| relevant(event))
            }
        })
    }

    /// Drops the whole event history, as an etcd compaction would.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// The events of type `rt` after resource version `from`.
    pub(crate) fn history_since(&self, rt: &ResourceType, from: u64) -> History {
        let history = self.history.get(&key(rt));
        let compacted = history.map_or(0, |h| h.compacted).max(self.compacted);
        if from < compacted {
            return History::Expired;
        }
        let events = history.map_or_else(Vec::new, |h| {
            let start = h.events.partition_point(|e| e.rv <= from);
            h.events.range(start..).cloned().collect()
        });
        History::Events(events, self.rv.max(from))
    }

    /// Runs `f` as a `dryRun=All` write: whatever it stores, the resource versions and
    /// watch events it makes are undone afterwards (watchers woken meanwhile find nothing new).
    pub(crate) fn dry_run<T>(&mut self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let saved = (
            self.rv,
            self.uid_seq,
            self.objects.clone(),
            self.history.clone(),
            self.compacted,
        );
        let out = f(self);
        (
            self.rv,
            self.uid_seq,
            self.objects,
            self.history,
            self.compacted,
        ) = saved;
        self.rv_tx.send_replace(self.rv);
        out
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(
        &mut self,
        rt: &ResourceType,
        kind: EventType,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let event = Event {
            rv: self.rv,
            key: key(rt),
            kind,
            object,
            old,
        };
        let history = self.history.entry(key(rt)).or_default();
        history.events.push_back(Arc::new(event));
        while history.events.len() > HISTORY_LIMIT {
            if let Some(e) = history.events.pop_front() {
                history.compacted = e.rv;
            }
        }
        self.rv_tx.send_replace(self.rv);
    }

    /// Stamps identity fields and normalises `apiVersion`/`kind`/namespace.
    fn normalise(rt: &ResourceType, ns: Option<&str>, obj: &mut Value) -> ApiResult<()> {
        let map = obj
            .as_object_mut()
            .ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
        map.insert("apiVersion".into(), Value::String(rt.api_version()));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
        let meta = meta_mut(obj).ok_or_else(|| ApiError::bad_request("invalid metadata"))?;
        if rt.namespaced {
            let ns = ns.unwrap_or("default");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object ({given}) does not match the \
                         namespace sent on the request ({ns})"
                    )));
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(ns.to_owned()));
                }
            }
        } else {
            meta.remove("namespace");
        }
        Ok(())
    }

    /// Creates an object (POST semantics). `keep_status` keeps a given `.status`
    /// even for types with a status subresource (used for direct seeding).
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        keep_status: bool,
        owner: &Owner,
    ) -> ApiResult<Arc<Value>> {
        Self::normalise(rt, ns, &mut obj)?;
        let name = self.pick_name(rt, ns, &obj)?;
        if self.get(rt, ns, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if rt.status_subresource
            && !keep_status
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        self.uid_seq += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", self.uid_seq);
        let rv = self.next_rv();
        let meta = meta_mut(&mut obj).ok_or_else(|| ApiError::bad_request("invalid metadata"))?;
        meta.insert("name".into(), Value::String(name.clone()));
        meta.insert("uid".into(), Value::String(uid));
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        meta.remove("deletionTimestamp");
        if *owner != Owner::Apply {
            meta.remove("managedFields");
        }
        if let Owner::Update(manager) = owner {
            let mut entries = Vec::new();
            let types = Types::new(rt, None);
            fields::record_update(
                &mut entries,
                &Value::Null,
                &obj,
                manager,
                Part::Main,
                rt,
                &types,
            );
            fields::write_entries(&mut obj, &entries, rt);
        }
        let shared = Arc::new(obj);
        self.objects
            .entry(key(rt))
            .or_default()
            .insert((ns_key(rt, ns), name), Arc::clone(&shared));
        self.emit(rt, EventType::Added, Arc::clone(&shared), None);
        Ok(shared)
    }

    fn pick_name(&self, rt: &ResourceType, ns: Option<&str>, obj: &Value) -> ApiResult<String> {
        if let Some(name) = meta_str(obj, "name").filter(|n| !n.is_empty()) {
            return Ok(name.to_owned());
        }
        let Some(prefix) = meta_str(obj, "generateName").filter(|n| !n.is_empty()) else {
            return Err(ApiError::invalid(format!(
                "{} is invalid: metadata.name: Required value: name or generateName is required",
                rt.kind
            )));
        };
        // Five hex digits from a counter-derived hash: unique enough, and reproducible.
        let mut seed = self.uid_seq ^ (self.rv << 20);
        loop {
            seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
            let name = format!("{prefix}{:05x}", seed >> 44);
            if self.get(rt, ns, &name).is_none() {
                return Ok(name);
            }
        }
    }

    /// Writes a new state of an existing object (PUT / PATCH / apply semantics).
    ///
    /// A `metadata.resourceVersion` on the candidate is a precondition. `Part::Status`
    /// takes only `.status`; `Part::Main` keeps the live `.status` for types with a
    /// status subresource. Identity metadata is preserved. No-op writes keep the
    /// resource version and emit nothing.
    pub(crate) fn update(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut candidate: Value,
        part: Part,
        owner: &Owner,
    ) -> ApiResult<Arc<Value>> {
        let live = self
            .get_shared(rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        Self::normalise(rt, ns, &mut candidate)?;
        if let Some(given) = meta_str(&candidate, "name").filter(|n| !n.is_empty())
            && given != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        let live_rv = meta_str(&live, "resourceVersion")
            .unwrap_or_default()
            .to_owned();
        if let Some(given) = meta_str(&candidate, "resourceVersion").filter(|v| !v.is_empty())
            && given != live_rv
        {
            return Err(ApiError::conflict(format!(
                "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                rt.plural, rt.group
            ))
            .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural})));
        }
        let applied_fields = candidate
            .get("metadata")
            .and_then(|m| m.get("managedFields"))
            .cloned();
        let mut next = match part {
            Part::Status => {
                let mut next = (*live).clone();
                if let Some(map) = next.as_object_mut() {
                    match candidate.get("status") {
                        Some(status) => map.insert("status".into(), status.clone()),
                        None => map.remove("status"),
                    };
                }
                next
            }
            Part::Main => {
                let mut next = candidate;
                if rt.status_subresource
                    && let Some(map) = next.as_object_mut()
                {
                    match live.get("status") {
                        Some(status) => map.insert("status".into(), status.clone()),
                        None => map.remove("status"),
                    };
                }
                next
            }
        };
        // Identity and server-owned metadata come from the live object.
        let live_meta = live.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut next).ok_or_else(|| ApiError::bad_request("invalid metadata"))?;
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
        ] {
            match live_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.insert("resourceVersion".into(), Value::String(live_rv));
        match owner {
            Owner::Apply => {
                meta.remove("managedFields");
                if let Some(managed) = applied_fields {
                    meta.insert("managedFields".into(), managed);
                }
            }
            Owner::Update(manager) => {
                let mut entries = fields::read_entries(&live);
                let types = Types::new(rt, None);
                fields::record_update(&mut entries, &live, &next, manager, part, rt, &types);
                fields::write_entries(&mut next, &entries, rt);
            }
            Owner::Untracked => {
                let entries = fields::read_entries(&live);
                fields::write_entries(&mut next, &entries, rt);
            }
        }
        if next == *live {
            return Ok(live);
        }
        let generation = live_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let bump = !same_spec(&next, &live);
        let rv = self.next_rv();
        let meta = meta_mut(&mut next).ok_or_else(|| ApiError::bad_request("invalid metadata"))?;
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        if bump {
            meta.insert("generation".into(), json!(generation + 1));
        }
        let slot = (ns_key(rt, ns), name.to_owned());
        let next = Arc::new(next);
        if meta_has_deletion(&next) && !has_finalizers(&next) {
            if let Some(objects) = self.objects.get_mut(&key(rt)) {
                objects.remove(&slot);
            }
            self.emit(rt, EventType::Deleted, Arc::clone(&next), Some(live));
        } else {
            self.objects
                .entry(key(rt))
                .or_default()
                .insert(slot, Arc::clone(&next));
            self.emit(rt, EventType::Modified, Arc::clone(&next), Some(live));
        }
        Ok(next)
    }

    /// Deletes an object with the kind's default propagation (see [`Inner::delete_with`]).
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> ApiResult<Arc<Value>> {
        let options = DeleteOptions {
            precondition_rv: precondition_rv.map(str::to_owned),
            precondition_uid: None,
            propagation: None,
        };
        self.delete_with(rt, ns, name, &options)
    }

    /// Deletes an object (apiserver pkg/registry/generic/registry/store.go `Delete`): the
    /// propagation policy sets the garbage-collection finalizers first (see
    /// `finalizers_for_delete`); while any finalizer remains the object stays, marked with
    /// `deletionTimestamp` (set once, kept on later deletes), otherwise it is removed.
    /// Returns the object's last state.
    pub(crate) fn delete_with(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<Arc<Value>> {
        let live = self
            .get_shared(rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if let Some(given) = options.precondition_rv.as_deref()
            && Some(given) != meta_str(&live, "resourceVersion")
        {
            return Err(ApiError::conflict(format!(
                "Operation cannot be fulfilled on {}.{} \"{name}\": the ResourceVersion in the \
                 precondition ({given}) does not match the ResourceVersion in record",
                rt.plural, rt.group
            )));
        }
        // apiserver pkg/storage/interfaces.go `Preconditions.Check`: a uid that is not the
        // object's fails the delete, reported as 409 Conflict.
        if let Some(given) = options.precondition_uid.as_deref()
            && Some(given) != meta_str(&live, "uid")
        {
            return Err(ApiError::conflict(format!(
                "Operation cannot be fulfilled on {}.{} \"{name}\": Precondition failed: UID in \
                 precondition: {given}, UID in object meta: {}",
                rt.plural,
                rt.group,
                meta_str(&live, "uid").unwrap_or_default()
            )));
        }
        let slot = (ns_key(rt, ns), name.to_owned());
        let mut next = (*live).clone();
        let wanted = finalizers_for_delete(rt, &live, options);
        if !wanted.is_empty() {
            let terminating = live
                .get("metadata")
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some();
            if terminating && wanted == finalizers(&live) {
                return Ok(live);
            }
            let rv = self.next_rv();
            let meta = meta_mut(&mut next).ok_or_else(|| ApiError::internal("invalid metadata"))?;
            if !terminating {
                meta.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
            }
            meta.insert("finalizers".into(), json!(wanted));
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            let next = Arc::new(next);
            self.objects
                .entry(key(rt))
                .or_default()
                .insert(slot, Arc::clone(&next));
            self.emit(rt, EventType::Modified, Arc::clone(&next), Some(live));
            return Ok(next);
        }
        let rv = self.next_rv();
        if let Some(meta) = meta_mut(&mut next) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        if let Some(objects) = self.objects.get_mut(&key(rt)) {
            objects.remove(&slot);
        }
        let next = Arc::new(next);
        self.emit(rt, EventType::Deleted, Arc::clone(&next), Some(live));
        Ok(next)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kind(group: &str, version: &str, kind: &str) -> ResourceType {
        ResourceType::new(group, version, kind, "things", true, false)
    }

    fn options(body: &str, query: &[(&str, &str)]) -> ApiResult<DeleteOptions> {
        let query: HashMap<String, String> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DeleteOptions::parse(body.as_bytes(), &query)
    }

    #[test]
    fn delete_options_come_from_the_body_or_the_query() {
        let parsed = options(
            r#"{"propagationPolicy": "Foreground", "preconditions": {"resourceVersion": "7"}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(parsed.propagation, Some(Propagation::Foreground));
        assert_eq!(parsed.precondition_rv.as_deref(), Some("7"));
        let parsed = options("", &[("propagationPolicy", "Orphan")]).unwrap();
        assert_eq!(parsed.propagation, Some(Propagation::Orphan));
        let parsed = options(r#"{"orphanDependents": false}"#, &[]).unwrap();
        assert_eq!(parsed.propagation, Some(Propagation::Background));
        assert_eq!(options(" ", &[]).unwrap(), DeleteOptions::default());
        assert_eq!(
            options(r#"{"propagationPolicy": "Later"}"#, &[])
                .unwrap_err()
                .code,
            422
        );
    }

    /// The registry strategies' defaults: batch/v1 Jobs and v1 ReplicationControllers orphan,
    /// everything else (Deployments, custom resources) deletes dependents in the background.
    #[test]
    fn each_kind_has_its_default_propagation() {
        assert_eq!(
            Propagation::default_for(&kind("batch", "v1", "Job")),
            Propagation::Orphan
        );
        assert_eq!(
            Propagation::default_for(&kind("", "v1", "ReplicationController")),
            Propagation::Orphan
        );
        assert_eq!(
            Propagation::default_for(&kind("apps", "v1", "Deployment")),
            Propagation::Background
        );
        let job = json!({"metadata": {"name": "j"}});
        let none = DeleteOptions::default();
        assert_eq!(
            finalizers_for_delete(&kind("batch", "v1", "Job"), &job, &none),
            vec![ORPHAN_FINALIZER.to_owned()]
        );
        assert!(finalizers_for_delete(&kind("apps", "v1", "Deployment"), &job, &none).is_empty());
    }

    /// A finalizer already on the object decides when the delete names no policy; an explicit
    /// policy replaces it; other finalizers are kept.
    #[test]
    fn the_policy_sets_the_garbage_collection_finalizers() {
        let rt = kind("apps", "v1", "Deployment");
        let live = json!({"metadata": {"finalizers": ["example.com/hold", "foregroundDeletion"]}});
        let none = DeleteOptions::default();
        assert_eq!(
            finalizers_for_delete(&rt, &live, &none),
            vec![
                "example.com/hold".to_owned(),
                FOREGROUND_FINALIZER.to_owned()
            ]
        );
        let orphan = DeleteOptions {
            precondition_rv: None,
            precondition_uid: None,
            propagation: Some(Propagation::Orphan),
        };
        assert_eq!(
            finalizers_for_delete(&rt, &live, &orphan),
            vec!["example.com/hold".to_owned(), ORPHAN_FINALIZER.to_owned()]
        );
        let background = DeleteOptions {
            precondition_rv: None,
            precondition_uid: None,
            propagation: Some(Propagation::Background),
        };
        assert_eq!(
            finalizers_for_delete(&rt, &live, &background),
            vec!["example.com/hold".to_owned()]
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod history_tests {
    use super::*;

    fn create(inner: &mut Inner, rt: &ResourceType, name: &str) {
        let object = json!({"metadata": {"name": name}});
        inner
            .create(rt, Some("default"), object, false, &Owner::Untracked)
            .unwrap();
    }

    #[test]
    fn a_busy_type_expires_the_watches_of_its_own_type_only() {
        let store = Store::new();
        let mut inner = store.lock();
        let pods = ResourceType::new("", "v1", "Pod", "pods", true, true);
        let deployments = ResourceType::new("apps", "v1", "Deployment", "deployments", true, true);
        create(&mut inner, &deployments, "web");
        let from = inner.rv();
        create(&mut inner, &deployments, "api");
        for i in 0..=HISTORY_LIMIT {
            create(&mut inner, &pods, &format!("pod-{i}"));
        }
        // The Deployment watch resumes with its one event, brought to the current version.
        match inner.history_since(&deployments, from) {
            History::Events(events, reached) => {
                let names: Vec<&str> = events
                    .iter()
                    .filter_map(|e| meta_str(&e.object, "name"))
                    .collect();
                assert_eq!(names, ["api"]);
                assert_eq!(reached, inner.rv());
            }
            History::Expired => panic!("a Deployment watch expired by pods"),
        }
        assert!(matches!(inner.history_since(&pods, from), History::Expired));
        // Nothing relevant to a filter that only Deployments pass since the last pod.
        let last_pod = inner.rv() - 1;
        assert!(!inner.changed_since(last_pod, |e| e.key.1 == "deployments"));
        assert!(inner.changed_since(last_pod, |e| e.key.1 == "pods"));
        // An etcd compaction expires every type.
        inner.compact();
        assert!(matches!(
            inner.history_since(&deployments, from),
            History::Expired
        ));
    }
}
