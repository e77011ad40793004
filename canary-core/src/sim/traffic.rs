//! Synthetic traffic: requests per second split between stable, the canary and nobody by what
//! answers them (the route in effect, or what a data-plane model says real callers get), with
//! errors and latencies drawn per version.

use super::rng::Rng;
use crate::traffic::RouteState;

/// Streams of the random source, one per quantity.
const MATCHED: u64 = 1;
const WEIGHTED: u64 = 2;
const CANARY_ERRORS: u64 = 3;
const STABLE_ERRORS: u64 = 4;
const MIRRORED: u64 = 5;
const MIRROR_ERRORS: u64 = 6;
const CANARY_LATENCY: u64 = 7;
const MATCHED_CANARY: u64 = 8;
const MATCHED_UNSERVED: u64 = 9;
const UNSERVED: u64 = 10;

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

/// Who answers one kind of request: the shares the canary answers and nobody answers (the
/// rest is answered by stable).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Answers {
    /// Share answered by canary pods, `0..=1`.
    pub canary: f64,
    /// Share answered by no pod, `0..=1 - canary`.
    pub unserved: f64,
}

/// Who answers one second's requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Split {
    /// Requests without what an A/B match looks for.
    pub plain: Answers,
    /// Requests carrying what an A/B match looks for (a share `match_share` of all), while the
    /// route has matches; `None` when it has none, and then they are plain requests.
    pub matched: Option<Answers>,
    /// Share of stable's answered requests copied to the canary by mirroring.
    pub mirrored: f64,
}

impl Split {
    /// What the route `route` does with requests, every request answered.
    pub fn of_route(route: &RouteState) -> Split {
        Split {
            plain: Answers {
                canary: route.weight_percent() / 100.0,
                unserved: 0.0,
            },
            matched: (!route.matches.is_empty()).then_some(Answers {
                canary: 1.0,
                unserved: 0.0,
            }),
            mirrored: route
                .mirror
                .map_or(0.0, |percent| f64::from(percent) / 100.0),
        }
    }
}

/// The split in effect during each second of a simulation.
pub trait Splits: Send + Sync {
    /// The split in effect during unix second `second` (the one ending at `second`).
    fn split_for_second(&self, second: i64) -> Split;
}

impl Splits for crate::engine::memory::InMemoryTraffic {
    fn split_for_second(&self, second: i64) -> Split {
        Split::of_route(&self.route_for_second(second))
    }
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
    /// User requests answered by no pod.
    pub unserved: u64,
}

impl std::ops::AddAssign for SecondCounts {
    fn add_assign(&mut self, other: Self) {
        // Saturating: a long run at many requests per second stays a count, never a panic.
        self.total = self.total.saturating_add(other.total);
        self.canary = self.canary.saturating_add(other.canary);
        self.canary_errors = self.canary_errors.saturating_add(other.canary_errors);
        self.stable = self.stable.saturating_add(other.stable);
        self.stable_errors = self.stable_errors.saturating_add(other.stable_errors);
        self.mirrored = self.mirrored.saturating_add(other.mirrored);
        self.mirrored_errors = self.mirrored_errors.saturating_add(other.mirrored_errors);
        self.unserved = self.unserved.saturating_add(other.unserved);
    }
}

impl TrafficModel {
    /// The requests of unix second `second` under `route`.
    pub fn second(&self, second: i64, route: &RouteState) -> SecondCounts {
        self.split_second(second, &Split::of_route(route))
    }

    /// The requests of unix second `second`, answered as `split` says.
    pub fn split_second(&self, second: i64, split: &Split) -> SecondCounts {
        let rng = |stream| Rng::new(self.seed, second, stream);
        // `remaining` of `n` requests not yet drawn; a share of all becomes a share of them.
        let conditional = |share: f64, taken: f64| {
            if taken >= 1.0 {
                0.0
            } else {
                share / (1.0 - taken)
            }
        };
        let total = self.rps;
        let (matched, matched_canary, matched_unserved) = match split.matched {
            None => (0, 0, 0),
            Some(answers) => {
                let matched = rng(MATCHED).binomial(total, self.match_share);
                let canary = rng(MATCHED_CANARY).binomial(matched, answers.canary);
                let unserved = rng(MATCHED_UNSERVED).binomial(
                    matched.saturating_sub(canary),
                    conditional(answers.unserved, answers.canary),
                );
                (matched, canary, unserved)
            }
        };
        // Every draw is at most its trials; saturating keeps that a count, never a panic.
        let plain = total.saturating_sub(matched);
        let weighted = rng(WEIGHTED).binomial(plain, split.plain.canary);
        let unserved = rng(UNSERVED).binomial(
            plain.saturating_sub(weighted),
            conditional(split.plain.unserved, split.plain.canary),
        );
        let canary = matched_canary.saturating_add(weighted);
        let unserved = matched_unserved.saturating_add(unserved);
        let stable = total.saturating_sub(canary).saturating_sub(unserved);
        let mirrored = rng(MIRRORED).binomial(stable, split.mirrored);
        SecondCounts {
            total,
            canary,
            canary_errors: rng(CANARY_ERRORS).binomial(canary, self.canary_error_rate),
            stable,
            stable_errors: rng(STABLE_ERRORS).binomial(stable, self.baseline_error_rate),
            mirrored,
            mirrored_errors: rng(MIRROR_ERRORS).binomial(mirrored, self.canary_error_rate),
            unserved,
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
