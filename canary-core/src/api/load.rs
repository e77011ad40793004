//! Reading Rollout files and object files from YAML, with the line and column of anything that
//! does not fit.

use crate::api::plan::RolloutPlan;
use crate::api::spec::Rollout;
use crate::api::validate::validate_with;
use crate::error::{Error, Result};
use crate::k8s::objects::Objects;
use crate::traffic::Registry;

/// Reads the Rollout of a file. A file may hold further YAML documents after or before the
/// Rollout (the cluster objects it builds on, see [`rollout_file`]); the Rollout is the document
/// of `kind: Rollout`, or the first one. Syntax errors, wrong types and unknown fields are
/// reported with their line and column in the whole file; the rules of
/// [`crate::api::validate::validate`] are not checked here.
pub fn from_yaml(text: &str) -> Result<Rollout> {
    let documents = documents(text);
    let (_, offset, document) = the_rollout(&documents)?;
    parse_document::<Rollout>(document, offset)
}

/// Reads and validates a Rollout file into the plan the engine runs, with the built-in
/// traffic providers.
pub fn plan_from_yaml(text: &str) -> Result<RolloutPlan> {
    plan_from_yaml_with(text, &Registry::builtin())
}

/// Reads and validates a Rollout file into the plan the engine runs, its traffic provider
/// looked up in `registry` (see [`crate::api::validate::validate_with`]).
pub fn plan_from_yaml_with(text: &str, registry: &Registry) -> Result<RolloutPlan> {
    validate_with(&from_yaml(text)?, registry).map_err(Error::Invalid)
}

/// A Rollout file: the Rollout, and the other documents in it (the objects it builds on, such
/// as the stable Deployment and its Service), for [`Objects`].
#[derive(Debug, Clone)]
pub struct RolloutFile {
    /// The Rollout.
    pub rollout: Rollout,
    /// Every other document of the file.
    pub objects: Objects,
}

/// Reads a Rollout file with the objects it carries.
pub fn rollout_file(text: &str) -> Result<RolloutFile> {
    let documents = documents(text);
    let (index, offset, document) = the_rollout(&documents)?;
    let rollout = parse_document::<Rollout>(document, offset)?;
    let mut objects = Objects::default();
    for (at, (offset, document)) in documents.into_iter().enumerate() {
        if at != index {
            objects.extend(parse_objects(document, offset)?);
        }
    }
    Ok(RolloutFile { rollout, objects })
}

/// Reads every document of a file of Kubernetes objects (`kind: List` documents are opened).
pub fn objects_from_yaml(text: &str) -> Result<Objects> {
    let mut objects = Objects::default();
    for (offset, document) in documents(text) {
        objects.extend(parse_objects(document, offset)?);
    }
    Ok(objects)
}

/// The documents of a YAML stream, each with the number of lines before it. A line that starts
/// with `---` starts a document (YAML allows nothing else at column 0 to start with it).
fn documents(text: &str) -> Vec<(u64, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut start_line = 0;
    let mut position = 0;
    for (line_number, line) in (0u64..).zip(text.split_inclusive('\n')) {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        if marker {
            out.push((start_line, &text[start..position]));
            // The marker line may carry content (`--- {a: 1}`): the document starts after `---`.
            start = position + 3;
            start_line = line_number;
        }
        position += line.len();
    }
    out.push((start_line, &text[start..]));
    let nonempty: Vec<(u64, &str)> = out
        .iter()
        .copied()
        .filter(|(_, document)| !is_blank(document))
        .collect();
    if nonempty.is_empty() {
        // Nothing but blanks and comments: the parser says so, with its own words.
        vec![(0, text)]
    } else {
        nonempty
    }
}

/// True when a document holds only blank lines and comments.
fn is_blank(document: &str) -> bool {
    document
        .lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#'))
}

/// The Rollout's document (its index, the lines before it, its text): the one of `kind:
/// Rollout`, else the first. A file of two Rollouts is refused: reading only one would say
/// `valid` of a file whose other Rollout is broken.
fn the_rollout<'a>(documents: &[(u64, &'a str)]) -> Result<(usize, u64, &'a str)> {
    let rollouts: Vec<(usize, u64)> = documents
        .iter()
        .enumerate()
        .filter_map(|(at, (offset, document))| {
            rollout_line(document).map(|line| (at, offset + line))
        })
        .collect();
    if let [_, (_, second), ..] = rollouts.as_slice() {
        return Err(Error::Parse {
            message: format!(
                "a file holds one Rollout, this one has {}: another starts here",
                rollouts.len()
            ),
            line: Some(*second),
            column: Some(1),
        });
    }
    let index = rollouts.first().map_or(0, |(at, _)| *at);
    documents
        .get(index)
        .map(|(offset, document)| (index, *offset, *document))
        .ok_or_else(|| Error::Parse {
            message: "no document".to_owned(),
            line: None,
            column: None,
        })
}

