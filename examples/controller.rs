//! The canary controller:
//! `cargo run --features controller --example controller -- --prometheus http://prometheus:9090`.
//!
//! It watches Rollouts in every namespace (or those given with `--namespace`), routes each with the provider it names
//! ([`canary::cluster::ClusterTraffic`]), runs one replica at a time through a Lease, serves its
//! metrics on `--metrics 0.0.0.0:9000` at `/metrics`, and logs to stderr (`RUST_LOG`, default
//! `info`). `--memory-traffic` keeps routes in memory instead (real workloads, no traffic split),
//! for trying it on a cluster without a mesh.
//!
//! Leadership follows client-go's leader election (see `canary::kube::leader`): a replica that
//! cannot renew the lease within its renew deadline stops at once, its passes in flight dropped,
//! and the process exits with an error for the kubelet to restart it. On SIGTERM or Ctrl-C it
//! stops taking work, gives passes in flight `--shutdown-grace` (10 s) to end, drops the rest,
//! and releases the lease so another replica takes over at once.
//!
//! Passes read from watch caches (`canary::kube::cache`). `--shard I/N` reconciles one N-th of
//! the Rollouts under a Lease of its own: run N of these, one per I, to split the work.
//!
//! With `--webhook 0.0.0.0:9443 --webhook-cert /tls/tls.crt --webhook-key /tls/tls.key` every
//! replica, leading or not, also serves the admission webhook that holds a stable Deployment in
//! the request that changes its template (`deploy/webhook.yaml`), until the controller stops.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary::analysis::destinations::Destinations;
use canary::analysis::prometheus::PrometheusMetrics;
use canary::analysis::webhooks::HttpWebhooks;
use canary::cluster::ClusterTraffic;
use canary::engine::providers::{Clock, SystemClock};
use canary::kube::controller::{Context, TrafficFactory, run};
use canary::kube::leader::{LeaderElection, SteadyClock};
use canary::kube::metrics::Metrics;
use canary::kube::shard::Shard;
use canary::kube::traffic::MemoryTraffic;
use canary::kube::webhook::{HOLD_PATH, WebhookServer};
use clap::Parser;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// The canary controller.
#[derive(Parser)]
struct Args {
    /// The Prometheus server for builtin metrics.
    #[arg(long)]
    prometheus: Option<String>,
    /// Where to serve `/metrics`.
    #[arg(long, default_value = "0.0.0.0:9000")]
    metrics: String,
    /// Watch only this namespace (repeat for more; every namespace when absent). Pair with
    /// `deploy/rbac-namespaced.yaml`: Roles in these namespaces only.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Rollouts may name Prometheus servers under this URL prefix (repeatable; none when
    /// absent: only the `--prometheus` server is asked). See SECURITY.md.
    #[arg(long = "allow-prometheus")]
    allow_prometheus: Vec<String>,
    /// Rollouts may name webhooks under this URL prefix (repeatable; none when absent).
    #[arg(long = "allow-webhook")]
    allow_webhook: Vec<String>,
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
    /// Reconcile only shard INDEX/COUNT of the Rollouts (by a stable hash of namespace and
    /// name), under a Lease of its own (`canary-controller-shard-INDEX-of-COUNT`): run COUNT
    /// Deployments, one per index, to split the Rollouts between them.
    #[arg(long)]
    shard: Option<Shard>,
    /// Seconds passes in flight get to end on SIGTERM before they are dropped (keep it below
    /// the pod's `terminationGracePeriodSeconds`, 30 by default).
    #[arg(long, default_value_t = 10)]
    shutdown_grace: u64,
}

/// The leader-election Lease's name.
const LEASE: &str = "canary-controller";

