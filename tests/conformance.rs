//! The one conformance test every traffic provider of the registry passes, on the strict API
//! test server with the simulated kube-controller-manager running the pods: the contract of
//! `TrafficProvider` as the driver relies on it, and what users' requests get.
//!
//! For each provider, with a canary Deployment running beside the stable one:
//! - every route its capabilities allow (weights, a request match, a mirror) is applied until
//!   `observe` verifies it, in at most a few applies, and `observe` then reads back exactly
//!   that route;
//! - once in effect, requests get what the route says (the rules of
//!   `canary_core::sim::dataplane::probe::invariants`, with the canary fully available: its share
//!   is the weight, matched requests all reach it, copies are mirrored as asked);
//! - applying the same route again changes nothing and writes nothing, and a weight step
//!   writes at most three objects;
//! - `reset` sends everything back to stable (and again writes nothing the second time);
//! - `observe` reads what is live: asked about another route, it says the live one and that the
//!   other is not in effect;
//! - `finalize` leaves no object the provider made, and every object the user had as it was
//!   (spec, labels, annotations, finalizers), the stable Deployment included.
//!
//! A provider added to the registry fails to compile here until it has a [`Fixture`].
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::collections::BTreeMap;
use std::time::Duration;

use canary::api::spec::{RequestMatch, StringMatch};
use canary::engine::machine::Verification;
use canary::engine::providers::{TrafficProvider, WorkloadProvider};
use canary::kube::fixtures::TestCluster;
use canary::kube::workload::DeploymentWorkload;
use canary::sim::dataplane::World;
use canary::sim::dataplane::probe::invariants::{Expectation, canary_fully_available, violations};
use canary::sim::dataplane::probe::probe;
use canary::{ProviderKind, RolloutPlan, RouteState};
use kube_testserver::{ResourceType, Verb};
use serde_json::{Value, json};

const NAMESPACE: &str = "shop";
/// How many applies a route may take to be in effect (make-before-break steps included).
const MOST_APPLIES: usize = 6;
/// How many objects one weight step may write (the budget BENCHMARKS.md measures).
const WRITES_PER_WEIGHT_STEP: usize = 3;

/// What one provider needs to be tried: its settings and strategy, the objects a shop has
/// before canary, and the request match its routes can carry.
struct Fixture {
    routing: &'static str,
    strategy: &'static str,
    objects: Vec<Value>,
    /// Resource types of the provider that the API test server does not serve by default.
    types: Vec<ResourceType>,
    request: RequestMatch,
}

fn header(name: &str, value: &str) -> RequestMatch {
    RequestMatch {
        headers: [(name.to_owned(), StringMatch::exact(value))].into(),
        ..RequestMatch::default()
    }
}

/// Every mode of `kind`, each as a shop would set it up.
fn fixtures(kind: ProviderKind) -> Vec<Fixture> {
    let mut out = vec![fixture(kind)];
    let mut other = fixture(kind);
    match kind {
        ProviderKind::Istio | ProviderKind::Nginx => return out,
        ProviderKind::Kuma => other.routing = "{kuma: {mesh: default, routeKind: TrafficRoute}}",
        ProviderKind::Asm => {
            other.routing = "{asm: {laneGroup: shop-lanes, canaryLane: canary, baseLane: base, \
                             routeHeader: x-asm-prefer-tag, mode: weighted, \
                             ingress: {uri: {prefix: /}}}}";
            other.strategy = "{canary: {steps: [{weight: 20}, {weight: 50}]}}";
        }
        // A GRPCRoute canary generates, on the gateway's listener.
        ProviderKind::Gateway => {
            other.routing = "{gatewayAPI: {parentRefs: [{name: public, namespace: infra}], \
                             routeKind: GRPCRoute, hostnames: [web.example.com]}}";
            other.objects.retain(|object| object["kind"] != "HTTPRoute");
        }
    }
    out.push(other);
    out
}

