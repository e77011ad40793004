//! The objects one watch keeps: as the API server sent them (compact JSON), with what reads
//! select them by.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// `namespace` (empty when cluster-scoped) and name.
pub type Key = (String, String);

/// One object as kept.
#[derive(Debug)]
pub struct Stored {
    /// The object, serialized as the API server would answer a GET of it.
    pub json: Bytes,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its resource version.
    pub resource_version: Option<String>,
}

/// An object a watch brought (not one a write of this process answered with).
#[derive(Debug, Clone)]
pub struct Touched {
    /// Its namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

const STARTING: u8 = 0;
const SYNCED: u8 = 1;
const UNAVAILABLE: u8 = 2;

/// The objects of one watch.
#[derive(Debug)]
pub struct Entry {
    objects: RwLock<HashMap<Key, Arc<Stored>>>,
    /// The objects of a list in progress (the first, or a relist after the watch expired);
    /// reads keep answering from `objects` until it is complete.
    listing: Mutex<Option<HashMap<Key, Arc<Stored>>>>,
    state: AtomicU8,
    /// Whether only metadata is kept (and only metadata reads are answered).
    pub metadata_only: bool,
    /// The labels every object of the watch carries (its label selector).
    pub selector: BTreeMap<String, String>,
    /// Made on the first subscription: most kinds have no subscriber, and a channel holds
    /// its whole buffer from the start.
    touched: OnceLock<broadcast::Sender<Touched>>,
}

/// Whether resource version `a` is older than `b`. Resource versions are opaque to clients;
/// every API server of this project's knowledge (etcd's revision) makes them increasing
/// integers, and when either is not one, neither counts as older.
fn older(a: Option<&str>, b: Option<&str>) -> bool {
    match (
        a.and_then(|a| a.parse::<u64>().ok()),
        b.and_then(|b| b.parse::<u64>().ok()),
    ) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

impl Entry {
    /// An empty entry, not yet synced.
    pub fn new(metadata_only: bool, selector: BTreeMap<String, String>) -> Self {
        Entry {
            objects: RwLock::default(),
            listing: Mutex::default(),
            state: AtomicU8::new(STARTING),
            metadata_only,
            selector,
            touched: OnceLock::new(),
        }
    }

    /// Whether the first list is complete (reads may be answered).
    pub fn synced(&self) -> bool {
        self.state.load(Ordering::Acquire) == SYNCED
    }

    /// Whether the watch cannot run (e.g. no right to list or watch): reads go to the API
    /// server.
    pub fn unavailable(&self) -> bool {
        self.state.load(Ordering::Acquire) == UNAVAILABLE
    }

    /// Marks the watch as unable to run.
    pub fn give_up(&self) {
        self.state.store(UNAVAILABLE, Ordering::Release);
    }

    /// The objects the watch brings from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Touched> {
        self.touched
            .get_or_init(|| broadcast::channel(TOUCHED_BUFFER).0)
            .subscribe()
    }

    /// Tells the subscribers, if any, of an object the watch brought.
    fn touch(&self, touched: impl FnOnce() -> Touched) {
        if let Some(sender) = self.touched.get() {
            // No receiver left is not an error: nothing waits for this kind any more.
            let _ = sender.send(touched());
        }
    }

    /// A list begins: its objects are gathered apart.
    pub fn list_started(&self) {
        *self.listing.lock().unwrap_or_else(PoisonError::into_inner) = Some(HashMap::new());
    }

    /// One object of the list in progress.
    pub fn listed(&self, meta: &ObjectMeta, json: Vec<u8>) {
        let mut listing = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listing) = listing.as_mut() {
            listing.insert(key(meta), Arc::new(stored(meta, json)));
        }
    }

