//! Whole releases through the real controller `reconcile`, for every traffic provider and every
//! strategy it supports, on the strict API test server with the simulated
//! kube-controller-manager moving pods by itself: what users' requests get is checked against
//! the route the Rollout's status says is in effect after every pass and twice between passes
//! (see `canary_core::sim::dataplane::probe::invariants`): no request answered by nobody, the
//! canary's share within (and, once it is fully available, equal to) the route's weight, no
//! canary pod answering while the route sends it nothing, matched requests reaching the canary
//! only while the route matches them.
//!
//! The weighted canary runs of each provider go through controller restarts (a fresh context
//! every few passes) and injected API conflicts and errors, then a rollback on bad metrics and a
//! Rollout deleted mid-release. After a pass that failed half-way the world may still show the
//! route of before the pass (the engine saves the status before it applies the route): the
//! rules must then hold for one of the two, until a pass succeeds again.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::sync::Arc;
use std::time::{Duration, Instant};

use canary::cluster::ClusterTraffic;
use canary::engine::machine::MetricOutcome;
use canary::engine::status::StepStage;
use canary::kube::controller::{Context, reconcile};
use canary::kube::crd::Rollout;
use canary::kube::fixtures::TestCluster;
use canary::sim::dataplane::probe::RequestClass;
use canary::{Phase, RolloutPlan, RolloutStatus, RouteState};
use kube_testserver::ResourceType;
use serde_json::{Value, json};

const NAMESPACE: &str = "shop";
const NAME: &str = "web";
/// How long a simulated pod takes to become ready.
const POD_STARTUP: Duration = Duration::from_millis(100);
/// The pause between two checks between passes.
const BETWEEN: Duration = Duration::from_millis(40);
/// How long one phase of a scenario may take.
const LIMIT: Duration = Duration::from_secs(25);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Istio,
    /// Istio editing the shop's own VirtualService, bound to the mesh and to a gateway.
    IstioGateway,
    /// Istio with Bookinfo's `version` labels: in the stable selector, and changed by the
    /// Rollout's `newVersion`.
    IstioVersions,
    Nginx,
    Kuma,
    /// ASM lanes routed by header.
    AsmHeader,
    /// ASM lanes routed by ingress weight.
    AsmWeighted,
}

impl Provider {
    fn routing(self) -> &'static str {
        match self {
            Provider::Istio | Provider::IstioVersions => "{istio: {}}",
            Provider::IstioGateway => "{istio: {virtualService: {name: web, routes: [primary]}}}",
            Provider::Nginx => "{nginx: {ingress: web}}",
            Provider::Kuma => "{kuma: {mesh: default}}",
            Provider::AsmHeader => {
                "{asm: {laneGroup: shop-lanes, canaryLane: canary, baseLane: base, \
                 routeHeader: x-asm-prefer-tag, ingress: {uri: {prefix: /}}}}"
            }
            Provider::AsmWeighted => {
                "{asm: {laneGroup: shop-lanes, canaryLane: canary, baseLane: base, \
                 routeHeader: x-asm-prefer-tag, mode: weighted, ingress: {uri: {prefix: /}}}}"
            }
        }
    }

    fn asm(self) -> bool {
        matches!(self, Provider::AsmHeader | Provider::AsmWeighted)
    }
}

/// The Rollout `web` with `strategy` on `provider`: 1 s analysis of a success rate that must
/// stay above 99%, rolled back at the first failed check.
fn rollout_yaml(provider: Provider, strategy: &str) -> String {
    format!(
        "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {{name: {NAME}, namespace: {NAMESPACE}}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  service: {{name: web, port: 8080}}
  trafficRouting: {routing}
  strategy: {strategy}
  analysis:
    interval: 1s
    scrapeInterval: 1s
    failureLimit: 1
    metrics:
    - {{name: request-success-rate, interval: 2s, thresholdRange: {{min: 99}}}}
  progressDeadline: 30s
{new_version}",
        routing = provider.routing(),
        new_version = if provider == Provider::IstioVersions {
            "  newVersion: {version: v2, containers: [{name: web, image: 'web:2'}]}\n"
        } else {
            ""
        }
    )
}

