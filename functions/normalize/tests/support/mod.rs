//! Test helpers: the OCSF schema checker, the ECS checker and the fixture records.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod ecs;
pub mod fixtures;
pub mod ocsf;
