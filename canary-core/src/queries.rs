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

use std::collections::BTreeMap;

use crate::plan::BuiltinMetric;
use crate::providers::QueryContext;
use crate::route::ProviderKind;

/// The variables every query may use: `{{ namespace }}`, `{{ target }}` (the canary
/// workload), `{{ stable }}` (the stable workload), `{{ service }}`, `{{ ingress }}` and
/// `{{ interval }}` (the window).
pub const QUERY_VARIABLES: [&str; 6] = [
    "namespace",
    "target",
    "stable",
    "service",
    "ingress",
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

/// A provider's request counter and duration histogram, and how it selects a version and
/// server errors.
struct Family {
    requests: &'static str,
    duration_bucket: &'static str,
    /// Multiplies the histogram quantile into milliseconds.
    to_millis: &'static str,
    canary: &'static str,
    stable: &'static str,
    code: &'static str,
}

fn family(provider: ProviderKind) -> Family {
    match provider {
        ProviderKind::Istio | ProviderKind::AsmHeader | ProviderKind::AsmWeighted => Family {
            requests: "istio_requests_total",
            duration_bucket: "istio_request_duration_milliseconds_bucket",
            to_millis: "",
            canary: r#"reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}""#,
            stable: r#"reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ stable }}""#,
            code: "response_code",
        },
        ProviderKind::Nginx => Family {
            requests: "nginx_ingress_controller_requests",
            duration_bucket: "nginx_ingress_controller_response_duration_seconds_bucket",
            to_millis: " * 1000",
            canary: r#"namespace="{{ namespace }}",ingress="{{ ingress }}",canary!="""#,
            stable: r#"namespace="{{ namespace }}",ingress="{{ ingress }}",canary="""#,
            code: "status",
        },
        ProviderKind::Kuma | ProviderKind::KumaTrafficRoute => Family {
            requests: "envoy_cluster_upstream_rq",
            duration_bucket: "envoy_cluster_upstream_rq_time_bucket",
            to_millis: "",
            canary: r#"kuma_io_service=~"{{ service }}-canary_{{ namespace }}_svc_[0-9]+",envoy_cluster_name=~"localhost_.*""#,
            stable: r#"kuma_io_service=~"{{ service }}_{{ namespace }}_svc_[0-9]+",envoy_cluster_name=~"localhost_.*""#,
            code: "envoy_response_code",
        },
    }
}

/// The template of a builtin metric of the canary, for `provider`: success rate in percent,
/// P99 duration in milliseconds.
///
/// ```
/// use canary_core::plan::BuiltinMetric;
/// use canary_core::queries::builtin;
/// use canary_core::ProviderKind;
/// let q = builtin(ProviderKind::Istio, BuiltinMetric::RequestSuccessRate);
/// assert!(q.contains(r#"response_code!~"5.*""#) && q.ends_with("* 100"));
/// ```
pub fn builtin(provider: ProviderKind, metric: BuiltinMetric) -> String {
    let f = family(provider);
    match metric {
        BuiltinMetric::RequestSuccessRate => format!(
            "sum(rate({req}{{{sel},{code}!~\"5.*\"}}[{{{{ interval }}}}])) / sum(rate({req}{{{sel}}}[{{{{ interval }}}}])) * 100",
            req = f.requests,
            sel = f.canary,
            code = f.code
        ),
        BuiltinMetric::RequestDuration => format!(
            "histogram_quantile(0.99, sum(rate({bucket}{{{sel}}}[{{{{ interval }}}}])) by (le)){millis}",
            bucket = f.duration_bucket,
            sel = f.canary,
            millis = f.to_millis
        ),
    }
}

/// The templates of one version's requests and server errors so far (cumulative counters), for
/// the sequential judge. A window's counts are their difference between its two ends: exact,
/// and consecutive windows add up, where `increase()` over short windows extrapolates and
/// loses windows with fewer than two scrapes.
pub fn counts(provider: ProviderKind, version: Version) -> (String, String) {
    let f = family(provider);
    let sel = match version {
        Version::Canary => f.canary,
        Version::Stable => f.stable,
    };
    (
        format!("sum({}{{{sel}}})", f.requests),
        format!("sum({}{{{sel},{}=~\"5.*\"}})", f.requests, f.code),
    )
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
/// let q = canary_core::queries::render(r#"up{namespace="{{ namespace }}"}"#, &vars).unwrap();
/// assert_eq!(q, r#"up{namespace="test"}"#);
/// assert!(canary_core::queries::render("{{ nope }}", &vars).is_err());
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

    fn context(provider: ProviderKind) -> QueryContext {
        QueryContext {
            provider,
            namespace: "test".into(),
            target: "podinfo-canary".into(),
            stable: "podinfo".into(),
            service: "podinfo".into(),
            ingress: Some("podinfo".into()),
            window: jiff::SignedDuration::from_secs(90),
            at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn istio_success_rate_selects_the_canary_workload() {
        let vars = variables(&context(ProviderKind::Istio), &BTreeMap::new());
        let q = render(
            &builtin(ProviderKind::Istio, BuiltinMetric::RequestSuccessRate),
            &vars,
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo-canary",response_code!~"5.*"}[90s])) / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo-canary"}[90s])) * 100"#
        );
    }

    #[test]
    fn nginx_uses_the_canary_label_and_milliseconds() {
        let vars = variables(&context(ProviderKind::Nginx), &BTreeMap::new());
        let q = render(
            &builtin(ProviderKind::Nginx, BuiltinMetric::RequestDuration),
            &vars,
        )
        .unwrap();
        assert!(q.starts_with("histogram_quantile(0.99, sum(rate(nginx_ingress_controller_response_duration_seconds_bucket{"));
        assert!(
            q.contains(r#"ingress="podinfo",canary!="""#) && q.ends_with(" * 1000"),
            "{q}"
        );
        let (_, stable_errors) = counts(ProviderKind::Nginx, Version::Stable);
        let q = render(&stable_errors, &vars).unwrap();
        assert!(q.contains(r#"canary="",status=~"5.*""#), "{q}");
    }

    #[test]
    fn kuma_keys_on_the_service_and_counts_inbound_traffic() {
        let vars = variables(&context(ProviderKind::Kuma), &BTreeMap::new());
        let (requests, _) = counts(ProviderKind::Kuma, Version::Canary);
        let q = render(&requests, &vars).unwrap();
        assert_eq!(
            q,
            r#"sum(envoy_cluster_upstream_rq{kuma_io_service=~"podinfo-canary_test_svc_[0-9]+",envoy_cluster_name=~"localhost_.*"})"#
        );
    }

    #[test]
    fn every_builtin_renders_for_every_provider() {
        let providers = [
            ProviderKind::Istio,
            ProviderKind::Nginx,
            ProviderKind::Kuma,
            ProviderKind::AsmHeader,
        ];
        for provider in providers {
            let vars = variables(&context(provider), &BTreeMap::new());
            for metric in [
                BuiltinMetric::RequestSuccessRate,
                BuiltinMetric::RequestDuration,
            ] {
                let q = render(&builtin(provider, metric), &vars).unwrap();
                assert!(
                    !q.contains("{{") && q.matches('(').count() == q.matches(')').count(),
                    "{q}"
                );
            }
            for version in [Version::Canary, Version::Stable] {
                let (a, b) = counts(provider, version);
                assert!(render(&a, &vars).is_ok() && render(&b, &vars).is_ok());
            }
        }
    }
}