/// What a shop runs before canary: the stable Deployment (three replicas), its Service, and
/// what the provider needs: an Ingress for ingress-nginx, the default Kuma Mesh as the control
/// plane creates it (no MeshServices), the ASM lane tag of the base lane on the stable pods.
fn objects(provider: Provider) -> Vec<Value> {
    let mut labels = json!({"app": "web"});
    let mut selector = json!({"app": "web"});
    if provider.asm() {
        labels["ASM_TRAFFIC_TAG"] = json!("base");
    }
    if provider == Provider::IstioVersions {
        labels["version"] = json!("v1");
        selector["version"] = json!("v1");
    }
    let mut out = vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
               "spec": {"replicas": 3, "selector": {"matchLabels": selector},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [{"name": "web", "image": "web:1",
                                                              "ports": [{"containerPort": 8080}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": NAMESPACE},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": 8080,
                                   "appProtocol": "http"}]}}),
    ];
    match provider {
        Provider::Nginx => out.push(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "web", "namespace": NAMESPACE,
                         "annotations": {"kubernetes.io/ingress.class": "nginx"}},
            "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}}]}
        })),
        // The gateway serves every host: the VirtualService's hosts are asked for through it.
        Provider::IstioGateway => out.extend([
            json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                   "metadata": {"name": "public", "namespace": NAMESPACE},
                   "spec": {"selector": {"istio": "ingressgateway"},
                            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                                         "hosts": ["*"]}]}}),
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "web", "namespace": NAMESPACE},
                   "spec": {"hosts": ["web", "web.example.com"], "gateways": ["mesh", "public"],
                            "http": [{"name": "primary",
                                      "route": [{"destination": {"host": "web"}}]}]}}),
        ]),
        Provider::Kuma => out.push(json!({
            "apiVersion": "kuma.io/v1alpha1", "kind": "Mesh",
            "metadata": {"name": "default"}, "spec": {}
        })),
        _ => {}
    }
    out
}

/// True when the canary Deployment and its pods are gone and every replica of the stable
/// Deployment is available, running its template when `rolled` (after a rollback the stable
/// Deployment holds the refused template, paused, and keeps running the old one).
fn settled(cluster: &TestCluster, rolled: bool) -> bool {
    let canary_gone = cluster
        .server
        .get("apps/v1", "Deployment", Some(NAMESPACE), "web-canary")
        .is_none();
    let canary_pods = cluster
        .server
        .list("v1", "Pod")
        .iter()
        .any(|p| p["metadata"]["labels"]["canary.rs/role"] == "canary");
    let stable = cluster
        .server
        .get("apps/v1", "Deployment", Some(NAMESPACE), "web")
        .unwrap_or(Value::Null);
    let replicas = stable["spec"]["replicas"].as_i64();
    let available = stable["status"]["availableReplicas"].as_i64() == replicas
        && stable["status"]["replicas"].as_i64() == replicas;
    let updated = stable["status"]["observedGeneration"] == stable["metadata"]["generation"]
        && stable["status"]["updatedReplicas"].as_i64() == replicas;
    canary_gone && !canary_pods && available && (updated || !rolled)
}

/// One Rollout on its own cluster, driven pass by pass as the controller's runtime would, with
/// what users' requests get checked all along.
struct Release {
    cluster: TestCluster,
    plan: RolloutPlan,
    label: String,
    context: Arc<Context>,
    /// A fresh context (a restarted controller) every this many passes.
    restart_every: Option<usize>,
    passes: usize,
    failed_passes: usize,
    restarts: usize,
    checks: usize,
    /// Routes a pass that failed half-way may have left in effect, until a pass succeeds.
    unsettled: Vec<RouteState>,
    /// Every route the status showed.
    routes_seen: Vec<RouteState>,
    image: u32,
    /// The provider is ASM's.
    asm: bool,
    /// After every pass: the largest canary share of plain requests, of matched requests, and
    /// of copies mirrored to the canary, over callers.
    seen: Vec<(f64, f64, f64)>,
    /// The user's objects as Git holds them, when Flux applies them (see [`Release::flux`]).
    git: Option<Vec<Value>>,
}

