//! `spec.newVersion`: version label, replicas, container overrides, pod-template metadata.

use std::collections::BTreeSet;

use super::Checker;
use super::limits::MAX_REPLICAS;
use crate::api::names;
use crate::api::plan::ReplicaTarget;
use crate::api::spec::{
    ContainerOverride, IntOrPercent, NewVersion, Probe, ResourceList, RolloutSpec,
};
use crate::workload::WorkloadDescriptor;

const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

/// A replica target: a count within `min..=`[`MAX_REPLICAS`], or a percent in 1..=100.
pub(super) fn replicas(
    c: &mut Checker,
    path: &str,
    value: &IntOrPercent,
    min: i64,
) -> Option<ReplicaTarget> {
    match value {
        IntOrPercent::Int(count) => {
            if *count < min || *count > MAX_REPLICAS {
                c.error(
                    path,
                    format!(
                        "{count} replicas: must be at least {min} and at most {MAX_REPLICAS} \
                         (allowed: {min}..={MAX_REPLICAS})"
                    ),
                );
                None
            } else {
                u32::try_from(*count).ok().map(ReplicaTarget::Count)
            }
        }
        IntOrPercent::String(text) => {
            match text.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()) {
                Some(percent) if (1..=100).contains(&percent) => {
                    Some(ReplicaTarget::Percent(percent))
                }
                _ => {
                    c.error(
                        path,
                        format!("`{text}` must be a count or a percent from 1% to 100%"),
                    );
                    None
                }
            }
        }
    }
}

/// Refuses the replica fields a workload kind whose controller sizes it cannot honour (a
/// DaemonSet runs one pod per eligible node), each with the kind's reason.
pub(super) fn check_sizes(c: &mut Checker, spec: &RolloutSpec, kind: &WorkloadDescriptor) {
    let Some(why) = kind.fixed_size else {
        return;
    };
    let mut refuse = |path: String| {
        c.error(&path, format!("not allowed for a {}: {why}", kind.kind));
    };
    if spec
        .new_version
        .as_ref()
        .is_some_and(|nv| nv.replicas.is_some())
    {
        refuse("spec.newVersion.replicas".to_owned());
    }
    let steps = spec.strategy.canary.iter().flat_map(|canary| &canary.steps);
    for (i, step) in steps.enumerate() {
        if step.replicas.is_some() {
            refuse(format!("spec.strategy.canary.steps[{i}].replicas"));
        }
    }
}

/// Checks `spec.newVersion`.
pub(super) fn check_new_version(c: &mut Checker, new_version: Option<&NewVersion>) {
    let Some(nv) = new_version else { return };
    if let Some(version) = &nv.version {
        c.check("spec.newVersion.version", names::version_label(version));
    }
    if let Some(value) = &nv.replicas {
        replicas(c, "spec.newVersion.replicas", value, 1);
    }
    let mut seen = BTreeSet::new();
    for (i, container) in nv.containers.iter().enumerate() {
        let path = format!("spec.newVersion.containers[{i}]");
        if !seen.insert(container.name.as_str()) {
            c.error(
                format!("{path}.name"),
                format!("`{}` is given twice", container.name),
            );
        }
        check_container(c, &path, container);
    }
    if let Some(metadata) = &nv.pod_template_metadata {
        for (key, value) in &metadata.labels {
            let path = format!("spec.newVersion.podTemplateMetadata.labels.{key}");
            c.check(&path, names::label_key(key));
            c.check(&path, names::label_value(value));
        }
        for key in metadata.annotations.keys() {
            c.check(
                format!("spec.newVersion.podTemplateMetadata.annotations.{key}"),
                names::label_key(key),
            );
        }
    }
}

