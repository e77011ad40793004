//! The mutating admission webhook that holds a stable Deployment or DaemonSet in the very
//! request that changes its pod template (see [`crate::hold`] for what holding means and why).
//!
//! The API server sends an `AdmissionReview` (`admission.k8s.io/v1`) for every Deployment and
//! DaemonSet UPDATE the `MutatingWebhookConfiguration` in `deploy/webhook.yaml` selects;
//! [`review`] answers it: always allowed, with the JSON Patch of [`hold_patch`] when the
//! workload must be held. Everything else (other kinds, other operations, subresources) is allowed
//! unchanged. When the Rollouts cannot be listed the request is allowed unchanged too: the
//! controller still holds on sight, and the configuration's `failurePolicy: Ignore` lets
//! writes through when the webhook cannot be reached at all, so the webhook never stands
//! between a user and their workload.
//!
//! The HTTPS server around it is `WebhookServer` (feature `webhook`).

use async_trait::async_trait;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::crd::Rollout;
use crate::error::{Error, Result};
use crate::hold::hold_patch;
use canary_core::workload::WorkloadKind;

#[cfg(feature = "webhook")]
mod certificates;
#[cfg(feature = "webhook")]
mod server;

#[cfg(feature = "webhook")]
pub use server::{BODY_LIMIT, HOLD_PATH, Timeouts, WebhookServer, serve};

/// Where the webhook finds the Rollouts of a namespace.
#[async_trait]
pub trait RolloutSource: Send + Sync {
    /// The Rollouts of `namespace` as stored, with their status, as JSON objects.
    async fn rollouts(&self, namespace: &str) -> Result<Vec<Value>>;
}

/// Lists the Rollouts from the API server. They are read as plain objects, not as
/// [`Rollout`]s: a Rollout this version cannot parse does not keep the others from holding
/// their Deployments.
#[async_trait]
impl RolloutSource for Client {
    async fn rollouts(&self, namespace: &str) -> Result<Vec<Value>> {
        let resource = ApiResource::erase::<Rollout>(&());
        let api: Api<DynamicObject> = Api::namespaced_with(self.clone(), namespace, &resource);
        let list = api.list(&ListParams::default()).await?;
        list.items
            .iter()
            .map(|rollout| {
                serde_json::to_value(rollout)
                    .map_err(|e| Error::webhook("cannot encode a listed Rollout", e))
            })
            .collect()
    }
}

/// Answers one `AdmissionReview` request body with the `AdmissionReview` to send back (same
/// `apiVersion` and `kind`, the request's `uid`, always `allowed`, with a JSON Patch when the
/// Deployment is to be held).
///
/// Only an UPDATE of a workload of a kind canary releases (an `apps` Deployment or DaemonSet,
/// not a subresource) is considered; the Rollouts
/// of its namespace are listed only when some Rollout could make [`hold_patch`] hold it.
/// A failure to list them is logged and the request allowed unchanged.
///
/// # Errors
///
/// [`Error::Webhook`] when `body` is not an `AdmissionReview` with a request; its message
/// never quotes the body.
pub async fn review<S: RolloutSource + ?Sized>(rollouts: &S, body: &[u8]) -> Result<Vec<u8>> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|e| {
        // serde's message may quote the input: keep only where and what kind of error.
        let (line, column, kind) = (e.line(), e.column(), e.classify());
        Error::webhook(
            "the body is not an AdmissionReview",
            format!("{kind:?} error at line {line} column {column}"),
        )
    })?;
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|e| Error::webhook("the AdmissionReview has no request", e))?;
    let response = match held_in(&request) {
        Some(candidate) => {
            let listed = rollouts.rollouts(candidate.namespace).await;
            match listed {
                Ok(listed) => respond(&request, &candidate, &listed),
                Err(error) => {
                    tracing::warn!(
                        namespace = candidate.namespace,
                        workload = candidate.name,
                        %error,
                        "cannot list the Rollouts; the workload is admitted without a hold"
                    );
                    AdmissionResponse::from(&request)
                }
            }
        }
        None => AdmissionResponse::from(&request),
    };
    encode(response)
}

