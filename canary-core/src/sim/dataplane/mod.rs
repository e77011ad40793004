//! A model of the data planes canary drives: given the objects in a cluster at one moment
//! (Pods with their labels and readiness, Services, and each traffic provider's objects), which
//! pod answers a request, or none.
//!
//! Each model is written from the upstream data plane's documented and coded semantics, never
//! from canary's own rendering, so that a test asserting on what users' requests get checks
//! canary's objects against the real system, not against canary's reading of it twice. The
//! answer is exact, not sampled: [`Served`] gives the share of such requests each pod answers
//! (weights are probabilities), and what is left answers nobody (a 503 or a reset).
//!
//! ```
//! use canary_core::sim::dataplane::{Request, World};
//! use serde_json::json;
//!
//! let world = World::new(vec![
//!     json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
//!            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
//!     json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
//!            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
//! ]);
//! let endpoints = world.endpoints("shop", "web");
//! assert_eq!(endpoints.len(), 1);
//! assert_eq!(endpoints[0].name, "web-1");
//! let _request = Request::to("web.shop.svc.cluster.local", "/");
//! ```

pub mod asm;
pub mod gateway;
pub mod istio;
pub mod kuma;
pub mod nginx;
pub mod probe;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::k8s::objects::Objects;
use crate::traffic::ProviderKind;
use crate::workload::WorkloadDescriptor;

/// Who answers `request` in `world` on the data plane `provider` drives.
pub fn serve(provider: ProviderKind, world: &World, request: &Request) -> Served {
    match provider {
        ProviderKind::Istio => istio::serve(world, request),
        ProviderKind::Nginx => nginx::serve(world, request),
        ProviderKind::Kuma => kuma::serve(world, request),
        ProviderKind::Asm => asm::serve(world, request),
        ProviderKind::Gateway => gateway::serve(world, request),
    }
}

/// The objects of a cluster at one moment, as the data planes see them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    objects: Objects,
}

/// One pod, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

/// Who sends a request: where its proxy sits decides which routing rules it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A pod with a mesh sidecar (Istio, Kuma, ASM) in `namespace`.
    Sidecar {
        /// The caller's namespace.
        namespace: String,
    },
    /// A mesh gateway (an Istio `Gateway`'s proxy, a Kuma `MeshGateway`, the ASM ingress
    /// gateway), by namespace and name.
    Gateway {
        /// The gateway's namespace.
        namespace: String,
        /// The gateway's name.
        name: String,
    },
    /// The ingress-nginx controller, serving Ingresses of its class.
    IngressController,
}

/// One request: who sends it, and what routing rules can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who sends it.
    pub caller: Caller,
    /// The `Host` (authority) without port: a Service's short name, `<svc>.<ns>`, its
    /// cluster-local FQDN, or an external host name for ingresses and gateways.
    pub host: String,
    /// The destination port, when the caller addresses one (a mesh sidecar calling a Service).
    pub port: Option<u16>,
    /// The path, starting with `/`, without the query.
    pub path: String,
    /// The method, upper case.
    pub method: String,
    /// Headers by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// Cookies by name.
    pub cookies: BTreeMap<String, String>,
    /// Query parameters by name.
    pub query: BTreeMap<String, String>,
}

impl Request {
    /// A `GET` of `path` on `host` from a sidecar in the `default` namespace, without headers,
    /// cookies or query.
    pub fn to(host: &str, path: &str) -> Self {
        Request {
            caller: Caller::Sidecar {
                namespace: "default".to_owned(),
            },
            host: host.to_owned(),
            port: None,
            path: path.to_owned(),
            method: "GET".to_owned(),
            headers: BTreeMap::new(),
            cookies: BTreeMap::new(),
            query: BTreeMap::new(),
        }
    }

    /// This request sent by `caller`.
    pub fn from(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// This request with header `name` (lower-cased) set to `value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(name.to_ascii_lowercase(), value.to_owned());
        self
    }

    /// The headers as a proxy sees them: the cookies joined into one `cookie` header (unless the
    /// request carries one already).
    pub fn proxy_headers(&self) -> BTreeMap<String, String> {
        let mut headers = self.headers.clone();
        if !self.cookies.is_empty() && !headers.contains_key("cookie") {
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            headers.insert("cookie".to_owned(), cookie.join("; "));
        }
        headers
    }

