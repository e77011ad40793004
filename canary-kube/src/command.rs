//! User commands on a Rollout resource: the annotations `canary.rs/command` (`promote`,
//! `promote-full`, `abort`, `retry`, `pause`, `resume`, `skip`) and `canary.rs/command-id`, an
//! increasing number (the CLI uses the time in milliseconds). A command is applied once: the
//! status remembers the last id applied.

use canary_core::Command;

/// The annotation naming the command.
pub const COMMAND: &str = "canary.rs/command";
/// The annotation numbering it.
pub const COMMAND_ID: &str = "canary.rs/command-id";

/// A command by its name.
pub fn parse(name: &str) -> Option<Command> {
    [
        Command::Promote,
        Command::PromoteFull,
        Command::Abort,
        Command::Retry,
        Command::Pause,
        Command::Resume,
        Command::Skip,
    ]
    .into_iter()
    .find(|command| command.name() == name)
}

/// The command in `annotations`, if any: `Ok((id, command))`, or why it is unusable.
pub fn pending(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Option<Result<(u64, Command), String>> {
    let annotations = annotations?;
    let name = annotations.get(COMMAND)?;
    let id = annotations
        .get(COMMAND_ID)
        .and_then(|id| id.parse::<u64>().ok());
    Some(match (parse(name), id) {
        (Some(command), Some(id)) => Ok((id, command)),
        (None, _) => Err(format!(
            "`{name}` is not a command (promote, promote-full, abort, retry, pause, resume, skip)"
        )),
        (_, None) => Err(format!(
            "{COMMAND_ID} must be a number that increases with every command"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_need_a_known_name_and_a_numeric_id() {
        let annotations = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(pending(Some(&annotations(&[]))), None);
        assert_eq!(
            pending(Some(&annotations(&[
                (COMMAND, "promote-full"),
                (COMMAND_ID, "17")
            ]))),
            Some(Ok((17, Command::PromoteFull)))
        );
        assert!(
            pending(Some(&annotations(&[
                (COMMAND, "approve"),
                (COMMAND_ID, "1")
            ])))
            .is_some_and(|r| r.is_err())
        );
        assert!(pending(Some(&annotations(&[(COMMAND, "abort")]))).is_some_and(|r| r.is_err()));
    }
}
