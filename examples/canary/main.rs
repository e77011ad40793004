//! `canary`: validate, simulate and render Rollout files.
//!
//! ```text
//! cargo run --example canary -- validate examples/rollouts/podinfo-kuma.yaml
//! cargo run --example canary -- simulate examples/rollouts/podinfo-kuma.yaml --canary-error-rate 0.2
//! cargo run --example canary -- render examples/rollouts/bookinfo-istio.yaml --provider istio --weight 50
//! ```

mod chart;
mod render;
mod timeline;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use canary::Error;
use canary::api::duration::parse_duration;
use canary::sim::{SimConfig, Simulation};
use clap::{Parser, Subcommand};

/// Progressive delivery for Kubernetes: check and try Rollout files.
#[derive(Parser)]
#[command(name = "canary", version)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Check a Rollout file; prints `valid`, or every error with its field path (exit 2).
    Validate {
        /// The Rollout YAML file.
        file: PathBuf,
    },
    /// Run a Rollout against in-memory providers and synthetic traffic, in virtual time.
    Simulate(SimulateArgs),
    /// Print the objects a traffic provider would apply at one point of the rollout.
    Render(render::RenderArgs),
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// The Rollout YAML file.
    file: PathBuf,
    /// Share of requests the canary fails, 0..=1 (default: the baseline's).
    #[arg(long, value_name = "R")]
    canary_error_rate: Option<f64>,
    /// Share of requests stable fails, 0..=1.
    #[arg(long, value_name = "R", default_value_t = 0.001)]
    baseline_error_rate: f64,
    /// Median canary latency in milliseconds (default: the baseline's, 40).
    #[arg(long, value_name = "MS")]
    canary_latency_ms: Option<f64>,
    /// User requests per second, at most 1000000.
    #[arg(long, value_name = "N", default_value_t = 100)]
    rps: u64,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// How long the simulated operator takes to approve a manual step, at most 720h (`never` to
    /// not approve).
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    approve_after: String,
    /// One JSON object per timeline row, then the summary object.
    #[arg(long)]
    json: bool,
    /// Write a chart of the weight and metrics over time to this SVG file.
    #[arg(long, value_name = "OUT")]
    svg: Option<PathBuf>,
    /// Run through the real controller against an in-memory cluster holding the file's other
    /// documents and `--objects`, with data-plane models deciding which pods answer.
    #[arg(long)]
    cluster: bool,
    /// Cluster objects to start from (with `--cluster`): the stable Deployment, its Service,
    /// the provider's objects…
    #[arg(long, value_name = "FILE", requires = "cluster")]
    objects: Vec<PathBuf>,
    /// How long a new pod takes to become ready, at most 1h.
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    pod_startup: String,
    /// Keep the objects and the Rollout in Git, applied by this tool (with `--cluster`):
    /// `flux` (server-side apply, forced) or `argocd` (client-side apply, self-heal). The
    /// release is a commit; Flux corrects drift every `--gitops-interval`, Argo CD within
    /// seconds of a change, backing off from 2 s to 5 min while it keeps finding drift.
    #[arg(long, value_name = "TOOL", requires = "cluster")]
    gitops: Option<String>,
    /// How often Flux corrects drift.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1m",
        requires = "gitops"
    )]
    gitops_interval: String,
    /// A field the GitOps tool leaves to others (Flux `spec.ignore`, Argo CD
    /// `ignoreDifferences` with `RespectIgnoreDifferences=true`): `KIND/NAME:/json/pointer`.
    #[arg(long, value_name = "RULE", requires = "gitops")]
    gitops_ignore: Vec<String>,
}

