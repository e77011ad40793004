//! `spec.strategy`: checks the one strategy set and compiles it into plan steps.

use super::Checker;
use super::limits::{MAX_ITERATIONS, MAX_PAUSE, MAX_STEPS};
use super::matches::check_matches;
use super::traffic::Chosen;
use super::workload::replicas;
use crate::api::plan::{Finish, PlanPause, PlanStep, Readiness, ReplicaTarget, StrategyKind};
use crate::api::spec::{
    AbTestStrategy, BlueGreenStrategy, CanaryStrategy, MirrorStrategy, Pause, RolloutSpec,
    SwitchMode,
};
use crate::traffic::RouteState;

/// A compiled strategy: its kind, its steps and what follows them.
pub(super) type Compiled = (StrategyKind, Vec<PlanStep>, Finish);

/// The path of the canary strategy.
const CANARY: &str = "spec.strategy.canary";

/// Checks the strategy and compiles it; `None` when it is broken.
pub(super) fn compile(
    c: &mut Checker,
    spec: &RolloutSpec,
    provider: Option<Chosen>,
    has_analysis: bool,
) -> Option<Compiled> {
    let strategy = &spec.strategy;
    let set = [
        ("canary", strategy.canary.is_some()),
        ("blueGreen", strategy.blue_green.is_some()),
        ("abTest", strategy.ab_test.is_some()),
        ("mirror", strategy.mirror.is_some()),
    ];
    if !c.exactly_one("spec.strategy", &set) {
        return None;
    }
    let new_version_replicas = new_version_replicas(spec);
    let full = new_version_replicas.unwrap_or(ReplicaTarget::Percent(100));
    if let Some(canary) = &strategy.canary {
        let steps = compile_canary(c, canary, provider, new_version_replicas, has_analysis)?;
        if steps.iter().any(|step| step.route.weight > 0) {
            require_weights(c, "spec.strategy.canary", provider);
        }
        return Some((StrategyKind::Canary, steps, Finish::Promote));
    }
    if let Some(blue_green) = &strategy.blue_green {
        return Some(compile_blue_green(
            c,
            blue_green,
            provider,
            full,
            has_analysis,
        ));
    }
    if let Some(ab) = &strategy.ab_test {
        return Some(compile_ab_test(c, ab, provider, new_version_replicas));
    }
    let mirror = strategy.mirror.as_ref()?;
    Some(compile_mirror(c, mirror, provider, full))
}

/// The canary replicas `spec.newVersion.replicas` asks for, when it is given and valid (it is
/// checked with the rest of `newVersion`).
fn new_version_replicas(spec: &RolloutSpec) -> Option<ReplicaTarget> {
    spec.new_version
        .as_ref()
        .and_then(|nv| nv.replicas.as_ref())
        .and_then(|value| replicas(&mut Checker::default(), "", value, 1))
}

/// A strategy at `path` that moves traffic by weight needs a provider that can.
fn require_weights(c: &mut Checker, path: &str, provider: Option<Chosen>) {
    if let Some(provider) = provider {
        let caps = provider.capabilities;
        if !caps.weights {
            c.error(
                path,
                format!(
                    "{} cannot route by weight; {} supports {}",
                    provider.name(),
                    provider.name(),
                    caps
                ),
            );
        }
    }
}

/// A mirror needs a provider that can copy traffic.
fn require_mirroring(c: &mut Checker, path: &str, provider: Option<Chosen>) {
    if let Some(provider) = provider {
        let caps = provider.capabilities;
        if !caps.mirror {
            c.error(
                path,
                format!(
                    "{} cannot mirror traffic; {} supports {}",
                    provider.name(),
                    provider.name(),
                    caps
                ),
            );
        }
    }
}

