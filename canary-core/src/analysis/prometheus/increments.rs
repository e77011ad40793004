//! How much a set of counter series grew in a window, from each series' value before the window
//! and its raw samples in it: per series, robust to missed scrapes, restarts and series that
//! come and go.
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
//! - a series with no earlier value counts in full only when it appears on a target whose other
//!   series go on through the same scrape (a new response code, a new caller: those requests
//!   came after that target's previous scrape); otherwise (a new pod, one back after a long
//!   gap, or a target whose labels all changed at once, as a relabelling does) it is only the
//!   base the next samples grow from, as for Prometheus' `increase()`, so no lifetime ever
//!   lands in one window.

use std::collections::{BTreeMap, BTreeSet};

/// One counter series: its last value at or before the window's start, and its samples in the
/// window, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct CounterSeries {
    /// The scrape target that exposes it (`job` and `instance`), when known; a series with no
    /// target is its own.
    pub target: Option<String>,
    /// Whether it counts server errors (its response code is `5xx`).
    pub error: bool,
    /// Its value at or before the window's start, if it had one (within the lookback).
    pub before: Option<f64>,
    /// `(milliseconds since the epoch, value)` inside the window.
    pub samples: Vec<(i64, f64)>,
}

/// Requests and, of those, errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Requests: the growth of every series.
    pub requests: u64,
    /// Errors: the growth of the error series.
    pub errors: u64,
}

/// The growth of `series` in their window.
///
/// ```
/// use canary_core::analysis::prometheus::increments::{count, CounterSeries};
/// let ok = CounterSeries { target: Some("pod-a".into()), error: false, before: Some(100.0),
///     samples: vec![(30_000, 130.0), (60_000, 5.0), (90_000, 25.0)] };
/// // +30 before the restart, 5 since it, +20 after.
/// assert_eq!(count(&[ok]).requests, 55);
/// ```
pub fn count(series: &[CounterSeries]) -> Counted {
    // The scrapes through which some series of a target goes on (it had a value before).
    let mut going_on: BTreeSet<(&str, i64)> = BTreeSet::new();
    for s in series {
        let Some(target) = s.target.as_deref() else {
            continue;
        };
        let first = usize::from(s.before.is_none());
        for (t, _) in s.samples.iter().skip(first) {
            going_on.insert((target, *t));
        }
    }
    let (mut requests, mut errors) = (0.0, 0.0);
    for s in series {
        let mut previous = s.before.filter(|v| v.is_finite() && *v >= 0.0);
        for &(t, value) in &s.samples {
            if !value.is_finite() || value < 0.0 {
                continue;
            }
            let growth = match previous {
                Some(before) if value >= before => value - before,
                // A reset: what was counted since the restart.
                Some(_) => value,
                // New on a target that goes on through this scrape.
                None if s
                    .target
                    .as_deref()
                    .is_some_and(|target| going_on.contains(&(target, t))) =>
                {
                    value
                }
                None => 0.0,
            };
            requests += growth;
            if s.error {
                errors += growth;
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

/// The newest sample time among `series`, in milliseconds since the epoch.
pub fn newest(series: &[CounterSeries]) -> Option<i64> {
    series
        .iter()
        .filter_map(|s| s.samples.last().map(|(t, _)| *t))
        .max()
}

/// A series' labels, without its metric name (which Prometheus' functions drop).
pub(crate) type Labels = BTreeMap<String, String>;

/// Groups window samples with the values before the window, series by series.
pub(crate) fn join(
    before: BTreeMap<Labels, f64>,
    window: Vec<(Labels, Vec<(i64, f64)>)>,
    describe: impl Fn(&Labels) -> (Option<String>, bool),
) -> Vec<CounterSeries> {
    let mut before = before;
    let mut joined: Vec<CounterSeries> = window
        .into_iter()
        .map(|(labels, samples)| {
            let (target, error) = describe(&labels);
            CounterSeries {
                target,
                error,
                before: before.remove(&labels),
                samples,
            }
        })
        .collect();
    // Series with a value before but none in the window grew nothing; they still tell which
    // targets existed.
    joined.extend(before.into_iter().map(|(labels, value)| {
        let (target, error) = describe(&labels);
        CounterSeries {
            target,
            error,
            before: Some(value),
            samples: Vec::new(),
        }
    }));
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(
        target: &str,
        error: bool,
        before: Option<f64>,
        samples: &[(i64, f64)],
    ) -> CounterSeries {
        CounterSeries {
            target: Some(target.to_owned()),
            error,
            before,
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn a_target_missing_at_the_window_start_counts_only_its_growth() {
        // Its last value before the window is from before two failed scrapes.
        let s = [series("a", true, Some(5000.0), &[(60_000, 5003.0)])];
        assert_eq!(
            count(&s),
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
            None,
            &[(20_000, 1_000_000.0), (50_000, 1_000_300.0)],
        )];
        assert_eq!(count(&s).requests, 300);
    }

    #[test]
    fn a_new_series_next_to_one_that_goes_on_counts_in_full() {
        let s = [
            series("a", false, Some(100.0), &[(30_000, 200.0)]),
            series("a", true, None, &[(30_000, 7.0)]),
        ];
        assert_eq!(
            count(&s),
            Counted {
                requests: 107,
                errors: 7
            }
        );
    }

    #[test]
    fn relabelled_series_are_bases_not_lifetimes() {
        // Every series of the target changed labels at 90s: the old ones stop, the new ones
        // start with the whole history.
        let s = [
            series("a", false, Some(4_500_600.0), &[]),
            series("a", true, Some(500_000.0), &[]),
            series("a", false, None, &[(90_000, 4_500_900.0)]),
            series("a", true, None, &[(90_000, 500_000.0)]),
        ];
        assert_eq!(count(&s), Counted::default());
    }

    #[test]
    fn a_restart_counts_what_came_after_it() {
        let s = [series(
            "a",
            false,
            Some(900.0),
            &[(30_000, 12.0), (60_000, 40.0)],
        )];
        assert_eq!(count(&s).requests, 40);
    }

    #[test]
    fn nonsense_values_are_skipped() {
        let s = [series(
            "a",
            false,
            Some(1.0),
            &[(10_000, f64::NAN), (20_000, 3.0), (30_000, -5.0)],
        )];
        assert_eq!(count(&s).requests, 2);
    }
}
