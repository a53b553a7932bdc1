//! The settings of type `stdout`: none beyond those of every emitter.

use std::sync::Arc;

use serde::Deserialize;

use super::StdoutEmitter;
use crate::ForwarderError;
use crate::emit::{Emitter, EmitterSpec};

/// The keys of type `stdout` as written: none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdout {}

/// The validated settings of type `stdout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutConfig;

impl EmitterSpec for StdoutConfig {
    type Raw = RawStdout;

    fn validate(_label: &str, _raw: RawStdout) -> Result<Self, ForwarderError> {
        Ok(StdoutConfig)
    }

    async fn build(
        &self,
        name: &str,
        _sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        Ok(Arc::new(StdoutEmitter::new(name)))
    }
}