impl Release {
    /// A cluster running the stable workload of `provider`, the Rollout with `strategy`
    /// created and adopted (a `newVersion` that changes the stable template starts a release
    /// right away).
    async fn start(provider: Provider, strategy: &str) -> Self {
        let cluster = TestCluster::start(POD_STARTUP).await;
        if provider.asm() {
            for (kind, plural) in [
                ("ASMSwimLaneGroup", "asmswimlanegroups"),
                ("ASMSwimLane", "asmswimlanes"),
            ] {
                cluster.server.register(ResourceType::new(
                    "istio.alibabacloud.com",
                    "v1",
                    kind,
                    plural,
                    false,
                    true,
                ));
            }
        }
        for object in objects(provider) {
            cluster.put(object);
        }
        cluster
            .wait_rolled_out(NAMESPACE, "web", Duration::from_secs(10))
            .await;
        let yaml = rollout_yaml(provider, strategy);
        let plan = canary::api::load::plan_from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}"));
        let rollout: Rollout = serde_saphyr::from_str(&yaml).unwrap();
        cluster.create_rollout(&rollout).await;
        let context = cluster.context(Arc::new(ClusterTraffic::new()));
        let mut release = Release {
            label: format!("{provider:?} {strategy}"),
            cluster,
            plan,
            context,
            restart_every: None,
            passes: 0,
            failed_passes: 0,
            restarts: 0,
            checks: 0,
            unsettled: Vec::new(),
            routes_seen: Vec::new(),
            image: 1,
            asm: provider.asm(),
            seen: Vec::new(),
            git: None,
        };
        release.check("before the first pass");
        release
            .drive("adoption", |s| {
                s.is_some_and(|s| s.phase != Phase::Initializing && s.stable_revision.is_some())
            })
            .await;
        release.check("adopted");
        release
    }

    fn status(&self) -> Option<RolloutStatus> {
        self.cluster
            .rollout(NAMESPACE, NAME)
            .map(|r| r.status.map(|s| s.engine).unwrap_or_default())
    }

    /// Every rule of what users' requests get holds now.
    fn check(&mut self, when: &str) {
        let mut found = self.cluster.check_traffic_with(&self.plan, &self.unsettled);
        // Under ASM the lane group and its way in through the gateway are canary's, made when
        // it adopts the stable workload and deleted with the last Rollout: before and after,
        // only sidecars' requests are canary's concern (the other providers route the shop's
        // own objects, and are checked from the start).
        if self.asm && self.status().is_none_or(|s| s.stable_revision.is_none()) {
            found.retain(|line| !line.contains("] gateway "));
        }
        self.checks += 1;
        assert!(
            found.is_empty(),
            "{}: {when} (pass {}):\n{}",
            self.label,
            self.passes,
            found.join("\n")
        );
    }

    /// From now on the user's objects of `provider` are kept in Git and applied by Flux: at
    /// once, after every third pass, and for every release (a commit), by server-side apply
    /// with force as `kustomize-controller`, through the API server (so canary's admission
    /// webhook sees Flux's writes as a real one would).
    async fn flux(&mut self, provider: Provider) {
        self.git = Some(objects(provider));
        self.flux_sync().await;
    }

    /// Flux applies Git (see [`Release::flux`]).
    async fn flux_sync(&self) {
        let Some(git) = &self.git else { return };
        for manifest in git {
            let api_version = manifest["apiVersion"].as_str().unwrap();
            let kind = manifest["kind"].as_str().unwrap();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let lower = kind.to_lowercase();
            let plural = if lower.ends_with('s') || lower.ends_with('h') {
                format!("{lower}es")
            } else {
                format!("{lower}s")
            };
            let resource = kube::discovery::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk(group, version, kind),
                &plural,
            );
            let api: kube::Api<kube::api::DynamicObject> = match manifest["metadata"]["namespace"]
                .as_str()
            {
                Some(ns) => kube::Api::namespaced_with(self.cluster.client.clone(), ns, &resource),
                None => kube::Api::all_with(self.cluster.client.clone(), &resource),
            };
            let name = manifest["metadata"]["name"].as_str().unwrap();
            api.patch(
                name,
                &kube::api::PatchParams::apply("kustomize-controller").force(),
                &kube::api::Patch::Apply(manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: Flux applies {kind} {name}: {e}", self.label));
        }
    }

    /// What canary left on the user's objects that Git does not have: its annotations, a
    /// paused Deployment, another Service selector.
    fn left_on_user_objects(&self) -> Vec<String> {
        let mut left = Vec::new();
        for manifest in self.git.iter().flatten() {
            let Some(live) = self.cluster.server.get(
                manifest["apiVersion"].as_str().unwrap(),
                manifest["kind"].as_str().unwrap(),
                manifest["metadata"]["namespace"].as_str(),
                manifest["metadata"]["name"].as_str().unwrap(),
            ) else {
                continue;
            };
            let what = format!("{} {}", manifest["kind"], manifest["metadata"]["name"]);
            let annotations = live["metadata"]["annotations"]
                .as_object()
                .into_iter()
                .flatten();
            for (key, _) in annotations.filter(|(key, _)| key.starts_with("canary.rs/")) {
                left.push(format!("{what}: annotation {key}"));
            }
            if live["spec"]["paused"] == json!(true) {
                left.push(format!("{what}: paused"));
            }
            if manifest["kind"] == "Service"
                && live["spec"]["selector"] != manifest["spec"]["selector"]
            {
                left.push(format!("{what}: selector {}", live["spec"]["selector"]));
            }
        }
        left
    }

    /// One reconcile pass, as the controller's runtime makes it (a fresh context when a
    /// restart is due); a pass failed by an injected fault is tolerated. Flux applies Git
    /// after every third pass.
    async fn pass(&mut self) {
        let Some(rollout) = self.cluster.rollout(NAMESPACE, NAME) else {
            return;
        };
        if self.passes % 3 == 2 {
            self.flux_sync().await;
        }
        let before = rollout
            .status
            .clone()
            .map(|s| s.engine)
            .unwrap_or_default()
            .routing
            .route;
        self.passes += 1;
        if self
            .restart_every
            .is_some_and(|n| self.passes.is_multiple_of(n))
        {
            self.context = self.cluster.context(Arc::new(ClusterTraffic::new()));
            self.restarts += 1;
        }
        match reconcile(Arc::new(rollout), self.context.clone()).await {
            Ok(_) => self.unsettled.clear(),
            Err(_) => {
                self.failed_passes += 1;
                if !self.unsettled.contains(&before) {
                    self.unsettled.push(before);
                }
            }
        }
        if let Some(status) = self.status()
            && !self.routes_seen.contains(&status.routing.route)
        {
            self.routes_seen.push(status.routing.route);
        }
    }

    /// Passes until `done` holds of the status (`None` once the Rollout is gone), checking
    /// after every pass and twice between passes.
    async fn drive(&mut self, what: &str, done: impl Fn(Option<&RolloutStatus>) -> bool) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let status = self.status();
            if done(status.as_ref()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} not reached in {LIMIT:?}: {:?}",
                self.label,
                status.map(|s| (s.phase, s.step, s.routing.route, s.message))
            );
            self.pass().await;
            self.check(&format!("{what}, after a pass"));
            let probe = self.cluster.probe_traffic(&self.plan);
            self.seen.push((
                probe.max_canary(RequestClass::Plain),
                probe.max_canary(RequestClass::Matched),
                probe.max_mirrored(RequestClass::Plain),
            ));
            for _ in 0..2 {
                tokio::time::sleep(BETWEEN).await;
                self.check(&format!("{what}, between passes"));
            }
        }
    }

    /// Passes (while the Rollout exists) and checks until the cluster is [`settled`].
    async fn settle(&mut self, what: &str, rolled: bool) {
        let deadline = Instant::now() + LIMIT;
        while !settled(&self.cluster, rolled) {
            assert!(
                Instant::now() < deadline,
                "{}: {what}: the cluster did not settle",
                self.label
            );
            self.pass().await;
            self.check(&format!("{what}, settling"));
            tokio::time::sleep(BETWEEN).await;
            self.check(&format!("{what}, settling between passes"));
        }
        self.check(&format!("{what}, settled"));
    }

    /// Releases a new image, as `kubectl set image` does, or by a commit to Git applied at
    /// once.
    async fn new_image(&mut self) -> String {
        self.image += 1;
        let image = format!("web:{}", self.image);
        if self.git.is_some() {
            self.commit_image(&image).await;
            return image;
        }
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}});
        self.cluster
            .patch_deployment(NAMESPACE, "web", &patch)
            .await;
        image
    }

    /// Commits `image` as the stable Deployment's in Git, and Flux applies it.
    async fn commit_image(&mut self, image: &str) {
        for manifest in self.git.iter_mut().flatten() {
            if manifest["kind"] == "Deployment" {
                manifest["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
            }
        }
        self.flux_sync().await;
    }

    /// The images the stable Deployment's pods run.
    fn stable_images(&self) -> Vec<Value> {
        let mut images: Vec<Value> = self
            .cluster
            .pods(NAMESPACE, "web")
            .iter()
            .map(|pod| pod["spec"]["containers"][0]["image"].clone())
            .collect();
        images.dedup();
        images
    }

    /// A release of a new image that ends `Succeeded` with the image on stable.
    async fn succeed(&mut self) {
        let image = self.new_image().await;
        self.drive("the release", |s| {
            s.is_some_and(|s| s.phase == Phase::Succeeded && s.release.canary_revision.is_none())
        })
        .await;
        self.cluster.server.faults().clear();
        self.settle("after the promotion", true).await;
        assert_eq!(self.stable_images(), [json!(image)], "{}", self.label);
    }

    /// A release of a new image that the analysis rolls back: the stable image is kept.
    async fn roll_back(&mut self) {
        let before = self.stable_images();
        self.cluster
            .metrics
            .set("request-success-rate", MetricOutcome::Value(50.0));
        self.new_image().await;
        self.drive("the rollback", |s| {
            s.is_some_and(|s| s.phase == Phase::Failed)
        })
        .await;
        self.settle("after the rollback", false).await;
        assert_eq!(self.stable_images(), before, "{}", self.label);
        self.cluster
            .metrics
            .set("request-success-rate", MetricOutcome::Value(99.9));
    }

    /// A release of a new image, the Rollout deleted once traffic reaches the canary.
    async fn delete_mid_release(&mut self) {
        self.new_image().await;
        self.drive("the first step", |s| {
            s.is_some_and(|s| !s.routing.route.is_stable_only() && s.stage == StepStage::Gating)
        })
        .await;
        self.cluster.delete_rollout(NAMESPACE, NAME).await;
        self.check("just deleted");
        self.drive("the deletion", |s| s.is_none()).await;
        self.settle("after the deletion", false).await;
    }

    /// The status routed as `route` wants at some point, users' requests got what `got`
    /// wants (plain, matched and mirrored canary shares) after some pass, and the checks ran:
    /// they were not vacuous.
    fn routed(&self, route: impl Fn(&RouteState) -> bool, got: impl Fn(f64, f64, f64) -> bool) {
        assert!(
            self.routes_seen.iter().any(route),
            "{}: routes seen {:?}",
            self.label,
            self.routes_seen
        );
        assert!(
            self.seen
                .iter()
                .any(|&(plain, matched, mirrored)| got(plain, matched, mirrored)),
            "{}: canary shares (plain, matched, mirrored) seen {:?}",
            self.label,
            self.seen
        );
        assert!(self.checks > 10, "{}: {} checks", self.label, self.checks);
    }
}

