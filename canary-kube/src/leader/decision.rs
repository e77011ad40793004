//! What a candidate may do with the lease, decided from what it observed of the Lease and from
//! its own clock only.
//!
//! After client-go `tools/leaderelection/leaderelection.go` (`tryAcquireOrRenew`,
//! `isLeaseValid`, `setObservedRecord`): a candidate never compares its clock with the
//! `renewTime` another pod wrote. It remembers the record it last saw and when, on its own
//! clock, it first saw it as it is; a lease held by another is free once it has not changed for
//! its `leaseDurationSeconds` since then. Timestamps in the record only serve to tell a change.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;

use crate::error::{Error, Result};

/// The parts of a Lease that tell whether its holder still renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Who holds it (`None` when empty or released).
    pub holder: Option<String>,
    /// The renew time its holder wrote, compared with earlier readings only.
    pub renew_time: Option<Timestamp>,
    /// The object's resourceVersion: any write changes it.
    pub resource_version: Option<String>,
    /// How long the holder asks others to wait (`None` when absent or not positive).
    pub lease_duration: Option<Duration>,
}

impl Record {
    /// The record of `lease` as read from the cluster.
    pub fn of(lease: &Lease) -> Record {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|holder| !holder.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            resource_version: lease.metadata.resource_version.clone(),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|seconds| u64::try_from(seconds).ok())
                .filter(|seconds| *seconds > 0)
                .map(Duration::from_secs),
        }
    }
}

/// A record and the moment, on this candidate's clock, it was first seen as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The record last read.
    pub record: Record,
    /// When this candidate first read it unchanged (its own clock).
    pub seen_at: Timestamp,
}

impl Observation {
    /// What is known after reading `record` at `now`: the earlier observation's time is kept
    /// while the record is unchanged, and restarts at `now` on any change.
    pub fn update(previous: Option<Observation>, record: Record, now: Timestamp) -> Observation {
        match previous {
            Some(previous) if previous.record == record => previous,
            _ => Observation {
                record,
                seen_at: now,
            },
        }
    }
}

/// What a candidate may do with the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It holds the lease: renew it (same acquire time and transitions).
    Renew,
    /// The lease is free (released) or expired: take it, counting a transition.
    Take,
    /// Another holds it and it changed too recently: wait.
    Wait {
        /// The holder.
        holder: String,
        /// How long it must stay unchanged, from now, before it may be taken.
        remaining: Duration,
    },
}

/// What `identity` may do given `observed`, at `now` on its own clock; `default_duration`
/// stands for a lease duration the record lacks.
pub fn decide(
    identity: &str,
    observed: &Observation,
    now: Timestamp,
    default_duration: Duration,
) -> Decision {
    let Some(holder) = observed.record.holder.as_deref() else {
        return Decision::Take;
    };
    if holder == identity {
        return Decision::Renew;
    }
    let duration = observed.record.lease_duration.unwrap_or(default_duration);
    let unchanged_for = elapsed(observed.seen_at, now);
    match duration.checked_sub(unchanged_for) {
        Some(remaining) if !remaining.is_zero() => Decision::Wait {
            holder: holder.to_owned(),
            remaining,
        },
        _ => Decision::Take,
    }
}

/// True once `deadline` has passed on this candidate's clock since its last successful
/// renewal (at `renewed_at`, read before the renewal was sent): from then on it must not act.
pub fn overdue(renewed_at: Timestamp, now: Timestamp, deadline: Duration) -> bool {
    elapsed(renewed_at, now) >= deadline
}

/// `leaseTransitions` after a take-over: one more, saturating (the value comes from the
/// cluster; a negative one counts as none).
pub fn next_transitions(current: Option<i32>) -> i32 {
    current.unwrap_or(0).max(0).saturating_add(1)
}

/// Time from `earlier` to `now`; none when this clock went back.
fn elapsed(earlier: Timestamp, now: Timestamp) -> Duration {
    let since = now.duration_since(earlier);
    if since.is_negative() {
        Duration::ZERO
    } else {
        since.unsigned_abs()
    }
}

/// How long a term lasts and how a leader keeps it, after client-go's `LeaderElectionConfig`
/// (`LeaseDuration`, `RenewDeadline`, `RetryPeriod`, checked as `NewLeaderElector` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// The longest lease: `leaseDurationSeconds` is an `int32`.
const LONGEST_LEASE: Duration = Duration::from_secs(i32::MAX as u64);

