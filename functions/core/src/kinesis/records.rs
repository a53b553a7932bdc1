//! Reading a `KinesisEvent` straight into the caller's own record type, for handlers whose
//! event type must own its data (the Lambda runtime's `LambdaEvent<T>` needs
//! `T: DeserializeOwned`). Each record is read by the same borrowed [`EventRecord`] reader and
//! handed to [`FromEventRecord`] at once, so nothing but the caller's type is kept.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::event::EventRecord;
use crate::error::Error;

/// A record type built from each [`EventRecord`] while the event is read.
pub trait FromEventRecord: Sized {
    /// Builds one record. `names` shares the stream and shard names between a batch's
    /// records. An error fails the whole event.
    fn from_event_record(record: EventRecord<'_>, names: &mut SharedNames) -> Result<Self, Error>;
}

/// The stream and shard names of a batch, shared: a batch's records (one shard, in practice)
/// hold one copy of each instead of two strings per record.
#[derive(Debug, Default, Clone)]
pub struct SharedNames {
    stream: Option<Arc<str>>,
    shard: Option<Arc<str>>,
}

impl SharedNames {
    /// The record's stream name ([`EventRecord::stream_name`]), shared.
    pub fn stream(&mut self, record: &EventRecord<'_>) -> Arc<str> {
        shared(&mut self.stream, record.stream_name())
    }

    /// The record's shard id ([`EventRecord::shard_id`]), shared.
    pub fn shard(&mut self, record: &EventRecord<'_>) -> Arc<str> {
        shared(&mut self.shard, record.shard_id())
    }
}

/// `name` as the kept string when equal to it, else as a new kept string.
fn shared(kept: &mut Option<Arc<str>>, name: &str) -> Arc<str> {
    match kept {
        Some(k) if **k == *name => k.clone(),
        _ => {
            let fresh: Arc<str> = Arc::from(name);
            *kept = Some(fresh.clone());
            fresh
        }
    }
}

/// A `KinesisEvent` whose records were turned into `R` as they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecords<R> {
    /// The records, in the order of the payload.
    pub records: Vec<R>,
}

impl<R> Default for KinesisRecords<R> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
        }
    }
}

impl<R: FromEventRecord> KinesisRecords<R> {
    /// Reads a `KinesisEvent` payload; [`Error::InvalidKinesisEvent`] when it is not one or a
    /// record could not be built.
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(payload).map_err(Error::InvalidKinesisEvent)
    }
}

impl<'de, R: FromEventRecord> Deserialize<'de> for KinesisRecords<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor(PhantomData))
    }
}

/// Visits the event object: `Records` is read, other members are skipped.
struct EventVisitor<R>(PhantomData<R>);

impl<'de, R: FromEventRecord> Visitor<'de> for EventVisitor<R> {
    type Value = KinesisRecords<R>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kinesis event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut records: Option<Vec<R>> = None;
        while let Some(key) = map.next_key::<super::event::Str<'de>>()? {
            if key.as_str() == "Records" {
                if records.is_some() {
                    return Err(de::Error::duplicate_field("Records"));
                }
                records = Some(map.next_value::<RecordList<R>>()?.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(KinesisRecords {
            records: records.unwrap_or_default(),
        })
    }
}

/// The `Records` array, each element built into `R` as soon as it is read.
struct RecordList<R>(Vec<R>);

impl<'de, R: FromEventRecord> Deserialize<'de> for RecordList<R> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<R>(PhantomData<R>);
        impl<'de, R: FromEventRecord> Visitor<'de> for V<R> {
            type Value = RecordList<R>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of Kinesis event records")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut names = SharedNames::default();
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(10_000));
                while let Some(record) = seq.next_element::<EventRecord<'de>>()? {
                    out.push(R::from_event_record(record, &mut names).map_err(de::Error::custom)?);
                }
                Ok(RecordList(out))
            }
        }
        deserializer.deserialize_seq(V(PhantomData))
    }
}