    /// The list is complete: it replaces what was kept, but for objects this process wrote
    /// since (a newer resource version than listed). Every listed object counts as touched.
    pub fn list_done(&self) {
        let Some(mut listed) = self
            .listing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        {
            let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            for (key, object) in listed.iter_mut() {
                if let Some(kept) = objects.get(key)
                    && older(
                        object.resource_version.as_deref(),
                        kept.resource_version.as_deref(),
                    )
                {
                    *object = kept.clone();
                }
            }
            *objects = listed;
            for ((namespace, name), object) in objects.iter() {
                self.touch(|| Touched {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    labels: object.labels.clone(),
                });
            }
        }
        if !self.unavailable() {
            self.state.store(SYNCED, Ordering::Release);
        }
    }

    /// An object the watch brought (added or changed); an older version than kept is left
    /// out (the answer to this process's own write came first).
    pub fn applied(&self, meta: &ObjectMeta, json: Vec<u8>) {
        if self.keep(meta, json) {
            self.touch(|| Touched {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                labels: meta.labels.clone().unwrap_or_default(),
            });
        }
    }

    /// The object a write of this process answered with.
    pub fn written(&self, meta: &ObjectMeta, json: Vec<u8>) {
        self.keep(meta, json);
    }

    /// Keeps `json` unless a newer version is kept; whether it was kept.
    fn keep(&self, meta: &ObjectMeta, json: Vec<u8>) -> bool {
        let key = key(meta);
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = objects.get(&key)
            && older(
                meta.resource_version.as_deref(),
                kept.resource_version.as_deref(),
            )
        {
            return false;
        }
        objects.insert(key, Arc::new(stored(meta, json)));
        true
    }

    /// An object the watch saw deleted.
    pub fn deleted(&self, meta: &ObjectMeta) {
        let key = key(meta);
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let newer = objects.get(&key).is_some_and(|kept| {
            older(
                meta.resource_version.as_deref(),
                kept.resource_version.as_deref(),
            )
        });
        if !newer && objects.remove(&key).is_some() {
            drop(objects);
            self.touch(|| Touched {
                namespace: key.0,
                name: key.1,
                labels: meta.labels.clone().unwrap_or_default(),
            });
        }
    }

