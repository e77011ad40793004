//! The controller at scale: N Rollouts (with their Deployments and Services) in the in-memory
//! Kubernetes API test server, reconciled by the real controller (`canary_kube::controller::run`,
//! Istio routing). It lets them settle, counts the API requests of an idle window by verb
//! (every Rollout is looked at again every `--resync` within it, so the window holds passes),
//! then edits `--edits` stable Deployments one after another and times each edit until the
//! canary Deployment exists.
//!
//! `cargo run --release --features controller,test-util --example controller_scale -- --rollouts 1000 [--json]`
//!
//! The API test server (with its simulated kube-controller-manager) runs in a child process,
//! as an API server does: `rss_mib` is the controller's process alone, `server_rss_mib` the
//! server's (likewise `idle_cpu_pct` and `server_idle_cpu_pct`, the share of one core each used
//! in the idle window). With `--uncached`, every pass reads its objects from the API server, as the
//! controller did before watch caches (the watches only wake it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use canary::cluster::ClusterTraffic;
use canary::engine::machine::MetricOutcome;
use canary::engine::memory::{InMemoryMetrics, InMemoryWebhooks};
use canary::engine::providers::SystemClock;
use canary::kube::controller::{Context, run};
use canary::kube::fixtures::TestCluster;
use canary::kube::metrics::Metrics;
use clap::Parser;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// How many Rollouts.
    #[arg(long, default_value_t = 1000)]
    rollouts: usize,
    /// Across how many namespaces.
    #[arg(long, default_value_t = 10)]
    namespaces: usize,
    /// How many stable Deployments to edit, one after another, for the reaction time.
    #[arg(long, default_value_t = 20)]
    edits: usize,
    /// How often an idle Rollout is looked at again (seconds).
    #[arg(long, default_value_t = 10)]
    resync: u64,
    /// The idle window (seconds).
    #[arg(long, default_value_t = 20)]
    idle: u64,
    /// Read every object from the API server in every pass (no watch caches).
    #[arg(long)]
    uncached: bool,
    /// End with one line of JSON.
    #[arg(long)]
    json: bool,
    /// Serve the API test server with the objects, answering commands on stdin (the child
    /// process).
    #[arg(long, hide = true)]
    serve: bool,
}

fn namespace(namespaces: usize, i: usize) -> String {
    format!("team-{}", i % namespaces.max(1))
}

fn objects(namespace: &str, name: &str) -> [Value; 3] {
    [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0.0"}]}}}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
               "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "appProtocol": "http"}]}}),
        json!({"apiVersion": "canary.rs/v1alpha1", "kind": "Rollout", "metadata": {"name": name, "namespace": namespace},
               "spec": {"workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                        "service": {"name": name, "port": 80},
                        "trafficRouting": {"istio": {}},
                        "strategy": {"canary": {"stepWeight": 20, "maxWeight": 60}},
                        "analysis": {"interval": "1m", "metrics": [
                            {"name": "request-success-rate", "thresholdRange": {"min": 99}}]}}}),
    ]
}

/// The resident set size of this process, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The CPU time this process has used (user and system), in seconds.
fn cpu_s() -> f64 {
    // /proc/self/stat: fields 14 and 15 (utime, stime) in clock ticks, counted after the
    // command name's closing parenthesis; the tick is 100 Hz on Linux.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The child: the API test server with the objects, and a line protocol on stdin/stdout
/// (`clear`, `requests`, `settled`, `exists NS NAME`, `rss`, `cpu`); the first line out is its URL.
async fn serve(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::start(Duration::from_millis(500)).await;
    for i in 0..args.rollouts {
        for object in objects(&namespace(args.namespaces, i), &format!("app-{i}")) {
            cluster.put(object);
        }
    }
    println!("{}", cluster.server.url());
    let server = cluster.server.clone();
    tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words.as_slice() {
                ["clear"] => {
                    server.clear_requests();
                    json!("ok")
                }
                ["requests"] => {
                    let mut by_verb: BTreeMap<String, usize> = BTreeMap::new();
                    let mut by_resource: BTreeMap<String, usize> = BTreeMap::new();
                    for request in server.requests() {
                        *by_verb.entry(format!("{:?}", request.verb)).or_default() += 1;
                        let parts: Vec<&str> = request.path.split('/').collect();
                        let plural = match parts.iter().position(|p| *p == "namespaces") {
                            Some(i) => parts.get(i + 2).copied().unwrap_or("namespaces"),
                            None => parts
                                .get(parts.len().saturating_sub(2))
                                .copied()
                                .unwrap_or(""),
                        };
                        *by_resource
                            .entry(format!("{:?} {plural}", request.verb))
                            .or_default() += 1;
                    }
                    json!({"by_verb": by_verb, "by_resource": by_resource})
                }
                ["settled"] => {
                    let rollouts = |predicate: fn(&Value) -> bool| {
                        server.count("canary.rs/v1alpha1", "Rollout", predicate)
                    };
                    let adopted = rollouts(|r| r["status"]["phase"] == "Initialized");
                    let seen = rollouts(|r| !r["status"].is_null());
                    json!({"adopted": adopted, "reconciled": seen})
                }
                ["exists", ns, name] => json!(
                    server
                        .get("apps/v1", "Deployment", Some(ns), name)
                        .is_some()
                ),
                ["rss"] => json!(rss_mib()),
                ["cpu"] => json!(cpu_s()),
                _ => json!(null),
            };
            println!("{answer}");
        }
    })
    .await?;
    Ok(())
}