/// Blue-green: the canary at full size, then all traffic switched to it (after an approval
/// with `switch: manual`).
fn compile_blue_green(
    c: &mut Checker,
    blue_green: &BlueGreenStrategy,
    provider: Option<Chosen>,
    full: ReplicaTarget,
    has_analysis: bool,
) -> Compiled {
    require_weights(c, "spec.strategy.blueGreen", provider);
    let switch = blue_green.switch.unwrap_or(SwitchMode::AfterReady);
    let iterations = c.int_in(
        "spec.strategy.blueGreen.iterations",
        blue_green.iterations,
        1..=MAX_ITERATIONS,
        u32::from(has_analysis),
    );
    let switch_step = |readiness| PlanStep {
        route: RouteState::weighted(100),
        replicas: full,
        readiness,
        pause: None,
        iterations,
    };
    let steps = match switch {
        SwitchMode::Immediate => vec![switch_step(Readiness::AnyOne)],
        SwitchMode::AfterReady => vec![switch_step(Readiness::All)],
        SwitchMode::Manual => vec![
            PlanStep {
                route: RouteState::stable(),
                replicas: full,
                readiness: Readiness::All,
                pause: Some(PlanPause::Manual),
                iterations: 0,
            },
            switch_step(Readiness::All),
        ],
    };
    (StrategyKind::BlueGreen(switch), steps, Finish::Promote)
}

/// A/B test: one step where the matching requests go to the canary.
fn compile_ab_test(
    c: &mut Checker,
    ab: &AbTestStrategy,
    provider: Option<Chosen>,
    new_version_replicas: Option<ReplicaTarget>,
) -> Compiled {
    if ab.matches.is_empty() {
        c.error("spec.strategy.abTest.matches", "give at least one match");
    }
    check_matches(c, "spec.strategy.abTest.matches", &ab.matches, provider);
    let iterations = c.int_in(
        "spec.strategy.abTest.iterations",
        ab.iterations,
        1..=MAX_ITERATIONS,
        1,
    );
    let step = PlanStep {
        route: RouteState {
            matches: ab.matches.clone(),
            ..RouteState::stable()
        },
        replicas: new_version_replicas.unwrap_or(ReplicaTarget::Percent(0)),
        readiness: Readiness::All,
        pause: None,
        iterations,
    };
    (StrategyKind::AbTest, vec![step], Finish::Promote)
}

/// Mirror: one step where a share of the requests is copied to the canary; promoted or
/// discarded after it.
fn compile_mirror(
    c: &mut Checker,
    mirror: &MirrorStrategy,
    provider: Option<Chosen>,
    full: ReplicaTarget,
) -> Compiled {
    require_mirroring(c, "spec.strategy.mirror", provider);
    let percent = c.int_in("spec.strategy.mirror.percent", mirror.percent, 1..=100, 100);
    let iterations = c.int_in(
        "spec.strategy.mirror.iterations",
        mirror.iterations,
        1..=MAX_ITERATIONS,
        1,
    );
    let step = PlanStep {
        route: RouteState {
            mirror: Some(percent),
            ..RouteState::stable()
        },
        replicas: full,
        readiness: Readiness::All,
        pause: None,
        iterations,
    };
    let finish = if mirror.promote {
        Finish::Promote
    } else {
        Finish::Discard
    };
    (StrategyKind::Mirror, vec![step], finish)
}

/// Canary: `stepWeight`/`maxWeight` or a list of steps.
fn compile_canary(
    c: &mut Checker,
    canary: &CanaryStrategy,
    provider: Option<Chosen>,
    new_version_replicas: Option<ReplicaTarget>,
    has_analysis: bool,
) -> Option<Vec<PlanStep>> {
    let shorthand = canary.step_weight.is_some() || canary.max_weight.is_some();
    if shorthand && !canary.steps.is_empty() {
        c.error(
            CANARY,
            "give either steps or stepWeight/maxWeight, not both",
        );
        return None;
    }
    let default_replicas =
        |weight: u32| new_version_replicas.unwrap_or(ReplicaTarget::Percent(weight));
    if shorthand {
        shorthand_steps(c, canary, default_replicas)
    } else {
        listed_steps(c, canary, provider, default_replicas, has_analysis)
    }
}

