//! A GitOps tool keeping the user's objects as Git has them while the rollout runs.
//!
//! Git holds the files the simulation was given: the user's objects and the Rollout. The tool
//! applies them when the cluster boots and when Git changes (a release is a commit: the
//! Rollout's `newVersion`, or the stable Deployment's pod template), and corrects whatever
//! drifts from Git:
//!
//! - **Flux** (kustomize-controller), every interval: server-side apply of every object,
//!   forced, as field manager `kustomize-controller`, after a dry-run apply shows the object
//!   drifted.
//! - **Argo CD** with self-heal, within seconds of a change (it watches the objects it
//!   manages): client-side apply, as `kubectl apply` makes it: a three-way merge patch from
//!   the configuration it last applied (kept in the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation), the one in Git and the
//!   live object, sent when it would change the live object. Maps merge key by key, lists are
//!   replaced whole, and a key Git never had is not Argo CD's to remove. Each self-heal after
//!   the first of a revision waits longer: 2 s, then 3 times more each time, at most 5 min
//!   after the previous one (argo-cd controller/appcontroller.go `selfHealRemainingBackoff`,
//!   with the defaults of `--self-heal-backoff-timeout-seconds`, `-factor` and `-cap-seconds`;
//!   the attempt count is reset only by the sync of a new revision).
//!
//! What the tool corrects after the release begins is counted: a controller that fights Git
//! makes that count grow with every interval or self-heal.

use std::fmt;
use std::str::FromStr;

use canary_core::k8s::objects::clean;
use jiff::{SignedDuration, Timestamp};
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Map, Value};

use super::cluster::Cluster;
use crate::error::{Error, Result};

/// The annotation in which `kubectl apply` keeps the configuration it applied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Flux's field manager (fluxcd kustomize-controller, `--manager` default).
pub const FLUX_MANAGER: &str = "kustomize-controller";

/// Argo CD's field manager (argo-cd `common.ArgoCDSSAManager`).
pub const ARGOCD_MANAGER: &str = "argocd-controller";

/// How soon Argo CD sees a change to an object it watches, in the simulation.
const ARGOCD_WATCH: SignedDuration = SignedDuration::from_secs(5);

/// Argo CD's wait before self-heal attempt `attempt` (0-based) after the previous one: none for
/// the first, then 2 s times 3 to the power of the attempts before, at most 5 minutes.
fn self_heal_backoff(attempt: u32) -> SignedDuration {
    const BASE: i64 = 2;
    const FACTOR: i64 = 3;
    const CAP: i64 = 300;
    if attempt == 0 {
        return SignedDuration::ZERO;
    }
    let mut secs = BASE;
    for _ in 1..attempt {
        secs = secs.saturating_mul(FACTOR);
        if secs >= CAP {
            break;
        }
    }
    SignedDuration::from_secs(secs.min(CAP))
}

/// Which GitOps tool applies the user's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitOpsTool {
    /// Flux: server-side apply, forced.
    Flux,
    /// Argo CD with self-heal: client-side apply.
    ArgoCd,
}

impl FromStr for GitOpsTool {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "flux" => Ok(GitOpsTool::Flux),
            "argocd" => Ok(GitOpsTool::ArgoCd),
            other => Err(format!(
                "unknown GitOps tool {other:?}: expected flux or argocd"
            )),
        }
    }
}

impl fmt::Display for GitOpsTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GitOpsTool::Flux => "flux",
            GitOpsTool::ArgoCd => "argocd",
        })
    }
}

/// A field of one object the tool leaves to others: Flux's `spec.ignore` rule, or Argo CD's
/// `ignoreDifferences` with the sync option `RespectIgnoreDifferences=true`. Never drift, and
/// applied with the live value. Written `KIND/NAME:POINTER`, the pointer as RFC 6901 has it
/// (`Service/backend:/spec/selector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// The JSON pointer of the field.
    pub pointer: String,
}

impl FromStr for Ignored {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let usage = || format!("{text:?}: expected KIND/NAME:/json/pointer");
        let (object, pointer) = text.split_once(':').ok_or_else(usage)?;
        let (kind, name) = object.split_once('/').ok_or_else(usage)?;
        if kind.is_empty() || name.is_empty() || !pointer.starts_with('/') {
            return Err(usage());
        }
        if text.len() > Ignored::MAX_LEN {
            return Err(format!(
                "{:?}…: longer than {} characters",
                text.chars().take(40).collect::<String>(),
                Ignored::MAX_LEN
            ));
        }
        Ok(Ignored {
            kind: kind.to_owned(),
            name: name.to_owned(),
            pointer: pointer.to_owned(),
        })
    }
}

