//! `jms`: being built (this folder is a placeholder that refuses the type at cold start until
//! its emitter lands).

use std::sync::Arc;

use serde::Deserialize;

use crate::ForwarderError;
use crate::emit::{Emitter, EmitterSpec};

/// The keys of type `jms` as written (none accepted yet).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJms {}

/// The validated settings of type `jms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmsConfig;

impl EmitterSpec for JmsConfig {
    type Raw = RawJms;

    fn validate(label: &str, _raw: RawJms) -> Result<Self, ForwarderError> {
        Err(ForwarderError::Config {
            path: format!("{label}.type"),
            message: "type \"jms\" is not available in this build".into(),
        })
    }

    async fn build(
        &self,
        _name: &str,
        _sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        Err(ForwarderError::Config {
            path: "type".into(),
            message: "type \"jms\" is not available in this build".into(),
        })
    }
}
