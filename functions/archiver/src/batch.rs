//! Turning the records of one shard into the archive body and the list of poison records.
//!
//! Pure and synchronous: no I/O here.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use authtrail_core::kinesis::EventRecord;
use authtrail_core::seqnum;
use bytes::Bytes;
use serde::Serialize;

use crate::config::Compression;
use crate::error::ArchiveError;
use crate::jsonscan;

/// A record that goes to the archive: its bytes are `body[range]` (newline included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Good<'a> {
    pub seq: Cow<'a, str>,
    pub arrival: i64,
    pub range: Range<usize>,
}

/// A record that is not a UTF-8 JSON object: it goes to the error prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison<'a> {
    pub seq: Cow<'a, str>,
    pub arrival: i64,
    pub partition_key: Cow<'a, str>,
    pub reason: String,
    /// The raw data, still base64 as it came in the event.
    pub data_base64: Cow<'a, str>,
}

/// The records of one shard, in sequence order, split into archive lines and poison records.
#[derive(Debug)]
pub struct ShardBatch<'a> {
    pub stream: String,
    pub shard: String,
    /// Sequence numbers of all records in order (good and poison).
    pub all_seqs: Vec<Cow<'a, str>>,
    /// The archive lines, concatenated.
    pub body: Bytes,
    pub goods: Vec<Good<'a>>,
    pub poison: Vec<Poison<'a>>,
    /// Record bytes in (decoded).
    pub bytes_in: usize,
}

/// Something with a sequence number and an arrival time (the two things keys are made of).
pub trait Sequenced {
    fn seq(&self) -> &str;
    fn arrival(&self) -> i64;
}

impl Sequenced for Good<'_> {
    fn seq(&self) -> &str {
        &self.seq
    }
    fn arrival(&self) -> i64 {
        self.arrival
    }
}

impl Sequenced for Poison<'_> {
    fn seq(&self) -> &str {
        &self.seq
    }
    fn arrival(&self) -> i64 {
        self.arrival
    }
}

