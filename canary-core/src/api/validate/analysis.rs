//! `spec.analysis`: interval, failure limit, metrics and webhooks.

use std::collections::BTreeSet;

use jiff::SignedDuration;

use super::Checker;
use super::limits::{
    MAX_ANALYSIS_INTERVAL, MAX_DEGRADATION, MAX_METRICS, MAX_QUERY_OFFSET, MAX_RUN_LIMIT,
    MAX_SCRAPE_INTERVAL, MAX_WEBHOOK_TIMEOUT, MAX_WEBHOOKS,
};
use super::limits::{MAX_ANALYSIS_NAME, MAX_QUERY_BYTES, MAX_QUERY_VARIABLE_VALUE};
use crate::analysis::queries::QUERY_VARIABLES;
use crate::api::plan::{
    AnalysisPlan, BuiltinMetric, Judge, MetricPlan, MetricQuery, Sprt, WebhookPlan,
};
use crate::api::spec::{
    Analysis, JudgeKind, Metric, PrometheusQuery, SequentialSettings, ThresholdRange,
};

/// How often Prometheus scrapes when the spec does not say: the interval the ingress-nginx
/// chart's ServiceMonitor uses, and a safe assumption for Istio's (15s) and Kuma's setups.
pub const DEFAULT_SCRAPE_INTERVAL: SignedDuration = SignedDuration::from_secs(30);

/// How far behind the clock metrics are read when the spec does not say (or the scrape
/// interval, when shorter): Prometheus' default scrape timeout, the longest a scrape's samples
/// wait to be stored (a timeout never exceeds the interval).
pub const DEFAULT_QUERY_OFFSET: SignedDuration = SignedDuration::from_secs(10);

/// The analysis interval when the spec gives none.
pub const DEFAULT_INTERVAL: SignedDuration = SignedDuration::from_mins(1);

/// Builtin metrics and sequential judges read the traffic provider's metric family: a provider
/// without one (a plugin that declares none) needs custom queries and threshold judges.
pub(super) fn check_builtin_metrics(
    c: &mut Checker,
    analysis: &AnalysisPlan,
    provider: &crate::traffic::ProviderDescriptor,
    routing: &crate::api::spec::TrafficRouting,
) {
    if provider.metrics_for(routing).is_some() {
        return;
    }
    let declares = if matches!(provider.metrics, crate::traffic::Metrics::BySettings(_)) {
        "has none for these settings (spec.trafficRouting)"
    } else {
        "declares none"
    };
    for (i, metric) in analysis.metrics.iter().enumerate() {
        let needs = if matches!(metric.query, crate::api::plan::MetricQuery::Builtin(_)) {
            "is a builtin metric, which queries"
        } else if metric.is_sequential() {
            "is judged sequentially, which counts requests in"
        } else {
            continue;
        };
        c.error(
            format!("spec.analysis.metrics[{i}]"),
            format!(
                "`{}` {needs} the traffic provider's metric family, and `{}` {declares}: \
                 give a custom `query` judged by `thresholdRange`",
                metric.name, provider.name
            ),
        );
    }
}

/// Checks `spec.analysis` and fills in its defaults.
pub(super) fn check_analysis(c: &mut Checker, analysis: Option<&Analysis>) -> AnalysisPlan {
    let default = Analysis::default();
    let analysis = analysis.unwrap_or(&default);
    let interval = c.duration(
        "spec.analysis.interval",
        analysis.interval.as_deref(),
        DEFAULT_INTERVAL,
        SignedDuration::from_secs(1)..=MAX_ANALYSIS_INTERVAL,
    );
    let scrape_interval = c.duration(
        "spec.analysis.scrapeInterval",
        analysis.scrape_interval.as_deref(),
        DEFAULT_SCRAPE_INTERVAL,
        SignedDuration::from_secs(1)..=MAX_SCRAPE_INTERVAL,
    );
    let query_offset = c.duration(
        "spec.analysis.queryOffset",
        analysis.query_offset.as_deref(),
        DEFAULT_QUERY_OFFSET.min(scrape_interval),
        SignedDuration::ZERO..=MAX_QUERY_OFFSET,
    );
    let inconclusive_limit = analysis.inconclusive_limit.map(|limit| {
        c.int_in(
            "spec.analysis.inconclusiveLimit",
            Some(limit),
            1..=MAX_RUN_LIMIT,
            1,
        )
    });
    let failure_limit = c.int_in(
        "spec.analysis.failureLimit",
        analysis.failure_limit,
        1..=MAX_RUN_LIMIT,
        1,
    );
    c.at_most(
        "spec.analysis.metrics",
        analysis.metrics.len(),
        MAX_METRICS,
        "metrics",
    );
    c.at_most(
        "spec.analysis.webhooks",
        analysis.webhooks.len(),
        MAX_WEBHOOKS,
        "webhooks",
    );
    let mut names = BTreeSet::new();
    let metrics = analysis
        .metrics
        .iter()
        .enumerate()
        .filter_map(|(i, metric)| {
            let path = format!("spec.analysis.metrics[{i}]");
            if !names.insert(metric.name.as_str()) {
                c.error(
                    format!("{path}.name"),
                    format!("`{}` is given twice", metric.name),
                );
            }
            check_metric(c, &path, metric, interval, scrape_interval)
        })
        .collect();
    let mut hook_names = BTreeSet::new();
    let webhooks = analysis
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, hook)| {
            let path = format!("spec.analysis.webhooks[{i}]");
            if hook.name.is_empty() {
                c.error(format!("{path}.name"), "must not be empty");
            } else if hook.name.chars().count() > MAX_ANALYSIS_NAME {
                c.error(
                    format!("{path}.name"),
                    format!("must be at most {MAX_ANALYSIS_NAME} characters"),
                );
            } else if !hook_names.insert(hook.name.as_str()) {
                c.error(
                    format!("{path}.name"),
                    format!("`{}` is given twice", hook.name),
                );
            }
            check_url(c, &format!("{path}.url"), &hook.url);
            WebhookPlan {
                name: hook.name.clone(),
                hook_type: hook.hook_type,
                url: hook.url.clone(),
                timeout: c.duration(
                    &format!("{path}.timeout"),
                    hook.timeout.as_deref(),
                    SignedDuration::from_secs(60),
                    SignedDuration::from_millis(1)..=MAX_WEBHOOK_TIMEOUT,
                ),
                metadata: hook.metadata.clone(),
            }
        })
        .collect();
    AnalysisPlan {
        interval,
        scrape_interval,
        query_offset,
        failure_limit,
        counting: analysis.failure_counting.unwrap_or_default(),
        no_data: analysis.no_data.unwrap_or_default(),
        inconclusive_limit,
        metrics,
        webhooks,
    }
}

