//! The builtin metrics as PromQL for each traffic provider, and the `{{ variable }}` templates
//! every Prometheus query is written in.
//!
//! Each provider's proxies export their own metric families: Istio (and ASM)
//! `istio_requests_total` and `istio_request_duration_milliseconds`, ingress-nginx
//! `nginx_ingress_controller_requests` (whose `canary` label names the canary upstream) and
//! `nginx_ingress_controller_response_duration_seconds`, Kuma's Envoy
//! `envoy_cluster_upstream_rq` and `envoy_cluster_upstream_rq_time`. The canary and stable
//! versions are told apart by workload (Istio), by the `canary` label (nginx) or by the Kuma
//! service of the receiving data plane (its `kuma.io/service` tag, which Kuma's Prometheus
//! discovery exports as the label `kuma_io_service`), counting only inbound traffic (Kuma).
//!
//! What the exporters really label, which the queries rely on:
//! - ingress-nginx labels every request with the *main* Ingress's `namespace`, `ingress` and
//!   `service`, also when its canary Ingress's backend answered; only `canary` then names the
//!   canary upstream (`<namespace>-<service>-<port>`), empty otherwise. Its controller also
//!   counts every other host, path and backend, so both versions select `service` too. Under the
//!   Prometheus Operator without `honorLabels: true` on the controller's ServiceMonitor, the
//!   scrape's own `namespace` and `service` win and the exporter's become `exported_namespace`
//!   and `exported_service`: set `honorLabels: true` (the chart leaves it off), or write the
//!   queries yourself.
//! - Istio names `destination_workload` after the pod's Deployment, or after its
//!   `service.istio.io/workload-name` label (Istio 1.25+): the canary's pods get it set to the
//!   canary's name, and `{{ stable }}` is the name stable's pods give
//!   ([`crate::engine::machine::WorkloadObservation::stable_reported_as`]).
//! - Kuma's inbound cluster is `localhost:<port>` (`localhost_<port>` in metrics) and, with
//!   unified resource naming (Kuma 2.12+, opt-in), `self_inbound_dp_<port>`: both match, so the
//!   queries need no setting; outbound clusters on the same pods never do.

use std::collections::BTreeMap;

use crate::api::plan::BuiltinMetric;
use crate::engine::providers::QueryContext;

/// The variables every query may use: `{{ namespace }}`, `{{ target }}` (the canary
/// workload), `{{ stable }}` (the stable workload), `{{ service }}`, `{{ ingress }}`,
/// `{{ route }}` (the Gateway API route) and `{{ interval }}` (the window).
pub const QUERY_VARIABLES: [&str; 7] = [
    "namespace",
    "target",
    "stable",
    "service",
    "ingress",
    "route",
    "interval",
];

/// Which version a query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The canary.
    Canary,
    /// Stable.
    Stable,
}

/// A provider's request counter and duration histogram, and how their series select a
/// version and server errors; `{{ variable }}` templates like every query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetricFamily {
    /// The request counter.
    pub requests: &'static str,
    /// The request duration histogram's buckets.
    pub duration_bucket: &'static str,
    /// What multiplies the histogram's quantile into milliseconds (empty when it is in
    /// milliseconds already).
    pub to_millis: &'static str,
    /// The label matchers of the canary's series.
    pub canary: &'static str,
    /// The label matchers of stable's series.
    pub stable: &'static str,
    /// The label holding the response code.
    pub code: &'static str,
}

/// The template of a builtin metric of the canary, in the metric `family` of its traffic
/// provider: success rate in percent, P99 duration in milliseconds.
///
/// The success rate's numerator falls back to 0 when no request succeeded, so a canary that
/// answers only server errors reads 0%, not "no data"; a canary that answered nothing is still
/// no data (the denominator has no series).
///
/// ```
/// use canary_core::api::plan::BuiltinMetric;
/// use canary_core::analysis::queries::builtin;
/// let istio = canary_core::traffic::istio::METRICS;
/// let q = builtin(&istio, BuiltinMetric::RequestSuccessRate);
/// assert!(q.contains(r#"response_code!~"5.."}"#) && q.ends_with("* 100"));
/// ```
pub fn builtin(f: &MetricFamily, metric: BuiltinMetric) -> String {
    match metric {
        BuiltinMetric::RequestSuccessRate => format!(
            "(sum(rate({req}{{{sel},{code}!~\"5..\"}}[{{{{ interval }}}}])) or vector(0)) / sum(rate({req}{{{sel}}}[{{{{ interval }}}}])) * 100",
            req = f.requests,
            sel = f.canary,
            code = f.code
        ),
        BuiltinMetric::RequestDuration => format!(
            "histogram_quantile(0.99, sum by (le) (rate({bucket}{{{sel}}}[{{{{ interval }}}}]))){millis}",
            bucket = f.duration_bucket,
            sel = f.canary,
            millis = f.to_millis
        ),
    }
}

