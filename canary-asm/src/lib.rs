//! # canary-asm
//!
//! The Alibaba ASM lane provider: ASMSwimLaneGroup and ASMSwimLane. This crate is being built; today it states what the provider can route, which
//! validation uses to refuse a spec before anything is applied.

use canary_core::{Capabilities, ProviderKind};

/// What this provider can route.
pub fn capabilities() -> Capabilities {
    ProviderKind::AsmHeader.capabilities()
}
