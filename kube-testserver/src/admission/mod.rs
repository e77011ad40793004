//! Admission: hooks the test server calls on create, update, patch and apply, as the API
//! server calls webhooks. Validating hooks run after its own validation. A refusal is
//! reported as apiserver's `pkg/admission/plugin/webhook/errors.ToStatusErr` does:
//! `admission webhook "<name>" denied the request: <message>`, with the webhook's code
//! (at least 400), reason and details.
//!
//! Off by default; [`ApiServer::enable_istio_validation`], [`ApiServer::enable_nginx_admission`],
//! [`ApiServer::enable_kuma_validation`] (or all three with
//! [`ApiServer::admit_like_upstream`]) add the meshes' webhooks, and
//! [`ApiServer::add_admission_hook`] any other.

mod istio;
mod kuma;
mod nginx;

use std::fmt::Debug;
use std::sync::Arc;

use serde_json::{Value, json};

use super::ApiServer;
use super::errors::ApiError;

pub use istio::IstioValidation;
pub use kuma::KumaValidation;
pub use nginx::{NginxAdmission, ignored_canary_annotations as nginx_ignored_canary_annotations};

/// The operation under review (`AdmissionRequest.operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object (POST, or an apply that creates).
    Create,
    /// A change of an existing object (PUT, PATCH, apply).
    Update,
}

impl Operation {
    /// The operation of a write whose stored object is `old`.
    pub(crate) fn of(old: Option<&Value>) -> Self {
        if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        }
    }
}

/// What a hook reviews.
#[derive(Debug)]
pub struct AdmissionRequest<'a> {
    /// Create or update.
    pub operation: Operation,
    /// API group of the object (empty for core).
    pub group: &'a str,
    /// Kind of the object.
    pub kind: &'a str,
    /// The object as it would be stored.
    pub object: &'a Value,
    /// The stored object, on updates.
    pub old_object: Option<&'a Value>,
    /// The other stored objects of the same kind, in every namespace (the object under
    /// review excluded), for rules across objects; empty unless a hook of the write
    /// [reads them](AdmissionHook::reads_peers).
    pub peers: &'a [Arc<Value>],
}

impl AdmissionRequest<'_> {
    /// `metadata.namespace` of the object (empty if none).
    pub fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
    }

    /// `metadata.name` of the object (empty if none).
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
}

/// A webhook's refusal (`AdmissionResponse.result`).
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    /// HTTP code the webhook sets (raised to 400 when lower, as the API server does).
    pub code: u16,
    /// `Status.reason`, e.g. `BadRequest` or `Invalid`; empty when the webhook sets none.
    pub reason: String,
    /// The webhook's message.
    pub message: String,
    /// `Status.details`, when the webhook sends some.
    pub details: Option<Value>,
}

impl Denial {
    /// A refusal with a code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details: None,
        }
    }
}

