//! Webhooks over HTTP: a POST of the JSON payload, within the hook's timeout, retried on
//! connection errors and server errors. No shell, anywhere.

use std::time::Duration;

use async_trait::async_trait;

use crate::analysis::http::{excerpt, read_capped};
use crate::api::plan::WebhookPlan;
use crate::engine::providers::{HookOutcome, HookPayload, WebhookRunner};
use crate::error::describe;

/// The most of a webhook's answer that is read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The most of a refusing webhook's answer quoted in the status and events, in characters.
const EXCERPT_CHARS: usize = 120;

/// A [`WebhookRunner`] posting JSON: a 2xx answer passes, any other answer fails, no answer is
/// an error. Connection errors, timeouts and 5xx answers are tried again (twice by default).
#[derive(Debug, Clone)]
pub struct HttpWebhooks {
    http: reqwest::Client,
    retries: u32,
    backoff: Duration,
}

impl HttpWebhooks {
    /// Calls through `http`, retrying twice, 200 ms apart, doubling. Build `http` with
    /// `redirect(reqwest::redirect::Policy::none())`: a followed redirect would reach an address
    /// the controller never checked.
    pub fn new(http: reqwest::Client) -> Self {
        HttpWebhooks {
            http,
            retries: 2,
            backoff: Duration::from_millis(200),
        }
    }

    /// How many times a call is tried again after a connection error, timeout or 5xx.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }
}

#[async_trait]
impl WebhookRunner for HttpWebhooks {
    async fn call(&self, hook: &WebhookPlan, payload: &HookPayload) -> HookOutcome {
        if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
            return HookOutcome::Error(format!("`{}` is not an http or https URL", hook.url));
        }
        let timeout = hook.timeout.unsigned_abs();
        let mut last = HookOutcome::Error("not called".to_owned());
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
            }
            let sent = self
                .http
                .post(&hook.url)
                .json(payload)
                .timeout(timeout)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return HookOutcome::Pass,
                Ok(response) => {
                    let status = response.status();
                    // Read up to a bound, and quoted short and on one line: the answer says
                    // why a gate refused, nothing more belongs in a status.
                    let why = match read_capped(response, MAX_ANSWER_BYTES).await {
                        Ok(body) => excerpt(&String::from_utf8_lossy(&body), EXCERPT_CHARS),
                        Err(too_long) => too_long,
                    };
                    let why = if why.is_empty() {
                        status.to_string()
                    } else {
                        format!("{status}: {why}")
                    };
                    last = HookOutcome::Fail(why);
                    if !status.is_server_error() {
                        return last;
                    }
                }
                Err(error) if error.is_timeout() => {
                    last = HookOutcome::Error(format!("no answer within {timeout:?}"));
                }
                Err(error) => last = HookOutcome::Error(describe(&error)),
            }
        }
        last
    }
}
