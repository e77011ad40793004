//! The timeline and summary of a simulation.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::START;
use super::traffic::{SecondCounts, TrafficModel};
use crate::driver::{Reconciled, Waypoint};
use crate::error::Error;
use crate::machine::Event;
use crate::memory::InMemoryTraffic;
use crate::plan::RolloutPlan;
use crate::status::{Phase, RolloutStatus, Verdict};

/// One line of the timeline: written whenever the phase, step or weight changes, an analysis
/// run is judged, or something happens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Seconds since the simulation started.
    pub t: i64,
    /// The phase.
    pub phase: Phase,
    /// The step (1-based) while a release is under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    /// The number of steps.
    pub steps: u32,
    /// The canary weight in effect, in percent.
    pub canary_weight: u32,
    /// Metric values measured at this time (`null` for no data).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, Option<f64>>,
    /// The verdict of the analysis run at this time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Events raised at this time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

fn describe(event: &Event) -> String {
    format!("{}: {}", event.reason, event.message)
}

/// Removes and describes the events announcing `phase`.
fn take_phase_events(events: &mut Vec<&Event>, phase: Phase) -> Vec<String> {
    let name = phase.to_string();
    let (own, rest): (Vec<&Event>, Vec<&Event>) = events.iter().partition(|e| e.reason == name);
    *events = rest;
    own.into_iter().map(describe).collect()
}

/// The end of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Always true: marks the summary line in `--json` output.
    pub summary: bool,
    /// The phase at the end.
    pub phase: Phase,
    /// The canary weight at the end, in percent.
    pub canary_weight: u32,
    /// User requests during the simulation.
    pub requests_total: u64,
    /// User requests answered by the canary.
    pub canary_requests: u64,
    /// Of those, errors: users the canary failed.
    pub canary_errors: u64,
    /// User requests answered by stable.
    pub stable_requests: u64,
    /// Of those, errors.
    pub stable_errors: u64,
    /// Requests copied to the canary by mirroring.
    pub mirrored_requests: u64,
    /// Failed checks in the release.
    pub failed_checks: u32,
    /// Virtual seconds from the request for the new revision to the end.
    pub duration_s: i64,
    /// The status message at the end.
    pub message: String,
}

/// Everything a simulation produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The timeline.
    pub rows: Vec<Row>,
    /// The summary.
    pub summary: Summary,
}

/// Builds the timeline pass by pass.
pub(super) struct Recorder {
    steps: u32,
    rows: Vec<Row>,
}

impl Recorder {
    pub(super) fn new(plan: &RolloutPlan) -> Self {
        Recorder {
            steps: u32::try_from(plan.steps.len()).unwrap_or(u32::MAX),
            rows: Vec::new(),
        }
    }

    pub(super) fn record(&mut self, now: Timestamp, pass: &Reconciled) {
        let t = now.duration_since(START).as_secs();
        let mut events: Vec<&Event> = pass.events.iter().collect();
        // Phases passed through within the pass get rows of their own, with their events.
        let (last, passed) = match pass.trail.split_last() {
            Some((last, passed)) => (*last, passed.get(1..).unwrap_or_default()),
            None => (
                Waypoint {
                    phase: pass.status.phase,
                    step: pass.status.step,
                    weight: 0,
                },
                &[][..],
            ),
        };
        for point in passed {
            let own: Vec<String> = take_phase_events(&mut events, point.phase);
            self.push(self.row(t, *point, own), false);
        }
        let measured: Vec<_> = pass
            .status
            .measurements
            .iter()
            .filter(|m| m.at == now && pass.analysed)
            .collect();
        let verdict = pass.analysed.then(|| {
            let worst = [Verdict::Fail, Verdict::Inconclusive, Verdict::Continue];
            let found = worst
                .into_iter()
                .find(|v| measured.iter().any(|m| m.verdict == *v));
            found.unwrap_or(Verdict::Pass)
        });
        let mut row = self.row(t, last, events.iter().map(|e| describe(e)).collect());
        row.metrics = measured
            .iter()
            .map(|m| (m.metric.clone(), m.value))
            .collect();
        row.verdict = verdict;
        self.push(row, pass.analysed);
    }

    fn row(&self, t: i64, point: Waypoint, events: Vec<String>) -> Row {
        let stepping = matches!(point.phase, Phase::Progressing | Phase::Paused);
        Row {
            t,
            phase: point.phase,
            step: stepping.then_some(point.step + 1),
            steps: self.steps,
            canary_weight: point.weight,
            metrics: BTreeMap::new(),
            verdict: None,
            events,
        }
    }

    /// Keeps a row when it says something new.
    fn push(&mut self, row: Row, analysed: bool) {
        let changed = self.rows.last().is_none_or(|last| {
            (last.phase, last.step, last.canary_weight) != (row.phase, row.step, row.canary_weight)
        });
        if changed || analysed || !row.events.is_empty() {
            self.rows.push(row);
        }
    }

    pub(super) fn error(&mut self, now: Timestamp, error: &Error) {
        let (phase, step, weight) = self
            .rows
            .last()
            .map_or((Phase::Initializing, None, 0), |last| {
                (last.phase, last.step, last.canary_weight)
            });
        self.rows.push(Row {
            t: now.duration_since(START).as_secs(),
            phase,
            step,
            steps: self.steps,
            canary_weight: weight,
            metrics: BTreeMap::new(),
            verdict: None,
            events: vec![format!("ReconcileError: {error}; retrying")],
        });
    }

    pub(super) fn finish(
        self,
        status: &RolloutStatus,
        end: Timestamp,
        traffic: &InMemoryTraffic,
        model: &TrafficModel,
    ) -> SimReport {
        let mut totals = SecondCounts::default();
        for second in (START.as_second() + 1)..=end.as_second() {
            let route = traffic.route_for_second(second);
            totals += model.second(second, &route);
        }
        let summary = Summary {
            summary: true,
            phase: status.phase,
            canary_weight: traffic.route().weight,
            requests_total: totals.total,
            canary_requests: totals.canary,
            canary_errors: totals.canary_errors,
            stable_requests: totals.stable,
            stable_errors: totals.stable_errors,
            mirrored_requests: totals.mirrored,
            failed_checks: status.failed_checks,
            duration_s: end.duration_since(START).as_secs(),
            message: status.message.clone(),
        };
        SimReport {
            rows: self.rows,
            summary,
        }
    }
}
