//! Amazon Data Firehose PutRecordBatch, as a [`BatchWriter`]: one call per batch, one
//! [`EntryResult`] per record. Batching within the limits and resending only the failed
//! entries are [`crate::put_batch::put_all`]'s (the producer's sink); a caller that retries
//! by itself (the forwarder's emitter) makes single calls with [`BatchWriter::put_batch`].
//!
//! Limits (stated once, in [`FIREHOSE_LIMITS`]): 500 records and 4 MiB per call, 1,000 KiB
//! per record. A whole-call failure is [`Error::Fatal`] for the codes in
//! [`crate::put_batch::FATAL_ERROR_CODES`], [`Error::Retryable`] otherwise.

use aws_sdk_firehose::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_firehose::operation::put_record_batch::PutRecordBatchOutput;
use aws_sdk_firehose::primitives::Blob;

use crate::error::Error;
pub use crate::put_batch::FIREHOSE_LIMITS;
use crate::put_batch::{BatchLimits, BatchWriter, EntryResult, Record, call_error};

/// Records per PutRecordBatch call.
pub const MAX_RECORDS_PER_CALL: usize = FIREHOSE_LIMITS.max_records_per_call;
/// Bytes per PutRecordBatch call.
pub const MAX_BYTES_PER_CALL: usize = FIREHOSE_LIMITS.max_bytes_per_call;
/// Bytes per record: 1,000 KiB.
pub const MAX_BYTES_PER_RECORD: usize = FIREHOSE_LIMITS.max_bytes_per_record;

/// The code of the result made up for a record the answer has no entry for.
pub const MISSING_ENTRY: &str = "missing-entry";

/// PutRecordBatch into one delivery stream.
#[derive(Debug, Clone)]
pub struct FirehoseClient {
    client: aws_sdk_firehose::Client,
    delivery_stream: String,
}

impl FirehoseClient {
    /// A writer into `delivery_stream` (its name).
    pub fn new(client: aws_sdk_firehose::Client, delivery_stream: impl Into<String>) -> Self {
        Self {
            client,
            delivery_stream: delivery_stream.into(),
        }
    }

    /// The delivery stream's name.
    pub fn delivery_stream(&self) -> &str {
        &self.delivery_stream
    }
}

impl BatchWriter for FirehoseClient {
    fn limits(&self) -> BatchLimits {
        FIREHOSE_LIMITS
    }

    async fn put_batch(&self, records: &[Record]) -> Result<Vec<EntryResult>, Error> {
        let mut entries = Vec::with_capacity(records.len());
        for r in records {
            let entry = aws_sdk_firehose::types::Record::builder()
                .data(Blob::new(r.data.clone()))
                .build()
                .map_err(|e| Error::Fatal {
                    code: "build".into(),
                    message: e.to_string(),
                })?;
            entries.push(entry);
        }
        let sent = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.delivery_stream)
            .set_records(Some(entries))
            .send()
            .await;
        match sent {
            Ok(out) => Ok(entry_results(&out, records.len())),
            Err(e) => Err(call_error(
                ProvideErrorMetadata::code(&e),
                DisplayErrorContext(&e).to_string(),
            )),
        }
    }
}

/// One result per record sent, in order, from a PutRecordBatch answer. A record the answer has
/// no entry for failed ([`MISSING_ENTRY`]), so it is sent again rather than taken for written.
pub fn entry_results(output: &PutRecordBatchOutput, sent: usize) -> Vec<EntryResult> {
    let entries = output.request_responses();
    (0..sent)
        .map(|i| match entries.get(i) {
            Some(entry) => match entry.error_code() {
                None => EntryResult::Accepted,
                Some(code) => EntryResult::Failed {
                    code: code.to_string(),
                    message: entry.error_message().unwrap_or_default().to_string(),
                },
            },
            None => EntryResult::Failed {
                code: MISSING_ENTRY.into(),
                message: "no response entry for this record".into(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aws_sdk_firehose::types::PutRecordBatchResponseEntry;

    fn output(entries: Vec<PutRecordBatchResponseEntry>) -> PutRecordBatchOutput {
        let failed = entries.iter().filter(|e| e.error_code().is_some()).count();
        PutRecordBatchOutput::builder()
            .failed_put_count(failed as i32)
            .set_request_responses(Some(entries))
            .build()
            .unwrap()
    }

    fn ok() -> PutRecordBatchResponseEntry {
        PutRecordBatchResponseEntry::builder()
            .record_id("r")
            .build()
    }

    fn failed(code: &str) -> PutRecordBatchResponseEntry {
        PutRecordBatchResponseEntry::builder()
            .error_code(code)
            .error_message("slow down")
            .build()
    }

    #[test]
    fn entries_map_to_results_in_order_and_only_failed_ones_fail() {
        let out = output(vec![ok(), failed("ServiceUnavailableException"), ok()]);
        assert_eq!(
            entry_results(&out, 3),
            vec![
                EntryResult::Accepted,
                EntryResult::Failed {
                    code: "ServiceUnavailableException".into(),
                    message: "slow down".into()
                },
                EntryResult::Accepted
            ]
        );
    }

    #[test]
    fn records_without_an_answer_entry_are_failed_not_taken_for_written() {
        let out = output(vec![ok()]);
        let r = entry_results(&out, 3);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], EntryResult::Accepted);
        assert!(matches!(&r[2], EntryResult::Failed { code, .. } if code == MISSING_ENTRY));
        // Extra entries are not results of anything sent.
        assert_eq!(entry_results(&output(vec![ok(), ok()]), 1).len(), 1);
    }

    #[test]
    fn the_limits_are_firehose_s() {
        assert_eq!(MAX_RECORDS_PER_CALL, 500);
        assert_eq!(MAX_BYTES_PER_CALL, 4 * 1024 * 1024);
        assert_eq!(MAX_BYTES_PER_RECORD, 1000 * 1024);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_retryable_call_failure() {
        let conf = aws_sdk_firehose::Config::builder()
            .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
            .region(aws_sdk_firehose::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_firehose::config::Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(aws_sdk_firehose::config::retry::RetryConfig::disabled())
            .build();
        let client = FirehoseClient::new(aws_sdk_firehose::Client::from_conf(conf), "audit");
        assert_eq!(client.delivery_stream(), "audit");
        let records = vec![Record {
            data: b"{}\n".to_vec(),
            partition_key: String::new(),
        }];
        let e = client.put_batch(&records).await.unwrap_err();
        assert!(
            matches!(&e, Error::Retryable { code, .. } if code == "sdk"),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"));
    }
}
