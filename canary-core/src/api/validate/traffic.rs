//! `spec.trafficRouting`: exactly one provider, and the rules of the chosen provider's
//! descriptor.

use super::Checker;
use crate::api::spec::{RolloutSpec, TrafficRouting};
use crate::traffic::{Capabilities, ProviderKind};

/// The provider a spec chose, with what it can route for the spec's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Chosen {
    /// The provider.
    pub(super) kind: ProviderKind,
    /// What it can route with the spec's settings.
    pub(super) capabilities: Capabilities,
}

impl Chosen {
    /// The provider's name.
    pub(super) fn name(self) -> &'static str {
        self.kind.name()
    }
}

/// Checks the provider settings; the provider when exactly one is named.
pub(super) fn check_routing(c: &mut Checker, routing: &TrafficRouting) -> Option<Chosen> {
    let named: Vec<(&str, bool)> = ProviderKind::ALL
        .iter()
        .map(|kind| {
            let descriptor = kind.descriptor();
            (descriptor.name, (descriptor.named_in)(routing))
        })
        .collect();
    c.exactly_one("spec.trafficRouting", &named);
    for kind in ProviderKind::ALL {
        let descriptor = kind.descriptor();
        if (descriptor.named_in)(routing) {
            (descriptor.check_settings)(c, routing);
        }
    }
    ProviderKind::of(routing).map(|kind| Chosen {
        kind,
        capabilities: kind.capabilities(routing),
    })
}

/// The rules across the whole spec of every provider the spec names.
pub(super) fn check_spec(c: &mut Checker, spec: &RolloutSpec) {
    for kind in ProviderKind::ALL {
        let descriptor = kind.descriptor();
        if (descriptor.named_in)(&spec.traffic_routing) {
            (descriptor.check_spec)(c, spec);
        }
    }
}
