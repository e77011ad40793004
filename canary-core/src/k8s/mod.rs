//! Kubernetes objects as plain JSON: reading and checking them ([`objects`]), and the canary
//! and stable Services the Service-routed providers share ([`services`]).

pub mod objects;
pub mod services;