/// `a` and `b` are the same share.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

const WEIGHTED: &str = "{canary: {steps: [{weight: 20}, {weight: 60}]}}";
const BLUE_GREEN: &str = "{blueGreen: {switch: AfterReady}}";
const AB_TEST: &str = "{abTest: {matches: [{headers: {x-canary: {exact: 'yes'}}}]}}";
const MIRROR: &str = "{mirror: {percent: 50, promote: true}}";

/// Weighted steps through restarts and injected API faults, then a rollback on bad metrics,
/// then a Rollout deleted mid-release.
async fn weighted_release_rollback_and_deletion(provider: Provider) {
    let mut release = Release::start(provider, WEIGHTED).await;
    release.restart_every = Some(3);
    let faults = release.cluster.server.faults();
    faults.set_seed(7);
    faults.set_conflict_rate(0.1);
    faults.set_error_rate(0.1);
    release.succeed().await;
    assert!(release.failed_passes > 0, "{}: no fault hit", release.label);
    assert!(release.restarts > 0);
    // Each step's weight and the promotion's 100% reached users.
    for weight in [0.2, 0.6, 1.0] {
        release.routed(|r| r.weight == 60, |plain, _, _| same(plain, weight));
    }
    release.roll_back().await;
    release.delete_mid_release().await;
}

