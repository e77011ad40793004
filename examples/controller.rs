//! The canary controller:
//! `cargo run --features controller --example controller -- --prometheus http://prometheus:9090`.
//!
//! It watches Rollouts in every namespace, routes each with the provider it names
//! ([`canary::cluster::ClusterTraffic`]), runs one replica at a time through a Lease, serves its
//! metrics on `--metrics 0.0.0.0:9000` at `/metrics`, and shuts down gracefully on SIGTERM or
//! Ctrl-C. `--memory-traffic` keeps routes in memory instead (real workloads, no traffic split),
//! for trying it on a cluster without a mesh.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary::cluster::ClusterTraffic;
use canary::kube::controller::{Context, TrafficFactory, run};
use canary::kube::leader::LeaderElection;
use canary::kube::metrics::Metrics;
use canary::kube::traffic::MemoryTraffic;
use canary::prometheus::PrometheusMetrics;
use canary::providers::{Clock, SystemClock};
use canary::webhooks::HttpWebhooks;
use clap::Parser;
use kube::Client;
use prometheus_client::registry::Registry;

/// The canary controller.
#[derive(Parser)]
struct Args {
    /// The Prometheus server for builtin metrics.
    #[arg(long)]
    prometheus: Option<String>,
    /// Where to serve `/metrics`.
    #[arg(long, default_value = "0.0.0.0:9000")]
    metrics: String,
    /// The namespace of the leader-election Lease.
    #[arg(long, default_value = "canary-system")]
    lease_namespace: String,
    /// Keep routes in memory (no traffic split): for trying the controller without a mesh.
    #[arg(long)]
    memory_traffic: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = Client::try_default().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let http = reqwest::Client::builder().build()?;
    let mut measurements = PrometheusMetrics::new(http.clone());
    if let Some(address) = &args.prometheus {
        measurements = measurements.with_default_address(address);
    }
    let traffic: Arc<dyn TrafficFactory> = if args.memory_traffic {
        Arc::new(MemoryTraffic::new(clock.clone()))
    } else {
        Arc::new(ClusterTraffic::new(client.clone()))
    };
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    serve_metrics(&args.metrics, Arc::new(Mutex::new(registry)))?;
    let context = Arc::new(Context::new(
        client.clone(),
        traffic,
        Arc::new(measurements),
        Arc::new(HttpWebhooks::new(http)),
        clock.clone(),
        metrics,
        "canary-controller",
    ));
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("canary-{}", std::process::id()));
    let election = LeaderElection::new(
        client,
        &args.lease_namespace,
        "canary-controller",
        &identity,
        Duration::from_secs(15),
    );
    loop {
        if election.try_lead(&*clock).await? {
            break;
        }
        tokio::time::sleep(election.renew_every()).await;
    }
    eprintln!("{identity} leads; reconciling Rollouts");
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let renewer = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(election.renew_every()).await;
                if !matches!(election.try_lead(&*clock).await, Ok(true)) {
                    let _ = lost_tx.send(());
                    return election;
                }
            }
        })
    };
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
            _ = lost_rx => eprintln!("lost the lease; stopping"),
        }
    };
    run(context, shutdown).await;
    renewer.abort();
    Ok(())
}

/// Serves the registry in the Prometheus text format, on a thread.
fn serve_metrics(address: &str, registry: Arc<Mutex<Registry>>) -> std::io::Result<()> {
    let listener = TcpListener::bind(address)?;
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let mut body = String::new();
            if let Ok(registry) = registry.lock() {
                let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8";
            let _ = write!(
                stream,
                "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}
