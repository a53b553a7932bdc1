//! `firehose`: PutRecordBatch (up to 500 records, 4 MiB) into an Amazon Data Firehose delivery
//! stream through core's batch client ([`authtrail_core::firehose`]), one JSON line per record.
//! Entries the call reports as failed are retried on their own by the delivery loop (the SDK's
//! retry does not cover them); records over Firehose's 1,000 KiB limit are refused for good.

use std::sync::Arc;

use authtrail_core::firehose::{FirehoseClient, MAX_BYTES_PER_RECORD, MISSING_ENTRY};
use authtrail_core::put_batch::{BatchWriter, EntryResult, Record};

use super::{BoxFuture, Emitter, Failure, Outcome, all};
use crate::record::Prepared;

mod config;

pub use config::{FirehoseConfig, RawFirehose};

/// A Firehose emitter, writing through `W` (core's [`FirehoseClient`] in production).
pub struct FirehoseEmitter<W = FirehoseClient> {
    name: String,
    writer: W,
}

impl<W: BatchWriter> FirehoseEmitter<W> {
    /// The emitter `name` writing with `writer`.
    pub fn new(name: &str, writer: W) -> Self {
        Self {
            name: name.to_string(),
            writer,
        }
    }

    async fn attempt(&self, batch: &[Arc<Prepared>]) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; batch.len()];
        let mut records = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            let size = p.json.len() + 1;
            if size > MAX_BYTES_PER_RECORD {
                out[i] = Some(Outcome::Permanent(Failure::new(
                    "too-large",
                    format!("{size} bytes is more than Firehose's 1,000 KiB record limit"),
                )));
                continue;
            }
            let mut data = Vec::with_capacity(size);
            data.extend_from_slice(p.json.as_bytes());
            data.push(b'\n');
            records.push(Record {
                data,
                partition_key: String::new(),
            });
            positions.push(i);
        }
        if !records.is_empty() {
            for (&i, o) in positions.iter().zip(self.put(&records).await) {
                out[i] = Some(o);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or(Outcome::Retryable(Failure::new("internal", "no outcome"))))
            .collect()
    }

    /// One PutRecordBatch call: one outcome per record sent. Entries the call refused are
    /// retried; a whole call refused for good (a missing stream, access denied, ...) is
    /// permanent, any other whole-call failure retryable.
    async fn put(&self, records: &[Record]) -> Vec<Outcome> {
        use authtrail_core::Error;
        match self.writer.put_batch(records).await {
            Ok(results) => (0..records.len())
                .map(|k| match results.get(k) {
                    Some(EntryResult::Accepted) => Outcome::Delivered,
                    Some(EntryResult::Failed { code, message }) => {
                        Outcome::Retryable(Failure::new(code.as_str(), message.as_str()))
                    }
                    None => Outcome::Retryable(Failure::new(
                        MISSING_ENTRY,
                        "no response entry for this record",
                    )),
                })
                .collect(),
            Err(Error::Fatal { code, message }) if operator_fixable_code(&code) => all(
                records.len(),
                Outcome::Unavailable(Failure::new(code, message)),
            ),
            Err(Error::Fatal { code, message }) => {
                all(records.len(), Outcome::Permanent(Failure::new(code, message)))
            }
            Err(Error::Retryable { code, message }) => {
                all(records.len(), Outcome::Retryable(Failure::new(code, message)))
            }
            Err(other) => all(
                records.len(),
                Outcome::Retryable(Failure::new("internal", other.to_string())),
            ),
        }
    }
}

/// Whether a whole-call refusal is one an operator fixes (access denied, a missing delivery
/// stream, a KMS key the stream cannot use): its records are spooled, not dead-lettered, when a
/// spool is configured.
pub fn operator_fixable_code(code: &str) -> bool {
    code.starts_with("AccessDenied")
        || code.starts_with("ResourceNotFound")
        || code.starts_with("KMS")
        || code == "InvalidKMSResourceException"
        || code == "UnauthorizedOperation"
}

