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

use canary_core::memory::InMemoryTraffic;

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

/// The prometheus binary: `$CANARY_PROMETHEUS`, else `prometheus` on the PATH.
fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("CANARY_PROMETHEUS") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|p| p.is_file())
    });
    found.flatten().unwrap_or_else(|| {
        panic!("the prometheus binary is missing: `bash scripts/test` installs it (Debian package `prometheus`)")
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
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: app\n  static_configs: [{{targets: [{}]}}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
        let mut command = Command::new(binary());
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

/// Request counters of two workloads, driven by the route in effect.
#[derive(Default)]
struct Counters {
    /// (workload, code) -> count.
    requests: std::collections::BTreeMap<(String, u16), u64>,
    error_debt: [f64; 2],
    canary_debt: f64,
}

/// An HTTP endpoint serving `istio_requests_total` for `stable` and `canary` workloads in
/// namespace `test`, with traffic at `rps` split by the route `traffic` has applied, and the
/// given error rates. Stops when dropped.
pub struct Exporter {
    pub target: String,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    pub fn start(
        traffic: InMemoryTraffic,
        rps: u64,
        stable_errors: f64,
        canary_errors: f64,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let counters = Arc::new(Mutex::new(Counters::default()));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (counters, stop) = (counters.clone(), stop.clone());
            std::thread::spawn(move || {
                let tick = Duration::from_millis(100);
                while !stop.load(Ordering::SeqCst) {
                    let share = traffic.route().weight_percent() / 100.0;
                    let mut c = counters.lock().unwrap();
                    let requests = rps as f64 / 10.0;
                    c.canary_debt += requests * share;
                    let to_canary = c.canary_debt.floor();
                    c.canary_debt -= to_canary;
                    for (i, (workload, count, rate)) in [
                        ("podinfo", requests - to_canary, stable_errors),
                        ("podinfo-canary", to_canary, canary_errors),
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        c.error_debt[i] += count * rate;
                        let errors = c.error_debt[i].floor();
                        c.error_debt[i] -= errors;
                        *c.requests.entry((workload.to_owned(), 500)).or_default() += errors as u64;
                        *c.requests.entry((workload.to_owned(), 200)).or_default() +=
                            (count - errors) as u64;
                    }
                    drop(c);
                    std::thread::sleep(tick);
                }
            });
        }
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &counters),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            });
        }
        Exporter { target, stop }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(mut stream: TcpStream, counters: &Mutex<Counters>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buffer = [0u8; 4096];
    let _ = stream.read(&mut buffer);
    let mut body = String::from("# TYPE istio_requests_total counter\n");
    for ((workload, code), count) in &counters.lock().unwrap().requests {
        body.push_str(&format!(
            "istio_requests_total{{reporter=\"destination\",destination_workload_namespace=\"test\",destination_workload=\"{workload}\",response_code=\"{code}\"}} {count}\n"
        ));
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