fn check_metric(
    c: &mut Checker,
    path: &str,
    metric: &Metric,
    interval: SignedDuration,
    scrape_interval: SignedDuration,
) -> Option<MetricPlan> {
    if metric.name.is_empty() {
        c.error(format!("{path}.name"), "must not be empty");
    } else if metric.name.chars().count() > MAX_ANALYSIS_NAME {
        c.error(
            format!("{path}.name"),
            format!("must be at most {MAX_ANALYSIS_NAME} characters"),
        );
    }
    let sequential = metric.judge == Some(JudgeKind::Sequential);
    let window = c.duration(
        &format!("{path}.interval"),
        metric.interval.as_deref(),
        if sequential {
            scrape_interval
        } else {
            interval
        },
        SignedDuration::from_secs(1)..=MAX_ANALYSIS_INTERVAL,
    );
    check_window(c, path, metric, window, scrape_interval);
    let prometheus = metric.prometheus.clone().unwrap_or_default();
    if let Some(address) = &prometheus.address {
        check_url(c, &format!("{path}.prometheus.address"), address);
    }
    let query = match &prometheus.query {
        Some(query) => {
            check_variables(c, &format!("{path}.prometheus.variables"), &prometheus);
            check_template(c, &format!("{path}.prometheus.query"), query, &prometheus);
            Some(MetricQuery::Custom {
                query: query.clone(),
                variables: prometheus.variables.clone(),
            })
        }
        None => {
            if !prometheus.variables.is_empty() {
                c.error(
                    format!("{path}.prometheus.variables"),
                    "only for a custom query",
                );
            }
            match BuiltinMetric::from_name(&metric.name) {
                Some(builtin) => Some(MetricQuery::Builtin(builtin)),
                None => {
                    c.error(
                        format!("{path}.name"),
                        format!(
                            "`{}` is not a builtin metric (request-success-rate, request-duration); \
                             give a prometheus query for a custom metric",
                            metric.name
                        ),
                    );
                    None
                }
            }
        }
    };
    let judge = if sequential {
        if metric.threshold_range.is_some() {
            c.error(
                format!("{path}.thresholdRange"),
                "the sequential judge takes no range; give `sequential` settings",
            );
        }
        if query != Some(MetricQuery::Builtin(BuiltinMetric::RequestSuccessRate)) {
            c.error(
                format!("{path}.judge"),
                "the sequential judge compares error rates: use it with the builtin request-success-rate",
            );
        }
        Some(Judge::Sequential(check_sprt(
            c,
            &format!("{path}.sequential"),
            metric.sequential.unwrap_or_default(),
        )))
    } else {
        if metric.sequential.is_some() {
            c.error(format!("{path}.sequential"), "only for `judge: sequential`");
        }
        check_range(
            c,
            &format!("{path}.thresholdRange"),
            metric.threshold_range.as_ref(),
        )
        .map(Judge::Threshold)
    };
    Some(MetricPlan {
        name: metric.name.clone(),
        window,
        judge: judge?,
        query: query?,
        address: prometheus.address,
    })
}