/// Groups the event's records by (stream, shard), keeping the order in which groups first
/// appear. Lambda sends one shard per batch; this keeps a mixed event correct anyway.
pub fn group_by_shard<'e, 'a>(records: &'e [EventRecord<'a>]) -> Vec<Vec<&'e EventRecord<'a>>> {
    let mut groups: Vec<Vec<&EventRecord<'a>>> = Vec::new();
    for r in records {
        let found = groups.iter_mut().find(|g| {
            g.first()
                .is_some_and(|f| f.stream_name() == r.stream_name() && f.shard_id() == r.shard_id())
        });
        match found {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

/// Builds the batch of one shard: sorts by sequence number (Lambda already delivers them in
/// order), decodes each record straight into the body, checks it, and moves poison records
/// aside.
pub fn build<'a>(mut records: Vec<&EventRecord<'a>>) -> Result<ShardBatch<'a>, ArchiveError> {
    for r in &records {
        let seq = r.kinesis.sequence_number.as_str();
        if !seqnum::is_valid(seq) {
            return Err(ArchiveError::InvalidSequenceNumber(seq.to_string()));
        }
    }
    let sorted = records.windows(2).all(|w| {
        seqnum::compare(
            w[0].kinesis.sequence_number.as_str(),
            w[1].kinesis.sequence_number.as_str(),
        ) != Ordering::Greater
    });
    if !sorted {
        records.sort_by(|a, b| {
            seqnum::compare(
                a.kinesis.sequence_number.as_str(),
                b.kinesis.sequence_number.as_str(),
            )
        });
    }
    let (stream, shard) = match records.first() {
        Some(r) => (r.stream_name().to_string(), r.shard_id().to_string()),
        None => (String::new(), String::new()),
    };
    let encoded_len: usize = records.iter().map(|r| r.kinesis.data.as_str().len()).sum();
    let mut body: Vec<u8> = Vec::with_capacity(encoded_len / 4 * 3 + records.len() + 16);
    let mut goods = Vec::with_capacity(records.len());
    let mut poison = Vec::new();
    let mut all_seqs = Vec::with_capacity(records.len());
    let mut bytes_in = 0usize;
    for r in records {
        let k = &r.kinesis;
        let seq = k.sequence_number.0.clone();
        all_seqs.push(seq.clone());
        let arrival = r.arrival_epoch_seconds();
        let start = body.len();
        let verdict = match r.decode_data_into(&mut body) {
            Ok(()) => {
                bytes_in += body.len() - start;
                check_record(&body[start..])
            }
            Err(_) => Err("data is not valid base64".to_string()),
        };
        match verdict {
            Ok(()) => {
                if body.last() != Some(&b'\n') {
                    body.push(b'\n');
                }
                goods.push(Good {
                    seq,
                    arrival,
                    range: start..body.len(),
                });
            }
            Err(reason) => {
                body.truncate(start);
                poison.push(Poison {
                    seq,
                    arrival,
                    partition_key: k.partition_key.0.clone(),
                    reason,
                    data_base64: k.data.0.clone(),
                });
            }
        }
    }
    Ok(ShardBatch {
        stream,
        shard,
        all_seqs,
        body: Bytes::from(body),
        goods,
        poison,
        bytes_in,
    })
}

/// Whether a record belongs in the archive: a UTF-8 JSON object on one line (one trailing
/// `\n` allowed). Returns the reason when it does not.
pub fn check_record(data: &[u8]) -> Result<(), String> {
    let content = data.strip_suffix(b"\n").unwrap_or(data);
    if content.iter().all(u8::is_ascii_whitespace) {
        return Err("empty record: not a JSON object".into());
    }
    let text = std::str::from_utf8(content).map_err(|e| {
        format!(
            "not valid UTF-8: invalid byte at offset {}",
            e.valid_up_to()
        )
    })?;
    let first = text.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        let kind = match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean or other text",
            Some(b'n') => "null or other text",
            Some(b'-' | b'0'..=b'9') => "a number or other text",
            _ => "not JSON",
        };
        return Err(format!("not a JSON object: the record is {kind}"));
    }
    // The fast scanner accepts exactly what serde_json does; serde_json gives the reason
    // (and the verdict past the scanner's nesting limit).
    if !jsonscan::is_json(content)
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text)
    {
        return Err(format!("not valid JSON: {e}"));
    }
    if content.contains(&b'\n') {
        return Err(
            "record spans several lines: a JSON Lines archive needs one record per line".into(),
        );
    }
    Ok(())
}

/// The body of an archive object holding `goods[range]`: their lines, compressed as configured.
pub fn archive_body(
    batch: &ShardBatch<'_>,
    range: Range<usize>,
    compression: Compression,
) -> Result<Bytes, ArchiveError> {
    let (Some(first), Some(last)) = (batch.goods.get(range.start), batch.goods.get(range.end - 1))
    else {
        return Ok(Bytes::new());
    };
    let lines = batch.body.slice(first.range.start..last.range.end);
    compress(lines, compression)
}

/// Compresses `data` as configured.
///
/// gzip is one standard member made by libdeflate from the whole buffer at once, with the
/// fixed header any gzip writer without a name makes (no name, mtime 0, OS "unknown"), so
/// objects are reproducible; zstd is one frame with the content size in its header.
pub fn compress(data: Bytes, compression: Compression) -> Result<Bytes, ArchiveError> {
    match compression {
        Compression::None => Ok(data),
        Compression::Gzip { level } => gzip(&data, level).map(Bytes::from),
        Compression::Zstd { level } => zstd::bulk::compress(&data, level)
            .map(Bytes::from)
            .map_err(ArchiveError::Compress),
    }
}