fn fixture(kind: ProviderKind) -> Fixture {
    let mut labels = json!({"app": "web"});
    let weighted = "{canary: {steps: [{weight: 20}, {weight: 50}]}}";
    let mut fixture = Fixture {
        routing: "",
        strategy: weighted,
        objects: Vec::new(),
        types: Vec::new(),
        request: header("x-canary", "always"),
    };
    match kind {
        ProviderKind::Istio => fixture.routing = "{istio: {}}",
        ProviderKind::Nginx => {
            fixture.routing = "{nginx: {ingress: web}}";
            fixture.objects.push(json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "web", "namespace": NAMESPACE,
                             "annotations": {"kubernetes.io/ingress.class": "nginx"}},
                "spec": {"rules": [{"host": "web.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}}]}
            }));
        }
        ProviderKind::Kuma => {
            fixture.routing = "{kuma: {mesh: default}}";
            fixture.objects.push(json!({
                "apiVersion": "kuma.io/v1alpha1", "kind": "Mesh",
                "metadata": {"name": "default"}, "spec": {}
            }));
        }
        ProviderKind::Gateway => {
            // The shop's own HTTPRoute: static assets to their Service, the rest to web's.
            fixture.routing = "{gatewayAPI: {httpRoute: web}}";
            fixture.objects.extend([
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                       "metadata": {"name": "public", "namespace": "infra"},
                       "spec": {"gatewayClassName": "example", "listeners": [
                           {"name": "http", "port": 80, "protocol": "HTTP",
                            "allowedRoutes": {"namespaces": {"from": "All"}}}]}}),
                json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "assets", "namespace": NAMESPACE},
                       "spec": {"selector": {"app": "assets"}, "ports": [{"port": 80}]}}),
                json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                       "metadata": {"name": "web", "namespace": NAMESPACE,
                                    "annotations": {"team": "shop"}},
                       "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}],
                                "hostnames": ["web.example.com"],
                                "rules": [
                                    {"matches": [{"path": {"type": "PathPrefix",
                                                           "value": "/static"}}],
                                     "backendRefs": [{"name": "assets", "port": 80}]},
                                    {"backendRefs": [{"name": "web", "port": 8080}]}]}}),
            ]);
        }
        ProviderKind::Asm => {
            // Lanes entered by header: the lane's route header is the only match they take.
            fixture.routing = "{asm: {laneGroup: shop-lanes, canaryLane: canary, baseLane: base, \
                               routeHeader: x-asm-prefer-tag, ingress: {uri: {prefix: /}}}}";
            fixture.strategy =
                "{abTest: {matches: [{headers: {x-asm-prefer-tag: {exact: canary}}}]}}";
            fixture.request = header("x-asm-prefer-tag", "canary");
            labels["ASM_TRAFFIC_TAG"] = json!("base");
            for (kind, plural) in [
                ("ASMSwimLaneGroup", "asmswimlanegroups"),
                ("ASMSwimLane", "asmswimlanes"),
            ] {
                fixture.types.push(ResourceType::new(
                    "istio.alibabacloud.com",
                    "v1",
                    kind,
                    plural,
                    false,
                    true,
                ));
            }
        }
    }
    fixture.objects.extend([
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
               "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": labels},
                                     "spec": {"containers": [{"name": "web", "image": "web:1",
                                                              "ports": [{"containerPort": 8080}]}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": NAMESPACE},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"name": "http", "port": 8080, "targetPort": 8080,
                                   "appProtocol": "http"}]}}),
    ]);
    fixture
}

fn plan(kind: ProviderKind, fixture: &Fixture) -> RolloutPlan {
    let yaml = format!(
        "apiVersion: canary.rs/v1alpha1
kind: Rollout
metadata: {{name: web, namespace: {NAMESPACE}}}
spec:
  workloadRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  service: {{name: web, port: 8080}}
  newVersion: {{containers: [{{name: web, image: 'web:2'}}]}}
  trafficRouting: {}
  strategy: {}
",
        fixture.routing, fixture.strategy
    );
    let plan = canary::api::load::plan_from_yaml(&yaml).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    assert_eq!(plan.provider, kind.descriptor());
    plan
}

