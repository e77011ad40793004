//! What users' requests got, moment by moment: the data-plane model's answer (a
//! [`Probe`]) turned into the split the synthetic traffic follows, and the measures of a
//! release's traffic truth.

use std::sync::{Arc, Mutex, MutexGuard};

use canary_core::RolloutStatus;
use canary_core::sim::dataplane::probe::{Probe, RequestClass};
use canary_core::sim::{Answers, START, SecondCounts, ServedShares, Split, Splits, TrafficModel};
use jiff::Timestamp;

/// One observation: from `at` on, requests are answered as `split` says, while the route in
/// effect sends the canary something (`route_sends_canary`) or not.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Moment {
    at: Timestamp,
    split: Split,
    route_sends_canary: bool,
}

/// The splits observed during a simulation, shared between the metric provider (which reads
/// them) and the simulation loop (which adds them).
#[derive(Debug, Clone, Default)]
pub struct ServedHistory {
    moments: Arc<Mutex<Vec<Moment>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ServedHistory {
    /// Records that from `at` on (`at` not before the last observation) requests are answered
    /// as `split` says, under a route that sends the canary something or not.
    pub fn observe(&self, at: Timestamp, split: Split, route_sends_canary: bool) {
        let moment = Moment {
            at,
            split,
            route_sends_canary,
        };
        let mut moments = lock(&self.moments);
        match moments.last_mut() {
            Some(last) if last.at == at => *last = moment,
            Some(last) if last.split == split && last.route_sends_canary == route_sends_canary => {}
            _ => moments.push(moment),
        }
    }

    /// The observation in effect at the start of unix second `second`'s span, i.e. at
    /// `second - 1` (everything answered by stable before the first observation).
    fn moment_for_second(&self, second: i64) -> Option<Moment> {
        let start = Timestamp::from_second(second - 1).ok()?;
        let moments = lock(&self.moments);
        let index = moments.partition_point(|m| m.at <= start);
        index.checked_sub(1).and_then(|i| moments.get(i)).copied()
    }

    /// From the simulation's start to `end`: the requests answered by no pod, and those
    /// answered by canary pods while the route sent the canary nothing.
    pub fn unserved_and_outside_release(&self, model: &TrafficModel, end: Timestamp) -> (u64, u64) {
        let mut unserved = 0;
        let mut outside = 0;
        for second in (START.as_second() + 1)..=end.as_second() {
            let Some(moment) = self.moment_for_second(second) else {
                continue; // all answered by stable before the first observation
            };
            let counts: SecondCounts = model.split_second(second, &moment.split);
            unserved += counts.unserved;
            if !moment.route_sends_canary {
                outside += counts.canary;
            }
        }
        (unserved, outside)
    }
}

impl Splits for ServedHistory {
    fn split_for_second(&self, second: i64) -> Split {
        self.moment_for_second(second)
            .map(|m| m.split)
            .unwrap_or_default()
    }
}

/// The split users' requests follow when the data plane answers as `probe` says: the shares
/// of plain and matched requests averaged over the callers users have (pods answering that
/// are neither stable's nor the canary's count as stable's), and mirroring as a share of
/// stable's answers.
pub fn split_of(probe: &Probe) -> Split {
    let plain = probe.average(RequestClass::Plain);
    let matched = probe
        .of(RequestClass::Matched)
        .next()
        .map(|_| probe.average(RequestClass::Matched));
    let answers = |canary: f64, none: f64| Answers {
        canary: canary.clamp(0.0, 1.0),
        unserved: none.clamp(0.0, 1.0 - canary.clamp(0.0, 1.0)),
    };
    let stable = 1.0 - plain.canary - plain.none;
    Split {
        plain: answers(plain.canary, plain.none),
        matched: matched.map(|m| answers(m.canary, m.none)),
        mirrored: if stable > 0.0 {
            (plain.mirrored_to_canary / stable).clamp(0.0, 1.0)
        } else {
            0.0
        },
    }
}

/// The shares of all users' requests `split` gives, `match_share` of them matched.
pub fn shares_of(split: &Split, match_share: f64) -> ServedShares {
    let (canary, none) = match split.matched {
        Some(matched) => (
            split.plain.canary * (1.0 - match_share) + matched.canary * match_share,
            split.plain.unserved * (1.0 - match_share) + matched.unserved * match_share,
        ),
        None => (split.plain.canary, split.plain.unserved),
    };
    ServedShares::rounded(1.0 - canary - none, canary, none)
}

/// Whether the route in `status` sends the canary anything: a weight or request matches.
pub fn route_sends_canary(status: &RolloutStatus) -> bool {
    status.routing.route.weight > 0 || !status.routing.route.matches.is_empty()
}

/// How far any caller's plain requests answered by the canary exceed the route's canary
/// weight, in percentage points (0 when they do not).
pub fn canary_excess(probe: &Probe, status: &RolloutStatus) -> f64 {
    let served = probe.max_canary(RequestClass::Plain) * 100.0;
    (served - status.routing.route.weight_percent()).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use canary_core::sim::dataplane::probe::CallerProbe;
    use jiff::SignedDuration;

    fn caller(class: RequestClass, stable: f64, canary: f64, none: f64) -> CallerProbe {
        CallerProbe {
            caller: "sidecar".into(),
            class,
            request: "GET web/".into(),
            stable,
            canary,
            other: 0.0,
            none,
            mirrored_to_canary: 0.0,
            unserved_because: None,
        }
    }

    #[test]
    fn the_split_averages_callers_and_keeps_matched_requests_apart() {
        let probe = Probe {
            callers: vec![
                caller(RequestClass::Plain, 0.8, 0.2, 0.0),
                caller(RequestClass::Plain, 0.4, 0.2, 0.4),
                caller(RequestClass::Matched, 0.0, 1.0, 0.0),
            ],
            unbuilt: Vec::new(),
        };
        let split = split_of(&probe);
        assert!((split.plain.canary - 0.2).abs() < 1e-12);
        assert!((split.plain.unserved - 0.2).abs() < 1e-12);
        assert_eq!(split.matched.map(|m| m.canary), Some(1.0));
        let shares = shares_of(&split, 0.1);
        assert_eq!(shares, ServedShares::rounded(0.54, 0.28, 0.18));
    }

    #[test]
    fn seconds_follow_the_observation_in_effect_at_their_start() {
        let history = ServedHistory::default();
        let at = |s: i64| {
            START
                .checked_add(SignedDuration::from_secs(s))
                .unwrap_or(START)
        };
        let half = Split {
            plain: Answers {
                canary: 0.5,
                unserved: 0.0,
            },
            ..Split::default()
        };
        history.observe(at(10), half, false);
        history.observe(at(20), Split::default(), true);
        let second = |s: i64| history.split_for_second(START.as_second() + s);
        assert_eq!(second(10), Split::default());
        assert_eq!(second(11), half);
        assert_eq!(second(20), half);
        assert_eq!(second(21), Split::default());
        let model = TrafficModel {
            seed: 1,
            rps: 100,
            baseline_error_rate: 0.0,
            canary_error_rate: 0.0,
            baseline_latency_ms: 40.0,
            canary_latency_ms: 40.0,
            match_share: 0.1,
        };
        // Ten seconds of half the traffic answered by the canary under a route sending it
        // nothing: about 500 requests.
        let (unserved, outside) = history.unserved_and_outside_release(&model, at(60));
        assert_eq!(unserved, 0);
        assert!((400..600).contains(&outside), "{outside}");
    }
}
