//! The engine: the release logic as one pure function ([`machine`]), the status it keeps
//! ([`status`]), the traits the shells implement ([`providers`]) with in-memory versions
//! ([`memory`]), and one reconcile pass over them ([`driver`]).

pub mod driver;
pub mod machine;
pub mod memory;
pub mod providers;
pub mod status;
