//! The provider-neutral route ([`RouteState`]) and what each provider can express
//! ([`Capabilities`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{AsmRoutingMode, KumaRouteKind, RequestMatch, StringMatch, TrafficRouting};

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

    /// True when no request reaches the canary, by weight, match or mirror.
    pub fn is_stable_only(&self) -> bool {
        self.weight == 0 && self.matches.is_empty() && self.mirror.is_none()
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

/// The traffic providers canary ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Istio VirtualService + DestinationRule.
    Istio,
    /// ingress-nginx canary Ingress.
    Nginx,
    /// Kuma MeshHTTPRoute.
    Kuma,
    /// Kuma's legacy TrafficRoute.
    KumaTrafficRoute,
    /// Alibaba ASM lanes, routed by header.
    AsmHeader,
    /// Alibaba ASM lanes, routed by ingress weight.
    AsmWeighted,
}

impl ProviderKind {
    /// Whether the provider routes by Service (a canary Service beside the stable one), so the
    /// canary's pods must not be selected by the stable Service
    /// ([`crate::services::canary_pod_label`]).
    pub fn routes_by_service(self) -> bool {
        matches!(
            self,
            ProviderKind::Istio
                | ProviderKind::Nginx
                | ProviderKind::Kuma
                | ProviderKind::KumaTrafficRoute
        )
    }

    /// The provider chosen by `spec.trafficRouting`, if exactly one is set.
    pub fn of(routing: &TrafficRouting) -> Option<ProviderKind> {
        let asm = routing.asm.as_ref().map(|asm| match asm.mode {
            Some(AsmRoutingMode::Weighted) => ProviderKind::AsmWeighted,
            Some(AsmRoutingMode::Header) | None => ProviderKind::AsmHeader,
        });
        let chosen = [
            routing.istio.as_ref().map(|_| ProviderKind::Istio),
            routing.nginx.as_ref().map(|_| ProviderKind::Nginx),
            routing.kuma.as_ref().map(|kuma| match kuma.route_kind {
                Some(KumaRouteKind::TrafficRoute) => ProviderKind::KumaTrafficRoute,
                Some(KumaRouteKind::MeshHTTPRoute) | None => ProviderKind::Kuma,
            }),
            asm,
        ];
        let mut set = chosen.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(kind), None) => Some(kind),
            _ => None,
        }
    }

    /// The provider's name as the spec writes it (`istio`, `nginx`, `kuma`, `asm`).
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Istio => "istio",
            ProviderKind::Nginx => "nginx",
            ProviderKind::Kuma | ProviderKind::KumaTrafficRoute => "kuma",
            ProviderKind::AsmHeader | ProviderKind::AsmWeighted => "asm",
        }
    }

    /// What the provider can route.
    pub fn capabilities(self) -> Capabilities {
        let all = MatchKinds {
            exact: true,
            prefix: true,
            regex: true,
        };
        let none = MatchKinds::default();
        match self {
            ProviderKind::Istio => Capabilities {
                summary: "weights; any number of matches on headers, cookie, URI, query \
                          parameters and method (exact, prefix or regex); mirroring",
                weights: true,
                max_matches: usize::MAX,
                max_headers: usize::MAX,
                headers: all,
                cookie: true,
                cookie_value: true,
                header_with_cookie: true,
                uri: all,
                query: all,
                method: true,
                mirror: true,
            },
            ProviderKind::Nginx => Capabilities {
                summary: "weights; one match on one header (exact value or regex) or on one \
                          cookie (value `always`), not both; no URI, query, method or mirroring",
                weights: true,
                max_matches: 1,
                max_headers: 1,
                headers: MatchKinds {
                    exact: true,
                    prefix: false,
                    regex: true,
                },
                cookie: true,
                cookie_value: false,
                header_with_cookie: false,
                uri: none,
                query: none,
                method: false,
                mirror: false,
            },
            ProviderKind::Kuma => Capabilities {
                summary: "weights; matches on headers (exact, prefix or regex), path (exact \
                          or prefix), query parameters (exact or regex) and method; mirroring; \
                          no cookie",
                weights: true,
                max_matches: usize::MAX,
                max_headers: usize::MAX,
                headers: all,
                cookie: false,
                cookie_value: false,
                header_with_cookie: true,
                uri: MatchKinds {
                    exact: true,
                    prefix: true,
                    regex: false,
                },
                query: MatchKinds {
                    exact: true,
                    prefix: false,
                    regex: true,
                },
                method: true,
                mirror: true,
            },
            ProviderKind::AsmHeader => Capabilities {
                summary: "lanes routed by header: matches on headers (exact) and URI (exact \
                          or prefix); no weights, cookie, query, method or mirroring \
                          (set trafficRouting.asm.mode: weighted for weights)",
                weights: false,
                max_matches: 1,
                max_headers: usize::MAX,
                headers: MatchKinds {
                    exact: true,
                    prefix: false,
                    regex: false,
                },
                cookie: false,
                cookie_value: false,
                header_with_cookie: true,
                uri: MatchKinds {
                    exact: true,
                    prefix: true,
                    regex: false,
                },
                query: none,
                method: false,
                mirror: false,
            },
            ProviderKind::KumaTrafficRoute => Capabilities {
                summary: "the legacy TrafficRoute: weights only (set \
                          trafficRouting.kuma.routeKind: MeshHTTPRoute for matches and \
                          mirroring)",
                ..ProviderKind::AsmWeighted.capabilities()
            },
            ProviderKind::AsmWeighted => Capabilities {
                summary: "lanes routed by ingress weight: weights only",
                weights: true,
                max_matches: 0,
                max_headers: 0,
                headers: none,
                cookie: false,
                cookie_value: false,
                header_with_cookie: true,
                uri: none,
                query: none,
                method: false,
                mirror: false,
            },
        }
    }
}