fn check_container(c: &mut Checker, path: &str, container: &ContainerOverride) {
    c.check(
        format!("{path}.name"),
        names::dns1123_label(&container.name),
    );
    if container
        .image
        .as_deref()
        .is_some_and(|image| image.trim().is_empty() || image.contains(char::is_whitespace))
    {
        c.error(
            format!("{path}.image"),
            "must be an image reference without spaces, e.g. nginx:1.27",
        );
    }
    if let Some(policy) = &container.image_pull_policy
        && !PULL_POLICIES.contains(&policy.as_str())
    {
        c.error(
            format!("{path}.imagePullPolicy"),
            format!("`{policy}` is not one of {}", PULL_POLICIES.join(", ")),
        );
    }
    let mut env_names = BTreeSet::new();
    for (i, env) in container.env.iter().enumerate() {
        if env.name.is_empty() || env.name.contains(['=', ' ']) {
            c.error(
                format!("{path}.env[{i}].name"),
                format!("`{}` is not a variable name", env.name),
            );
        } else if !env_names.insert(env.name.as_str()) {
            c.error(
                format!("{path}.env[{i}].name"),
                format!("`{}` is given twice", env.name),
            );
        }
    }
    if let Some(resources) = &container.resources {
        let requests = resources
            .requests
            .as_ref()
            .map(|list| check_resources(c, &format!("{path}.resources.requests"), list));
        let limits = resources
            .limits
            .as_ref()
            .map(|list| check_resources(c, &format!("{path}.resources.limits"), list));
        if let (Some(requests), Some(limits)) = (requests, limits) {
            for (name, request, limit) in [
                ("cpu", requests.0, limits.0),
                ("memory", requests.1, limits.1),
            ] {
                if let (Some(request), Some(limit)) = (request, limit)
                    && request > limit
                {
                    c.error(
                        format!("{path}.resources.requests.{name}"),
                        "the request is larger than the limit",
                    );
                }
            }
        }
    }
    for (field, probe, single_success) in [
        ("livenessProbe", &container.liveness_probe, true),
        ("readinessProbe", &container.readiness_probe, false),
        ("startupProbe", &container.startup_probe, true),
    ] {
        if let Some(probe) = probe {
            check_probe(c, &format!("{path}.{field}"), probe, single_success);
        }
    }
}

fn check_resources(c: &mut Checker, path: &str, list: &ResourceList) -> (Option<f64>, Option<f64>) {
    let mut read = |name: &str, value: &Option<String>| {
        let value = value.as_ref()?;
        match names::quantity(value) {
            Ok(amount) => Some(amount),
            Err(message) => {
                c.error(format!("{path}.{name}"), message);
                None
            }
        }
    };
    (read("cpu", &list.cpu), read("memory", &list.memory))
}

fn check_probe(c: &mut Checker, path: &str, probe: &Probe, single_success: bool) {
    let handlers = [
        probe.http_get.is_some(),
        probe.exec.is_some(),
        probe.tcp_socket.is_some(),
    ];
    if handlers.iter().filter(|set| **set).count() != 1 {
        c.error(path, "exactly one of httpGet, exec, tcpSocket must be set");
    }
    if let Some(http) = &probe.http_get {
        c.int_in(
            &format!("{path}.httpGet.port"),
            Some(http.port),
            1..=65535,
            0,
        );
        if let Some(scheme) = &http.scheme
            && scheme != "HTTP"
            && scheme != "HTTPS"
        {
            c.error(
                format!("{path}.httpGet.scheme"),
                format!("`{scheme}` is not HTTP or HTTPS"),
            );
        }
    }
    if let Some(exec) = &probe.exec
        && exec.command.is_empty()
    {
        c.error(format!("{path}.exec.command"), "must name a command");
    }
    if let Some(tcp) = &probe.tcp_socket {
        c.int_in(
            &format!("{path}.tcpSocket.port"),
            Some(tcp.port),
            1..=65535,
            0,
        );
    }
    c.int_in(
        &format!("{path}.initialDelaySeconds"),
        probe.initial_delay_seconds,
        0..=i64::from(i32::MAX),
        0,
    );
    c.int_in(
        &format!("{path}.timeoutSeconds"),
        probe.timeout_seconds,
        0..=i64::from(i32::MAX),
        0,
    );
    c.int_in(
        &format!("{path}.periodSeconds"),
        probe.period_seconds,
        1..=i64::from(i32::MAX),
        0,
    );
    c.int_in(
        &format!("{path}.failureThreshold"),
        probe.failure_threshold,
        1..=i64::from(i32::MAX),
        0,
    );
    if single_success {
        if probe
            .success_threshold
            .is_some_and(|threshold| threshold != 1)
        {
            c.error(
                format!("{path}.successThreshold"),
                "must be 1 for liveness and startup probes",
            );
        }
    } else {
        c.int_in(
            &format!("{path}.successThreshold"),
            probe.success_threshold,
            1..=i64::from(i32::MAX),
            0,
        );
    }
}