/// How long the webhook server gets to stop, and the lease to be released, on the way out.
const STEP_DOWN: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    // Listening from the start: a SIGTERM is never missed nor left to its default action.
    let terminating = watch_termination();
    let client = Client::try_default().await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let destinations = Destinations::new(
        args.allow_prometheus.iter().map(String::as_str),
        args.allow_webhook.iter().map(String::as_str),
    )?;
    // A redirect is never followed: an allowed address cannot send the request elsewhere.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut measurements = PrometheusMetrics::new(http.clone());
    if let Some(address) = &args.prometheus {
        measurements = measurements.with_default_address(address);
    }
    let traffic: Arc<dyn TrafficFactory> = if args.memory_traffic {
        Arc::new(MemoryTraffic::new(clock.clone()))
    } else {
        Arc::new(ClusterTraffic::new())
    };
    // Every replica answers the webhook: the API server calls any pod behind its Service.
    let (stop_webhook, webhook_stopped) = watch::channel(false);
    let webhook = match (args.webhook, &args.webhook_cert, &args.webhook_key) {
        (Some(address), Some(cert), Some(key)) => {
            let server = WebhookServer::bind(address, cert, key).await?;
            tracing::info!(
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
        if let Some(mut webhook) = webhook
            && tokio::time::timeout(STEP_DOWN, &mut webhook).await.is_err()
        {
            tracing::warn!("the webhook server did not stop in time; dropped");
            webhook.abort();
        }
    };
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let listener = tokio::net::TcpListener::bind(&args.metrics).await?;
    tokio::spawn(serve_metrics(
        listener,
        Arc::new(Mutex::new(registry)),
        Limits::default(),
    ));
    let mut context = Context::new(
        client.clone(),
        traffic,
        Arc::new(measurements),
        Arc::new(HttpWebhooks::new(http)),
        clock.clone(),
        metrics,
        "canary-controller",
    )
    .with_destinations(destinations);
    if let Some(shard) = args.shard {
        context = context.with_shard(shard);
    }
    let context = Arc::new(context);
    let lease = Shard::lease(args.shard, LEASE);
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("canary-{}", std::process::id()));
    // Terms are timed on a clock a step of the system time cannot move (15 s lease, 10 s renew
    // deadline, 2 s retry period).
    let steady = SteadyClock::new();
    let election = LeaderElection::new(
        client,
        &args.lease_namespace,
        &lease,
        &identity,
        Duration::from_secs(15),
    );
    let term = tokio::select! {
        term = election.acquire(&steady) => term,
        () = terminated(terminating.clone()) => {
            tracing::info!("stopping before leading");
            stop(webhook).await;
            return Ok(());
        }
    };
    tracing::info!(%identity, "leading; reconciling Rollouts");
    let grace = Duration::from_secs(args.shutdown_grace);
    let namespaces = args.namespaces.clone();
    let (stop_controller, controller_stopped) = watch::channel(false);
    let controller = async move {
        let mut stopped = controller_stopped;
        let running = run(context, namespaces, async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        });
        tokio::pin!(running);
        tokio::select! {
            () = &mut running => return,
            () = terminated(terminating) => {}
        }
        tracing::info!(
            ?grace,
            "stopping: no new passes; those in flight get the grace period"
        );
        let _ = stop_controller.send(true);
        if tokio::time::timeout(grace, running).await.is_err() {
            tracing::warn!("passes still in flight after the grace period are dropped");
        }
    };
    // The controller runs only while the lease is kept: the moment the renew deadline passes
    // without a renewal, it is dropped with every pass in flight (kube's controller aborts the
    // tasks of the passes it runs when it is dropped).
    let outcome = election.while_leading(&steady, term, controller).await;
    if let Err(lost) = &outcome {
        tracing::error!(%lost, "lost the lease; stopped acting");
    }
    // Nothing acts under the lease any more: release it so another replica takes over now.
    match tokio::time::timeout(STEP_DOWN, election.step_down()).await {
        Ok(Ok(())) => tracing::info!("released the lease"),
        Ok(Err(error)) => tracing::warn!(%error, "cannot release the lease; it expires"),
        Err(_) => tracing::warn!("releasing the lease timed out; it expires"),
    }
    stop(webhook).await;
    outcome.map_err(|lost| format!("lost the lease: {lost}").into())
}

/// Becomes true, for good, on the first SIGTERM (what the kubelet sends) or Ctrl-C.
fn watch_termination() -> watch::Receiver<bool> {
    let (tell, told) = watch::channel(false);
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    tokio::spawn(async move {
        #[cfg(unix)]
        if let Ok(mut terminate) = terminate {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            let _ = tell.send(true);
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
        let _ = tell.send(true);
    });
    told
}

/// Completes once termination was asked for (at once if it was already).
async fn terminated(mut terminating: watch::Receiver<bool>) {
    if terminating.wait_for(|asked| *asked).await.is_err() {
        // No signal can be received: never terminated by one.
        std::future::pending::<()>().await;
    }
}

/// What one `/metrics` connection may take.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Connections served at once; more are closed unanswered.
    connections: usize,
    /// Time to send the request head, and to take the answer.
    timeout: Duration,
    /// Largest request head, in bytes.
    request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 32,
            timeout: Duration::from_secs(5),
            request: 8 * 1024,
        }
    }
}