/// The `AdmissionReview` carrying `response`, as JSON.
///
/// `response.patch` is a byte string in the API (k8s.io/api `admission/v1/types.go`,
/// `AdmissionResponse.Patch []byte`), which JSON carries in standard base64 as Go's
/// `encoding/json` writes every `[]byte`; kube's type would write an array of numbers
/// (kube-rs/kube issue 1781), so the patch is written as the API documents it.
fn encode(response: AdmissionResponse) -> Result<Vec<u8>> {
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review())
        .map_err(|e| Error::webhook("cannot encode the AdmissionReview", e))?;
    if let (Some(patch), Some(encoded)) = (
        patch,
        review.get_mut("response").and_then(Value::as_object_mut),
    ) {
        encoded.insert("patch".to_owned(), Value::String(base64(&patch)));
    }
    serde_json::to_vec(&review).map_err(|e| Error::webhook("cannot encode the AdmissionReview", e))
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for sextet in 0..4 {
            if sextet <= chunk.len() {
                let index = (group >> (18 - 6 * sextet)) & 63;
                let symbol = usize::try_from(index).ok().and_then(|i| ALPHABET.get(i));
                encoded.extend(symbol.map(|&s| char::from(s)));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// A workload UPDATE that a Rollout of its namespace could hold.
#[derive(Debug)]
struct Candidate<'a> {
    kind: WorkloadKind,
    namespace: &'a str,
    name: &'a str,
    old: Value,
    new: Value,
}

/// The request as a [`Candidate`], or `None` when no Rollout could make it held: not an
/// UPDATE of an `apps` Deployment itself, or an update [`hold_patch`] would not hold even if
/// a Rollout targeted the Deployment with a stable revision recorded.
fn held_in(request: &AdmissionRequest<DynamicObject>) -> Option<Candidate<'_>> {
    let api_version = format!("{}/{}", request.kind.group, request.kind.version);
    let kind = WorkloadKind::named(&api_version, &request.kind.kind)?;
    if request.operation != Operation::Update || request.sub_resource.is_some() {
        return None;
    }
    let namespace = request.namespace.as_deref()?;
    let name = request.object.as_ref()?.metadata.name.as_deref()?;
    let old = serde_json::to_value(request.old_object.as_ref()?).ok()?;
    let new = serde_json::to_value(request.object.as_ref()?).ok()?;
    // A Rollout that would hold any change of this Deployment's template: if even it holds
    // nothing, listing the namespace's Rollouts cannot change the answer.
    let probe = json!({
        "metadata": {"name": "", "namespace": namespace},
        "spec": {"workloadRef": {"apiVersion": api_version, "kind": request.kind.kind, "name": name}},
        "status": {"stableRevision": "probe"},
    });
    hold_patch(kind, &old, &new, &[probe])?;
    Some(Candidate {
        kind,
        namespace,
        name,
        old,
        new,
    })
}

