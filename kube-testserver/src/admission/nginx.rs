//! ingress-nginx's admission webhook (`validate.nginx.ingress.kubernetes.io`) for Ingresses,
//! after ingress-nginx `internal/admission/controller/main.go` (`HandleAdmission`: 400
//! `BadRequest` with the checker's error) and `internal/ingress/controller/controller.go`
//! (`CheckIngress`, `checkOverlap`, `ingressForHostPath`, `getBackendServers`).
//!
//! Refused as upstream refuses it: an Ingress of the controller's class whose host and path
//! (host `_` and path `/` when empty) is already served by a location another Ingress
//! created (the earliest-created Ingress with that host, path and path type), when both are
//! canaries (`canary: "true"`) or neither carries a `canary` annotation at all:
//! `host "<host>" and path "<path>" is already defined in ingress <namespace>/<name>`.
//!
//! Optionally refused ([`NginxAdmission::strict`]), although ingress-nginx admits them: canary
//! annotation values its annotation parser rejects and then ignores (the canary parser
//! `internal/ingress/annotations/canary/main.go` logs a warning and falls back to its default,
//! so the route silently loses that rule). The validators are
//! `internal/ingress/annotations/parser/validators.go`'s: `canary` `ValidateBool`,
//! `canary-weight` and `canary-weight-total` `ValidateInt`, `canary-by-header`,
//! `canary-by-header-value` and `canary-by-cookie` `BasicCharsRegex` (spaces removed first:
//! `/`, `-`, `.`, `_`, `~`, `:` and ASCII letters and digits), `canary-by-header-pattern`
//! `IsValidRegex` (those characters and `^$[](){}*+?|&=\`). The message is the parser's
//! `annotation <name> contains invalid value`.

use serde_json::Value;

use super::{AdmissionHook, AdmissionRequest, Denial};

const PREFIX: &str = "nginx.ingress.kubernetes.io";
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The `validate.nginx.ingress.kubernetes.io` webhook.
#[derive(Debug, Clone)]
pub struct NginxAdmission {
    /// The controller's ingress class (`--ingress-class`, `nginx` by default).
    pub class: String,
    /// Whether Ingresses without a class are the controller's (`--watch-ingress-without-class`,
    /// off by default).
    pub watch_without_class: bool,
    /// Whether canary annotation values the parser would ignore are refused.
    pub refuse_ignored_annotations: bool,
}

impl Default for NginxAdmission {
    fn default() -> Self {
        Self {
            class: "nginx".to_owned(),
            watch_without_class: false,
            refuse_ignored_annotations: false,
        }
    }
}

impl NginxAdmission {
    /// The webhook as upstream runs it with default flags.
    pub fn upstream() -> Self {
        Self::default()
    }

    /// The webhook also refusing canary annotation values ingress-nginx would ignore.
    pub fn strict() -> Self {
        Self {
            refuse_ignored_annotations: true,
            ..Self::default()
        }
    }

    fn owns(&self, ingress: &Value) -> bool {
        let class = ingress["spec"]["ingressClassName"]
            .as_str()
            .or_else(|| ingress["metadata"]["annotations"][CLASS_ANNOTATION].as_str());
        match class {
            Some(c) => c == self.class,
            None => self.watch_without_class,
        }
    }
}

/// Whether Go's `strconv.ParseBool` accepts `s`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn basic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_' | '~' | ':')
}

fn regex_char(c: char) -> bool {
    basic_char(c) || "^$[](){}*+?|&=\\".contains(c)
}

/// The canary annotations whose values ingress-nginx's parser rejects (and ignores).
pub fn ignored_canary_annotations(ingress: &Value) -> Vec<String> {
    let annotations = &ingress["metadata"]["annotations"];
    let mut bad = Vec::new();
    let mut check = |name: &str, ok: &dyn Fn(&str) -> bool| {
        let key = format!("{PREFIX}/{name}");
        if let Some(v) = annotations[key.as_str()].as_str()
            && !v.is_empty()
            && !ok(v)
        {
            bad.push(key);
        }
    };
    check("canary", &|v| go_bool(v).is_some());
    check("canary-weight", &|v| v.parse::<i64>().is_ok());
    check("canary-weight-total", &|v| v.parse::<i64>().is_ok());
    for name in [
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-cookie",
    ] {
        check(name, &|v| v.chars().filter(|c| *c != ' ').all(basic_char));
    }
    check("canary-by-header-pattern", &|v| v.chars().all(regex_char));
    bad
}

/// `parser.GetBoolAnnotation("canary")`: `None` when the annotation is absent.
fn canary(ingress: &Value) -> Option<bool> {
    ingress["metadata"]["annotations"][format!("{PREFIX}/canary").as_str()]
        .as_str()
        .map(|v| go_bool(v).unwrap_or(false))
}

fn created(ingress: &Value) -> (&str, &str, &str) {
    let meta = &ingress["metadata"];
    (
        meta["creationTimestamp"].as_str().unwrap_or_default(),
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str().unwrap_or_default(),
    )
}

/// The (host, path, pathType) locations an Ingress defines with a service backend.
fn locations(ingress: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in ingress["spec"]["rules"].as_array().into_iter().flatten() {
        let host = rule["host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .unwrap_or("_");
        for path in rule["http"]["paths"].as_array().into_iter().flatten() {
            if path["backend"]["service"].is_null() {
                continue;
            }
            let p = path["path"]
                .as_str()
                .filter(|p| !p.is_empty())
                .unwrap_or("/");
            let kind = path["pathType"].as_str().unwrap_or("Prefix");
            out.push((host.to_owned(), p.to_owned(), kind.to_owned()));
        }
    }
    out
}

impl AdmissionHook for NginxAdmission {
    fn name(&self) -> &str {
        "validate.nginx.ingress.kubernetes.io"
    }

    fn reads_peers(&self) -> bool {
        true
    }

    fn handles(&self, group: &str, kind: &str) -> bool {
        group == "networking.k8s.io" && kind == "Ingress"
    }

    fn review(&self, request: &AdmissionRequest<'_>) -> Result<(), Denial> {
        let ing = request.object;
        if !self.owns(ing) || !ing["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
        if self.refuse_ignored_annotations
            && let Some(key) = ignored_canary_annotations(ing).into_iter().next()
        {
            return Err(Denial::new(
                400,
                "BadRequest",
                format!("annotation {key} contains invalid value"),
            ));
        }
        let mut others: Vec<&Value> = request
            .peers
            .iter()
            .map(|p| &**p)
            .filter(|p| self.owns(p) && p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        others.sort_by(|a, b| created(a).cmp(&created(b)));
        let mine = canary(ing);
        for (host, path, _) in locations(ing) {
            // The first Ingress defining each (host, path, pathType) owns that location.
            let mut owners: Vec<&Value> = Vec::new();
            let mut taken: Vec<String> = Vec::new();
            for other in &others {
                for (h, p, t) in locations(other) {
                    if h == host && p == path && !taken.contains(&t) {
                        taken.push(t);
                        owners.push(other);
                    }
                }
            }
            for owner in owners {
                let theirs = canary(owner);
                let both_canary = mine == Some(true) && theirs == Some(true);
                let neither_annotated = mine.is_none() && theirs.is_none();
                if both_canary || neither_annotated {
                    let (_, ns, name) = created(owner);
                    return Err(Denial::new(
                        400,
                        "BadRequest",
                        format!(
                            "host \"{host}\" and path \"{path}\" is already defined in ingress {ns}/{name}"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
