//! `canary render`: the objects a traffic provider would apply at one point of a rollout.

use std::io::Write;
use std::path::{Path, PathBuf};

use canary::k8s::objects::Objects;
use canary::{RolloutPlan, RouteState};
use serde_json::Value;

use crate::Failure;

#[derive(clap::Args)]
pub struct RenderArgs {
    /// The Rollout YAML file (it may carry the objects the rollout builds on as further
    /// documents).
    file: PathBuf,
    /// The traffic provider: istio, nginx, kuma, asm or gateway (also `gatewayAPI`, its key
    /// under spec.trafficRouting): the one the rollout routes with.
    #[arg(long)]
    provider: String,
    /// The canary's weight, 0..=100, with no matches or mirror.
    #[arg(long, value_name = "W", conflicts_with = "step")]
    weight: Option<u32>,
    /// The route of step N of the strategy, from 1 (default: the first step).
    #[arg(long, value_name = "N")]
    step: Option<usize>,
    /// Existing cluster objects to build on (stable Deployment, Service, Ingress,
    /// VirtualService…), as multi-document YAML.
    #[arg(long, value_name = "FILE")]
    objects: Option<PathBuf>,
}

pub fn render(args: &RenderArgs) -> Result<(), Failure> {
    let (plan, mut objects) = crate::load_with_objects(&args.file)?;
    if let Some(path) = &args.objects {
        objects.extend(read_objects(path)?.iter().cloned());
    }
    let chosen = plan.provider;
    // The Gateway API's key in the spec is `gatewayAPI`; `gateway` is its crate and feature.
    let named = args.provider == chosen.name
        || (args.provider == "gateway" && chosen.name == canary::traffic::gateway::DESCRIPTOR.name);
    if !named {
        return Err(Failure::input(format!(
            "--provider {}: the rollout routes with {} (spec.trafficRouting)",
            args.provider, chosen.name
        )));
    }
    let route = route(&plan, args)?;
    let rendered = provider_objects(&plan, &route, &objects)?;
    let yaml = serde_saphyr::to_string_multiple(&rendered).map_err(|error| Failure {
        message: format!("cannot write YAML: {error}"),
        code: 1,
    })?;
    let mut yaml = yaml;
    if !yaml.is_empty() && !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure {
            message: format!("cannot write: {error}"),
            code: 1,
        }),
        _ => Ok(()),
    }
}

/// The objects of the YAML file `path`.
pub fn read_objects(path: &Path) -> Result<Objects, Failure> {
    let text = crate::read_input(path)?;
    canary::api::load::objects_from_yaml(&text)
        .map_err(|error| crate::describe_load_error(path, error))
}

/// The route asked for: a plain weight, or a step's route.
fn route(plan: &RolloutPlan, args: &RenderArgs) -> Result<RouteState, Failure> {
    if let Some(weight) = args.weight {
        if weight > 100 {
            return Err(Failure::input(format!(
                "--weight {weight}: the weight is a percent, 0..=100"
            )));
        }
        return Ok(RouteState::weighted(weight));
    }
    let step = args.step.unwrap_or(1);
    let count = plan.steps.len();
    match step.checked_sub(1).and_then(|index| plan.steps.get(index)) {
        Some(step) => Ok(step.route.clone()),
        None => Err(Failure::input(format!(
            "--step {step}: the strategy has steps 1..={count}"
        ))),
    }
}

fn provider_objects(
    plan: &RolloutPlan,
    route: &RouteState,
    objects: &Objects,
) -> Result<Vec<Value>, Failure> {
    let name = plan.provider.name;
    let backend = canary::registry::backend(plan.provider).ok_or_else(|| {
        Failure::input(format!(
            "the {name} provider is not part of this build (it has: {})",
            canary::registry::names().join(", ")
        ))
    })?;
    backend
        .render(plan, route, objects)
        .map_err(|error| match error {
            canary::Error::Provider { source, .. } => Failure::input(format!("{name}: {source}")),
            other => Failure::input(format!("{name}: {other}")),
        })
}
