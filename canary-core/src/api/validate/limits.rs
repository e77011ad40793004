//! The largest durations and counts a Rollout may ask for. Every duration and count the engine
//! waits on, allocates for or sends to the cluster is bounded here, so that no spec can make a
//! reconcile block for years, make the simulation allocate gigabytes, or write a replica count
//! Kubernetes cannot hold (a Deployment's `spec.replicas` is an `int32`).

use jiff::SignedDuration;

/// `spec.analysis.interval` and `spec.analysis.metrics[*].interval`: at most an hour. A release
/// judged less often than hourly is not guarded by its analysis, and the query window of a
/// metric is its interval (Prometheus evaluates `rate()` over every sample in it).
pub const MAX_ANALYSIS_INTERVAL: SignedDuration = SignedDuration::from_hours(1);

/// `spec.analysis.scrapeInterval`: at most 10 minutes; metrics scraped less often cannot guard a
/// release.
pub const MAX_SCRAPE_INTERVAL: SignedDuration = SignedDuration::from_mins(10);

/// `spec.analysis.queryOffset`: at most 5 minutes; a release cannot wait longer for its
/// evidence.
pub const MAX_QUERY_OFFSET: SignedDuration = SignedDuration::from_mins(5);

/// `spec.analysis.webhooks[*].timeout`: at most 5 minutes. A call is awaited inside a reconcile
/// of the Rollout, which holds that Rollout (and a controller worker) until it returns.
pub const MAX_WEBHOOK_TIMEOUT: SignedDuration = SignedDuration::from_mins(5);

/// `spec.strategy.canary.steps[*].pause.duration`: at most 7 days; a longer wait is a manual
/// pause (`pause: {}`).
pub const MAX_PAUSE: SignedDuration = SignedDuration::from_hours(7 * 24);

/// `spec.progressDeadline`: at most 24 hours for the canary's pods to become available or the
/// route to take effect.
pub const MAX_PROGRESS_DEADLINE: SignedDuration = SignedDuration::from_hours(24);

/// Canary replicas given as a count (`spec.newVersion.replicas`,
/// `spec.strategy.canary.steps[*].replicas`): at most 10 000, far below the `int32` a
/// Deployment's replicas are (k8s.io/api apps/v1 types.go, `DeploymentSpec.Replicas`) and small
/// enough for the simulation to model pod by pod.
pub const MAX_REPLICAS: i64 = 10_000;

/// `spec.strategy.canary.steps`: at most 100 steps (the `stepWeight` shorthand makes at most
/// 100 too).
pub const MAX_STEPS: usize = 100;

/// `spec.analysis.metrics` and `spec.analysis.webhooks`: at most 20 of each; each is queried or
/// called at every analysis run.
pub const MAX_METRICS: usize = 20;

/// Webhooks: see [`MAX_METRICS`].
pub const MAX_WEBHOOKS: usize = 20;

/// `spec.analysis.metrics[*].name` and `spec.analysis.webhooks[*].name`: at most 63
/// characters (a Kubernetes label value's length); they are written into the Rollout's status,
/// events and canary's own metrics.
pub const MAX_ANALYSIS_NAME: usize = 63;

/// `spec.analysis.metrics[*].prometheus.query`: at most 16 KiB once its variables are filled
/// in (canary's own at their longest, a Kubernetes name's 253 bytes); it is sent at every
/// analysis run.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The longest value canary fills one of its query variables with (a Kubernetes object name).
pub const MAX_QUERY_VARIABLE_VALUE: usize = 253;

/// Any list of request matches: at most 32 alternatives.
pub const MAX_MATCHES: usize = 32;

/// `failureLimit`, `inconclusiveLimit`: at most 1000 analysis runs.
pub const MAX_RUN_LIMIT: i64 = 1000;

/// `iterations` of blue-green, A/B test and mirror: at most 10 000 analysis runs.
pub const MAX_ITERATIONS: i64 = 10_000;

/// `spec.analysis.metrics[*].sequential.degradation`: at most 1000 (a canary 1000 times worse
/// than stable); beyond that the likelihood ratio's terms leave the range of `f64`.
pub const MAX_DEGRADATION: f64 = 1000.0;

/// `spec.trafficRouting.plugin.config`: at most 16 KiB as JSON. canary passes it to the plugin
/// uninterpreted and keeps it in every plan it compiles.
pub const MAX_PLUGIN_CONFIG_BYTES: usize = 16 * 1024;
