//! What comes back from a Prometheus address or a webhook is read up to a bound and never
//! copied into a status: a server answering with secrets, with garbage, or with an endless
//! stream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use canary_core::analysis::prometheus::PrometheusMetrics;
use canary_core::analysis::webhooks::HttpWebhooks;
use canary_core::api::plan::WebhookPlan;
use canary_core::api::spec::HookType;
use canary_core::engine::providers::{HookOutcome, HookPayload, WebhookRunner};
use jiff::{SignedDuration, Timestamp};

/// What a server sends after a request's head.
#[derive(Clone)]
enum Answer {
    /// A whole answer: status and body.
    Whole(u16, &'static str, Vec<u8>),
    /// A chunked answer that never ends (until the client goes).
    Endless(u16),
}

/// A server at `http://127.0.0.1:PORT` answering every request with `answer`.
fn server(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                match answer {
                    Answer::Whole(status, kind, body) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(&body);
                    }
                    Answer::Endless(status) => {
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
                        );
                        let _ = stream.write_all(head.as_bytes());
                        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
                        while stream.write_all(chunk.as_bytes()).is_ok() {}
                    }
                }
            });
        }
    });
    address
}

/// What a cloud metadata endpoint would answer.
const CREDENTIALS: &str =
    "{\"AccessKeyId\": \"AKIASECRETKEY\",\n\"SecretAccessKey\": \"wJalrXUtnFEMI/K7MDENG\"}";

async fn ask(address: &str) -> String {
    PrometheusMetrics::new(reqwest::Client::new())
        .instant(address, "up", Timestamp::now())
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_answer_to_a_query_is_never_quoted() {
    for status in [200, 401, 500] {
        let address = server(Answer::Whole(
            status,
            "application/json",
            CREDENTIALS.as_bytes().to_vec(),
        ));
        let error = ask(&address).await;
        assert!(
            !error.contains("SECRET") && !error.contains("wJalr"),
            "{error}"
        );
        assert!(error.contains("not a Prometheus API answer"), "{error}");
    }
    // Prometheus' own error fields are quoted, short and on one line.
    let long = format!(
        "{{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"line one\\nline two {}\"}}",
        "x".repeat(2000)
    );
    let address = server(Answer::Whole(400, "application/json", long.into_bytes()));
    let error = ask(&address).await;
    assert!(error.contains("bad_data: line one line two"), "{error}");
    assert!(
        !error.contains('\n') && error.chars().count() < 400,
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_answer_is_cut_at_its_bound() {
    let started = Instant::now();
    let error = ask(&server(Answer::Endless(200))).await;
    assert!(error.contains("longer than"), "{error}");
    let outcome = HttpWebhooks::new(reqwest::Client::new())
        .call(
            &hook(&format!("{}/gate", server(Answer::Endless(403)))),
            &payload(),
        )
        .await;
    let HookOutcome::Fail(why) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(why.contains("longer than 65536 bytes"), "{why}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_webhook_is_quoted_short_and_on_one_line() {
    let mut body = b"denied:\r\n\x1b[31m load test failed ".to_vec();
    body.extend_from_slice(&[b'y'; 5000]);
    let address = server(Answer::Whole(403, "text/plain", body));
    let outcome = HttpWebhooks::new(reqwest::Client::new())
        .call(&hook(&format!("{address}/gate")), &payload())
        .await;
    let HookOutcome::Fail(why) = outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        why.starts_with("403") && why.contains("denied: [31m load test failed"),
        "{why}"
    );
    assert!(!why.contains(['\n', '\r', '\u{1b}']), "{why}");
    assert!(
        why.chars().count() <= 140,
        "{} characters: {why}",
        why.chars().count()
    );
}

fn hook(url: &str) -> WebhookPlan {
    WebhookPlan {
        name: "gate".into(),
        hook_type: HookType::ConfirmPromotion,
        url: url.into(),
        timeout: SignedDuration::from_secs(10),
        metadata: BTreeMap::new(),
    }
}

fn payload() -> HookPayload {
    HookPayload {
        name: "podinfo".into(),
        namespace: "test".into(),
        phase: "Progressing".into(),
        revision: "rev-2".into(),
        metadata: BTreeMap::new(),
    }
}