/// `stepWeight`/`maxWeight`: one step per `stepWeight` up to `maxWeight`.
fn shorthand_steps(
    c: &mut Checker,
    canary: &CanaryStrategy,
    default_replicas: impl Fn(u32) -> ReplicaTarget,
) -> Option<Vec<PlanStep>> {
    let (Some(step), Some(max)) = (canary.step_weight, canary.max_weight) else {
        c.error(CANARY, "stepWeight and maxWeight go together; give both");
        return None;
    };
    if step == 0 {
        c.error(
            format!("{CANARY}.stepWeight"),
            "0 never reaches maxWeight; give 1..=100",
        );
        return None;
    }
    let step = c.int_in(&format!("{CANARY}.stepWeight"), Some(step), 1..=100, 0);
    let max = c.int_in(&format!("{CANARY}.maxWeight"), Some(max), 1..=100, 0);
    if step == 0 || max == 0 {
        return None;
    }
    if step > max {
        c.error(
            format!("{CANARY}.stepWeight"),
            format!("{step} overshoots maxWeight {max}; the first step would pass it"),
        );
        return None;
    }
    let weights = (1..)
        .map(|n| (n * step).min(max))
        .take(max.div_ceil(step) as usize);
    Some(
        weights
            .map(|weight| PlanStep {
                route: RouteState::weighted(weight),
                replicas: default_replicas(weight),
                readiness: Readiness::All,
                pause: None,
                iterations: 1,
            })
            .collect(),
    )
}

/// `steps`: each step's weight (the previous one's when not given), matches, replicas and
/// pause.
fn listed_steps(
    c: &mut Checker,
    canary: &CanaryStrategy,
    provider: Option<Chosen>,
    default_replicas: impl Fn(u32) -> ReplicaTarget,
    has_analysis: bool,
) -> Option<Vec<PlanStep>> {
    if canary.steps.is_empty() {
        c.error(CANARY, "give steps, or stepWeight and maxWeight");
        return None;
    }
    if !c.at_most(
        &format!("{CANARY}.steps"),
        canary.steps.len(),
        MAX_STEPS,
        "steps",
    ) {
        return None;
    }
    let mut previous_weight = 0;
    let mut steps = Vec::with_capacity(canary.steps.len());
    for (i, step) in canary.steps.iter().enumerate() {
        let path = format!("{CANARY}.steps[{i}]");
        let weight = c.int_in(
            &format!("{path}.weight"),
            step.weight,
            0..=100,
            previous_weight,
        );
        previous_weight = weight;
        check_matches(c, &format!("{path}.matches"), &step.matches, provider);
        let replicas = match &step.replicas {
            Some(value) => replicas(c, &format!("{path}.replicas"), value, 1),
            None => Some(default_replicas(weight)),
        };
        steps.push(PlanStep {
            route: RouteState {
                weight,
                matches: step.matches.clone(),
                ..RouteState::stable()
            },
            replicas: replicas.unwrap_or(ReplicaTarget::Count(1)),
            readiness: Readiness::All,
            pause: step
                .pause
                .as_ref()
                .map(|pause| plan_pause(c, &format!("{path}.pause"), pause)),
            iterations: u32::from(has_analysis),
        });
    }
    if steps.iter().all(|step| step.route.is_stable_only()) {
        c.error(
            CANARY,
            "no step sends traffic to the canary; give a step a weight or matches",
        );
    }
    Some(steps)
}

fn plan_pause(c: &mut Checker, path: &str, pause: &Pause) -> PlanPause {
    match &pause.duration {
        None => PlanPause::Manual,
        Some(text) => PlanPause::For(c.duration(
            &format!("{path}.duration"),
            Some(text),
            jiff::SignedDuration::ZERO,
            jiff::SignedDuration::from_secs(1)..=MAX_PAUSE,
        )),
    }
}
