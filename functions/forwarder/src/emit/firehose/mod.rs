//! `firehose`: PutRecordBatch (up to 500 records, 4 MiB) into an Amazon Data Firehose delivery
//! stream, one JSON line per record; entries the call reports as failed are retried on their
//! own (the SDK's retry does not cover them).

use std::sync::Arc;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::record::Prepared;

mod config;

pub use config::{FirehoseConfig, RawFirehose};

/// Firehose's per-record limit: 1,000 KiB.
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;
/// PutRecordBatch's limit of records per call.
pub const FIREHOSE_MAX_RECORDS: usize = 500;
/// PutRecordBatch's limit of bytes per call: 4 MiB.
pub const FIREHOSE_MAX_CALL_BYTES: usize = 4 * 1024 * 1024;

/// A Firehose emitter.
pub struct FirehoseEmitter {
    name: String,
    client: aws_sdk_firehose::Client,
    delivery_stream: String,
}

impl FirehoseEmitter {
    /// The emitter `name` writing into `delivery_stream`.
    pub fn new(name: &str, client: aws_sdk_firehose::Client, delivery_stream: &str) -> Self {
        Self {
            name: name.to_string(),
            client,
            delivery_stream: delivery_stream.to_string(),
        }
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; batch.len()];
        let (records, positions) = entries(batch, &mut out);
        if !records.is_empty() {
            self.put(records, &positions, &mut out).await;
        }
        out.into_iter()
            .map(|o| o.unwrap_or(Outcome::Retryable(Failure::new("internal", "no outcome"))))
            .collect()
    }

    /// One PutRecordBatch call: the outcome of each entry (`positions` maps entries to `out`).
    async fn put(&self, records: Vec<Record>, positions: &[usize], out: &mut [Option<Outcome>]) {
        let sent = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.delivery_stream)
            .set_records(Some(records))
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let entries = resp.request_responses();
                for (k, &i) in positions.iter().enumerate() {
                    out[i] = Some(match entries.get(k) {
                        Some(entry) => match entry.error_code() {
                            None => Outcome::Delivered,
                            Some(code) => Outcome::Retryable(Failure::new(
                                code,
                                entry.error_message().unwrap_or_default(),
                            )),
                        },
                        None => Outcome::Retryable(Failure::new(
                            "missing-entry",
                            "no response entry for this record",
                        )),
                    });
                }
            }
            Err(e) => {
                let code = e
                    .as_service_error()
                    .and_then(|s| aws_sdk_firehose::error::ProvideErrorMetadata::code(s))
                    .unwrap_or("sdk")
                    .to_string();
                let text = aws_sdk_firehose::error::DisplayErrorContext(&e).to_string();
                let permanent = matches!(
                    code.as_str(),
                    "ResourceNotFoundException"
                        | "InvalidArgumentException"
                        | "AccessDeniedException"
                        | "InvalidKMSResourceException"
                );
                let f = Failure::new(code, text);
                for &i in positions {
                    out[i] = Some(if permanent {
                        Outcome::Permanent(f.clone())
                    } else {
                        Outcome::Retryable(f.clone())
                    });
                }
            }
        }
    }
}

/// The batch's records as Firehose entries (one JSON line each) with their positions; records
/// over the 1,000 KiB limit get their (permanent) outcome in `out` instead.
fn entries(batch: &[Arc<Prepared>], out: &mut [Option<Outcome>]) -> (Vec<Record>, Vec<usize>) {
    let mut records = Vec::with_capacity(batch.len());
    let mut positions = Vec::with_capacity(batch.len());
    for (i, p) in batch.iter().enumerate() {
        let mut data = Vec::with_capacity(p.json.len() + 1);
        data.extend_from_slice(p.json.as_bytes());
        data.push(b'\n');
        if data.len() > MAX_RECORD_BYTES {
            out[i] = Some(Outcome::Permanent(Failure::new(
                "too-large",
                format!(
                    "{} bytes is more than Firehose's 1,000 KiB record limit",
                    data.len()
                ),
            )));
            continue;
        }
        match Record::builder().data(Blob::new(data)).build() {
            Ok(r) => {
                records.push(r);
                positions.push(i);
            }
            Err(e) => out[i] = Some(Outcome::Permanent(Failure::new("build", e.to_string()))),
        }
    }
    (records, positions)
}

impl Emitter for FirehoseEmitter {
    fn name(&self) -> &str {
        &self.name
    }

    fn emit<'a>(&'a self, batch: &'a [Arc<Prepared>]) -> BoxFuture<'a, Vec<Outcome>> {
        if batch.is_empty() {
            return Box::pin(async { all(0, Outcome::Delivered) });
        }
        Box::pin(self.attempt(batch))
    }
}
