//! The gate of a step: analysis runs and pauses, then on to the next step.

use jiff::Timestamp;

use super::{Action, AnalysisResults, Engine, EventKind, MetricRequest, judge};
use crate::api::plan::{Finish, Judge, PlanPause};
use crate::api::spec::FailureCounting;
use crate::api::spec::HookType;
use crate::engine::providers::HookOutcome;
use crate::engine::status::{Measurement, Phase, StepStage, Verdict};

impl Engine<'_> {
    /// When the next analysis run is due at the current gate.
    fn next_analysis_at(&self) -> Option<Timestamp> {
        let since = self
            .status
            .gate
            .last_analysis
            .or(self.status.gate.gate_since)?;
        since.checked_add(self.plan.analysis.interval).ok()
    }

    /// True while the gate still wants analysis runs: until its iterations pass, and for as long
    /// as it waits on a pause when there are metrics to watch.
    fn wants_analysis(&self) -> bool {
        let Some(step) = self.plan.step(self.status.step) else {
            return false;
        };
        self.status.gate.iterations < step.iterations
            || (step.pause.is_some() && self.analysis_has_checks())
    }

    fn pause_ends_at(&self) -> Option<Timestamp> {
        let step = self.plan.step(self.status.step)?;
        match step.pause? {
            PlanPause::For(duration) => self.status.gate.gate_since?.checked_add(duration).ok(),
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
        let hooks = (!self.status.gate.hooks_confirmed)
            .then(|| self.hooks_wakeup())
            .flatten();
        let unverified = !self.status.routing.route_verified;
        let verification = unverified
            .then(|| self.now.checked_add(super::POLL_INTERVAL).ok())
            .flatten();
        [analysis, pause, hooks, verification]
            .into_iter()
            .flatten()
            .min()
    }

    /// At the gate: run analysis when it is due, then see whether the gate is passed.
    pub(super) fn gating(&mut self) {
        let due = self.next_analysis_at().is_some_and(|at| at <= self.now);
        if self.wants_analysis() && due {
            if !self.analysis_has_checks() {
                self.analysed(&AnalysisResults {
                    gate: true,
                    ..AnalysisResults::default()
                });
            } else {
                let metrics = self
                    .plan
                    .analysis
                    .metrics
                    .iter()
                    .filter(|metric| !metric.is_sequential())
                    .map(|metric| MetricRequest {
                        metric: metric.name.clone(),
                        window: metric.window,
                    })
                    .collect();
                self.emit(Action::RunAnalysis {
                    metrics,
                    gate: true,
                });
            }
            return;
        }
        self.try_pass_gate();
    }

    /// Judges an analysis run: rolls back at once when the failure limit is reached.
    pub(super) fn analysed(&mut self, results: &AnalysisResults) {
        if !results.gate {
            self.judge_sequential(results);
            return;
        }
        let at_gate = matches!(self.status.phase, Phase::Progressing | Phase::Paused)
            && self.status.stage == StepStage::Gating;
        if !at_gate {
            return;
        }
        self.status.gate.last_analysis = Some(self.now);
        if self.rollback_if_asked(results) {
            return;
        }
        let mut run = RunVerdict::default();
        self.judge_thresholds(results, &mut run);
        judge_rollout_hooks(results, &mut run);
        if self.count_run(run) {
            return;
        }
        self.try_pass_gate();
    }

    /// Rolls back when a `rollback` webhook said yes. Returns whether it rolled back.
    fn rollback_if_asked(&mut self, results: &AnalysisResults) -> bool {
        let Some(asked) = results
            .hooks
            .iter()
            .find(|r| r.hook_type == HookType::Rollback && r.outcome == HookOutcome::Pass)
        else {
            return false;
        };
        let message = format!(
            "rollback webhook {} asked for a rollback; rolled back",
            asked.name
        );
        self.rollback("RollbackRequested", message);
        true
    }

    /// Judges each threshold metric of the run and records its measurement.
    fn judge_thresholds(&mut self, results: &AnalysisResults, run: &mut RunVerdict) {
        for metric in &self.plan.analysis.metrics {
            let Judge::Threshold(range) = metric.judge else {
                continue;
            };
            let outcome = results
                .metrics
                .iter()
                .find(|r| r.metric == metric.name)
                .map(|r| &r.outcome);
            let (value, verdict, message) = judge(&range, outcome, self.plan.analysis.no_data);
            run.add(verdict, format!("{}: {message}", metric.name));
            self.status.analysis.record(Measurement {
                metric: metric.name.clone(),
                value,
                verdict,
                message,
                at: self.now,
            });
        }
    }

    /// Counts the run's verdict: a pass adds an iteration, an inconclusive run or a failed check
    /// may reach its limit and roll back. Returns whether it rolled back.
    fn count_run(&mut self, run: RunVerdict) -> bool {
        match run.verdict {
            Verdict::Pass | Verdict::Continue => {
                self.count_pass();
                false
            }
            Verdict::Inconclusive => self.count_inconclusive(run.inconclusive.join("; ")),
            Verdict::Fail => {
                self.status.analysis.inconclusive = 0;
                self.fail_check(run.failures.join("; "))
            }
        }
    }

    /// A run that passed: one more iteration, and the counts in a row start again.
    fn count_pass(&mut self) {
        let analysis = &mut self.status.analysis;
        analysis.consecutive_failures = 0;
        analysis.inconclusive = 0;
        self.status.gate.iterations = self.status.gate.iterations.saturating_add(1);
        if self.analysis_has_checks() {
            self.status.set_condition(
                "Analysis",
                true,
                "Passed",
                "the last analysis run passed",
                self.now,
            );
        }
    }

    /// A run without evidence either way; rolls back at once when the inconclusive limit is
    /// reached. Returns whether it rolled back.
    fn count_inconclusive(&mut self, message: String) -> bool {
        let inconclusive = self.status.analysis.inconclusive.saturating_add(1);
        self.status.analysis.inconclusive = inconclusive;
        self.status
            .set_condition("Analysis", false, "Inconclusive", &message, self.now);
        self.event(EventKind::Warning, "InconclusiveCheck", message.clone());
        let Some(limit) = self.plan.analysis.inconclusive_limit else {
            return false;
        };
        if inconclusive < limit {
            return false;
        }
        let message = format!(
            "{inconclusive} inconclusive analysis runs in a row reached the inconclusive limit {limit}; rolled back ({message})"
        );
        self.rollback("AnalysisInconclusive", message);
        true
    }

    /// Counts a failed check; rolls back at once when the failure limit is reached. Returns
    /// whether it rolled back.
    pub(super) fn fail_check(&mut self, message: String) -> bool {
        self.status.analysis.failed_checks = self.status.analysis.failed_checks.saturating_add(1);
        self.status.analysis.consecutive_failures =
            self.status.analysis.consecutive_failures.saturating_add(1);
        self.status
            .set_condition("Analysis", false, "Failed", &message, self.now);
        self.event(EventKind::Warning, "FailedCheck", message.clone());
        let counted = match self.plan.analysis.counting {
            FailureCounting::Cumulative => self.status.analysis.failed_checks,
            FailureCounting::Consecutive => self.status.analysis.consecutive_failures,
        };
        if counted < self.plan.analysis.failure_limit {
            return false;
        }
        self.rollback(
            "AnalysisFailed",
            format!(
                "{counted} failed checks reached the failure limit {}; rolled back ({message})",
                self.plan.analysis.failure_limit
            ),
        );
        true
    }

    /// Whether an analysis run has anything to check: metrics, or `rollout`/`rollback`
    /// webhooks.
    fn analysis_has_checks(&self) -> bool {
        self.plan
            .analysis
            .metrics
            .iter()
            .any(|metric| !metric.is_sequential())
            || self.has_hooks(HookType::Rollout)
            || self.has_hooks(HookType::Rollback)
    }

    /// Passes the gate when its analysis iterations and pause are done and no user holds it.
    pub(super) fn try_pass_gate(&mut self) {
        let Some(step) = self.plan.step(self.status.step) else {
            return;
        };
        let pause_done = match step.pause {
            None => true,
            Some(PlanPause::Manual) => self.status.gate.approved,
            Some(PlanPause::For(_)) => self.pause_ends_at().is_some_and(|end| end <= self.now),
        };
        let iterations_done =
            self.status.gate.iterations >= step.iterations && self.status.routing.route_verified;
        if self.status.commands.user_paused {
            self.set_phase(Phase::Paused, "paused by a user; resume to continue");
        } else if pause_done && iterations_done {
            if let Some(kind) = self.confirmation_needed() {
                let revision = self.canary_revision();
                self.call_gate_hooks(kind, &revision);
                self.set_phase(
                    Phase::Progressing,
                    format!(
                        "step {}/{}: waiting for the {} webhooks",
                        self.status.step.saturating_add(1),
                        self.plan.steps.len(),
                        kind.name()
                    ),
                );
                return;
            }
            self.advance();
        } else if step.pause == Some(PlanPause::Manual) && !self.status.gate.approved {
            self.set_phase(
                Phase::Paused,
                format!(
                    "step {}/{} waits for approval; promote to continue",
                    self.status.step.saturating_add(1),
                    self.plan.steps.len()
                ),
            );
        } else {
            self.set_phase(
                Phase::Progressing,
                format!(
                    "step {}/{}: analysing",
                    self.status.step.saturating_add(1),
                    self.plan.steps.len()
                ),
            );
        }
    }

    /// The `confirm-*` webhooks that must pass before leaving this gate, if any: before a
    /// weight increase, and before promotion.
    fn confirmation_needed(&self) -> Option<HookType> {
        if self.status.gate.hooks_confirmed {
            return None;
        }
        let current = self.plan.step(self.status.step)?;
        let kind = match self.plan.step(self.status.step.saturating_add(1)) {
            Some(next) if next.route.weight > current.route.weight => {
                HookType::ConfirmTrafficIncrease
            }
            Some(_) => return None,
            None if self.plan.finish == Finish::Promote => HookType::ConfirmPromotion,
            None => return None,
        };
        self.has_hooks(kind).then_some(kind)
    }

    /// On to the next step, or to promotion after the last.
    pub(super) fn advance(&mut self) {
        let next = self.status.step.saturating_add(1);
        if usize::try_from(next).is_ok_and(|next| next < self.plan.steps.len()) {
            self.enter_step(next);
            self.set_phase(
                Phase::Progressing,
                format!("step {}/{}", next.saturating_add(1), self.plan.steps.len()),
            );
        } else {
            self.finish_steps();
        }
    }
}

