//! A real Prometheus server for tests (the Debian `prometheus` binary) on a free loopback port,
//! scraping an exporter that serves Istio's request metrics for live synthetic traffic.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canary_core::engine::memory::InMemoryTraffic;

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let unique = format!("canary-{name}-{}-{}", std::process::id(), free_port());
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A binary of the Prometheus package (`prometheus`, `promtool`): next to `$CANARY_PROMETHEUS`
/// when that is set, else on the PATH.
pub fn binary(name: &str) -> PathBuf {
    if let Ok(path) = std::env::var("CANARY_PROMETHEUS") {
        return PathBuf::from(path).with_file_name(name);
    }
    let found = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.flatten().unwrap_or_else(|| {
        panic!("the {name} binary is missing: `bash scripts/test` installs it (Debian package `prometheus`)")
    })
}

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    pub address: String,
    child: Child,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every second; `web_config` is the content of a
    /// `--web.config.file` (TLS), if any. Waits until it is ready.
    pub fn start(targets: &[String], web_config: Option<&str>) -> Self {
        Self::launch(targets, "1s", web_config, None)
    }

    /// Starts Prometheus on the samples of `openmetrics` (an OpenMetrics text with timestamps,
    /// turned into blocks by `promtool tsdb create-blocks-from openmetrics`), scraping nothing.
    pub fn backfilled(openmetrics: &str) -> Self {
        Self::launch(&[], "1s", None, Some(openmetrics))
    }

    /// Starts Prometheus scraping every target (its own `instance`, in job `app`) every
    /// `scrape_interval`, with a scrape timeout of at most 10s (Prometheus' default).
    pub fn launch(
        targets: &[String],
        scrape_interval: &str,
        web_config: Option<&str>,
        openmetrics: Option<&str>,
    ) -> Self {
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let timeout = scrape_interval
            .trim_end_matches('s')
            .parse::<u64>()
            .expect("a scrape interval in seconds")
            .min(10);
        let config = format!(
            "global: {{scrape_interval: {scrape_interval}, scrape_timeout: {timeout}s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: app\n  static_configs: [{{targets: [{}]}}]\n",
            targets.join(", "),
        );
        if let Some(text) = openmetrics {
            let file = dir.0.join("backfill.om");
            std::fs::write(&file, text).unwrap();
            let output = Command::new(binary("promtool"))
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&file)
                .arg(dir.0.join("data"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "promtool could not backfill: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
        let mut command = Command::new(binary("prometheus"));
        command
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let scheme = if let Some(web) = web_config {
            std::fs::write(dir.0.join("web.yml"), web).unwrap();
            command.arg(format!(
                "--web.config.file={}",
                dir.0.join("web.yml").display()
            ));
            "https"
        } else {
            "http"
        };
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
        let prometheus = Prometheus {
            address: format!("{scheme}://127.0.0.1:{port}"),
            child,
            _dir: dir,
        };
        // Listening is not ready: Prometheus answers 503 until its storage is open.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(port, web_config.is_some()) {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// Kills the server, as an outage would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether Prometheus on `port` answers `/-/ready` with 200 (over TLS it is enough that it
/// listens: the TLS test's first query waits for it).
fn ready(port: u16, tls: bool) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if tls {
        return true;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One pod's sidecar: Istio's request counters of the requests it answered, created when the
/// first request with a code arrives, as Envoy creates them.
#[derive(Default)]
struct Pod {
    name: String,
    workload: String,
    canary: bool,
    /// code -> count.
    counters: std::collections::BTreeMap<u16, u64>,
    /// Scrapes still to fail (the sidecar answers 503: Prometheus marks its series stale).
    failing: u32,
}

/// The traffic the pods answer.
#[derive(Clone, Copy)]
pub struct Load {
    /// Requests a second, split by the route in effect.
    pub rps: u64,
    /// Stable's error rate.
    pub stable_errors: f64,
    /// The canary's error rate.
    pub canary_errors: f64,
}

#[derive(Default)]
struct Served {
    requests: [u64; 2],
    errors: [u64; 2],
    debt: [f64; 2],
    error_debt: [f64; 2],
}

/// Pods of a stable workload `podinfo` and a canary `podinfo-canary` in namespace `test`, each
/// its own scrape target serving `istio_requests_total` as the destination's sidecar reports
/// it, answering live traffic split by the route `traffic` has applied. Stops when dropped.
pub struct Pods {
    pods: Vec<Arc<Mutex<Pod>>>,
    targets: Vec<String>,
    served: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
}

impl Pods {
    /// Stable pods with the requests and errors they answered before the test (their lifetime),
    /// and canary pods that have answered nothing yet.
    pub fn start(
        traffic: InMemoryTraffic,
        load: Load,
        stable: &[(&str, u64, u64)],
        canary: &[&str],
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut pods = Vec::new();
        let mut targets = Vec::new();
        let all = stable
            .iter()
            .map(|(name, ok, errors)| (name.to_string(), false, *ok, *errors))
            .chain(canary.iter().map(|name| (name.to_string(), true, 0, 0)));
        for (name, is_canary, ok, errors) in all {
            let mut counters = std::collections::BTreeMap::new();
            if ok > 0 {
                counters.insert(200, ok);
            }
            if errors > 0 {
                counters.insert(503, errors);
            }
            let pod = Arc::new(Mutex::new(Pod {
                workload: if is_canary {
                    "podinfo-canary"
                } else {
                    "podinfo"
                }
                .to_owned(),
                name,
                canary: is_canary,
                counters,
                failing: 0,
            }));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            targets.push(listener.local_addr().unwrap().to_string());
            listener.set_nonblocking(true).unwrap();
            let (pod_ref, stop) = (pod.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &pod_ref),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
            pods.push(pod);
        }
        let served = Arc::new(Mutex::new(Served::default()));
        {
            let (pods, served, stop) = (pods.clone(), served.clone(), stop.clone());
            std::thread::spawn(move || {
                let tick = Duration::from_millis(100);
                let mut turn = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let share = traffic.route().weight_percent() / 100.0;
                    let requests = load.rps as f64 / 10.0;
                    let mut s = served.lock().unwrap();
                    for (v, (part, rate)) in [
                        (1.0 - share, load.stable_errors),
                        (share, load.canary_errors),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        s.debt[v] += requests * part;
                        let count = s.debt[v].floor();
                        s.debt[v] -= count;
                        s.error_debt[v] += count * rate;
                        let errors = s.error_debt[v].floor();
                        s.error_debt[v] -= errors;
                        s.requests[v] += count as u64;
                        s.errors[v] += errors as u64;
                        // Round robin over the version's pods, one request at a time.
                        let version: Vec<&Arc<Mutex<Pod>>> = pods
                            .iter()
                            .filter(|p| p.lock().unwrap().canary == (v == 1))
                            .collect();
                        for i in 0..count as u64 {
                            turn += 1;
                            let pod = version[turn % version.len()];
                            let code = if i < errors as u64 { 503 } else { 200 };
                            *pod.lock().unwrap().counters.entry(code).or_default() += 1;
                        }
                    }
                    drop(s);
                    std::thread::sleep(tick);
                }
            });
        }
        Pods {
            pods,
            targets,
            served,
            stop,
        }
    }

    /// Every pod's scrape target, stable pods first.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    fn pod(&self, name: &str) -> &Arc<Mutex<Pod>> {
        self.pods
            .iter()
            .find(|p| p.lock().unwrap().name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// The pod's next `scrapes` scrapes fail.
    pub fn fail_scrapes(&self, name: &str, scrapes: u32) {
        self.pod(name).lock().unwrap().failing = scrapes;
    }

    /// The pod's sidecar restarts: its counters start from nothing.
    pub fn restart(&self, name: &str) {
        self.pod(name).lock().unwrap().counters.clear();
    }

    /// Requests and errors answered since the start, by stable ([0]) and the canary ([1]).
    pub fn served(&self) -> ([u64; 2], [u64; 2]) {
        let s = self.served.lock().unwrap();
        (s.requests, s.errors)
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut stream: TcpStream, pod: &Mutex<Pod>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = [0u8; 4096];
    let _ = stream.read(&mut buffer);
    let mut pod = pod.lock().unwrap();
    if pod.failing > 0 {
        pod.failing -= 1;
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    // The labels of Istio's standard metrics, as the destination's sidecar reports them.
    let mut body = String::from("# TYPE istio_requests_total counter\n");
    for (code, count) in &pod.counters {
        body.push_str(&format!(
            "istio_requests_total{{reporter=\"destination\",source_workload=\"frontend\",source_workload_namespace=\"web\",source_principal=\"spiffe://cluster.local/ns/web/sa/frontend\",source_app=\"frontend\",source_version=\"unknown\",source_canonical_service=\"frontend\",source_canonical_revision=\"latest\",source_cluster=\"Kubernetes\",destination_workload=\"{workload}\",destination_workload_namespace=\"test\",destination_principal=\"spiffe://cluster.local/ns/test/sa/podinfo\",destination_app=\"podinfo\",destination_version=\"unknown\",destination_service=\"podinfo.test.svc.cluster.local\",destination_service_name=\"podinfo\",destination_service_namespace=\"test\",destination_canonical_service=\"podinfo\",destination_canonical_revision=\"latest\",destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"{code}\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"mutual_tls\",pod=\"{pod}\"}} {count}\n",
            workload = pod.workload,
            pod = pod.name,
        ));
    }
    drop(pod);
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