/// What the sequential judge counts for one version: the series of its request counter, and
/// the label that holds each series' response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedSeries {
    /// A series selector template, e.g. `istio_requests_total{reporter="destination",…}`; the
    /// judge reads its raw samples over a range and counts each series' increments itself.
    pub selector: String,
    /// The label whose `5xx` values are server errors.
    pub code_label: &'static str,
}

/// The request counter series of one version, for the sequential judge.
///
/// ```
/// use canary_core::analysis::queries::{counted_series, Version};
/// use canary_core::ProviderKind;
/// let nginx = ProviderKind::Nginx.descriptor().metrics_for(&Default::default()).unwrap();
/// let series = counted_series(&nginx, Version::Stable);
/// assert!(series.selector.contains(r#"service="{{ service }}",canary="""#));
/// assert_eq!(series.code_label, "status");
/// ```
pub fn counted_series(f: &MetricFamily, version: Version) -> CountedSeries {
    let sel = match version {
        Version::Canary => f.canary,
        Version::Stable => f.stable,
    };
    CountedSeries {
        selector: format!("{}{{{sel}}}", f.requests),
        code_label: f.code,
    }
}

/// True when `template` uses the variable `name` (`{{ name }}`, spaces optional).
///
/// ```
/// assert!(canary_core::analysis::queries::uses_variable("rate(x[{{interval }}])", "interval"));
/// assert!(!canary_core::analysis::queries::uses_variable("rate(x[5m])", "interval"));
/// ```
pub fn uses_variable(template: &str, name: &str) -> bool {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return false;
        };
        if after[..end].trim() == name {
            return true;
        }
        rest = &after[end + 2..];
    }
    false
}

/// The values of the variables for a query in `context`, with the user's `extra` ones.
pub fn variables(
    context: &QueryContext,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut vars = extra.clone();
    vars.insert("namespace".to_owned(), context.namespace.clone());
    vars.insert("target".to_owned(), context.target.clone());
    vars.insert("stable".to_owned(), context.stable.clone());
    vars.insert("service".to_owned(), context.service.clone());
    vars.insert(
        "ingress".to_owned(),
        context.ingress.clone().unwrap_or_default(),
    );
    vars.insert(
        "route".to_owned(),
        context.route.clone().unwrap_or_default(),
    );
    vars.insert(
        "interval".to_owned(),
        format!("{}s", context.window.as_secs().max(1)),
    );
    vars
}

/// Fills in a template's `{{ name }}` variables.
///
/// ```
/// use std::collections::BTreeMap;
/// let vars = BTreeMap::from([("namespace".to_owned(), "test".to_owned())]);
/// let q = canary_core::analysis::queries::render(r#"up{namespace="{{ namespace }}"}"#, &vars).unwrap();
/// assert_eq!(q, r#"up{namespace="test"}"#);
/// assert!(canary_core::analysis::queries::render("{{ nope }}", &vars).is_err());
/// ```
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "`{{` without `}}`".to_owned())?;
        let name = after[..end].trim();
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable `{{{{ {name} }}}}`"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::ProviderKind;

    fn context(metrics: MetricFamily) -> QueryContext {
        QueryContext {
            metrics: Some(metrics),
            namespace: "test".into(),
            target: "podinfo-canary".into(),
            stable: "podinfo".into(),
            service: "podinfo".into(),
            ingress: Some("podinfo".into()),
            route: Some("podinfo".into()),
            window: jiff::SignedDuration::from_secs(90),
            at: jiff::Timestamp::UNIX_EPOCH,
            scrape_interval: jiff::SignedDuration::from_secs(30),
            query_offset: jiff::SignedDuration::from_secs(10),
        }
    }

    #[test]
    fn every_builtin_renders_for_every_provider() {
        let routing = crate::api::spec::TrafficRouting::default();
        let families = ProviderKind::ALL
            .iter()
            .filter_map(|provider| provider.descriptor().metrics_for(&routing))
            .chain([
                crate::traffic::gateway::ISTIO_METRICS,
                crate::traffic::gateway::ENVOY_GATEWAY_METRICS,
            ]);
        for family in families {
            let vars = variables(&context(family), &BTreeMap::new());
            for metric in [
                BuiltinMetric::RequestSuccessRate,
                BuiltinMetric::RequestDuration,
            ] {
                let q = render(&builtin(&family, metric), &vars).unwrap();
                assert!(
                    !q.contains("{{") && q.matches('(').count() == q.matches(')').count(),
                    "{q}"
                );
            }
            for version in [Version::Canary, Version::Stable] {
                let series = counted_series(&family, version);
                let q = render(&series.selector, &vars).unwrap();
                assert!(!q.contains("{{") && q.ends_with('}'), "{q}");
            }
        }
    }
}