/// gzip of `data` in one pass (libdeflate); `level` 0-9 means what it means for zlib.
fn gzip(data: &[u8], level: u32) -> Result<Vec<u8>, ArchiveError> {
    let level = i32::try_from(level)
        .ok()
        .and_then(|l| libdeflater::CompressionLvl::new(l).ok())
        .ok_or_else(|| {
            ArchiveError::Compress(std::io::Error::other(format!(
                "gzip level {level} is not supported"
            )))
        })?;
    let mut compressor = libdeflater::Compressor::new(level);
    let mut out = vec![0; compressor.gzip_compress_bound(data.len())];
    let n = compressor
        .gzip_compress(data, &mut out)
        .map_err(|e| ArchiveError::Compress(std::io::Error::other(e)))?;
    out.truncate(n);
    // Give back the bound's slack (about the input's size) before the object is uploaded.
    out.shrink_to_fit();
    Ok(out)
}

/// One line of an error object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorLine<'b> {
    stream: &'b str,
    shard_id: &'b str,
    sequence_number: &'b str,
    partition_key: &'b str,
    approximate_arrival_timestamp: i64,
    reason: &'b str,
    /// The record's bytes, base64 (standard alphabet).
    data: &'b str,
}

/// The body of an error object holding `poison[range]`: one JSON line per record with the
/// reason and the raw data (uncompressed: these objects are small and read by people).
pub fn error_body(batch: &ShardBatch<'_>, range: Range<usize>) -> Result<Bytes, ArchiveError> {
    let mut out = Vec::new();
    for p in batch.poison.get(range).unwrap_or_default() {
        let line = ErrorLine {
            stream: &batch.stream,
            shard_id: &batch.shard,
            sequence_number: &p.seq,
            partition_key: &p.partition_key,
            approximate_arrival_timestamp: p.arrival,
            reason: &p.reason,
            data: &p.data_base64,
        };
        serde_json::to_writer(&mut out, &line).map_err(ArchiveError::Encode)?;
        out.push(b'\n');
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn json_object_with_or_without_trailing_newline_is_accepted() {
        assert!(check_record(b"{\"a\":1}").is_ok());
        assert!(check_record(b"{\"a\":1}\n").is_ok());
        assert!(check_record(b"  {\"a\":1}\r\n").is_ok());
    }

    #[test]
    fn non_utf8_record_is_poison_with_the_offset() {
        let e = check_record(b"{\"a\":\"\xff\"}").unwrap_err();
        assert_eq!(e, "not valid UTF-8: invalid byte at offset 6");
    }

    #[test]
    fn json_that_is_not_an_object_is_poison() {
        assert!(check_record(b"[1,2]").unwrap_err().contains("an array"));
        assert!(
            check_record(b"42")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(check_record(b"\"s\"").unwrap_err().contains("a string"));
        assert!(
            check_record(b"hello")
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn truncated_or_trailing_garbage_json_is_poison() {
        assert!(
            check_record(b"{\"a\":")
                .unwrap_err()
                .starts_with("not valid JSON")
        );
        assert!(
            check_record(b"{\"a\":1} x")
                .unwrap_err()
                .starts_with("not valid JSON")
        );
    }

    #[test]
    fn empty_and_multi_line_records_are_poison() {
        assert!(check_record(b"").unwrap_err().starts_with("empty record"));
        assert!(check_record(b"\n").unwrap_err().starts_with("empty record"));
        assert!(
            check_record(b"{\n\"a\":1}")
                .unwrap_err()
                .contains("several lines")
        );
        assert!(
            check_record(b"{\"a\":1}\n\n")
                .unwrap_err()
                .contains("several lines")
        );
    }

    #[test]
    fn gzip_output_is_deterministic_and_round_trips() {
        let data = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n");
        let a = compress(data.clone(), Compression::Gzip { level: 6 }).unwrap();
        let b = compress(data.clone(), Compression::Gzip { level: 6 }).unwrap();
        assert_eq!(a, b);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut out).unwrap();
        assert_eq!(out, data);
    }
}