/// `strategy` released to the end, with a controller restart every few passes.
async fn release_to_the_end(provider: Provider, strategy: &str) -> Release {
    let mut release = Release::start(provider, strategy).await;
    release.restart_every = Some(4);
    release.succeed().await;
    release
}

#[tokio::test(flavor = "multi_thread")]
async fn istio_weighted_steps_faults_rollback_and_deletion() {
    weighted_release_rollback_and_deletion(Provider::Istio).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_weighted_steps_faults_rollback_and_deletion() {
    weighted_release_rollback_and_deletion(Provider::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kuma_weighted_steps_faults_rollback_and_deletion() {
    weighted_release_rollback_and_deletion(Provider::Kuma).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn asm_weighted_lanes_faults_rollback_and_deletion() {
    weighted_release_rollback_and_deletion(Provider::AsmWeighted).await;
}

/// The shop's objects kept in Git and applied by Flux every few passes: a release from a
/// commit succeeds, and nothing of canary's is left on the shop's objects; a bad release is
/// rolled back and the stable Deployment stays held on Git's refused template (its pods keep
/// the old image) until the commit is reverted, then is let go without rolling.
#[tokio::test(flavor = "multi_thread")]
async fn flux_applying_git_every_few_passes_on_istio_nginx_and_kuma() {
    for provider in [Provider::Istio, Provider::Nginx, Provider::Kuma] {
        let mut release = Release::start(provider, WEIGHTED).await;
        release.flux(provider).await;
        release.succeed().await;
        release.settle("after the promotion", true).await;
        for _ in 0..3 {
            release.pass().await;
        }
        let left = release.left_on_user_objects();
        assert!(left.is_empty(), "{}: {left:?}", release.label);

        let good = release.stable_images();
        release.roll_back().await;
        let held = release.left_on_user_objects();
        assert!(
            held.iter().any(|l| l.contains("paused")),
            "{}: {held:?}",
            release.label
        );
        let previous = format!("web:{}", release.image - 1);
        release.commit_image(&previous).await;
        for _ in 0..4 {
            release.pass().await;
            release.check("Git reverted");
        }
        let left = release.left_on_user_objects();
        assert!(left.is_empty(), "{}: {left:?}", release.label);
        release.settle("after the revert", true).await;
        assert_eq!(release.stable_images(), good, "{}: no roll", release.label);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn blue_green_on_every_provider() {
    for provider in [Provider::Istio, Provider::Nginx, Provider::Kuma] {
        let release = release_to_the_end(provider, BLUE_GREEN).await;
        release.routed(|r| r.weight == 100, |plain, _, _| same(plain, 1.0));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ab_tests_by_header_on_every_provider() {
    for provider in [
        Provider::Istio,
        Provider::IstioGateway,
        Provider::Nginx,
        Provider::Kuma,
    ] {
        let release = release_to_the_end(provider, AB_TEST).await;
        release.routed(
            |r| r.weight == 0 && !r.matches.is_empty(),
            |plain, matched, _| same(plain, 0.0) && same(matched, 1.0),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_ab_test_by_cookie_then_deleted_while_matching() {
    let strategy = "{abTest: {matches: [{cookie: {name: beta}}]}}";
    let mut release = release_to_the_end(Provider::Nginx, strategy).await;
    release.routed(
        |r| !r.matches.is_empty(),
        |plain, matched, _| same(plain, 0.0) && same(matched, 1.0),
    );
    release.delete_mid_release().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn asm_header_lanes_release_roll_back_and_delete() {
    let strategy = "{abTest: {matches: [{headers: {x-asm-prefer-tag: {exact: canary}}}]}}";
    let mut release = release_to_the_end(Provider::AsmHeader, strategy).await;
    release.routed(
        |r| !r.matches.is_empty(),
        |plain, matched, _| same(plain, 0.0) && same(matched, 1.0),
    );
    release.roll_back().await;
    release.delete_mid_release().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mirror_on_istio_and_kuma() {
    for provider in [Provider::Istio, Provider::Kuma] {
        let release = release_to_the_end(provider, MIRROR).await;
        release.routed(
            |r| r.mirror.is_some(),
            |plain, _, mirrored| same(plain, 0.0) && same(mirrored, 0.5),
        );
    }
}

/// The checks see what users would: a status whose route sends the canary nothing while the
/// world still does is caught, and so is a stable Service that selects no pod (Kuma then leaves
/// the stable backend out, and the canary answers everything).
#[tokio::test(flavor = "multi_thread")]
async fn the_checks_catch_a_broken_world() {
    let mut release = Release::start(Provider::Kuma, WEIGHTED).await;
    release.new_image().await;
    release
        .drive("the first step", |s| {
            s.is_some_and(|s| s.routing.route.weight == 20 && s.stage == StepStage::Gating)
        })
        .await;
    let cluster = &release.cluster;
    let plan = &release.plan;
    assert_eq!(cluster.check_traffic(plan), Vec::<String>::new());

    let held = cluster
        .server
        .get("canary.rs/v1alpha1", "Rollout", Some(NAMESPACE), NAME)
        .unwrap();
    let mut rollout = held.clone();
    rollout["status"]["route"]["weight"] = json!(0);
    cluster.put(rollout);
    let found = cluster.check_traffic(plan);
    assert!(
        found.iter().any(|l| l.contains("[canary-outside-release]")),
        "{found:#?}"
    );
    cluster.put(held);
    assert_eq!(cluster.check_traffic(plan), Vec::<String>::new());

    let mut service = cluster
        .server
        .get("v1", "Service", Some(NAMESPACE), "web")
        .unwrap();
    service["spec"]["selector"] = json!({"app": "nothing"});
    cluster.put(service);
    let found = cluster.check_traffic(plan);
    assert!(
        found.iter().any(|l| l.contains("[canary-above-weight]")),
        "{found:#?}"
    );
}

/// Bookinfo's labels: the stable selector holds `version: v1`, the new version's pods carry
/// `version: v2`; the release starts with the Rollout and runs to the end.
#[tokio::test(flavor = "multi_thread")]
async fn istio_with_version_labels_in_the_stable_selector() {
    let mut release = Release::start(Provider::IstioVersions, WEIGHTED).await;
    release.restart_every = Some(4);
    release
        .drive("the release", |s| {
            s.is_some_and(|s| s.phase == Phase::Succeeded && s.release.canary_revision.is_none())
        })
        .await;
    release.settle("after the promotion", true).await;
    assert_eq!(
        release.stable_images(),
        [json!("web:2")],
        "{}",
        release.label
    );
    for weight in [0.2, 0.6, 1.0] {
        release.routed(|r| r.weight == 60, |plain, _, _| same(plain, weight));
    }
}