/// A validating admission webhook.
pub trait AdmissionHook: Send + Sync + Debug {
    /// The webhook's name as its `ValidatingWebhookConfiguration` registers it.
    fn name(&self) -> &str;
    /// Whether the webhook reviews writes of this group and kind.
    fn handles(&self, group: &str, kind: &str) -> bool;
    /// Allows (`Ok`) or refuses the write.
    fn review(&self, request: &AdmissionRequest<'_>) -> Result<(), Denial>;
    /// Whether the webhook decides from the other objects of the kind too (as a real one
    /// would list them); only then are they gathered into [`AdmissionRequest::peers`] (with
    /// thousands of objects, gathering them for every write is not free).
    fn reads_peers(&self) -> bool;
}

/// A mutating admission webhook: its JSON Patch (RFC 6902, `patchType: JSONPatch`) is applied
/// to the object after the write's managed fields are recorded, so the fields it sets belong
/// to no manager (apiserver `endpoints/handlers/update.go` and `patch.go` update managed
/// fields before the admission chain runs; `create.go` likewise since kubernetes#87671). The
/// patched object is then validated, and reviewed by the validating hooks, as any other.
pub trait MutatingHook: Send + Sync + Debug {
    /// The webhook's name as its `MutatingWebhookConfiguration` registers it.
    fn name(&self) -> &str;
    /// Whether the webhook reviews writes of this group and kind.
    fn handles(&self, group: &str, kind: &str) -> bool;
    /// The `apiVersion` and kind of the objects the webhook reads to decide (a real webhook
    /// lists them from the API server): they are given to [`MutatingHook::mutate`], from the
    /// namespace of the object under review.
    fn reads(&self) -> Option<(&str, &str)>;
    /// The JSON Patch to apply, `None` to leave the object as it is, or a refusal.
    fn mutate(
        &self,
        request: &AdmissionRequest<'_>,
        read: &[Arc<Value>],
    ) -> Result<Option<Value>, Denial>;
}

/// The API server's error for a refusal (apiserver webhook `errors.ToStatusErr`).
pub(crate) fn denial_error(webhook: &str, denial: Denial) -> ApiError {
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = if denial.message.is_empty() {
        if denial.reason.is_empty() {
            format!("{denied_by} without explanation")
        } else {
            format!("{denied_by}: {}", denial.reason)
        }
    } else {
        format!("{denied_by}: {}", denial.message)
    };
    ApiError {
        code: denial.code.max(400),
        reason: match denial.reason.as_str() {
            "Invalid" => "Invalid",
            "BadRequest" => "BadRequest",
            "Forbidden" => "Forbidden",
            _ => "",
        },
        message,
        details: denial.details,
    }
}

/// Runs every hook for `request`; the first refusal wins.
pub(crate) fn admit(
    hooks: &[Arc<dyn AdmissionHook>],
    request: &AdmissionRequest<'_>,
) -> Result<(), ApiError> {
    for hook in hooks {
        hook.review(request)
            .map_err(|denial| denial_error(hook.name(), denial))?;
    }
    Ok(())
}

/// A `Status.details` with causes, as webhooks built on controller-runtime send them.
pub(crate) fn details(name: &str, kind: &str, causes: &[(String, String)]) -> Value {
    let causes: Vec<Value> = causes
        .iter()
        .map(|(field, message)| {
            json!({"reason": "FieldValueInvalid", "message": message, "field": field})
        })
        .collect();
    json!({"name": name, "kind": kind, "causes": causes})
}

impl ApiServer {
    /// Adds a validating admission hook, called (after the server's own validation) on
    /// every create, update, patch and apply of the kinds it handles.
    pub fn add_admission_hook(&self, hook: Arc<dyn AdmissionHook>) {
        self.state().registry.add_hook(hook);
    }

    /// Adds a mutating admission webhook (see [`MutatingHook`]); they run in the order added.
    pub fn add_mutating_hook(&self, hook: Arc<dyn MutatingHook>) {
        self.state().registry.add_mutator(hook);
    }

    /// Adds Istio's validating webhook (`validation.istio.io`) for VirtualServices and
    /// DestinationRules.
    pub fn enable_istio_validation(&self) {
        self.add_admission_hook(Arc::new(IstioValidation));
    }

    /// Adds ingress-nginx's admission webhook (`validate.nginx.ingress.kubernetes.io`) for
    /// Ingresses, refusing also the canary annotation values its parser would ignore (see
    /// [`NginxAdmission`]).
    pub fn enable_nginx_admission(&self) {
        self.add_admission_hook(Arc::new(NginxAdmission::strict()));
    }

    /// Adds Kuma's validating webhook (`validator.kuma-admission.kuma.io`) for
    /// MeshHTTPRoutes.
    pub fn enable_kuma_validation(&self) {
        self.add_admission_hook(Arc::new(KumaValidation));
    }

    /// Adds the Istio, ingress-nginx and Kuma webhooks.
    pub fn admit_like_upstream(&self) {
        self.enable_istio_validation();
        self.enable_nginx_admission();
        self.enable_kuma_validation();
    }
}
