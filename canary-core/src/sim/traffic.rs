//! Synthetic traffic: requests per second split between stable and canary by the route in
//! effect, with errors and latencies drawn per version.

use super::rng::Rng;
use crate::route::RouteState;

/// Streams of the random source, one per quantity.
const MATCHED: u64 = 1;
const WEIGHTED: u64 = 2;
const CANARY_ERRORS: u64 = 3;
const STABLE_ERRORS: u64 = 4;
const MIRRORED: u64 = 5;
const MIRROR_ERRORS: u64 = 6;
const CANARY_LATENCY: u64 = 7;

/// Latency samples drawn per second for duration metrics.
const LATENCY_SAMPLES: u64 = 16;

/// The spread of latencies around their median (log-normal sigma).
const LATENCY_SIGMA: f64 = 0.4;

/// The traffic one service receives, and how each version answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficModel {
    /// Random seed.
    pub seed: u64,
    /// User requests per second.
    pub rps: u64,
    /// Share of requests answered with an error by stable.
    pub baseline_error_rate: f64,
    /// Share of requests answered with an error by the canary.
    pub canary_error_rate: f64,
    /// Median latency of stable, in milliseconds.
    pub baseline_latency_ms: f64,
    /// Median latency of the canary, in milliseconds.
    pub canary_latency_ms: f64,
    /// Share of requests that carry what an A/B match looks for.
    pub match_share: f64,
}

/// What happened in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondCounts {
    /// User requests.
    pub total: u64,
    /// User requests answered by the canary.
    pub canary: u64,
    /// Of those, errors.
    pub canary_errors: u64,
    /// User requests answered by stable.
    pub stable: u64,
    /// Of those, errors.
    pub stable_errors: u64,
    /// Copies sent to the canary by mirroring (answers dropped).
    pub mirrored: u64,
    /// Of those, errors (seen by the canary's metrics, not by users).
    pub mirrored_errors: u64,
}

impl std::ops::AddAssign for SecondCounts {
    fn add_assign(&mut self, other: Self) {
        self.total += other.total;
        self.canary += other.canary;
        self.canary_errors += other.canary_errors;
        self.stable += other.stable;
        self.stable_errors += other.stable_errors;
        self.mirrored += other.mirrored;
        self.mirrored_errors += other.mirrored_errors;
    }
}

impl TrafficModel {
    /// The requests of unix second `second` under `route`.
    pub fn second(&self, second: i64, route: &RouteState) -> SecondCounts {
        let rng = |stream| Rng::new(self.seed, second, stream);
        let total = self.rps;
        let matched = if route.matches.is_empty() {
            0
        } else {
            rng(MATCHED).binomial(total, self.match_share)
        };
        let weighted = rng(WEIGHTED).binomial(total - matched, route.weight_percent() / 100.0);
        let canary = matched + weighted;
        let stable = total - canary;
        let mirrored = route.mirror.map_or(0, |percent| {
            rng(MIRRORED).binomial(stable, f64::from(percent) / 100.0)
        });
        SecondCounts {
            total,
            canary,
            canary_errors: rng(CANARY_ERRORS).binomial(canary, self.canary_error_rate),
            stable,
            stable_errors: rng(STABLE_ERRORS).binomial(stable, self.baseline_error_rate),
            mirrored,
            mirrored_errors: rng(MIRROR_ERRORS).binomial(mirrored, self.canary_error_rate),
        }
    }

    /// Adds latency samples of the canary's requests in second `second` (at most 16, each
    /// weighted alike) to `out`.
    pub fn canary_latencies(&self, second: i64, requests: u64, out: &mut Vec<f64>) {
        let mut rng = Rng::new(self.seed, second, CANARY_LATENCY);
        for _ in 0..requests.min(LATENCY_SAMPLES) {
            out.push(self.canary_latency_ms * (LATENCY_SIGMA * rng.normal()).exp());
        }
    }
}
