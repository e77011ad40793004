//! The simulate timeline, as text for people or JSON lines for programs.

use canary::RolloutPlan;
use canary::duration::format_duration;
use canary::plan::StrategyKind;
use canary::sim::{SimConfig, SimReport};

/// One JSON object per row, then the summary.
pub fn print_json(report: &SimReport) -> serde_json::Result<()> {
    for row in &report.rows {
        println!("{}", serde_json::to_string(row)?);
    }
    println!("{}", serde_json::to_string(&report.summary)?);
    Ok(())
}

fn seconds(t: i64) -> String {
    format_duration(jiff::SignedDuration::from_secs(t))
}

fn percent(rate: f64) -> String {
    format!("{}%", (rate * 10_000.0).round() / 100.0)
}

/// A readable table with events under their rows, then the summary.
pub fn print_text(
    plan: &RolloutPlan,
    config: &SimConfig,
    unsimulated: &[&str],
    report: &SimReport,
) {
    let strategy = match plan.strategy {
        StrategyKind::Canary => "canary".to_owned(),
        StrategyKind::BlueGreen(switch) => format!("blue-green ({switch:?} switch)"),
        StrategyKind::AbTest => "A/B test".to_owned(),
        StrategyKind::Mirror => "mirror".to_owned(),
    };
    println!(
        "Simulating {}/{}: {strategy} on {}, {} step(s), analysis every {}",
        plan.namespace,
        plan.name,
        plan.provider.name(),
        plan.steps.len(),
        format_duration(plan.analysis.interval)
    );
    let model = config.traffic_model();
    println!(
        "traffic: {} rps; errors stable {} / canary {}; median latency stable {}ms / canary {}ms; seed {}",
        model.rps,
        percent(model.baseline_error_rate),
        percent(model.canary_error_rate),
        model.baseline_latency_ms,
        model.canary_latency_ms,
        model.seed
    );
    for name in unsimulated {
        println!(
            "note: metric `{name}` is a custom Prometheus query; simulation measures no data for it"
        );
    }
    println!();
    println!(
        "{:>8}  {:<12} {:>5} {:>7}  {:<40} verdict",
        "time", "phase", "step", "weight", "metrics"
    );
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
        println!(
            "{:>8}  {:<12} {:>5} {:>6}%  {:<40} {verdict}",
            seconds(row.t),
            row.phase.to_string(),
            step,
            row.canary_weight,
            metrics.join(" ")
        );
        for event in &row.events {
            println!("{:>8}  · {event}", "");
        }
    }
    let s = &report.summary;
    println!();
    println!("{} after {}: {}", s.phase, seconds(s.duration_s), s.message);
    println!(
        "canary weight {}%; {} requests: {} answered by the canary ({} errors), {} by stable ({} errors){}",
        s.canary_weight,
        s.requests_total,
        s.canary_requests,
        s.canary_errors,
        s.stable_requests,
        s.stable_errors,
        if s.mirrored_requests > 0 {
            format!("; {} mirrored", s.mirrored_requests)
        } else {
            String::new()
        }
    );
}
