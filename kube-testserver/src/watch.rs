//! Watch streams: newline-delimited JSON events replayed from the store's history,
//! then followed live, until the timeout, a dropped-stream fault, or shutdown.

use std::convert::Infallible;
use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::State;
use super::errors::ApiError;
use super::http::Body;
use super::resources::ResourceType;
use super::selectors::Selector;
use super::store::{Event, EventType, History, meta_str};

/// What a watch request asked for.
#[derive(Debug, Clone)]
pub(crate) struct WatchSpec {
    /// The watched type.
    pub rt: ResourceType,
    /// Namespace filter (`None` = all namespaces).
    pub ns: Option<String>,
    /// Label and field selectors.
    pub selector: Selector,
    /// Resume after this resource version; `None` starts with the current objects as `ADDED`.
    pub from: Option<u64>,
    /// Send a `BOOKMARK` marking the end of the initial events (`sendInitialEvents=true`).
    pub initial_end_bookmark: bool,
    /// Whether bookmarks are allowed (one is sent when the stream times out).
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
}

/// Starts a watch and returns the streaming response body.
pub(crate) fn start(state: Arc<State>, spec: WatchSpec) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(run(state, spec, tx));
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    StreamBody::new(frames).boxed_unsync()
}

/// One watch event as sent, `{"type":KIND,"object":OBJECT}` and a newline, serialised from
/// the stored object without copying it (`kind` is one of the fixed event types).
fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
    // Writing a `Value` into a vector cannot fail.
    let _ = serde_json::to_writer(&mut bytes, object);
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end && let Some(map) = meta.as_object_mut() {
        map.insert(
            "annotations".into(),
            json!({"k8s.io/initial-events-end": "true"}),
        );
    }
    line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}),
    )
}

/// How an event looks to this watcher (selectors can turn updates into adds/deletes).
fn translate<'e>(spec: &WatchSpec, ev: &'e Event) -> Option<(&'static str, &'e Value)> {
    if ev.key.0 != spec.rt.group || ev.key.1 != spec.rt.plural {
        return None;
    }
    if let Some(ns) = &spec.ns
        && spec.rt.namespaced
        && meta_str(&ev.object, "namespace") != Some(ns.as_str())
    {
        return None;
    }
    let now = spec.selector.matches(&ev.object);
    let before = ev.old.as_ref().is_some_and(|o| spec.selector.matches(o));
    let kind = match (ev.kind, before, now) {
        (EventType::Added, _, true) => EventType::Added,
        (EventType::Modified, true, true) => EventType::Modified,
        (EventType::Modified, false, true) => EventType::Added,
        (EventType::Modified, true, false) => EventType::Deleted,
        (EventType::Deleted, b, n) if b || n => EventType::Deleted,
        _ => return None,
    };
    Some((kind.as_str(), &ev.object))
}

async fn run(state: Arc<State>, spec: WatchSpec, tx: mpsc::Sender<Bytes>) {
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut changes = state.store.subscribe();
    let mut shutdown = state.shutdown.clone();
    let send = |bytes: Bytes| {
        let tx = tx.clone();
        async move { tx.send(bytes).await.is_ok() }
    };

    changes.borrow_and_update();
    let (mut cursor, initial) = {
        let inner = state.store.lock();
        match spec.from {
            Some(rv) => (rv, Vec::new()),
            None => {
                let objects = inner.list(&spec.rt, spec.ns.as_deref());
                (
                    inner.rv(),
                    objects
                        .into_iter()
                        .filter(|o| spec.selector.matches(o))
                        .collect(),
                )
            }
        }
    };
    for obj in initial {
        if !send(line("ADDED", &obj)).await || state.faults.roll_drop_watch() {
            return;
        }
    }
    if spec.initial_end_bookmark && !send(bookmark(&spec.rt, cursor, true)).await {
        return;
    }

    loop {
        changes.borrow_and_update();
        let history = state.store.lock().history_since(&spec.rt, cursor);
        let (events, reached) = match history {
            History::Events(events, reached) => (events, reached),
            History::Expired => {
                let gone = ApiError::gone(format!("too old resource version: {cursor}"));
                send(line("ERROR", &gone.to_status())).await;
                return;
            }
        };
        for ev in events {
            cursor = ev.rv;
            if let Some((kind, obj)) = translate(&spec, &ev)
                && (!send(line(kind, obj)).await || state.faults.roll_drop_watch())
            {
                return;
            }
        }
        cursor = cursor.max(reached);
        let timeout = async {
            match deadline {
                Some(d) => sleep_until(d).await,
                None => pending().await,
            }
        };
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = timeout => {
                if spec.bookmarks {
                    send(bookmark(&spec.rt, cursor, false)).await;
                }
                return;
            }
            () = tx.closed() => return,
            () = super::wait_shutdown(&mut shutdown) => return,
        }
    }
}
