//! Rendering: a Rollout, a route and the objects in the cluster → the DestinationRule and
//! VirtualService to apply. Pure; the provider and `canary render` both use it.

use canary_core::objects::Objects;
use canary_core::{RolloutPlan, RouteState};
use serde_json::Value;

use crate::destination_rule;
use crate::error::Result;
use crate::subsets::{self, Subsets};
use crate::virtual_service;

/// The objects that put a route in effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The subsets the routes use.
    pub subsets: Subsets,
    /// The DestinationRule defining them.
    pub destination_rule: Value,
    /// The VirtualService weighting them.
    pub virtual_service: Value,
}

impl Rendered {
    /// Both objects, the DestinationRule first (subsets must exist before routes use them).
    pub fn objects(&self) -> Vec<Value> {
        vec![self.destination_rule.clone(), self.virtual_service.clone()]
    }
}

/// The objects for `route`. `objects` holds the stable Deployment (and its ReplicaSets when
/// its pods carry no version label), and the VirtualService and DestinationRule when they
/// exist already.
pub fn render(plan: &RolloutPlan, route: &RouteState, objects: &Objects) -> Result<Rendered> {
    let subsets = subsets::resolve(plan, objects)?;
    let namespace = &plan.namespace;
    let existing_vs = objects.get("VirtualService", namespace, &virtual_service::name(plan));
    let existing_dr = objects.get("DestinationRule", namespace, &destination_rule::name(plan));
    Ok(Rendered {
        destination_rule: destination_rule::desired(plan, &subsets, &[], existing_dr),
        virtual_service: virtual_service::desired(plan, route, &subsets, existing_vs)?,
        subsets,
    })
}
