//! Leader election on a `coordination.k8s.io` Lease, so several controller replicas can run
//! and exactly one of them acts.
//!
//! It follows client-go `tools/leaderelection/leaderelection.go` (`LeaderElector`): a lease held
//! by another is taken over only once it has stayed unchanged for its duration on this pod's
//! own clock ([`decision`]); a leader renews every retry period, each attempt bounded, and the
//! moment its renew deadline (below the lease duration) passes without a successful renewal
//! it stops acting: [`LeaderElection::while_leading`] drops the work it guards.

pub mod decision;

use std::pin::pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use canary_core::engine::providers::Clock;
use futures::future::Either;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::error::Result;
pub use decision::Timing;
use decision::{Decision, Observation, Record};

/// One candidate for the lease `name`.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The lease as last read, and since when (this candidate's clock) it was so.
    observed: Mutex<Option<Observation>>,
}

/// A term of leadership: when the last successful renewal (or the acquisition) was sent, on the
/// injected clock and on the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    at: Timestamp,
    instant: tokio::time::Instant,
}

impl Term {
    fn now(clock: &dyn Clock) -> Term {
        Term {
            at: clock.now(),
            instant: tokio::time::Instant::now(),
        }
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The renew deadline passed without a successful renewal.
    DeadlinePassed {
        /// The renew deadline.
        deadline: Duration,
    },
    /// The lease is no longer this candidate's.
    Taken {
        /// Its holder now (`None`: released).
        holder: Option<String>,
    },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::DeadlinePassed { deadline } => {
                write!(f, "no renewal of the lease succeeded within {deadline:?}")
            }
            Lost::Taken {
                holder: Some(holder),
            } => write!(f, "{holder} holds the lease"),
            Lost::Taken { holder: None } => write!(f, "the lease was released"),
        }
    }
}

/// What one attempt on the lease came to.
enum Attempt {
    /// This candidate holds the lease (taken, created or renewed).
    Leading,
    /// Another holds it, or (for a leader) it is no longer this candidate's.
    NotMine(Option<String>),
    /// A concurrent write won the race.
    Conflict,
}

