//! The canary controller:
//! `cargo run --features controller --example controller -- --prometheus http://prometheus:9090`.
//!
//! It watches Rollouts in every namespace, routes each with the provider it names
//! ([`canary::cluster::ClusterTraffic`]), runs one replica at a time through a Lease, serves its
//! metrics on `--metrics 0.0.0.0:9000` at `/metrics`, and shuts down gracefully on SIGTERM or
//! Ctrl-C. `--memory-traffic` keeps routes in memory instead (real workloads, no traffic split),
//! for trying it on a cluster without a mesh.
//!
//! With `--webhook 0.0.0.0:9443 --webhook-cert /tls/tls.crt --webhook-key /tls/tls.key` every
//! replica, leading or not, also serves the admission webhook that holds a stable Deployment in
//! the request that changes its template (`deploy/webhook.yaml`), until the controller stops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary::cluster::ClusterTraffic;
use canary::kube::controller::{Context, TrafficFactory, run};
use canary::kube::leader::LeaderElection;
use canary::kube::metrics::Metrics;
use canary::kube::traffic::MemoryTraffic;
use canary::kube::webhook::{HOLD_PATH, WebhookServer};
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
    /// Serve the admission webhook that holds stable Deployments on this address (HTTPS, path
    /// `/hold`), e.g. `0.0.0.0:9443`.
    #[arg(long, requires_all = ["webhook_cert", "webhook_key"])]
    webhook: Option<SocketAddr>,
    /// The webhook's PEM certificate chain, read again when it changes (e.g. `/tls/tls.crt`).
    #[arg(long, requires = "webhook")]
    webhook_cert: Option<PathBuf>,
    /// The webhook's PEM private key (e.g. `/tls/tls.key`).
    #[arg(long, requires = "webhook")]
    webhook_key: Option<PathBuf>,
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
    // Every replica answers the webhook: the API server calls any pod behind its Service.
    let (stop_webhook, webhook_stopped) = tokio::sync::watch::channel(false);
    let webhook = match (args.webhook, &args.webhook_cert, &args.webhook_key) {
        (Some(address), Some(cert), Some(key)) => {
            let server = WebhookServer::bind(address, cert, key).await?;
            eprintln!(
                "serving the admission webhook on https://{}{HOLD_PATH}",
                server.local_addr()?
            );
            let mut stopped = webhook_stopped.clone();
            let stopped = async move {
                let _ = stopped.wait_for(|stopped| *stopped).await;
            };
            Some(tokio::spawn(
                server.serve(Arc::new(client.clone()), stopped),
            ))
        }
        _ => None,
    };
    let stop = |webhook: Option<tokio::task::JoinHandle<()>>| async move {
        let _ = stop_webhook.send(true);
        if let Some(webhook) = webhook {
            let _ = webhook.await;
        }
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
    let lead = async {
        loop {
            if election.try_lead(&*clock).await? {
                return Ok::<_, Box<dyn std::error::Error>>(());
            }
            tokio::time::sleep(election.renew_every()).await;
        }
    };
    tokio::select! {
        led = lead => led?,
        () = terminated() => {
            eprintln!("stopping");
            stop(webhook).await;
            return Ok(());
        }
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
            () = terminated() => eprintln!("stopping"),
            _ = lost_rx => eprintln!("lost the lease; stopping"),
        }
    };
    run(context, shutdown).await;
    renewer.abort();
    stop(webhook).await;
    Ok(())
}

/// Completes on SIGTERM (what the kubelet sends) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
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
