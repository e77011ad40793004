//! What users' requests get during a rollout: for each kind of caller users have under the
//! Rollout's traffic provider, the shares of its requests answered by the stable Deployment's
//! pods, by the canary Deployment's pods, by other pods and by nobody, and the share copied to
//! the canary by mirroring.
//!
//! Callers are derived from the Rollout and the world (see [`callers`]): ingress-nginx for every
//! host and path of the stable Ingress that leads to the Service; mesh sidecars in the
//! Rollout's namespace and in another one; Istio gateways the spec or the VirtualService names;
//! the ASM lane group's ingress gateway. Each caller sends a **plain** request, one **matched**
//! request per request match (carrying what the match asks for, see [`sample`]), and under
//! ASM a **lane** request carrying the route header set to the canary lane.
//!
//! ```
//! use canary_core::sim::dataplane::probe::{CallerProbe, Probe, RequestClass};
//!
//! let probe = Probe {
//!     callers: vec![CallerProbe {
//!         caller: "sidecar in shop → web:80/".into(),
//!         class: RequestClass::Plain,
//!         request: "GET web:80/".into(),
//!         stable: 0.7,
//!         canary: 0.3,
//!         other: 0.0,
//!         none: 0.0,
//!         mirrored_to_canary: 0.0,
//!         unserved_because: None,
//!     }],
//!     unbuilt: Vec::new(),
//! };
//! assert!(probe.worst_unserved().is_none());
//! assert_eq!(probe.max_canary(RequestClass::Plain), 0.3);
//! ```

pub mod callers;
pub mod invariants;
pub mod sample;

use std::fmt;

use crate::api::plan::RolloutPlan;
use crate::api::spec::RequestMatch;
use crate::traffic::ProviderKind;

use super::{PodRef, Request, Served, World, nginx};

/// Shares below this are rounding, not requests.
pub const EPSILON: f64 = 1e-9;

/// Which kind of request a caller sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestClass {
    /// No match header, cookie or parameter: what most users send.
    Plain,
    /// Carrying what one of the request matches asks for.
    Matched,
    /// ASM: carrying the route header set to the canary lane's name.
    Lane,
}

impl fmt::Display for RequestClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestClass::Plain => "plain",
            RequestClass::Matched => "matched",
            RequestClass::Lane => "lane",
        })
    }
}

/// Who answers one kind of request from one kind of caller. The four answer shares add up to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerProbe {
    /// The caller and where it sends (`ingress-nginx echoserver.example.com/`,
    /// `sidecar in shop → web.shop.svc.cluster.local:80/`).
    pub caller: String,
    /// The kind of request.
    pub class: RequestClass,
    /// The request, for people (`GET web:80/ header x-canary=yes`).
    pub request: String,
    /// Share answered by pods of the stable Deployment.
    pub stable: f64,
    /// Share answered by pods of the canary Deployment.
    pub canary: f64,
    /// Share answered by pods of neither Deployment (another workload the route or Service
    /// reaches, or pods without an owning Deployment).
    pub other: f64,
    /// Share answered by no pod (a 503, a 404, a reset).
    pub none: f64,
    /// Share of copies mirrored to canary pods (their answers are dropped).
    pub mirrored_to_canary: f64,
    /// Why some requests are answered by nobody, when they are.
    pub unserved_because: Option<String>,
}

/// The shares of one kind of request, or their average over callers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shares {
    /// Answered by the stable Deployment's pods.
    pub stable: f64,
    /// Answered by the canary Deployment's pods.
    pub canary: f64,
    /// Answered by other pods.
    pub other: f64,
    /// Answered by nobody.
    pub none: f64,
    /// Mirrored to the canary's pods.
    pub mirrored_to_canary: f64,
}

/// What every kind of caller's requests get at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    /// One entry per caller and request class.
    pub callers: Vec<CallerProbe>,
    /// Request matches no request could be built for (a regex no simple string matches), with
    /// why: those requests were not sent, rather than guessed.
    pub unbuilt: Vec<String>,
}

impl Probe {
    /// The entry with the largest share answered by nobody, when any request is unanswered.
    pub fn worst_unserved(&self) -> Option<&CallerProbe> {
        self.callers
            .iter()
            .filter(|c| c.none > EPSILON)
            .max_by(|a, b| a.none.total_cmp(&b.none))
    }

    /// The largest canary share among entries of `class` (0 when there are none).
    pub fn max_canary(&self, class: RequestClass) -> f64 {
        self.of(class).map(|c| c.canary).fold(0.0, f64::max)
    }

    /// The smallest canary share among entries of `class`, if there are any.
    pub fn min_canary(&self, class: RequestClass) -> Option<f64> {
        self.of(class).map(|c| c.canary).reduce(f64::min)
    }

    /// The largest share of copies mirrored to the canary among entries of `class`.
    pub fn max_mirrored(&self, class: RequestClass) -> f64 {
        self.of(class)
            .map(|c| c.mirrored_to_canary)
            .fold(0.0, f64::max)
    }

    /// The shares of the plain requests, averaged over callers (all zero without callers).
    pub fn plain_shares(&self) -> Shares {
        self.average(RequestClass::Plain)
    }

    /// The shares of `class`'s requests, averaged over callers (all zero without callers).
    pub fn average(&self, class: RequestClass) -> Shares {
        let entries: Vec<&CallerProbe> = self.of(class).collect();
        if entries.is_empty() {
            return Shares::default();
        }
        let n = entries.len() as f64;
        let sum = |pick: fn(&CallerProbe) -> f64| entries.iter().map(|c| pick(c)).sum::<f64>() / n;
        Shares {
            stable: sum(|c| c.stable),
            canary: sum(|c| c.canary),
            other: sum(|c| c.other),
            none: sum(|c| c.none),
            mirrored_to_canary: sum(|c| c.mirrored_to_canary),
        }
    }

