//! Kinesis PutRecords: the stream named by name or ARN, with its API limits.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;

use super::{EntryResult, RecordSink, SinkError, SinkLimits, SinkRecord, call_error};

/// Kinesis PutRecords: 500 records, 5 MiB per call, 1 MiB per record including the key.
pub const KINESIS_LIMITS: SinkLimits = SinkLimits {
    max_records_per_call: 500,
    max_bytes_per_call: 5 * 1024 * 1024,
    max_bytes_per_record: 1024 * 1024,
    counts_partition_key: true,
};

/// Kinesis PutRecords to a stream named by name or ARN.
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisSink {
    /// A sink writing to `stream_name_or_arn` (an `arn:` value is sent as `StreamARN`).
    pub fn new(client: aws_sdk_kinesis::Client, stream_name_or_arn: &str) -> Self {
        Self {
            client,
            stream: stream_name_or_arn.to_string(),
        }
    }
}

impl RecordSink for KinesisSink {
    fn limits(&self) -> SinkLimits {
        KINESIS_LIMITS
    }

    async fn put_batch(&self, records: &[SinkRecord]) -> Result<Vec<EntryResult>, SinkError> {
        let mut req = self.client.put_records();
        req = if self.stream.starts_with("arn:") {
            req.stream_arn(&self.stream)
        } else {
            req.stream_name(&self.stream)
        };
        for r in records {
            let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .data(Blob::new(r.data.clone()))
                .partition_key(&r.partition_key)
                .build()
                .map_err(|e| SinkError::Fatal(e.to_string()))?;
            req = req.records(entry);
        }
        match req.send().await {
            Ok(out) => Ok(out
                .records()
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
                err.code(),
                aws_sdk_kinesis::error::DisplayErrorContext(&err).to_string(),
            )),
        }
    }
}
