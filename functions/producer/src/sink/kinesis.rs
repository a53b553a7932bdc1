//! Kinesis PutRecords into the stream named by name or ARN, as a [`BatchWriter`] within
//! [`KINESIS_LIMITS`] (500 records, 5 MiB per call, 1 MiB per record including the key).

use authtrail_core::Error;
use authtrail_core::put_batch::{
    BatchLimits, BatchWriter, EntryResult, KINESIS_LIMITS, Record, call_error,
};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_kinesis::primitives::Blob;

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

impl BatchWriter for KinesisSink {
    fn limits(&self) -> BatchLimits {
        KINESIS_LIMITS
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
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
                .map_err(|e| Error::Fatal {
                    code: "build".into(),
                    message: e.to_string(),
                })?;
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
                DisplayErrorContext(&err).to_string(),
            )),
        }
    }
}