/// The routes to walk through: what the provider's capabilities allow, weights rising, then a
/// match, then a mirror.
fn routes(plan: &RolloutPlan, request: &RequestMatch) -> Vec<RouteState> {
    let capabilities = plan.capabilities();
    let mut out = Vec::new();
    if capabilities.weights {
        out.extend([20, 50, 100].map(RouteState::weighted));
    }
    if capabilities.max_matches > 0 && capabilities.refusals(request).is_empty() {
        out.push(RouteState {
            matches: vec![request.clone()],
            ..RouteState::stable()
        });
    }
    if capabilities.mirror {
        out.push(RouteState {
            mirror: Some(50),
            ..RouteState::stable()
        });
    }
    out
}

/// The write requests logged so far.
fn writes(cluster: &TestCluster) -> Vec<String> {
    cluster
        .server
        .requests()
        .into_iter()
        .filter(|r| {
            matches!(
                r.verb,
                Verb::Patch | Verb::Create | Verb::Update | Verb::Delete
            )
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Applies `route` (through `apply`, or `reset` for the all-stable route) until `observe`
/// verifies it; returns how many objects were written on the way.
async fn settle(
    label: &str,
    cluster: &TestCluster,
    traffic: &dyn TrafficProvider,
    route: &RouteState,
) -> usize {
    let before = writes(cluster).len();
    for _ in 0..MOST_APPLIES {
        let seen = traffic.observe(route).await.unwrap();
        if seen.verified != Verification::No && seen.route.as_ref() == Some(route) {
            return writes(cluster).len() - before;
        }
        if route.is_stable_only() {
            traffic.reset().await.unwrap();
        } else {
            traffic.apply(route).await.unwrap();
        }
    }
    let seen = traffic.observe(route).await.unwrap();
    panic!("{label}: {route:?} not in effect after {MOST_APPLIES} applies; observed {seen:?}");
}

/// What users' requests get breaks no rule of `route`, the canary fully available.
fn assert_served(label: &str, cluster: &TestCluster, plan: &RolloutPlan, route: &RouteState) {
    let world = World::new(cluster.server.snapshot());
    assert!(
        canary_fully_available(plan, &world),
        "{label}: the canary is not fully available"
    );
    let matches = route.matches.clone();
    let probed = probe(plan, &world, &matches);
    let expected = Expectation {
        route,
        canary_available: true,
        probed_matches: &matches,
        only_rollout_pods: true,
    };
    let broken: Vec<String> = violations(plan, &expected, &probed)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        broken.is_empty(),
        "{label}: requests under {route:?}:\n{}",
        broken.join("\n")
    );
}

/// Every object of the cluster but the pods and their ReplicaSets, by kind, namespace and name.
fn objects(cluster: &TestCluster) -> BTreeMap<String, Value> {
    let running = ["Pod", "ReplicaSet", "Event", "Lease", "Namespace"];
    cluster
        .server
        .snapshot()
        .into_iter()
        .filter(|o| !running.contains(&o["kind"].as_str().unwrap_or_default()))
        .filter(|o| o["kind"] != "Rollout" && o["kind"] != "CustomResourceDefinition")
        .map(|o| {
            let key = format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, o)
        })
        .collect()
}

async fn conformance(kind: ProviderKind, fixture: Fixture) {
    let backend =
        canary::registry::backend(kind.descriptor()).expect("every provider is in this build");
    let label = &format!("{} {}", backend.descriptor().name, fixture.routing);
    let plan = plan(kind, &fixture);
    let cluster = TestCluster::start(Duration::from_millis(50)).await;
    for resource in fixture.types.iter().cloned() {
        cluster.server.register(resource);
    }
    for object in fixture.objects.iter().cloned() {
        cluster.put(object);
    }
    cluster
        .wait_rolled_out(NAMESPACE, "web", Duration::from_secs(10))
        .await;
    let users: BTreeMap<String, Value> = objects(&cluster);

    // The canary runs beside stable, as the driver has it before any route names it.
    let workload = DeploymentWorkload::new(cluster.client.clone(), &plan);
    let revision = workload.observe().await.unwrap().desired_revision;
    workload.ensure_canary(&revision, 2).await.unwrap();
    cluster
        .wait_rolled_out(NAMESPACE, "web-canary", Duration::from_secs(10))
        .await;

    let traffic = backend.traffic(cluster.client.clone(), plan.clone());
    let traffic = traffic.as_ref();
    let walk = routes(&plan, &fixture.request);
    assert!(!walk.is_empty(), "{label}: no route to try");
    let mut previous = RouteState::stable();
    for route in &walk {
        let written = settle(label, &cluster, traffic, route).await;
        let seen = traffic.observe(route).await.unwrap();
        assert_eq!(seen.route.as_ref(), Some(route), "{label}: read back");
        // What is live, not what it is asked about: asked whether another route is in effect,
        // it says what is and that the other is not.
        let other = traffic.observe(&previous).await.unwrap();
        assert_eq!(
            other.route.as_ref(),
            Some(route),
            "{label}: read back, asked of another"
        );
        assert_ne!(
            other.verified,
            Verification::Yes,
            "{label}: {previous:?} verified"
        );
        assert_served(label, &cluster, &plan, route);
        if previous.weight > 0 && route.weight > 0 && previous.matches == route.matches {
            assert!(
                written <= WRITES_PER_WEIGHT_STEP,
                "{label}: {previous:?} -> {route:?} wrote {written} objects"
            );
        }
        let before = writes(&cluster);
        assert!(
            !traffic.apply(route).await.unwrap(),
            "{label}: applying {route:?} again changed something"
        );
        assert_eq!(writes(&cluster), before, "{label}: {route:?} again wrote");
        previous = route.clone();
    }

    let stable = RouteState::stable();
    settle(label, &cluster, traffic, &stable).await;
    assert_served(label, &cluster, &plan, &stable);
    let before = writes(&cluster);
    assert!(!traffic.reset().await.unwrap(), "{label}: reset twice");
    assert_eq!(writes(&cluster), before, "{label}: reset again wrote");

    // Deleting the Rollout mid-release: routes back, canary removed, provider finalized.
    if let Some(first) = walk.first() {
        settle(label, &cluster, traffic, first).await;
    }
    settle(label, &cluster, traffic, &stable).await;
    workload.remove_canary().await.unwrap();
    // Removed in the foreground: gone once the garbage collector has removed its pods.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cluster
        .server
        .get("apps/v1", "Deployment", Some(NAMESPACE), "web-canary")
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{label}: the canary Deployment is not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    traffic.finalize().await.unwrap();
    let left = objects(&cluster);
    for (key, object) in &left {
        let Some(had) = users.get(key) else {
            panic!("{label}: {key} is left after finalize: {object}");
        };
        for part in [
            "/spec",
            "/metadata/labels",
            "/metadata/annotations",
            "/metadata/finalizers",
        ] {
            assert_eq!(
                object.pointer(part),
                had.pointer(part),
                "{label}: {key}: {part} is not as the user had it"
            );
        }
    }
    for key in users.keys() {
        assert!(left.contains_key(key), "{label}: the user's {key} is gone");
    }
    let before = writes(&cluster);
    traffic.finalize().await.unwrap();
    assert_eq!(writes(&cluster), before, "{label}: finalize again wrote");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_provider_conforms() {
    assert!(!canary::registry::PROVIDERS.is_empty());
    for backend in canary::registry::PROVIDERS {
        let Some(kind) = backend.descriptor().builtin() else {
            panic!(
                "{} is registered but not built in",
                backend.descriptor().name
            );
        };
        for fixture in fixtures(kind) {
            conformance(kind, fixture).await;
        }
    }
}
