//! The archive's side, read independently of the functions' tallies: every archive object
//! written during a span of time (by its `LastModified`), decompressed, split into records
//! (one per line, Contract 2), each reduced to its minute, hash and whether it is an envelope.
//!
//! Objects are listed by their hour prefixes (`{ARCHIVE_PREFIX}yyyy/MM/dd/HH/`, the hour of
//! the first record's arrival) from an hour before the span, and kept by key and ETag in a
//! cache for as long as the warm instance lives: a run reads only the objects written since
//! the last one, so a window costs about one `GetObject` per archive object (one per shard
//! and archiver batch) when runs follow each other on a warm instance.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use authtrail_core::tally::{MINUTE_MS, record_facts};

use crate::ReconcileError;
use crate::store::ObjectStore;

/// How far before a span the hour prefixes are listed (an object's key hour is its first
/// record's arrival hour; it is written up to a batching window, or a retry, later).
const LIST_MARGIN_MS: i64 = 3_600_000;

/// One dated record of an archive object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchivedRecord {
    /// Its minute of event time.
    pub minute: i64,
    /// Its hash.
    pub hash: u64,
    /// A Contract 1 envelope.
    pub envelope: bool,
}

/// The records of one archive object.
#[derive(Debug, Default)]
pub struct ObjectFacts {
    /// The dated records.
    pub records: Vec<ArchivedRecord>,
    /// Records without an event time.
    pub undated: u64,
}

/// The archive objects written during a span.
#[derive(Debug, Default)]
pub struct ArchiveSpan {
    /// Their facts.
    pub objects: Vec<Arc<ObjectFacts>>,
}

impl ArchiveSpan {
    /// The records of minutes `[from, to)`.
    pub fn records_in(&self, from: i64, to: i64) -> impl Iterator<Item = &ArchivedRecord> {
        self.objects
            .iter()
            .flat_map(|o| o.records.iter())
            .filter(move |r| (from..to).contains(&r.minute))
    }

    /// Undated records in the objects.
    pub fn undated(&self) -> u64 {
        self.objects.iter().map(|o| o.undated).sum()
    }
}

/// An object read before: its ETag, write time and records.
type Cached = (String, i64, Arc<ObjectFacts>);

/// Reads archive spans, keeping what it read for the next run of a warm instance.
#[derive(Debug, Default)]
pub struct ArchiveReader {
    cache: Mutex<HashMap<String, Cached>>,
}

