//! The v2 record batch (magic 2) a `Produce` request carries: records with key, value,
//! headers and create time, CRC-32C over the batch, optional gzip; and the partitioner of
//! Kafka's Java client (murmur2 of the key).

use super::protocol::{WireError, Writer};

/// One record of a batch: key, value, headers and timestamp (epoch milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Headers (name, value).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Create time, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// Length of a record batch's header, from `baseOffset` to the record count included.
pub const BATCH_HEADER: usize = 61;
/// Offset of the CRC within a batch.
const CRC_AT: usize = 17;
/// Offset of `attributes` within a batch (the CRC covers it to the end).
const ATTRIBUTES_AT: usize = 21;

/// How a batch's records are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchCompression {
    /// Not compressed.
    None,
    /// gzip (attribute 1).
    Gzip,
}

/// Bytes `records` take in a batch, uncompressed (the header included): what
/// `max.request.size` counts.
pub fn record_size(r: &Record<'_>) -> usize {
    let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    r.key.len() + r.value.len() + headers + 5 + 10 + 5 + 5 + 5 + 5 + 5 + 1
}

/// A v2 record batch of `records` (at least one): base offset 0, no producer id (not
/// idempotent, not transactional), create times, CRC-32C over attributes to the end.
pub fn record_batch(
    records: &[Record<'_>],
    compression: BatchCompression,
) -> Result<Vec<u8>, WireError> {
    let first = records.first().ok_or(WireError("empty record batch"))?;
    let base = first.timestamp_ms;
    let max = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(base);
    let mut body = Writer::plain(records.iter().map(record_size).sum());
    for (i, r) in records.iter().enumerate() {
        write_record(&mut body, r, base, i as i32);
    }
    let (attributes, body) = match compression {
        BatchCompression::None => (0i16, body.into_inner()),
        BatchCompression::Gzip => (1i16, gzip(&body.into_inner())?),
    };
    let mut w = Writer::plain(BATCH_HEADER + body.len());
    w.i64(0); // baseOffset
    w.i32(0); // batchLength, patched below
    w.i32(-1); // partitionLeaderEpoch
    w.i8(2); // magic
    w.i32(0); // crc, patched below
    w.i16(attributes);
    w.i32(records.len() as i32 - 1); // lastOffsetDelta
    w.i64(base);
    w.i64(max);
    w.i64(-1); // producerId
    w.i16(-1); // producerEpoch
    w.i32(-1); // baseSequence
    w.i32(records.len() as i32);
    w.raw(&body);
    let batch_length = (w.len() - 12) as u32;
    w.patch_u32(8, batch_length);
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, w.tail(ATTRIBUTES_AT)) as u32;
    w.patch_u32(CRC_AT, crc);
    Ok(w.into_inner())
}

fn write_record(w: &mut Writer, r: &Record<'_>, base_ts: i64, offset_delta: i32) {
    let mut rec = Writer::plain(record_size(r));
    rec.i8(0); // attributes
    rec.varlong(r.timestamp_ms.wrapping_sub(base_ts));
    rec.varint(offset_delta);
    rec.varint(r.key.len() as i32);
    rec.raw(r.key);
    rec.varint(r.value.len() as i32);
    rec.raw(r.value);
    rec.varint(r.headers.len() as i32);
    for (k, v) in r.headers {
        rec.varint(k.len() as i32);
        rec.raw(k.as_bytes());
        rec.varint(v.len() as i32);
        rec.raw(v);
    }
    let rec = rec.into_inner();
    w.varint(rec.len() as i32);
    w.raw(&rec);
}

/// `b` as one gzip member (level 1: the records are JSON and compress well fast).
fn gzip(b: &[u8]) -> Result<Vec<u8>, WireError> {
    use std::io::Write;
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(b.len() / 4), flate2::Compression::fast());
    enc.write_all(b)
        .and_then(|()| enc.finish())
        .map_err(|_| WireError("gzip failed"))
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), the hash of its default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        if let Some(b) = rest.get(2) {
            h ^= u32::from(*b) << 16;
        }
        if let Some(b) = rest.get(1) {
            h ^= u32::from(*b) << 8;
        }
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions`, as the Java client's default partitioner picks
/// it for a keyed record: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for(key: &[u8], partitions: usize) -> usize {
    let positive = (murmur2(key) & 0x7fff_ffff) as usize;
    positive % partitions.max(1)
}
