//! Webhooks over HTTP against a local server: the JSON payload, pass/fail by status, timeouts,
//! retries of server errors, and only http(s) URLs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canary_core::analysis::webhooks::HttpWebhooks;
use canary_core::api::plan::WebhookPlan;
use canary_core::api::spec::HookType;
use canary_core::engine::providers::{HookOutcome, HookPayload, WebhookRunner};
use jiff::SignedDuration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: String,
}

/// Answers each request with the next `(status, delay)` (the last one repeats), recording it.
fn server(answers: Vec<(u16, Duration)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let (status, delay) = answers[i.min(answers.len() - 1)];
            let log = log.clone();
            std::thread::spawn(move || {
                let mut data = Vec::new();
                let mut buffer = [0u8; 8192];
                loop {
                    let n = stream.read(&mut buffer).unwrap_or(0);
                    data.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(str::to_owned)
                            })
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= length {
                            log.lock().unwrap().push(Seen {
                                head: head.to_owned(),
                                body: body.to_owned(),
                            });
                            break;
                        }
                    }
                    if n == 0 {
                        return;
                    }
                }
                std::thread::sleep(delay);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 9\r\nConnection: close\r\n\r\nanswer {status}"
                );
                let reply = reply.replace(
                    "Content-Length: 9",
                    &format!("Content-Length: {}", 7 + status.to_string().len()),
                );
                let _ = stream.write_all(reply.as_bytes());
            });
        }
    });
    (url, seen)
}

fn hook(url: &str, timeout_ms: i64) -> WebhookPlan {
    WebhookPlan {
        name: "gate".into(),
        hook_type: HookType::ConfirmPromotion,
        url: url.into(),
        timeout: SignedDuration::from_millis(timeout_ms),
        metadata: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
    }
}

fn payload() -> HookPayload {
    HookPayload {
        name: "podinfo".into(),
        namespace: "test".into(),
        phase: "Progressing".into(),
        revision: "rev-2".into(),
        metadata: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
    }
}

fn runner() -> HttpWebhooks {
    HttpWebhooks::new(reqwest::Client::new())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2xx_passes_and_the_payload_is_json() {
    let (url, seen) = server(vec![(204, Duration::ZERO)]);
    assert_eq!(
        runner().call(&hook(&url, 2000), &payload()).await,
        HookOutcome::Pass
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].head.starts_with("POST /hook "), "{}", seen[0].head);
    assert!(
        seen[0]
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    let body: serde_json::Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "podinfo", "namespace": "test", "phase": "Progressing", "revision": "rev-2", "metadata": {"team": "payments"}})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_fails_at_once_with_the_answer() {
    let (url, seen) = server(vec![(403, Duration::ZERO)]);
    let outcome = runner().call(&hook(&url, 2000), &payload()).await;
    assert_eq!(
        outcome,
        HookOutcome::Fail("403 Forbidden: answer 403".into())
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "a refusal is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried() {
    let (url, seen) = server(vec![
        (503, Duration::ZERO),
        (502, Duration::ZERO),
        (200, Duration::ZERO),
    ]);
    assert_eq!(
        runner().call(&hook(&url, 2000), &payload()).await,
        HookOutcome::Pass
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
    let (url, seen) = server(vec![(500, Duration::ZERO)]);
    let outcome = runner()
        .with_retries(1)
        .call(&hook(&url, 2000), &payload())
        .await;
    assert!(
        matches!(outcome, HookOutcome::Fail(ref why) if why.starts_with("500")),
        "{outcome:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_hook_times_out_as_an_error() {
    let (url, _) = server(vec![(200, Duration::from_secs(3))]);
    let started = std::time::Instant::now();
    let outcome = runner()
        .with_retries(0)
        .call(&hook(&url, 300), &payload())
        .await;
    assert!(
        matches!(outcome, HookOutcome::Error(ref why) if why.contains("no answer within")),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout is honoured"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_hooks_and_other_schemes_are_errors() {
    let outcome = runner()
        .with_retries(0)
        .call(&hook("http://127.0.0.1:1/hook", 500), &payload())
        .await;
    assert!(matches!(outcome, HookOutcome::Error(_)), "{outcome:?}");
    let outcome = runner()
        .call(&hook("file:///etc/passwd", 500), &payload())
        .await;
    assert_eq!(
        outcome,
        HookOutcome::Error("`file:///etc/passwd` is not an http or https URL".into())
    );
}