impl Ignored {
    /// The longest rule accepted.
    pub const MAX_LEN: usize = 1024;

    fn applies_to(&self, object: &Value) -> bool {
        object["kind"] == self.kind.as_str() && object["metadata"]["name"] == self.name.as_str()
    }
}

/// A GitOps tool and how often it corrects drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitOps {
    /// The tool.
    pub tool: GitOpsTool,
    /// Time between two corrections.
    pub interval: SignedDuration,
    /// Fields the tool leaves to others.
    pub ignore: Vec<Ignored>,
}

impl GitOps {
    /// The shortest interval accepted: a tool correcting more often than the controller
    /// requeues says nothing more about the release.
    pub const MIN_INTERVAL: SignedDuration = SignedDuration::from_secs(5);
    /// The longest interval accepted.
    pub const MAX_INTERVAL: SignedDuration = SignedDuration::from_hours(24);

    /// `tool` correcting every `interval`, checked against the bounds.
    pub fn new(tool: GitOpsTool, interval: SignedDuration) -> Result<Self> {
        if interval < Self::MIN_INTERVAL || interval > Self::MAX_INTERVAL {
            return Err(Error::Invalid(format!(
                "--gitops-interval: {} is out of range ({}..={})",
                canary_core::api::duration::format_duration(interval),
                canary_core::api::duration::format_duration(Self::MIN_INTERVAL),
                canary_core::api::duration::format_duration(Self::MAX_INTERVAL),
            )));
        }
        Ok(GitOps {
            tool,
            interval,
            ignore: Vec::new(),
        })
    }

    /// The most fields a tool is told to leave.
    pub const MAX_IGNORED: usize = 64;

    /// This tool leaving `ignore` to others.
    pub fn ignoring(mut self, ignore: Vec<Ignored>) -> Result<Self> {
        if ignore.len() > Self::MAX_IGNORED {
            return Err(Error::Invalid(format!(
                "--gitops-ignore: {} rules, at most {} are accepted",
                ignore.len(),
                Self::MAX_IGNORED
            )));
        }
        self.ignore = ignore;
        Ok(self)
    }

    /// `manifest` with the live value at every ignored field (none where live has none).
    fn respecting(&self, manifest: &Value, live: &Value) -> Value {
        let mut out = manifest.clone();
        for rule in self.ignore.iter().filter(|rule| rule.applies_to(manifest)) {
            set_pointer(
                &mut out,
                &rule.pointer,
                live.pointer(&rule.pointer).cloned(),
            );
        }
        out
    }

    /// `object` without its ignored fields.
    fn without_ignored(&self, object: &Value) -> Value {
        let mut out = clean(object);
        for rule in self.ignore.iter().filter(|rule| rule.applies_to(object)) {
            set_pointer(&mut out, &rule.pointer, None);
        }
        out
    }
}

