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
            || (step.pause.is_some() && self.analysis_has_checks())
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
        let hooks = (!self.status.hooks_confirmed)
            .then(|| self.hooks_wakeup())
            .flatten();
        let unverified = !self.status.route_verified;
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
        self.status.last_analysis = Some(self.now);
        if let Some(asked) = results
            .hooks
            .iter()
            .find(|r| r.hook_type == HookType::Rollback && r.outcome == HookOutcome::Pass)
        {
            let message = format!(
                "rollback webhook {} asked for a rollback; rolled back",
                asked.name
            );
            self.rollback("RollbackRequested", message);
            return;
        }
        let mut verdict = Verdict::Pass;
        let mut failures = Vec::new();
        let mut inconclusive = Vec::new();
        for metric in &self.plan.analysis.metrics {
            let Judge::Threshold(range) = metric.judge else {
                continue;
            };
            let outcome = results
                .metrics
                .iter()
                .find(|r| r.metric == metric.name)
                .map(|r| &r.outcome);
            let (value, metric_verdict, message) =
                judge(&range, outcome, self.plan.analysis.no_data);
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
                Verdict::Pass | Verdict::Continue => {}
            }
            self.status.record(Measurement {
                metric: metric.name.clone(),
                value,
                verdict: metric_verdict,
                message,
                at: self.now,
            });
        }
        for result in results
            .hooks
            .iter()
            .filter(|r| r.hook_type == HookType::Rollout)
        {
            if let HookOutcome::Fail(why) | HookOutcome::Error(why) = &result.outcome {
                verdict = Verdict::Fail;
                failures.push(format!("rollout webhook {}: {why}", result.name));
            }
        }
        match verdict {
            Verdict::Pass | Verdict::Continue => {
                self.status.consecutive_failures = 0;
                self.status.inconclusive = 0;
                self.status.iterations = self.status.iterations.saturating_add(1);
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
            Verdict::Inconclusive => {
                self.status.inconclusive = self.status.inconclusive.saturating_add(1);
                let message = inconclusive.join("; ");
                self.status
                    .set_condition("Analysis", false, "Inconclusive", &message, self.now);
                self.event(EventKind::Warning, "InconclusiveCheck", message.clone());
                if let Some(limit) = self.plan.analysis.inconclusive_limit
                    && self.status.inconclusive >= limit
                {
                    let message = format!(
                        "{} inconclusive analysis runs in a row reached the inconclusive limit {limit}; rolled back ({message})",
                        self.status.inconclusive
                    );
                    self.rollback("AnalysisInconclusive", message);
                    return;
                }
            }
            Verdict::Fail => {
                self.status.inconclusive = 0;
                if self.fail_check(failures.join("; ")) {
                    return;
                }
            }
        }
        self.try_pass_gate();
    }

    /// Counts a failed check; rolls back at once when the failure limit is reached. Returns
    /// whether it rolled back.
    pub(super) fn fail_check(&mut self, message: String) -> bool {
        self.status.failed_checks = self.status.failed_checks.saturating_add(1);
        self.status.consecutive_failures = self.status.consecutive_failures.saturating_add(1);
        self.status
            .set_condition("Analysis", false, "Failed", &message, self.now);
        self.event(EventKind::Warning, "FailedCheck", message.clone());
        let counted = match self.plan.analysis.counting {
            FailureCounting::Cumulative => self.status.failed_checks,
            FailureCounting::Consecutive => self.status.consecutive_failures,
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
            Some(PlanPause::Manual) => self.status.approved,
            Some(PlanPause::For(_)) => self.pause_ends_at().is_some_and(|end| end <= self.now),
        };
        let iterations_done =
            self.status.iterations >= step.iterations && self.status.route_verified;
        if self.status.user_paused {
            self.set_phase(Phase::Paused, "paused by a user; resume to continue");
        } else if pause_done && iterations_done {
            if let Some(kind) = self.confirmation_needed() {
                let revision = self.status.canary_revision.clone().unwrap_or_default();
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
        } else if step.pause == Some(PlanPause::Manual) && !self.status.approved {
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
        if self.status.hooks_confirmed {
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
