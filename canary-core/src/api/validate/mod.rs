//! Validation: checks a [`Rollout`] against every rule at once and compiles it into a
//! [`RolloutPlan`]. Each error names its field path and what is allowed:
//!
//! ```text
//! spec.strategy.canary.steps[2].weight: 120 is not within 0..=100
//! ```

mod analysis;
pub mod limits;
mod matches;
mod strategy;
mod traffic;
mod workload;

use std::fmt;

use jiff::SignedDuration;

use crate::api::duration::parse_duration;
use crate::api::names;
use crate::api::plan::{ReplicaTarget, RolloutPlan};
use crate::api::spec::{API_VERSION, KIND, Rollout};
use crate::traffic::Registry;
use crate::workload::WorkloadKind;

/// One broken rule: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field path, e.g. `spec.strategy.canary.steps[2].weight`.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every rule a Rollout breaks, in the order of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Collects errors while the validators walk the spec; a provider's rules
/// ([`crate::traffic::ProviderDescriptor`]) record theirs here, each at its field path.
#[derive(Debug, Default)]
pub struct Checker {
    errors: Vec<ValidationError>,
}

impl Checker {
    /// Records an error at `path` (e.g. `spec.trafficRouting.plugin.config.entryPoint`):
    /// what is wrong and what is allowed.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records the error of a rule, if it is broken.
    pub fn check(&mut self, path: impl Into<String>, rule: Result<(), String>) {
        if let Err(message) = rule {
            self.error(path, message);
        }
    }

    /// Checks that exactly one of the named options is set; true when it is.
    pub(crate) fn exactly_one(&mut self, path: &str, options: &[(&str, bool)]) -> bool {
        let set: Vec<&str> = options
            .iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| *name)
            .collect();
        if set.len() == 1 {
            return true;
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        let found = if set.is_empty() {
            "none".to_owned()
        } else {
            set.join(", ")
        };
        self.error(
            path,
            format!(
                "exactly one of {} must be set (found {found})",
                names.join(", ")
            ),
        );
        false
    }

    /// A duration at `path` within `range`; `default` when absent or out of range. An error
    /// names the allowed range.
    pub(crate) fn duration(
        &mut self,
        path: &str,
        text: Option<&str>,
        default: SignedDuration,
        range: std::ops::RangeInclusive<SignedDuration>,
    ) -> SignedDuration {
        let Some(text) = text else { return default };
        let format = crate::api::duration::format_duration;
        let allowed = format!(
            "allowed: {}..={}",
            format(*range.start()),
            format(*range.end())
        );
        match parse_duration(text) {
            Ok(duration) if range.contains(&duration) => duration,
            Ok(duration) if duration < *range.start() => {
                self.error(
                    path,
                    format!(
                        "`{text}` is shorter than {} ({allowed})",
                        format(*range.start())
                    ),
                );
                default
            }
            Ok(_) => {
                self.error(
                    path,
                    format!(
                        "`{text}` must be at most {} ({allowed})",
                        format(*range.end())
                    ),
                );
                default
            }
            Err(message) => {
                self.error(path, format!("{message} ({allowed})"));
                default
            }
        }
    }

    /// A list at `path` of at most `max` items; true when it fits.
    pub(crate) fn at_most(&mut self, path: &str, len: usize, max: usize, what: &str) -> bool {
        if len <= max {
            return true;
        }
        self.error(path, format!("{len} {what}: at most {max} are allowed"));
        false
    }

    /// An integer at `path` within `range`, as `u32`; `default` when absent or out of range.
    pub(crate) fn int_in(
        &mut self,
        path: &str,
        value: Option<i64>,
        range: std::ops::RangeInclusive<i64>,
        default: u32,
    ) -> u32 {
        let Some(value) = value else { return default };
        if range.contains(&value) {
            u32::try_from(value).unwrap_or(default)
        } else {
            let allowed = if *range.end() >= i64::from(i32::MAX) {
                format!("must be at least {}", range.start())
            } else {
                format!("is not within {}..={}", range.start(), range.end())
            };
            self.error(path, format!("{value} {allowed}"));
            default
        }
    }
}

