//! Rendering: a Rollout, a route and the objects in the cluster → the canary Service, its
//! DestinationRule and the VirtualService to apply. Pure; the provider and `canary render`
//! both use it.

use canary_core::k8s::objects::{Objects, generated};
use canary_core::k8s::services::{canary_service, stable_selects_canary, stable_service};
use canary_core::{RolloutPlan, RouteState};
use serde_json::Value;

use crate::destination_rule;
use crate::error::{Error, Result};
use crate::virtual_service;

/// The objects that put a route in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The canary Service `<service>-canary`, when the route sends the canary anything.
    pub canary_service: Option<Value>,
    /// The DestinationRule of the canary host, when the route sends the canary anything and
    /// the user's DestinationRule for the service host has a traffic policy to carry over.
    pub canary_destination_rule: Option<Value>,
    /// The VirtualService weighting the service host and the canary host.
    pub virtual_service: Value,
}

impl Rendered {
    /// The objects in the order they are applied: the canary Service and its DestinationRule
    /// before the VirtualService that routes to them.
    pub fn objects(&self) -> Vec<Value> {
        [
            self.canary_service.clone(),
            self.canary_destination_rule.clone(),
            Some(self.virtual_service.clone()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The objects for `route`. `objects` holds the stable Service (needed when the route sends
/// the canary anything), the canary Deployment and pods when they run, and the VirtualService
/// and the user's DestinationRule when they exist already. A route to the canary is refused
/// while the stable Service selects the canary's pods (its share would reach them).
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    let namespace = &plan.namespace;
    let existing_vs = objects.get("VirtualService", namespace, &virtual_service::name(plan));
    let virtual_service = virtual_service::desired(plan, route, existing_vs)?;
    if route.is_stable_only() {
        return Ok(Rendered {
            canary_service: None,
            canary_destination_rule: None,
            virtual_service,
        });
    }
    let stable = stable_service(plan, objects).map_err(Error::Input)?;
    if let Some(why) = stable_selects_canary(plan, stable, objects) {
        return Err(Error::Input(why));
    }
    let user_dr = objects
        .get("DestinationRule", namespace, &destination_rule::name(plan))
        .filter(|dr| !generated(dr));
    if let Some(dr) = user_dr {
        destination_rule::check_shape(dr).map_err(Error::Input)?;
    }
    Ok(Rendered {
        canary_service: Some(canary_service(plan, stable).map_err(Error::Input)?),
        canary_destination_rule: destination_rule::canary(plan, user_dr),
        virtual_service,
    })
}
