//! `spec.analysis`: interval, failure limit, metrics and webhooks.

use std::collections::BTreeSet;

use jiff::SignedDuration;

use super::Checker;
use crate::plan::{AnalysisPlan, BuiltinMetric, MetricPlan, MetricQuery, WebhookPlan};
use crate::spec::{Analysis, Metric, ThresholdRange};

/// The variables a custom query may use.
pub const QUERY_VARIABLES: [&str; 5] = ["namespace", "target", "service", "ingress", "interval"];

/// The analysis interval when the spec gives none.
pub const DEFAULT_INTERVAL: SignedDuration = SignedDuration::from_mins(1);

/// Checks `spec.analysis` and fills in its defaults.
pub(super) fn check_analysis(c: &mut Checker, analysis: Option<&Analysis>) -> AnalysisPlan {
    let default = Analysis::default();
    let analysis = analysis.unwrap_or(&default);
    let interval = c.duration(
        "spec.analysis.interval",
        analysis.interval.as_deref(),
        DEFAULT_INTERVAL,
        SignedDuration::from_secs(1),
    );
    let failure_limit = c.int_in(
        "spec.analysis.failureLimit",
        analysis.failure_limit,
        1..=1000,
        1,
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
            check_metric(c, &path, metric, interval)
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
                    SignedDuration::from_millis(1),
                ),
                metadata: hook.metadata.clone(),
            }
        })
        .collect();
    AnalysisPlan {
        interval,
        failure_limit,
        counting: analysis.failure_counting.unwrap_or_default(),
        no_data: analysis.no_data.unwrap_or_default(),
        metrics,
        webhooks,
    }
}

fn check_metric(
    c: &mut Checker,
    path: &str,
    metric: &Metric,
    interval: SignedDuration,
) -> Option<MetricPlan> {
    let window = c.duration(
        &format!("{path}.interval"),
        metric.interval.as_deref(),
        interval,
        SignedDuration::from_secs(1),
    );
    let range = check_range(
        c,
        &format!("{path}.thresholdRange"),
        metric.threshold_range.as_ref(),
    );
    let query = match &metric.prometheus {
        Some(prometheus) => {
            check_url(
                c,
                &format!("{path}.prometheus.address"),
                &prometheus.address,
            );
            check_template(c, &format!("{path}.prometheus.query"), &prometheus.query);
            Some(MetricQuery::Prometheus {
                address: prometheus.address.clone(),
                query: prometheus.query.clone(),
            })
        }
        None => match BuiltinMetric::from_name(&metric.name) {
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
        },
    };
    if metric.name.is_empty() {
        c.error(format!("{path}.name"), "must not be empty");
    }
    Some(MetricPlan {
        name: metric.name.clone(),
        window,
        range: range?,
        query: query?,
    })
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

/// Every `{{ variable }}` in a query must be one we fill in.
fn check_template(c: &mut Checker, path: &str, query: &str) {
    if query.trim().is_empty() {
        c.error(path, "must not be empty");
    }
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            c.error(path, "has `{{` without `}}`");
            return;
        };
        let name = after[..end].trim();
        if !QUERY_VARIABLES.contains(&name) {
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
}