/// The parent's end of the child's line protocol.
struct Server {
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Server {
    fn ask(&mut self, command: &str) -> Result<Value, Box<dyn std::error::Error>> {
        writeln!(self.input, "{command}")?;
        let mut line = String::new();
        self.output.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.serve {
        return serve(&args).await;
    }
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--serve",
            "--rollouts",
            &args.rollouts.to_string(),
            "--namespaces",
            &args.namespaces.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut server = Server {
        input: child.stdin.take().ok_or("no stdin")?,
        output: BufReader::new(child.stdout.take().ok_or("no stdout")?),
    };
    let mut url = String::new();
    server.output.read_line(&mut url)?;
    let seeded = started.elapsed();
    let client = kube::Client::try_from(kube::Config::new(url.trim().parse()?))?;

    let metrics = InMemoryMetrics::default();
    metrics.set("request-success-rate", MetricOutcome::Value(99.9));
    let mut context = Context::new(
        client.clone(),
        Arc::new(ClusterTraffic::new()),
        Arc::new(metrics),
        Arc::new(InMemoryWebhooks::default()),
        Arc::new(SystemClock),
        Metrics::register(&mut prometheus_client::registry::Registry::default()),
        "canary-scale",
    )
    .with_resync(Duration::from_secs(args.resync));
    if args.uncached {
        context = context.without_cache();
    }
    let passes = Arc::new(AtomicUsize::new(0));
    let counted = passes.clone();
    context = context.with_observer(Arc::new(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run(Arc::new(context), Vec::new(), async {
        let _ = stopped.await;
    }));

    // Settled: every Rollout has adopted its stable Deployment.
    let deadline =
        Instant::now() + Duration::from_secs(60) + Duration::from_millis(50) * args.rollouts as u32;
    let mut progress = Instant::now();
    loop {
        let settled = server.ask("settled")?;
        if settled["adopted"] == args.rollouts {
            break;
        }
        if progress.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {} adopted, {} reconciled",
                settled["adopted"], settled["reconciled"]
            );
            progress = Instant::now();
        }
        if Instant::now() > deadline {
            return Err(format!("not settled: {settled}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let settled = started.elapsed() - seeded;
    // Passes in flight end, and the lasting watches are up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.ask("clear")?;
    let passes_before = passes.load(Ordering::Relaxed);
    let cpu_before = (cpu_s(), server.ask("cpu")?.as_f64().unwrap_or(f64::NAN));
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let idle = server.ask("requests")?;
    let busy = |before: f64, after: f64| (after - before) / args.idle as f64 * 100.0;
    let cpu = busy(cpu_before.0, cpu_s());
    let server_cpu = busy(
        cpu_before.1,
        server.ask("cpu")?.as_f64().unwrap_or(f64::NAN),
    );
    let idle_passes = passes.load(Ordering::Relaxed) - passes_before;
    let by_verb: BTreeMap<String, usize> = serde_json::from_value(idle["by_verb"].clone())?;
    let total: usize = by_verb.values().sum();
    let idle_gets = by_verb.get("Get").copied().unwrap_or(0);
    let idle_per_s = total as f64 / args.idle as f64;
    let rss = rss_mib();

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
    let mut reactions = Vec::new();
    let step = (args.rollouts / args.edits.max(1)).max(1);
    for i in (0..args.rollouts).step_by(step).take(args.edits) {
        let (ns, name) = (namespace(args.namespaces, i), format!("app-{i}"));
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.1.0"}]}}}});
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &resource)
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await?;
        let edited = Instant::now();
        let canary = format!("exists {ns} {name}-canary");
        loop {
            if server.ask(&canary)? == json!(true) {
                reactions.push(edited.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if edited.elapsed() > Duration::from_secs(60) {
                return Err(format!("no canary for {ns}/{name} after 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    reactions.sort_by(f64::total_cmp);
    let server_rss = server.ask("rss")?.as_f64().unwrap_or(f64::NAN);
    let _ = stop.send(());
    let _ = controller.await;
    drop(server);
    let _ = child.kill();
    let _ = child.wait();

    let mode = if args.uncached {
        "per-pass reads"
    } else {
        "watch caches"
    };
    println!(
        "{} Rollouts in {} namespaces, {mode}, resync {} s",
        args.rollouts, args.namespaces, args.resync
    );
    println!(
        "  seeded in {:.1} s, adopted by the controller in {:.1} s",
        seeded.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!(
        "  idle window {} s: {idle_passes} passes, {total} requests ({idle_per_s:.1}/s)",
        args.idle
    );
    if let Some(by_resource) = idle["by_resource"].as_object() {
        for (what, count) in by_resource {
            println!("    {what:<28} {count:>8}");
        }
    }
    println!(
        "  edit -> canary Deployment over {} edits: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        reactions.len(),
        percentile(&reactions, 50.0),
        percentile(&reactions, 99.0),
        reactions.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  CPU at idle (% of one core): controller {cpu:.0}%, API test server {server_cpu:.0}%"
    );
    println!("  RSS: controller {rss:.0} MiB, API test server {server_rss:.0} MiB");
    if args.json {
        println!(
            "{}",
            json!({
                "rollouts": args.rollouts,
                "cached": !args.uncached,
                "idle_requests_per_s": (idle_per_s * 100.0).round() / 100.0,
                "idle_gets": idle_gets,
                "idle_passes": idle_passes,
                "idle_requests": by_verb,
                "reaction_p50_ms": percentile(&reactions, 50.0).round(),
                "reaction_p99_ms": percentile(&reactions, 99.0).round(),
                "rss_mib": rss.round(),
                "server_rss_mib": server_rss.round(),
                "idle_cpu_pct": cpu.round(),
                "server_idle_cpu_pct": server_cpu.round(),
                "settle_s": (settled.as_secs_f64() * 10.0).round() / 10.0,
            })
        );
    }
    Ok(())
}