/// An error for the user, and the exit code it leads to.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn input(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Commands::Validate { file } => validate(&file),
        Commands::Simulate(args) => simulate(&args),
        Commands::Render(args) => render::render(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Reads and validates a Rollout file, describing any problem for the user.
fn load(file: &Path) -> Result<canary::RolloutPlan, Failure> {
    load_with_objects(file).map(|(plan, _)| plan)
}

/// Reads and validates a Rollout file, with the cluster objects it carries.
fn load_with_objects(
    file: &Path,
) -> Result<(canary::RolloutPlan, canary::k8s::objects::Objects), Failure> {
    let text = read_input(file)?;
    let loaded =
        canary::api::load::rollout_file(&text).map_err(|error| describe_load_error(file, error))?;
    let plan = canary::api::validate::validate(&loaded.rollout)
        .map_err(|errors| describe_load_error(file, Error::Invalid(errors)))?;
    Ok((plan, loaded.objects))
}

/// The largest input file read: Rollouts and the objects they build on are a few kilobytes.
const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a regular file of at most [`MAX_INPUT_BYTES`] as text; never a device, a pipe or a
/// directory, and never more than the limit.
fn read_input(file: &Path) -> Result<String, Failure> {
    use std::io::Read;
    let name = file.display();
    let cannot = |error: std::io::Error| Failure::input(format!("{name}: cannot read: {error}"));
    let opened = std::fs::File::open(file).map_err(cannot)?;
    if !opened.metadata().map_err(cannot)?.is_file() {
        return Err(Failure::input(format!(
            "{name}: not a regular file (a device, a pipe or a directory is not read)"
        )));
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(Failure::input(format!(
            "{name}: larger than {} MiB, the most read",
            MAX_INPUT_BYTES / 1024 / 1024
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Failure::input(format!("{name}: cannot read: not UTF-8 text")))
}

/// A loading error for the user: the file, the place in it and what is wrong.
fn describe_load_error(file: &Path, error: Error) -> Failure {
    let name = file.display();
    match error {
        Error::Parse {
            message,
            line,
            column,
        } => {
            let place = match (line, column) {
                (Some(line), Some(column)) => format!(":{line}:{column}"),
                (Some(line), None) => format!(":{line}"),
                _ => String::new(),
            };
            Failure::input(format!("{name}{place}: {message}"))
        }
        Error::Invalid(errors) => {
            let count = errors.0.len();
            let noun = if count == 1 { "error" } else { "errors" };
            let lines: Vec<String> = errors.0.iter().map(|e| format!("  {e}")).collect();
            Failure::input(format!("{name}: {count} {noun}\n{}", lines.join("\n")))
        }
        other => Failure::input(format!("{name}: {other}")),
    }
}

fn validate(file: &Path) -> Result<(), Failure> {
    load(file)?;
    let _ = writeln!(std::io::stdout(), "valid");
    Ok(())
}

/// The most replicas an object given to `simulate --cluster` may ask for: the in-memory cluster
/// runs every pod (and its probes) second by second, so its work grows with the replicas.
const MAX_CLUSTER_REPLICAS: u64 = 100;

/// Refuses cluster objects whose `spec.replicas` is not a count of at most
/// [`MAX_CLUSTER_REPLICAS`], naming the object.
fn check_cluster_replicas(objects: &canary::k8s::objects::Objects) -> Result<(), Failure> {
    for object in objects.iter() {
        let Some(replicas) = object.pointer("/spec/replicas") else {
            continue;
        };
        if replicas
            .as_u64()
            .is_none_or(|count| count > MAX_CLUSTER_REPLICAS)
        {
            return Err(Failure::input(format!(
                "{}: spec.replicas {replicas} is not within 0..={MAX_CLUSTER_REPLICAS} (the most \
                 a simulated cluster runs)",
                canary::k8s::objects::describe(object)
            )));
        }
    }
    Ok(())
}

fn simulate(args: &SimulateArgs) -> Result<(), Failure> {
    let (plan, mut objects) = load_with_objects(&args.file)?;
    for path in &args.objects {
        objects.extend(render::read_objects(path)?.iter().cloned());
    }
    let pod_startup = parse_duration(&args.pod_startup)
        .map_err(|e| Failure::input(format!("--pod-startup: {e}")))?;
    let approve_after = match args.approve_after.as_str() {
        "never" => None,
        text => Some(
            parse_duration(text).map_err(|e| Failure::input(format!("--approve-after: {e}")))?,
        ),
    };
    let config = SimConfig {
        rps: args.rps,
        baseline_error_rate: args.baseline_error_rate,
        canary_error_rate: args.canary_error_rate,
        canary_latency_ms: args.canary_latency_ms,
        seed: args.seed,
        approve_after,
        pod_startup,
        ..SimConfig::default()
    };
    let gitops = match &args.gitops {
        Some(tool) => {
            let tool = tool
                .parse::<canary::kube::simulate::GitOpsTool>()
                .map_err(|e| Failure::input(format!("--gitops: {e}")))?;
            let interval = parse_duration(&args.gitops_interval)
                .map_err(|e| Failure::input(format!("--gitops-interval: {e}")))?;
            let ignore = args
                .gitops_ignore
                .iter()
                .map(|rule| rule.parse::<canary::kube::simulate::Ignored>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Failure::input(format!("--gitops-ignore: {e}")))?;
            Some(
                canary::kube::simulate::GitOps::new(tool, interval)
                    .and_then(|gitops| gitops.ignoring(ignore))
                    .map_err(|e| Failure::input(e.to_string()))?,
            )
        }
        None => None,
    };
    if args.cluster {
        check_cluster_replicas(&objects)?;
    }
    let simulation = Simulation::new(&plan, config.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            message: format!("cannot start the runtime: {e}"),
            code: 1,
        })?;
    let report = if args.cluster {
        runtime
            .block_on(canary::cluster::simulate(
                &plan,
                &objects,
                config.clone(),
                gitops,
            ))
            .map_err(|error| match error {
                canary::kube::Error::Refused(_)
                | canary::kube::Error::Unusable(_)
                | canary::kube::Error::Core(Error::Simulation(_)) => {
                    Failure::input(error.to_string())
                }
                other => Failure {
                    message: other.to_string(),
                    code: 1,
                },
            })?
    } else {
        runtime
            .block_on(simulation.run())
            .map_err(|error| match error {
                Error::Simulation(message) => Failure::input(message),
                other => Failure {
                    message: other.to_string(),
                    code: 1,
                },
            })?
    };
    if let Some(out) = &args.svg {
        chart::write_svg(out, &plan, &report).map_err(|e| Failure {
            message: format!("{}: {e}", out.display()),
            code: 1,
        })?;
    }
    let unsimulated = simulation.unsimulated_metrics();
    let mut out = std::io::stdout().lock();
    let printed = if args.json {
        timeline::print_json(&mut out, &report)
    } else {
        timeline::print_text(&mut out, &plan, &config, &unsimulated, &report).and_then(|()| {
            match &args.svg {
                Some(svg) => writeln!(out, "chart written to {}", svg.display()),
                None => Ok(()),
            }
        })
    };
    match printed {
        // A reader that stops early (`| head`) is not an error.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure {
            message: format!("cannot write the timeline: {error}"),
            code: 1,
        }),
        _ => Ok(()),
    }
}
