//! User commands: promote, promote-full, abort, retry, pause, resume, skip.

use super::{Command, Engine, EventKind};
use crate::engine::status::{Phase, StepStage};

impl Engine<'_> {
    pub(super) fn command(&mut self, command: Command) {
        let phase = self.status.phase;
        let stepping = matches!(phase, Phase::Progressing | Phase::Paused);
        let refused = match command {
            Command::Promote if stepping && self.status.stage == StepStage::Gating => {
                self.accepted(command);
                self.status.gate.approved = true;
                self.advance();
                None
            }
            Command::Promote if stepping => Some(
                "the current step has not reached its gate yet (the canary is scaling or the route is being applied)",
            ),
            Command::PromoteFull if stepping => {
                self.accepted(command);
                self.begin_promotion();
                None
            }
            Command::Skip if stepping => {
                self.accepted(command);
                self.advance();
                None
            }
            Command::Abort if stepping => {
                self.accepted(command);
                self.rollback("Aborted", "aborted by a user; rolled back".to_owned());
                None
            }
            Command::Abort if matches!(phase, Phase::Promoting | Phase::Finalising) => {
                Some("the stable workload is already taking the new version")
            }
            Command::Pause if stepping => {
                self.accepted(command);
                self.status.commands.user_paused = true;
                self.set_phase(Phase::Paused, "paused by a user; resume to continue");
                None
            }
            // Only a release under way is resumed: a pause left in a release that ended (aborted,
            // promoted) holds nothing, and resuming it would set a finished release going again.
            Command::Resume if stepping && self.status.commands.user_paused => {
                self.accepted(command);
                self.status.commands.user_paused = false;
                if self.status.stage == StepStage::Gating {
                    self.try_pass_gate();
                } else {
                    self.set_phase(Phase::Progressing, "resumed by a user");
                }
                None
            }
            Command::Retry
                if phase == Phase::Failed && self.status.release.canary_revision.is_some() =>
            {
                self.accepted(command);
                self.retry();
                None
            }
            Command::Retry => Some("only a failed release can be retried"),
            Command::Resume if self.status.commands.user_paused => {
                Some("the pause was left by a release that is no longer working through its steps")
            }
            Command::Resume => Some("the rollout is not paused by a user"),
            _ => Some("no release is under way"),
        };
        if let Some(reason) = refused {
            self.event(
                EventKind::Warning,
                "CommandRefused",
                format!("{} refused in phase {phase}: {reason}", command.name()),
            );
        }
    }

    fn accepted(&mut self, command: Command) {
        self.event(
            EventKind::Normal,
            "Command",
            format!("{} by a user", command.name()),
        );
    }

    /// Starts a failed release again from its first step, as a new attempt.
    ///
    /// A retry keeps what belongs to the release: its revision, and whether its `pre-rollout`
    /// webhooks passed (they vouched for this revision already; a release that failed on them
    /// never recorded a pass, so they are asked again). It starts afresh what belongs to an
    /// attempt (see [`Engine::begin_attempt`]): the failed checks, the measurements, the
    /// sequential judges (whose evidence would otherwise span the time the canary was gone,
    /// and whose `fail` verdict would stop them measuring the new attempt at all), and a user
    /// pause left from the failed attempt, which would otherwise hold the new attempt at its
    /// first gate unannounced.
    fn retry(&mut self) {
        self.begin_attempt("the failed release is being retried");
        self.set_phase(
            Phase::Progressing,
            "retried by a user; starting again from the first step",
        );
    }
}