    /// The object `namespace/name`, as JSON (only its metadata with `metadata_only`).
    pub fn get(&self, namespace: &str, name: &str, metadata_only: bool) -> Option<Bytes> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let object = objects.get(&(namespace.to_owned(), name.to_owned()))?;
        Some(if metadata_only {
            Bytes::from(serde_json::to_vec(&partial(&object.json)).unwrap_or_default())
        } else {
            object.json.clone()
        })
    }

    /// The list of the objects in `namespace` (every namespace when `None`) carrying
    /// `labels`, as JSON (a `PartialObjectMetadataList` with `metadata_only`).
    pub fn list(
        &self,
        api_version: &str,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
        metadata_only: bool,
    ) -> Bytes {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let mut selected: Vec<(&Key, &Arc<Stored>)> = objects
            .iter()
            .filter(|((ns, _), object)| {
                namespace.is_none_or(|namespace| namespace == ns)
                    && labels
                        .iter()
                        .all(|(key, value)| object.labels.get(key) == Some(value))
            })
            .collect();
        selected.sort_by(|a, b| a.0.cmp(b.0));
        let items: Vec<Value> = selected
            .into_iter()
            .map(|(_, object)| {
                if metadata_only {
                    partial(&object.json)
                } else {
                    serde_json::from_slice(&object.json).unwrap_or(Value::Null)
                }
            })
            .collect();
        let (api_version, kind) = if metadata_only {
            ("meta.k8s.io/v1", "PartialObjectMetadataList")
        } else {
            (api_version, "List")
        };
        let list = json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "items": items});
        Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
    }

    /// How many objects are kept.
    pub fn len(&self) -> usize {
        self.objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// How many touched objects wait for a slow subscriber before it misses some (and is told so).
const TOUCHED_BUFFER: usize = 16_384;

fn key(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn stored(meta: &ObjectMeta, json: Vec<u8>) -> Stored {
    Stored {
        json: Bytes::from(json),
        labels: meta.labels.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone(),
    }
}

/// The `PartialObjectMetadata` of an object kept as JSON.
fn partial(json: &[u8]) -> Value {
    let metadata = serde_json::from_slice::<Value>(json)
        .ok()
        .and_then(|mut object| object.get_mut("metadata").map(Value::take))
        .unwrap_or(Value::Null);
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, version: &str, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some("test".to_owned()),
            resource_version: Some(version.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn object(meta: &ObjectMeta) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}))
            .unwrap()
    }

    fn version_of(entry: &Entry, name: &str) -> Option<String> {
        let json = entry.get("test", name, false)?;
        let object: Value = serde_json::from_slice(&json).unwrap();
        object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_owned)
    }

    #[test]
    fn a_late_watch_event_never_replaces_a_newer_write() {
        let entry = Entry::new(false, BTreeMap::new());
        entry.list_started();
        let first = meta("app", "5", &[]);
        entry.listed(&first, object(&first));
        assert!(!entry.synced());
        entry.list_done();
        assert!(entry.synced());
        let written = meta("app", "9", &[]);
        entry.written(&written, object(&written));
        let late = meta("app", "7", &[]);
        let mut touched = entry.subscribe();
        entry.applied(&late, object(&late));
        assert_eq!(version_of(&entry, "app").as_deref(), Some("9"));
        assert!(
            touched.try_recv().is_err(),
            "an older event touches nothing"
        );
        let newer = meta("app", "11", &[]);
        entry.applied(&newer, object(&newer));
        assert_eq!(version_of(&entry, "app").as_deref(), Some("11"));
        assert_eq!(touched.try_recv().unwrap().name, "app");
        // A delete seen for an older version leaves the newer object.
        entry.deleted(&meta("app", "10", &[]));
        assert!(entry.get("test", "app", false).is_some());
        entry.deleted(&meta("app", "12", &[]));
        assert!(entry.get("test", "app", false).is_none());
    }

    #[test]
    fn a_relist_keeps_what_was_written_since() {
        let entry = Entry::new(false, BTreeMap::new());
        entry.list_started();
        for name in ["a", "b"] {
            let m = meta(name, "3", &[]);
            entry.listed(&m, object(&m));
        }
        entry.list_done();
        entry.list_started();
        let a = meta("a", "4", &[]);
        entry.listed(&a, object(&a));
        // Written while the relist was under way, after the list was read.
        let written = meta("a", "6", &[]);
        entry.written(&written, object(&written));
        assert_eq!(
            version_of(&entry, "b").as_deref(),
            Some("3"),
            "reads go on during a relist"
        );
        entry.list_done();
        assert_eq!(version_of(&entry, "a").as_deref(), Some("6"));
        assert_eq!(version_of(&entry, "b"), None, "gone from the relist");
    }

    #[test]
    fn lists_select_by_namespace_and_labels() {
        let entry = Entry::new(false, BTreeMap::new());
        entry.list_started();
        for (name, role) in [("c-1", "canary"), ("s-1", "stable"), ("c-2", "canary")] {
            let m = meta(name, "1", &[("role", role)]);
            entry.listed(&m, object(&m));
        }
        entry.list_done();
        let labels = [("role".to_owned(), "canary".to_owned())].into();
        let list: Value =
            serde_json::from_slice(&entry.list("v1", Some("test"), &labels, false)).unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c-1", "c-2"]);
        let none: Value =
            serde_json::from_slice(&entry.list("v1", Some("other"), &labels, true)).unwrap();
        assert_eq!(none["items"], json!([]));
        assert_eq!(none["kind"], "PartialObjectMetadataList");
        let partial: Value =
            serde_json::from_slice(&entry.get("test", "c-1", true).unwrap()).unwrap();
        assert_eq!(partial["kind"], "PartialObjectMetadata");
        assert_eq!(partial["metadata"]["name"], "c-1");
    }
}
