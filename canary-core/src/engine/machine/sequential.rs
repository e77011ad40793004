//! The sequential judge: the canary's errors against stable's, measured over consecutive
//! windows on its own short period, deciding as soon as the evidence is strong enough.

use jiff::{SignedDuration, Timestamp};

use super::{
    Action, AnalysisResults, Engine, ErrorCounts, EventKind, MetricOutcome, MetricRequest,
};
use crate::api::plan::{Judge, MetricPlan, Sprt};
use crate::engine::status::{Measurement, Phase, SequentialState, Verdict};

impl Engine<'_> {
    fn sequential_metrics(&self) -> impl Iterator<Item = (&MetricPlan, Sprt)> {
        self.plan
            .analysis
            .metrics
            .iter()
            .filter_map(|metric| match metric.judge {
                Judge::Sequential(sprt) => Some((metric, sprt)),
                Judge::Threshold(_) => None,
            })
    }

    /// Fresh judges for a new attempt at a release, measuring from now.
    pub(super) fn fresh_sequential(&self) -> Vec<SequentialState> {
        self.sequential_metrics()
            .map(|(metric, _)| SequentialState {
                metric: metric.name.clone(),
                llr: 0.0,
                since: self.now,
                canary_requests: 0,
                canary_errors: 0,
                stable_requests: 0,
                stable_errors: 0,
                pending: ErrorCounts::default(),
                verdict: None,
            })
            .collect()
    }

    fn period(&self, metric: &str) -> SignedDuration {
        let plan = self.plan.analysis.metrics.iter().find(|m| m.name == metric);
        plan.map_or(SignedDuration::from_secs(10), |m| m.window)
    }

    /// When the next sequential measurement is due, while a judge is still undecided.
    pub(super) fn sequential_wakeup(&self) -> Option<Timestamp> {
        self.status
            .analysis
            .sequential
            .iter()
            .filter(|state| state.verdict.is_none())
            .filter_map(|state| state.since.checked_add(self.period(&state.metric)).ok())
            .min()
    }

    /// Asks for the sequential measurements that are due.
    pub(super) fn measure_sequential(&mut self) {
        let due: Vec<MetricRequest> = self
            .status
            .analysis
            .sequential
            .iter()
            .filter(|state| state.verdict.is_none())
            .filter(|state| {
                state
                    .since
                    .checked_add(self.period(&state.metric))
                    .is_ok_and(|at| at <= self.now)
            })
            .map(|state| MetricRequest {
                metric: state.metric.clone(),
                window: self.now.duration_since(state.since),
            })
            .collect();
        if !due.is_empty() {
            self.emit(Action::RunAnalysis {
                metrics: due,
                gate: false,
            });
        }
    }

    /// Adds the measured windows to the evidence; rolls back at once when it shows the canary
    /// is worse.
    pub(super) fn judge_sequential(&mut self, results: &AnalysisResults) {
        if !matches!(self.status.phase, Phase::Progressing | Phase::Paused) {
            return;
        }
        let judges: Vec<(String, Sprt)> = self
            .sequential_metrics()
            .map(|(metric, sprt)| (metric.name.clone(), sprt))
            .collect();
        let mut rejected = None;
        for result in &results.metrics {
            let Some((_, sprt)) = judges.iter().find(|(name, _)| *name == result.metric) else {
                continue;
            };
            let now = self.now;
            let Some(state) = self
                .status
                .analysis
                .sequential
                .iter_mut()
                .find(|s| s.metric == result.metric)
            else {
                continue;
            };
            match &result.outcome {
                MetricOutcome::Counts(counts) => {
                    // Weighed once both versions have answered requests; until then the
                    // window's counts wait, so none is lost.
                    let pending = state.pending.plus(*counts);
                    if pending.canary_requests > 0 && pending.stable_requests > 0 {
                        let llr = state.llr
                            + sprt.evidence(
                                (pending.canary_requests, pending.canary_errors),
                                (pending.stable_requests, pending.stable_errors),
                            );
                        // The status carries the sum; a non-finite one would not read back.
                        if llr.is_finite() {
                            state.llr = llr;
                        }
                        state.pending = ErrorCounts::default();
                    } else {
                        state.pending = pending;
                    }
                    // Counts from the status and from Prometheus: add without overflow.
                    state.canary_requests =
                        state.canary_requests.saturating_add(counts.canary_requests);
                    state.canary_errors = state.canary_errors.saturating_add(counts.canary_errors);
                    state.stable_requests =
                        state.stable_requests.saturating_add(counts.stable_requests);
                    state.stable_errors = state.stable_errors.saturating_add(counts.stable_errors);
                    state.since = now;
                    if state.llr >= sprt.upper() {
                        state.verdict = Some(Verdict::Fail);
                    } else if state.llr <= sprt.lower() {
                        state.verdict = Some(Verdict::Pass);
                    }
                }
                // Nothing was answered in the window: nothing to add.
                MetricOutcome::NoData => state.since = now,
                MetricOutcome::Value(_) | MetricOutcome::Error(_) => {}
            }
            let state = state.clone();
            self.record_sequential(&state, *sprt, &result.outcome);
            if state.verdict == Some(Verdict::Fail) {
                rejected = Some((state, *sprt));
            }
        }
        if let Some((state, sprt)) = rejected {
            let message = format!(
                "the sequential judge found the canary worse: {} errors in {} canary requests \
                 ({}) against {} in {} stable requests ({}); log-likelihood ratio {:.2} reached \
                 {:.2} (alpha {}, degradation {}x); rolled back",
                state.canary_errors,
                state.canary_requests,
                percent(state.canary_errors, state.canary_requests),
                state.stable_errors,
                state.stable_requests,
                percent(state.stable_errors, state.stable_requests),
                state.llr,
                sprt.upper(),
                sprt.alpha,
                sprt.degradation
            );
            self.status.analysis.failed_checks += 1;
            self.rollback("SequentialJudgeFailed", message);
        }
    }

    fn record_sequential(&mut self, state: &SequentialState, sprt: Sprt, outcome: &MetricOutcome) {
        let success = (state.canary_requests > 0)
            .then(|| 100.0 * (1.0 - state.canary_errors as f64 / state.canary_requests as f64));
        let (verdict, message) = match (outcome, state.verdict) {
            (MetricOutcome::Error(why), _) => {
                (Verdict::Inconclusive, format!("query failed: {why}"))
            }
            (MetricOutcome::Value(_), _) => (
                Verdict::Inconclusive,
                "the query returned a value, not counts".to_owned(),
            ),
            (_, Some(verdict)) => (
                verdict,
                format!("log-likelihood ratio {:.2}; decided", state.llr),
            ),
            (_, None) => (
                Verdict::Continue,
                format!(
                    "log-likelihood ratio {:.2} (rolls back at {:.2}, passes at {:.2})",
                    state.llr,
                    sprt.upper(),
                    sprt.lower()
                ),
            ),
        };
        if verdict == Verdict::Inconclusive {
            self.event(
                EventKind::Warning,
                "SequentialInconclusive",
                format!("{}: {message}", state.metric),
            );
        }
        self.status.analysis.record(Measurement {
            metric: state.metric.clone(),
            value: success,
            verdict,
            message,
            at: self.now,
        });
    }
}

fn percent(errors: u64, requests: u64) -> String {
    if requests == 0 {
        return "no requests".to_owned();
    }
    format!("{:.2}%", 100.0 * errors as f64 / requests as f64)
}
