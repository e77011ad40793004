//! # canary-nginx
//!
//! The ingress-nginx traffic provider: the canary Ingress and Service. This crate is being built; today it states what the provider can route, which
//! validation uses to refuse a spec before anything is applied.

use canary_core::{Capabilities, ProviderKind};

/// What this provider can route.
pub fn capabilities() -> Capabilities {
    ProviderKind::Nginx.capabilities()
}
