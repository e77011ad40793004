//! Pod templates as JSON: the new version's overrides, and the ConfigMaps and Secrets a
//! template uses.

use std::collections::BTreeSet;

use canary_core::api::spec::{ContainerOverride, NewVersion};
use serde_json::{Map, Value, json};

/// Applies `newVersion` to a pod template: container overrides by name (an image alone keeps
/// the rest; an unknown name adds a container), the `version` label and pod metadata.
pub fn apply_new_version(template: &mut Value, new_version: &NewVersion) {
    for container in &new_version.containers {
        let list = if container.init {
            "initContainers"
        } else {
            "containers"
        };
        let Some(spec) = object(template, "spec") else {
            return;
        };
        let containers = spec.entry(list).or_insert_with(|| json!([]));
        let Value::Array(containers) = containers else {
            continue;
        };
        match containers
            .iter_mut()
            .find(|c| c["name"] == container.name.as_str())
        {
            Some(existing) => override_container(existing, container),
            None => {
                let mut fresh = json!({"name": container.name});
                override_container(&mut fresh, container);
                containers.push(fresh);
            }
        }
    }
    let Some(metadata) = object(template, "metadata") else {
        return;
    };
    if let Some(version) = &new_version.version {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        labels["version"] = json!(version);
    }
    if let Some(extra) = &new_version.pod_template_metadata {
        for (field, values) in [
            ("labels", &extra.labels),
            ("annotations", &extra.annotations),
        ] {
            let map = metadata.entry(field).or_insert_with(|| json!({}));
            for (key, value) in values {
                map[key] = json!(value);
            }
        }
    }
}

/// The map at `template[field]`, created when missing (`None` when the template is not an
/// object at all).
fn object<'a>(template: &'a mut Value, field: &str) -> Option<&'a mut Map<String, Value>> {
    let entry = template
        .as_object_mut()?
        .entry(field)
        .or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut()
}

fn override_container(container: &mut Value, with: &ContainerOverride) {
    let set = |container: &mut Value, field: &str, value: Value| container[field] = value;
    if let Some(image) = &with.image {
        set(container, "image", json!(image));
    }
    if let Some(policy) = &with.image_pull_policy {
        set(container, "imagePullPolicy", json!(policy));
    }
    if let Some(command) = &with.command {
        set(container, "command", json!(command));
    }
    if let Some(args) = &with.args {
        set(container, "args", json!(args));
    }
    if !with.env.is_empty() {
        let env = container["env"].as_array().cloned().unwrap_or_default();
        let mut env: Vec<Value> = env
            .into_iter()
            .filter(|var| !with.env.iter().any(|o| var["name"] == o.name.as_str()))
            .collect();
        env.extend(
            with.env
                .iter()
                .map(|var| json!({"name": var.name, "value": var.value})),
        );
        set(container, "env", Value::Array(env));
    }
    if let Some(resources) = &with.resources {
        for (kind, list) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            if let Some(list) = list {
                for (name, value) in [("cpu", &list.cpu), ("memory", &list.memory)] {
                    if let Some(value) = value {
                        container["resources"][kind][name] = json!(value);
                    }
                }
            }
        }
    }
    for (field, probe) in [
        ("livenessProbe", &with.liveness_probe),
        ("readinessProbe", &with.readiness_probe),
        ("startupProbe", &with.startup_probe),
    ] {
        if let Some(probe) = probe {
            set(
                container,
                field,
                serde_json::to_value(probe).unwrap_or(Value::Null),
            );
        }
    }
}

/// The ConfigMaps and Secrets a pod template uses (volumes, `env` and `envFrom`), by name.
pub fn config_references(template: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut configmaps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let spec = &template["spec"];
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(name) = volume["configMap"]["name"].as_str() {
            configmaps.insert(name.to_owned());
        }
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            secrets.insert(name.to_owned());
        }
        for source in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(name) = source["configMap"]["name"].as_str() {
                configmaps.insert(name.to_owned());
            }
            if let Some(name) = source["secret"]["name"].as_str() {
                secrets.insert(name.to_owned());
            }
        }
    }
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten());
    for container in containers {
        for from in container["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = from["configMapRef"]["name"].as_str() {
                configmaps.insert(name.to_owned());
            }
            if let Some(name) = from["secretRef"]["name"].as_str() {
                secrets.insert(name.to_owned());
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            if let Some(name) = var["valueFrom"]["configMapKeyRef"]["name"].as_str() {
                configmaps.insert(name.to_owned());
            }
            if let Some(name) = var["valueFrom"]["secretKeyRef"]["name"].as_str() {
                secrets.insert(name.to_owned());
            }
        }
    }
    (configmaps, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_core::api::spec::{EnvVar, PodTemplateMetadata};

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "reviews", "version": "v1"}},
            "spec": {
                "containers": [{"name": "reviews", "image": "reviews:v1", "ports": [{"containerPort": 9080}], "env": [{"name": "A", "value": "1"}]}],
                "volumes": [{"name": "cfg", "configMap": {"name": "reviews-config"}}]
            }
        })
    }

    #[test]
    fn an_image_alone_keeps_the_rest_of_the_container() {
        let mut t = template();
        let nv = NewVersion {
            version: Some("v2".into()),
            containers: vec![ContainerOverride {
                name: "reviews".into(),
                image: Some("reviews:v2".into()),
                ..Default::default()
            }],
            pod_template_metadata: Some(PodTemplateMetadata {
                labels: [("ASM_TRAFFIC_TAG".to_owned(), "canary".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        apply_new_version(&mut t, &nv);
        assert_eq!(t["spec"]["containers"][0]["image"], "reviews:v2");
        assert_eq!(
            t["spec"]["containers"][0]["ports"][0]["containerPort"],
            9080
        );
        assert_eq!(
            t["metadata"]["labels"],
            json!({"app": "reviews", "version": "v2", "ASM_TRAFFIC_TAG": "canary"})
        );
    }

    #[test]
    fn env_is_replaced_by_name_and_new_containers_are_added() {
        let mut t = template();
        let nv = NewVersion {
            containers: vec![
                ContainerOverride {
                    name: "reviews".into(),
                    env: vec![EnvVar {
                        name: "A".into(),
                        value: "2".into(),
                    }],
                    ..Default::default()
                },
                ContainerOverride {
                    name: "sidecar".into(),
                    image: Some("envoy:1".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        apply_new_version(&mut t, &nv);
        assert_eq!(
            t["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "2"}])
        );
        assert_eq!(
            t["spec"]["containers"][1],
            json!({"name": "sidecar", "image": "envoy:1"})
        );
    }

    #[test]
    fn config_references_are_found_everywhere() {
        let t = json!({"spec": {
            "volumes": [{"configMap": {"name": "a"}}, {"secret": {"secretName": "s1"}}, {"projected": {"sources": [{"configMap": {"name": "b"}}]}}],
            "containers": [{"envFrom": [{"secretRef": {"name": "s2"}}], "env": [{"valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]}]
        }});
        let (configmaps, secrets) = config_references(&t);
        assert_eq!(configmaps.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), ["s1", "s2"]);
    }
}
