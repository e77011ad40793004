//! Custom resources against the structural schema of their CRD, as apiextensions-apiserver
//! treats them: unknown fields are pruned (`pkg/apiserver/schema/pruning/algorithm.go`:
//! everything a schema does not declare goes, except under
//! `x-kubernetes-preserve-unknown-fields` and inside `x-kubernetes-embedded-resource`'s
//! `apiVersion`/`kind`/`metadata`), defaults are applied (`pkg/apiserver/schema/defaulting`),
//! and values are checked (`pkg/apiserver/validation`, kube-openapi `pkg/validation/validate`):
//! type (with `nullable` and `x-kubernetes-int-or-string`), `enum`, `required`,
//! `minimum`/`maximum` (and exclusive forms), `minLength`/`maxLength`, `pattern`, `format: int32`,
//! `minItems`/`maxItems`, `allOf`/`anyOf`/`oneOf`/`not`. Not checked:
//! `x-kubernetes-validations` (CEL rules) and list-type uniqueness.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::ApiServer;
use super::resources::ResourceType;
use super::store::lock;
use super::validation::{FieldError, Path};

/// The `openAPIV3Schema` of one served version of a CRD, with a cache of compiled patterns.
#[derive(Debug)]
pub(crate) struct CrdSchema {
    root: Value,
    patterns: Mutex<HashMap<String, Option<jsonschema::Validator>>>,
}

/// The result of pruning and validating one object.
#[derive(Debug, Default)]
pub(crate) struct Checked {
    /// Paths of the unknown fields that were pruned, e.g. `spec.foo`.
    pub unknown: Vec<String>,
    /// Value errors.
    pub errors: Vec<FieldError>,
}

impl CrdSchema {
    /// Wraps an `openAPIV3Schema`.
    pub(crate) fn new(root: Value) -> Self {
        Self {
            root,
            patterns: Mutex::new(HashMap::new()),
        }
    }

    /// The `openAPIV3Schema` itself (for the merge structure of its fields).
    pub(crate) fn root(&self) -> &Value {
        &self.root
    }

