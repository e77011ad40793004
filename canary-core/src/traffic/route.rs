//! The provider-neutral route: where traffic goes, as every provider understands it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::spec::{CookieMatch, RequestMatch};

/// Where traffic goes, as every provider understands it: a weight to the canary, requests that
/// match going to the canary whatever the weight, and a share of requests mirrored to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteState {
    /// Canary weight, `0..=total`.
    pub weight: u32,
    /// The weight that means "all traffic": 100 in the routes the engine applies; a provider
    /// may read a route back in its own units (e.g. 250 of 1000).
    pub total: u32,
    /// Requests sent to the canary whatever the weight (alternatives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    /// Percent of requests copied to the canary, answers dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<u32>,
}

/// Whether two lists of alternatives match the same requests: the same set of matches, each
/// read as a proxy reads it (header names in any case, a cookie without a value as `always`).
fn same_alternatives(a: &[RequestMatch], b: &[RequestMatch]) -> bool {
    let normal = |request: &RequestMatch| RequestMatch {
        headers: request
            .headers
            .iter()
            .map(|(name, condition)| (name.to_ascii_lowercase(), condition.clone()))
            .collect(),
        cookie: request.cookie.as_ref().map(|cookie| CookieMatch {
            name: cookie.name.clone(),
            value: Some(cookie.value().to_owned()),
        }),
        ..request.clone()
    };
    let (a, b): (Vec<_>, Vec<_>) = (
        a.iter().map(normal).collect(),
        b.iter().map(normal).collect(),
    );
    a.iter().all(|m| b.contains(m)) && b.iter().all(|m| a.contains(m))
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

    /// Whether `other` routes the same requests the same way, however it is written: the same
    /// share of all traffic to the whole percent (`1/4` is `25/100`, `333/1000` is `33/100`;
    /// none is none and all is all), the same alternatives in any order (header names in any
    /// case, a cookie without a value the same as one of `always`), and no mirror the same as a
    /// mirror of 0%. A weight with no `total`, or above it, is the same only as itself. The
    /// engine compares what a provider observes with what it applied this way, so a provider
    /// whose native weights are not percents need not map them back exactly.
    ///
    /// ```
    /// use canary_core::RouteState;
    /// let quarter = RouteState { weight: 1, total: 4, ..RouteState::stable() };
    /// assert!(quarter.same_as(&RouteState::weighted(25)));
    /// let no_mirror = RouteState { mirror: Some(0), ..RouteState::weighted(25) };
    /// assert!(no_mirror.same_as(&RouteState::weighted(25)));
    /// assert!(!quarter.same_as(&RouteState::weighted(26)));
    /// let a_little = RouteState { weight: 4, total: 1000, ..RouteState::stable() };
    /// assert!(!a_little.same_as(&RouteState::stable()));
    /// ```
    pub fn same_as(&self, other: &RouteState) -> bool {
        let mirror = |route: &RouteState| route.mirror.filter(|percent| *percent > 0);
        self.same_weight(other)
            && mirror(self) == mirror(other)
            && same_alternatives(&self.matches, &other.matches)
    }

    fn same_weight(&self, other: &RouteState) -> bool {
        let share = |route: &RouteState| route.total > 0 && route.weight <= route.total;
        if !share(self) || !share(other) {
            return self.weight == other.weight && self.total == other.total;
        }
        (self.weight == 0) == (other.weight == 0)
            && (self.weight == self.total) == (other.weight == other.total)
            && self.whole_percent() == other.whole_percent()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::StringMatch;

    fn of(weight: u32, total: u32) -> RouteState {
        RouteState {
            weight,
            total,
            ..RouteState::stable()
        }
    }

    #[test]
    fn weights_are_the_same_share_to_the_whole_percent_but_none_and_all_are_exact() {
        assert!(of(333, 1000).same_as(&RouteState::weighted(33)));
        assert!(of(1, 3).same_as(&RouteState::weighted(33)));
        assert!(!of(1, 3).same_as(&RouteState::weighted(34)));
        assert!(!of(4, 1000).same_as(&RouteState::stable()));
        assert!(!of(996, 1000).same_as(&RouteState::weighted(100)));
        assert!(of(1000, 1000).same_as(&RouteState::weighted(100)));
    }

    #[test]
    fn a_weight_that_is_no_share_is_the_same_only_as_itself() {
        assert!(!of(5, 0).same_as(&RouteState::stable()));
        assert!(!of(0, 0).same_as(&RouteState::stable()));
        assert!(!of(150, 100).same_as(&RouteState::weighted(100)));
        assert!(of(5, 0).same_as(&of(5, 0)));
    }

    #[test]
    fn alternatives_match_in_any_order_and_header_case() {
        let header = |name: &str, value: &str| RequestMatch {
            headers: [(name.to_owned(), StringMatch::exact(value))].into(),
            ..RequestMatch::default()
        };
        let cookie = |value: Option<&str>| RequestMatch {
            cookie: Some(CookieMatch {
                name: "beta".into(),
                value: value.map(str::to_owned),
            }),
            ..RequestMatch::default()
        };
        let applied = RouteState {
            matches: vec![header("x-canary", "on"), cookie(None)],
            ..RouteState::stable()
        };
        let read = RouteState {
            matches: vec![cookie(Some("always")), header("X-Canary", "on")],
            ..RouteState::stable()
        };
        assert!(read.same_as(&applied));
        let other_value = RouteState {
            matches: vec![cookie(None), header("x-canary", "ON")],
            ..RouteState::stable()
        };
        assert!(!other_value.same_as(&applied));
        let fewer = RouteState {
            matches: vec![header("x-canary", "on")],
            ..RouteState::stable()
        };
        assert!(!fewer.same_as(&applied) && !applied.same_as(&fewer));
    }
}
