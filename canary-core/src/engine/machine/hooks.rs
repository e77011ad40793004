//! Webhooks at the points of a release, with Flagger's meanings: `confirm-*` hold the rollout
//! until they pass, a failed `pre-rollout` is a failed check, `post-rollout` and `event` only
//! inform. (`rollout` and `rollback` are called with each analysis run; see the gate.)

use jiff::Timestamp;

use super::{Action, Engine, HookResult};
use crate::api::spec::HookType;
use crate::engine::providers::HookOutcome;
use crate::engine::status::{Phase, StepStage};

impl Engine<'_> {
    /// Whether the plan has webhooks of `kind`.
    pub(super) fn has_hooks(&self, kind: HookType) -> bool {
        self.plan
            .analysis
            .webhooks
            .iter()
            .any(|hook| hook.hook_type == kind)
    }

    /// Calls the gate webhooks of `kind` for `revision`, unless they said no less than an
    /// analysis interval ago (they are asked again at that pace while they say no). The time is
    /// recorded when the answers arrive, so a call lost in a crash is made again at once.
    pub(super) fn call_gate_hooks(&mut self, kind: HookType, revision: &str) {
        let due = self.hooks_wakeup().is_none_or(|at| at <= self.now);
        if due {
            self.emit(Action::CallHooks {
                hook_type: kind,
                revision: revision.to_owned(),
            });
        }
    }

    /// When the gate webhooks are asked again, while the rollout waits on them.
    pub(super) fn hooks_wakeup(&self) -> Option<Timestamp> {
        let called = self.status.gate.hooks_called_at?;
        called.checked_add(self.plan.analysis.interval).ok()
    }

    /// Informational webhooks about `revision`: called once, answers ignored.
    pub(super) fn inform_hooks(&mut self, kind: HookType, revision: &str) {
        if self.has_hooks(kind) {
            self.actions.push(Action::CallHooks {
                hook_type: kind,
                revision: revision.to_owned(),
            });
        }
    }

    /// The answers of gate webhooks. Answers for the point the rollout waits at are recorded
    /// with their time (the webhooks are asked again one analysis interval later while they say
    /// no); answers that arrive after the rollout moved on are ignored.
    pub(super) fn hooked(&mut self, kind: HookType, revision: &str, results: &[HookResult]) {
        let refusals: Vec<String> = results
            .iter()
            .filter_map(|result| match &result.outcome {
                HookOutcome::Pass => None,
                HookOutcome::Fail(why) | HookOutcome::Error(why) => {
                    Some(format!("webhook {}: {why}", result.name))
                }
            })
            .collect();
        let passed = refusals.is_empty();
        let current = self.status.release.canary_revision.as_deref() == Some(revision);
        let stepping = matches!(self.status.phase, Phase::Progressing | Phase::Paused);
        match kind {
            HookType::ConfirmRollout => {
                let idle = matches!(
                    self.status.phase,
                    Phase::Initialized | Phase::Succeeded | Phase::Failed
                );
                if !idle || self.status.stable_revision.as_deref() == Some(revision) {
                    return;
                }
                self.status.gate.hooks_called_at = Some(self.now);
                if passed {
                    self.start(revision.to_owned());
                } else {
                    self.status.message =
                        format!("waiting for confirm-rollout: {}", refusals.join("; "));
                }
            }
            HookType::PreRollout
                if current && stepping && self.status.stage == StepStage::Scaling =>
            {
                if passed {
                    self.status.release.pre_rollout_passed = true;
                    self.status.gate.hooks_called_at = None;
                    self.again = true;
                } else {
                    self.status.gate.hooks_called_at = Some(self.now);
                    self.fail_check(format!("pre-rollout {}", refusals.join("; ")));
                }
            }
            HookType::ConfirmTrafficIncrease | HookType::ConfirmPromotion
                if current && stepping && self.status.stage == StepStage::Gating =>
            {
                self.status.gate.hooks_called_at = Some(self.now);
                if passed {
                    self.status.gate.hooks_confirmed = true;
                    self.try_pass_gate();
                } else {
                    self.status.message =
                        format!("waiting for {}: {}", kind.name(), refusals.join("; "));
                }
            }
            _ => {}
        }
    }
}
