//! The gate of a step: analysis runs and pauses, then on to the next step.

use jiff::Timestamp;

use super::{Action, AnalysisResults, Engine, EventKind, judge};
use crate::plan::PlanPause;
use crate::spec::FailureCounting;
use crate::status::{Measurement, Phase, StepStage, Verdict};

impl Engine<'_> {
    /// When the next analysis run is due at the current gate.
    fn next_analysis_at(&self) -> Option<Timestamp> {
        let since = self.status.last_analysis.or(self.status.gate_since)?;
        since.checked_add(self.plan.analysis.interval).ok()
    }

    /// True while the gate still wants analysis runs: until its iterations pass, and for as long
    /// as it waits on a pause when there are metrics to watch.
    fn wants_analysis(&self) -> bool {
        let Some(step) = self.plan.step(self.status.step) else {
            return false;
        };
        self.status.iterations < step.iterations
            || (step.pause.is_some() && !self.plan.analysis.metrics.is_empty())
    }

    fn pause_ends_at(&self) -> Option<Timestamp> {
        let step = self.plan.step(self.status.step)?;
        match step.pause? {
            PlanPause::For(duration) => self.status.gate_since?.checked_add(duration).ok(),
            PlanPause::Manual => None,
        }
    }

    /// The earliest time something can change at the gate without a user.
    pub(super) fn next_gate_wakeup(&self) -> Option<Timestamp> {
        let analysis = self
            .wants_analysis()
            .then(|| self.next_analysis_at())
            .flatten();
        let pause = self.pause_ends_at().filter(|end| *end > self.now);
        match (analysis, pause) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        }
    }

    /// At the gate: run analysis when it is due, then see whether the gate is passed.
    pub(super) fn gating(&mut self) {
        let due = self.next_analysis_at().is_some_and(|at| at <= self.now);
        if self.wants_analysis() && due {
            if self.plan.analysis.metrics.is_empty() {
                self.analysed(&AnalysisResults::default());
            } else {
                self.emit(Action::RunAnalysis);
            }
            return;
        }
        self.try_pass_gate();
    }

    /// Judges an analysis run: rolls back at once when the failure limit is reached.
    pub(super) fn analysed(&mut self, results: &AnalysisResults) {
        let at_gate = matches!(self.status.phase, Phase::Progressing | Phase::Paused)
            && self.status.stage == StepStage::Gating;
        if !at_gate {
            return;
        }
        self.status.last_analysis = Some(self.now);
        let mut verdict = Verdict::Pass;
        let mut failures = Vec::new();
        let mut inconclusive = Vec::new();
        for metric in &self.plan.analysis.metrics {
            let outcome = results
                .metrics
                .iter()
                .find(|r| r.metric == metric.name)
                .map(|r| &r.outcome);
            let (value, metric_verdict, message) =
                judge(metric, outcome, self.plan.analysis.no_data);
            match metric_verdict {
                Verdict::Fail => {
                    verdict = Verdict::Fail;
                    failures.push(format!("{}: {message}", metric.name));
                }
                Verdict::Inconclusive => {
                    if verdict == Verdict::Pass {
                        verdict = Verdict::Inconclusive;
                    }
                    inconclusive.push(format!("{}: {message}", metric.name));
                }
                Verdict::Pass => {}
            }
            self.status.record(Measurement {
                metric: metric.name.clone(),
                value,
                verdict: metric_verdict,
                message,
                at: self.now,
            });
        }
        match verdict {
            Verdict::Pass => {
                self.status.consecutive_failures = 0;
                self.status.iterations += 1;
                if !self.plan.analysis.metrics.is_empty() {
                    self.status.set_condition(
                        "Analysis",
                        true,
                        "Passed",
                        "the last analysis run passed",
                        self.now,
                    );
                }
            }
            Verdict::Inconclusive => {
                self.status.inconclusive += 1;
                let message = inconclusive.join("; ");
                self.status
                    .set_condition("Analysis", false, "Inconclusive", &message, self.now);
                self.event(EventKind::Warning, "InconclusiveCheck", message);
            }
            Verdict::Fail => {
                self.status.failed_checks += 1;
                self.status.consecutive_failures += 1;
                let message = failures.join("; ");
                self.status
                    .set_condition("Analysis", false, "Failed", &message, self.now);
                self.event(EventKind::Warning, "FailedCheck", message.clone());
                let counted = match self.plan.analysis.counting {
                    FailureCounting::Cumulative => self.status.failed_checks,
                    FailureCounting::Consecutive => self.status.consecutive_failures,
                };
                if counted >= self.plan.analysis.failure_limit {
                    self.rollback(
                        "AnalysisFailed",
                        format!(
                            "{counted} failed checks reached the failure limit {}; rolled back ({message})",
                            self.plan.analysis.failure_limit
                        ),
                    );
                    return;
                }
            }
        }
        self.try_pass_gate();
    }

    /// Passes the gate when its analysis iterations and pause are done and no user holds it.
    pub(super) fn try_pass_gate(&mut self) {
        let Some(step) = self.plan.step(self.status.step) else {
            return;
        };
        let pause_done = match step.pause {
            None => true,
            Some(PlanPause::Manual) => self.status.approved,
            Some(PlanPause::For(_)) => self.pause_ends_at().is_some_and(|end| end <= self.now),
        };
        let iterations_done = self.status.iterations >= step.iterations;
        if self.status.user_paused {
            self.set_phase(Phase::Paused, "paused by a user; resume to continue");
        } else if pause_done && iterations_done {
            self.advance();
        } else if step.pause == Some(PlanPause::Manual) && !self.status.approved {
            self.set_phase(
                Phase::Paused,
                format!(
                    "step {}/{} waits for approval; promote to continue",
                    self.status.step + 1,
                    self.plan.steps.len()
                ),
            );
        } else {
            self.set_phase(
                Phase::Progressing,
                format!(
                    "step {}/{}: analysing",
                    self.status.step + 1,
                    self.plan.steps.len()
                ),
            );
        }
    }

    /// On to the next step, or to promotion after the last.
    pub(super) fn advance(&mut self) {
        let next = self.status.step + 1;
        if (next as usize) < self.plan.steps.len() {
            self.enter_step(next);
            self.set_phase(
                Phase::Progressing,
                format!("step {}/{}", next + 1, self.plan.steps.len()),
            );
        } else {
            self.finish_steps();
        }
    }
}