impl Timing {
    /// A lease others wait `lease_duration` for (a whole number of seconds is written, rounded
    /// up, at least 1 s); a leader that has not renewed within `renew_deadline` stops acting;
    /// attempts are `retry_period` apart. The renew deadline must be below the lease duration,
    /// and above 1.2 retry periods (client-go's jitter factor), so a leader stops before anyone
    /// may take over and has more than one try.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Timing> {
        if lease_duration < Duration::from_secs(1) || lease_duration > LONGEST_LEASE {
            return Err(Error::Invalid(format!(
                "the lease duration must be between 1s and {}s, not {lease_duration:?}",
                LONGEST_LEASE.as_secs()
            )));
        }
        if renew_deadline.is_zero() || renew_deadline >= lease_duration {
            return Err(Error::Invalid(format!(
                "the renew deadline ({renew_deadline:?}) must be above zero and below the \
                 lease duration ({lease_duration:?})"
            )));
        }
        if retry_period.is_zero() || retry_period.saturating_mul(6) / 5 >= renew_deadline {
            return Err(Error::Invalid(format!(
                "the retry period ({retry_period:?}) must be above zero and 1.2 times it below \
                 the renew deadline ({renew_deadline:?})"
            )));
        }
        Ok(Timing {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    /// The proportions of Kubernetes' own components (15 s lease, 10 s deadline, 2 s retry)
    /// for a lease of `lease_duration` (kept between 1 s and `i32::MAX` seconds).
    pub fn for_lease(lease_duration: Duration) -> Timing {
        let lease_duration = lease_duration.clamp(Duration::from_secs(1), LONGEST_LEASE);
        Timing {
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration * 2 / 15,
        }
    }

    /// How long others wait for a lease that stopped changing.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long after its last successful renewal a leader stops acting.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// The time between attempts.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// `leaseDurationSeconds` as written: whole seconds, rounded up, so others never wait less
    /// than this candidate's deadline assumes.
    pub fn lease_seconds(&self) -> i32 {
        let whole = self.lease_duration.as_secs();
        let seconds = if self.lease_duration.subsec_nanos() > 0 {
            whole.saturating_add(1)
        } else {
            whole
        };
        i32::try_from(seconds).unwrap_or(i32::MAX)
    }
}

impl Default for Timing {
    /// 15 s lease, 10 s renew deadline, 2 s retry period.
    fn default() -> Self {
        Timing::for_lease(Duration::from_secs(15))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn record(holder: Option<&str>, renew: Timestamp, version: &str) -> Record {
        Record {
            holder: holder.map(str::to_owned),
            renew_time: Some(renew),
            resource_version: Some(version.to_owned()),
            lease_duration: Some(15 * SECOND),
        }
    }

    fn seen(record: Record, seconds: i64) -> Observation {
        Observation {
            record,
            seen_at: at(seconds),
        }
    }

    #[test]
    fn an_unchanged_record_keeps_when_it_was_first_seen() {
        let first = Observation::update(None, record(Some("a"), at(0), "1"), at(5));
        assert_eq!(first.seen_at, at(5));
        let again = Observation::update(Some(first.clone()), record(Some("a"), at(0), "1"), at(9));
        assert_eq!(again.seen_at, at(5), "nothing changed since 5");
    }

    #[test]
    fn any_change_restarts_the_observation() {
        let base = seen(record(Some("a"), at(0), "1"), 0);
        for changed in [
            record(Some("b"), at(0), "1"),
            record(Some("a"), at(1), "1"),
            record(Some("a"), at(0), "2"),
        ] {
            let next = Observation::update(Some(base.clone()), changed.clone(), at(7));
            assert_eq!(next.seen_at, at(7), "{changed:?}");
            assert_eq!(next.record, changed);
        }
    }

    #[test]
    fn a_foreign_lease_is_free_only_after_its_duration_unchanged_on_this_clock() {
        let observed = seen(record(Some("a"), at(0), "1"), 100);
        assert_eq!(
            decide("b", &observed, at(110), SECOND),
            Decision::Wait {
                holder: "a".to_owned(),
                remaining: 5 * SECOND
            }
        );
        assert_eq!(
            decide("b", &observed, at(115), SECOND),
            Decision::Take,
            "15 s unchanged"
        );
    }

    #[test]
    fn the_renew_time_written_by_another_clock_is_never_read_as_time() {
        // Renewed "in the future" and "long ago" by a skewed clock: only the observation counts.
        for renew in [at(10_000_000), at(-10_000_000)] {
            let observed = seen(record(Some("a"), renew, "1"), 0);
            assert!(
                matches!(decide("b", &observed, at(1), SECOND), Decision::Wait { .. }),
                "{renew}"
            );
            assert_eq!(decide("b", &observed, at(15), SECOND), Decision::Take);
        }
    }

    #[test]
    fn a_clock_that_went_back_never_expires_a_lease() {
        let observed = seen(record(Some("a"), at(0), "1"), 100);
        assert!(matches!(
            decide("b", &observed, at(-1000), SECOND),
            Decision::Wait { remaining, .. } if remaining == 15 * SECOND
        ));
    }

    #[test]
    fn its_own_lease_is_renewed_and_a_released_one_taken() {
        let mine = seen(record(Some("b"), at(0), "1"), 0);
        assert_eq!(decide("b", &mine, at(1000), SECOND), Decision::Renew);
        let free = seen(record(None, at(0), "1"), 0);
        assert_eq!(decide("b", &free, at(0), SECOND), Decision::Take);
    }

    #[test]
    fn a_record_without_duration_waits_the_default() {
        let mut without = record(Some("a"), at(0), "1");
        without.lease_duration = None;
        let observed = seen(without, 0);
        assert!(matches!(
            decide("b", &observed, at(20), 30 * SECOND),
            Decision::Wait { .. }
        ));
        assert_eq!(decide("b", &observed, at(30), 30 * SECOND), Decision::Take);
    }

    #[test]
    fn the_record_of_a_lease_ignores_empty_holders_and_bad_durations() {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "l", "resourceVersion": "7"},
            "spec": {"holderIdentity": "", "leaseDurationSeconds": -3},
        }))
        .unwrap();
        let record = Record::of(&lease);
        assert_eq!(record.holder, None);
        assert_eq!(record.lease_duration, None);
        assert_eq!(record.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn a_leader_is_overdue_once_the_deadline_passed_since_its_renewal() {
        assert!(!overdue(at(0), at(9), 10 * SECOND));
        assert!(overdue(at(0), at(10), 10 * SECOND));
        assert!(
            !overdue(at(0), at(-50), 10 * SECOND),
            "a clock that went back"
        );
    }

    #[test]
    fn transitions_saturate() {
        assert_eq!(next_transitions(None), 1);
        assert_eq!(next_transitions(Some(4)), 5);
        assert_eq!(next_transitions(Some(i32::MAX)), i32::MAX);
        assert_eq!(next_transitions(Some(-9)), 1);
    }

    #[test]
    fn timing_keeps_the_deadline_below_the_lease() {
        let default = Timing::default();
        assert_eq!(
            (
                default.lease_duration(),
                default.renew_deadline(),
                default.retry_period()
            ),
            (15 * SECOND, 10 * SECOND, 2 * SECOND)
        );
        assert!(Timing::new(15 * SECOND, 10 * SECOND, 2 * SECOND).is_ok());
        assert!(Timing::new(15 * SECOND, 15 * SECOND, 2 * SECOND).is_err());
        assert!(Timing::new(15 * SECOND, 10 * SECOND, 9 * SECOND).is_err());
        assert!(Timing::new(15 * SECOND, 10 * SECOND, Duration::ZERO).is_err());
        assert!(Timing::new(SECOND / 2, SECOND / 4, SECOND / 10).is_err());
        for lease in [Duration::ZERO, SECOND, 15 * SECOND, Duration::MAX] {
            let timing = Timing::for_lease(lease);
            assert!(
                Timing::new(
                    timing.lease_duration(),
                    timing.renew_deadline(),
                    timing.retry_period()
                )
                .is_ok(),
                "{timing:?}"
            );
        }
    }

    #[test]
    fn the_written_duration_is_never_shorter() {
        let timing = Timing::new(SECOND * 3 / 2, SECOND, SECOND / 5).unwrap();
        assert_eq!(timing.lease_seconds(), 2);
        assert_eq!(Timing::for_lease(Duration::MAX).lease_seconds(), i32::MAX);
    }
}
