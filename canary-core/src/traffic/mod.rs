//! Traffic: the provider-neutral route ([`RouteState`]), what a provider can express
//! ([`Capabilities`]), and what canary knows of each provider it ships, one
//! [`ProviderDescriptor`] per [`ProviderKind`] in one module each ([`istio`], [`nginx`],
//! [`kuma`], [`asm`]).
//!
//! A descriptor is the whole of a provider's knowledge that the engine and validation need:
//! its name under `spec.trafficRouting`, its capabilities for the settings a Rollout gives it
//! (a mode such as ASM's `weighted` or Kuma's legacy `TrafficRoute` is a setting, not another
//! provider), whether it routes by Service, the metric family its proxies export, and the rules
//! its settings and matches must follow. The provider crates render and apply the routes; the
//! facade's registry pairs each descriptor with its crate.

pub mod asm;
mod capabilities;
mod error;
pub mod istio;
pub mod kuma;
pub mod nginx;
mod route;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use capabilities::{Capabilities, MatchKinds};
pub use error::TrafficError;
pub use route::RouteState;

use crate::analysis::queries::MetricFamily;
use crate::api::plan::RolloutPlan;
use crate::api::spec::{RequestMatch, RolloutSpec, TrafficRouting};
use crate::api::validate::Checker;
use crate::error::Result;
use crate::k8s::objects::Objects;

/// The traffic providers canary ships, by the key a Rollout names them with under
/// `spec.trafficRouting`. A provider's mode lives in its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Istio VirtualService + DestinationRule.
    Istio,
    /// ingress-nginx canary Ingress.
    Nginx,
    /// Kuma MeshHTTPRoute, or the legacy TrafficRoute.
    Kuma,
    /// Alibaba ASM traffic lanes, routed by header or by ingress weight.
    Asm,
}

/// What canary knows of one traffic provider: the table validation, the metrics and the
/// shells read instead of matching on the provider.
#[derive(Debug)]
pub struct ProviderDescriptor {
    /// The provider.
    pub kind: ProviderKind,
    /// Its key under `spec.trafficRouting` (`istio`, `nginx`, `kuma`, `asm`).
    pub name: &'static str,
    /// Whether a Rollout's `trafficRouting` names this provider.
    pub named_in: fn(&TrafficRouting) -> bool,
    /// What the provider can route, for the settings in `trafficRouting`.
    pub capabilities: fn(&TrafficRouting) -> Capabilities,
    /// Whether it routes by Service (a canary Service beside the stable one), so the canary's
    /// pods must not be selected by the stable Service
    /// ([`crate::k8s::services::canary_pod_label`]).
    pub routes_by_service: bool,
    /// The request counter and duration histogram its proxies export, which the builtin
    /// metrics query.
    pub metrics: MetricFamily,
    /// The labels the canary pods must carry for the provider to route to them (e.g. an ASM
    /// lane's tag), for the settings in `trafficRouting`.
    pub canary_pod_labels: fn(&TrafficRouting) -> BTreeMap<String, String>,
    /// The rules of its settings, checked when it is the chosen provider.
    pub(crate) check_settings: fn(&mut Checker, &TrafficRouting),
    /// The rules one request match must follow beyond the capabilities (at the match's field
    /// path).
    pub(crate) check_match: fn(&mut Checker, &str, &RequestMatch),
    /// Rules across the whole spec (e.g. pod labels the provider routes by).
    pub(crate) check_spec: fn(&mut Checker, &RolloutSpec),
}

