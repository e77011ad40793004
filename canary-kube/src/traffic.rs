//! Traffic factories for the controller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use canary_core::RolloutPlan;
use canary_core::memory::{Faults, InMemoryTraffic};
use canary_core::providers::{Clock, TrafficProvider};
use kube::Client;

use crate::controller::TrafficFactory;
use crate::error::{Error, Result};

/// Routes kept in memory, one per Rollout: the workloads are real, the traffic split is not.
/// For tests, and for trying the controller on a cluster before a mesh is set up.
pub struct MemoryTraffic {
    clock: Arc<dyn Clock>,
    routes: Mutex<BTreeMap<(String, String), InMemoryTraffic>>,
}

impl MemoryTraffic {
    /// Routes stamped by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryTraffic {
            clock,
            routes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The routes of Rollout `namespace/name`, if it has been reconciled.
    pub fn routes(&self, namespace: &str, name: &str) -> Option<InMemoryTraffic> {
        let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

impl TrafficFactory for MemoryTraffic {
    fn provider(&self, plan: &RolloutPlan) -> Result<Arc<dyn TrafficProvider>> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (plan.namespace.clone(), plan.name.clone());
        let traffic = routes.entry(key).or_insert_with(|| {
            InMemoryTraffic::new(plan.capabilities(), self.clock.clone(), Faults::default())
        });
        Ok(Arc::new(traffic.clone()))
    }
}

/// A factory for a build without the mesh providers: every Rollout is refused with a message
/// naming the missing provider.
pub struct NoTraffic;

impl TrafficFactory for NoTraffic {
    fn provider(&self, plan: &RolloutPlan) -> Result<Arc<dyn TrafficProvider>> {
        Err(Error::Invalid(format!(
            "the {} traffic provider is not part of this controller",
            plan.provider.name()
        )))
    }
}

/// A factory making one provider per Rollout with `make`, all talking through one client: what
/// each traffic provider crate offers (`IstioTraffic::factory(client)`…).
pub struct ProviderFactory {
    client: Client,
    make: fn(Client, RolloutPlan) -> Arc<dyn TrafficProvider>,
}

impl ProviderFactory {
    /// Providers made by `make`, talking through `client`.
    pub fn new(client: Client, make: fn(Client, RolloutPlan) -> Arc<dyn TrafficProvider>) -> Self {
        ProviderFactory { client, make }
    }
}

impl TrafficFactory for ProviderFactory {
    fn provider(&self, plan: &RolloutPlan) -> Result<Arc<dyn TrafficProvider>> {
        Ok((self.make)(self.client.clone(), plan.clone()))
    }
}
