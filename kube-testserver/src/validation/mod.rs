//! What the API server validates on a write of a built-in kind, and how it reports a refusal.
//!
//! Field errors follow apimachinery's `pkg/util/validation/field` (`Error`, `ErrorBody`):
//! `<field>: <Type string>[: <bad value>][: <detail>]`, with strings quoted, numbers and
//! booleans bare and anything else as JSON. A refusal is apimachinery's
//! `pkg/api/errors.NewInvalid`: HTTP 422, `reason: Invalid`,
//! `"<Kind>.<group> \"<name>\" is invalid: <errors>"` (several errors in `[a, b]`), and
//! `details.causes[]` holding each error's `reason`, `message` and `field`.

mod apps;
mod coordination;
mod core;
mod meta;
pub(crate) mod names;
mod networking;

use serde_json::{Value, json};

use super::errors::ApiError;
use super::resources::ResourceType;

/// apimachinery `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueNotSupported`.
    NotSupported,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueForbidden`.
    Forbidden,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTooMany`.
    TooMany,
    /// `FieldValueTypeInvalid`.
    TypeInvalid,
}

impl ErrorKind {
    /// The cause type (`details.causes[].reason`).
    fn cause(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::TooMany => "FieldValueTooMany",
            ErrorKind::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// apimachinery `ErrorType.String()`.
    fn label(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid | ErrorKind::TypeInvalid => "Invalid value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
        }
    }
}

/// One field error (apimachinery `field.Error`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// The field path, e.g. `spec.template.metadata.labels`.
    pub field: String,
    /// The offending value (not shown for Required, Forbidden and TooLong).
    pub value: Value,
    /// The explanation.
    pub detail: String,
}

impl FieldError {
    fn new(kind: ErrorKind, field: &Path, value: Value, detail: impl Into<String>) -> Self {
        Self {
            kind,
            field: field.to_string(),
            value,
            detail: detail.into(),
        }
    }

    /// `field.Required`.
    pub(crate) fn required(field: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Required, field, Value::Null, detail)
    }

    /// `field.Invalid`.
    pub(crate) fn invalid(field: &Path, value: &Value, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, field, value.clone(), detail)
    }

    /// `field.TypeInvalid`.
    pub(crate) fn type_invalid(field: &Path, value: &Value, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::TypeInvalid, field, value.clone(), detail)
    }

    /// `field.NotSupported` with the supported values listed.
    pub(crate) fn not_supported(field: &Path, value: &Value, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorKind::NotSupported, field, value.clone(), detail)
    }

    /// `field.Duplicate`.
    pub(crate) fn duplicate(field: &Path, value: &Value) -> Self {
        Self::new(ErrorKind::Duplicate, field, value.clone(), "")
    }

    /// `field.Forbidden`.
    pub(crate) fn forbidden(field: &Path, detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, field, Value::Null, detail)
    }

    /// `field.TooLong` (the value is never shown).
    pub(crate) fn too_long(field: &Path, max: usize) -> Self {
        Self::new(
            ErrorKind::TooLong,
            field,
            Value::Null,
            format!("may not be more than {max} bytes"),
        )
    }

    /// `field.TooMany`.
    pub(crate) fn too_many(field: &Path, actual: usize, max: usize) -> Self {
        Self::new(
            ErrorKind::TooMany,
            field,
            json!(actual),
            format!("must have at most {max} items"),
        )
    }

    /// apimachinery `Error.ErrorBody()`: the message without the field.
    pub(crate) fn body(&self) -> String {
        let mut s = self.kind.label().to_owned();
        if !matches!(
            self.kind,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        ) {
            s.push_str(": ");
            s.push_str(&render_value(&self.value));
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A bad value as apimachinery prints it: strings quoted (Go `%q`), numbers and booleans
/// bare, anything else as JSON.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => go_quote(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Go's `%q` for the common cases (ASCII printable, quotes and backslashes escaped).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A field path (apimachinery `field.Path`): `a.b[0][key]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    /// A path starting at `name`.
    pub(crate) fn new(name: &str) -> Self {
        Path(name.to_owned())
    }

    /// The path of a child field.
    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_owned())
        } else {
            Path(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element.
    pub(crate) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub(crate) fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// apimachinery `schema.GroupKind.String()`: `Kind.group`, or `Kind` for the core group.
pub(crate) fn qualified_kind(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.kind.clone()
    } else {
        format!("{}.{}", rt.kind, rt.group)
    }
}

/// The 422 Invalid refusal for `errors` (apimachinery `errors.NewInvalid`).
pub(crate) fn invalid_error(rt: &ResourceType, name: &str, errors: &[FieldError]) -> ApiError {
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.kind.cause(), "message": e.body(), "field": e.field}))
        .collect();
    let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
    // utilerrors.NewAggregate: one error alone, several as `[a, b]`.
    let aggregate = match rendered.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    ApiError::invalid(format!(
        "{} {} is invalid: {aggregate}",
        qualified_kind(rt),
        go_quote(name)
    ))
    .with_details(json!({
        "name": name,
        "group": rt.group,
        "kind": rt.kind,
        "causes": causes,
    }))
}

