//! The provider-neutral route: where traffic goes, as every provider understands it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::spec::RequestMatch;

/// Where traffic goes, as every provider understands it: a weight to the canary, requests that
/// match going to the canary whatever the weight, and a share of requests mirrored to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteState {
    /// Canary weight, `0..=total`.
    pub weight: u32,
    /// The weight that means "all traffic"; 100 unless a provider says otherwise.
    pub total: u32,
    /// Requests sent to the canary whatever the weight (alternatives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    /// Percent of requests copied to the canary, answers dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<u32>,
}

impl Default for RouteState {
    fn default() -> Self {
        RouteState::stable()
    }
}

impl RouteState {
    /// All traffic to stable: weight 0, no matches, no mirror.
    pub fn stable() -> Self {
        RouteState {
            weight: 0,
            total: 100,
            matches: Vec::new(),
            mirror: None,
        }
    }

    /// A plain weighted route.
    pub fn weighted(weight: u32) -> Self {
        RouteState {
            weight,
            ..RouteState::stable()
        }
    }

    /// Whether `other` routes the same requests the same way, however it is written: weights
    /// as the same share of all traffic (`1/4` is `25/100`), the same alternatives in any
    /// order, and no mirror the same as a mirror of 0%. The engine compares what a provider
    /// observes with what it applied this way, so a provider whose native weights are not
    /// percents need not map them back exactly.
    ///
    /// ```
    /// use canary_core::RouteState;
    /// let quarter = RouteState { weight: 1, total: 4, ..RouteState::stable() };
    /// assert!(quarter.same_as(&RouteState::weighted(25)));
    /// let no_mirror = RouteState { mirror: Some(0), ..RouteState::weighted(25) };
    /// assert!(no_mirror.same_as(&RouteState::weighted(25)));
    /// assert!(!quarter.same_as(&RouteState::weighted(26)));
    /// ```
    pub fn same_as(&self, other: &RouteState) -> bool {
        let share = |route: &RouteState| {
            if route.total == 0 {
                (0, 1)
            } else {
                (
                    u64::from(route.weight.min(route.total)),
                    u64::from(route.total),
                )
            }
        };
        let ((a, x), (b, y)) = (share(self), share(other));
        let mirror = |route: &RouteState| route.mirror.filter(|percent| *percent > 0);
        a * y == b * x
            && mirror(self) == mirror(other)
            && self.matches.len() == other.matches.len()
            && self.matches.iter().all(|m| other.matches.contains(m))
            && other.matches.iter().all(|m| self.matches.contains(m))
    }

    /// True when no request reaches the canary, by weight, match or mirror.
    pub fn is_stable_only(&self) -> bool {
        self.weight == 0 && self.matches.is_empty() && self.mirror.unwrap_or(0) == 0
    }

    /// The canary weight in whole percent of all traffic (rounded), as meshes weigh routes.
    pub fn whole_percent(&self) -> u32 {
        if self.total == 0 {
            return 0;
        }
        let total = u64::from(self.total);
        let share = (u64::from(self.weight) * 100 + total / 2) / total;
        u32::try_from(share.min(100)).unwrap_or(100)
    }

    /// The canary weight as a percent of all traffic.
    pub fn weight_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            f64::from(self.weight) * 100.0 / f64::from(self.total)
        }
    }
}
