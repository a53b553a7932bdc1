//! Helpers of the emitters' unit tests.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::EmitterSettings;
use crate::config::ForwarderConfig;
use crate::record::{Prepared, Transform, parse_classify};

/// A Contract 1 user event with an id and a time.
pub const E1: &str = r#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"id-1","time":1739388470156,"type":"LOGIN"}}"#;
/// A Foxpass-style record without an id.
pub const E2: &str = r#"{"service":"ldap","method":"bind","timestamp":1739388471}"#;

/// `json` prepared by the identity transform as record `i` of a batch.
pub fn prepared(json: &str, i: usize) -> Arc<Prepared> {
    let class = Arc::new(parse_classify(json.as_bytes(), 0).unwrap().1);
    Arc::new(Transform::identity().prepare(i, class, json).unwrap())
}

/// The validated settings of the one emitter `emitter` (its JSON object).
pub fn settings(emitter: &str) -> EmitterSettings {
    let c = ForwarderConfig::parse(&format!(r#"{{"emitters":[{emitter}]}}"#)).unwrap();
    c.emitters[0].settings.clone()
}