impl ProviderKind {
    /// Every provider canary ships.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Istio,
        ProviderKind::Nginx,
        ProviderKind::Kuma,
        ProviderKind::Asm,
    ];

    /// Its descriptor.
    pub fn descriptor(self) -> &'static ProviderDescriptor {
        match self {
            ProviderKind::Istio => &istio::DESCRIPTOR,
            ProviderKind::Nginx => &nginx::DESCRIPTOR,
            ProviderKind::Kuma => &kuma::DESCRIPTOR,
            ProviderKind::Asm => &asm::DESCRIPTOR,
        }
    }

    /// The provider chosen by `spec.trafficRouting`, if exactly one is named.
    pub fn of(routing: &TrafficRouting) -> Option<ProviderKind> {
        let mut named = ProviderKind::ALL
            .into_iter()
            .filter(|kind| (kind.descriptor().named_in)(routing));
        match (named.next(), named.next()) {
            (Some(kind), None) => Some(kind),
            _ => None,
        }
    }

    /// The provider's name as the spec writes it (`istio`, `nginx`, `kuma`, `asm`).
    pub fn name(self) -> &'static str {
        self.descriptor().name
    }

    /// What the provider can route with the settings in `routing`.
    pub fn capabilities(self, routing: &TrafficRouting) -> Capabilities {
        (self.descriptor().capabilities)(routing)
    }

    /// Whether the provider routes by Service (see
    /// [`ProviderDescriptor::routes_by_service`]).
    pub fn routes_by_service(self) -> bool {
        self.descriptor().routes_by_service
    }
}

/// A traffic provider crate as the shells use it: its descriptor, and the objects it renders
/// for a route (what `canary render` prints, and what its cluster provider applies). The
/// Kubernetes layer adds making the provider that applies them to a cluster
/// (`canary_kube::traffic::ClusterBackend`).
pub trait TrafficBackend: Send + Sync {
    /// What canary knows of the provider.
    fn descriptor(&self) -> &'static ProviderDescriptor;

    /// The objects that route as `route` says for `plan`, given the cluster `objects` they
    /// are built from (the Service, the user's own route objects, …).
    fn render(
        &self,
        plan: &RolloutPlan,
        route: &RouteState,
        objects: &Objects,
    ) -> Result<Vec<serde_json::Value>>;
}

/// Declares a provider crate's backend: a unit struct implementing [`TrafficBackend`] with a
/// descriptor and the crate's `render(plan, route, objects)`, whose result lists its objects
/// with `objects()` in the order they are applied.
///
/// ```text
/// canary_core::traffic_backend!(
///     /// The Istio backend.
///     Istio, canary_core::traffic::istio::DESCRIPTOR, render
/// );
/// ```
#[macro_export]
macro_rules! traffic_backend {
    ($(#[$meta:meta])* $name:ident, $descriptor:path, $render:path) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl $crate::traffic::TrafficBackend for $name {
            fn descriptor(&self) -> &'static $crate::traffic::ProviderDescriptor {
                &$descriptor
            }

            fn render(
                &self,
                plan: &$crate::RolloutPlan,
                route: &$crate::RouteState,
                objects: &$crate::k8s::objects::Objects,
            ) -> $crate::Result<::std::vec::Vec<::serde_json::Value>> {
                Ok($render(plan, route, objects)?.objects())
            }
        }
    };
}

/// No labels: for providers that route to the canary pods by their Service.
pub(crate) fn no_labels(_: &TrafficRouting) -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// Checks nothing: for descriptors without rules of that kind.
pub(crate) fn no_rules<T: ?Sized>(_: &mut Checker, _: &T) {}

/// Checks nothing: for descriptors without rules on matches.
pub(crate) fn no_match_rules(_: &mut Checker, _: &str, _: &RequestMatch) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_provider_is_a_provider() {
        let mut routing = TrafficRouting::default();
        assert_eq!(ProviderKind::of(&routing), None);
        routing.kuma = Some(Default::default());
        assert_eq!(ProviderKind::of(&routing), Some(ProviderKind::Kuma));
        routing.istio = Some(Default::default());
        assert_eq!(ProviderKind::of(&routing), None);
    }

    #[test]
    fn all_lists_every_provider_once() {
        for kind in ProviderKind::ALL {
            // Fails to compile when a provider is added: add it to `ALL` too.
            let index = match kind {
                ProviderKind::Istio => 0,
                ProviderKind::Nginx => 1,
                ProviderKind::Kuma => 2,
                ProviderKind::Asm => 3,
            };
            assert_eq!(ProviderKind::ALL.get(index), Some(&kind));
        }
    }

    #[test]
    fn every_descriptor_describes_its_own_kind_under_its_own_name() {
        for kind in ProviderKind::ALL {
            let descriptor = kind.descriptor();
            assert_eq!(descriptor.kind, kind);
            let json = serde_json::to_value(kind).ok();
            assert_eq!(json, Some(serde_json::Value::from(descriptor.name)));
        }
    }
}
