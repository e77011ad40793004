//! `spec.strategy`: canary steps, blue-green, A/B test or mirror.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{IntOrPercent, RequestMatch};

/// Exactly one of the strategies must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// Shift traffic to the canary step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Bring the new version up beside the old one, then switch all traffic at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// Send matching requests (headers, cookie, URI…) to the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab_test: Option<AbTestStrategy>,
    /// Copy live traffic to the new version; users are always answered by the old one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorStrategy>,
}

/// Canary steps, given one by one or as the `stepWeight`/`maxWeight` shorthand (not both).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStrategy {
    /// The steps, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Shorthand: raise the weight by this much per analysis interval…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_weight: Option<i64>,
    /// …up to this weight, then promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<i64>,
}

/// One canary step: scale, route, then wait at the gate (analysis and pause).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStep {
    /// Percent of traffic to the canary, 0..=100; the previous step's weight when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Requests that go to the canary whatever the weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RequestMatch>,
    /// Canary replicas for this step: a count, or a percent of the stable replicas. When absent:
    /// `newVersion.replicas`, else the step's weight as a percent of the stable replicas. Not
    /// for a DaemonSet, whose canary runs on every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<IntOrPercent>,
    /// Wait here: `{}` until promoted by a user, `{duration: 5m}` for a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
}

/// A pause: for `duration`, or until a user promotes when `duration` is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    /// How long to wait, e.g. `5m`; absent means manual approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// Blue-green: the new version comes up at full size, then takes all traffic at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// When traffic switches to the new version; `AfterReady` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchMode>,
    /// How many analysis intervals must pass after the switch before promotion; 1 when absent
    /// (0 with no `analysis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i64>,
}

/// When a blue-green release switches traffic (KubeSphere's release strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SwitchMode {
    /// As soon as the first new pod is available (Immediate Switch).
    Immediate,
    /// When every new pod is available (Switch After Ready).
    AfterReady,
    /// When every new pod is available and a user promotes (Pause Switch).
    Manual,
}

/// A/B test: requests that match go to the new version for a number of analysis iterations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbTestStrategy {
    /// The requests that go to the new version (alternatives; each one's conditions all hold).
    pub matches: Vec<RequestMatch>,
    /// How many analysis intervals must pass before promotion; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i64>,
}

/// Mirror: a percent of live requests is copied to the new version for a number of analysis
/// iterations; the copies' answers are dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorStrategy {
    /// Percent of requests copied, 1..=100; 100 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i64>,
    /// How many analysis intervals must pass; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<i64>,
    /// Promote the new version when the analysis passes (`true`), or only report and remove it
    /// (`false`, the default).
    #[serde(default)]
    pub promote: bool,
}
