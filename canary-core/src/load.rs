//! Reading a Rollout from YAML, with the line and column of anything that does not fit.

use crate::error::{Error, Result};
use crate::plan::RolloutPlan;
use crate::spec::Rollout;
use crate::validate::validate;

/// Reads a Rollout document. Syntax errors, wrong types and unknown fields are reported with
/// their line and column; the rules of [`validate`] are not checked here.
pub fn from_yaml(text: &str) -> Result<Rollout> {
    serde_saphyr::from_str::<Rollout>(text).map_err(|error| {
        let location = error.location();
        let message = error.without_snippet().to_string();
        let first = message.lines().next().unwrap_or("unreadable YAML");
        // The location is reported on its own; drop the parser's " at line L, column C".
        let message = match first.rfind(" at line ") {
            Some(at) if location.is_some() => &first[..at],
            _ => first,
        };
        Error::Parse {
            message: message.to_owned(),
            line: location.as_ref().map(|l| l.line()).filter(|line| *line > 0),
            column: location
                .as_ref()
                .map(|l| l.column())
                .filter(|column| *column > 0),
        }
    })
}

/// Reads and validates a Rollout document into the plan the engine runs.
pub fn plan_from_yaml(text: &str) -> Result<RolloutPlan> {
    validate(&from_yaml(text)?).map_err(Error::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named_with_their_place() {
        let text = "apiVersion: canary.rs/v1alpha1\nkind: Rollout\nmetadata: {name: x}\nspec:\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: x}\n  servise: {name: x, port: 80}\n";
        let Err(Error::Parse { message, line, .. }) = from_yaml(text) else {
            panic!("an unknown field was accepted");
        };
        assert!(message.contains("servise"), "{message}");
        assert_eq!(line, Some(6));
    }

    #[test]
    fn broken_yaml_gives_line_and_column() {
        let Err(Error::Parse { line, column, .. }) =
            from_yaml("kind: Rollout\nmetadata: {name: [x\n")
        else {
            panic!("broken YAML was accepted");
        };
        assert!(line.is_some() && column.is_some());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "---",
            "[1, 2]",
            "\u{0}\u{1}",
            "a: b: c",
            "spec: 5",
            "!!binary x",
        ] {
            assert!(from_yaml(text).is_err(), "{text:?}");
        }
    }
}
