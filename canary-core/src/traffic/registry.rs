//! The traffic providers a Rollout may name: the built-in ones, and the plugins an embedder
//! registers. Validation looks the chosen provider up here, so a plugin is checked against its
//! own capabilities and rules exactly as a built-in provider is.

use super::{ProviderDescriptor, ProviderKind};
use crate::api::names;
use crate::api::spec::TrafficRouting;
use crate::error::{Error, Result};

/// The providers a Rollout may name, by name.
///
/// [`Registry::builtin`] (also the `Default`) holds canary's own; [`Registry::register`] adds a
/// plugin, which a Rollout then names under `spec.trafficRouting.plugin.name`.
#[derive(Debug, Clone)]
pub struct Registry {
    providers: Vec<&'static ProviderDescriptor>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// The built-in providers.
    pub fn builtin() -> Registry {
        Registry {
            providers: ProviderKind::ALL
                .into_iter()
                .map(ProviderKind::descriptor)
                .collect(),
        }
    }

    /// The same providers and `plugin`. Refused when it is not a plugin
    /// ([`ProviderDescriptor::plugin`]), when its name is not a DNS-1123 label (lowercase
    /// letters, digits and `-`, at most 63 characters), or when the name is taken.
    pub fn register(mut self, plugin: &'static ProviderDescriptor) -> Result<Registry> {
        let refuse = |why: String| {
            Err(Error::Registry(format!(
                "cannot register traffic provider `{}`: {why}",
                plugin.name
            )))
        };
        if !plugin.is_plugin() {
            return refuse("only a plugin (ProviderDescriptor::plugin) can be registered".into());
        }
        if let Err(why) = names::dns1123_label(plugin.name) {
            return refuse(why);
        }
        if self.get(plugin.name).is_some() {
            return refuse(format!(
                "the name is taken (registered: {})",
                self.names().join(", ")
            ));
        }
        self.providers.push(plugin);
        Ok(self)
    }

    /// The provider called `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&'static ProviderDescriptor> {
        self.providers
            .iter()
            .copied()
            .find(|provider| provider.name == name)
    }

    /// The names of every registered provider, built-in ones first.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers
            .iter()
            .map(|provider| provider.name)
            .collect()
    }

    /// Every registered provider.
    pub fn providers(&self) -> impl Iterator<Item = &'static ProviderDescriptor> + '_ {
        self.providers.iter().copied()
    }

    /// The provider `routing` names, when it names exactly one registered provider.
    pub fn chosen(&self, routing: &TrafficRouting) -> Option<&'static ProviderDescriptor> {
        let mut named = self
            .providers()
            .filter(|provider| provider.named_by(routing));
        match (named.next(), named.next()) {
            (Some(provider), None) => Some(provider),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::PluginRouting;
    use crate::traffic::Capabilities;

    static TRAEFIK: ProviderDescriptor =
        ProviderDescriptor::plugin("traefik", |_| Capabilities::weights_only());
    static BAD_NAME: ProviderDescriptor =
        ProviderDescriptor::plugin("Traefik_2", |_| Capabilities::weights_only());
    static KUMA_AGAIN: ProviderDescriptor =
        ProviderDescriptor::plugin("kuma", |_| Capabilities::weights_only());

    #[test]
    fn a_plugin_is_found_by_name_after_the_builtin_providers() {
        let registry = Registry::builtin().register(&TRAEFIK).unwrap();
        assert_eq!(
            registry.names(),
            ["istio", "nginx", "kuma", "asm", "gatewayAPI", "traefik"]
        );
        assert_eq!(registry.get("traefik"), Some(&TRAEFIK));
        let routing = TrafficRouting {
            plugin: Some(PluginRouting {
                name: "traefik".into(),
                config: Default::default(),
            }),
            ..TrafficRouting::default()
        };
        assert_eq!(registry.chosen(&routing), Some(&TRAEFIK));
        assert_eq!(Registry::builtin().chosen(&routing), None);
    }

    #[test]
    fn a_taken_or_malformed_name_or_a_builtin_descriptor_is_refused() {
        let taken = Registry::builtin().register(&KUMA_AGAIN).unwrap_err();
        assert!(taken.to_string().contains("the name is taken"), "{taken}");
        let twice = Registry::builtin()
            .register(&TRAEFIK)
            .and_then(|registry| registry.register(&TRAEFIK));
        assert!(twice.is_err());
        let malformed = Registry::builtin().register(&BAD_NAME).unwrap_err();
        assert!(malformed.to_string().contains("Traefik_2"), "{malformed}");
        let builtin = Registry::builtin()
            .register(ProviderKind::Istio.descriptor())
            .unwrap_err();
        assert!(builtin.to_string().contains("only a plugin"), "{builtin}");
    }

    #[test]
    fn two_providers_named_at_once_choose_none() {
        let routing = TrafficRouting {
            kuma: Some(Default::default()),
            istio: Some(Default::default()),
            ..TrafficRouting::default()
        };
        assert_eq!(Registry::builtin().chosen(&routing), None);
        let kuma = TrafficRouting {
            kuma: Some(Default::default()),
            ..TrafficRouting::default()
        };
        assert_eq!(
            Registry::builtin().chosen(&kuma),
            Some(ProviderKind::Kuma.descriptor())
        );
    }
}
