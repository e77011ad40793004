//! When to try an object again after failed passes: a delay per object that doubles with each
//! failure in a row, up to a limit, and starts over after a pass that succeeds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use canary_core::ErrorClass;

/// The delay after a first failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The longest delay between tries.
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// The delay before trying again after `failures` failures in a row (1 for the first):
/// `first`, doubled for each further failure, never beyond `longest`.
pub fn delay(failures: u32, first: Duration, longest: Duration) -> Duration {
    let doublings = failures.saturating_sub(1);
    2u32.checked_pow(doublings)
        .and_then(|factor| first.checked_mul(factor))
        .map_or(longest, |delay| delay.min(longest))
}

/// The first retry after a conflict: another writer came in between, so reading again at once
/// usually succeeds.
pub const CONFLICT_RETRY: Duration = Duration::from_secs(1);

/// The shortest retry of a spec or an object that is not as needed: it changes when a person
/// (or the cluster: old canary pods terminating) changes it, and an edit of an object the
/// controller does not watch (an Ingress, a mesh route) wakes nothing, so not much longer than
/// a first transient retry.
pub const INVALID_RETRY: Duration = Duration::from_secs(15);

/// How long to wait before retrying after the `failures`-th failure in a row, of `class`,
/// given the plain exponential `backoff` for that count: a first conflict soon, a transient
/// failure or repeated conflicts with the backoff, an invalid object at least
/// [`INVALID_RETRY`], a fatal error at the longest.
pub fn delay_for(class: ErrorClass, failures: u32, backoff: Duration) -> Duration {
    match class {
        ErrorClass::Conflict if failures <= 1 => CONFLICT_RETRY.min(backoff),
        ErrorClass::Conflict | ErrorClass::Transient => backoff,
        ErrorClass::Invalid => backoff.max(INVALID_RETRY),
        ErrorClass::Fatal => LONGEST_RETRY,
    }
}

/// Failures in a row per object (e.g. a Rollout's `ObjectRef`).
#[derive(Debug)]
pub struct Backoff<K> {
    failures: Mutex<HashMap<K, u32>>,
    first: Duration,
    longest: Duration,
}

impl<K: Hash + Eq> Backoff<K> {
    /// Delays from `first` doubling up to `longest`.
    pub fn new(first: Duration, longest: Duration) -> Self {
        Backoff {
            failures: Mutex::new(HashMap::new()),
            first,
            longest,
        }
    }

    /// Counts a failed pass over `key`; the delay before its next try.
    pub fn failed(&self, key: K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(key).or_insert(0);
        *count = count.saturating_add(1);
        delay(*count, self.first, self.longest)
    }

    /// A pass over `key` succeeded: its next failure starts from the first delay again.
    pub fn succeeded(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Failures in a row of `key` so far.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

impl<K: Hash + Eq> Default for Backoff<K> {
    /// 5 s doubling up to 5 min.
    fn default() -> Self {
        Backoff::new(FIRST_RETRY, LONGEST_RETRY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_delay_doubles_up_to_the_limit() {
        let delays: Vec<u64> = (1..=9)
            .map(|n| delay(n, FIRST_RETRY, LONGEST_RETRY).as_secs())
            .collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn huge_counts_and_durations_stay_at_the_limit() {
        assert_eq!(delay(0, FIRST_RETRY, LONGEST_RETRY), FIRST_RETRY);
        assert_eq!(delay(33, FIRST_RETRY, LONGEST_RETRY), LONGEST_RETRY);
        assert_eq!(delay(u32::MAX, FIRST_RETRY, LONGEST_RETRY), LONGEST_RETRY);
        assert_eq!(delay(3, Duration::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn the_class_of_a_failure_sets_how_soon_it_is_retried() {
        let backoff = |n| delay(n, FIRST_RETRY, LONGEST_RETRY);
        assert_eq!(
            delay_for(ErrorClass::Conflict, 1, backoff(1)),
            CONFLICT_RETRY
        );
        assert_eq!(
            delay_for(ErrorClass::Conflict, 3, backoff(3)),
            backoff(3),
            "conflicts again and again back off like any failure"
        );
        assert_eq!(delay_for(ErrorClass::Transient, 1, backoff(1)), FIRST_RETRY);
        assert_eq!(delay_for(ErrorClass::Transient, 4, backoff(4)), backoff(4));
        assert_eq!(delay_for(ErrorClass::Invalid, 1, backoff(1)), INVALID_RETRY);
        assert_eq!(delay_for(ErrorClass::Invalid, 3, backoff(3)), backoff(3));
        assert_eq!(delay_for(ErrorClass::Invalid, 9, backoff(9)), LONGEST_RETRY);
        assert_eq!(delay_for(ErrorClass::Fatal, 1, backoff(1)), LONGEST_RETRY);
    }

    #[test]
    fn each_object_backs_off_alone_and_starts_over_after_a_success() {
        let backoff = Backoff::new(SECOND, 60 * SECOND);
        assert_eq!(backoff.failed("a"), SECOND);
        assert_eq!(backoff.failed("a"), 2 * SECOND);
        assert_eq!(backoff.failed("b"), SECOND, "b has its own count");
        assert_eq!(backoff.failed("a"), 4 * SECOND);
        assert_eq!(backoff.failures(&"a"), 3);
        backoff.succeeded(&"a");
        assert_eq!(backoff.failures(&"a"), 0);
        assert_eq!(backoff.failed("a"), SECOND, "reset by the success");
        assert_eq!(backoff.failed("b"), 2 * SECOND, "b still counts");
    }
}