impl ArchiveReader {
    /// The objects under `prefix` in `bucket` written in `[from_ms, to_ms]`.
    pub async fn read_span<S: ObjectStore>(
        &self,
        store: &S,
        bucket: &str,
        prefix: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<ArchiveSpan, ReconcileError> {
        let mut span = ArchiveSpan::default();
        for hour in hour_prefixes(prefix, from_ms - LIST_MARGIN_MS, to_ms) {
            for info in store.list(bucket, &hour, None).await? {
                if !(from_ms..=to_ms).contains(&info.last_modified_ms) || !is_archive_key(&info.key)
                {
                    continue;
                }
                if let Some(facts) = self.cached(&info.key, &info.etag) {
                    span.objects.push(facts);
                    continue;
                }
                let Some(body) = store.get(bucket, &info.key).await? else {
                    continue; // deleted since the listing
                };
                let facts = Arc::new(parse_object(bucket, &info.key, &body)?);
                if let Ok(mut c) = self.cache.lock() {
                    c.insert(
                        info.key.clone(),
                        (info.etag.clone(), info.last_modified_ms, facts.clone()),
                    );
                }
                span.objects.push(facts);
            }
        }
        self.evict_before(from_ms - LIST_MARGIN_MS);
        Ok(span)
    }

    fn cached(&self, key: &str, etag: &str) -> Option<Arc<ObjectFacts>> {
        let c = self.cache.lock().ok()?;
        c.get(key)
            .filter(|(e, _, _)| e == etag)
            .map(|(_, _, f)| f.clone())
    }

    fn evict_before(&self, ms: i64) {
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|_, (_, t, _)| *t >= ms);
        }
    }

    /// Objects kept for the next run.
    pub fn cached_objects(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

/// The hour prefixes from the hour of `from_ms` to the hour of `to_ms`.
fn hour_prefixes(prefix: &str, from_ms: i64, to_ms: i64) -> Vec<String> {
    const HOUR: i64 = 3_600_000;
    let mut out = Vec::new();
    let mut h = from_ms.div_euclid(HOUR) * HOUR;
    while h <= to_ms {
        if let Some(t) = chrono::DateTime::from_timestamp_millis(h) {
            out.push(format!("{prefix}{}/", t.format("%Y/%m/%d/%H")));
        }
        h += HOUR;
    }
    out
}

/// An archive object's key (Contract 2: JSON lines, plain, gzip or zstd).
fn is_archive_key(key: &str) -> bool {
    key.ends_with(".jsonl") || key.ends_with(".jsonl.gz") || key.ends_with(".jsonl.zst")
}

/// The records of one object's bytes (decompressed by their magic bytes).
pub fn parse_object(bucket: &str, key: &str, body: &[u8]) -> Result<ObjectFacts, ReconcileError> {
    let err = |detail: String| ReconcileError::Decompress {
        bucket: bucket.to_string(),
        key: key.to_string(),
        detail,
    };
    let text: Vec<u8> = if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::MultiGzDecoder::new(body)
            .read_to_end(&mut out)
            .map_err(|e| err(e.to_string()))?;
        out
    } else if body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(body).map_err(|e| err(e.to_string()))?
    } else {
        body.to_vec()
    };
    let mut facts = ObjectFacts::default();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let f = record_facts(line);
        match f.time_ms {
            Some(t) => facts.records.push(ArchivedRecord {
                minute: t.div_euclid(MINUTE_MS),
                hash: f.hash,
                envelope: f.envelope,
            }),
            None => facts.undated += 1,
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::MemoryStore;
    use std::io::Write;

    fn gzip(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    const A: &str =
        r#"{"timestamp":"x","eventType":"user-event","event":{"id":"a","time":120000}}"#;
    const B: &str = r#"{"service":"ldap","timestamp":"1970-01-01T00:03:00Z"}"#;

    #[test]
    fn objects_are_read_plain_gzip_or_zstd_with_undated_lines_counted_apart() {
        let text = format!("{A}\n{B}\n{{\"no\":\"time\"}}\n");
        for body in [
            text.clone().into_bytes(),
            gzip(&text),
            zstd::stream::encode_all(text.as_bytes(), 1).unwrap(),
        ] {
            let f = parse_object("b", "k", &body).unwrap();
            assert_eq!(f.undated, 1);
            assert_eq!(
                f.records
                    .iter()
                    .map(|r| (r.minute, r.envelope))
                    .collect::<Vec<_>>(),
                vec![(2, true), (3, false)]
            );
        }
        assert!(parse_object("b", "k", &[0x1f, 0x8b, 0, 1]).is_err());
    }

    #[test]
    fn hour_prefixes_cover_the_span() {
        let p = hour_prefixes("raw/", 3_599_999, 7_200_000);
        assert_eq!(
            p,
            vec![
                "raw/1970/01/01/00/",
                "raw/1970/01/01/01/",
                "raw/1970/01/01/02/"
            ]
        );
    }

    #[tokio::test]
    async fn a_span_holds_the_objects_written_in_it_and_a_warm_reader_gets_each_once() {
        let store = MemoryStore::default();
        let hour = 3_600_000;
        store.insert(
            "arch",
            "raw/1970/01/01/01/s-0-1.jsonl.gz",
            gzip(A),
            hour + 10_000,
        );
        store.insert(
            "arch",
            "raw/1970/01/01/01/s-0-2.jsonl.gz",
            gzip(B),
            hour + 70_000,
        );
        store.insert(
            "arch",
            "raw/1970/01/01/01/s-0-3.jsonl",
            A.into(),
            hour + 900_000,
        );
        store.insert(
            "arch",
            "errors/1970/01/01/01/s-0-4.jsonl",
            A.into(),
            hour + 20_000,
        );
        let r = ArchiveReader::default();
        let span = r
            .read_span(&store, "arch", "raw/", hour, hour + 100_000)
            .await
            .unwrap();
        assert_eq!(span.objects.len(), 2);
        assert_eq!(span.records_in(2, 3).count(), 1);
        assert_eq!(store.requests.snapshot().s3_get, 2);
        let again = r
            .read_span(&store, "arch", "raw/", hour, hour + 1_000_000)
            .await
            .unwrap();
        assert_eq!(again.objects.len(), 3);
        assert_eq!(
            store.requests.snapshot().s3_get,
            3,
            "only the new object is read"
        );
    }
}