/// The verdict of one gate run over its metrics and `rollout` webhooks, and why.
#[derive(Debug)]
struct RunVerdict {
    /// `Fail` when any check failed, else `Inconclusive` when any was, else `Pass`.
    verdict: Verdict,
    /// Why checks failed.
    failures: Vec<String>,
    /// Why checks were inconclusive.
    inconclusive: Vec<String>,
}

impl Default for RunVerdict {
    /// A run with no checks passes.
    fn default() -> Self {
        RunVerdict {
            verdict: Verdict::Pass,
            failures: Vec::new(),
            inconclusive: Vec::new(),
        }
    }
}

impl RunVerdict {
    /// Adds one check's verdict, with why (kept for a failure or an inconclusive check).
    fn add(&mut self, verdict: Verdict, why: String) {
        match verdict {
            Verdict::Fail => {
                self.verdict = Verdict::Fail;
                self.failures.push(why);
            }
            Verdict::Inconclusive => {
                if self.verdict == Verdict::Pass {
                    self.verdict = Verdict::Inconclusive;
                }
                self.inconclusive.push(why);
            }
            Verdict::Pass | Verdict::Continue => {}
        }
    }
}

/// A `rollout` webhook that said no (or could not answer) is a failed check.
fn judge_rollout_hooks(results: &AnalysisResults, run: &mut RunVerdict) {
    for result in results
        .hooks
        .iter()
        .filter(|r| r.hook_type == HookType::Rollout)
    {
        if let HookOutcome::Fail(why) | HookOutcome::Error(why) = &result.outcome {
            run.add(
                Verdict::Fail,
                format!("rollout webhook {}: {why}", result.name),
            );
        }
    }
}