/// The line (1-based, in the document) of a top-level `kind: Rollout`, if the document is a
/// Rollout. The Rollout is that document, else the first.
fn rollout_line(document: &str) -> Option<u64> {
    (1u64..).zip(document.lines()).find_map(|(number, line)| {
        line.strip_prefix("kind:")
            .is_some_and(|kind| kind.trim().trim_matches(['"', '\'']) == "Rollout")
            .then_some(number)
    })
}

/// The most alias uses (`*name`) one document may hold, and the most YAML events their
/// expansion may replay: Rollouts and Kubernetes objects need few if any, and an alias bomb
/// (each level naming the one before many times) is refused after this much work, at its line.
pub const MAX_ALIASES: usize = 1_000;

/// The most events alias expansion may replay in one document (see [`MAX_ALIASES`]).
pub const MAX_REPLAYED_EVENTS: usize = 50_000;

/// The deepest a document may nest mappings and lists (the parser's own default, kept here so
/// it is a limit of this crate's, documented and tested).
pub const MAX_DEPTH: usize = 64;

/// The reader's options: its default budget (nodes, scalar bytes, depth), with aliases bounded
/// by [`MAX_ALIASES`] and [`MAX_REPLAYED_EVENTS`].
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_aliases = MAX_ALIASES;
    budget.max_recorded_anchor_events = MAX_REPLAYED_EVENTS;
    budget.max_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options
}

/// One document as `T`, errors placed in the whole file (`offset` lines precede it).
fn parse_document<T: serde::de::DeserializeOwned>(document: &str, offset: u64) -> Result<T> {
    serde_saphyr::from_str_with_options::<T>(document, options()).map_err(|error| {
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
            line: location
                .as_ref()
                .map(|l| l.line())
                .filter(|line| *line > 0)
                .map(|line| line + offset),
            column: location
                .as_ref()
                .map(|l| l.column())
                .filter(|column| *column > 0),
        }
    })
}

/// The objects of one document: the document itself, or the items of a `List`.
fn parse_objects(document: &str, offset: u64) -> Result<Vec<serde_json::Value>> {
    let value = parse_document::<serde_json::Value>(document, offset)?;
    // An object-level problem is placed at the document's first line of content.
    let first = document
        .lines()
        .position(|line| !is_blank(line))
        .map_or(0, |at| at as u64);
    let place = |message: &str| Error::Parse {
        message: message.to_owned(),
        line: Some(offset + first + 1),
        column: None,
    };
    let objects = match value {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Object(ref object)
            if object.get("kind").and_then(|k| k.as_str()) == Some("List") =>
        {
            object
                .get("items")
                .and_then(|items| items.as_array())
                .cloned()
                .unwrap_or_default()
        }
        serde_json::Value::Object(_) => vec![value],
        _ => return Err(place("a Kubernetes object must be a mapping")),
    };
    for object in &objects {
        let kind = object.get("kind").and_then(|k| k.as_str());
        let name = object.pointer("/metadata/name").and_then(|n| n.as_str());
        if kind.is_none() || name.is_none() {
            return Err(place(
                "a Kubernetes object needs `kind` and `metadata.name`",
            ));
        }
        crate::k8s::objects::check_object(object).map_err(|message| place(&message))?;
    }
    Ok(objects)
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

    #[test]
    fn a_file_may_carry_objects_before_and_after_the_rollout() {
        let text = "# objects first\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\napiVersion: canary.rs/v1alpha1\nkind: Rollout\nmetadata: {name: web}\nspec:\n  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  service: {name: web, port: 80}\n  trafficRouting: {kuma: {}}\n  strategy: {blueGreen: {}}\n--- # and a list\nkind: List\nitems:\n- {kind: Service, metadata: {name: web}}\n";
        let file = rollout_file(text).unwrap();
        assert_eq!(file.rollout.metadata.name, "web");
        assert!(file.objects.get("Deployment", "x", "web").is_some());
        assert!(file.objects.get("Service", "x", "web").is_some());
        assert_eq!(from_yaml(text).unwrap().metadata.name, "web");
    }

    #[test]
    fn errors_in_a_later_document_carry_their_line_in_the_file() {
        let text = "kind: Service\nmetadata: {name: web}\n---\nkind: Rollout\nmetadata: {name: x}\nspec:\n  servise: {}\n";
        let Err(Error::Parse { message, line, .. }) = from_yaml(text) else {
            panic!("an unknown field was accepted");
        };
        assert!(message.contains("servise"), "{message}");
        assert_eq!(line, Some(7));
        let Err(Error::Parse { line, .. }) =
            objects_from_yaml("kind: A\nmetadata: {name: a}\n---\nkind: B\n")
        else {
            panic!("an object without a name was accepted");
        };
        assert_eq!(line, Some(4));
    }
}
