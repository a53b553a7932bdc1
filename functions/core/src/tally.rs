//! Reconciliation tallies: what each hop of the pipeline did with the records of each minute of
//! event time, as a count and an order-independent digest, so that the reconciler can compare
//! hops window by window without keeping the records themselves.
//!
//! - A record's identity is its bytes: [`record_hash`] is the first 8 bytes (big-endian) of the
//!   SHA-256 of the record as it is in the stream, without one trailing `\n`. The producer, the
//!   archive (whose lines are the records byte for byte, Contract 2) and the forwarder (which
//!   reads the same stream) compute the same value for the same record.
//! - A record's minute is the minute of its event time ([`record_facts`]): `event.time` (epoch
//!   milliseconds) of a Contract 1 envelope, else a top-level `timestamp` (RFC 3339 text, or
//!   epoch milliseconds); records with neither are *undated* and counted apart.
//! - A [`Digest`] is the count of records and the sum (mod 2^64) of their hashes: two sets of
//!   records with the same count and sum are the same set (with overwhelming probability), in
//!   any order, and digests of parts add up to the digest of the whole.
//!
//! The tallies each function keeps ([`line::ProducerTally`] in the producer's checkpoint,
//! [`line::ForwarderTally`] as one log line per Kinesis invocation of the forwarder) and the
//! reconciliation object the reconciler writes per window ([`object::Reconciliation`]) are in
//! the submodules.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

pub mod line;
pub mod object;

/// One minute in milliseconds: the granularity of every tally.
pub const MINUTE_MS: i64 = 60_000;
/// The CloudWatch namespace of the reconciliation metrics (the functions' namespace).
pub const METRIC_NAMESPACE: &str = "authtrail";
/// The metric of records unaccounted for at a hop in a window (dimension [`HOP_DIMENSION`]).
pub const UNACCOUNTED_METRIC: &str = "Unaccounted";
/// The metric counting hops whose figure for a window is unknown (a tally missing).
pub const UNKNOWN_METRIC: &str = "ReconcileUnknown";
/// The dimension naming the hop of [`UNACCOUNTED_METRIC`] and [`UNKNOWN_METRIC`].
pub const HOP_DIMENSION: &str = "Hop";
/// Hop: what our producer put, against the stream as its consumers saw it.
pub const HOP_PRODUCER_STREAM: &str = "producer>stream";
/// Hop: the stream as its consumers saw it, against the archive.
pub const HOP_STREAM_ARCHIVE: &str = "stream>archive";
/// Hop: the stream as its consumers saw it, against what the forwarder finished.
pub const HOP_STREAM_FORWARDER: &str = "stream>forwarder";
/// Prefix of the per-emitter hops (`forwarder>emitter:<name>`): what the forwarder finished,
/// against what one emitter delivered, spooled, dead-lettered or filtered out.
pub const HOP_EMITTER_PREFIX: &str = "forwarder>emitter:";

/// The hop name of emitter `name`.
pub fn emitter_hop(name: &str) -> String {
    format!("{HOP_EMITTER_PREFIX}{name}")
}

/// The identity of a record: the first 8 bytes (big-endian) of the SHA-256 of its bytes
/// without one trailing `\n`.
pub fn record_hash(data: &[u8]) -> u64 {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let sum = Sha256::digest(data);
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_be_bytes(first)
}

/// The minute (epoch milliseconds divided by 60,000, rounded down) of a time.
pub fn minute_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(MINUTE_MS)
}

/// What the tallies need to know of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFacts {
    /// Its identity ([`record_hash`]).
    pub hash: u64,
    /// Its event time, epoch milliseconds (`None`: undated).
    pub time_ms: Option<i64>,
    /// A Contract 1 envelope (`eventType` `user-event` or `admin-event`): written by an
    /// authtrail producer. Other producers' records (Foxpass, Blitz, ...) are not.
    pub envelope: bool,
}

impl RecordFacts {
    /// The record's minute, if it is dated.
    pub fn minute(&self) -> Option<i64> {
        self.time_ms.map(minute_of)
    }
}

