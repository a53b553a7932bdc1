//! Where replayed records come from, and which of them a replay chooses:
//! - [`archive`]: Contract 2 objects, chosen by key hour, records by envelope `timestamp`;
//! - [`dlq`]: dead letters (one letter per object, or JSON lines of letters), sent as stored;
//! - [`stream`]: a shard of the Kinesis stream, by sequence number.
//!
//! Each source yields [`Unit`]s (an object, a page of a shard) of [`Item`]s; the unit and item
//! ids are what the resume state keeps.

use std::io::Read;
use std::sync::Arc;

use authtrail_forwarder::forward::InputRecord;
use authtrail_forwarder::record::Source;
use flate2::read::MultiGzDecoder;

use crate::ReplayError;

pub mod archive;
pub mod dlq;
pub mod stream;

/// One record chosen for the replay.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its id within its unit: line number in an object, sequence number in a shard.
    pub id: String,
    /// The record, as the forwarder takes it.
    pub record: InputRecord,
}

/// One object or page of records.
#[derive(Debug, Clone, Default)]
pub struct Unit {
    /// Its id: `s3://bucket/key` or `kinesis://stream/shard`.
    pub id: String,
    /// The records chosen.
    pub items: Vec<Item>,
    /// Records outside the range.
    pub out_of_range: usize,
    /// Records that cannot be replayed (a dead letter of another emitter, a malformed record's
    /// letter, a line that is not a letter).
    pub unusable: usize,
}

/// An [`InputRecord`] with the given origin.
pub fn input(
    stream: &Arc<str>,
    shard: &Arc<str>,
    seq: &str,
    arrival_ms: i64,
    data: Vec<u8>,
) -> InputRecord {
    InputRecord {
        source: Source {
            stream: stream.clone(),
            shard: shard.clone(),
            sequence_number: seq.to_string(),
            arrival_ms,
        },
        data,
    }
}

/// Splits `s3://BUCKET/PREFIX` (the prefix may be empty) into bucket and prefix.
pub fn parse_s3(arg: &'static str, url: &str) -> Result<(String, String), ReplayError> {
    let bad = || ReplayError::S3Url {
        arg,
        value: url.to_string(),
    };
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad());
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// Decompresses `body` when it starts with the gzip magic bytes.
pub fn maybe_gunzip(body: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(body.len() * 4);
        MultiGzDecoder::new(body.as_slice()).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(body)
    }
}

/// The keys under `s3://bucket/prefix` in key order (oldest hour first).
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, ReplayError> {
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| ReplayError::Read {
            location: format!("s3://{bucket}/{prefix}"),
            detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
    }
    keys.sort();
    Ok(keys)
}

/// The body of `s3://bucket/key`, gunzipped when it is gzip.
pub async fn get_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, ReplayError> {
    let err = |detail: String| ReplayError::Read {
        location: format!("s3://{bucket}/{key}"),
        detail,
    };
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
    let body = got
        .body
        .collect()
        .await
        .map_err(|e| err(e.to_string()))?
        .into_bytes()
        .to_vec();
    maybe_gunzip(body).map_err(|e| err(e.to_string()))
}

/// The non-empty lines of `text`, with their line numbers (0-based).
pub fn lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn s3_locations_are_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_s3("--archive", "s3://b/raw/").unwrap(),
            ("b".into(), "raw/".into())
        );
        assert_eq!(
            parse_s3("--archive", "s3://b").unwrap(),
            ("b".into(), "".into())
        );
        for bad in ["b/raw/", "s3:///raw/", "https://b/raw/"] {
            let e = parse_s3("--dlq", bad).unwrap_err().to_string();
            assert!(e.starts_with("--dlq:"), "{e}");
        }
    }

    #[test]
    fn gzip_bodies_are_decompressed_and_plain_ones_kept() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}\n").unwrap();
        assert_eq!(maybe_gunzip(gz.finish().unwrap()).unwrap(), b"{\"a\":1}\n");
        assert_eq!(maybe_gunzip(b"plain".to_vec()).unwrap(), b"plain");
    }

    #[test]
    fn blank_lines_are_skipped_and_line_numbers_kept() {
        let got: Vec<_> = lines(b"a\n\n b\n").collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (2, &b" b"[..])]);
    }
}
