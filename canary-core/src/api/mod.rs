//! The Rollout API: what users write ([`spec`]), how it is read ([`load`]), every rule it must
//! follow with the field path of each error ([`validate`]), and the plan the engine runs on
//! ([`plan`]).

pub mod duration;
pub mod load;
pub mod names;
pub mod plan;
pub mod spec;
pub mod validate;
