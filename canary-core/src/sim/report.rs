//! The timeline and summary of a simulation.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::START;
use super::traffic::{SecondCounts, Splits, TrafficModel};
use crate::api::plan::RolloutPlan;
use crate::engine::driver::{Reconciled, Waypoint};
use crate::engine::machine::Event;
use crate::engine::status::{Phase, RolloutStatus, Verdict};

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
    /// Who answers users' requests from this time on, when a data-plane model tells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedShares>,
}

/// Shares of users' requests answered by the stable Deployment's pods (or other pods that are
/// not the canary's), by the canary Deployment's pods, and by no pod. They add up to 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServedShares {
    /// Answered by stable.
    pub stable: f64,
    /// Answered by the canary.
    pub canary: f64,
    /// Answered by nobody.
    pub none: f64,
}

impl ServedShares {
    /// The shares, each rounded to 1e-4 (so that timelines do not show float noise).
    pub fn rounded(stable: f64, canary: f64, none: f64) -> Self {
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0 + 0.0;
        ServedShares {
            stable: round(stable),
            canary: round(canary),
            none: round(none),
        }
    }
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
    /// Requests answered by no pod (simulations through a data-plane model only; they also
    /// count the time after the end that they watch the cluster settle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unserved_requests: Option<u64>,
    /// The largest share of plain requests any caller had answered by the canary, minus the
    /// route's canary weight at that moment, in percentage points; never negative
    /// (simulations through a data-plane model only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_canary_excess: Option<f64>,
    /// Requests answered by canary pods while the route sent the canary nothing (simulations
    /// through a data-plane model only, the settling time after the end included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary_requests_outside_release: Option<u64>,
    /// Stable pods that ran when the new revision was asked for and were gone before the
    /// release began promoting (simulations through a cluster only): a stable workload not
    /// held rolls the untested template onto them. 0 unless something restarts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_pods_replaced_before_promotion: Option<u64>,
    /// Times a GitOps tool found one of the user's objects drifted from Git and applied it
    /// again after the release began (simulations with a GitOps tool only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitops_corrections: Option<u32>,
    /// What differs on the user's objects from Git once the rollout ended and the cluster
    /// settled, and the objects canary still owns fields of (simulations with a GitOps tool
    /// only; empty when canary left them as Git has them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_on_user_objects: Option<Vec<String>>,
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
#[derive(Debug)]
pub struct Recorder {
    steps: u32,
    rows: Vec<Row>,
    /// Who answers users' requests now, when known.
    served: Option<ServedShares>,
}

impl Recorder {
    /// An empty timeline of `plan`.
    pub fn new(plan: &RolloutPlan) -> Self {
        Recorder {
            steps: u32::try_from(plan.steps.len()).unwrap_or(u32::MAX),
            rows: Vec::new(),
            served: None,
        }
    }

    /// Who answers users' requests from `now` on: rows from now carry it, and a change gets
    /// a row of its own.
    pub fn observe(&mut self, now: Timestamp, served: ServedShares) {
        if self.served == Some(served) {
            return;
        }
        self.served = Some(served);
        let Some(last) = self.rows.last() else {
            return;
        };
        let t = now.duration_since(START).as_secs();
        if last.t == t {
            if let Some(last) = self.rows.last_mut() {
                last.served = Some(served);
            }
            return;
        }
        let mut row = last.clone();
        row.t = t;
        row.metrics = BTreeMap::new();
        row.verdict = None;
        row.events = Vec::new();
        row.served = Some(served);
        self.rows.push(row);
    }

    /// Adds the rows of reconcile pass `pass`, run at `now`.
    pub fn record(&mut self, now: Timestamp, pass: &Reconciled) {
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
            .analysis
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
            served: self.served,
        }
    }

    /// Keeps a row when it says something new.
    fn push(&mut self, row: Row, analysed: bool) {
        let changed = self.rows.last().is_none_or(|last| {
            (last.phase, last.step, last.canary_weight, last.served)
                != (row.phase, row.step, row.canary_weight, row.served)
        });
        if changed || analysed || !row.events.is_empty() {
            self.rows.push(row);
        }
    }

    /// Adds `event` to the timeline at `now`: to the last row when it is at `now`, or else
    /// to a new row where the rollout still is.
    pub fn note(&mut self, now: Timestamp, event: &str) {
        let t = now.duration_since(START).as_secs();
        match self.rows.last_mut() {
            Some(last) if last.t == t => last.events.push(event.to_owned()),
            Some(last) => {
                let mut row = last.clone();
                row.t = t;
                row.metrics = BTreeMap::new();
                row.verdict = None;
                row.events = vec![event.to_owned()];
                self.rows.push(row);
            }
            None => {
                let mut row = self.row(
                    t,
                    Waypoint {
                        phase: Phase::Initializing,
                        step: 0,
                        weight: 0,
                    },
                    vec![event.to_owned()],
                );
                row.step = None;
                self.rows.push(row);
            }
        }
    }

    /// Adds a row for a failed pass at `now`.
    pub fn error(&mut self, now: Timestamp, error: &dyn std::fmt::Display) {
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
            served: self.served,
        });
    }

    /// The timeline and its summary: the rollout ended (or stopped) at `end` with `status` and
    /// the route's canary weight `canary_weight`; `model`'s requests were answered as
    /// `splits` says.
    pub fn finish(
        self,
        status: &RolloutStatus,
        end: Timestamp,
        canary_weight: u32,
        splits: &dyn Splits,
        model: &TrafficModel,
    ) -> SimReport {
        let mut totals = SecondCounts::default();
        for second in (START.as_second() + 1)..=end.as_second() {
            totals += model.split_second(second, &splits.split_for_second(second));
        }
        let summary = Summary {
            phase: status.phase,
            canary_weight,
            requests_total: totals.total,
            canary_requests: totals.canary,
            canary_errors: totals.canary_errors,
            stable_requests: totals.stable,
            stable_errors: totals.stable_errors,
            mirrored_requests: totals.mirrored,
            failed_checks: status.analysis.failed_checks,
            duration_s: end.duration_since(START).as_secs(),
            message: status.message.clone(),
            unserved_requests: None,
            max_canary_excess: None,
            canary_requests_outside_release: None,
            stable_pods_replaced_before_promotion: None,
            gitops_corrections: None,
            left_on_user_objects: None,
        };
        SimReport {
            rows: self.rows,
            summary,
        }
    }
}
