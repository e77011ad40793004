//! Traffic: the provider-neutral route ([`RouteState`]), what a provider can express
//! ([`Capabilities`]), and what canary knows of each provider it ships, one
//! [`ProviderDescriptor`] per [`ProviderKind`] in one module each ([`istio`], [`nginx`],
//! [`kuma`], [`asm`]), and the [`Registry`] of the providers a Rollout may name (the built-in
//! ones and the plugins an embedder adds).
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
pub mod gateway;
pub mod istio;
pub mod kuma;
pub mod nginx;
mod registry;
mod route;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use capabilities::{Capabilities, MatchKinds};
pub use error::TrafficError;
pub use registry::Registry;
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
    /// Kubernetes Gateway API routes.
    #[serde(rename = "gatewayAPI")]
    Gateway,
}

/// What canary knows of one traffic provider: the table validation, the metrics and the
/// shells read instead of matching on the provider. The built-in providers have one each
/// ([`ProviderKind::descriptor`]); a provider written outside canary makes its own with
/// [`ProviderDescriptor::plugin`] and adds it to a [`Registry`], and a Rollout names it under
/// `spec.trafficRouting.plugin.name`.
///
/// ```
/// use canary_core::traffic::{Capabilities, ProviderDescriptor, Registry};
///
/// static TRAEFIK: ProviderDescriptor =
///     ProviderDescriptor::plugin("traefik", |_| Capabilities::weights_only());
///
/// let registry = Registry::builtin().register(&TRAEFIK).unwrap();
/// assert!(registry.names().contains(&"traefik"));
/// ```
#[derive(Debug)]
pub struct ProviderDescriptor {
    /// Its name: the key under `spec.trafficRouting` for a built-in provider (`istio`, `nginx`,
    /// `kuma`, `asm`), `spec.trafficRouting.plugin.name` for any other.
    pub name: &'static str,
    /// Whether a Rollout's `trafficRouting` names this provider, for a built-in one; `None` for
    /// a plugin, which `trafficRouting.plugin.name` names.
    pub named_in: Option<fn(&TrafficRouting) -> bool>,
    /// What the provider can route, for the settings in `trafficRouting` (a plugin reads its
    /// `plugin.config`): validation refuses a spec that asks for more.
    pub capabilities: fn(&TrafficRouting) -> Capabilities,
    /// Whether it routes by Service (a canary Service beside the stable one), so the canary's
    /// pods must not be selected by the stable Service
    /// ([`crate::k8s::services::canary_pod_label`]).
    pub routes_by_service: bool,
    /// The request counter and duration histogram its proxies export, which the builtin
    /// metrics query ([`ProviderDescriptor::metrics_for`]).
    pub metrics: Metrics,
    /// The labels the canary pods must carry for the provider to route to them (e.g. an ASM
    /// lane's tag), for the settings in `trafficRouting`.
    pub canary_pod_labels: fn(&TrafficRouting) -> BTreeMap<String, String>,
    /// The rules of its settings, checked when it is the chosen provider.
    pub check_settings: fn(&mut Checker, &TrafficRouting),
    /// The rules one request match must follow beyond the capabilities (at the match's field
    /// path).
    pub check_match: fn(&mut Checker, &str, &RequestMatch),
    /// Rules across the whole spec (e.g. pod labels the provider routes by).
    pub check_spec: fn(&mut Checker, &RolloutSpec),
}

impl ProviderDescriptor {
    /// A provider written outside canary, named `name` under `spec.trafficRouting.plugin`,
    /// routing what `capabilities` says: no metric family, no pod labels, no rules of its own.
    /// The `with_*` methods add them; every one is `const`, so a descriptor can be a `static`.
    pub const fn plugin(
        name: &'static str,
        capabilities: fn(&TrafficRouting) -> Capabilities,
    ) -> ProviderDescriptor {
        ProviderDescriptor {
            name,
            named_in: None,
            capabilities,
            routes_by_service: false,
            metrics: Metrics::None,
            canary_pod_labels: no_labels,
            check_settings: no_rules,
            check_match: no_match_rules,
            check_spec: no_rules,
        }
    }

    /// The same, routing by Service (see [`ProviderDescriptor::routes_by_service`]).
    pub const fn routing_by_service(mut self) -> ProviderDescriptor {
        self.routes_by_service = true;
        self
    }

    /// The same, with the metric family its proxies export, for the builtin metrics.
    pub const fn with_metrics(mut self, metrics: MetricFamily) -> ProviderDescriptor {
        self.metrics = Metrics::Family(metrics);
        self
    }

    /// The same, with the labels the canary pods must carry.
    pub const fn with_canary_pod_labels(
        mut self,
        labels: fn(&TrafficRouting) -> BTreeMap<String, String>,
    ) -> ProviderDescriptor {
        self.canary_pod_labels = labels;
        self
    }

    /// The same, with rules for its settings (a plugin's `config`).
    pub const fn with_settings_rules(
        mut self,
        rules: fn(&mut Checker, &TrafficRouting),
    ) -> ProviderDescriptor {
        self.check_settings = rules;
        self
    }

    /// The same, with rules for each request match beyond its capabilities.
    pub const fn with_match_rules(
        mut self,
        rules: fn(&mut Checker, &str, &RequestMatch),
    ) -> ProviderDescriptor {
        self.check_match = rules;
        self
    }