/// A window must see enough scrapes: `rate()` over fewer than two samples of a series returns
/// nothing (a healthy canary would read as no data), and the sequential judge learns nothing new
/// between two scrapes.
fn check_window(
    c: &mut Checker,
    path: &str,
    metric: &Metric,
    window: SignedDuration,
    scrape_interval: SignedDuration,
) {
    let scrape = crate::api::duration::format_duration(scrape_interval);
    let uses_window = metric
        .prometheus
        .as_ref()
        .and_then(|p| p.query.as_deref())
        .is_none_or(|query| crate::analysis::queries::uses_variable(query, "interval"));
    let (needed, why) = if metric.judge == Some(JudgeKind::Sequential) {
        (
            scrape_interval,
            "the sequential judge measures at most once per scrape",
        )
    } else if uses_window {
        (
            scrape_interval.saturating_mul(2),
            "the query window must cover two scrapes, or rate() returns nothing",
        )
    } else {
        return;
    };
    if window < needed {
        let source = if metric.interval.is_some() {
            format!("{path}.interval")
        } else {
            "spec.analysis.interval".to_owned()
        };
        c.error(
            source,
            format!(
                "{} is shorter than {} ({why}; spec.analysis.scrapeInterval is {scrape})",
                crate::api::duration::format_duration(window),
                crate::api::duration::format_duration(needed),
            ),
        );
    }
}

/// The sequential judge's settings with their defaults.
fn check_sprt(c: &mut Checker, path: &str, settings: SequentialSettings) -> Sprt {
    let mut probability = |name: &str, value: Option<f64>, default: f64| match value {
        None => default,
        Some(v) if v > 0.0 && v < 0.5 => v,
        Some(v) => {
            c.error(
                format!("{path}.{name}"),
                format!("{v} must be above 0 and below 0.5"),
            );
            default
        }
    };
    let alpha = probability("alpha", settings.alpha, 0.01);
    let beta = probability("beta", settings.beta, 0.05);
    let degradation = match settings.degradation {
        None => 2.0,
        Some(r) if r.is_finite() && r > 1.0 && r <= MAX_DEGRADATION => r,
        Some(r) => {
            c.error(
                format!("{path}.degradation"),
                format!(
                    "{r} must be above 1 and at most {MAX_DEGRADATION} (a ratio of error rates)"
                ),
            );
            2.0
        }
    };
    Sprt {
        alpha,
        beta,
        degradation,
    }
}

fn check_range(
    c: &mut Checker,
    path: &str,
    range: Option<&ThresholdRange>,
) -> Option<ThresholdRange> {
    let Some(range) = range else {
        c.error(path, "is required: give min, max or both");
        return None;
    };
    let mut ok = true;
    for (bound, value) in [("min", range.min), ("max", range.max)] {
        if value.is_some_and(|v| !v.is_finite()) {
            c.error(format!("{path}.{bound}"), "must be a finite number");
            ok = false;
        }
    }
    match (range.min, range.max) {
        (None, None) => {
            c.error(path, "give min, max or both");
            ok = false;
        }
        (Some(min), Some(max)) if min > max => {
            c.error(path, format!("min {min} is larger than max {max}"));
            ok = false;
        }
        _ => {}
    }
    ok.then_some(*range)
}

/// An `http` or `https` URL with a host.
pub(super) fn check_url(c: &mut Checker, path: &str, url: &str) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {}
        Some(_) => c.error(path, format!("`{url}` has no host")),
        None => c.error(path, format!("`{url}` must be an http:// or https:// URL")),
    }
}

/// User variables: names of letters, digits and `_`, not shadowing a builtin.
fn check_variables(c: &mut Checker, path: &str, prometheus: &PrometheusQuery) {
    for name in prometheus.variables.keys() {
        let word = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !word {
            c.error(
                format!("{path}.{name}"),
                "variable names are letters, digits and `_`",
            );
        } else if QUERY_VARIABLES.contains(&name.as_str()) {
            c.error(
                format!("{path}.{name}"),
                "is filled in by canary; choose another name",
            );
        }
    }
}

/// Every `{{ variable }}` in a query must be one we fill in, or one of the user's.
fn check_template(c: &mut Checker, path: &str, query: &str, prometheus: &PrometheusQuery) {
    if query.trim().is_empty() {
        c.error(path, "must not be empty");
    }
    let mut rest = query;
    // The query's length once filled in: the text around the variables, and each variable at
    // the longest value it may take.
    let mut filled = 0usize;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            c.error(path, "has `{{` without `}}`");
            return;
        };
        let name = after[..end].trim();
        filled =
            filled
                .saturating_add(start)
                .saturating_add(match prometheus.variables.get(name) {
                    Some(value) => value.len(),
                    None => MAX_QUERY_VARIABLE_VALUE,
                });
        if !QUERY_VARIABLES.contains(&name) && !prometheus.variables.contains_key(name) {
            c.error(
                path,
                format!(
                    "unknown variable `{{{{ {name} }}}}`; known: {}",
                    QUERY_VARIABLES.join(", ")
                ),
            );
        }
        rest = &after[end + 2..];
    }
    filled = filled.saturating_add(rest.len());
    if filled > MAX_QUERY_BYTES {
        c.error(
            path,
            format!(
                "is {filled} bytes once its variables are filled in; at most {MAX_QUERY_BYTES}"
            ),
        );
    }
}
