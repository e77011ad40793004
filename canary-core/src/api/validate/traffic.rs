//! `spec.trafficRouting`: exactly one provider, registered, and the rules of its descriptor.

use super::{Checker, limits};
use crate::api::spec::{RolloutSpec, TrafficRouting};
use crate::traffic::{Capabilities, ProviderDescriptor, Registry};

/// The provider a spec chose, with what it can route for the spec's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chosen {
    /// The provider.
    pub(super) descriptor: &'static ProviderDescriptor,
    /// What it can route with the spec's settings.
    pub(super) capabilities: Capabilities,
}

impl Chosen {
    /// The provider's name.
    pub(super) fn name(self) -> &'static str {
        self.descriptor.name
    }
}

/// Checks the provider settings; the provider when exactly one registered provider is named.
pub(super) fn check_routing(
    c: &mut Checker,
    routing: &TrafficRouting,
    registry: &Registry,
) -> Option<Chosen> {
    let mut named: Vec<(&str, bool)> = registry
        .providers()
        .filter(|provider| !provider.is_plugin())
        .map(|provider| (provider.name, provider.named_by(routing)))
        .collect();
    named.push(("plugin", routing.plugin.is_some()));
    c.exactly_one("spec.trafficRouting", &named);
    if let Some(plugin) = &routing.plugin
        && !check_plugin(c, plugin, registry)
    {
        // A plugin's rules and capabilities read its config: only a bounded one reaches them.
        return None;
    }
    let chosen = registry.chosen(routing)?;
    (chosen.check_settings)(c, routing);
    Some(Chosen {
        descriptor: chosen,
        capabilities: (chosen.capabilities)(routing),
    })
}

/// A plugin must be registered under its name, and its config bounded; false when the config
/// is too large to be given to the plugin.
fn check_plugin(
    c: &mut Checker,
    plugin: &crate::api::spec::PluginRouting,
    registry: &Registry,
) -> bool {
    let path = "spec.trafficRouting.plugin";
    match registry.get(&plugin.name) {
        Some(provider) if provider.is_plugin() => {}
        Some(provider) => c.error(
            format!("{path}.name"),
            format!(
                "`{}` is built in: set spec.trafficRouting.{} instead",
                plugin.name, provider.name
            ),
        ),
        None => {
            let plugins: Vec<&str> = registry
                .providers()
                .filter(|provider| provider.is_plugin())
                .map(|provider| provider.name)
                .collect();
            let known = if plugins.is_empty() {
                "none is registered".to_owned()
            } else {
                format!("registered: {}", plugins.join(", "))
            };
            c.error(
                format!("{path}.name"),
                format!(
                    "`{}` is not a registered traffic provider ({known}; built in: {})",
                    plugin.name,
                    registry
                        .providers()
                        .filter(|provider| !provider.is_plugin())
                        .map(|provider| provider.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    let size = serde_json::to_vec(&plugin.config).map_or(usize::MAX, |json| json.len());
    if size > limits::MAX_PLUGIN_CONFIG_BYTES {
        c.error(
            format!("{path}.config"),
            format!(
                "{size} bytes as JSON: at most {} are allowed",
                limits::MAX_PLUGIN_CONFIG_BYTES
            ),
        );
        return false;
    }
    true
}

/// The rules across the whole spec of the chosen provider.
pub(super) fn check_spec(c: &mut Checker, spec: &RolloutSpec, provider: Option<Chosen>) {
    if let Some(provider) = provider {
        (provider.descriptor.check_spec)(c, spec);
    }
}
