//! The settings of type `firehose` (Amazon Data Firehose).

use std::sync::Arc;

use serde::Deserialize;

use authtrail_core::firehose::{FirehoseClient, MAX_BYTES_PER_CALL, MAX_RECORDS_PER_CALL};

use super::FirehoseEmitter;
use crate::ForwarderError;
use crate::config::buffering::BufferingLimits;
use crate::config::err;
use crate::emit::{Emitter, EmitterSpec};

/// The keys of type `firehose` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawFirehose {
    /// The delivery stream receiving the records (required).
    delivery_stream: Option<String>,
}

/// The validated settings of type `firehose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseConfig {
    /// The delivery stream's name.
    pub delivery_stream: String,
}

impl EmitterSpec for FirehoseConfig {
    type Raw = RawFirehose;

    /// PutRecordBatch takes at most 500 records and 4 MiB per call.
    const BUFFERING: BufferingLimits = BufferingLimits {
        default_batched_events: MAX_RECORDS_PER_CALL,
        max_batched_events: MAX_RECORDS_PER_CALL,
        default_size: MAX_BYTES_PER_CALL,
        max_size: MAX_BYTES_PER_CALL,
    };

    fn validate(label: &str, raw: RawFirehose) -> Result<Self, ForwarderError> {
        let delivery_stream = raw.delivery_stream.unwrap_or_default();
        if delivery_stream.is_empty() {
            return Err(err(
                format!("{label}.deliveryStream"),
                "is required for type firehose",
            ));
        }
        Ok(FirehoseConfig { delivery_stream })
    }

    async fn build(
        &self,
        name: &str,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Arc<dyn Emitter>, ForwarderError> {
        let Some(sdk) = sdk else {
            return Err(err(
                format!("emitter {name:?}"),
                "Firehose needs AWS configuration",
            ));
        };
        let client = FirehoseClient::new(aws_sdk_firehose::Client::new(sdk), &self.delivery_stream);
        Ok(Arc::new(FirehoseEmitter::new(name, client)))
    }
}
