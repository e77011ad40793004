//! Traffic factories for the controller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use canary_core::RolloutPlan;
use canary_core::RouteState;
use canary_core::engine::memory::{Faults, InMemoryTraffic};
use canary_core::engine::providers::{Clock, TrafficObservation, TrafficProvider};
use canary_core::traffic::TrafficBackend;
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
    fn provider(&self, _: &Client, plan: &RolloutPlan) -> Result<Arc<dyn TrafficProvider>> {
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (plan.namespace.clone(), plan.name.clone());
        let traffic = routes.entry(key).or_insert_with(|| {
            InMemoryTraffic::new(plan.capabilities(), self.clock.clone(), Faults::default())
        });
        Ok(Arc::new(traffic.with_capabilities(plan.capabilities())))
    }
}

/// A traffic backend that can also apply its routes to a cluster: what each traffic provider
/// crate implements, once, for the controller, beside its pure
/// [`TrafficBackend`](canary_core::traffic::TrafficBackend).
pub trait ClusterBackend: TrafficBackend {
    /// The provider applying `plan`'s routes through `client`.
    fn traffic(&self, client: Client, plan: RolloutPlan) -> Arc<dyn TrafficProvider>;
}

/// Makes each Rollout's provider with the backend of the provider it names, talking through
/// the controller's client; a Rollout naming a provider not among them is refused with the
/// list of those that are.
pub struct Backends {
    backends: Vec<&'static dyn ClusterBackend>,
}

impl Backends {
    /// Providers of `backends`.
    pub fn new(backends: impl IntoIterator<Item = &'static dyn ClusterBackend>) -> Self {
        Backends {
            backends: backends.into_iter().collect(),
        }
    }
}

/// A cluster provider whose errors name it (`istio provider: …`).
struct Named {
    name: &'static str,
    provider: Arc<dyn TrafficProvider>,
}

#[async_trait::async_trait]
impl TrafficProvider for Named {
    async fn apply(&self, route: &RouteState) -> canary_core::Result<bool> {
        self.provider
            .apply(route)
            .await
            .map_err(|e| e.of_provider(self.name))
    }

    async fn observe(&self, applied: &RouteState) -> canary_core::Result<TrafficObservation> {
        self.provider
            .observe(applied)
            .await
            .map_err(|e| e.of_provider(self.name))
    }

    async fn reset(&self) -> canary_core::Result<bool> {
        self.provider
            .reset()
            .await
            .map_err(|e| e.of_provider(self.name))
    }

    async fn finalize(&self) -> canary_core::Result<()> {
        self.provider
            .finalize()
            .await
            .map_err(|e| e.of_provider(self.name))
    }
}

impl TrafficFactory for Backends {
    /// The built-in providers and the plugins among the backends.
    fn registry(&self) -> canary_core::traffic::Registry {
        let plugins = self
            .backends
            .iter()
            .map(|backend| backend.descriptor())
            .filter(|descriptor| descriptor.is_plugin());
        plugins.fold(
            canary_core::traffic::Registry::builtin(),
            |registry, plugin| match registry.clone().register(plugin) {
                Ok(more) => more,
                Err(error) => {
                    tracing::warn!(%error, "a traffic backend is left out");
                    registry
                }
            },
        )
    }

    fn provider(&self, client: &Client, plan: &RolloutPlan) -> Result<Arc<dyn TrafficProvider>> {
        let backend = self
            .backends
            .iter()
            .find(|backend| backend.descriptor() == plan.provider);
        match backend {
            Some(backend) => Ok(Arc::new(Named {
                name: backend.descriptor().name,
                provider: backend.traffic(client.clone(), plan.clone()),
            })),
            None => {
                let known: Vec<&str> = self
                    .backends
                    .iter()
                    .map(|backend| backend.descriptor().name)
                    .collect();
                Err(Error::Invalid(format!(
                    "the {} traffic provider is not part of this controller (it has: {})",
                    plan.provider.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }
}
