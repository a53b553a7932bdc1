//! Firehose PutRecordBatch: the delivery stream, with its API limits.

use super::{EntryResult, RecordSink, SinkError, SinkLimits, SinkRecord, call_error};

/// Firehose PutRecordBatch: 500 records, 4 MiB per call, 1,000 KiB per record.
pub const FIREHOSE_LIMITS: SinkLimits = SinkLimits {
    max_records_per_call: 500,
    max_bytes_per_call: 4 * 1024 * 1024,
    max_bytes_per_record: 1000 * 1024,
    counts_partition_key: false,
};

/// Firehose PutRecordBatch to a delivery stream.
pub struct FirehoseSink {
    client: aws_sdk_firehose::Client,
    stream: String,
}

impl FirehoseSink {
    /// A sink writing to the delivery stream `delivery_stream`.
    pub fn new(client: aws_sdk_firehose::Client, delivery_stream: &str) -> Self {
        Self {
            client,
            stream: delivery_stream.to_string(),
        }
    }
}

impl RecordSink for FirehoseSink {
    fn limits(&self) -> SinkLimits {
        FIREHOSE_LIMITS
    }

    async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
        let mut req = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream);
        for r in records {
            let rec = aws_sdk_firehose::types::Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new(r.data.clone()))
                .build()
                .map_err(|e| SinkError::Fatal(e.to_string()))?;
            req = req.records(rec);
        }
        match req.send().await {
            Ok(out) => Ok(out
                .request_responses()
                .iter()
                .map(|e| match e.error_code() {
                    None => EntryResult::Accepted,
                    Some(code) => EntryResult::Failed {
                        code: code.to_string(),
                        message: e.error_message().unwrap_or_default().to_string(),
                    },
                })
                .collect()),
            Err(err) => Err(call_error(
                aws_sdk_firehose::error::ProvideErrorMetadata::code(&err),
                aws_sdk_firehose::error::DisplayErrorContext(&err).to_string(),
            )),
        }
    }
}
