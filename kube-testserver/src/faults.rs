//! Runtime fault injection: conflicts, server errors, latency and dropped watches,
//! drawn from a seeded pseudo-random sequence so runs are reproducible.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::lock;

#[derive(Debug)]
struct Settings {
    conflict_rate: f64,
    error_rate: f64,
    drop_watch_rate: f64,
    latency: Duration,
    rng: u64,
    /// Writes to let through before the one that fails (`None`: no write is set to fail).
    fail_after: Option<u64>,
}

/// A handle to the server's fault settings; clones share the same settings.
///
/// Conflict and error rates apply to writes (POST, PUT, PATCH, DELETE), which are then
/// answered with 409 Conflict or 500 InternalError without being applied. Latency
/// delays every request. The drop rate is the probability of ending a watch stream
/// after each event it sends.
#[derive(Debug, Clone)]
pub struct Faults {
    settings: Arc<Mutex<Settings>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            settings: Arc::new(Mutex::new(Settings {
                conflict_rate: 0.0,
                error_rate: 0.0,
                drop_watch_rate: 0.0,
                latency: Duration::ZERO,
                rng: 0x5EED,
                fail_after: None,
            })),
        }
    }
}

impl Faults {
    /// Share of writes answered with 409 Conflict (0.0 ..= 1.0).
    pub fn set_conflict_rate(&self, rate: f64) {
        lock(&self.settings).conflict_rate = rate;
    }

    /// Share of writes answered with 500 InternalError (0.0 ..= 1.0).
    pub fn set_error_rate(&self, rate: f64) {
        lock(&self.settings).error_rate = rate;
    }

    /// Delay added before every request is handled.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.settings).latency = latency;
    }

    /// Probability of closing a watch stream after each event (0.0 ..= 1.0).
    pub fn set_drop_watch_rate(&self, rate: f64) {
        lock(&self.settings).drop_watch_rate = rate;
    }

    /// Answers the `n`-th write from now (1-based) with 500 InternalError, once, as if the
    /// writer crashed there; 0 cancels it.
    pub fn fail_write(&self, n: u64) {
        lock(&self.settings).fail_after = n.checked_sub(1);
    }

    /// Restarts the pseudo-random sequence from `seed`.
    pub fn set_seed(&self, seed: u64) {
        lock(&self.settings).rng = seed;
    }

    /// Turns every fault off (the seed is kept).
    pub fn clear(&self) {
        let mut s = lock(&self.settings);
        s.conflict_rate = 0.0;
        s.error_rate = 0.0;
        s.drop_watch_rate = 0.0;
        s.latency = Duration::ZERO;
        s.fail_after = None;
    }

    /// The configured latency.
    pub(crate) fn latency(&self) -> Duration {
        lock(&self.settings).latency
    }

    /// Draws whether to inject a conflict into a write.
    pub(crate) fn roll_conflict(&self) -> bool {
        self.roll(|s| s.conflict_rate)
    }

    /// Draws whether to inject an internal error into a write.
    pub(crate) fn roll_error(&self) -> bool {
        self.roll(|s| s.error_rate)
    }

    /// Counts a write; true when it is the one [`Faults::fail_write`] set to fail.
    pub(crate) fn count_write(&self) -> bool {
        let mut s = lock(&self.settings);
        match s.fail_after {
            Some(0) => {
                s.fail_after = None;
                true
            }
            Some(n) => {
                s.fail_after = Some(n - 1);
                false
            }
            None => false,
        }
    }

    /// Draws whether to drop a watch stream after an event.
    pub(crate) fn roll_drop_watch(&self) -> bool {
        self.roll(|s| s.drop_watch_rate)
    }

    fn roll(&self, rate: impl Fn(&Settings) -> f64) -> bool {
        let mut s = lock(&self.settings);
        let p = rate(&s);
        if p <= 0.0 {
            return false;
        }
        // SplitMix64 step.
        s.rng = s.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}
