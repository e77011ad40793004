//! `canaryctl`: watch and steer Rollouts in a cluster (the current kubeconfig context).
//!
//! ```text
//! cargo run --example canaryctl -- status -n demo --watch
//! cargo run --example canaryctl -- promote reviews -n demo [--full]
//! cargo run --example canaryctl -- abort | retry | pause | resume | skip NAME -n NS
//! ```

use std::process::ExitCode;

use canary_core::Command;
use canary_kube::crd::Rollout;
use canary_kube::ctl;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

/// Watch and steer canary Rollouts.
#[derive(Parser)]
#[command(name = "canaryctl", version)]
struct Cli {
    /// The namespace (default: the kubeconfig's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// A table of Rollouts; `--watch` prints a line whenever one changes.
    Status {
        /// Only this Rollout.
        name: Option<String>,
        /// Keep watching.
        #[arg(short, long)]
        watch: bool,
    },
    /// Complete the current step now (`--full`: skip every remaining step and promote).
    Promote {
        /// The Rollout.
        name: String,
        /// Promote at once.
        #[arg(long)]
        full: bool,
    },
    /// Roll back: all traffic to stable, canary removed.
    Abort {
        /** The Rollout. */
        name: String,
    },
    /// Start a failed release again.
    Retry {
        /** The Rollout. */
        name: String,
    },
    /// Hold the Rollout at its step.
    Pause {
        /** The Rollout. */
        name: String,
    },
    /// Undo `pause`.
    Resume {
        /** The Rollout. */
        name: String,
    },
    /// Move to the next step at once.
    Skip {
        /** The Rollout. */
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("canaryctl: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::try_default().await?;
    let api: Api<Rollout> = match &cli.namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::default_namespaced(client),
    };
    let (name, command) = match cli.command {
        Commands::Status { name, watch } => return status(&api, name, watch).await,
        Commands::Promote { name, full } => (
            name,
            if full {
                Command::PromoteFull
            } else {
                Command::Promote
            },
        ),
        Commands::Abort { name } => (name, Command::Abort),
        Commands::Retry { name } => (name, Command::Retry),
        Commands::Pause { name } => (name, Command::Pause),
        Commands::Resume { name } => (name, Command::Resume),
        Commands::Skip { name } => (name, Command::Skip),
    };
    let id = u64::try_from(jiff::Timestamp::now().as_millisecond())?;
    ctl::send(&api, &name, command, id).await?;
    println!("rollout.canary.rs/{name}: {} sent", command.name());
    Ok(())
}

async fn status(
    api: &Api<Rollout>,
    name: Option<String>,
    watch: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let fields = name.map(|name| format!("metadata.name={name}"));
    println!("{}", ctl::HEADER);
    if !watch {
        let mut params = kube::api::ListParams::default();
        if let Some(fields) = &fields {
            params = params.fields(fields);
        }
        for rollout in api.list(&params).await? {
            println!("{}", ctl::row(&rollout));
        }
        return Ok(());
    }
    let mut config = watcher::Config::default();
    if let Some(fields) = &fields {
        config = config.fields(fields);
    }
    let mut changes = watcher(api.clone(), config).applied_objects().boxed();
    while let Some(rollout) = changes.next().await {
        println!("{}", ctl::row(&rollout?));
    }
    Ok(())
}