/// A decoding failure of a built-in kind (a value of the wrong JSON type, an integer out of
/// its Go type's range): HTTP 400 as apiserver's `transformDecodeError` reports it.
pub(crate) fn decode_error(rt: &ResourceType, detail: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: {detail}",
        kind = rt.kind,
        version = rt.version
    ))
}

/// The field errors of `object` (a candidate write of a built-in kind; `old` is the live
/// object on updates). Custom resources get only the metadata checks here.
pub(crate) fn validate(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = meta::validate_object_meta(rt, object);
    let kind = (rt.group.as_str(), rt.kind.as_str());
    errors.extend(match kind {
        ("apps", "Deployment") => apps::validate_deployment(object, old),
        ("apps", "ReplicaSet") => apps::validate_replica_set(object, old),
        ("apps", "DaemonSet") => apps::validate_daemon_set(object, old),
        ("", "Pod") => core::validate_pod(object),
        ("", "Service") => core::validate_service(object, old),
        ("", "ConfigMap") => core::validate_config_map(object),
        ("", "Secret") => core::validate_secret(object),
        ("networking.k8s.io", "Ingress") => networking::validate_ingress(object, old),
        ("coordination.k8s.io", "Lease") => coordination::validate_lease(object),
        _ => Vec::new(),
    });
    errors
}

/// Checks the JSON types of the built-in kinds' integer fields as the API server's decoder
/// does (Go `int32` fields refuse non-integers and values out of range); `Err` holds the
/// decoder's message.
pub(crate) fn decode_check(rt: &ResourceType, object: &Value) -> Result<(), String> {
    let kind = (rt.group.as_str(), rt.kind.as_str());
    let int32_fields: &[&[&str]] = match kind {
        ("apps", "Deployment") => &[
            &["spec", "replicas"],
            &["spec", "minReadySeconds"],
            &["spec", "revisionHistoryLimit"],
            &["spec", "progressDeadlineSeconds"],
        ],
        ("apps", "ReplicaSet") => &[&["spec", "replicas"], &["spec", "minReadySeconds"]],
        ("apps", "DaemonSet") => &[
            &["spec", "minReadySeconds"],
            &["spec", "revisionHistoryLimit"],
        ],
        ("coordination.k8s.io", "Lease") => &[
            &["spec", "leaseDurationSeconds"],
            &["spec", "leaseTransitions"],
        ],
        _ => &[],
    };
    let struct_name = |path: &[&str]| match (kind.1, path.first()) {
        (k, Some(&"spec")) => format!("{k}Spec"),
        (k, _) => k.to_owned(),
    };
    for path in int32_fields {
        let mut value = object;
        for key in *path {
            value = &value[*key];
        }
        if value.is_null() {
            continue;
        }
        let fits = value.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
        if !fits {
            let shown = match value {
                Value::Number(n) => format!("number {n}"),
                Value::String(_) => "string".to_owned(),
                Value::Bool(_) => "bool".to_owned(),
                Value::Array(_) => "array".to_owned(),
                _ => "object".to_owned(),
            };
            return Err(format!(
                "json: cannot unmarshal {shown} into Go struct field {}.{} of type int32",
                struct_name(path),
                path.join(".")
            ));
        }
    }
    Ok(())
}

/// The integer value of a JSON number field, when it is one.
pub(crate) fn int(value: &Value) -> Option<i64> {
    value.as_i64()
}

/// The string entries of a JSON object (non-string values skipped), in key order.
pub(crate) fn string_map(value: &Value) -> Vec<(&str, &str)> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default()
}
