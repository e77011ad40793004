//! Analysis backends: the builtin metrics and query templates ([`queries`]), the Prometheus
//! client (feature `prometheus`), webhook calls (feature `webhooks`), and the destinations a
//! controller may send them to ([`destinations`]).

pub mod destinations;
#[cfg(any(feature = "prometheus", feature = "webhooks"))]
mod http;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod queries;
#[cfg(feature = "webhooks")]
pub mod webhooks;