/// Sets (or, with `None`, removes) the field at the RFC 6901 `pointer`; a pointer whose parent
/// is missing changes nothing.
fn set_pointer(target: &mut Value, pointer: &str, value: Option<Value>) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match (target.pointer_mut(parent), value) {
        (Some(Value::Object(map)), Some(value)) => {
            map.insert(key, value);
        }
        (Some(Value::Object(map)), None) => {
            map.remove(&key);
        }
        (Some(Value::Array(list)), value) => {
            if let Ok(index) = key.parse::<usize>()
                && index < list.len()
            {
                match value {
                    Some(value) => {
                        if let Some(slot) = list.get_mut(index) {
                            *slot = value;
                        }
                    }
                    None => {
                        list.remove(index);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Git and the tool that applies it.
pub(super) struct Repository {
    gitops: GitOps,
    /// The manifests in Git, in the order they are applied.
    manifests: Vec<Value>,
    /// When the tool corrects drift next.
    next: Option<Timestamp>,
    /// Objects the tool found drifted and applied again since counting began.
    corrections: u32,
    counting: bool,
    /// Argo CD: self-heals since the last sync of a new revision, and when the last ended.
    self_heals: u32,
    last_self_heal: Option<Timestamp>,
}

impl Repository {
    /// Git holding `manifests`, applied by `gitops`.
    pub(super) fn new(gitops: GitOps, manifests: &[Value]) -> Self {
        Repository {
            gitops,
            manifests: manifests.iter().map(clean).collect(),
            next: None,
            corrections: 0,
            counting: false,
            self_heals: 0,
            last_self_heal: None,
        }
    }

    /// Counts corrections from now on.
    pub(super) fn count_corrections(&mut self) {
        self.counting = true;
    }

    /// Objects the tool applied again because they had drifted from Git, since counting began.
    pub(super) fn corrections(&self) -> u32 {
        self.corrections
    }

    /// When the tool corrects drift next.
    pub(super) fn next_due(&self) -> Option<Timestamp> {
        self.next
    }

    /// Commits `manifest` to Git: replaces the manifest of the same object, or adds it.
    pub(super) fn commit(&mut self, manifest: Value) {
        let manifest = clean(&manifest);
        match self
            .manifests
            .iter_mut()
            .find(|m| same_object(m, &manifest))
        {
            Some(existing) => *existing = manifest,
            None => self.manifests.push(manifest),
        }
    }

    /// The manifest in Git of the object `kind` `name`, if Git has it.
    pub(super) fn manifest(&self, kind: &str, name: &str) -> Option<&Value> {
        self.manifests
            .iter()
            .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
    }

    /// Applies Git at `now` when it is due (or `force`d: Git just changed), and schedules the
    /// next correction. Returns the objects that had drifted from Git and were applied again.
    pub(super) async fn sync(
        &mut self,
        cluster: &Cluster,
        now: Timestamp,
        force: bool,
    ) -> Result<Vec<String>> {
        if !force && self.next.is_none_or(|next| next > now) {
            return Ok(Vec::new());
        }
        if force {
            // A new revision: Argo CD's self-heal count starts again.
            self.self_heals = 0;
            self.last_self_heal = None;
        }
        if self.gitops.tool == GitOpsTool::ArgoCd && !force {
            let due = self
                .last_self_heal
                .and_then(|last| last.checked_add(self_heal_backoff(self.self_heals)).ok());
            if let Some(due) = due.filter(|due| *due > now) {
                self.next = Some(due);
                return Ok(Vec::new());
            }
        }
        self.next = match self.gitops.tool {
            GitOpsTool::Flux => now.checked_add(self.gitops.interval).ok(),
            GitOpsTool::ArgoCd => now.checked_add(ARGOCD_WATCH).ok(),
        };
        let mut corrected = Vec::new();
        for manifest in &self.manifests {
            let drifted = match self.gitops.tool {
                GitOpsTool::Flux => flux_apply(cluster, &self.gitops, manifest).await?,
                GitOpsTool::ArgoCd => argocd_apply(cluster, &self.gitops, manifest).await?,
            };
            if drifted {
                corrected.push(describe(manifest));
            }
        }
        if self.counting {
            self.corrections += u32::try_from(corrected.len()).unwrap_or(u32::MAX);
        }
        if self.gitops.tool == GitOpsTool::ArgoCd && !force && !corrected.is_empty() {
            self.self_heals = self.self_heals.saturating_add(1);
            self.last_self_heal = Some(now);
        }
        Ok(corrected)
    }

    /// The tool's name.
    pub(super) fn tool(&self) -> GitOpsTool {
        self.gitops.tool
    }

    /// What differs on the user's objects from Git now: for every manifest but the Rollout,
    /// the fields Git sets that the live object does not hold, and what canary may have left:
    /// labels and annotations of its own (`canary.rs/…`), keys of a Service's selector that Git
    /// does not have, a paused Deployment, a DaemonSet left `OnDelete`.
    pub(super) async fn left_on_user_objects(&self, cluster: &Cluster) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for manifest in self.manifests.iter().filter(|m| m["kind"] != "Rollout") {
            let what = describe(manifest);
            let Some(live) = cluster.get(manifest).await? else {
                left.push(format!("{what}: gone"));
                continue;
            };
            let mut differs = Vec::new();
            differing(&live, manifest, &mut String::new(), &mut differs);
            for path in differs {
                left.push(format!("{what}: {path} differs from Git"));
            }
            for part in ["labels", "annotations"] {
                let keys = live["metadata"][part].as_object().into_iter().flatten();
                for (key, _) in keys.filter(|(key, _)| key.starts_with(CANARY_PREFIX)) {
                    left.push(format!("{what}: metadata.{part}.{key} is not in Git"));
                }
            }
            if manifest["kind"] == "Service" {
                let keys = live["spec"]["selector"].as_object().into_iter().flatten();
                for (key, _) in
                    keys.filter(|(key, _)| manifest["spec"]["selector"].get(key).is_none())
                {
                    left.push(format!("{what}: spec.selector.{key} is not in Git"));
                }
            }
            if manifest["kind"] == "Deployment" && live["spec"]["paused"] == Value::Bool(true) {
                left.push(format!("{what}: spec.paused is true"));
            }
            let strategy = &live["spec"]["updateStrategy"]["type"];
            if manifest["kind"] == "DaemonSet"
                && strategy == "OnDelete"
                && manifest["spec"]["updateStrategy"]["type"] != *strategy
            {
                left.push(format!("{what}: spec.updateStrategy.type is OnDelete"));
            }
        }
        Ok(left)
    }
}

/// The prefix of canary's own labels and annotations.
const CANARY_PREFIX: &str = "canary.rs/";

/// Whether two manifests are the same object.
fn same_object(a: &Value, b: &Value) -> bool {
    a["apiVersion"] == b["apiVersion"]
        && a["kind"] == b["kind"]
        && a["metadata"]["name"] == b["metadata"]["name"]
        && a["metadata"]["namespace"] == b["metadata"]["namespace"]
}

/// `Kind namespace/name`.
pub(super) fn describe(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match object["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The paths (`spec.selector.app`) where `live` does not hold what `desired` sets.
fn differing(live: &Value, desired: &Value, path: &mut String, out: &mut Vec<String>) {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            for (key, want) in desired {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                match live.get(key) {
                    Some(have) => differing(have, want, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (live, desired) if !canary_core::k8s::objects::includes(live, desired) => {
            out.push(path.clone())
        }
        _ => {}
    }
}

/// Flux: a dry-run apply of the manifest; when its result differs from the live object (or
/// there is none), the apply for real, forced. Returns whether it applied.
///
/// fluxcd/pkg ssa `ResourceManager.ApplyAll`: a dry-run server-side apply decides whether the
/// object drifted (`hasDrifted`), and drifted objects are applied with `Force: true` as the
/// controller's field manager.
///
/// kustomize-controller `spec.ignore`: ignored fields are never drift, and an apply carries
/// their live value.
async fn flux_apply(cluster: &Cluster, gitops: &GitOps, manifest: &Value) -> Result<bool> {
    let (api, name, what) = cluster.api_for(manifest)?;
    let live = cluster.get(manifest).await?;
    let payload = match &live {
        Some(live) => gitops.respecting(manifest, live),
        None => manifest.clone(),
    };
    let object: DynamicObject =
        serde_json::from_value(payload).map_err(|e| Error::Refused(format!("{what}: {e}")))?;
    let mut params = PatchParams::apply(FLUX_MANAGER).force();
    if let Some(live) = &live {
        params.dry_run = true;
        let dry = api
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|e| Error::Refused(format!("{what}: {}", super::cluster::refusal(&e))))?;
        let dry = serde_json::to_value(&dry).unwrap_or(Value::Null);
        if gitops.without_ignored(&dry) == gitops.without_ignored(live) {
            return Ok(false);
        }
        params.dry_run = false;
    }
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| Error::Refused(format!("{what}: {}", super::cluster::refusal(&e))))?;
    Ok(live.is_some())
}

/// Argo CD with self-heal: `kubectl apply`'s three-way patch, sent when it changes the live
/// object; a missing object is created with the configuration in its annotation. Returns
/// whether it changed an existing object.
///
/// kubectl `apply.Patcher.Patch`: the patch sets every field of the new configuration and
/// deletes the fields the last applied configuration had and the new one has not; fields
/// neither of them has are left to whoever set them.
///
/// Argo CD `ignoreDifferences` with `RespectIgnoreDifferences=true`: the configuration applied
/// carries the live value of every ignored field.
async fn argocd_apply(cluster: &Cluster, gitops: &GitOps, manifest: &Value) -> Result<bool> {
    let (api, name, what) = cluster.api_for(manifest)?;
    let configuration = serde_json::to_string(manifest).unwrap_or_default();
    let refused =
        |e: kube::Error| Error::Refused(format!("{what}: {}", super::cluster::refusal(&e)));
    let Some(live) = cluster.get(manifest).await? else {
        let mut object = manifest.clone();
        object["metadata"]["annotations"][LAST_APPLIED] = Value::String(configuration);
        let object: DynamicObject =
            serde_json::from_value(object).map_err(|e| Error::Refused(format!("{what}: {e}")))?;
        let params = PostParams {
            field_manager: Some(ARGOCD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        api.create(&params, &object).await.map_err(refused)?;
        return Ok(false);
    };
    let last = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let mut patch = three_way(last.as_ref(), &gitops.respecting(manifest, &live), &live);
    if patch.as_object().is_none_or(Map::is_empty) {
        return Ok(false);
    }
    patch["metadata"]["annotations"][LAST_APPLIED] = Value::String(configuration);
    let params = PatchParams {
        field_manager: Some(ARGOCD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(refused)?;
    Ok(true)
}

/// The JSON merge patch `kubectl apply` sends: what `desired` sets and `live` lacks, and
/// `null` for what `last` set and `desired` no longer does. Empty when live is in sync.
pub(super) fn three_way(last: Option<&Value>, desired: &Value, live: &Value) -> Value {
    let mut patch = Map::new();
    let Some(desired_map) = desired.as_object() else {
        return Value::Object(patch);
    };
    for (key, want) in desired_map {
        let have = live.get(key);
        let before = last.and_then(|last| last.get(key));
        match (want, have) {
            (Value::Object(_), Some(have @ Value::Object(_))) => {
                let inner = three_way(before, want, have);
                if inner.as_object().is_some_and(|inner| !inner.is_empty()) {
                    patch.insert(key.clone(), inner);
                }
            }
            (want, have) if have != Some(want) => {
                patch.insert(key.clone(), want.clone());
            }
            _ => {}
        }
    }
    if let Some(last) = last.and_then(Value::as_object) {
        for key in last.keys() {
            if !desired_map.contains_key(key) && live.get(key).is_some() {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argo_cd_self_heals_back_off_from_2_seconds_by_3_to_5_minutes() {
        let waits: Vec<i64> = (0..8)
            .map(|attempt| self_heal_backoff(attempt).as_secs())
            .collect();
        assert_eq!(waits, [0, 2, 6, 18, 54, 162, 300, 300]);
        assert_eq!(self_heal_backoff(u32::MAX).as_secs(), 300);
    }

    #[test]
    fn kubectl_apply_leaves_keys_git_never_had_and_removes_keys_git_dropped() {
        let last = json!({"spec": {"selector": {"app": "web", "tier": "x"}}});
        let desired = json!({"spec": {"selector": {"app": "web"}}});
        let live =
            json!({"spec": {"selector": {"app": "web", "tier": "x", "pod-template-hash": "h"}}});
        // `tier` left Git: removed. `pod-template-hash` was never in Git: not Argo CD's.
        assert_eq!(
            three_way(Some(&last), &desired, &live),
            json!({"spec": {"selector": {"tier": null}}})
        );
        let synced = json!({"spec": {"selector": {"app": "web", "pod-template-hash": "h"}}});
        assert_eq!(three_way(Some(&desired), &desired, &synced), json!({}));
    }

    #[test]
    fn a_changed_list_is_replaced_whole() {
        let desired = json!({"spec": {"http": [{"route": [{"weight": 100}, {"weight": 0}]}]}});
        let live = json!({"spec": {"http": [{"route": [{"weight": 90}, {"weight": 10}]}]}});
        assert_eq!(three_way(Some(&desired), &desired, &live), desired);
    }

    #[test]
    fn the_interval_is_bounded() {
        assert!(GitOps::new(GitOpsTool::Flux, SignedDuration::from_secs(1)).is_err());
        assert!(GitOps::new(GitOpsTool::Flux, SignedDuration::from_hours(48)).is_err());
        assert!(GitOps::new(GitOpsTool::ArgoCd, SignedDuration::from_mins(1)).is_ok());
        assert_eq!("argocd".parse::<GitOpsTool>(), Ok(GitOpsTool::ArgoCd));
        assert!("helm".parse::<GitOpsTool>().is_err());
    }

    #[test]
    fn an_ignored_field_is_no_drift_and_applied_with_its_live_value() {
        let rule: Ignored = "Service/web:/spec/selector".parse().unwrap();
        assert!("Service:/spec".parse::<Ignored>().is_err());
        assert!("Service/web:spec".parse::<Ignored>().is_err());
        let gitops = GitOps::new(GitOpsTool::Flux, SignedDuration::from_mins(1))
            .unwrap()
            .ignoring(vec![rule])
            .unwrap();
        let git = json!({"kind": "Service", "metadata": {"name": "web"},
                         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let live = json!({"kind": "Service", "metadata": {"name": "web", "resourceVersion": "3"},
                          "spec": {"selector": {"app": "web", "pod-template-hash": "h"}, "ports": [{"port": 80}]}});
        assert_eq!(gitops.without_ignored(&git), gitops.without_ignored(&live));
        assert_eq!(
            gitops.respecting(&git, &live)["spec"]["selector"],
            live["spec"]["selector"]
        );
        // Another object is not concerned.
        let other = json!({"kind": "Service", "metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}}});
        assert_eq!(gitops.respecting(&other, &live), other);
        let mut list = json!({"a": [1, 2, 3]});
        set_pointer(&mut list, "/a/1", Some(json!(9)));
        set_pointer(&mut list, "/a/7", Some(json!(9)));
        assert_eq!(list, json!({"a": [1, 9, 3]}));
    }
}
