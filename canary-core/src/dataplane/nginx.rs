//! The nginx data plane (to be modelled).

use super::{Request, Served, World};

/// Who answers `request` in `world`.
pub fn serve(_world: &World, _request: &Request) -> Served {
    Served::nobody("not modelled yet")
}