/// Checks every rule of a Rollout against the built-in providers and, when none is broken,
/// compiles it into a plan. [`validate_with`] takes the providers a program registered.
///
/// ```
/// let yaml = r#"
/// apiVersion: canary.rs/v1alpha1
/// kind: Rollout
/// metadata: {name: podinfo}
/// spec:
///   workloadRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
///   service: {name: podinfo, port: 9898}
///   trafficRouting: {kuma: {}}
///   strategy: {canary: {stepWeight: 10, maxWeight: 50}}
/// "#;
/// let rollout = canary_core::api::load::from_yaml(yaml).unwrap();
/// let plan = canary_core::api::validate::validate(&rollout).unwrap();
/// assert_eq!(plan.steps.len(), 5);
/// ```
pub fn validate(rollout: &Rollout) -> Result<RolloutPlan, ValidationErrors> {
    validate_with(rollout, &Registry::builtin())
}

/// Checks every rule of a Rollout, its traffic provider looked up in `registry` (so a plugin's
/// capabilities and rules apply to it), and when none is broken compiles it into a plan.
pub fn validate_with(
    rollout: &Rollout,
    registry: &Registry,
) -> Result<RolloutPlan, ValidationErrors> {
    let mut c = Checker::default();
    if rollout.api_version != API_VERSION {
        c.error(
            "apiVersion",
            format!("`{}` must be `{API_VERSION}`", rollout.api_version),
        );
    }
    if rollout.kind != KIND {
        c.error("kind", format!("`{}` must be `{KIND}`", rollout.kind));
    }
    c.check(
        "metadata.name",
        names::dns1123_subdomain(&rollout.metadata.name),
    );
    // The name is the value of the `canary.rs/rollout` label on the canary's pods and of the
    // canary Service's selector: a label value has at most 63 characters.
    if rollout.metadata.name.len() > 63 {
        c.error(
            "metadata.name",
            format!(
                "`{}` is longer than 63 characters: it labels the canary's pods",
                rollout.metadata.name
            ),
        );
    }
    if let Some(namespace) = &rollout.metadata.namespace {
        c.check("metadata.namespace", names::dns1123_label(namespace));
    }
    let spec = &rollout.spec;
    let workload = &spec.workload_ref;
    let kind = WorkloadKind::named(&workload.api_version, &workload.kind);
    if kind.is_none() {
        c.error(
            "spec.workloadRef",
            format!(
                "{} {} is not supported; the workload must be one of: {}",
                workload.api_version,
                workload.kind,
                WorkloadKind::supported()
            ),
        );
    }
    let kind = kind.map(WorkloadKind::descriptor);
    if let Some(descriptor) = kind {
        workload::check_sizes(&mut c, spec, descriptor);
    }
    c.check(
        "spec.workloadRef.name",
        names::dns1123_subdomain(&workload.name),
    );
    c.check(
        "spec.service.name",
        names::dns1123_label(&spec.service.name),
    );
    c.int_in("spec.service.port", Some(spec.service.port), 1..=65535, 0);
    workload::check_new_version(&mut c, spec.new_version.as_ref());
    let provider = traffic::check_routing(&mut c, &spec.traffic_routing, registry);
    let compiled = strategy::compile(&mut c, spec, provider, spec.analysis.is_some());
    traffic::check_spec(&mut c, spec, provider);
    let analysis = analysis::check_analysis(&mut c, spec.analysis.as_ref());
    if let Some(provider) = provider {
        analysis::check_builtin_metrics(
            &mut c,
            &analysis,
            provider.descriptor,
            &spec.traffic_routing,
        );
    }
    let progress_deadline = c.duration(
        "spec.progressDeadline",
        spec.progress_deadline.as_deref(),
        SignedDuration::from_mins(10),
        SignedDuration::from_secs(1)..=limits::MAX_PROGRESS_DEADLINE,
    );
    match (provider, compiled, kind) {
        (Some(provider), Some((strategy, mut steps, finish)), Some(kind))
            if c.errors.is_empty() =>
        {
            if !kind.sized() {
                // Its controller sizes it: the canary runs on every eligible node at each step.
                for step in &mut steps {
                    step.replicas = ReplicaTarget::Percent(100);
                }
            }
            Ok(RolloutPlan {
                name: rollout.metadata.name.clone(),
                namespace: rollout
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                provider: provider.descriptor,
                workload: kind,
                strategy,
                steps,
                finish,
                analysis,
                progress_deadline,
                rollout: rollout.clone(),
            })
        }
        _ => Err(ValidationErrors(c.errors)),
    }
}