/// Which kinds of string condition a provider supports for one request attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatchKinds {
    /// `exact`.
    pub exact: bool,
    /// `prefix`.
    pub prefix: bool,
    /// `regex`.
    pub regex: bool,
}

impl MatchKinds {
    fn supports(self, condition: &StringMatch) -> bool {
        (condition.exact.is_none() || self.exact)
            && (condition.prefix.is_none() || self.prefix)
            && (condition.regex.is_none() || self.regex)
    }

    fn any(self) -> bool {
        self.exact || self.prefix || self.regex
    }
}

/// What a traffic provider can express. Validation refuses a spec that asks for more, before
/// anything is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// One sentence saying what the provider supports, for error messages.
    pub summary: &'static str,
    /// Weighted splitting between stable and canary.
    pub weights: bool,
    /// How many alternative matches a route may have.
    pub max_matches: usize,
    /// How many header conditions one match may have.
    pub max_headers: usize,
    /// Header conditions.
    pub headers: MatchKinds,
    /// Cookie conditions.
    pub cookie: bool,
    /// Cookie conditions with a value other than `always`.
    pub cookie_value: bool,
    /// A header and a cookie condition in the same match (both required).
    pub header_with_cookie: bool,
    /// URI conditions.
    pub uri: MatchKinds,
    /// Query-parameter conditions.
    pub query: MatchKinds,
    /// Method conditions.
    pub method: bool,
    /// Mirroring.
    pub mirror: bool,
}

impl Capabilities {
    /// Why `request` cannot be routed, as `(field under the match, reason)` pairs; empty when it
    /// can.
    pub fn refusals(&self, request: &RequestMatch) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if request.headers.len() > self.max_headers {
            out.push((
                "headers".to_owned(),
                format!(
                    "{} header conditions, at most {}",
                    request.headers.len(),
                    self.max_headers
                ),
            ));
        }
        for (name, condition) in &request.headers {
            if !self.headers.supports(condition) {
                out.push((
                    format!("headers.{name}"),
                    "this kind of header condition".to_owned(),
                ));
            }
        }
        if let Some(cookie) = &request.cookie {
            if !self.header_with_cookie && !request.headers.is_empty() {
                out.push((
                    "cookie".to_owned(),
                    "a header and a cookie condition in one match".to_owned(),
                ));
            }
            if !self.cookie {
                out.push(("cookie".to_owned(), "cookie conditions".to_owned()));
            } else if !self.cookie_value && cookie.value() != "always" {
                out.push((
                    "cookie.value".to_owned(),
                    "cookie values other than `always`".to_owned(),
                ));
            }
        }
        if let Some(uri) = &request.uri {
            if !self.uri.any() {
                out.push(("uri".to_owned(), "URI conditions".to_owned()));
            } else if !self.uri.supports(uri) {
                out.push(("uri".to_owned(), "this kind of URI condition".to_owned()));
            }
        }
        for (name, condition) in &request.query_params {
            if !self.query.any() {
                out.push((
                    format!("queryParams.{name}"),
                    "query-parameter conditions".to_owned(),
                ));
            } else if !self.query.supports(condition) {
                out.push((
                    format!("queryParams.{name}"),
                    "this kind of query condition".to_owned(),
                ));
            }
        }
        if request.method.is_some() && !self.method {
            out.push(("method".to_owned(), "method conditions".to_owned()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, condition: StringMatch) -> RequestMatch {
        RequestMatch {
            headers: [(name.to_owned(), condition)].into(),
            ..RequestMatch::default()
        }
    }

    #[test]
    fn nginx_takes_one_exact_or_regex_header_but_not_a_prefix() {
        let nginx = ProviderKind::Nginx.capabilities();
        assert!(
            nginx
                .refusals(&header("x-canary", StringMatch::exact("on")))
                .is_empty()
        );
        let prefix = StringMatch {
            prefix: Some("on".into()),
            ..StringMatch::default()
        };
        assert_eq!(nginx.refusals(&header("x-canary", prefix)).len(), 1);
        let mut two = header("a", StringMatch::exact("1"));
        two.headers.insert("b".into(), StringMatch::exact("2"));
        assert_eq!(nginx.refusals(&two)[0].0, "headers");
    }

    #[test]
    fn istio_takes_everything() {
        let istio = ProviderKind::Istio.capabilities();
        let full = RequestMatch {
            headers: [("a".into(), StringMatch::exact("1"))].into(),
            cookie: Some(crate::spec::CookieMatch {
                name: "c".into(),
                value: Some("v".into()),
            }),
            uri: Some(StringMatch {
                regex: Some("^/api".into()),
                ..StringMatch::default()
            }),
            query_params: [("q".into(), StringMatch::exact("x"))].into(),
            method: Some("GET".into()),
        };
        assert!(istio.refusals(&full).is_empty());
        assert_eq!(ProviderKind::Nginx.capabilities().refusals(&full).len(), 5);
    }

    #[test]
    fn exactly_one_provider_is_a_provider() {
        let mut routing = TrafficRouting::default();
        assert_eq!(ProviderKind::of(&routing), None);
        routing.kuma = Some(Default::default());
        assert_eq!(ProviderKind::of(&routing), Some(ProviderKind::Kuma));
        routing.istio = Some(Default::default());
        assert_eq!(ProviderKind::of(&routing), None);
    }
}