    /// This request with cookie `name` set to `value`.
    pub fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// Who answers a kind of request: the share of such requests each pod answers (weights are
/// probabilities, spread evenly over a backend's ready endpoints), and the share of copies
/// mirrored to each pod (whose answers nobody sees). What the shares leave below 1 is answered
/// by nobody.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    /// Share of requests each pod answers.
    pub pods: BTreeMap<PodRef, f64>,
    /// Share of requests copied to each pod by mirroring.
    pub mirrored: BTreeMap<PodRef, f64>,
    /// Why some requests are answered by nobody, when they are (`no endpoints for shop/web`).
    pub unserved_because: Option<String>,
}

impl Served {
    /// Nobody answers, because of `why`.
    pub fn nobody(why: impl Into<String>) -> Self {
        Served {
            unserved_because: Some(why.into()),
            ..Served::default()
        }
    }

    /// `share` of requests spread evenly over `endpoints`; when there are none, that share is
    /// answered by nobody because of `why`.
    pub fn spread(&mut self, share: f64, endpoints: &[PodRef], why: impl FnOnce() -> String) {
        if share <= 0.0 {
            return;
        }
        if endpoints.is_empty() {
            self.unserved_because.get_or_insert_with(why);
            return;
        }
        let each = share / endpoints.len() as f64;
        for pod in endpoints {
            *self.pods.entry(pod.clone()).or_default() += each;
        }
    }

    /// `share` of copies spread evenly over `endpoints` (none without endpoints).
    pub fn mirror(&mut self, share: f64, endpoints: &[PodRef]) {
        if share <= 0.0 || endpoints.is_empty() {
            return;
        }
        let each = share / endpoints.len() as f64;
        for pod in endpoints {
            *self.mirrored.entry(pod.clone()).or_default() += each;
        }
    }

    /// Adds `other`, scaled by `share` (for a choice made before the routing `other` describes).
    pub fn add_scaled(&mut self, other: &Served, share: f64) {
        for (pod, value) in &other.pods {
            *self.pods.entry(pod.clone()).or_default() += value * share;
        }
        for (pod, value) in &other.mirrored {
            *self.mirrored.entry(pod.clone()).or_default() += value * share;
        }
        if share > 0.0
            && let Some(why) = &other.unserved_because
        {
            self.unserved_because.get_or_insert_with(|| why.clone());
        }
    }

    /// The share of requests answered by nobody.
    pub fn unserved(&self) -> f64 {
        (1.0 - self.pods.values().sum::<f64>()).max(0.0)
    }

    /// The share of requests answered by pods for which `pick` holds.
    pub fn share(&self, pick: impl Fn(&PodRef) -> bool) -> f64 {
        self.pods
            .iter()
            .filter(|(pod, _)| pick(pod))
            .map(|(_, share)| share)
            .sum()
    }
}

impl World {
    /// The world of `objects` (any kinds; those a model does not know are ignored).
    pub fn new(objects: Vec<Value>) -> Self {
        World {
            objects: Objects::new(objects),
        }
    }