/// The response to `request` (whose Deployment is `candidate`) given the Rollouts of its
/// namespace.
fn respond(
    request: &AdmissionRequest<DynamicObject>,
    candidate: &Candidate<'_>,
    rollouts: &[Value],
) -> AdmissionResponse {
    let allowed = AdmissionResponse::from(request);
    let Some(patch) = hold_patch(candidate.kind, &candidate.old, &candidate.new, rollouts) else {
        return allowed;
    };
    let held = serde_json::from_value::<json_patch::Patch>(patch)
        .map_err(|e| e.to_string())
        .and_then(|patch| {
            AdmissionResponse::from(request)
                .with_patch(patch)
                .map_err(|e| e.to_string())
        });
    match held {
        Ok(held) => {
            tracing::info!(
                namespace = candidate.namespace,
                workload = candidate.name,
                kind = candidate.kind.descriptor().kind,
                "holding the stable workload: its new template waits for the release"
            );
            held
        }
        Err(error) => {
            tracing::error!(%error, "cannot encode the hold; the Deployment is admitted unchanged");
            allowed
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::workload::STABLE_REVISION;

    /// Rollouts held in memory, with the namespaces asked for.
    struct Listed {
        rollouts: Result<Vec<Value>, String>,
        asked: Mutex<Vec<String>>,
    }

    impl Listed {
        fn new(rollouts: Vec<Value>) -> Self {
            Listed {
                rollouts: Ok(rollouts),
                asked: Mutex::new(Vec::new()),
            }
        }

        fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl RolloutSource for Listed {
        async fn rollouts(&self, namespace: &str) -> Result<Vec<Value>> {
            self.asked.lock().unwrap().push(namespace.to_owned());
            match &self.rollouts {
                Ok(all) => Ok(all
                    .iter()
                    .filter(|r| r["metadata"]["namespace"] == namespace)
                    .cloned()
                    .collect()),
                Err(message) => Err(Error::Invalid(message.clone())),
            }
        }
    }

    fn deployment(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": image}]}}
            }
        })
    }

    fn rollout(namespace: &str, target: &str) -> Value {
        json!({
            "apiVersion": "canary.rs/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
            "status": {"stableRevision": "5d8f7c"},
        })
    }

    fn body(operation: &str, kind: (&str, &str), old: &Value, new: &Value) -> Vec<u8> {
        let (group, kind) = kind;
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": group, "version": "v1", "kind": kind},
                "resource": {"group": group, "version": "v1", "resource": "deployments"},
                "name": "web", "namespace": "shop", "operation": operation,
                "userInfo": {"username": "system:serviceaccount:flux-system:kustomize-controller"},
                "object": new, "oldObject": old, "dryRun": false,
            }
        })
        .to_string()
        .into_bytes()
    }

    async fn answer(source: &Listed, body: &[u8]) -> Value {
        serde_json::from_slice(&review(source, body).await.unwrap()).unwrap()
    }

    /// Decodes standard base64 (the test's own decoder, not the module's encoder).
    fn unbase64(text: &str) -> Vec<u8> {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bits: String = text
            .trim_end_matches('=')
            .chars()
            .map(|c| format!("{:06b}", alphabet.find(c).unwrap()))
            .collect();
        bits.as_bytes()
            .chunks_exact(8)
            .map(|byte| u8::from_str_radix(std::str::from_utf8(byte).unwrap(), 2).unwrap())
            .collect()
    }

    #[test]
    fn base64_is_the_standard_padded_alphabet() {
        // RFC 4648 section 10 test vectors.
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(unbase64(encoded), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unbase64(&base64(&all)), all);
    }

    fn patched(object: &Value, response: &Value) -> Value {
        let bytes = unbase64(response["patch"].as_str().unwrap());
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        let mut object = object.clone();
        json_patch::patch(&mut object, &patch).unwrap();
        object
    }

    #[tokio::test]
    async fn a_new_template_is_held_in_the_same_request() {
        let source = Listed::new(vec![rollout("shop", "web"), rollout("other", "api")]);
        let (old, new) = (deployment("web:1"), deployment("web:2"));
        let review = answer(&source, &body("UPDATE", ("apps", "Deployment"), &old, &new)).await;
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        let response = &review["response"];
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let held = patched(&new, response);
        assert_eq!(held["spec"]["paused"], true);
        assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "5d8f7c");
        assert_eq!(held["spec"]["template"], new["spec"]["template"]);
        assert_eq!(source.asked(), ["shop"]);
    }

    /// A DaemonSet has no `paused`: held `OnDelete`, its owner's strategy kept, by the
    /// Rollout that targets it as a DaemonSet (not by one targeting a Deployment of its name).
    #[tokio::test]
    async fn a_new_daemonset_template_is_held_on_delete_in_the_same_request() {
        let daemonset = |image: &str| {
            let mut object = deployment(image);
            object["kind"] = json!("DaemonSet");
            object["spec"]["updateStrategy"] =
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}});
            object
        };
        let mut targeting = rollout("shop", "web");
        targeting["spec"]["workloadRef"]["kind"] = json!("DaemonSet");
        let (old, new) = (daemonset("web:1"), daemonset("web:2"));
        let request = body("UPDATE", ("apps", "DaemonSet"), &old, &new);
        let source = Listed::new(vec![rollout("shop", "web"), targeting]);
        let review = answer(&source, &request).await;
        let held = patched(&new, &review["response"]);
        assert_eq!(held["spec"]["updateStrategy"]["type"], "OnDelete");
        assert_eq!(
            held["spec"]["updateStrategy"]["rollingUpdate"],
            new["spec"]["updateStrategy"]["rollingUpdate"]
        );
        assert_eq!(held["metadata"]["annotations"][STABLE_REVISION], "5d8f7c");
        let kept: Value = serde_json::from_str(
            held["metadata"]["annotations"][crate::workload::UPDATE_STRATEGY]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(kept, new["spec"]["updateStrategy"]);
        // Only a Rollout of a Deployment named so: nothing to hold.
        let source = Listed::new(vec![rollout("shop", "web")]);
        let review = answer(&source, &request).await;
        assert!(review["response"].get("patch").is_none(), "{review}");
    }

    #[tokio::test]
    async fn other_writes_are_allowed_unchanged_and_most_list_nothing() {
        let source = Listed::new(vec![rollout("shop", "web")]);
        let (old, new) = (deployment("web:1"), deployment("web:2"));
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"]["team"] = json!("a");
        let unchanged = [
            body("UPDATE", ("apps", "Deployment"), &old, &relabelled),
            body("CREATE", ("apps", "Deployment"), &Value::Null, &new),
            body("DELETE", ("apps", "Deployment"), &old, &Value::Null),
            body("UPDATE", ("apps", "StatefulSet"), &old, &new),
            body("UPDATE", ("extensions", "Deployment"), &old, &new),
        ];
        for request in &unchanged {
            let review = answer(&source, request).await;
            let response = &review["response"];
            assert_eq!(response["allowed"], true, "{response}");
            assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
            assert!(response.get("patch").is_none(), "{response}");
            assert!(response.get("patchType").is_none(), "{response}");
        }
        assert!(source.asked().is_empty(), "{:?}", source.asked());
        // A subresource write is not the Deployment's own.
        let mut scale: Value =
            serde_json::from_slice(&body("UPDATE", ("apps", "Deployment"), &old, &new)).unwrap();
        scale["request"]["subResource"] = json!("scale");
        let review = answer(&source, scale.to_string().as_bytes()).await;
        assert!(review["response"].get("patch").is_none());
        // A Deployment no Rollout targets is listed for, and left alone.
        let lonely = Listed::new(vec![rollout("shop", "api")]);
        let review = answer(&lonely, &body("UPDATE", ("apps", "Deployment"), &old, &new)).await;
        assert_eq!(review["response"]["allowed"], true);
        assert!(review["response"].get("patch").is_none());
        assert_eq!(lonely.asked(), ["shop"]);
    }

    #[tokio::test]
    async fn rollouts_that_cannot_be_listed_leave_the_deployment_to_the_controller() {
        let source = Listed {
            rollouts: Err("forbidden".to_owned()),
            asked: Mutex::new(Vec::new()),
        };
        let (old, new) = (deployment("web:1"), deployment("web:2"));
        let review = answer(&source, &body("UPDATE", ("apps", "Deployment"), &old, &new)).await;
        assert_eq!(review["response"]["allowed"], true);
        assert!(review["response"].get("patch").is_none());
        assert_eq!(source.asked(), ["shop"]);
    }

    #[tokio::test]
    async fn an_unreadable_review_is_an_error_that_does_not_quote_it() {
        let source = Listed::new(Vec::new());
        for garbage in [
            &b"{\"secret-token\": "[..],
            b"\"secret-token\"",
            b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\"}",
            b"{\"request\": {\"uid\": \"secret-token\"}}",
        ] {
            let error = review(&source, garbage).await.unwrap_err();
            assert!(matches!(error, crate::Error::Webhook { .. }), "{error}");
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            assert!(!message.contains("secret-token"), "{message}");
        }
        assert!(source.asked().is_empty());
    }
}
