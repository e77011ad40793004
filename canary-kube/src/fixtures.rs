//! Test fixtures shared by the controller's and the providers' tests: a cluster on the API
//! test server ([`kube_testserver`]) with the Rollout resource and canary's hold webhook
//! ([`CanaryHold`]), and validators for the upstream CRDs in `crds/`.

mod hold;

pub use hold::CanaryHold;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_core::api::spec::RequestMatch;
use canary_core::engine::machine::MetricOutcome;
use canary_core::engine::memory::{InMemoryMetrics, InMemoryWebhooks};
use canary_core::engine::providers::SystemClock;
use canary_core::sim::dataplane::World;
use canary_core::sim::dataplane::probe::invariants::{
    Expectation, canary_fully_available, violations,
};
use canary_core::sim::dataplane::probe::{Probe, probe};
use canary_core::{RolloutPlan, RolloutStatus, RouteState};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_testserver::ApiServer;
use serde_json::Value;

use crate::controller::{Context, TrafficFactory, reconcile};
use crate::crd::Rollout;
use crate::metrics::Metrics;

/// The workspace's `crds/` directory of upstream CustomResourceDefinitions.
pub fn upstream_crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

/// A JSON-schema validator for version `version` of the CRD in `file` (relative to
/// [`upstream_crds`]), refusing fields the schema does not declare.
///
/// # Panics
/// When the file cannot be read or holds no such version: a broken fixture.
#[allow(clippy::panic)] // a test fixture
pub fn crd_validator(file: &str, version: &str) -> jsonschema::Validator {
    let path = upstream_crds().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let crd = documents
        .iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .unwrap_or_else(|| panic!("{}: no CRD", path.display()));
    let versions = crd["spec"]["versions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = versions
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("{}: no version {version}", path.display()));
    let mut schema = found["schema"]["openAPIV3Schema"].clone();
    refuse_unknown_fields(&mut schema);
    // Every object has these; the API server checks them itself, so CRDs leave them out.
    if let Some(properties) = schema["properties"].as_object_mut() {
        properties.insert(
            "apiVersion".to_owned(),
            serde_json::json!({"type": "string"}),
        );
        properties.insert("kind".to_owned(), serde_json::json!({"type": "string"}));
        properties.insert("metadata".to_owned(), serde_json::json!({"type": "object"}));
    }
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every object schema with declared properties refuses others, as pruning would drop them.
fn refuse_unknown_fields(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let open = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties") && !map.contains_key("additionalProperties") && !open
            {
                map.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
            for (key, value) in map.iter_mut() {
                if key != "x-kubernetes-validations" {
                    refuse_unknown_fields(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(refuse_unknown_fields),
        _ => {}
    }
}

/// Every CustomResourceDefinition document of the `.yaml` files under `dir` (recursively).
///
/// # Panics
/// When a file cannot be read or parsed: a broken fixture.
#[allow(clippy::panic)] // a test fixture
pub fn crds_in(dir: &Path) -> Vec<Value> {
    read_crds(dir).unwrap_or_else(|e| panic!("{e}"))
}

/// Every CustomResourceDefinition document of the `.yaml` files under `dir` (recursively), in
/// file name order; or which file cannot be read or parsed, and why.
pub fn read_crds(dir: &Path) -> Result<Vec<Value>, String> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut crds = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        crds.extend(
            documents
                .into_iter()
                .filter(|d| d["kind"] == "CustomResourceDefinition"),
        );
    }
    Ok(crds)
}

/// Serves the upstream CRDs of `crds/` (Istio's VirtualService, DestinationRule and Gateway;
/// Kuma's MeshHTTPRoute, MeshService, Mesh and TrafficRoute) on `server`, with their schemas: objects
/// are pruned and validated as a real API server would. A later
/// [`ApiServer::register`] of one of these types keeps its schema.
///
/// # Panics
/// When a CRD file is broken.
#[allow(clippy::panic)] // a test fixture
pub fn register_upstream_crds(server: &ApiServer) {
    for crd in crds_in(&upstream_crds()) {
        if let Err(e) = server.register_crd(&crd) {
            panic!("{}: {e}", crd["metadata"]["name"]);
        }
    }
}

/// Serves the Rollout resource on `server` from its CRD ([`kube::CustomResourceExt::crd`] of
/// [`crate::crd::Rollout`]), schema included.
///
/// # Panics
/// When the CRD does not serialise: a bug.
#[allow(clippy::panic)] // a test fixture
pub fn register_rollout_crd(server: &ApiServer) {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(Rollout::crd()).unwrap_or_else(|e| panic!("Rollout CRD: {e}"));
    if let Err(e) = server.register_crd(&crd) {
        panic!("Rollout CRD: {e}");
    }
}

/// The validation errors of `object`, each with its place.
pub fn schema_errors(validator: &jsonschema::Validator, object: &Value) -> Vec<String> {
    validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// An API test server with the Rollout resource and the upstream CRDs of `crds/` (with their
/// schemas), the Istio, ingress-nginx and Kuma validating webhooks
/// ([`ApiServer::admit_like_upstream`]) and canary's own hold webhook
/// ([`CanaryHold`]), the simulated kube-controller-manager and kubelet
/// running in real time (Deployments get ReplicaSets and pods that become ready on their own,
/// owned objects are collected), and healthy metrics.
pub struct TestCluster {
    /// The server.
    pub server: ApiServer,
    /// A client of it.
    pub client: Client,
    /// The metrics analysis reads; a success rate of 99.9 to begin with.
    pub metrics: InMemoryMetrics,
}

impl TestCluster {
    /// A fresh cluster whose pods become ready `ready_after` they start.
    ///
    /// # Panics
    /// When the server cannot start.
    #[allow(clippy::expect_used)] // a test fixture
    pub async fn start(ready_after: Duration) -> Self {
        let server = ApiServer::start()
            .await
            .expect("the API test server starts");
        register_rollout_crd(&server);
        register_upstream_crds(&server);
        server.admit_like_upstream();
        server.add_mutating_hook(Arc::new(CanaryHold));
        server.simulate_deployments(ready_after);
        let metrics = InMemoryMetrics::default();
        metrics.set("request-success-rate", MetricOutcome::Value(99.9));
        TestCluster {
            client: server.client(),
            server,
            metrics,
        }
    }

    /// Stores `object` as it is (no request logged).
    pub fn put(&self, object: Value) {
        self.server.put(object);
    }

    /// Names the current ReplicaSet of Deployment `namespace/deployment` (which must be stored
    /// already) with pod-template-hash `hash`, `labels` on the ReplicaSet: the simulated
    /// controllers' ReplicaSet of the Deployment's template becomes `<deployment>-<hash>`, its
    /// pods relabelled and kept (see [`ApiServer::name_current_replicaset`]). For tests that
    /// need a known hash; the controllers make the ReplicaSet by themselves otherwise.
    pub fn put_replicaset(&self, namespace: &str, deployment: &str, hash: &str, labels: Value) {
        self.server
            .name_current_replicaset(namespace, deployment, hash, &labels);
    }

    /// The `pod-template-hash` of the current ReplicaSet of Deployment `namespace/deployment`
    /// (the one its revision annotation names), if there is one yet.
    pub fn current_hash(&self, namespace: &str, deployment: &str) -> Option<String> {
        let d = self
            .server
            .get("apps/v1", "Deployment", Some(namespace), deployment)?;
        let objects =
            canary_core::k8s::objects::Objects::new(self.server.list("apps/v1", "ReplicaSet"));
        objects.pod_template_hash(&d, namespace)
    }

    /// The pods of Deployment `namespace/deployment` (through its ReplicaSets), by name.
    pub fn pods(&self, namespace: &str, deployment: &str) -> Vec<Value> {
        let Some(d) = self
            .server
            .get("apps/v1", "Deployment", Some(namespace), deployment)
        else {
            return Vec::new();
        };
        let controlled_by = |object: &Value, owner: &Value| {
            object["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["controller"] == true && r["uid"] == owner["metadata"]["uid"])
                })
        };
        let replicasets: Vec<Value> = self
            .server
            .list("apps/v1", "ReplicaSet")
            .into_iter()
            .filter(|rs| controlled_by(rs, &d))
            .collect();
        self.server
            .list("v1", "Pod")
            .into_iter()
            .filter(|pod| pod["metadata"]["namespace"] == namespace)
            .filter(|pod| replicasets.iter().any(|rs| controlled_by(pod, rs)))
            .collect()
    }

    /// Waits until Deployment `namespace/deployment` has rolled out its template: the
    /// controller saw its generation and every replica is updated and available.
    ///
    /// # Panics
    /// When `limit` passes first.
    #[allow(clippy::panic)] // a test fixture
    pub async fn wait_rolled_out(&self, namespace: &str, deployment: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let d = self
                .server
                .get("apps/v1", "Deployment", Some(namespace), deployment)
                .unwrap_or(Value::Null);
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let status = &d["status"];
            let done = !d.is_null()
                && status["observedGeneration"] == d["metadata"]["generation"]
                && status["updatedReplicas"].as_i64() == Some(replicas)
                && status["availableReplicas"].as_i64() == Some(replicas)
                && status["replicas"].as_i64() == Some(replicas);
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Deployment {namespace}/{deployment} not rolled out in {limit:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A fresh controller context (what a restarted controller would have) routing with
    /// `traffic`.
    pub fn context(&self, traffic: Arc<dyn TrafficFactory>) -> Arc<Context> {
        Arc::new(Context::new(
            self.client.clone(),
            traffic,
            Arc::new(self.metrics.clone()),
            Arc::new(InMemoryWebhooks::default()),
            Arc::new(SystemClock),
            Metrics::register(&mut prometheus_client::registry::Registry::default()),
            "canary-test",
        ))
    }

    /// Creates the Rollout `rollout`.
    ///
    /// # Panics
    /// When the server refuses it.
    #[allow(clippy::expect_used)] // a test fixture
    pub async fn create_rollout(&self, rollout: &Rollout) {
        let namespace = rollout.metadata.namespace.clone().unwrap_or_default();
        Api::<Rollout>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), rollout)
            .await
            .expect("the Rollout is created");
    }

    /// Calls the controller's reconcile on Rollout `namespace/name`, as its runtime would,
    /// until `done` holds of its status.
    ///
    /// # Panics
    /// On a reconcile error other than a conflict, or when `limit` passes first.
    #[allow(clippy::panic, clippy::expect_used)] // a test fixture
    pub async fn reconcile_until(
        &self,
        context: &Arc<Context>,
        (namespace, name): (&str, &str),
        limit: Duration,
        done: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        let rollouts = Api::<Rollout>::namespaced(self.client.clone(), namespace);
        let deadline = Instant::now() + limit;
        loop {
            let rollout = rollouts.get(name).await.expect("the Rollout exists");
            let status = rollout
                .status
                .clone()
                .map(|status| status.engine)
                .unwrap_or_default();
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out in {:?}: {}",
                status.phase,
                status.message
            );
            match reconcile(Arc::new(rollout), context.clone()).await {
                Ok(_) => {}
                // Writes to the stable Deployment and the status carry the resourceVersion
                // read (from the watch caches, which may not have seen a change yet), and the
                // Deployment controller writes its status meanwhile: the runtime runs the
                // reconcile again after a conflict, as here.
                Err(error) if error.class() == canary_core::ErrorClass::Conflict => {}
                Err(error) => panic!("reconcile failed: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What users' requests get at this instant, judged against the route the stored Rollout
    /// of `plan` says is in effect: every rule of
    /// [`canary_core::sim::dataplane::probe::invariants`] the world breaks, one line each (empty
    /// when all hold).
    ///
    /// The server's objects are read at one instant ([`ApiServer::snapshot`]); every caller
    /// sends a plain request and one request per request match of the plan's steps (the
    /// current step's first), and the canary's shares must equal the route's once every
    /// desired canary replica is ready. The cluster is taken to run no pods but the stable and
    /// canary Deployments' behind the Rollout's Service, so any other pod answering is a
    /// leftover. A Rollout being deleted may show its route or the stable-only one its cleanup
    /// applies; a deleted one, only the stable-only route.
    pub fn check_traffic(&self, plan: &RolloutPlan) -> Vec<String> {
        self.check_traffic_with(plan, &[])
    }

    /// As [`TestCluster::check_traffic`], where the world may also show one of `also`: the
    /// routes a pass that failed half-way may have left in effect (the engine saves the status
    /// before it applies its route, so after a failed pass the world can still show an earlier
    /// one). The rules hold when they hold for one of the routes; the violations reported are
    /// those against the status's route.
    pub fn check_traffic_with(&self, plan: &RolloutPlan, also: &[RouteState]) -> Vec<String> {
        let world = World::new(self.server.snapshot());
        let rollout = world.get("Rollout", &plan.namespace, &plan.name);
        let status: RolloutStatus = rollout
            .and_then(|r| serde_json::from_value(r["status"].clone()).ok())
            .unwrap_or_default();
        let mut routes = vec![match rollout {
            Some(_) => status.routing.route.clone(),
            None => RouteState::stable(),
        }];
        let deleting = rollout.is_some_and(|r| r.pointer("/metadata/deletionTimestamp").is_some());
        if deleting {
            routes.push(RouteState::stable());
        }
        routes.extend(also.iter().cloned());
        let matches = probed_matches(plan, status.step);
        let probed = probe(plan, &world, &matches);
        let canary_available = canary_fully_available(plan, &world);
        let judged: Vec<Vec<String>> = routes
            .iter()
            .map(|route| {
                let expected = Expectation {
                    route,
                    canary_available,
                    probed_matches: &matches,
                    only_rollout_pods: true,
                };
                violations(plan, &expected, &probed)
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .collect();
        let clean = judged.iter().any(Vec::is_empty);
        let context = format!(
            "{}/{} in {:?} at step {} ({:?}), route {:?}{}, canary fully available: {canary_available}",
            plan.namespace,
            plan.name,
            status.phase,
            u64::from(status.step) + 1,
            status.stage,
            routes.first(),
            if routes.len() > 1 {
                format!(" (or one of {:?})", routes.get(1..))
            } else {
                String::new()
            },
        );
        let broken = if clean {
            Vec::new()
        } else {
            judged.into_iter().next().unwrap_or_default()
        };
        let mut out: Vec<String> = broken
            .into_iter()
            .map(|line| format!("{context}: {line}"))
            .collect();
        out.extend(
            probed
                .unbuilt
                .iter()
                .map(|why| format!("{context}: no request could be built for {why}")),
        );
        out
    }

    /// Patches Deployment `namespace/name` with `patch` (a strategic merge patch, as
    /// `kubectl patch` sends), as a user would; a write refused by an injected fault is sent
    /// again.
    ///
    /// # Panics
    /// When the server keeps refusing it.
    #[allow(clippy::panic)] // a test fixture
    pub async fn patch_deployment(&self, namespace: &str, name: &str, patch: &Value) {
        let api = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            self.client.clone(),
            namespace,
        );
        let mut last = None;
        for _ in 0..50 {
            match api
                .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => return,
                Err(error) => last = Some(error),
            }
        }
        panic!("Deployment {namespace}/{name} not patched: {last:?}");
    }

    /// Deletes Rollout `namespace/name`, as a user would (its finalizer keeps it until the
    /// controller has cleaned up); a write refused by an injected fault is sent again.
    ///
    /// # Panics
    /// When the server keeps refusing it.
    #[allow(clippy::panic)] // a test fixture
    pub async fn delete_rollout(&self, namespace: &str, name: &str) {
        let api = Api::<Rollout>::namespaced(self.client.clone(), namespace);
        let mut last = None;
        for _ in 0..50 {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => return,
                Err(error) => last = Some(error),
            }
        }
        panic!("Rollout {namespace}/{name} not deleted: {last:?}");
    }

    /// The stored Rollout `namespace/name`, if it exists.
    pub fn rollout(&self, namespace: &str, name: &str) -> Option<Rollout> {
        let object = self.server.get(
            &format!("{}/{}", crate::GROUP, crate::VERSION),
            "Rollout",
            Some(namespace),
            name,
        )?;
        serde_json::from_value(object).ok()
    }

    /// What users' requests get at this instant under `plan`, probed as
    /// [`TestCluster::check_traffic`] probes them.
    pub fn probe_traffic(&self, plan: &RolloutPlan) -> Probe {
        let world = World::new(self.server.snapshot());
        let step = world
            .get("Rollout", &plan.namespace, &plan.name)
            .and_then(|r| r.pointer("/status/step"))
            .and_then(Value::as_u64)
            .and_then(|step| u32::try_from(step).ok())
            .unwrap_or(0);
        probe(plan, &world, &probed_matches(plan, step))
    }
}

/// The request matches a probe sends requests for: those of step `step` first, then those of
/// the plan's other steps (users who carry them exist at every step).
fn probed_matches(plan: &RolloutPlan, step: u32) -> Vec<RequestMatch> {
    let mut matches: Vec<RequestMatch> = Vec::new();
    for step in plan.step(step).into_iter().chain(plan.steps.iter()) {
        for wanted in &step.route.matches {
            if !matches.contains(wanted) {
                matches.push(wanted.clone());
            }
        }
    }
    matches
}