    /// The same, with rules across the whole spec.
    pub const fn with_spec_rules(
        mut self,
        rules: fn(&mut Checker, &RolloutSpec),
    ) -> ProviderDescriptor {
        self.check_spec = rules;
        self
    }

    /// The metric family of the provider's proxies for the settings in `routing`; `None` when
    /// there is none, and then validation refuses builtin metrics (custom queries still work).
    pub fn metrics_for(&self, routing: &TrafficRouting) -> Option<MetricFamily> {
        match self.metrics {
            Metrics::None => None,
            Metrics::Family(family) => Some(family),
            Metrics::BySettings(family) => family(routing),
        }
    }

    /// Whether `routing` names this provider.
    pub fn named_by(&self, routing: &TrafficRouting) -> bool {
        match self.named_in {
            Some(named_in) => named_in(routing),
            None => routing
                .plugin
                .as_ref()
                .is_some_and(|plugin| plugin.name == self.name),
        }
    }

    /// Whether it is a plugin (named by `trafficRouting.plugin`) rather than built in.
    pub fn is_plugin(&self) -> bool {
        self.named_in.is_none()
    }

    /// The built-in provider it describes, if it is one.
    pub fn builtin(&self) -> Option<ProviderKind> {
        if self.is_plugin() {
            return None;
        }
        ProviderKind::named(self.name)
    }
}

/// The metric family of a provider's proxies, which the builtin metrics query.
#[derive(Debug, Clone, Copy)]
pub enum Metrics {
    /// It has none: builtin metrics need custom queries.
    None,
    /// One family whatever the settings.
    Family(MetricFamily),
    /// The family depends on the settings (the Gateway API's implementation), or there is
    /// none for them.
    BySettings(fn(&TrafficRouting) -> Option<MetricFamily>),
}

/// Descriptors are told apart by name: a registry holds one per name.
impl PartialEq for ProviderDescriptor {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ProviderDescriptor {}

impl ProviderKind {
    /// Every provider canary ships.
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::Istio,
        ProviderKind::Nginx,
        ProviderKind::Kuma,
        ProviderKind::Asm,
        ProviderKind::Gateway,
    ];

    /// Its descriptor.
    pub fn descriptor(self) -> &'static ProviderDescriptor {
        match self {
            ProviderKind::Istio => &istio::DESCRIPTOR,
            ProviderKind::Nginx => &nginx::DESCRIPTOR,
            ProviderKind::Kuma => &kuma::DESCRIPTOR,
            ProviderKind::Asm => &asm::DESCRIPTOR,
            ProviderKind::Gateway => &gateway::DESCRIPTOR,
        }
    }

    /// The built-in provider called `name`, if any.
    pub fn named(name: &str) -> Option<ProviderKind> {
        ProviderKind::ALL
            .into_iter()
            .find(|kind| kind.descriptor().name == name)
    }

    /// The provider's name as the spec writes it (`istio`, `nginx`, `kuma`, `asm`).
    pub fn name(self) -> &'static str {
        self.descriptor().name
    }

    /// What the provider can route with the settings in `routing`.
    pub fn capabilities(self, routing: &TrafficRouting) -> Capabilities {
        (self.descriptor().capabilities)(routing)
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
pub fn no_labels(_: &TrafficRouting) -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// Checks nothing: for descriptors without rules of that kind.
pub fn no_rules<T: ?Sized>(_: &mut Checker, _: &T) {}

/// Checks nothing: for descriptors without rules on matches.
pub fn no_match_rules(_: &mut Checker, _: &str, _: &RequestMatch) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_provider_once() {
        for kind in ProviderKind::ALL {
            // Fails to compile when a provider is added: add it to `ALL` too.
            let index = match kind {
                ProviderKind::Istio => 0,
                ProviderKind::Nginx => 1,
                ProviderKind::Kuma => 2,
                ProviderKind::Asm => 3,
                ProviderKind::Gateway => 4,
            };
            assert_eq!(ProviderKind::ALL.get(index), Some(&kind));
        }
    }

    #[test]
    fn every_descriptor_describes_its_own_kind_under_its_own_name() {
        for kind in ProviderKind::ALL {
            let descriptor = kind.descriptor();
            assert_eq!(descriptor.builtin(), Some(kind));
            assert_eq!(ProviderKind::named(descriptor.name), Some(kind));
            let json = serde_json::to_value(kind).ok();
            assert_eq!(json, Some(serde_json::Value::from(descriptor.name)));
        }
    }

    #[test]
    fn a_plugin_is_named_by_its_plugin_name_only() {
        static TRAEFIK: ProviderDescriptor =
            ProviderDescriptor::plugin("traefik", |_| Capabilities::weights_only());
        let mut routing = TrafficRouting {
            plugin: Some(crate::api::spec::PluginRouting {
                name: "traefik".into(),
                config: Default::default(),
            }),
            ..TrafficRouting::default()
        };
        assert!(TRAEFIK.named_by(&routing));
        assert!(TRAEFIK.is_plugin() && TRAEFIK.builtin().is_none());
        assert!(!ProviderKind::Kuma.descriptor().named_by(&routing));
        routing.plugin = None;
        routing.kuma = Some(Default::default());
        assert!(!TRAEFIK.named_by(&routing));
        assert!(ProviderKind::Kuma.descriptor().named_by(&routing));
    }
}
