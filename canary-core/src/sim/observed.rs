//! The traffic provider of a simulation, watched: after every change the simulation reads the
//! route back through the provider's own `observe`, and the synthetic traffic follows what it
//! reads, so a provider that routes other than asked is simulated as it routes.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;

use super::traffic::{Split, Splits};
use crate::engine::providers::{Clock, TrafficObservation, TrafficProvider};
use crate::error::Result;
use crate::traffic::RouteState;

/// Every route a provider reported, with when; the first is all traffic on stable.
#[derive(Debug, Clone)]
pub struct RouteHistory(Arc<Mutex<Vec<(Timestamp, RouteState)>>>);

impl RouteHistory {
    /// All traffic on stable since `start`.
    pub fn new(start: Timestamp) -> Self {
        RouteHistory(Arc::new(Mutex::new(vec![(start, RouteState::stable())])))
    }

    fn record(&self, at: Timestamp, route: RouteState) {
        let mut history = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if history.last().is_none_or(|(_, last)| !last.same_as(&route)) {
            history.push((at, route));
        }
    }

    /// Every route reported, with when.
    pub fn routes(&self) -> Vec<(Timestamp, RouteState)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The route in effect at `at`.
    pub fn route_at(&self, at: Timestamp) -> RouteState {
        let history = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let index = history.partition_point(|(since, _)| *since <= at);
        history
            .get(..index)
            .and_then(<[_]>::last)
            .map(|(_, route)| route.clone())
            .unwrap_or_default()
    }

    /// The route last reported.
    pub fn last(&self) -> RouteState {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map(|(_, route)| route.clone())
            .unwrap_or_default()
    }
}

impl Splits for RouteHistory {
    /// The route applied at or before the start of the second `(second − 1, second]`.
    fn split_for_second(&self, second: i64) -> Split {
        match Timestamp::from_second(second - 1) {
            Ok(start) => Split::of_route(&self.route_at(start)),
            Err(_) => Split::of_route(&RouteState::stable()),
        }
    }
}

/// A traffic provider whose routes are recorded as it reports them.
pub struct ObservedTraffic<'a> {
    inner: &'a dyn TrafficProvider,
    clock: Arc<dyn Clock>,
    history: RouteHistory,
}

impl<'a> ObservedTraffic<'a> {
    /// Watches `inner`, stamping what it reports with `clock`.
    pub fn new(inner: &'a dyn TrafficProvider, clock: impl Clock + 'static) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let history = RouteHistory::new(clock.now());
        ObservedTraffic {
            inner,
            clock,
            history,
        }
    }

    /// What it reported, shared.
    pub fn history(&self) -> RouteHistory {
        self.history.clone()
    }

    /// Reads the route back after `applied` was written: as the provider reports it, or as
    /// applied when it cannot read it back (`observe` gave no route, or failed).
    async fn look(&self, applied: &RouteState) {
        let seen = match self.inner.observe(applied).await {
            Ok(TrafficObservation {
                route: Some(route), ..
            }) => route,
            _ => applied.clone(),
        };
        self.history.record(self.clock.now(), seen);
    }
}

#[async_trait]
impl TrafficProvider for ObservedTraffic<'_> {
    async fn apply(&self, route: &RouteState) -> Result<bool> {
        let changed = self.inner.apply(route).await?;
        self.look(route).await;
        Ok(changed)
    }

    async fn observe(&self, applied: &RouteState) -> Result<TrafficObservation> {
        let seen = self.inner.observe(applied).await?;
        if let Some(route) = &seen.route {
            self.history.record(self.clock.now(), route.clone());
        }
        Ok(seen)
    }

    async fn reset(&self) -> Result<bool> {
        let changed = self.inner.reset().await?;
        self.look(&RouteState::stable()).await;
        Ok(changed)
    }

    async fn finalize(&self) -> Result<()> {
        self.inner.finalize().await?;
        self.look(&RouteState::stable()).await;
        Ok(())
    }
}