/// The facts of one record from its bytes (see the module documentation for the rules).
pub fn record_facts(data: &[u8]) -> RecordFacts {
    let hash = record_hash(data);
    let probe = serde_json::from_slice::<Probe<'_>>(data).ok();
    let (time_ms, envelope) = match probe {
        Some(p) => {
            let envelope = matches!(
                p.event_type.as_deref(),
                Some(
                    crate::envelope::EventKind::USER_EVENT
                        | crate::envelope::EventKind::ADMIN_EVENT
                )
            ) && p.event.is_object;
            (p.event.time.or(p.timestamp.0), envelope)
        }
        None => (None, false),
    };
    RecordFacts {
        hash,
        time_ms,
        envelope,
    }
}

/// The members of a record the facts are read from; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "eventType", borrow, default)]
    event_type: Option<Cow<'a, str>>,
    #[serde(default)]
    event: EventTime,
    #[serde(default)]
    timestamp: TopTime,
}

/// `event.time` when `event` is an object with an integer `time`.
#[derive(Default)]
struct EventTime {
    is_object: bool,
    time: Option<i64>,
}

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventTimeVisitor)
    }
}

struct EventTimeVisitor;

impl<'de> Visitor<'de> for EventTimeVisitor {
    type Value = EventTime;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EventTime, A::Error> {
        let mut time = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "time" {
                time = map.next_value::<LenientInt>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(EventTime {
            is_object: true,
            time,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventTime, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(EventTime::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<EventTime, E> {
        Ok(EventTime::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<EventTime, E> {
        Ok(EventTime::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<EventTime, E> {
        Ok(EventTime::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<EventTime, E> {
        Ok(EventTime::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<EventTime, E> {
        Ok(EventTime::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<EventTime, E> {
        Ok(EventTime::default())
    }
}

/// An integer, or `None` for any other value.
struct LenientInt(Option<i64>);

impl<'de> Deserialize<'de> for LenientInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimeVisitor { text: false })
            .map(LenientInt)
    }
}

/// A top-level `timestamp`: RFC 3339 text or integer epoch milliseconds.
#[derive(Default)]
struct TopTime(Option<i64>);

impl<'de> Deserialize<'de> for TopTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TimeVisitor { text: true }).map(TopTime)
    }
}

/// Reads a time: an integer (epoch ms), or with `text` an RFC 3339 string; anything else is
/// `None` (and skipped).
struct TimeVisitor {
    text: bool,
}

impl<'de> Visitor<'de> for TimeVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<i64>, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<i64>, E> {
        Ok(i64::try_from(v).ok())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<i64>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<i64>, E> {
        if !self.text {
            return Ok(None);
        }
        Ok(chrono::DateTime::parse_from_rfc3339(v)
            .ok()
            .map(|t| t.timestamp_millis()))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<i64>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<i64>, E> {
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<i64>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<i64>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A count of records and the sum (mod 2^64) of their [`record_hash`]es. Serialized as
/// `[count, "sum as 16 hex digits"]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Records.
    pub count: u64,
    /// Sum of their hashes, mod 2^64.
    pub sum: u64,
}

impl Digest {
    /// The digest of one record.
    pub fn of(hash: u64) -> Self {
        Self {
            count: 1,
            sum: hash,
        }
    }

    /// Adds one record.
    pub fn add(&mut self, hash: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    /// Adds every record of `other`.
    pub fn merge(&mut self, other: &Digest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// The records of `self` that are not in `other`, when `other` is a part of `self` (the
    /// counts subtract, saturating at 0; the sums subtract mod 2^64).
    pub fn minus(&self, other: &Digest) -> Digest {
        Digest {
            count: self.count.saturating_sub(other.count),
            sum: self.sum.wrapping_sub(other.sum),
        }
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The sum as 16 lowercase hex digits.
    pub fn sum_hex(&self) -> String {
        format!("{:016x}", self.sum)
    }

    /// Reads a sum written by [`Self::sum_hex`].
    pub fn parse_sum(hex: &str) -> Option<u64> {
        if hex.len() != 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }
}

impl std::ops::AddAssign<&Digest> for Digest {
    fn add_assign(&mut self, rhs: &Digest) {
        self.merge(rhs);
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.count, self.sum_hex()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (count, hex) = <(u64, Cow<'de, str>)>::deserialize(d)?;
        let sum = Digest::parse_sum(&hex)
            .ok_or_else(|| de::Error::custom("a digest sum is 16 hex digits"))?;
        Ok(Digest { count, sum })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_hash_ignores_one_trailing_newline_and_is_the_sha256_prefix() {
        let a = record_hash(b"{\"a\":1}\n");
        assert_eq!(a, record_hash(b"{\"a\":1}"));
        assert_ne!(a, record_hash(b"{\"a\": 1}"));
        // SHA-256("abc") starts ba7816bf8f01cfea.
        assert_eq!(record_hash(b"abc"), 0xba78_16bf_8f01_cfea);
    }

    #[test]
    fn an_envelope_is_dated_by_event_time_and_marked_as_ours() {
        let f = record_facts(
            br#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"user-event","event":{"id":"x","time":1739388470156,"details":{"time":"no"}}}"#,
        );
        assert_eq!(f.time_ms, Some(1_739_388_470_156));
        assert!(f.envelope);
        assert_eq!(f.minute(), Some(1_739_388_470_156 / 60_000));
    }

    #[test]
    fn a_truncated_envelope_without_event_time_falls_back_to_its_timestamp() {
        let f = record_facts(
            br#"{"timestamp":"2025-02-12T19:27:50.156Z","eventType":"admin-event","event":{"truncated":true}}"#,
        );
        assert_eq!(f.time_ms, Some(1_739_388_470_156));
        assert!(f.envelope);
    }

    #[test]
    fn other_producers_records_are_dated_by_a_top_level_timestamp_and_not_ours() {
        let f = record_facts(
            br#"{"service":"ldap","method":"bind","timestamp":"2025-02-12T19:27:50.156+00:00","event":"bind"}"#,
        );
        assert_eq!(f.time_ms, Some(1_739_388_470_156));
        assert!(!f.envelope);
        let epoch = record_facts(br#"{"timestamp":1739388470156,"eventType":"x"}"#);
        assert_eq!(epoch.time_ms, Some(1_739_388_470_156));
        assert!(!epoch.envelope);
    }

    #[test]
    fn records_without_a_usable_time_are_undated() {
        for data in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"service":"radius"}"#,
            br#"{"timestamp":"yesterday","event":{"time":"noon"}}"#,
            br#"{"timestamp":1.5,"event":[1]}"#,
        ] {
            assert_eq!(
                record_facts(data).time_ms,
                None,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn digests_are_order_independent_and_add_and_subtract_by_parts() {
        let hashes = [1u64, u64::MAX, 42, 7];
        let mut forward = Digest::default();
        hashes.iter().for_each(|h| forward.add(*h));
        let mut backward = Digest::default();
        hashes.iter().rev().for_each(|h| backward.add(*h));
        assert_eq!(forward, backward);
        let mut part = Digest::of(1);
        part.add(42);
        let rest = forward.minus(&part);
        assert_eq!(rest.count, 2);
        let mut whole = part;
        whole += &rest;
        assert_eq!(whole, forward);
    }

    #[test]
    fn a_digest_serializes_as_count_and_sixteen_hex_digits() {
        let d = Digest {
            count: 3,
            sum: 0xab,
        };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"[3,"00000000000000ab"]"#);
        assert_eq!(serde_json::from_str::<Digest>(&text).unwrap(), d);
        assert!(serde_json::from_str::<Digest>(r#"[3,"ab"]"#).is_err());
    }

    #[test]
    fn hop_names_are_the_documented_ones() {
        assert_eq!(emitter_hop("splunk"), "forwarder>emitter:splunk");
        assert_eq!(HOP_PRODUCER_STREAM, "producer>stream");
        assert_eq!(HOP_STREAM_ARCHIVE, "stream>archive");
        assert_eq!(HOP_STREAM_FORWARDER, "stream>forwarder");
    }
}