impl<W: BatchWriter + 'static> Emitter for FirehoseEmitter<W> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::emit::test_support::{E1, E2, prepared};
    use authtrail_core::put_batch::{BatchLimits, FIREHOSE_LIMITS};
    use std::sync::Mutex;

    /// A writer answering from a script and recording what it was sent.
    struct FakeWriter {
        answer: Mutex<Option<Result<Vec<EntryResult>, authtrail_core::Error>>>,
        sent: Mutex<Vec<Vec<u8>>>,
    }

    impl FakeWriter {
        fn new(answer: Result<Vec<EntryResult>, authtrail_core::Error>) -> Self {
            Self {
                answer: Mutex::new(Some(answer)),
                sent: Mutex::new(Vec::new()),
            }
        }
    }

    impl BatchWriter for FakeWriter {
        fn limits(&self) -> BatchLimits {
            FIREHOSE_LIMITS
        }

        async fn put_batch(
            &self,
            records: &[Record],
        ) -> Result<Vec<EntryResult>, authtrail_core::Error> {
            self.sent
                .lock()
                .unwrap()
                .extend(records.iter().map(|r| r.data.clone()));
            self.answer.lock().unwrap().take().unwrap()
        }
    }

    fn failed(code: &str) -> EntryResult {
        EntryResult::Failed {
            code: code.into(),
            message: "slow down".into(),
        }
    }

    #[tokio::test]
    async fn records_go_as_json_lines_and_refused_entries_are_retried_on_their_own() {
        let e = FirehoseEmitter::new(
            "f",
            FakeWriter::new(Ok(vec![
                EntryResult::Accepted,
                failed("ServiceUnavailableException"),
            ])),
        );
        let out = e.emit(&[prepared(E1, 0), prepared(E2, 1)]).await;
        assert_eq!(out[0], Outcome::Delivered);
        assert!(
            matches!(&out[1], Outcome::Retryable(f) if f.status == "ServiceUnavailableException")
        );
        let sent = e.writer.sent.lock().unwrap().clone();
        assert_eq!(sent, vec![format!("{E1}\n").into_bytes(), format!("{E2}\n").into_bytes()]);
    }

    #[tokio::test]
    async fn records_over_the_record_limit_are_refused_for_good_and_not_sent() {
        let big = format!(r#"{{"pad":"{}"}}"#, "a".repeat(MAX_BYTES_PER_RECORD));
        let e = FirehoseEmitter::new("f", FakeWriter::new(Ok(vec![EntryResult::Accepted])));
        let out = e.emit(&[prepared(&big, 0), prepared(E1, 1)]).await;
        assert!(matches!(&out[0], Outcome::Permanent(f) if f.status == "too-large"));
        assert_eq!(out[1], Outcome::Delivered);
        assert_eq!(e.writer.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn access_and_missing_stream_refusals_are_unavailable_other_refusals_permanent_and_other_call_failures_retryable()
     {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "KMSAccessDeniedException",
            "InvalidKMSResourceException",
        ] {
            let fatal = authtrail_core::Error::Fatal {
                code: code.into(),
                message: "operator fixes this".into(),
            };
            let e = FirehoseEmitter::new("f", FakeWriter::new(Err(fatal)));
            let out = e.emit(&[prepared(E1, 0)]).await;
            assert!(matches!(&out[0], Outcome::Unavailable(f) if f.status == code), "{code}");
        }
        let fatal = authtrail_core::Error::Fatal {
            code: "InvalidArgumentException".into(),
            message: "bad request".into(),
        };
        let e = FirehoseEmitter::new("f", FakeWriter::new(Err(fatal)));
        let out = e.emit(&[prepared(E1, 0)]).await;
        assert!(matches!(&out[0], Outcome::Permanent(f) if f.status == "InvalidArgumentException"));
        let retry = authtrail_core::Error::Retryable {
            code: "sdk".into(),
            message: "dispatch failure".into(),
        };
        let e = FirehoseEmitter::new("f", FakeWriter::new(Err(retry)));
        let out = e.emit(&[prepared(E1, 0)]).await;
        assert!(matches!(&out[0], Outcome::Retryable(f) if f.status == "sdk"));
        let e = FirehoseEmitter::new("f", FakeWriter::new(Ok(vec![])));
        let out = e.emit(&[prepared(E1, 0)]).await;
        assert!(matches!(&out[0], Outcome::Retryable(f) if f.status == MISSING_ENTRY));
    }
}
