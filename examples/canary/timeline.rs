//! The simulate timeline, as text for people or JSON lines for programs.

use std::io::{self, Write};

use canary::RolloutPlan;
use canary::api::duration::format_duration;
use canary::api::plan::StrategyKind;
use canary::sim::{SimConfig, SimReport, Summary};

/// One JSON object per row, then the summary, marked `"summary": true`.
pub fn print_json(out: &mut impl Write, report: &SimReport) -> io::Result<()> {
    for row in &report.rows {
        serde_json::to_writer(&mut *out, row)?;
        writeln!(out)?;
    }
    let line = SummaryLine {
        summary: true,
        fields: &report.summary,
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

/// The summary as the last JSON line: its fields after `"summary": true`.
#[derive(serde::Serialize)]
struct SummaryLine<'a> {
    summary: bool,
    #[serde(flatten)]
    fields: &'a Summary,
}

fn seconds(t: i64) -> String {
    format_duration(jiff::SignedDuration::from_secs(t))
}

/// A served share as a percentage, to a tenth.
fn share(share: f64) -> String {
    format!("{}%", (share * 1000.0).round() / 10.0)
}

fn percent(rate: f64) -> String {
    format!("{}%", (rate * 10_000.0).round() / 100.0)
}

/// A readable table with events under their rows, then the summary.
pub fn print_text(
    out: &mut impl Write,
    plan: &RolloutPlan,
    config: &SimConfig,
    unsimulated: &[&str],
    report: &SimReport,
) -> io::Result<()> {
    let strategy = match plan.strategy {
        StrategyKind::Canary => "canary".to_owned(),
        StrategyKind::BlueGreen(switch) => format!("blue-green ({switch:?} switch)"),
        StrategyKind::AbTest => "A/B test".to_owned(),
        StrategyKind::Mirror => "mirror".to_owned(),
    };
    writeln!(
        out,
        "Simulating {}/{}: {strategy} on {}, {} step(s), analysis every {}",
        plan.namespace,
        plan.name,
        plan.provider.name,
        plan.steps.len(),
        format_duration(plan.analysis.interval)
    )?;
    let model = config.traffic_model();
    writeln!(
        out,
        "traffic: {} rps; errors stable {} / canary {}; median latency stable {}ms / canary {}ms; seed {}",
        model.rps,
        percent(model.baseline_error_rate),
        percent(model.canary_error_rate),
        model.baseline_latency_ms,
        model.canary_latency_ms,
        model.seed
    )?;
    for name in unsimulated {
        writeln!(
            out,
            "note: metric `{name}` is a custom Prometheus query; simulation measures no data for it"
        )?;
    }
    writeln!(out)?;
    let served = report.rows.iter().any(|row| row.served.is_some());
    let served_header = if served {
        format!(" {:<17}", "served s/c/none")
    } else {
        String::new()
    };
    writeln!(
        out,
        "{:>8}  {:<12} {:>5} {:>7}{served_header}  {:<44} verdict",
        "time", "phase", "step", "weight", "metrics"
    )?;
    for row in &report.rows {
        let step = row
            .step
            .map_or("-".to_owned(), |step| format!("{step}/{}", row.steps));
        let metrics: Vec<String> = row
            .metrics
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={}", (value * 100.0).round() / 100.0),
                None => format!("{name}=no data"),
            })
            .collect();
        let verdict = row.verdict.map_or(String::new(), |verdict| {
            format!("{verdict:?}").to_lowercase()
        });
        let shares = match (served, row.served) {
            (false, _) => String::new(),
            (true, None) => format!(" {:<17}", "-"),
            (true, Some(s)) => format!(
                " {:<17}",
                format!("{}/{}/{}", share(s.stable), share(s.canary), share(s.none))
            ),
        };
        let line = format!(
            "{:>8}  {:<12} {:>5} {:>6}%{shares}  {:<44} {verdict}",
            seconds(row.t),
            row.phase.to_string(),
            step,
            row.canary_weight,
            metrics.join(" ")
        );
        writeln!(out, "{}", line.trim_end())?;
        for event in &row.events {
            writeln!(out, "{:>8}  · {event}", "")?;
        }
    }
    let s = &report.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} after {}: {}",
        s.phase,
        seconds(s.duration_s),
        s.message
    )?;
    let mirrored = if s.mirrored_requests > 0 {
        format!("; {} mirrored", s.mirrored_requests)
    } else {
        String::new()
    };
    writeln!(
        out,
        "canary weight {}%; {} requests: {} answered by the canary ({} errors), {} by stable ({} errors){mirrored}",
        s.canary_weight,
        s.requests_total,
        s.canary_requests,
        s.canary_errors,
        s.stable_requests,
        s.stable_errors
    )?;
    if let (Some(unserved), Some(excess), Some(outside)) = (
        s.unserved_requests,
        s.max_canary_excess,
        s.canary_requests_outside_release,
    ) {
        writeln!(
            out,
            "data plane: {unserved} requests answered by nobody; canary share at most {excess} points above its weight; {outside} requests answered by the canary while the route sent it nothing"
        )?;
    }
    if let (Some(corrections), Some(left)) = (s.gitops_corrections, &s.left_on_user_objects) {
        writeln!(
            out,
            "gitops: {corrections} objects corrected back to Git during the release; {}",
            if left.is_empty() {
                "the user's objects are as Git has them".to_owned()
            } else {
                format!("left on the user's objects: {}", left.join("; "))
            }
        )?;
    }
    Ok(())
}