impl LeaderElection {
    /// `identity` (e.g. the pod name) competes for lease `name` in `namespace`; others wait
    /// `duration` for a lease that stopped changing, with Kubernetes' proportions for the rest
    /// ([`Timing::for_lease`]).
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing: Timing::for_lease(duration),
            observed: Mutex::new(None),
        }
    }

    /// This candidate with `timing`.
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// The durations it works with.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// One attempt to take or renew the lease; true while this candidate leads. A lost race, or
    /// a lease another holds and still renews, is a `false`, not an error. The attempt is not
    /// bounded in time: [`LeaderElection::acquire`] and [`LeaderElection::keep`] bound theirs.
    pub async fn try_lead(&self, clock: &dyn Clock) -> Result<bool> {
        Ok(matches!(self.attempt(clock, true).await?, Attempt::Leading))
    }

    /// Tries every retry period, each attempt bounded by the renew deadline, until this
    /// candidate leads; errors are logged and tried again. Returns the term begun.
    pub async fn acquire(&self, clock: &dyn Clock) -> Term {
        loop {
            let started = Term::now(clock);
            let attempt = tokio::time::timeout(self.timing.renew_deadline(), async {
                self.attempt(clock, true).await
            });
            match attempt.await {
                Ok(Ok(Attempt::Leading)) => return started,
                Ok(Ok(Attempt::NotMine(holder))) => {
                    tracing::debug!(lease = %self.name, ?holder, "the lease is held");
                }
                Ok(Ok(Attempt::Conflict)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(lease = %self.name, %error, "cannot read or write the lease")
                }
                Err(_) => tracing::warn!(lease = %self.name, "an attempt on the lease timed out"),
            }
            tokio::time::sleep(self.timing.retry_period()).await;
        }
    }

    /// Renews the lease every retry period from `term` on, until it is lost: either another
    /// holds it, or the renew deadline passed since the last successful renewal, measured on
    /// both the injected clock and the monotonic clock, whichever says so first. An attempt in
    /// flight when the deadline passes is dropped.
    pub async fn keep(&self, clock: &dyn Clock, mut term: Term) -> Lost {
        let deadline = self.timing.renew_deadline();
        loop {
            let pause = tokio::time::sleep(self.timing.retry_period());
            if self.before_deadline(clock, term, pause).await.is_none() {
                return Lost::DeadlinePassed { deadline };
            }
            let started = Term::now(clock);
            let attempt = tokio::time::timeout(deadline, self.attempt(clock, false));
            match self.before_deadline(clock, term, attempt).await {
                None => return Lost::DeadlinePassed { deadline },
                Some(Ok(Ok(Attempt::Leading))) => term = started,
                Some(Ok(Ok(Attempt::NotMine(holder)))) => return Lost::Taken { holder },
                Some(Ok(Ok(Attempt::Conflict))) => {
                    tracing::debug!(lease = %self.name, "renewal lost a race; trying again");
                }
                Some(Ok(Err(error))) => {
                    tracing::warn!(lease = %self.name, %error, "cannot renew the lease; trying again");
                }
                Some(Err(_)) => {
                    tracing::warn!(lease = %self.name, "a renewal timed out; trying again");
                }
            }
        }
    }

    /// Runs `work` while this candidate keeps the lease from `term` on: its output, or why the
    /// lease was lost, in which case `work` is dropped at once (never awaited) so nothing it
    /// was doing goes on.
    pub async fn while_leading<F: Future>(
        &self,
        clock: &dyn Clock,
        term: Term,
        work: F,
    ) -> std::result::Result<F::Output, Lost> {
        match first(self.keep(clock, term), work).await {
            Either::Left(lost) => Err(lost),
            Either::Right(output) => Ok(output),
        }
    }

    /// Gives the lease up (on shutdown), if held, so another candidate takes it at once. Only
    /// once the work it guarded has stopped.
    pub async fn step_down(&self) -> Result<()> {
        if let Some(mut lease) = self.api.get_opt(&self.name).await?
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            // `replace` carries the resourceVersion read: a lease changed since stays as it is.
            let _ = won(self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await)?;
        }
        Ok(())
    }

    /// `work`'s output, or `None` once `term`'s renew deadline passed.
    async fn before_deadline<F: Future>(
        &self,
        clock: &dyn Clock,
        term: Term,
        work: F,
    ) -> Option<F::Output> {
        match first(self.deadline(clock, term), work).await {
            Either::Left(()) => None,
            Either::Right(output) => Some(output),
        }
    }

    /// Completes when `term`'s renew deadline passed, on the monotonic clock (at once) or on
    /// the injected one (looked at several times a retry period).
    async fn deadline(&self, clock: &dyn Clock, term: Term) {
        let deadline = self.timing.renew_deadline();
        let look = (self.timing.retry_period() / 4).max(Duration::from_millis(10));
        let monotonic = async {
            match term.instant.checked_add(deadline) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let injected = async {
            while !decision::overdue(term.at, clock.now(), deadline) {
                tokio::time::sleep(look).await;
            }
        };
        first(monotonic, injected).await;
    }

    /// Reads the lease and takes, renews or leaves it as [`decision::decide`] says; a leader
    /// (`may_take` false) never takes a lease that is no longer its own.
    async fn attempt(&self, clock: &dyn Clock, may_take: bool) -> Result<Attempt> {
        let seconds = self.timing.lease_seconds();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            if !may_take {
                return Ok(Attempt::NotMine(None));
            }
            let now = MicroTime(clock.now());
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return self.written(clock, self.api.create(&PostParams::default(), &lease).await);
        };
        let now = clock.now();
        let observation = {
            let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
            let next = Observation::update(observed.take(), Record::of(&lease), now);
            *observed = Some(next.clone());
            next
        };
        let decision = decision::decide(
            &self.identity,
            &observation,
            now,
            self.timing.lease_duration(),
        );
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        match decision {
            Decision::Wait { holder, remaining } => {
                tracing::debug!(lease = %self.name, holder, ?remaining, "the lease is held");
                return Ok(Attempt::NotMine(Some(holder)));
            }
            Decision::Take if !may_take => {
                return Ok(Attempt::NotMine(observation.record.holder));
            }
            Decision::Take => {
                spec.holder_identity = Some(self.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(decision::next_transitions(spec.lease_transitions));
            }
            Decision::Renew => {}
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        // `replace` carries the resourceVersion read above: a concurrent change is a conflict.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await;
        self.written(clock, written)
    }

    /// The outcome of a write of the lease; a written lease is what this candidate last saw.
    fn written(
        &self,
        clock: &dyn Clock,
        result: std::result::Result<Lease, kube::Error>,
    ) -> Result<Attempt> {
        let Some(lease) = won(result)? else {
            return Ok(Attempt::Conflict);
        };
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        *observed = Some(Observation {
            record: Record::of(&lease),
            seen_at: clock.now(),
        });
        Ok(Attempt::Leading)
    }
}

/// Whichever of `a` and `b` completes first (`a` when both are ready); the other is dropped.
async fn first<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    match futures::future::select(pin!(a), pin!(b)).await {
        Either::Left((a, _)) => Either::Left(a),
        Either::Right((b, _)) => Either::Right(b),
    }
}

/// A write that may lose a race: a conflict or an existing object means someone else won.
fn won(result: std::result::Result<Lease, kube::Error>) -> Result<Option<Lease>> {
    match result {
        Ok(lease) => Ok(Some(lease)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// A clock for timing the lease: the wall time when it was made, moved on by the monotonic
/// clock only, so a step of the system clock neither shortens nor stretches a term.
#[derive(Debug, Clone, Copy)]
pub struct SteadyClock {
    origin: Timestamp,
    start: std::time::Instant,
}

impl SteadyClock {
    /// Starts at the system's time now.
    pub fn new() -> Self {
        SteadyClock {
            origin: Timestamp::now(),
            start: std::time::Instant::now(),
        }
    }
}

impl Default for SteadyClock {
    fn default() -> Self {
        SteadyClock::new()
    }
}

impl Clock for SteadyClock {
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.start.elapsed()).unwrap_or(SignedDuration::MAX);
        self.origin
            .saturating_add(elapsed)
            .unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_clock_starts_at_the_system_time_and_never_goes_back() {
        let clock = SteadyClock::new();
        let first = clock.now();
        let skew = Timestamp::now().duration_since(first).unsigned_abs();
        assert!(skew < Duration::from_secs(1), "{skew:?}");
        let mut last = first;
        for _ in 0..1000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
    }
}