    /// The objects.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The object of `kind` named `name` in `namespace` (cluster-scoped kinds: any namespace).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(kind, namespace, name)
    }

    /// Every object of `kind`, in all namespaces.
    pub fn all<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |item| item.get("kind").and_then(Value::as_str) == Some(kind))
    }

    /// The labels of `pod` (any object's `metadata.labels`).
    pub fn labels(object: &Value) -> BTreeMap<String, String> {
        string_map(object.pointer("/metadata/labels"))
    }

    /// True when `pod` is ready and not terminating: what the EndpointSlice controller
    /// publishes as a serving endpoint.
    pub fn ready(pod: &Value) -> bool {
        let terminating = pod.pointer("/metadata/deletionTimestamp").is_some();
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        ready && !terminating
    }

    /// The ready pods in `namespace` whose labels include every pair of `selector`. An empty
    /// selector selects nothing (a Service without a selector has no automatic endpoints).
    pub fn ready_pods(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Vec<PodRef> {
        if selector.is_empty() {
            return Vec::new();
        }
        self.all("Pod")
            .filter(|pod| {
                pod.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace)
            })
            .filter(|pod| Self::ready(pod))
            .filter(|pod| {
                let labels = Self::labels(pod);
                selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .filter_map(pod_ref)
            .collect()
    }

    /// The serving endpoints of Service `namespace/service`: its ready pods by its selector.
    /// None when the Service does not exist or has no selector.
    pub fn endpoints(&self, namespace: &str, service: &str) -> Vec<PodRef> {
        match self.objects.get("Service", namespace, service) {
            Some(svc) => self.ready_pods(namespace, &string_map(svc.pointer("/spec/selector"))),
            None => Vec::new(),
        }
    }

    /// The Pod object of `pod`.
    pub fn pod(&self, pod: &PodRef) -> Option<&Value> {
        self.objects.get("Pod", &pod.namespace, &pod.name)
    }

    /// The workload of kind `kind` that runs `pod` (through the object between them, such as
    /// a Deployment's ReplicaSet), if any.
    pub fn workload_of(&self, pod: &PodRef, kind: &WorkloadDescriptor) -> Option<String> {
        let object = self.pod(pod)?;
        let Some(between) = kind.pods_owned_through else {
            return owner(object, kind.kind).map(str::to_owned);
        };
        let middle = self
            .objects
            .get(between, &pod.namespace, owner(object, between)?)?;
        owner(middle, kind.kind).map(str::to_owned)
    }
}

/// The name of `object`'s owner of `kind`.
fn owner<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind)?
        .get("name")?
        .as_str()
}

/// A JSON object of strings as a map (other values are skipped).
pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn pod_ref(pod: &Value) -> Option<PodRef> {
    Some(PodRef {
        namespace: pod.pointer("/metadata/namespace")?.as_str()?.to_owned(),
        name: pod.pointer("/metadata/name")?.as_str()?.to_owned(),
    })
}

/// The Service a mesh host names, as `(namespace, name)`: `svc`, `svc.ns`, `svc.ns.svc` and
/// `svc.ns.svc.cluster.local` (Kubernetes DNS), resolving a short name in `caller_namespace`.
/// Other hosts name no Service.
pub fn service_of_host(host: &str, caller_namespace: &str) -> Option<(String, String)> {
    let host = host.trim_end_matches('.');
    let parts: Vec<&str> = host.split('.').collect();
    match parts.as_slice() {
        [name] => Some(((*caller_namespace).to_owned(), (*name).to_owned())),
        [name, namespace] | [name, namespace, "svc"] => {
            Some(((*namespace).to_owned(), (*name).to_owned()))
        }
        [name, namespace, "svc", "cluster", "local"] => {
            Some(((*namespace).to_owned(), (*name).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, labels: Value, ready: bool) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "shop", "labels": labels},
               "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn endpoints_are_the_ready_pods_the_selector_matches() {
        let world = World::new(vec![
            json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"selector": {"app": "web"}}}),
            json!({"kind": "Service", "metadata": {"name": "manual", "namespace": "shop"}, "spec": {}}),
            pod("web-1", json!({"app": "web", "extra": "x"}), true),
            pod("web-2", json!({"app": "web"}), false),
            pod("other", json!({"app": "other"}), true),
        ]);
        let names: Vec<String> = world
            .endpoints("shop", "web")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["web-1"]);
        assert!(world.endpoints("shop", "manual").is_empty());
        assert!(world.endpoints("shop", "missing").is_empty());
    }

    #[test]
    fn a_terminating_pod_serves_nobody() {
        let mut terminating = pod("web-1", json!({"app": "web"}), true);
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!World::ready(&terminating));
    }

    #[test]
    fn shares_add_up_and_the_rest_is_unserved() {
        let a = PodRef {
            namespace: "shop".into(),
            name: "a".into(),
        };
        let mut served = Served::default();
        served.spread(0.6, std::slice::from_ref(&a), String::new);
        served.spread(0.4, &[], || "no endpoints".to_owned());
        assert!((served.unserved() - 0.4).abs() < 1e-9);
        assert_eq!(served.unserved_because.as_deref(), Some("no endpoints"));
    }

    #[test]
    fn hosts_resolve_to_services() {
        assert_eq!(
            service_of_host("reviews", "demo"),
            Some(("demo".into(), "reviews".into()))
        );
        assert_eq!(
            service_of_host("reviews.prod.svc.cluster.local", "demo"),
            Some(("prod".into(), "reviews".into()))
        );
        assert_eq!(service_of_host("shop.example.com", "demo"), None);
    }
}
