//! How much a set of counter series grew in a window, from their raw samples: per series, robust
//! to missed scrapes, restarts and series that come and go.
//!
//! Prometheus stores what each scrape of a target returned, stamped with the time the scrape
//! started. Subtracting two instant `sum()`s of the series, as a naive judge would, goes wrong
//! exactly where real clusters differ from a test bench: a target whose scrape failed (or a pod
//! that is gone) has no value at one end, so its whole lifetime is counted into the window or
//! the window loses it; a restarted sidecar resets its counters. Instead, each series' growth is
//! summed over consecutive pairs of its own samples, each pair counted in the window that holds
//! its later sample, so consecutive windows add up exactly:
//! - a pair that goes down is a counter reset: the later value is what was counted since the
//!   restart (Prometheus' own rule for `rate()`);
//! - a gap of missed scrapes is bridged: the pair spans it;
//! - a series' first sample in the lookback counts in full only when its target had been
//!   scraped before without it (a new response code, a new caller: those requests came after
//!   that scrape); otherwise (a new pod, or one back after longer than the lookback) it is only
//!   the base the next samples grow from, as for Prometheus' `increase()`, so no lifetime ever
//!   lands in one window.

use std::collections::BTreeMap;

/// One counter series' samples, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterSeries {
    /// The scrape target that exposes it (`job` and `instance`), when known; a series with no
    /// target is its own.
    pub target: Option<String>,
    /// Whether it counts server errors (its response code is `5xx`).
    pub error: bool,
    /// `(seconds since the epoch, value)`.
    pub samples: Vec<(f64, f64)>,
}

/// Requests and, of those, errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Requests: the growth of every series.
    pub requests: u64,
    /// Errors: the growth of the error series.
    pub errors: u64,
}

/// The growth of `series` in the window `(start, end]` (seconds since the epoch).
///
/// ```
/// use canary_core::prometheus::increments::{count, CounterSeries};
/// let ok = CounterSeries { target: Some("pod-a".into()), error: false,
///     samples: vec![(0.0, 100.0), (30.0, 130.0), (60.0, 5.0), (90.0, 25.0)] };
/// // 30..90: +30 before the restart, 5 since it, +20 after.
/// assert_eq!(count(&[ok], 15.0, 90.0).requests, 55);
/// ```
pub fn count(series: &[CounterSeries], start: f64, end: f64) -> Counted {
    // When each target was first seen, over all its series.
    let mut first_seen: BTreeMap<&str, f64> = BTreeMap::new();
    for s in series {
        let first = s.samples.iter().find(|(t, _)| *t <= end);
        if let (Some(target), Some((t, _))) = (s.target.as_deref(), first) {
            let seen = first_seen.entry(target).or_insert(*t);
            *seen = seen.min(*t);
        }
    }
    let (mut requests, mut errors) = (0.0, 0.0);
    for s in series {
        let target_seen = s
            .target
            .as_deref()
            .and_then(|target| first_seen.get(target).copied());
        let mut previous: Option<f64> = None;
        for &(t, value) in &s.samples {
            if !value.is_finite() || value < 0.0 || t > end {
                continue;
            }
            if t > start {
                let growth = match previous {
                    Some(before) if value >= before => value - before,
                    // A reset: what was counted since the restart.
                    Some(_) => value,
                    // New on a target scraped before without it.
                    None if target_seen.is_some_and(|seen| seen < t) => value,
                    None => 0.0,
                };
                requests += growth;
                if s.error {
                    errors += growth;
                }
            }
            previous = Some(value);
        }
    }
    Counted {
        requests: to_count(requests),
        errors: to_count(errors),
    }
}

fn to_count(value: f64) -> u64 {
    // Counters are whole numbers; the sum of f64 differences only needs rounding. `as`
    // saturates at the bounds.
    value.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(target: &str, error: bool, samples: &[(f64, f64)]) -> CounterSeries {
        CounterSeries {
            target: Some(target.to_owned()),
            error,
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn consecutive_windows_add_up_to_the_growth() {
        let s = [
            series(
                "a",
                false,
                &[(0.0, 10.0), (15.0, 40.0), (30.0, 55.0), (45.0, 90.0)],
            ),
            series(
                "a",
                true,
                &[(0.0, 1.0), (15.0, 1.0), (30.0, 4.0), (45.0, 5.0)],
            ),
        ];
        let windows = [(0.0, 10.0), (10.0, 20.0), (20.0, 40.0), (40.0, 50.0)];
        let total: Vec<Counted> = windows.iter().map(|(a, b)| count(&s, *a, *b)).collect();
        assert_eq!(
            total.iter().map(|c| c.requests).sum::<u64>(),
            (90 - 10) + (5 - 1)
        );
        assert_eq!(total.iter().map(|c| c.errors).sum::<u64>(), 4);
        assert_eq!(total[0], Counted::default(), "no sample in (0, 10]");
    }

    #[test]
    fn a_target_missing_at_the_window_start_counts_only_its_growth() {
        // Scrapes at 0 and 30 failed: the pair (-30, 60) spans them.
        let s = [series("a", true, &[(-30.0, 5000.0), (60.0, 5003.0)])];
        assert_eq!(
            count(&s, 10.0, 60.0),
            Counted {
                requests: 3,
                errors: 3
            }
        );
    }

    #[test]
    fn a_pod_first_seen_in_the_window_is_a_base_not_a_lifetime() {
        let s = [series(
            "new-pod",
            false,
            &[(20.0, 1_000_000.0), (50.0, 1_000_300.0)],
        )];
        assert_eq!(count(&s, 10.0, 60.0).requests, 300);
    }

    #[test]
    fn a_new_series_on_a_known_target_counts_in_full() {
        let s = [
            series("a", false, &[(0.0, 100.0), (30.0, 200.0)]),
            series("a", true, &[(30.0, 7.0)]),
        ];
        assert_eq!(
            count(&s, 10.0, 40.0),
            Counted {
                requests: 107,
                errors: 7
            }
        );
    }

    #[test]
    fn a_restart_counts_what_came_after_it() {
        let s = [series(
            "a",
            false,
            &[(0.0, 900.0), (30.0, 12.0), (60.0, 40.0)],
        )];
        assert_eq!(count(&s, 0.0, 60.0).requests, 40);
    }

    #[test]
    fn samples_after_the_window_and_nonsense_values_are_ignored() {
        let s = [series(
            "a",
            false,
            &[(0.0, 1.0), (10.0, f64::NAN), (20.0, 3.0), (90.0, 100.0)],
        )];
        assert_eq!(count(&s, 0.0, 60.0).requests, 2);
    }
}