    /// The entries of `class`.
    pub fn of(&self, class: RequestClass) -> impl Iterator<Item = &CallerProbe> + '_ {
        self.callers.iter().filter(move |c| c.class == class)
    }
}

/// What users' requests get in `world` under `plan`: every caller's plain request, one request
/// per entry of `matches` (the current step's request matches; empty when it has none), and
/// under ASM the canary lane's route header. When the objects the provider routes through are
/// missing (no stable Ingress), one entry says so, answered by nobody.
pub fn probe(plan: &RolloutPlan, world: &World, matches: &[RequestMatch]) -> Probe {
    let mut probe = Probe::default();
    let targets = match callers::targets(plan, world) {
        Ok(targets) => targets,
        Err(why) => {
            probe.callers.push(CallerProbe {
                caller: plan
                    .provider
                    .builtin()
                    .map_or(plan.provider.name, provider_label)
                    .to_owned(),
                class: RequestClass::Plain,
                request: String::new(),
                stable: 0.0,
                canary: 0.0,
                other: 0.0,
                none: 1.0,
                mirrored_to_canary: 0.0,
                unserved_because: Some(why),
            });
            return probe;
        }
    };
    for (index, wanted) in matches.iter().enumerate() {
        if let Some(target) = targets.first()
            && let Err(why) = sample::matching_request(&target.request, wanted)
        {
            probe.unbuilt.push(format!("match {}: {why}", index + 1));
        }
    }
    let lane = lane_header(plan);
    for target in &targets {
        let mut requests = vec![(RequestClass::Plain, target.request.clone())];
        for wanted in matches {
            if let Ok(request) = sample::matching_request(&target.request, wanted) {
                requests.push((RequestClass::Matched, request));
            }
        }
        if let Some((header, value)) = &lane {
            requests.push((
                RequestClass::Lane,
                target.request.clone().header(header, value),
            ));
        }
        for (class, request) in requests {
            let served = serve(plan, world, &request);
            probe.callers.push(classify(
                plan,
                world,
                &target.label,
                class,
                &request,
                &served,
            ));
        }
    }
    probe
}

/// Who answers `request`: ingress-nginx with the annotation prefix the spec sets, the other
/// providers' models as they are.
fn serve(plan: &RolloutPlan, world: &World, request: &Request) -> Served {
    match (
        plan.provider.builtin(),
        &plan.rollout.spec.traffic_routing.nginx,
    ) {
        (Some(ProviderKind::Nginx), Some(settings)) => nginx::serve_with_prefix(
            world,
            request,
            settings
                .annotation_prefix
                .as_deref()
                .unwrap_or(nginx::DEFAULT_ANNOTATIONS_PREFIX),
        ),
        (Some(kind), _) => super::serve(kind, world, request),
        // No caller is probed without a data-plane model (`callers::targets`).
        (None, _) => Served::default(),
    }
}

/// ASM's route header and the canary lane's name.
fn lane_header(plan: &RolloutPlan) -> Option<(String, String)> {
    match plan.provider.builtin() {
        Some(ProviderKind::Asm) => {
            let asm = plan.rollout.spec.traffic_routing.asm.as_ref()?;
            Some((asm.route_header.clone(), asm.canary_lane.clone()))
        }
        _ => None,
    }
}

fn provider_label(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Nginx => "ingress-nginx",
        ProviderKind::Istio => "istio",
        ProviderKind::Kuma => "kuma",
        ProviderKind::Asm => "asm",
        ProviderKind::Gateway => "gateway",
    }
}

/// Splits `served` by the Deployment each pod belongs to.
fn classify(
    plan: &RolloutPlan,
    world: &World,
    caller: &str,
    class: RequestClass,
    request: &Request,
    served: &Served,
) -> CallerProbe {
    let stable_name = plan.rollout.spec.workload_ref.name.as_str();
    let canary_name = plan.canary_workload();
    let deployment = |pod: &PodRef| -> Option<String> {
        (pod.namespace == plan.namespace)
            .then(|| world.workload_of(pod, plan.workload))
            .flatten()
    };
    let is_stable = |pod: &PodRef| deployment(pod).as_deref() == Some(stable_name);
    let is_canary = |pod: &PodRef| deployment(pod).as_deref() == Some(canary_name.as_str());
    // `+ 0.0` turns a `-0.0` sum into `0.0`.
    let stable = served.share(is_stable) + 0.0;
    let canary = served.share(is_canary) + 0.0;
    let answered: f64 = served.pods.values().sum();
    let none = served.unserved() + 0.0;
    CallerProbe {
        caller: caller.to_owned(),
        class,
        request: describe(request),
        stable,
        canary,
        other: (answered - stable - canary).max(0.0),
        none,
        mirrored_to_canary: served
            .mirrored
            .iter()
            .filter(|(pod, _)| is_canary(pod))
            .map(|(_, share)| share)
            .sum::<f64>()
            + 0.0,
        unserved_because: if none > EPSILON {
            served.unserved_because.clone()
        } else {
            None
        },
    }
}

/// `GET host:port/path?q=v header h=v cookie c=v`.
fn describe(request: &Request) -> String {
    let mut out = format!("{} {}", request.method, request.host);
    if let Some(port) = request.port {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(&request.path);
    let query: Vec<String> = request
        .query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !query.is_empty() {
        out.push('?');
        out.push_str(&query.join("&"));
    }
    for (name, value) in &request.headers {
        out.push_str(&format!(" header {name}={value}"));
    }
    for (name, value) in &request.cookies {
        out.push_str(&format!(" cookie {name}={value}"));
    }
    out
}