/// Serves the registry in the Prometheus text format at `/metrics`, each connection in its own
/// task within `limits`, so an idle or slow client holds up no one else.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<Mutex<Registry>>,
    limits: Limits,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // E.g. out of file descriptors: wait rather than spin.
                tracing::warn!(%error, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(error) = answer(stream, &registry, limits).await {
                tracing::debug!(%error, "a metrics connection failed");
            }
        });
    }
}

/// Answers one connection: one request, then closes it.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    registry: &Mutex<Registry>,
    limits: Limits,
) -> std::io::Result<()> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "metrics client too slow");
    let head = tokio::time::timeout(limits.timeout, read_head(&mut stream, limits.request))
        .await
        .map_err(|_| timed_out())??;
    let response = response(head.as_deref(), || {
        let mut body = String::new();
        if let Ok(registry) = registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
        }
        body
    });
    tokio::time::timeout(limits.timeout, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| timed_out())?
}

/// The request head (up to its blank line, or what came before the client stopped sending);
/// `None` once it passes `limit` bytes.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).await?;
        head.extend_from_slice(chunk.get(..read).unwrap_or_default());
        if head.len() > limit {
            return Ok(None);
        }
        if read == 0 || head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(head));
        }
    }
}

/// The whole HTTP response to a request head (`None`: too large); `metrics` makes the body.
fn response(head: Option<&[u8]>, metrics: impl FnOnce() -> String) -> String {
    let Some(head) = head else {
        return plain("431 Request Header Fields Too Large", "request too large\n");
    };
    let line = head
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()
        .unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    if method != b"GET" {
        return plain("405 Method Not Allowed", "only GET\n");
    }
    if path != b"/metrics" {
        return plain("404 Not Found", "see /metrics\n");
    }
    let body = metrics();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; \
         charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A short plain-text answer with `status`.
fn plain(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    async fn server(limits: Limits) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut registry = Registry::default();
        let _metrics = Metrics::register(&mut registry);
        tokio::spawn(serve_metrics(
            listener,
            Arc::new(Mutex::new(registry)),
            limits,
        ));
        address
    }

    async fn get(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn an_idle_connection_holds_up_no_one() {
        let address = server(Limits::default()).await;
        let _idle = tokio::net::TcpStream::connect(address).await.unwrap();
        let _half = {
            let mut half = tokio::net::TcpStream::connect(address).await.unwrap();
            half.write_all(b"GET /metr").await.unwrap();
            half
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            get(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await
        .expect("answered while two connections sit idle");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("canary_reconciles_total"), "{answer}");
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_timeout() {
        let limits = Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let address = server(limits).await;
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), idle.read_to_end(&mut rest))
            .await
            .expect("closed by the server");
        assert!(read.is_ok_and(|n| n == 0), "closed without an answer");
    }

    #[tokio::test]
    async fn a_request_past_the_size_limit_is_refused_unread() {
        let (mut client, mut server) = tokio::io::duplex(1024 * 1024);
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
        client.write_all(&huge).await.unwrap();
        assert_eq!(read_head(&mut server, 8 * 1024).await.unwrap(), None);
        let mut left = Vec::new();
        drop(client);
        server.read_to_end(&mut left).await.unwrap();
        assert!(left.len() > 50 * 1024, "stopped reading past the limit");
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_not_queued() {
        let limits = Limits {
            connections: 1,
            ..Limits::default()
        };
        let address = server(limits).await;
        let _idle = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), second.read_to_end(&mut answer))
            .await
            .expect("closed at once");
        assert!(
            read.is_err() || answer.is_empty(),
            "no slot: closed unanswered"
        );
    }

    #[test]
    fn only_get_of_metrics_is_answered_with_metrics() {
        let body = || "m 1\n".to_owned();
        assert!(response(Some(b"GET /metrics HTTP/1.1\r\n\r\n"), body).ends_with("\r\n\r\nm 1\n"));
        assert!(
            response(Some(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"), body).starts_with("HTTP/1.1 200")
        );
        assert!(response(Some(b"GET / HTTP/1.1\r\n\r\n"), body).starts_with("HTTP/1.1 404"));
        assert!(
            response(Some(b"POST /metrics HTTP/1.1\r\n\r\n"), body).starts_with("HTTP/1.1 405")
        );
        assert!(response(Some(b""), body).starts_with("HTTP/1.1 405"));
        assert!(response(None, body).starts_with("HTTP/1.1 431"));
    }
}
