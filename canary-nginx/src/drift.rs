//! Fields someone else added to the canary Ingress that change how ingress-nginx routes.
//!
//! The canary Ingress is compared with what canary renders field by field, so a value that
//! differs is seen and rewritten; a field canary never writes is not, and server-side apply
//! leaves fields of other managers alone. These are the ones that matter: a canary annotation
//! canary did not ask for (a stray `canary-by-header` adds a match ingress-nginx tries before
//! the weight, rootfs/etc/nginx/lua/balancer.lua: `route_to_alternative_balancer`), the
//! `kubernetes.io/ingress.class` annotation, and `spec.defaultBackend` /
//! `spec.ingressClassName` when canary writes none.

use serde_json::{Map, Value, json};

use crate::annotations::Canary;

/// The legacy annotation that picks the ingress controller of an Ingress.
const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The spec fields that change routing, for which canary may write nothing.
const SPEC_FIELDS: [&str; 2] = ["defaultBackend", "ingressClassName"];

/// A JSON merge patch removing from `live` the routing fields that `desired` does not have;
/// `None` when there are none.
pub fn foreign_fields(live: &Value, desired: &Value, canary: &Canary) -> Option<Value> {
    let wanted = desired["metadata"]["annotations"].as_object();
    let annotations: Map<String, Value> = live["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, _)| canary.is_canary_key(key) || key.as_str() == CLASS_ANNOTATION)
        .filter(|(key, _)| !wanted.is_some_and(|wanted| wanted.contains_key(key.as_str())))
        .map(|(key, _)| (key.clone(), Value::Null))
        .collect();
    let spec: Map<String, Value> = SPEC_FIELDS
        .iter()
        .filter(|field| {
            live["spec"].get(**field).is_some() && desired["spec"].get(**field).is_none()
        })
        .map(|field| ((*field).to_owned(), Value::Null))
        .collect();
    if annotations.is_empty() && spec.is_empty() {
        return None;
    }
    let mut patch = json!({});
    if !annotations.is_empty() {
        patch["metadata"] = json!({"annotations": annotations});
    }
    if !spec.is_empty() {
        patch["spec"] = Value::Object(spec);
    }
    Some(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_routing_fields_canary_does_not_write_are_foreign() {
        let canary = Canary::new("nginx.ingress.kubernetes.io");
        let desired = json!({"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "20"}},
                             "spec": {"rules": []}});
        let mut live = desired.clone();
        live["metadata"]["annotations"]["team"] = json!("web");
        live["spec"]["tls"] = json!([]);
        assert_eq!(foreign_fields(&live, &desired, &canary), None);
        live["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-by-header"] =
            json!("x-debug");
        live["spec"]["defaultBackend"] = json!({"service": {"name": "other"}});
        assert_eq!(
            foreign_fields(&live, &desired, &canary),
            Some(
                json!({"metadata": {"annotations": {"nginx.ingress.kubernetes.io/canary-by-header": null}},
                        "spec": {"defaultBackend": null}})
            )
        );
    }
}