    /// Prunes unknown fields from `object`, applies defaults, and validates what remains.
    /// Only `part` (`None`: everything but `metadata`; `Some("status")`: only `.status`) is
    /// checked.
    pub(crate) fn check(&self, object: &mut Value, only: Option<&str>) -> Checked {
        let mut checked = Checked::default();
        let Some(map) = object.as_object_mut() else {
            return checked;
        };
        let properties = &self.root["properties"];
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            if ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                continue;
            }
            if only.is_some_and(|o| o != key) {
                continue;
            }
            let schema = &properties[key.as_str()];
            let preserve = self.root["x-kubernetes-preserve-unknown-fields"] == json!(true);
            if schema.is_null() {
                if !preserve {
                    map.remove(&key);
                    checked.unknown.push(key);
                }
                continue;
            }
            if let Some(value) = map.get_mut(&key) {
                prune(value, schema, &key, &mut checked.unknown);
                default(value, schema);
                self.validate(value, schema, &Path::new(&key), &mut checked.errors);
            }
        }
        if only.is_none() {
            let required = self.root["required"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for key in required.iter().filter_map(Value::as_str) {
                if !["apiVersion", "kind", "metadata"].contains(&key) && !map.contains_key(key) {
                    checked
                        .errors
                        .push(FieldError::required(&Path::new(key), ""));
                }
            }
        }
        checked
    }

    fn pattern_matches(&self, pattern: &str, value: &str) -> bool {
        let mut cache = lock(&self.patterns);
        let validator = cache
            .entry(pattern.to_owned())
            .or_insert_with(|| jsonschema::validator_for(&json!({"pattern": pattern})).ok());
        validator
            .as_ref()
            .is_none_or(|v| v.is_valid(&Value::String(value.to_owned())))
    }

    /// Whether `value` satisfies `schema` (for `anyOf`/`oneOf`/`not` branches).
    fn satisfies(&self, value: &Value, schema: &Value, path: &Path) -> bool {
        let mut errs = Vec::new();
        self.validate(value, schema, path, &mut errs);
        errs.is_empty()
    }

    /// kube-openapi's schema validator over one value.
    fn validate(&self, value: &Value, schema: &Value, path: &Path, errs: &mut Vec<FieldError>) {
        let here = path.to_string();
        if value.is_null() {
            if schema["nullable"] != json!(true)
                && let Some(want) = schema["type"].as_str()
            {
                errs.push(type_error(path, &here, want, value));
            }
            return;
        }
        let int_or_string = schema["x-kubernetes-int-or-string"] == json!(true);
        if let Some(want) = schema["type"].as_str()
            && !int_or_string
            && !has_type(value, want)
        {
            errs.push(type_error(path, &here, want, value));
            return;
        }
        if int_or_string && !(value.is_string() || has_type(value, "integer")) {
            errs.push(FieldError::type_invalid(
                path,
                &json!(type_name(value)),
                format!(
                    "{here} in body must be of type integer,string: {:?}",
                    type_name(value)
                ),
            ));
            return;
        }
        if let Some(options) = schema["enum"].as_array()
            && !options.contains(value)
        {
            let shown: Vec<String> = options
                .iter()
                .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                .collect();
            let refs: Vec<&str> = shown.iter().map(String::as_str).collect();
            errs.push(FieldError::not_supported(path, value, &refs));
        }
        match value {
            Value::Number(_) => self.number(value, schema, path, &here, errs),
            Value::String(s) => self.string(s, schema, path, &here, errs),
            Value::Array(items) => {
                let min = schema["minItems"].as_u64();
                let max = schema["maxItems"].as_u64();
                let len = items.len() as u64;
                if min.is_some_and(|m| len < m) {
                    errs.push(FieldError::invalid(
                        path,
                        &json!(len),
                        format!(
                            "{here} in body should have at least {} items",
                            min.unwrap_or(0)
                        ),
                    ));
                }
                if let Some(m) = max.filter(|m| len > *m) {
                    errs.push(FieldError::too_many(path, items.len(), m as usize));
                }
                if schema["items"].is_object() {
                    for (i, item) in items.iter().enumerate() {
                        self.validate(item, &schema["items"], &path.index(i), errs);
                    }
                }
            }
            Value::Object(map) => {
                let required = schema["required"].as_array().cloned().unwrap_or_default();
                for key in required.iter().filter_map(Value::as_str) {
                    if !map.contains_key(key) {
                        errs.push(FieldError::required(&path.child(key), ""));
                    }
                }
                for (key, item) in map {
                    let declared = &schema["properties"][key.as_str()];
                    if declared.is_object() {
                        self.validate(item, declared, &path.child(key), errs);
                    } else if schema["additionalProperties"].is_object() {
                        self.validate(item, &schema["additionalProperties"], &path.key(key), errs);
                    }
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
        self.combinators(value, schema, path, errs);
    }

    fn number(
        &self,
        value: &Value,
        schema: &Value,
        path: &Path,
        here: &str,
        errs: &mut Vec<FieldError>,
    ) {
        let n = value.as_f64().unwrap_or(0.0);
        let exclusive = |k: &str| schema[k] == json!(true);
        if let Some(min) = schema["minimum"].as_f64() {
            let (bad, word) = if exclusive("exclusiveMinimum") {
                (n <= min, "greater than")
            } else {
                (n < min, "greater than or equal to")
            };
            if bad {
                errs.push(FieldError::invalid(
                    path,
                    value,
                    format!("{here} in body should be {word} {}", schema["minimum"]),
                ));
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            let (bad, word) = if exclusive("exclusiveMaximum") {
                (n >= max, "less than")
            } else {
                (n > max, "less than or equal to")
            };
            if bad {
                errs.push(FieldError::invalid(
                    path,
                    value,
                    format!("{here} in body should be {word} {}", schema["maximum"]),
                ));
            }
        }
        if schema["format"] == "int32" && value.as_i64().is_none_or(|v| i32::try_from(v).is_err()) {
            errs.push(FieldError::invalid(
                path,
                value,
                format!(
                    "{here} in body must be of type int32: {:?}",
                    value.to_string()
                ),
            ));
        }
    }

    fn string(&self, s: &str, schema: &Value, path: &Path, here: &str, errs: &mut Vec<FieldError>) {
        let chars = s.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64().filter(|m| chars < *m) {
            errs.push(FieldError::invalid(
                path,
                &json!(s),
                format!("{here} in body should be at least {min} chars long"),
            ));
        }
        if let Some(max) = schema["maxLength"].as_u64().filter(|m| chars > *m) {
            errs.push(FieldError::too_long(path, max as usize));
        }
        if let Some(pattern) = schema["pattern"].as_str()
            && !self.pattern_matches(pattern, s)
        {
            errs.push(FieldError::invalid(
                path,
                &json!(s),
                format!("{here} in body should match '{pattern}'"),
            ));
        }
    }

    fn combinators(&self, value: &Value, schema: &Value, path: &Path, errs: &mut Vec<FieldError>) {
        let shown = json!(type_name(value));
        if let Some(all) = schema["allOf"].as_array() {
            for branch in all {
                self.validate(value, branch, path, errs);
            }
        }
        if let Some(any) = schema["anyOf"].as_array()
            && !any.iter().any(|b| self.satisfies(value, b, path))
        {
            errs.push(FieldError::invalid(
                path,
                &shown,
                "must validate at least one schema (anyOf)",
            ));
        }
        if let Some(one) = schema["oneOf"].as_array()
            && one
                .iter()
                .filter(|b| self.satisfies(value, b, path))
                .count()
                != 1
        {
            errs.push(FieldError::invalid(
                path,
                &shown,
                "must validate one and only one schema (oneOf)",
            ));
        }
        if schema["not"].is_object() && self.satisfies(value, &schema["not"], path) {
            errs.push(FieldError::invalid(
                path,
                &shown,
                "must not validate the schema (not)",
            ));
        }
    }
}

/// The OpenAPI type name of a JSON value.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(value: &Value, want: &str) -> bool {
    match want {
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || value
                    .as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
        }
        "number" => value.is_number(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn type_error(path: &Path, here: &str, want: &str, value: &Value) -> FieldError {
    let got = type_name(value);
    FieldError::type_invalid(
        path,
        &json!(got),
        format!("{here} in body must be of type {want}: {got:?}"),
    )
}

/// Removes what `schema` does not declare from `value`, recording each pruned path.
fn prune(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == json!(true);
    let embedded = schema["x-kubernetes-embedded-resource"] == json!(true);
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child = format!("{path}.{key}");
                let declared = &schema["properties"][key.as_str()];
                let additional = &schema["additionalProperties"];
                if declared.is_object() {
                    if let Some(v) = map.get_mut(&key) {
                        prune(v, declared, &child, unknown);
                    }
                } else if additional.is_object() {
                    if let Some(v) = map.get_mut(&key) {
                        prune(v, additional, &child, unknown);
                    }
                } else if embedded && ["apiVersion", "kind", "metadata"].contains(&key.as_str()) {
                    continue;
                } else if !preserve && *additional != json!(true) {
                    map.remove(&key);
                    unknown.push(child);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                prune(item, &schema["items"], &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Fills in the `default` of every absent property (apiextensions' structural defaulting).
fn default(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, sub) in properties {
                    if !map.contains_key(key)
                        && let Some(d) = sub.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                }
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let sub = if schema["properties"][key.as_str()].is_object() {
                    &schema["properties"][key.as_str()]
                } else {
                    &schema["additionalProperties"]
                };
                if let Some(v) = map.get_mut(&key)
                    && sub.is_object()
                {
                    default(v, sub);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                default(item, &schema["items"]);
            }
        }
        _ => {}
    }
}

/// Every served version of a CRD: `(group, version, kind, plural, namespaced, has status
/// subresource, schema)`.
pub(crate) type CrdVersion = (String, String, String, String, bool, bool, Option<Value>);

/// Reads the served versions of a `CustomResourceDefinition` document.
pub(crate) fn crd_versions(crd: &Value) -> Result<Vec<CrdVersion>, String> {
    if crd["kind"] != "CustomResourceDefinition" {
        return Err("not a CustomResourceDefinition".to_owned());
    }
    let spec = &crd["spec"];
    let text = |v: &Value, what: &str| {
        v.as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("the CRD has no {what}"))
    };
    let group = text(&spec["group"], "spec.group")?;
    let kind = text(&spec["names"]["kind"], "spec.names.kind")?;
    let plural = text(&spec["names"]["plural"], "spec.names.plural")?;
    let namespaced = spec["scope"] != "Cluster";
    let versions = spec["versions"]
        .as_array()
        .ok_or_else(|| "the CRD has no spec.versions".to_owned())?;
    let mut out = Vec::new();
    for v in versions {
        if v["served"] == json!(false) {
            continue;
        }
        let name = text(&v["name"], "version name")?;
        let status = v["subresources"]["status"].is_object();
        let schema = v["schema"]["openAPIV3Schema"].clone();
        let schema = (!schema.is_null()).then_some(schema);
        out.push((
            group.clone(),
            name,
            kind.clone(),
            plural.clone(),
            namespaced,
            status,
            schema,
        ));
    }
    Ok(out)
}

impl ApiServer {
    /// Serves every served version of a `CustomResourceDefinition` (a parsed CRD document),
    /// validating its objects against the version's `openAPIV3Schema` (pruning, defaults and
    /// value checks as the API server applies them). Returns the registered types.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] when the document is not a CRD with a group, names and
    /// versions.
    pub fn register_crd(&self, crd: &Value) -> crate::Result<Vec<ResourceType>> {
        let versions = crd_versions(crd).map_err(crate::Error::Invalid)?;
        let mut registered = Vec::new();
        for (group, version, kind, plural, namespaced, status, schema) in versions {
            let rt = ResourceType::new(&group, &version, &kind, &plural, namespaced, status);
            self.register_with_schema(rt.clone(), schema);
            registered.push(rt);
        }
        Ok(registered)
    }

    /// Serves `resource`, validating its objects against `schema` (an `openAPIV3Schema`)
    /// when one is given. A schema attached earlier stays when `schema` is `None`, so a
    /// later [`ApiServer::register`] of the same type keeps it.
    pub fn register_with_schema(&self, resource: ResourceType, schema: Option<Value>) {
        if let Some(schema) = schema {
            self.state()
                .registry
                .set_schema(&resource, CrdSchema::new(schema));
        }
        self.register(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> CrdSchema {
        CrdSchema::new(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "weight": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "items": {"type": "array", "maxItems": 1, "items": {"type": "object", "properties": {"x": {"type": "string"}}}}
                    }
                }
            }
        }))
    }

    #[test]
    fn prunes_unknown_fields_and_defaults() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"name": "ab", "extra": 1, "free": {"any": 1}, "items": [{"x": "1", "y": 2}]}, "other": 1});
        let checked = schema().check(&mut obj, None);
        assert_eq!(
            checked.unknown,
            vec![
                "other".to_owned(),
                "spec.extra".to_owned(),
                "spec.items[0].y".to_owned()
            ]
        );
        assert!(checked.errors.is_empty(), "{:?}", checked.errors);
        assert_eq!(obj["spec"]["weight"], 1);
        assert_eq!(obj["spec"]["free"]["any"], 1);
        assert!(obj.get("other").is_none());
    }

    #[test]
    fn reports_value_errors() {
        let mut obj = json!({"spec": {"name": "ABCDEFG", "weight": 101, "mode": "c", "port": true,
            "items": [{}, {}]}});
        let errs: Vec<String> = schema()
            .check(&mut obj, None)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        let all = errs.join("\n");
        assert!(
            all.contains("spec.name: Too long: may not be more than 5 bytes"),
            "{all}"
        );
        assert!(
            all.contains(
                "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'"
            ),
            "{all}"
        );
        assert!(all.contains("spec.weight: Invalid value: 101: spec.weight in body should be less than or equal to 100"), "{all}");
        assert!(
            all.contains("spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\""),
            "{all}"
        );
        assert!(
            all.contains("spec.port: Invalid value: \"boolean\""),
            "{all}"
        );
        assert!(
            all.contains("spec.items: Too many: 2: must have at most 1 items"),
            "{all}"
        );
        let mut missing = json!({"spec": {}});
        let errs = schema().check(&mut missing, None).errors;
        assert_eq!(errs[0].to_string(), "spec.name: Required value");
    }
}
